//! Performs what the machine decides, and nothing else: spawns through the reaper, signals,
//! timers, probe tasks, the shared snapshot and sd_notify. Every fact it learns (an exit, a probe
//! event, a timer) goes back to the machine as an event, one at a time, on one task.

use super::machine::{Effect, Event, Level, Machine, Milestone, UnitId, View};
use crate::config::{ServiceConfig, StopSignalTo};
use crate::env::FrozenEnv;
use crate::probe::runner::{self, UnitProbes};
use crate::probe::{Probe, Role};
use crate::process::Reaper;
use crate::process::cgroup::{self, Cgroups, Limits, UnitCgroup};
use crate::process::output::{self, Stream, UnitOutput};
use crate::process::spawn::{self, Identity};
use crate::state::{Phase, Shared, now_ms};
use crate::systemd::Notifier;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

/// How often the loop ticks when nothing happens (drives `/livez` and the watchdog).
const TICK: Duration = Duration::from_millis(500);
/// After the last service stopped, how long its output may take to reach the log: a stopped
/// group's pipes end at once, but a process that escaped the group may hold one open.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

enum Input {
    Event(Event),
    /// Stop every service gracefully; answer when all are gone.
    Stop(oneshot::Sender<()>),
}

/// What the boot walk holds to stop the supervisor.
#[derive(Clone)]
pub struct SupervisorHandle {
    tx: mpsc::UnboundedSender<Input>,
}

impl SupervisorHandle {
    /// Stops every service in reverse dependency order; returns when all are gone.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Input::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// SIGKILL to every service's process group, at once.
    pub fn kill_all(&self) {
        let _ = self.tx.send(Input::Event(Event::KillAll));
    }
}

/// What the executor needs to start a service's processes.
struct ServiceRuntime {
    config: ServiceConfig,
    identity: Option<Identity>,
    probes: UnitProbes,
}

/// What the executor holds for one unit.
#[derive(Default)]
struct UnitRuntime {
    probe_task: Option<AbortHandle>,
    /// Its stderr tail, output rate limit and dropped lines, across restarts.
    kept_output: UnitOutput,
    /// The tasks forwarding its stdout and stderr into the log, until end of file.
    output: Vec<JoinHandle<()>>,
    /// Its cgroup, made at its first start, kept across restarts.
    cgroup: Option<Arc<UnitCgroup>>,
}

pub struct Supervisor {
    machine: Machine,
    services: Vec<ServiceRuntime>,
    units: Vec<UnitRuntime>,
    env: Arc<FrozenEnv>,
    reaper: Reaper,
    /// Where units' cgroups go; None: process groups only.
    cgroups: Option<Arc<Cgroups>>,
    shared: Arc<Shared>,
    notifier: Arc<Notifier>,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    stop_waiters: Vec<oneshot::Sender<()>>,
    stopped: bool,
}

impl Supervisor {
    /// Prepares the services; resolves users and probes. Nothing is started yet.
    pub fn new(
        configs: &[ServiceConfig],
        env: Arc<FrozenEnv>,
        reaper: Reaper,
        cgroups: Option<Arc<Cgroups>>,
        shared: Arc<Shared>,
        notifier: Arc<Notifier>,
    ) -> Result<Supervisor, String> {
        let services = configs
            .iter()
            .map(|config| service_runtime(config, &env))
            .collect::<Result<Vec<_>, _>>()?;
        let machine = Machine::new(configs);
        let units = machine.units().iter().map(|_| UnitRuntime::default()).collect();
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Supervisor {
            machine,
            services,
            units,
            env,
            reaper,
            cgroups,
            shared,
            notifier,
            tx,
            rx,
            stop_waiters: Vec::new(),
            stopped: false,
        })
    }

    pub fn handle(&self) -> SupervisorHandle {
        SupervisorHandle { tx: self.tx.clone() }
    }

    /// Runs until every service has stopped after a [`SupervisorHandle::stop`].
    pub async fn run(mut self) {
        self.shared.update(|s| s.phase = Phase::Starting);
        self.apply(Event::Start);
        let mut tick = tokio::time::interval(TICK);
        while !self.stopped {
            self.shared.beat();
            tokio::select! {
                input = self.rx.recv() => match input {
                    Some(Input::Event(event)) => self.apply(event),
                    Some(Input::Stop(waiter)) => {
                        self.stop_waiters.push(waiter);
                        self.apply(Event::Stop);
                    }
                    None => return,
                },
                _ = tick.tick() => {}
            }
        }
        self.drain_output().await;
        // The units' cgroups go with the last reference to them.
        self.cgroups = None;
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    /// Waits (bounded) until the last lines the services wrote are in the log: an exit can be
    /// reaped before its process's final output has been read from the pipe.
    async fn drain_output(&mut self) {
        let forwarders: Vec<_> = self.units.iter_mut().flat_map(|u| u.output.drain(..)).collect();
        let drained = async {
            for forwarder in forwarders {
                let _ = forwarder.await;
            }
        };
        if tokio::time::timeout(OUTPUT_DRAIN, drained).await.is_err() {
            tracing::debug!("output of a stopped service still open after {OUTPUT_DRAIN:?}");
        }
    }

    /// Steps the machine with `event` and performs its effects; a spawn's outcome is the next
    /// event, before anything else.
    fn apply(&mut self, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            for effect in self.machine.step(event, now_ms()) {
                queue.extend(self.perform(effect));
            }
        }
    }

    fn perform(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Spawn { unit, generation } => return Some(self.spawn(unit, generation)),
            Effect::StartProbes { unit, generation } => self.start_probes(unit, generation),
            Effect::StopProbes { unit } => {
                if let Some(task) = self.units[unit].probe_task.take() {
                    task.abort();
                }
            }
            Effect::Signal {
                unit,
                pid,
                signal,
                to,
            } => self.signal(unit, pid, signal, to),
            Effect::KillTree { unit, pid } => self.kill_tree(unit, pid),
            Effect::StartTimer { after, timer } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(Input::Event(Event::Timer(timer)));
                });
            }
            Effect::Log { level, line } => log(level, &line),
            Effect::Incident { level, line } => {
                log(level, &line);
                self.shared.event(level.as_str(), line);
            }
            Effect::Timeline(Milestone::Begin(phase)) => self.shared.phase_begin(&phase),
            Effect::Timeline(Milestone::Done(phase)) => self.shared.phase_done(&phase),
            Effect::Publish(view) => self.publish(view),
            Effect::AnnounceReady => {
                // Unless the boot walk has begun a stop meanwhile.
                if self.shared.phase() == Phase::Ready {
                    self.shared.mark("READY=1");
                    self.notifier.notify("READY=1");
                }
            }
            Effect::Status(line) => self.notifier.status(&line),
            Effect::Stopped => self.stopped = true,
        }
        None
    }

    /// Starts the unit's process with its output forwarded and its exit sent back as an event.
    fn spawn(&mut self, unit: UnitId, generation: u64) -> Event {
        let failed = |reason: String| Event::SpawnFailed {
            unit,
            generation,
            reason,
        };
        let cgroup = match self.unit_cgroup(unit) {
            Ok(cgroup) => cgroup,
            Err(e) => return failed(format!("cannot make its cgroup: {e}")),
        };
        let procs = match cgroup.as_deref().map(UnitCgroup::procs_for_child).transpose() {
            Ok(procs) => procs,
            Err(e) => return failed(format!("cannot open its cgroup.procs: {e}")),
        };
        let u = &self.machine.units()[unit];
        let service = &self.services[u.service];
        let mut command = spawn::command(
            &service.config,
            &self.env,
            service.identity.as_ref(),
            u.replica,
            procs.as_ref().map(|f| f.as_raw_fd()),
        );
        let spawned = self.reaper.spawn(&mut command);
        drop(procs);
        let (mut child, exit) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => return failed(format!("cannot start {:?}: {e}", service.config.command[0])),
        };
        let runtime = &mut self.units[unit];
        runtime.output.retain(|forwarder| !forwarder.is_finished());
        for (stream, fd) in [
            (Stream::Stdout, child.stdout.take().map(OwnedFd::from)),
            (Stream::Stderr, child.stderr.take().map(OwnedFd::from)),
        ] {
            if let Some(fd) = fd {
                let forwarder = output::forward(u.name.clone(), stream, fd, runtime.kept_output.clone());
                runtime.output.push(forwarder);
            }
        }
        let tx = self.tx.clone();
        let name = u.name.clone();
        tokio::spawn(async move {
            if let Ok(exit) = exit.await {
                // The unit is gone only once its cgroup is: whatever the main process left
                // behind, daemons that called setsid() included, is killed first.
                if let Some(cgroup) = cgroup {
                    let _ = cgroup.kill();
                    if !cgroup.wait_empty(cgroup::EMPTY_WITHIN).await {
                        tracing::warn!(
                            "{name}: processes left in its cgroup {:?} after SIGKILL",
                            cgroup::EMPTY_WITHIN
                        );
                    }
                }
                let exited = Event::Exited {
                    unit,
                    generation,
                    exit,
                };
                let _ = tx.send(Input::Event(exited));
            }
        });
        let pid = Pid::from_raw(child.id() as i32);
        Event::Spawned {
            unit,
            generation,
            pid,
        }
    }

    fn start_probes(&mut self, unit: UnitId, generation: u64) {
        let probes = self.services[self.machine.units()[unit].service].probes.clone();
        let tx = self.tx.clone();
        let task = runner::run(probes, self.reaper.clone(), move |event| {
            let probed = Event::Probe {
                unit,
                generation,
                event,
            };
            let _ = tx.send(Input::Event(probed));
        });
        if let Some(old) = self.units[unit]
            .probe_task
            .replace(tokio::spawn(task).abort_handle())
        {
            old.abort();
        }
    }

    /// The unit's cgroup, made at its first start (None: process groups only).
    fn unit_cgroup(&mut self, unit: UnitId) -> std::io::Result<Option<Arc<UnitCgroup>>> {
        let Some(cgroups) = &self.cgroups else {
            return Ok(None);
        };
        if let Some(cgroup) = &self.units[unit].cgroup {
            return Ok(Some(cgroup.clone()));
        }
        let u = &self.machine.units()[unit];
        let limits = limits(&self.services[u.service].config);
        let cgroup = Arc::new(cgroups.unit(&u.name, &limits)?);
        self.units[unit].cgroup = Some(cgroup.clone());
        Ok(Some(cgroup))
    }

    /// SIGKILL to everything the unit started: its cgroup, else its process group.
    fn kill_tree(&self, unit: UnitId, pid: Pid) {
        match &self.units[unit].cgroup {
            Some(cgroup) => {
                if let Err(e) = cgroup.kill() {
                    tracing::debug!("{}: cgroup.kill: {e}", self.machine.units()[unit].name);
                }
            }
            None => self.signal(unit, pid, Signal::SIGKILL, StopSignalTo::Group),
        }
    }

    fn signal(&self, unit: UnitId, pid: Pid, signal: Signal, to: StopSignalTo) {
        let sent = match (to, &self.units[unit].cgroup) {
            (StopSignalTo::Main, _) => kill(pid, signal),
            (StopSignalTo::Group, Some(cgroup)) => {
                cgroup.signal_all(signal);
                Ok(())
            }
            (StopSignalTo::Group, None) => killpg(pid, signal),
        };
        if let Err(e) = sent {
            let name = &self.machine.units()[unit].name;
            tracing::debug!("{name}: {signal} to {to:?}: {e}");
        }
    }

    /// The units into the snapshot, with the stderr tails and dropped lines kept here. The phase is the
    /// supervisor's to set only while the instance starts or runs: once the boot walk has moved it
    /// on (stopping, failed), it stays.
    fn publish(&self, view: View) {
        let View {
            mut units,
            phase,
            reason,
        } = view;
        for (status, runtime) in units.iter_mut().zip(&self.units) {
            status.stderr_tail = runtime.kept_output.stderr_tail();
            status.dropped_lines = runtime.kept_output.dropped_lines();
            status.cgroup = runtime.cgroup.as_ref().map(|c| c.path().display().to_string());
        }
        self.shared.update(|snap| {
            snap.services = units;
            if matches!(snap.phase, Phase::Starting | Phase::Ready | Phase::Degraded) {
                snap.phase = phase;
                snap.reason = reason;
            }
        });
    }
}

/// The cgroup limits of each of the service's units.
pub fn limits(config: &ServiceConfig) -> Limits {
    Limits {
        memory_max: config.memory_max.map(|m| m.0),
        cpu_weight: config.cpu_weight,
        tasks_max: config.tasks_max,
    }
}

/// Resolves a service's identity and probes before anything starts.
fn service_runtime(config: &ServiceConfig, env: &FrozenEnv) -> Result<ServiceRuntime, String> {
    let identity = Identity::resolve(config).map_err(|e| format!("service {:?}: {e}", config.name))?;
    let probe_env: Vec<(String, String)> = env
        .vars()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(config.env.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect();
    let probe = |role: Role, c: &Option<crate::config::ProbeConfig>| {
        c.as_ref()
            .map(|c| Probe::new(role, c, probe_env.clone()))
            .transpose()
            .map_err(|e| format!("service {:?}: [service.{}] {e}", config.name, role.as_str()))
    };
    let probes = UnitProbes {
        startup: probe(Role::Startup, &config.startup)?,
        ready: probe(Role::Ready, &config.ready)?,
        live: probe(Role::Live, &config.live)?,
        ready_after: config.ready_after.get(),
    };
    Ok(ServiceRuntime {
        config: config.clone(),
        identity,
        probes,
    })
}

fn log(level: Level, line: &str) {
    match level {
        Level::Info => tracing::info!("{line}"),
        Level::Warn => tracing::warn!("{line}"),
        Level::Error => tracing::error!("{line}"),
    }
}
