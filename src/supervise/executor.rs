//! Performs what the machine decides, and nothing else: spawns through the reaper into each
//! unit's cgroup, signals, timers, probe tasks, the shared snapshot and sd_notify. Every fact it
//! learns (an exit, a probe event, a timer) goes back to the machine as an event, one at a time,
//! on one task. With cgroups, an exit is a fact only once the unit's cgroup is empty.

use super::fleet::{Coordination, Fleet};
use super::machine::{Effect, Event, Level, Machine, Milestone, Outcome, Standing, TaskPlan, UnitId};
use super::view;
use crate::cgroup::{Limits, ServiceTree, UnitCgroup};
use crate::config::{ServiceConfig, StopSignalTo, TaskConfig};
use crate::env::FrozenEnv;
use crate::metrics::{ProbeSeries, Recorder};
use crate::probe::runner::{self, CheckReport, ProbeEvent, UnitProbes};
use crate::probe::{Probe, Role};
use crate::process::output::{self, Stream, UnitOutput};
use crate::process::spawn::{self, Identity};
use crate::process::{Reaper, clone};
use crate::state::{BootStep, Phase, Shared, WarmState, now_ms};
use crate::systemd::Notifier;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};

mod tasks;

use tasks::with_last_lines;

/// How often the loop ticks when nothing happens (drives `/livez` and the watchdog).
const TICK: Duration = Duration::from_millis(500);
/// After the last service stopped, how long its output may take to reach the log: a stopped
/// group's pipes end at once, but a process that escaped the group may hold one open.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

enum Input {
    Event(Event),
    /// Stop every service gracefully; answer when all are gone.
    Stop(oneshot::Sender<()>),
    /// The fleet's answer to an `Effect::Coordinate`.
    Coordinated {
        unit: UnitId,
        generation: u64,
        coordination: Coordination,
    },
    /// The lease numbered `lease` of the unit was lost.
    LeaseLost {
        unit: UnitId,
        lease: u64,
        reason: String,
    },
}

/// What the boot walk holds to stop the supervisor, and to hear that a task failed for good.
#[derive(Clone)]
pub struct SupervisorHandle {
    tx: mpsc::UnboundedSender<Input>,
    failed: watch::Receiver<Option<String>>,
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

    /// Resolves once a task has failed for good: why the boot must be refused (the task, its
    /// exit, its last lines). Never resolves otherwise.
    pub async fn task_failed(&self) -> String {
        let mut failed = self.failed.clone();
        match failed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }
}

/// What the supervisor runs: the services, the tasks, and the fleet that coordinates the tasks
/// run once per fleet (None when no task needs it).
pub struct Units<'a> {
    pub services: &'a [ServiceConfig],
    pub tasks: &'a [TaskConfig],
    pub fleet: Option<Arc<dyn Fleet>>,
}

/// What the executor needs to start a service's (or a task's) processes.
struct ServiceRuntime {
    config: ServiceConfig,
    identity: Option<Identity>,
    probes: UnitProbes,
    /// A task's settings; None for a service.
    task: Option<TaskPlan>,
}

/// What the executor holds for one unit.
#[derive(Default)]
struct UnitRuntime {
    probe_task: Option<AbortHandle>,
    /// Its stderr tail, output rate limit and dropped lines, across restarts.
    kept_output: UnitOutput,
    /// The tasks forwarding its stdout and stderr into the log, until end of file.
    output: Vec<JoinHandle<()>>,
    /// Its cgroup, the same across restarts; None where services get process groups only.
    cgroup: Option<Arc<UnitCgroup>>,
    /// Where each of its probes' checks is counted for `/metrics`, by role.
    probe_series: Arc<[(Role, ProbeSeries)]>,
    /// A task's wait for the fleet's verdict, while it runs.
    coordinating: Option<AbortHandle>,
    /// Where the outcome of a run under the fleet's lease goes, while this instance holds it.
    lease: Option<oneshot::Sender<Outcome>>,
    /// Leases taken so far: a loss is about the current one only.
    leases: u64,
}

pub struct Supervisor {
    machine: Machine,
    services: Vec<ServiceRuntime>,
    units: Vec<UnitRuntime>,
    env: Arc<FrozenEnv>,
    reaper: Reaper,
    shared: Arc<Shared>,
    notifier: Arc<Notifier>,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    stop_waiters: Vec<oneshot::Sender<()>>,
    stopped: bool,
    fleet: Option<Arc<dyn Fleet>>,
    /// Why a task failed for good, once one has.
    failed: watch::Sender<Option<String>>,
    /// What runs between every service ready and `READY=1` (`[warm]`), until it starts.
    warm_up: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The warm-up while it runs.
    warm_task: Option<AbortHandle>,
}

impl Supervisor {
    /// Prepares the services; resolves users and probes, and makes each unit's cgroup in
    /// `cgroups` with its service's limits (`Err`: process groups only, and why). Each probe's
    /// checks are counted in `recorder`. Nothing is started yet.
    pub fn new(
        units: Units<'_>,
        env: Arc<FrozenEnv>,
        reaper: Reaper,
        cgroups: Result<&ServiceTree, &str>,
        shared: Arc<Shared>,
        recorder: &Recorder,
        notifier: Arc<Notifier>,
    ) -> Result<Supervisor, String> {
        let machine = Machine::new(units.services, units.tasks);
        let services = units
            .services
            .iter()
            .map(|config| service_runtime(config, None, &env))
            .chain(
                units
                    .tasks
                    .iter()
                    .map(|task| service_runtime(&task.process(), Some(task), &env)),
            )
            .collect::<Result<Vec<_>, _>>()?;
        let runtimes = machine
            .units()
            .iter()
            .map(|u| {
                let cgroup = unit_cgroup(&services[u.service], &u.name, cgroups)?;
                let service = &services[u.service];
                let probe_series = service
                    .probes
                    .roles()
                    .map(|role| {
                        let series = recorder.probe(&service.config.name, &u.name, role.as_str());
                        (role, series)
                    })
                    .collect();
                Ok(UnitRuntime {
                    cgroup: cgroup.map(Arc::new),
                    probe_series,
                    ..UnitRuntime::default()
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Supervisor {
            machine,
            services,
            units: runtimes,
            env,
            reaper,
            shared,
            notifier,
            tx,
            rx,
            stop_waiters: Vec::new(),
            stopped: false,
            fleet: units.fleet,
            failed: watch::Sender::new(None),
            warm_up: None,
            warm_task: None,
        })
    }

    /// Runs `task` once, when every service is ready the first time: until it ends the
    /// instance stays `Starting` ("warming up"), so `/readyz` answers 503, the load balancer is
    /// not joined and `READY=1` is not sent. A stop aborts it.
    pub fn warm_up_first(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.machine.warm_up_first();
        self.warm_up = Some(Box::pin(task));
    }

    pub fn handle(&self) -> SupervisorHandle {
        SupervisorHandle {
            tx: self.tx.clone(),
            failed: self.failed.subscribe(),
        }
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
                    Some(Input::Coordinated { unit, generation, coordination }) => {
                        self.coordinated(unit, generation, coordination)
                    }
                    Some(Input::LeaseLost { unit, lease, reason }) => self.lease_lost(unit, lease, reason),
                    None => return,
                },
                _ = tick.tick() => {}
            }
        }
        self.drain_output().await;
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    /// Waits (bounded) until the last lines the services wrote are in the log: an exit can be
    /// reaped before its process's final output has been read from the pipe.
    async fn drain_output(&mut self) {
        let forwarders: Vec<_> = self.units.iter_mut().flat_map(|u| u.output.drain(..)).collect();
        drain(forwarders).await;
    }

    /// Forwards the child's stdout and stderr into the log and the unit's kept output. A
    /// service's forwarders stay with the unit (drained at stop); a task's are returned, for its
    /// exit to wait on.
    fn forward_output(
        &mut self,
        unit: UnitId,
        name: &Arc<str>,
        [stdout, stderr]: [OwnedFd; 2],
        is_task: bool,
    ) -> Vec<JoinHandle<()>> {
        let runtime = &mut self.units[unit];
        runtime.output.retain(|forwarder| !forwarder.is_finished());
        let mut run_output = Vec::new();
        for (stream, fd) in [(Stream::Stdout, stdout), (Stream::Stderr, stderr)] {
            let forwarder = output::forward(name.clone(), stream, fd, runtime.kept_output.clone());
            match is_task {
                true => run_output.push(forwarder),
                false => runtime.output.push(forwarder),
            }
        }
        run_output
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
                    crate::timer::sleep(after).await;
                    let _ = tx.send(Input::Event(Event::Timer(timer)));
                });
            }
            Effect::Log { level, line } => log(level, &line),
            Effect::Incident { level, line } => {
                log(level, &line);
                self.shared.event(level.as_str(), line);
            }
            Effect::Timeline(Milestone::Begin(step)) => self.shared.phase_begin(step),
            Effect::Timeline(Milestone::Done(step)) => self.shared.phase_done(step),
            Effect::Publish(standing) => self.publish(standing),
            Effect::AnnounceReady => {
                // Unless the boot walk has begun a stop meanwhile.
                if self.shared.phase() == Phase::Ready {
                    self.shared.mark(BootStep::Ready);
                    self.notifier.notify("READY=1");
                }
            }
            Effect::StartWarmUp => self.start_warm_up(),
            Effect::StopWarmUp => {
                if let Some(task) = self.warm_task.take() {
                    task.abort();
                }
                self.shared.update(|s| {
                    if let Some(warm) = s.warm.as_mut().filter(|w| w.state == WarmState::Running) {
                        warm.state = WarmState::Stopped;
                    }
                });
            }
            Effect::Status(line) => self.notifier.status(&line),
            Effect::Stopped => self.stopped = true,
            Effect::Coordinate { unit, generation } => self.coordinate(unit, generation),
            Effect::StopCoordinating { unit } => {
                if let Some(waiting) = self.units[unit].coordinating.take() {
                    waiting.abort();
                }
            }
            Effect::Release { unit, outcome } => self.release(unit, outcome),
            Effect::TaskFailed { unit, reason } => {
                let reason = with_last_lines(reason, &self.units[unit].kept_output.stderr_tail());
                self.failed.send_replace(Some(reason));
            }
        }
        None
    }

    /// The warm-up on a task of its own; its end is an event like any other.
    fn start_warm_up(&mut self) {
        let Some(task) = self.warm_up.take() else {
            let _ = self.tx.send(Input::Event(Event::WarmedUp));
            return;
        };
        let tx = self.tx.clone();
        let handle = tokio::spawn(async move {
            task.await;
            let _ = tx.send(Input::Event(Event::WarmedUp));
        });
        self.warm_task = Some(handle.abort_handle());
    }

    /// Starts the unit's process with its output forwarded and its exit sent back as an event.
    fn spawn(&mut self, unit: UnitId, generation: u64) -> Event {
        let u = &self.machine.units()[unit];
        let service = &self.services[u.service];
        let cgroup = self.units[unit].cgroup.clone();
        let spawned =
            spawn::Launch::service(&service.config, &self.env, service.identity.as_ref(), u.replica)
                .and_then(|launch| spawn::spawn(&self.reaper, &launch, cgroup.as_deref()));
        let (child, exit) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                let reason = format!("cannot start {:?}: {e}", service.config.command[0]);
                return Event::SpawnFailed {
                    unit,
                    generation,
                    reason,
                };
            }
        };
        let is_task = service.task.is_some();
        let name = u.name.clone();
        let run_output = self.forward_output(unit, &name, [child.stdout, child.stderr], is_task);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Ok(exit) = exit.await {
                // What the main process left (its workers, a daemon that double-forked out of
                // its group) goes too, and the unit is gone only once its cgroup is empty.
                if let Some(cgroup) = cgroup {
                    cgroup.end_run(&name).await;
                }
                // A task's exit may end the boot with its last lines as the reason: they are
                // read from the pipe first (an exit can be reaped before its final output).
                drain(run_output).await;
                let exited = Event::Exited {
                    unit,
                    generation,
                    exit,
                };
                let _ = tx.send(Input::Event(exited));
            }
        });
        Event::Spawned {
            unit,
            generation,
            pid: child.pid,
        }
    }

    fn start_probes(&mut self, unit: UnitId, generation: u64) {
        let probes = self.services[self.machine.units()[unit].service].probes.clone();
        let tx = self.tx.clone();
        let series = self.units[unit].probe_series.clone();
        let task = runner::run(probes, self.reaper.clone(), move |event| {
            if let ProbeEvent::Report(report) = &event {
                record_check(&series, report);
            }
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

    /// `signal` to the main process, or to every process of the unit: its cgroup, or its
    /// process group without one.
    fn signal(&self, unit: UnitId, pid: Pid, signal: Signal, to: StopSignalTo) {
        let sent = match (to, &self.units[unit].cgroup) {
            (StopSignalTo::Main, _) => kill(pid, signal).map_err(std::io::Error::from),
            (StopSignalTo::Group, Some(cgroup)) => cgroup.signal(signal),
            (StopSignalTo::Group, None) => killpg(pid, signal).map_err(std::io::Error::from),
        };
        if let Err(e) = sent {
            let name = &self.machine.units()[unit].name;
            tracing::debug!("{name}: {signal} to {to:?}: {e}");
        }
    }

    /// SIGKILL to everything the unit runs: its cgroup (`cgroup.kill`), or its process group.
    fn kill_tree(&self, unit: UnitId, pid: Pid) {
        let killed = match &self.units[unit].cgroup {
            Some(cgroup) => cgroup.kill(),
            None => killpg(pid, Signal::SIGKILL).map_err(std::io::Error::from),
        };
        if let Err(e) = killed {
            let name = &self.machine.units()[unit].name;
            tracing::debug!("{name}: SIGKILL to everything it runs: {e}");
        }
    }

    /// The units into the snapshot, with the stderr tails and dropped lines kept here. The phase is the
    /// supervisor's to set only while the instance starts or runs: once the boot walk has moved it
    /// on (stopping, failed), it stays.
    fn publish(&self, standing: Standing) {
        let Standing { phase, reason } = standing;
        let mut units = view::units(&self.machine);
        for (status, runtime) in units.iter_mut().zip(&self.units) {
            status.stderr_tail = runtime.kept_output.stderr_tail();
            status.dropped_lines = runtime.kept_output.dropped_lines();
            status.cgroup = runtime.cgroup.as_ref().map(|c| c.dir().display().to_string());
        }
        self.shared.update(|snap| {
            // The fallback may have been taken since the boot (`process::spawn`).
            if let Some(spawn) = snap.containment.as_mut().and_then(|c| c.spawn.as_mut()) {
                *spawn = clone::path().status();
            }
            snap.services = units;
            if matches!(snap.phase, Phase::Starting | Phase::Ready | Phase::Degraded) {
                snap.phase = phase;
                snap.reason = reason;
            }
        });
    }
}

/// The cgroup of one unit of `service`, with its limits. A limit without a cgroup to hold it
/// refuses the boot, as a limit without its controller does (`ServiceTree::unit`).
fn unit_cgroup(
    service: &ServiceRuntime,
    unit: &str,
    cgroups: Result<&ServiceTree, &str>,
) -> Result<Option<UnitCgroup>, String> {
    let config = &service.config;
    let limits = Limits::of(config);
    let what = what(service.task.is_some());
    let refused = |e: String| format!("{what} {:?}: {e}", config.name);
    match cgroups {
        Ok(tree) => tree.unit(unit, &limits).map(Some).map_err(refused),
        Err(_) if limits.is_empty() => Ok(None),
        Err(why) => {
            let keys: Vec<&str> = limits.settings().iter().map(|s| s.key).collect();
            Err(refused(format!(
                "{} needs a cgroup, and kiln holds services in process groups only ({why}); a limit kiln cannot apply is refused, not ignored",
                keys.join(", ")
            )))
        }
    }
}

/// Resolves a service's (or a task's) identity and probes before anything starts.
fn service_runtime(
    config: &ServiceConfig,
    task: Option<&TaskConfig>,
    env: &FrozenEnv,
) -> Result<ServiceRuntime, String> {
    let what = what(task.is_some());
    let identity = Identity::resolve(config).map_err(|e| format!("{what} {:?}: {e}", config.name))?;
    // An exec probe runs as part of its service: it sees what `env_allow` gives the service.
    let probe_env: Vec<(String, String)> = env
        .for_service(config.env_allow.as_deref())
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
        task: task.map(TaskPlan::of),
    })
}

/// `service` or `task`, for messages.
fn what(task: bool) -> &'static str {
    if task { "task" } else { "service" }
}

/// One probe check into its unit's series (the machine only keeps the last one, for status).
fn record_check(series: &[(Role, ProbeSeries)], report: &CheckReport) {
    if let Some((_, series)) = series.iter().find(|(role, _)| *role == report.role) {
        series.record(report.latency, report.ok);
    }
}

fn log(level: Level, line: &str) {
    match level {
        Level::Info => tracing::info!("{line}"),
        Level::Warn => tracing::warn!("{line}"),
        Level::Error => tracing::error!("{line}"),
    }
}

/// Waits for `forwarders` to reach the end of their pipes, at most [`OUTPUT_DRAIN`].
async fn drain(forwarders: Vec<JoinHandle<()>>) {
    let drained = async {
        for forwarder in forwarders {
            let _ = forwarder.await;
        }
    };
    if tokio::time::timeout(OUTPUT_DRAIN, drained).await.is_err() {
        tracing::debug!("output of a stopped unit still open after {OUTPUT_DRAIN:?}");
    }
}
