//! What kiln answers: `/livez` and `/readyz` for the load balancer, the HAProxy agent-check, the
//! read-only control socket for `kiln status`, and `/metrics` for Prometheus when `[metrics]`
//! asks for it. All of them only read: the shared snapshot, and for `kiln status` and `/metrics`
//! what is read only when asked (cgroup usage, php-fpm's status pages: `phpfpm`).
//!
//! None of them runs on the supervisor's thread: the health port has threads of its own, the
//! metrics listener one, the control socket and the agent port share one more. Each listener
//! holds a bounded number of connections within kiln's descriptor budget (`fd_budget`), so that
//! no client, hostile or careless, takes the supervisor's time or its file descriptors.

pub mod agent;
pub mod control;
pub mod health;
pub mod metrics;
pub mod phpfpm;
pub mod readiness;
pub mod slots;

use crate::config::{HealthConfig, MetricsConfig, ServiceConfig};
use crate::fd_budget::Caps;
use crate::metrics::Recorder;
use crate::state::{ListenerStatus, LogStatus, Shared, Snapshot};
use phpfpm::Pools;
use slots::Slots;
use std::path::Path;
use std::sync::Arc;

/// Every listener's connections, for `kiln status`.
#[derive(Clone)]
pub struct Listeners {
    /// One per health thread.
    health: Vec<Arc<Slots>>,
    agent: Option<Arc<Slots>>,
    control: Arc<Slots>,
    metrics: Option<Arc<Slots>>,
}

impl Listeners {
    pub fn status(&self) -> Vec<ListenerStatus> {
        let health = ListenerStatus {
            name: "health".into(),
            open: self.health.iter().map(|s| s.open()).sum(),
            cap: self.health.iter().map(|s| s.cap()).sum(),
            shed: self.health.iter().map(|s| s.shed()).sum(),
        };
        let one = |name: &str, slots: &Slots| ListenerStatus {
            name: name.into(),
            open: slots.open(),
            cap: slots.cap(),
            shed: slots.shed(),
        };
        let mut all = vec![health];
        all.extend(self.agent.as_deref().map(|s| one("agent", s)));
        all.push(one("control", &self.control));
        all.extend(self.metrics.as_deref().map(|s| one("metrics", s)));
        all
    }
}

/// The snapshot with what is read only when asked: the log's figures, every listener's
/// connections, each unit's memory and CPU from its cgroup (a few small files per unit, never
/// read while nobody asks) and php-fpm's pools (each within its page's timeout). What `kiln
/// status` and `/metrics` show.
async fn full_snapshot(shared: &Shared, listeners: &Listeners, pools: &Pools) -> Snapshot {
    let php_fpm = pools.read().await;
    let mut snapshot = (*shared.snapshot()).clone();
    let log = crate::systemd::log::status();
    snapshot.log = LogStatus {
        sink: log.sink,
        dropped_lines: log.dropped_lines,
    };
    snapshot.listeners = listeners.status();
    for unit in &mut snapshot.services {
        if let Some(dir) = &unit.cgroup {
            let usage = crate::cgroup::usage(Path::new(dir));
            unit.memory_bytes = usage.memory_bytes;
            unit.cpu_usec = usage.cpu_usec;
        }
    }
    snapshot.php_fpm = php_fpm;
    snapshot
}

/// Binds the health port, the control socket, the agent-check port and the metrics listener (an
/// address in use is reported now, before anything starts) and serves them until kiln exits.
/// `services`' php-fpm status pages are read for `kiln status` and `/metrics`.
pub fn start(
    health: &HealthConfig,
    metrics_config: Option<&MetricsConfig>,
    control_socket: &Path,
    services: &[ServiceConfig],
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
) -> Result<(), String> {
    let pools = Pools::of(services);
    let caps = Caps::now();
    let control_listener = control::bind(control_socket)
        .map_err(|e| format!("[control] socket {}: {e}", control_socket.display()))?;
    let agent_listener = match health.agent_listen {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| format!("[health] agent_listen {addr}: {e}"))?,
        ),
        None => None,
    };
    let metrics_bound = match metrics_config {
        Some(m) => Some(
            metrics::bind(m.listen, caps.metrics)
                .map_err(|e| format!("[metrics] listen {}: {e}", m.listen))?,
        ),
        None => None,
    };
    let health_slots = health::start(health.listen, shared.clone(), caps.health)
        .map_err(|e| format!("[health] listen {}: {e}", health.listen))?;
    let listeners = Listeners {
        health: health_slots,
        agent: agent_listener.as_ref().map(|_| Slots::new(caps.agent)),
        control: Slots::new(caps.control),
        metrics: metrics_bound.as_ref().map(|b| b.slots.clone()),
    };
    if let Some(bound) = metrics_bound {
        metrics::start(bound, shared.clone(), recorder, listeners.clone(), pools.clone())
            .map_err(|e| format!("cannot start the metrics listener: {e}"))?;
    }
    serve_control_and_agent(control_listener, agent_listener, shared, listeners, pools)
}

/// The control socket and the agent-check port, on one thread of their own.
fn serve_control_and_agent(
    control_listener: std::os::unix::net::UnixListener,
    agent_listener: Option<std::net::TcpListener>,
    shared: Arc<Shared>,
    listeners: Listeners,
    pools: Pools,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the control socket's runtime: {e}"))?;
    std::thread::Builder::new()
        .name("kiln-serve".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let (Some(listener), Some(slots)) = (agent_listener, listeners.agent.clone()) {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            tokio::spawn(agent::serve_agent(listener, shared.clone(), slots));
                        }
                        Err(e) => tracing::error!("agent-check listener: {e}"),
                    }
                }
                match tokio::net::UnixListener::from_std(control_listener) {
                    Ok(listener) => control::serve(listener, shared, listeners, pools).await,
                    Err(e) => tracing::error!("control socket: {e}"),
                }
            })
        })
        .map_err(|e| format!("cannot start the control socket's thread: {e}"))?;
    Ok(())
}
