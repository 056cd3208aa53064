//! Every decision of the supervisor, as a pure state machine: [`Machine::step`] takes one
//! [`Event`] and the wall-clock time, changes the units, and returns the [`Effect`]s the executor
//! must perform, in order. No processes, no tokio, no clock reads: the transitions are tested as
//! tables (`machine/tests.rs`).
//!
//! A spawn is answered at once: after [`Effect::Spawn`] the executor feeds back
//! [`Event::Spawned`] or [`Event::SpawnFailed`] before any other event.
//!
//! Tasks (`[[task]]`) are units too, whose exit 0 is their completion (`task.rs`): they run
//! without probes, under a timeout, retried with backoff, and a task run once per fleet first
//! asks the fleet ([`Effect::Coordinate`]) whether to run at all.

mod task;

use super::unit::{Ending, LastCheck, SETTLE_AFTER, TaskRun, Unit};
use crate::config::{Once, RestartPolicy, ServiceConfig, StopSignalTo, TaskConfig};
use crate::probe::runner::ProbeEvent;
use crate::process::Exit;
use crate::state::{BootStep, Phase, UnitState};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::ops::Range;
use std::time::Duration;

/// Index of a unit in the machine.
pub type UnitId = usize;

/// Something that happened to the supervisor.
#[derive(Debug, Clone)]
pub enum Event {
    /// The supervisor begins: start what can start.
    Start,
    /// The process asked for by [`Effect::Spawn`] runs.
    Spawned {
        unit: UnitId,
        generation: u64,
        pid: Pid,
    },
    /// The process asked for by [`Effect::Spawn`] could not be started; why, in words.
    SpawnFailed {
        unit: UnitId,
        generation: u64,
        reason: String,
    },
    /// The unit's main process exited and (with cgroups) its cgroup is empty: nothing of the
    /// unit runs any more. `exit` is the main process's.
    Exited {
        unit: UnitId,
        generation: u64,
        exit: Exit,
    },
    Probe {
        unit: UnitId,
        generation: u64,
        event: ProbeEvent,
    },
    Timer(Timer),
    /// The fleet's word on a task run once per fleet: the answer to [`Effect::Coordinate`].
    Coordinated {
        unit: UnitId,
        generation: u64,
        verdict: Verdict,
    },
    /// How a task's wait for the fleet stands (`i-0002 holds the lease`), for status.
    FleetWords {
        unit: UnitId,
        generation: u64,
        words: String,
    },
    /// The lease of a task was lost while this instance held it (renewals failed until it
    /// expired, or another instance holds it now): this run must end at once.
    LeaseLost {
        unit: UnitId,
        generation: u64,
        reason: String,
    },
    /// The warm-up asked for by [`Effect::StartWarmUp`] is over (however it went).
    WarmedUp,
    /// Stop every service gracefully, in reverse dependency order.
    Stop,
    /// The second stop request: kill every service now.
    KillAll,
}

/// A timer about one process of a unit; it is ignored once that process is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    pub unit: UnitId,
    pub generation: u64,
    pub kind: TimerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// The backoff delay has passed: start the unit again.
    Restart,
    /// The stop signal was sent `stop_timeout` ago.
    StopTimeout,
    /// The process has run for [`SETTLE_AFTER`]: a crash loop is over.
    Settled,
    /// A task's attempt has run for its `timeout`.
    TaskTimeout,
}

/// What the fleet says about a task run once per fleet, for this release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This instance holds the lease: run the task.
    Run,
    /// Another instance ran it, and it succeeded.
    Done { by: String },
    /// Another instance ran it, and it failed for good: its reason.
    Failed { by: String, reason: String },
    /// No word: the store could not be used, or the holder took longer than it may.
    Unavailable(String),
}

/// How a task's run ended, for the fleet's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed for good; why (the exit), as the others will show it.
    Failed(String),
    /// Stopped before an outcome (kiln stops): another instance may take over at once.
    Abandoned,
}

/// How loud a log line or incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// A phase of the boot timeline: a service's start, from its first spawn (`Begin`) until it is
/// ready (`Done`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Milestone {
    Begin(BootStep),
    Done(BootStep),
}

/// Where the instance stands after a step. The units as status shows them are the executor's
/// to describe (`view`): the machine only decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Starting, Ready, Degraded or Stopping.
    pub phase: Phase,
    /// Why the instance is not ready; None when it is.
    pub reason: Option<String>,
}

/// Something the executor must do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Start a process for the unit; answer with `Spawned` or `SpawnFailed`.
    Spawn {
        unit: UnitId,
        generation: u64,
    },
    /// Run the unit's probes for this process; their events carry the generation.
    StartProbes {
        unit: UnitId,
        generation: u64,
    },
    /// Abort the unit's probes, and whatever a check has open.
    StopProbes {
        unit: UnitId,
    },
    /// A signal to the unit's main process, or to every process of the unit (its cgroup, or its
    /// process group without cgroups).
    Signal {
        unit: UnitId,
        pid: Pid,
        signal: Signal,
        to: StopSignalTo,
    },
    /// SIGKILL to everything the unit runs: its cgroup (`cgroup.kill`), or its process group
    /// without cgroups.
    KillTree {
        unit: UnitId,
        pid: Pid,
    },
    /// Deliver `Event::Timer(timer)` after `after`.
    StartTimer {
        after: Duration,
        timer: Timer,
    },
    /// A line for kiln's log.
    Log {
        level: Level,
        line: String,
    },
    /// A line for kiln's log that also goes into the recent events of `kiln status`.
    Incident {
        level: Level,
        line: String,
    },
    Timeline(Milestone),
    /// Write where the instance stands, and the units as they are now, into the snapshot.
    Publish(Standing),
    /// Every service is ready for the first time, and a warm-up waits for that: run it, and
    /// answer with [`Event::WarmedUp`].
    StartWarmUp,
    /// A stop came during the warm-up: abort it.
    StopWarmUp,
    /// Every service is ready for the first time (and warmed up): `READY=1`.
    AnnounceReady,
    /// A new systemd status line.
    Status(String),
    /// Every unit has stopped after a stop request.
    Stopped,
    /// Take the fleet's lease of the task for this release, or wait for the instance that holds
    /// it; answer with [`Event::Coordinated`].
    Coordinate {
        unit: UnitId,
        generation: u64,
    },
    /// Stop taking the lease or waiting for it (kiln stops).
    StopCoordinating {
        unit: UnitId,
    },
    /// The run under the lease is over: record its outcome in the store, let the lease go.
    Release {
        unit: UnitId,
        outcome: Outcome,
    },
    /// A task failed for good: the boot is refused, for this reason.
    TaskFailed {
        unit: UnitId,
        reason: String,
    },
}

/// A task's own settings, beside its process's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPlan {
    pub timeout: Duration,
    /// 1 + `retries`.
    pub attempts: u32,
    pub once: Once,
}

impl TaskPlan {
    pub fn of(task: &TaskConfig) -> TaskPlan {
        TaskPlan {
            timeout: task.timeout.get(),
            attempts: task.retries.saturating_add(1),
            once: task.once,
        }
    }
}

/// One `[[service]]` or `[[task]]` and the units it runs (a task runs one).
#[derive(Debug)]
struct Service {
    /// A task's as [`TaskConfig::process`] gives it.
    config: ServiceConfig,
    /// Some for a task.
    task: Option<TaskPlan>,
    /// Indexes of the services this one waits for.
    after: Vec<usize>,
    units: Range<UnitId>,
    started: bool,
    ready_once: bool,
}

/// The warm-up between every service ready and `READY=1` (`[warm]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WarmUp {
    /// None configured: ready is ready.
    None,
    /// Waits for every service to be ready the first time.
    Waiting,
    Running,
    /// Over (done, timed out or stopped): it never runs again.
    Over,
}

/// The supervisor's state: every service and unit, and where the instance is.
#[derive(Debug)]
pub struct Machine {
    services: Vec<Service>,
    units: Vec<Unit>,
    stopping: bool,
    stopped: bool,
    ready_announced: bool,
    warm_up: WarmUp,
    status_line: String,
    /// A task failed for good: nothing more starts (the boot is refused).
    failed: bool,
    /// The time of the step being taken (wall clock ms).
    now_ms: u64,
}

/// The effects of one step, in order.
type Effects = Vec<Effect>;

fn log(out: &mut Effects, level: Level, line: String) {
    out.push(Effect::Log { level, line });
}

fn incident(out: &mut Effects, level: Level, line: String) {
    out.push(Effect::Incident { level, line });
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Machine {
    /// The services and tasks of a config the config checks accepted (`after` names existing
    /// services or tasks).
    pub fn new(services: &[ServiceConfig], tasks: &[TaskConfig]) -> Machine {
        let configs: Vec<(ServiceConfig, Option<TaskPlan>)> = services
            .iter()
            .map(|s| (s.clone(), None))
            .chain(tasks.iter().map(|t| (t.process(), Some(TaskPlan::of(t)))))
            .collect();
        let mut all = Vec::new();
        let mut units = Vec::new();
        for (index, (config, task)) in configs.iter().enumerate() {
            let after = config
                .after
                .iter()
                .filter_map(|name| configs.iter().position(|(c, _)| &c.name == name))
                .collect();
            let first = units.len();
            for replica in 1..=config.replicas {
                let mut unit = Unit::new(index, &config.name, replica, config.replicas);
                unit.task = task.map(|_| TaskRun::default());
                units.push(unit);
            }
            all.push(Service {
                config: config.clone(),
                task: *task,
                after,
                units: first..units.len(),
                started: false,
                ready_once: false,
            });
        }
        Machine {
            services: all,
            units,
            stopping: false,
            stopped: false,
            ready_announced: false,
            warm_up: WarmUp::None,
            status_line: String::new(),
            failed: false,
            now_ms: 0,
        }
    }

    /// The first time every service is ready, warm up before the instance counts as ready: it
    /// stays `Starting` ("warming up") until [`Event::WarmedUp`].
    pub fn warm_up_first(&mut self) {
        self.warm_up = WarmUp::Waiting;
    }

    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// The name of the unit's service.
    pub fn service_name(&self, unit: &Unit) -> &str {
        &self.services[unit.service].config.name
    }

    /// The unit's task settings; None for a service's unit.
    pub fn task_plan(&self, unit: &Unit) -> Option<TaskPlan> {
        self.services[unit.service].task
    }

    /// Handles one event at `now_ms` (wall clock, ms since the epoch).
    pub fn step(&mut self, event: Event, now_ms: u64) -> Vec<Effect> {
        let mut out = Effects::new();
        self.now_ms = now_ms;
        match event {
            Event::Start => {}
            Event::Spawned {
                unit,
                generation,
                pid,
            } if self.current(unit, generation) => self.on_spawned(unit, pid, now_ms, &mut out),
            Event::SpawnFailed {
                unit,
                generation,
                reason,
            } if self.current(unit, generation) => self.on_spawn_failed(unit, reason, now_ms, &mut out),
            Event::Exited {
                unit,
                generation,
                exit,
            } if self.current(unit, generation) => self.on_exit(unit, exit, now_ms, &mut out),
            Event::Probe {
                unit,
                generation,
                event,
            } if self.current(unit, generation) => self.on_probe(unit, event, now_ms, &mut out),
            Event::Timer(timer) if self.current(timer.unit, timer.generation) => {
                self.on_timer(timer, &mut out)
            }
            Event::Coordinated {
                unit,
                generation,
                verdict,
            } if self.current(unit, generation) => self.on_coordinated(unit, verdict, &mut out),
            Event::LeaseLost {
                unit,
                generation,
                reason,
            } if self.current(unit, generation) => self.on_lease_lost(unit, reason, &mut out),
            Event::FleetWords {
                unit,
                generation,
                words,
            } if self.current(unit, generation) => self.on_fleet_words(unit, words),
            Event::WarmedUp if self.warm_up == WarmUp::Running => {
                self.warm_up = WarmUp::Over;
                out.push(Effect::Timeline(Milestone::Done(BootStep::Warm)));
            }
            Event::Stop => self.on_stop(&mut out),
            Event::KillAll => self.kill_all(&mut out),
            _ => {} // about an older process of the unit
        }
        self.settle(&mut out);
        out
    }

    fn current(&self, unit: UnitId, generation: u64) -> bool {
        self.units[unit].generation == generation
    }

    fn config(&self, unit: UnitId) -> &ServiceConfig {
        &self.services[self.units[unit].service].config
    }

    fn on_spawned(&mut self, unit: UnitId, pid: Pid, now_ms: u64, out: &mut Effects) {
        if self.units[unit].task.is_some() {
            return self.on_task_spawned(unit, pid, now_ms, out);
        }
        let u = &mut self.units[unit];
        u.pid = Some(pid);
        u.since_ms = Some(now_ms);
        log(out, Level::Info, format!("{}: started (pid {pid})", u.name));
        let generation = u.generation;
        out.push(Effect::StartProbes { unit, generation });
        out.push(Effect::StartTimer {
            after: SETTLE_AFTER,
            timer: Timer {
                unit,
                generation,
                kind: TimerKind::Settled,
            },
        });
    }

    fn on_spawn_failed(&mut self, unit: UnitId, reason: String, now_ms: u64, out: &mut Effects) {
        incident(out, Level::Error, format!("{}: {reason}", self.units[unit].name));
        self.units[unit].last_exit = Some(Ending::NotStarted(reason));
        if self.units[unit].task.is_some() {
            return self.task_failed_attempt(unit, now_ms, out);
        }
        self.after_failure(unit, now_ms, out);
    }

    fn on_exit(&mut self, unit: UnitId, exit: Exit, now_ms: u64, out: &mut Effects) {
        let u = &mut self.units[unit];
        out.push(Effect::StopProbes { unit });
        u.ready = false;
        // Whatever the main process left behind (php-fpm children, nginx workers) goes too, so
        // that a restart never runs beside leftovers.
        if let Some(pid) = u.pid.take() {
            out.push(Effect::KillTree { unit, pid });
        }
        if u.state == UnitState::Stopping || self.stopping {
            u.state = UnitState::Stopped;
            log(out, Level::Info, format!("{}: stopped ({exit})", u.name));
            self.release(unit, Outcome::Abandoned, out);
            return;
        }
        let ending = match u.kill_reason.take() {
            Some(reason) => Ending::Killed(reason),
            None => Ending::Exited(exit),
        };
        if u.task.is_some() {
            return self.on_task_exit(unit, ending, now_ms, out);
        }
        let policy = self.services[u.service].config.restart;
        let finished = match policy {
            RestartPolicy::Never => true,
            RestartPolicy::OnFailure => ending.success(),
            RestartPolicy::Always => false,
        };
        let line = format!("{}: exited ({ending})", u.name);
        if finished {
            let level = if ending.success() {
                Level::Info
            } else {
                Level::Error
            };
            let policy = policy_name(policy);
            incident(out, level, format!("{line}; restart = {policy}: not restarted"));
            u.state = UnitState::Exited;
            u.last_exit = Some(ending);
            return;
        }
        incident(out, Level::Warn, line);
        u.last_exit = Some(ending);
        self.after_failure(unit, now_ms, out);
    }

    /// Schedules the next start of a unit whose process ended, with capped exponential backoff.
    fn after_failure(&mut self, unit: UnitId, now_ms: u64, out: &mut Effects) {
        let config = &self.services[self.units[unit].service].config;
        let (first, max) = (config.restart_delay.get(), config.restart_delay_max.get());
        let u = &mut self.units[unit];
        u.failures_in_a_row = u.failures_in_a_row.saturating_add(1);
        u.restarts = u.restarts.saturating_add(1);
        let delay = u.backoff(first, max);
        u.state = UnitState::Backoff;
        u.next_restart_ms = Some(now_ms.saturating_add(millis(delay)));
        if u.crash_loop() {
            log(
                out,
                Level::Warn,
                format!(
                    "{}: crash loop ({} failures in a row), next start in {}",
                    u.name,
                    u.failures_in_a_row,
                    humantime::format_duration(delay)
                ),
            );
        }
        let timer = Timer {
            unit,
            generation: u.generation,
            kind: TimerKind::Restart,
        };
        out.push(Effect::StartTimer { after: delay, timer });
    }

    fn on_probe(&mut self, unit: UnitId, event: ProbeEvent, now_ms: u64, out: &mut Effects) {
        match event {
            ProbeEvent::Report(report) => {
                self.units[unit].last_check = Some(LastCheck {
                    report,
                    at_ms: now_ms,
                });
            }
            ProbeEvent::StartupPassed => self.on_startup_passed(unit, now_ms, out),
            ProbeEvent::Ready(ready, detail) => self.on_ready(unit, ready, &detail, out),
            ProbeEvent::StartupFailed(reason) | ProbeEvent::LiveFailed(reason) => {
                self.kill_for(unit, reason, out)
            }
        }
    }

    fn on_startup_passed(&mut self, unit: UnitId, now_ms: u64, out: &mut Effects) {
        let u = &mut self.units[unit];
        if u.state != UnitState::Starting {
            return;
        }
        u.state = UnitState::Running;
        // A run that lasted long before its startup probe passed has settled already.
        let ran = now_ms.saturating_sub(u.since_ms.unwrap_or(now_ms));
        if ran >= millis(SETTLE_AFTER) {
            settle_unit(u, out);
        }
    }

    /// Readiness changes are logged only for a ready probe (`ready_after` is not news).
    fn on_ready(&mut self, unit: UnitId, ready: bool, detail: &str, out: &mut Effects) {
        let has_ready_probe = self.config(unit).ready.is_some();
        let u = &mut self.units[unit];
        if u.ready != ready && has_ready_probe {
            if ready {
                log(out, Level::Info, format!("{}: ready ({detail})", u.name));
            } else {
                incident(out, Level::Warn, format!("{}: not ready: {detail}", u.name));
            }
        }
        u.ready = ready;
    }

    /// A startup or liveness probe gave up on the unit: kill it, and remember why.
    fn kill_for(&mut self, unit: UnitId, reason: String, out: &mut Effects) {
        let u = &mut self.units[unit];
        if u.state == UnitState::Stopping {
            return;
        }
        incident(out, Level::Warn, format!("{}: {reason}: restarting", u.name));
        u.kill_reason = Some(reason);
        if let Some(pid) = u.pid {
            out.push(Effect::KillTree { unit, pid });
        }
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Effects) {
        let unit = timer.unit;
        match timer.kind {
            TimerKind::Restart => {
                if self.units[unit].state == UnitState::Backoff && !self.stopping {
                    self.spawn(unit, out);
                }
            }
            TimerKind::StopTimeout => {
                let timeout = self.config(unit).stop_timeout;
                let u = &self.units[unit];
                // A task stopped at its timeout is still Running, with the reason it is killed.
                let stopping = u.state == UnitState::Stopping
                    || (u.task.is_some() && u.state == UnitState::Running && u.kill_reason.is_some());
                if let (true, Some(pid)) = (stopping, u.pid) {
                    let line = format!(
                        "{}: still running {timeout} after the stop signal: SIGKILL",
                        u.name
                    );
                    incident(out, Level::Warn, line);
                    out.push(Effect::KillTree { unit, pid });
                }
            }
            TimerKind::Settled => {
                let u = &mut self.units[unit];
                if u.state == UnitState::Running {
                    settle_unit(u, out);
                }
            }
            TimerKind::TaskTimeout => self.on_task_timeout(unit, out),
        }
    }

    fn spawn(&mut self, unit: UnitId, out: &mut Effects) {
        let u = &mut self.units[unit];
        u.generation += 1;
        u.next_restart_ms = None;
        u.ready = false;
        u.pid = None;
        u.kill_reason = None;
        u.state = UnitState::Starting;
        out.push(Effect::Spawn {
            unit,
            generation: u.generation,
        });
    }

    fn on_stop(&mut self, out: &mut Effects) {
        if !self.stopping {
            self.stopping = true;
            self.cancel_pending(out);
        }
    }

    fn kill_all(&mut self, out: &mut Effects) {
        log(
            out,
            Level::Warn,
            "second stop request: SIGKILL to every service".into(),
        );
        self.stopping = true;
        self.cancel_pending(out);
        for (unit, u) in self.units.iter_mut().enumerate() {
            if u.is_live() {
                out.push(Effect::StopProbes { unit });
                u.ready = false;
                u.state = UnitState::Stopping;
                if let Some(pid) = u.pid {
                    out.push(Effect::KillTree { unit, pid });
                }
            }
        }
    }

    /// Units without a process are done at once when a stop begins: a task waiting for the
    /// fleet stops waiting, one between two attempts lets its lease go.
    fn cancel_pending(&mut self, out: &mut Effects) {
        for unit in 0..self.units.len() {
            let u = &mut self.units[unit];
            match u.state {
                UnitState::Waiting | UnitState::Backoff => {
                    u.state = UnitState::Stopped;
                    u.next_restart_ms = None;
                    self.release(unit, Outcome::Abandoned, out);
                }
                UnitState::Coordinating => {
                    u.state = UnitState::Stopped;
                    out.push(Effect::StopCoordinating { unit });
                }
                _ => {}
            }
        }
    }

    /// What follows from any event: starts, stops, readiness, the published view.
    fn settle(&mut self, out: &mut Effects) {
        if self.stopping {
            if self.warm_up == WarmUp::Running {
                out.push(Effect::StopWarmUp);
                out.push(Effect::Timeline(Milestone::Done(BootStep::Warm)));
            }
            self.warm_up = WarmUp::Over;
            self.stop_what_can_stop(out);
        } else {
            self.start_what_can_start(out);
        }
        self.publish(out);
        if self.stopping && !self.stopped && self.units.iter().all(|u| !u.is_live()) {
            self.stopped = true;
            out.push(Effect::Stopped);
        }
    }

    /// Starts every service and task whose `after` services are all ready (and tasks done);
    /// nothing once a task failed for good.
    fn start_what_can_start(&mut self, out: &mut Effects) {
        for s in 0..self.services.len() {
            let service = &self.services[s];
            if self.failed || service.started || !service.after.iter().all(|&d| self.service_ready(d)) {
                continue;
            }
            self.services[s].started = true;
            out.push(Effect::Timeline(Milestone::Begin(self.boot_step(s))));
            for unit in self.services[s].units.clone() {
                match self.services[s].task {
                    Some(plan) => self.begin_task(unit, plan, out),
                    None => self.spawn(unit, out),
                }
            }
        }
    }

    /// The service's or task's phase on the boot timeline.
    fn boot_step(&self, service: usize) -> BootStep {
        let s = &self.services[service];
        match s.task {
            Some(_) => BootStep::Task(s.config.name.clone()),
            None => BootStep::Start(s.config.name.clone()),
        }
    }

    /// Signals every service whose dependents have all stopped (reverse dependency order).
    fn stop_what_can_stop(&mut self, out: &mut Effects) {
        for s in 0..self.services.len() {
            let dependents_gone = self
                .services
                .iter()
                .filter(|other| other.after.contains(&s))
                .all(|other| self.units[other.units.clone()].iter().all(|u| !u.is_live()));
            if dependents_gone {
                for unit in self.services[s].units.clone() {
                    self.begin_stop(unit, out);
                }
            }
        }
    }

    /// The stop signal, then SIGCONT to the whole group (a stopped process acts on a signal only
    /// once continued, and workers must act on the one their master passes on), and the timer
    /// after which the unit is killed.
    fn begin_stop(&mut self, unit: UnitId, out: &mut Effects) {
        let config = &self.services[self.units[unit].service].config;
        let (signal, to, timeout) = (
            config.stop_signal.0,
            config.stop_signal_to,
            config.stop_timeout.get(),
        );
        let u = &mut self.units[unit];
        if !matches!(u.state, UnitState::Starting | UnitState::Running) {
            return;
        }
        out.push(Effect::StopProbes { unit });
        u.ready = false;
        u.state = UnitState::Stopping;
        let target = match to {
            StopSignalTo::Main => "",
            StopSignalTo::Group => " to its process group",
        };
        log(
            out,
            Level::Info,
            format!("{}: stopping ({}{target})", u.name, signal.as_str()),
        );
        signal_then_kill_timer(out, unit, u.generation, u.pid, (signal, to), timeout);
    }

    fn service_ready(&self, service: usize) -> bool {
        self.units[self.services[service].units.clone()]
            .iter()
            .all(|u| u.counts_as_ready(self.completed_ok(u)))
    }

    /// A unit that exited and is not restarted counts as ready when its exit was a success its
    /// restart policy accepts (a one-shot job that finished).
    fn completed_ok(&self, u: &Unit) -> bool {
        u.state == UnitState::Exited
            && self.services[u.service].config.restart == RestartPolicy::OnFailure
            && u.last_exit.as_ref().is_some_and(Ending::success)
    }

    /// Timeline milestones, where the instance stands, READY=1 the first time everything is ready, and the
    /// systemd status line when it changes.
    fn publish(&mut self, out: &mut Effects) {
        for s in 0..self.services.len() {
            if !self.services[s].ready_once && self.service_ready(s) {
                self.services[s].ready_once = true;
                out.push(Effect::Timeline(Milestone::Done(self.boot_step(s))));
            }
        }
        let all_ready = (0..self.services.len()).all(|s| self.service_ready(s));
        if all_ready && !self.stopping && self.warm_up == WarmUp::Waiting {
            self.warm_up = WarmUp::Running;
            let line = format!(
                "all {} services ready: warming up before READY=1",
                self.services.len()
            );
            log(out, Level::Info, line);
            out.push(Effect::Timeline(Milestone::Begin(BootStep::Warm)));
            out.push(Effect::StartWarmUp);
        }
        let warming = self.warm_up == WarmUp::Running;
        let reason = match (all_ready, warming) {
            (false, _) => Some(self.not_ready_reason()),
            (true, true) => Some("warming up (kiln status: warm-up)".to_string()),
            (true, false) => None,
        };
        let phase = match (self.stopping, all_ready && !warming, self.ready_announced) {
            (true, _, _) => Phase::Stopping,
            (false, true, _) => Phase::Ready,
            (false, false, true) => Phase::Degraded,
            (false, false, false) => Phase::Starting,
        };
        out.push(Effect::Publish(Standing {
            phase,
            reason: reason.clone(),
        }));
        if phase == Phase::Ready && !self.ready_announced {
            self.ready_announced = true;
            let services = self.services.iter().filter(|s| s.task.is_none()).count();
            let line = match self.services.len() - services {
                0 => format!("all {services} services ready"),
                tasks => format!("all {services} services ready, {tasks} tasks done"),
            };
            log(out, Level::Info, line);
            out.push(Effect::AnnounceReady);
        }
        let phase_name = format!("{phase:?}").to_lowercase();
        let serving = self.units.iter().filter(|u| u.task.is_none()).count();
        let line = match (phase, reason) {
            (Phase::Ready, _) => format!("ready: {serving} units"),
            (_, Some(reason)) => format!("{phase_name}: {reason}"),
            (_, None) => phase_name,
        };
        if line != self.status_line {
            self.status_line = line.clone();
            out.push(Effect::Status(line));
        }
    }

    /// The services in the `after` of `service` that are not ready.
    pub fn not_ready_dependencies(&self, service: usize) -> Vec<String> {
        self.services[service]
            .after
            .iter()
            .filter(|&&d| !self.service_ready(d))
            .map(|&d| self.services[d].config.name.clone())
            .collect()
    }

    /// The first thing standing between the instance and ready, in words.
    fn not_ready_reason(&self) -> String {
        let mut reasons = self
            .units
            .iter()
            .filter(|u| !u.counts_as_ready(self.completed_ok(u)))
            .map(|u| self.why_not_ready(u));
        let first = reasons.next().unwrap_or_default();
        match reasons.count() {
            0 => first,
            more => format!("{first} (+{more} more)"),
        }
    }

    pub(super) fn why_not_ready(&self, u: &Unit) -> String {
        let last = u
            .last_exit
            .as_ref()
            .map_or_else(|| "no exit yet".to_string(), ToString::to_string);
        let name = &u.name;
        if u.task.is_some() {
            return self.why_task_not_done(u, &last);
        }
        match u.state {
            _ if u.crash_loop() => format!("{name} crash-looping: {last} ({} restarts)", u.restarts),
            UnitState::Waiting => {
                let deps = self.not_ready_dependencies(u.service).join(", ");
                format!("{name} waiting for {deps}")
            }
            UnitState::Starting => format!("{name} starting"),
            UnitState::Running => match &u.last_check {
                Some(check) if !check.report.ok => format!("{name} not ready: {}", check.report.detail),
                _ => format!("{name} not ready yet"),
            },
            UnitState::Backoff => format!("{name} restarting after {last}"),
            UnitState::Exited => format!("{name} exited ({last}) and is not restarted"),
            UnitState::Stopping | UnitState::Stopped => format!("{name} stopped"),
            UnitState::Coordinating | UnitState::Done | UnitState::Failed => format!("{name} {:?}", u.state),
        }
    }
}

/// A run lasted: the failure count starts again from zero.
fn settle_unit(u: &mut Unit, out: &mut Effects) {
    if u.failures_in_a_row == 0 {
        return;
    }
    if u.crash_loop() {
        let line = format!(
            "{}: stable again after {} failures in a row",
            u.name, u.failures_in_a_row
        );
        log(out, Level::Info, line);
    }
    u.failures_in_a_row = 0;
}

fn policy_name(policy: RestartPolicy) -> &'static str {
    match policy {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "never",
    }
}

/// `signal` to the unit, SIGCONT to its whole group (a stopped process acts on a signal only once
/// continued, and workers must act on the one their master passes on), and the timer after which
/// the unit is killed: how a stop and a task's timeout begin.
pub(super) fn signal_then_kill_timer(
    out: &mut Effects,
    unit: UnitId,
    generation: u64,
    pid: Option<Pid>,
    (signal, to): (Signal, StopSignalTo),
    timeout: Duration,
) {
    if let Some(pid) = pid {
        for (signal, to) in [(signal, to), (Signal::SIGCONT, StopSignalTo::Group)] {
            out.push(Effect::Signal {
                unit,
                pid,
                signal,
                to,
            });
        }
    }
    let timer = Timer {
        unit,
        generation,
        kind: TimerKind::StopTimeout,
    };
    out.push(Effect::StartTimer {
        after: timeout,
        timer,
    });
}

#[cfg(test)]
mod tests;
