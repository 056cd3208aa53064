//! The transitions of a task's unit. A task runs to completion: exit 0 is `Done`, anything else
//! is a failed attempt, retried with backoff until its attempts are spent, then `Failed`, which
//! refuses the boot ([`Effect::TaskFailed`]). It has no probes; a `TaskTimeout` timer bounds each
//! attempt.
//!
//! ```text
//!             every `after` ready
//!   Waiting ─────────────────────► (once = "fleet") Coordinating ── Done/Failed elsewhere ──► Done, Failed
//!      │                                │ Run: this instance holds the lease      ▲
//!      │ (once = "instance")            ▼                                         │ lease lost: killed,
//!      └───────────────────────────► Running ── exit 0 ──► Done                   │ then waits again
//!                                       │  ▲                                      │
//!              failed attempt, retries  ▼  │ retry timer                          │
//!              left ──────────────► Backoff ──────────────────────────────────────┘
//!              none left ─────────► Failed (the boot is refused)
//! ```
//!
//! Under a lease, the outcome goes to the store ([`Effect::Release`]) before anything else: a
//! run that ends by a stop releases it without one, so another instance can take over at once.

use super::{Effect, Effects, Level, Machine, Outcome, TaskPlan, Timer, TimerKind, Verdict};
use super::{incident, log, millis};
use crate::config::Once;
use crate::state::UnitState;
use crate::supervise::unit::{Ending, RanBy, Unit};
use nix::unistd::Pid;

impl Machine {
    /// The task's `after` is ready: ask the fleet, or run it here.
    pub(super) fn begin_task(&mut self, unit: usize, plan: TaskPlan, out: &mut Effects) {
        let now = self.now_ms;
        if let Some(run) = self.units[unit].task.as_mut() {
            run.began_ms = Some(now);
        }
        match plan.once {
            Once::Fleet => self.coordinate(unit, out),
            Once::Instance => self.spawn(unit, out),
        }
    }

    /// Takes the lease or waits for its holder; a fresh generation, so an older answer is void.
    fn coordinate(&mut self, unit: usize, out: &mut Effects) {
        let u = &mut self.units[unit];
        u.generation += 1;
        u.state = UnitState::Coordinating;
        u.pid = None;
        if let Some(run) = u.task.as_mut() {
            run.lease = Some("asking the fleet".into());
        }
        let generation = u.generation;
        out.push(Effect::Coordinate { unit, generation });
    }

    pub(super) fn on_coordinated(&mut self, unit: usize, verdict: Verdict, out: &mut Effects) {
        if self.units[unit].state != UnitState::Coordinating {
            return;
        }
        let name = self.units[unit].name.clone();
        match verdict {
            Verdict::Run => {
                if let Some(run) = self.units[unit].task.as_mut() {
                    run.holds_lease = true;
                    run.lease = Some("held by this instance".into());
                }
                incident(
                    out,
                    Level::Info,
                    format!("{name}: this instance holds the fleet's lease: running it"),
                );
                self.spawn(unit, out);
            }
            Verdict::Done { by } => {
                if let Some(run) = self.units[unit].task.as_mut() {
                    run.lease = None;
                }
                incident(
                    out,
                    Level::Info,
                    format!("{name}: done by {by} for this release: not run here"),
                );
                self.task_done(unit, RanBy::Other(by), out);
            }
            Verdict::Failed { by, reason } => {
                if let Some(run) = self.units[unit].task.as_mut() {
                    run.lease = None;
                }
                let words = format!("task {name:?} failed on {by}: {reason}");
                self.task_failed(unit, RanBy::Other(by), words, out);
            }
            Verdict::Unavailable(why) => {
                if let Some(run) = self.units[unit].task.as_mut() {
                    run.lease = Some(why.clone());
                }
                self.units[unit].state = UnitState::Failed;
                self.refuse(unit, format!("task {name:?}: {why}"), out);
            }
        }
    }

    pub(super) fn on_fleet_words(&mut self, unit: usize, words: String) {
        let u = &mut self.units[unit];
        if let (UnitState::Coordinating, Some(run)) = (u.state, u.task.as_mut()) {
            run.lease = Some(words);
        }
    }

    /// The lease is gone: a run in progress is killed at once (at most one run at a time), and
    /// the task asks the fleet again once it has ended.
    pub(super) fn on_lease_lost(&mut self, unit: usize, reason: String, out: &mut Effects) {
        let u = &mut self.units[unit];
        let Some(run) = u.task.as_mut().filter(|r| r.holds_lease) else {
            return;
        };
        run.holds_lease = false;
        run.lease = Some(format!("lost: {reason}"));
        let name = u.name.clone();
        match (u.state, u.pid) {
            (UnitState::Running, Some(pid)) => {
                run.lost = Some(reason.clone());
                u.kill_reason = Some("the fleet's lease was lost".into());
                incident(
                    out,
                    Level::Warn,
                    format!("{name}: lost the fleet's lease ({reason}): killing this run"),
                );
                out.push(Effect::KillTree { unit, pid });
            }
            (UnitState::Backoff, _) if !self.stopping => {
                incident(
                    out,
                    Level::Warn,
                    format!("{name}: lost the fleet's lease ({reason}) between attempts"),
                );
                u.next_restart_ms = None;
                self.coordinate(unit, out);
            }
            _ => {}
        }
    }

    pub(super) fn on_task_spawned(&mut self, unit: usize, pid: Pid, now_ms: u64, out: &mut Effects) {
        let timeout = self.task_plan_of(unit).timeout;
        let attempts = self.task_plan_of(unit).attempts;
        let u = &mut self.units[unit];
        u.pid = Some(pid);
        u.since_ms = Some(now_ms);
        u.state = UnitState::Running;
        let attempt = u.task.as_mut().map_or(1, |run| {
            run.attempts = run.attempts.saturating_add(1);
            run.attempts
        });
        log(
            out,
            Level::Info,
            format!("{}: started (pid {pid}), attempt {attempt} of {attempts}", u.name),
        );
        let timer = Timer {
            unit,
            generation: u.generation,
            kind: TimerKind::TaskTimeout,
        };
        out.push(Effect::StartTimer {
            after: timeout,
            timer,
        });
    }

    /// An attempt ended by itself or was killed: done, retried, failed for good, or (its lease
    /// lost) back to asking the fleet.
    pub(super) fn on_task_exit(&mut self, unit: usize, ending: Ending, now_ms: u64, out: &mut Effects) {
        let u = &mut self.units[unit];
        if let Some(reason) = u.task.as_mut().and_then(|run| run.lost.take()) {
            let name = u.name.clone();
            u.last_exit = Some(ending);
            log(
                out,
                Level::Info,
                format!("{name}: run ended after the lease was lost ({reason})"),
            );
            return self.coordinate(unit, out);
        }
        u.last_exit = Some(ending.clone());
        if ending.success() {
            let took = now_ms.saturating_sub(u.since_ms.unwrap_or(now_ms));
            let name = u.name.clone();
            incident(
                out,
                Level::Info,
                format!("{name}: done ({ending}) in {}", shown_ms(took)),
            );
            return self.task_done(unit, RanBy::Here, out);
        }
        self.task_failed_attempt(unit, now_ms, out);
    }

    /// A failed attempt (its ending is the unit's `last_exit`): retried after a backoff while
    /// attempts are left, else the task failed for good.
    pub(super) fn task_failed_attempt(&mut self, unit: usize, now_ms: u64, out: &mut Effects) {
        let plan = self.task_plan_of(unit);
        let config = &self.services[self.units[unit].service].config;
        let (first, max) = (config.restart_delay.get(), config.restart_delay_max.get());
        let u = &mut self.units[unit];
        let attempts = u.task.as_ref().map_or(0, |run| run.attempts);
        let last = u.last_exit.as_ref().map(ToString::to_string).unwrap_or_default();
        if attempts >= plan.attempts || self.stopping {
            let name = u.name.clone();
            let words = format!(
                "task {name:?} failed: {last} (attempt {attempts} of {})",
                plan.attempts
            );
            return self.task_failed(unit, RanBy::Here, words, out);
        }
        u.failures_in_a_row = u.failures_in_a_row.saturating_add(1);
        u.restarts = u.restarts.saturating_add(1);
        let delay = u.backoff(first, max);
        u.state = UnitState::Backoff;
        u.next_restart_ms = Some(now_ms.saturating_add(millis(delay)));
        let line = format!(
            "{}: attempt {attempts} of {} failed ({last}): retrying in {}",
            u.name,
            plan.attempts,
            humantime::format_duration(delay)
        );
        incident(out, Level::Warn, line);
        let timer = Timer {
            unit,
            generation: u.generation,
            kind: TimerKind::Restart,
        };
        out.push(Effect::StartTimer { after: delay, timer });
    }

    /// The attempt ran for its `timeout`: the stop signal, then SIGKILL after `stop_timeout`.
    pub(super) fn on_task_timeout(&mut self, unit: usize, out: &mut Effects) {
        let plan = self.task_plan_of(unit);
        let config = &self.services[self.units[unit].service].config;
        let (signal, to, stop_timeout) = (
            config.stop_signal.0,
            config.stop_signal_to,
            config.stop_timeout.get(),
        );
        let u = &mut self.units[unit];
        let (UnitState::Running, Some(pid)) = (u.state, u.pid) else {
            return;
        };
        let timeout = humantime::format_duration(plan.timeout);
        u.kill_reason = Some(format!("timed out after {timeout}"));
        let line = format!(
            "{}: timed out after {timeout}: stopping it ({})",
            u.name,
            signal.as_str()
        );
        incident(out, Level::Warn, line);
        let generation = u.generation;
        super::signal_then_kill_timer(out, unit, generation, Some(pid), (signal, to), stop_timeout);
    }

    fn task_done(&mut self, unit: usize, by: RanBy, out: &mut Effects) {
        let now = self.now_ms;
        let u = &mut self.units[unit];
        u.state = UnitState::Done;
        u.pid = None;
        if let Some(run) = u.task.as_mut() {
            run.by = Some(by);
            run.done_ms = Some(now);
        }
        self.release(unit, Outcome::Done, out);
    }

    /// Failed for good: the outcome goes to the store (when this instance ran it), and the boot
    /// is refused.
    fn task_failed(&mut self, unit: usize, by: RanBy, words: String, out: &mut Effects) {
        let u = &mut self.units[unit];
        u.state = UnitState::Failed;
        u.pid = None;
        if let Some(run) = u.task.as_mut() {
            run.by = Some(by);
        }
        let last = u.last_exit.as_ref().map(ToString::to_string).unwrap_or_default();
        self.release(unit, Outcome::Failed(last), out);
        self.refuse(unit, words, out);
    }

    /// Nothing more starts; the boot walk refuses the boot with `reason`.
    fn refuse(&mut self, unit: usize, reason: String, out: &mut Effects) {
        self.failed = true;
        if !self.stopping {
            incident(out, Level::Error, reason.clone());
            out.push(Effect::TaskFailed { unit, reason });
        }
    }

    /// Lets the lease go with `outcome`, when this instance holds it.
    pub(super) fn release(&mut self, unit: usize, outcome: Outcome, out: &mut Effects) {
        let Some(run) = self.units[unit].task.as_mut().filter(|r| r.holds_lease) else {
            return;
        };
        run.holds_lease = false;
        run.lease = Some(match &outcome {
            Outcome::Done => "released: done".into(),
            Outcome::Failed(_) => "released: failed".into(),
            Outcome::Abandoned => "released: stopped before an outcome".into(),
        });
        out.push(Effect::Release { unit, outcome });
    }

    /// Why a task stands between the instance and ready.
    pub(super) fn why_task_not_done(&self, u: &Unit, last: &str) -> String {
        let name = &u.name;
        let attempts = self.task_plan(u).map_or(1, |p| p.attempts);
        let attempt = u.task.as_ref().map_or(0, |run| run.attempts);
        let lease = u
            .task
            .as_ref()
            .and_then(|run| run.lease.clone())
            .unwrap_or_default();
        match u.state {
            UnitState::Waiting => {
                let deps = self.not_ready_dependencies(u.service).join(", ");
                format!("task {name} waiting for {deps}")
            }
            UnitState::Coordinating => format!("task {name} waiting for the fleet: {lease}"),
            UnitState::Starting | UnitState::Running => {
                format!("task {name} running (attempt {attempt} of {attempts})")
            }
            UnitState::Backoff => format!("task {name} retrying after {last}"),
            UnitState::Failed => format!("task {name} failed: {last}"),
            UnitState::Done => format!("task {name} done"),
            UnitState::Exited | UnitState::Stopping | UnitState::Stopped => format!("task {name} stopped"),
        }
    }

    fn task_plan_of(&self, unit: usize) -> TaskPlan {
        let plan = self.services[self.units[unit].service].task;
        plan.unwrap_or(TaskPlan {
            timeout: std::time::Duration::MAX,
            attempts: 1,
            once: Once::Instance,
        })
    }
}

/// `1.2s`, `340ms`.
fn shown_ms(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        _ => format!("{:.1}s", ms as f64 / 1000.0),
    }
}
