//! The series read from the snapshot at each scrape: the instance, its boot, its units, php-fpm's
//! pools, the load balancer, the seal, the secrets and kiln's own listeners and log. A section
//! the config does not have (`[lb]`, `[seal]`, `[secrets]`, `[service.phpfpm_status]`) has no
//! series.

use crate::state::{LbState, Phase, PhpFpmPool, PhpFpmStatus, Snapshot, UnitState, UnitStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::Arc;

/// One scrape's snapshot, as a prometheus-client collector.
#[derive(Debug)]
pub(super) struct SnapshotSeries(pub Arc<Snapshot>);

impl Collector for SnapshotSeries {
    fn encode(&self, mut out: DescriptorEncoder) -> fmt::Result {
        let s = &*self.0;
        instance(&mut out, s)?;
        boot(&mut out, s)?;
        units(&mut out, &s.services)?;
        php_fpm(&mut out, &s.php_fpm)?;
        lb(&mut out, s)?;
        seal(&mut out, s)?;
        secrets(&mut out, s)?;
        kiln(&mut out, s)
    }
}

const UNIT_STATES: [UnitState; 7] = [
    UnitState::Waiting,
    UnitState::Starting,
    UnitState::Running,
    UnitState::Backoff,
    UnitState::Stopping,
    UnitState::Stopped,
    UnitState::Exited,
];

const LB_STATES: [LbState; 4] = [
    LbState::Unregistered,
    LbState::Registered,
    LbState::Draining,
    LbState::Deregistered,
];

fn instance(out: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    let facts = s.instance.as_ref();
    let seal = s.seal.as_ref();
    let labels = [
        ("version", s.version.as_str()),
        ("provider", facts.map_or("", |f| f.provider.as_str())),
        (
            "instance_id",
            facts.and_then(|f| f.instance_id.as_deref()).unwrap_or(""),
        ),
        ("release", seal.and_then(|s| s.release.as_deref()).unwrap_or("")),
        (
            "seal_root_hash",
            seal.and_then(|s| s.root_hash.as_deref()).unwrap_or(""),
        ),
    ];
    out.encode_descriptor(
        "kiln",
        "This kiln and the image it runs: version, metadata provider, instance id, release label and seal root hash",
        None,
        MetricType::Info,
    )?
    .encode_info(&labels)?;
    gauge(
        out,
        "kiln_start_time_seconds",
        "When kiln started, seconds since the Unix epoch",
        seconds_ms(s.started_at_ms),
    )?;
    let phases: Vec<_> = Phase::ALL
        .iter()
        .map(|&p| ([("phase", phase_name(p))], u32::from(s.phase == p)))
        .collect();
    gauges(
        out,
        "kiln_phase",
        "Where the instance is: 1 for the current phase, 0 for the others",
        &phases,
    )
}

/// Each phase of the boot timeline that ended, and each point on it (`READY=1`).
fn boot(out: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    let mut durations: Vec<([(&str, String); 1], f64)> = Vec::new();
    let mut marks = Vec::new();
    for e in &s.timeline {
        let labels = [("phase", e.phase.to_string())];
        match e.duration_us {
            _ if e.point => marks.push(([("mark", e.phase.to_string())], seconds_us(e.start_us))),
            Some(us) => {
                // A phase run twice keeps its last duration: one series per phase.
                durations.retain(|(l, _)| l != &labels);
                durations.push((labels, seconds_us(us)));
            }
            None => {}
        }
    }
    gauges(
        out,
        "kiln_boot_phase_duration_seconds",
        "How long each phase of the boot took (config, serve, cgroups, seal, metadata, env and within it pin and secrets, start <service>)",
        &durations,
    )?;
    gauges(
        out,
        "kiln_boot_mark_seconds",
        "Seconds from kiln's start to each point of the boot timeline (READY=1: every service ready)",
        &marks,
    )
}

/// The labels of a unit's series.
fn of(u: &UnitStatus) -> [(&'static str, &str); 2] {
    [("service", u.service.as_str()), ("unit", u.unit.as_str())]
}

fn units(out: &mut DescriptorEncoder, units: &[UnitStatus]) -> fmt::Result {
    unit_states(out, units)?;
    unit_runs(out, units)?;
    unit_usage(out, units)
}

/// Where each unit is: ready, its state, crash-looping.
fn unit_states(out: &mut DescriptorEncoder, units: &[UnitStatus]) -> fmt::Result {
    let flag = |value: &dyn Fn(&UnitStatus) -> bool| -> Vec<_> {
        units.iter().map(|u| (of(u), u32::from(value(u)))).collect()
    };
    gauges(
        out,
        "kiln_unit_ready",
        "Whether the unit is running and its ready probe passes (1) or not (0)",
        &flag(&|u| u.ready),
    )?;
    let states: Vec<_> = units
        .iter()
        .flat_map(|u| {
            UNIT_STATES.iter().map(move |&state| {
                let [service, unit] = of(u);
                (
                    [service, unit, ("state", unit_state_name(state))],
                    u32::from(u.state == state),
                )
            })
        })
        .collect();
    gauges(
        out,
        "kiln_unit_state",
        "Where each unit is: 1 for its current state, 0 for the others",
        &states,
    )?;
    gauges(
        out,
        "kiln_unit_crash_looping",
        "Whether the unit failed 3 times or more in a row and has not run 10 s since (1) or not (0)",
        &flag(&|u| u.crash_loop),
    )
}

/// Each unit's runs: restarts, the last exit, when the current process started.
fn unit_runs(out: &mut DescriptorEncoder, units: &[UnitStatus]) -> fmt::Result {
    counters(
        out,
        "kiln_unit_restarts",
        "Restarts of the unit since kiln started",
        &units
            .iter()
            .map(|u| (of(u), u64::from(u.restarts)))
            .collect::<Vec<_>>(),
    )?;
    gauges(
        out,
        "kiln_unit_last_exit_code",
        "The unit's last exit as a shell shows it: its code, or 128 + the signal's number (137: SIGKILL, also when kiln killed it for a probe)",
        &units
            .iter()
            .filter_map(|u| Some((of(u), i64::from(u.last_exit_code?))))
            .collect::<Vec<_>>(),
    )?;
    gauges(
        out,
        "kiln_unit_start_time_seconds",
        "When the unit's current process started, seconds since the Unix epoch",
        &units
            .iter()
            .filter_map(|u| Some((of(u), seconds_ms(u.pid.and(u.since_ms)?))))
            .collect::<Vec<_>>(),
    )
}

/// What each unit uses and loses: dropped output, memory and CPU of its cgroup.
fn unit_usage(out: &mut DescriptorEncoder, units: &[UnitStatus]) -> fmt::Result {
    counters(
        out,
        "kiln_unit_output_dropped_lines",
        "Lines of the unit's output not logged because it wrote more than kiln forwards a second",
        &units.iter().map(|u| (of(u), u.dropped_lines)).collect::<Vec<_>>(),
    )?;
    gauges(
        out,
        "kiln_unit_memory_bytes",
        "memory.current of the unit's cgroup",
        &units
            .iter()
            .filter_map(|u| Some((of(u), u.memory_bytes?)))
            .collect::<Vec<_>>(),
    )?;
    counters(
        out,
        "kiln_unit_cpu_seconds",
        "CPU time of everything in the unit's cgroup",
        &units
            .iter()
            .filter_map(|u| Some((of(u), seconds_us(u.cpu_usec?))))
            .collect::<Vec<_>>(),
    )
}

/// Each php-fpm pool: whether its status page answered, and its figures when it did (a pool
/// whose page did not answer has none: Prometheus marks them stale rather than keeping old ones).
fn php_fpm(out: &mut DescriptorEncoder, pools: &[PhpFpmStatus]) -> fmt::Result {
    let up: Vec<_> = pools
        .iter()
        .map(|p| {
            (
                [("service", p.service.as_str()), ("unit", p.unit.as_str())],
                u32::from(p.pool.is_some()),
            )
        })
        .collect();
    gauges(
        out,
        "kiln_phpfpm_up",
        "Whether the pool's status page answered within its timeout (1) or not (0: kiln status says why)",
        &up,
    )?;
    let read: Vec<(&PhpFpmStatus, &PhpFpmPool)> =
        pools.iter().filter_map(|p| Some((p, p.pool.as_ref()?))).collect();
    if read.is_empty() {
        return Ok(());
    }
    let mut info = out.encode_descriptor(
        "kiln_phpfpm_pool",
        "The pool and its process manager (static, dynamic or ondemand)",
        None,
        MetricType::Info,
    )?;
    for (p, pool) in &read {
        let [service, unit, name] = of_pool(p, pool);
        info.encode_info(&[
            service,
            unit,
            name,
            ("process_manager", pool.process_manager.as_str()),
        ])?;
    }
    php_fpm_processes(out, &read)?;
    php_fpm_queue(out, &read)?;
    php_fpm_counts(out, &read)
}

/// The labels of a pool's series.
fn of_pool<'a>(p: &'a PhpFpmStatus, pool: &'a PhpFpmPool) -> [(&'static str, &'a str); 3] {
    [
        ("service", p.service.as_str()),
        ("unit", p.unit.as_str()),
        ("pool", pool.pool.as_str()),
    ]
}

/// One figure of every pool read, with the pool's labels.
fn per_pool<'a>(
    read: &[(&'a PhpFpmStatus, &'a PhpFpmPool)],
    value: fn(&PhpFpmPool) -> u64,
) -> Vec<([(&'static str, &'a str); 3], u64)> {
    read.iter()
        .map(|&(p, pool)| (of_pool(p, pool), value(pool)))
        .collect()
}

fn php_fpm_processes(out: &mut DescriptorEncoder, read: &[(&PhpFpmStatus, &PhpFpmPool)]) -> fmt::Result {
    let processes: Vec<_> = read
        .iter()
        .flat_map(|&(p, pool)| {
            let [service, unit, name] = of_pool(p, pool);
            [
                ([service, unit, name, ("state", "active")], pool.active_processes),
                ([service, unit, name, ("state", "idle")], pool.idle_processes),
            ]
        })
        .collect();
    gauges(
        out,
        "kiln_phpfpm_processes",
        "The pool's processes serving a request (active) or waiting for one (idle)",
        &processes,
    )?;
    gauges(
        out,
        "kiln_phpfpm_active_processes_max",
        "The most processes active at once since the pool started",
        &per_pool(read, |pool| pool.max_active_processes),
    )?;
    gauges(
        out,
        "kiln_phpfpm_start_time_seconds",
        "When the pool started, seconds since the Unix epoch",
        &per_pool(read, |pool| pool.start_time),
    )
}

fn php_fpm_queue(out: &mut DescriptorEncoder, read: &[(&PhpFpmStatus, &PhpFpmPool)]) -> fmt::Result {
    gauges(
        out,
        "kiln_phpfpm_listen_queue",
        "Requests waiting for a free process now (php-fpm counts them on a TCP listen socket only)",
        &per_pool(read, |pool| pool.listen_queue),
    )?;
    gauges(
        out,
        "kiln_phpfpm_listen_queue_max",
        "The most requests waiting at once since the pool started (TCP listen socket only)",
        &per_pool(read, |pool| pool.max_listen_queue),
    )?;
    gauges(
        out,
        "kiln_phpfpm_listen_queue_capacity",
        "Requests the listen socket's queue holds (its backlog; TCP listen socket only)",
        &per_pool(read, |pool| pool.listen_queue_len),
    )
}

fn php_fpm_counts(out: &mut DescriptorEncoder, read: &[(&PhpFpmStatus, &PhpFpmPool)]) -> fmt::Result {
    counters(
        out,
        "kiln_phpfpm_accepted_connections",
        "Requests the pool accepted since it started",
        &per_pool(read, |pool| pool.accepted_conn),
    )?;
    counters(
        out,
        "kiln_phpfpm_max_children_reached",
        "Times the pool wanted another process and pm.max_children refused it (dynamic and ondemand; static never counts)",
        &per_pool(read, |pool| pool.max_children_reached),
    )?;
    counters(
        out,
        "kiln_phpfpm_slow_requests",
        "Requests that ran longer than the pool's request_slowlog_timeout",
        &per_pool(read, |pool| pool.slow_requests),
    )
}

fn lb(out: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    let Some(lb) = &s.lb else { return Ok(()) };
    let states: Vec<_> = LB_STATES
        .iter()
        .map(|&state| {
            let labels = [("kind", lb.kind.as_str()), ("state", lb_state_name(state))];
            (labels, u32::from(lb.state == state))
        })
        .collect();
    gauges(
        out,
        "kiln_lb_state",
        "The instance's membership in the load balancer: 1 for the current state, 0 for the others",
        &states,
    )?;
    let Some(drain) = lb.last_drain else { return Ok(()) };
    gauge(
        out,
        "kiln_lb_last_drain_duration_seconds",
        "How long the last drain took, from deregistration to drained or drain_timeout",
        seconds_us(drain.took_us),
    )?;
    match drain.sessions_left {
        Some(sessions) => gauge(
            out,
            "kiln_lb_last_drain_sessions_left",
            "Sessions still in flight when the last drain ended (HAProxy counts them)",
            sessions,
        ),
        None => Ok(()),
    }
}

fn seal(out: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    let Some(seal) = &s.seal else { return Ok(()) };
    if let Some(us) = seal.verify_us {
        gauge(
            out,
            "kiln_seal_verify_duration_seconds",
            "How long the seal's verification at boot took",
            seconds_us(us),
        )?;
    }
    if let Some(ms) = seal.last_verified_ms {
        gauge(
            out,
            "kiln_seal_last_verified_timestamp_seconds",
            "When the sealed paths were last verified in full, seconds since the Unix epoch",
            seconds_ms(ms),
        )?;
    }
    gauge(
        out,
        "kiln_seal_drift_paths",
        "Differences between the sealed paths and the seal now (0: no drift)",
        seal.drift.len() as u64,
    )
}

fn secrets(out: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    let Some(secrets) = &s.secrets else { return Ok(()) };
    gauge(
        out,
        "kiln_secrets_resolved",
        "Variables set from secret stores at boot",
        secrets.resolved as u64,
    )?;
    counter(
        out,
        "kiln_secrets_requests",
        "Requests sent to the secret stores at boot, retries included",
        secrets.requests,
    )?;
    gauge(
        out,
        "kiln_secrets_changed",
        "Variables whose secret changed in its store since boot (replace the instance)",
        secrets.changed.len() as u64,
    )
}

fn kiln(out: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    counter(
        out,
        "kiln_refused_mutations",
        "Attempts to change the instance that kiln refused (control socket verbs, SIGHUP)",
        s.refused_mutations,
    )?;
    gauge(
        out,
        "kiln_warnings",
        "Things kiln warns about that do not change readiness (metadata changed since boot...)",
        s.warnings.len() as u64,
    )?;
    counter(
        out,
        "kiln_log_dropped_lines",
        "kiln's own log lines dropped because the log sink did not keep up",
        s.log.dropped_lines,
    )?;
    let of = |l: &crate::state::ListenerStatus| [("listener", l.name.clone())];
    let open: Vec<_> = s.listeners.iter().map(|l| (of(l), l.open as u64)).collect();
    gauges(
        out,
        "kiln_listener_connections",
        "Connections each of kiln's listeners holds now",
        &open,
    )?;
    let cap: Vec<_> = s.listeners.iter().map(|l| (of(l), l.cap as u64)).collect();
    gauges(
        out,
        "kiln_listener_connections_max",
        "Most connections each listener holds; at the cap the stalest gives way",
        &cap,
    )?;
    let shed: Vec<_> = s.listeners.iter().map(|l| (of(l), l.shed)).collect();
    counters(
        out,
        "kiln_listener_shed_connections",
        "Connections closed to make room for new ones at a listener's cap",
        &shed,
    )
}

fn gauge(
    out: &mut DescriptorEncoder,
    name: &'static str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    out.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

fn counter(out: &mut DescriptorEncoder, name: &'static str, help: &str, value: u64) -> fmt::Result {
    out.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, f64>(&value, None)
}

/// A gauge family; nothing at all when it has no series.
fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    out: &mut DescriptorEncoder,
    name: &'static str,
    help: &str,
    series: &[(L, V)],
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut family = out.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        family.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

/// A counter family; nothing at all when it has no series.
fn counters<L: EncodeLabelSet, V: EncodeCounterValue>(
    out: &mut DescriptorEncoder,
    name: &'static str,
    help: &str,
    series: &[(L, V)],
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut family = out.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        family
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, f64>(value, None)?;
    }
    Ok(())
}

fn seconds_us(us: u64) -> f64 {
    us as f64 / 1e6
}

fn seconds_ms(ms: u64) -> f64 {
    ms as f64 / 1e3
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Booting => "booting",
        Phase::Starting => "starting",
        Phase::Ready => "ready",
        Phase::Degraded => "degraded",
        Phase::Failed => "failed",
        Phase::Stopping => "stopping",
        Phase::Stopped => "stopped",
    }
}

fn unit_state_name(state: UnitState) -> &'static str {
    match state {
        UnitState::Waiting => "waiting",
        UnitState::Starting => "starting",
        UnitState::Running => "running",
        UnitState::Backoff => "backoff",
        UnitState::Stopping => "stopping",
        UnitState::Stopped => "stopped",
        UnitState::Exited => "exited",
    }
}

fn lb_state_name(state: LbState) -> &'static str {
    match state {
        LbState::Unregistered => "unregistered",
        LbState::Registered => "registered",
        LbState::Draining => "draining",
        LbState::Deregistered => "deregistered",
    }
}
