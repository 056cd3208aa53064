//! Starting, watching and stopping services: an explicit state machine driven by one event queue.
//!
//! Every fact arrives as an [`Event`] (a process exited, a probe changed its mind, a timer fired, a
//! stop was asked for) and is handled in one place, one at a time, so the states in
//! `state::UnitState` are the whole truth. After each event the supervisor starts whatever became
//! startable, and publishes a snapshot into [`Shared`].
//!
//! Order: a service starts once every service in its `after` is ready; on stop, a service is
//! signalled once every service that waits for it has stopped (reverse dependency order).

mod unit;

use crate::config::{RestartPolicy, ServiceConfig};
use crate::env::FrozenEnv;
use crate::probe::runner::{self, ProbeEvent, UnitProbes};
use crate::probe::{Probe, Role};
use crate::process::output::{self, Stream};
use crate::process::spawn::{self, Identity};
use crate::process::{Exit, Reaper};
use crate::state::{Phase, ProbeReport, Shared, UnitState, now_ms};
use crate::systemd::Notifier;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use unit::{SETTLE_AFTER, Unit};

/// How often the loop ticks when nothing happens (drives `/livez` and the watchdog).
const TICK: Duration = Duration::from_millis(500);

enum Event {
    Exited {
        unit: usize,
        generation: u64,
        exit: Exit,
    },
    Probe {
        unit: usize,
        generation: u64,
        event: ProbeEvent,
    },
    RestartDue {
        unit: usize,
        generation: u64,
    },
    StopTimeout {
        unit: usize,
        generation: u64,
    },
    Settled {
        unit: usize,
        generation: u64,
    },
    /// Stop every service gracefully; answer when all are gone.
    Stop(oneshot::Sender<()>),
    /// Stop asked for a second time: SIGKILL everything now.
    KillAll,
}

/// What the boot walk holds to stop the supervisor.
#[derive(Clone)]
pub struct SupervisorHandle {
    tx: mpsc::UnboundedSender<Event>,
}

impl SupervisorHandle {
    /// Stops every service in reverse dependency order; returns when all are gone.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Event::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// SIGKILL to every service's process group, at once.
    pub fn kill_all(&self) {
        let _ = self.tx.send(Event::KillAll);
    }
}

struct Service {
    config: ServiceConfig,
    identity: Option<Identity>,
    probes: UnitProbes,
    /// Indexes of the services this one waits for.
    after: Vec<usize>,
    units: std::ops::Range<usize>,
    started: bool,
    ready_once: bool,
}

pub struct Supervisor {
    services: Vec<Service>,
    units: Vec<Unit>,
    env: Arc<FrozenEnv>,
    reaper: Reaper,
    shared: Arc<Shared>,
    notifier: Arc<Notifier>,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    stopping: bool,
    stop_waiters: Vec<oneshot::Sender<()>>,
    ready_announced: bool,
    last_status_line: String,
}

impl Supervisor {
    /// Prepares the services; resolves users and probes. Nothing is started yet.
    pub fn new(
        configs: &[ServiceConfig],
        env: Arc<FrozenEnv>,
        reaper: Reaper,
        shared: Arc<Shared>,
        notifier: Arc<Notifier>,
    ) -> Result<Supervisor, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut services = Vec::new();
        let mut units = Vec::new();
        for (index, config) in configs.iter().enumerate() {
            let identity =
                Identity::resolve(config).map_err(|e| format!("service {:?}: {e}", config.name))?;
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
            let after = config
                .after
                .iter()
                .filter_map(|name| configs.iter().position(|c| &c.name == name))
                .collect();
            let first = units.len();
            for replica in 1..=config.replicas {
                units.push(Unit::new(index, &config.name, replica, config.replicas));
            }
            services.push(Service {
                config: config.clone(),
                identity,
                probes,
                after,
                units: first..units.len(),
                started: false,
                ready_once: false,
            });
        }
        Ok(Supervisor {
            services,
            units,
            env,
            reaper,
            shared,
            notifier,
            tx,
            rx,
            stopping: false,
            stop_waiters: Vec::new(),
            ready_announced: false,
            last_status_line: String::new(),
        })
    }

    pub fn handle(&self) -> SupervisorHandle {
        SupervisorHandle { tx: self.tx.clone() }
    }

    /// Runs until every service has stopped after a [`SupervisorHandle::stop`].
    pub async fn run(mut self) {
        self.shared.update(|s| s.phase = Phase::Starting);
        self.start_what_can_start();
        self.publish();
        let mut tick = tokio::time::interval(TICK);
        loop {
            self.shared.beat();
            tokio::select! {
                event = self.rx.recv() => match event {
                    Some(event) => self.handle_event(event),
                    None => return,
                },
                _ = tick.tick() => {}
            }
            self.start_what_can_start();
            if self.stopping {
                self.stop_what_can_stop();
            }
            self.publish();
            if self.stopping && self.units.iter().all(|u| !u.is_live()) {
                for waiter in self.stop_waiters.drain(..) {
                    let _ = waiter.send(());
                }
                return;
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Exited {
                unit,
                generation,
                exit,
            } if self.units[unit].generation == generation => self.on_exit(unit, exit),
            Event::Probe {
                unit,
                generation,
                event,
            } if self.units[unit].generation == generation => self.on_probe(unit, event),
            Event::RestartDue { unit, generation }
                if self.units[unit].generation == generation
                    && self.units[unit].state == UnitState::Backoff
                    && !self.stopping =>
            {
                self.spawn_unit(unit)
            }
            Event::StopTimeout { unit, generation } if self.units[unit].generation == generation => {
                let u = &self.units[unit];
                if u.state == UnitState::Stopping {
                    let timeout = self.services[u.service].config.stop_timeout;
                    tracing::warn!(
                        "{}: still running {} after the stop signal: SIGKILL",
                        u.name,
                        timeout
                    );
                    self.signal_unit(unit, Signal::SIGKILL);
                }
            }
            Event::Settled { unit, generation } if self.units[unit].generation == generation => {
                let u = &mut self.units[unit];
                if u.state == UnitState::Running && u.failures_in_a_row > 0 {
                    if u.crash_loop() {
                        tracing::info!(
                            "{}: stable again after {} failures in a row",
                            u.name,
                            u.failures_in_a_row
                        );
                    }
                    u.failures_in_a_row = 0;
                }
            }
            Event::Stop(done) => {
                self.stop_waiters.push(done);
                if !self.stopping {
                    self.stopping = true;
                    self.cancel_pending();
                }
            }
            Event::KillAll => {
                tracing::warn!("second stop request: SIGKILL to every service");
                self.stopping = true;
                self.cancel_pending();
                for i in 0..self.units.len() {
                    if self.units[i].is_live() {
                        self.signal_unit(i, Signal::SIGKILL);
                    }
                }
            }
            _ => {} // an event about an older process of the unit
        }
    }

    fn service_ready(&self, service: usize) -> bool {
        let s = &self.services[service];
        self.units[s.units.clone()]
            .iter()
            .all(|u| u.counts_as_ready(self.completed_ok(u)))
    }

    /// A unit that exited and is not restarted counts as ready when its exit was a success its
    /// restart policy accepts (a one-shot job that finished).
    fn completed_ok(&self, u: &Unit) -> bool {
        u.state == UnitState::Exited
            && self.services[u.service].config.restart == RestartPolicy::OnFailure
            && u.last_exit.as_deref() == Some("exit 0")
    }

    fn start_what_can_start(&mut self) {
        if self.stopping {
            return;
        }
        for s in 0..self.services.len() {
            if !self.services[s].started && self.services[s].after.iter().all(|&d| self.service_ready(d)) {
                self.services[s].started = true;
                self.shared
                    .phase_begin(&format!("start {}", self.services[s].config.name));
                for u in self.services[s].units.clone() {
                    self.spawn_unit(u);
                }
            }
        }
    }

    fn spawn_unit(&mut self, index: usize) {
        let service = &self.services[self.units[index].service];
        let unit = &mut self.units[index];
        unit.generation += 1;
        unit.next_restart_ms = None;
        unit.ready = false;
        let generation = unit.generation;
        let mut command = spawn::command(
            &service.config,
            &self.env,
            service.identity.as_ref(),
            unit.replica,
        );
        let (mut child, exit) = match self.reaper.spawn(&mut command) {
            Ok(spawned) => spawned,
            Err(e) => {
                let program = &service.config.command[0];
                tracing::error!("{}: cannot start {program:?}: {e}", unit.name);
                unit.last_exit = Some(format!("cannot start {program:?}: {e}"));
                self.after_failure(index);
                return;
            }
        };
        let pid = Pid::from_raw(child.id() as i32);
        tracing::info!("{}: started (pid {pid})", unit.name);
        unit.pid = Some(pid);
        unit.since = Some((Instant::now(), now_ms()));
        unit.state = UnitState::Starting;
        unit.kill_reason = None;
        for (stream, fd) in [
            (Stream::Stdout, child.stdout.take().map(OwnedFd::from)),
            (Stream::Stderr, child.stderr.take().map(OwnedFd::from)),
        ] {
            if let Some(fd) = fd {
                output::forward(unit.name.clone(), stream, fd, unit.tail.clone());
            }
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Ok(exit) = exit.await {
                let _ = tx.send(Event::Exited {
                    unit: index,
                    generation,
                    exit,
                });
            }
        });
        let tx = self.tx.clone();
        let probes = runner::run(service.probes.clone(), self.reaper.clone(), move |event| {
            let _ = tx.send(Event::Probe {
                unit: index,
                generation,
                event,
            });
        });
        unit.probe_task = Some(tokio::spawn(probes).abort_handle());
        self.after(
            SETTLE_AFTER,
            Event::Settled {
                unit: index,
                generation,
            },
        );
    }

    fn on_probe(&mut self, index: usize, event: ProbeEvent) {
        let unit = &mut self.units[index];
        match event {
            ProbeEvent::Report {
                role,
                kind,
                ok,
                latency,
                detail,
            } => {
                unit.last_probe = Some(ProbeReport {
                    probe: role.as_str().into(),
                    kind: kind.into(),
                    ok,
                    latency_us: latency.as_micros() as u64,
                    detail,
                    at_ms: now_ms(),
                });
            }
            ProbeEvent::StartupPassed => {
                if unit.state == UnitState::Starting {
                    unit.state = UnitState::Running;
                }
            }
            ProbeEvent::Ready(ready, detail) => {
                if unit.ready != ready && self.services[unit.service].probes.ready.is_some() {
                    if ready {
                        tracing::info!("{}: ready ({detail})", unit.name);
                    } else {
                        tracing::warn!("{}: not ready: {detail}", unit.name);
                        self.shared
                            .event("warn", format!("{}: not ready: {detail}", unit.name));
                    }
                }
                unit.ready = ready;
            }
            ProbeEvent::StartupFailed(reason) | ProbeEvent::LiveFailed(reason) => {
                if unit.state == UnitState::Stopping {
                    return;
                }
                tracing::warn!("{}: {reason}: restarting", unit.name);
                self.shared
                    .event("warn", format!("{}: {reason}: restarting", unit.name));
                unit.kill_reason = Some(reason);
                self.signal_unit(index, Signal::SIGKILL);
            }
        }
    }

    fn on_exit(&mut self, index: usize, exit: Exit) {
        let unit = &mut self.units[index];
        unit.stop_probes();
        unit.ready = false;
        let pid = unit.pid.take();
        // Whatever the leader left behind in its group (php-fpm children, nginx workers) goes too,
        // so a restart never runs beside leftovers.
        if let Some(pid) = pid {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        if unit.state == UnitState::Stopping || self.stopping {
            tracing::info!("{}: stopped ({exit})", unit.name);
            unit.state = UnitState::Stopped;
            return;
        }
        let reason = unit.kill_reason.take().unwrap_or_else(|| exit.to_string());
        let policy = self.services[unit.service].config.restart;
        unit.last_exit = Some(reason.clone());
        let finished = match policy {
            RestartPolicy::Never => true,
            RestartPolicy::OnFailure => reason == "exit 0",
            RestartPolicy::Always => false,
        };
        if finished {
            let level_ok = reason == "exit 0";
            if level_ok {
                tracing::info!(
                    "{}: exited ({reason}); restart = {policy:?}: not restarted",
                    unit.name
                );
            } else {
                tracing::error!(
                    "{}: exited ({reason}); restart = {policy:?}: not restarted",
                    unit.name
                );
            }
            unit.state = UnitState::Exited;
            self.shared.event(
                if level_ok { "info" } else { "error" },
                format!("{}: exited ({reason}), not restarted", unit.name),
            );
            return;
        }
        tracing::warn!("{}: exited ({reason})", unit.name);
        self.shared
            .event("warn", format!("{}: exited ({reason})", unit.name));
        self.after_failure(index);
    }

    /// Schedules the next start of a unit whose process ended, with capped exponential backoff.
    fn after_failure(&mut self, index: usize) {
        let config = &self.services[self.units[index].service].config;
        let unit = &mut self.units[index];
        unit.failures_in_a_row += 1;
        unit.restarts += 1;
        let delay = unit.backoff(config.restart_delay.get(), config.restart_delay_max.get());
        unit.state = UnitState::Backoff;
        unit.next_restart_ms = Some(now_ms() + delay.as_millis() as u64);
        if unit.crash_loop() {
            tracing::warn!(
                "{}: crash loop ({} failures in a row), next start in {}",
                unit.name,
                unit.failures_in_a_row,
                humantime::format_duration(delay)
            );
        }
        let generation = unit.generation;
        self.after(
            delay,
            Event::RestartDue {
                unit: index,
                generation,
            },
        );
    }

    /// Units that have no process are done at once when a stop begins.
    fn cancel_pending(&mut self) {
        for u in &mut self.units {
            if matches!(u.state, UnitState::Waiting | UnitState::Backoff) {
                u.state = UnitState::Stopped;
                u.next_restart_ms = None;
            }
        }
    }

    /// Signals every service whose dependents have all stopped.
    fn stop_what_can_stop(&mut self) {
        for s in 0..self.services.len() {
            let dependents_gone = self
                .services
                .iter()
                .filter(|other| other.after.contains(&s))
                .all(|other| self.units[other.units.clone()].iter().all(|u| !u.is_live()));
            if !dependents_gone {
                continue;
            }
            let signal = self.services[s].config.stop_signal.0;
            let timeout = self.services[s].config.stop_timeout.get();
            for i in self.services[s].units.clone() {
                let u = &mut self.units[i];
                if matches!(u.state, UnitState::Starting | UnitState::Running) {
                    u.stop_probes();
                    u.ready = false;
                    u.state = UnitState::Stopping;
                    tracing::info!("{}: stopping ({})", u.name, signal.as_str());
                    let generation = u.generation;
                    self.signal_unit(i, signal);
                    // A stopped (SIGSTOP) process only acts on the signal once continued.
                    self.signal_unit(i, Signal::SIGCONT);
                    self.after(timeout, Event::StopTimeout { unit: i, generation });
                }
            }
        }
    }

    fn signal_unit(&self, index: usize, signal: Signal) {
        if let Some(pid) = self.units[index].pid
            && let Err(e) = killpg(pid, signal)
        {
            tracing::debug!("{}: killpg {signal}: {e}", self.units[index].name);
        }
    }

    /// Delivers `event` after `delay`.
    fn after(&self, delay: Duration, event: Event) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(event);
        });
    }

    /// Writes the units into the shared snapshot and moves the instance between
    /// starting / ready / degraded. Announces READY=1 the first time everything is ready.
    fn publish(&mut self) {
        let statuses: Vec<_> = self
            .units
            .iter()
            .map(|u| {
                let service = &self.services[u.service];
                let waiting_for = if u.state == UnitState::Waiting {
                    service
                        .after
                        .iter()
                        .filter(|&&d| !self.service_ready(d))
                        .map(|&d| self.services[d].config.name.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                u.status(&service.config.name, waiting_for)
            })
            .collect();
        for s in 0..self.services.len() {
            if !self.services[s].ready_once && self.service_ready(s) {
                self.services[s].ready_once = true;
                self.shared
                    .phase_done(&format!("start {}", self.services[s].config.name));
            }
        }
        let all_ready = (0..self.services.len()).all(|s| self.service_ready(s));
        let reason = if all_ready {
            None
        } else {
            Some(self.not_ready_reason())
        };
        let ready_announced = self.ready_announced;
        let mut phase = Phase::Starting;
        self.shared.update(|snap| {
            snap.services = statuses;
            if matches!(snap.phase, Phase::Starting | Phase::Ready | Phase::Degraded) {
                snap.phase = match (all_ready, ready_announced) {
                    (true, _) => Phase::Ready,
                    (false, true) => Phase::Degraded,
                    (false, false) => Phase::Starting,
                };
                snap.reason = reason.clone();
            }
            phase = snap.phase;
        });
        if phase == Phase::Ready && !self.ready_announced {
            self.ready_announced = true;
            self.shared.mark("READY=1");
            tracing::info!("all {} services ready", self.services.len());
            self.notifier.notify("READY=1");
        }
        let line = match (phase, &reason) {
            (Phase::Ready, _) => format!("ready: {} units", self.units.len()),
            (p, Some(r)) => format!("{}: {r}", format!("{p:?}").to_lowercase()),
            (p, None) => format!("{p:?}").to_lowercase(),
        };
        if line != self.last_status_line {
            self.notifier.status(&line);
            self.last_status_line = line;
        }
    }

    /// The first thing standing between the instance and ready, in words.
    fn not_ready_reason(&self) -> String {
        let mut reasons = self
            .units
            .iter()
            .filter(|u| !u.counts_as_ready(self.completed_ok(u)))
            .map(|u| {
                let last = u.last_exit.as_deref().unwrap_or("no exit yet");
                match u.state {
                    _ if u.crash_loop() => {
                        format!("{} crash-looping: {last} ({} restarts)", u.name, u.restarts)
                    }
                    UnitState::Waiting => {
                        let service = &self.services[u.service];
                        let deps: Vec<&str> = service
                            .after
                            .iter()
                            .filter(|&&d| !self.service_ready(d))
                            .map(|&d| self.services[d].config.name.as_str())
                            .collect();
                        format!("{} waiting for {}", u.name, deps.join(", "))
                    }
                    UnitState::Starting => format!("{} starting", u.name),
                    UnitState::Running => match &u.last_probe {
                        Some(p) if !p.ok => format!("{} not ready: {}", u.name, p.detail),
                        _ => format!("{} not ready yet", u.name),
                    },
                    UnitState::Backoff => format!("{} restarting after {last}", u.name),
                    UnitState::Exited => format!("{} exited ({last}) and is not restarted", u.name),
                    UnitState::Stopping | UnitState::Stopped => format!("{} stopped", u.name),
                }
            });
        let first = reasons.next().unwrap_or_default();
        let more = reasons.count();
        if more > 0 {
            format!("{first} (+{more} more)")
        } else {
            first
        }
    }
}
