//! The executor's part of tasks run once per fleet: asking the fleet (in a task of its own, so
//! the supervisor goes on meanwhile), holding the lease while the run lasts, and handing the
//! outcome to the store. Kept apart from spawning: a task's process starts as a service's does.

use super::{Input, Supervisor};
use crate::supervise::fleet::{Coordination, FleetTask};
use crate::supervise::machine::{Event, Outcome, TaskPlan, UnitId, Verdict};
use std::time::Duration;

/// Lines of a task's stderr that go with its failure (in the refusal and the fleet's record).
const LAST_LINES: usize = 3;
/// Of each such line, at most this many characters.
const LINE_CHARS: usize = 200;

impl Supervisor {
    /// Asks the fleet about the unit's task; the answer comes back as `Input::Coordinated`.
    pub(super) fn coordinate(&mut self, unit: UnitId, generation: u64) {
        let service = &self.services[self.machine.units()[unit].service];
        let tx = self.tx.clone();
        let Some(fleet) = self.fleet.clone() else {
            let coordination = Coordination::Unavailable("no [coordination] store to ask".into());
            let _ = tx.send(Input::Coordinated {
                unit,
                generation,
                coordination,
            });
            return;
        };
        let task = FleetTask {
            name: service.config.name.clone(),
            budget: budget(
                service.task,
                service.config.stop_timeout.get(),
                service.config.restart_delay_max.get(),
            ),
        };
        let words_tx = tx.clone();
        let words = move |words: String| {
            let event = Event::FleetWords {
                unit,
                generation,
                words,
            };
            let _ = words_tx.send(Input::Event(event));
        };
        let waiting = tokio::spawn(async move {
            let coordination = fleet.take_or_wait(&task, &words).await;
            let _ = tx.send(Input::Coordinated {
                unit,
                generation,
                coordination,
            });
        });
        if let Some(old) = self.units[unit].coordinating.replace(waiting.abort_handle()) {
            old.abort();
        }
    }

    /// The fleet's answer: a lease is kept (and watched) before the machine hears of it.
    pub(super) fn coordinated(&mut self, unit: UnitId, generation: u64, coordination: Coordination) {
        self.units[unit].coordinating = None;
        let verdict = match coordination {
            Coordination::Run(lease) => {
                let runtime = &mut self.units[unit];
                runtime.leases += 1;
                let number = runtime.leases;
                // A lease answered for an older generation is let go at once (dropped: abandoned).
                if self.machine.units()[unit].generation != generation {
                    return;
                }
                runtime.lease = Some(lease.release);
                let tx = self.tx.clone();
                let lost = lease.lost;
                tokio::spawn(async move {
                    if let Ok(reason) = lost.await {
                        let _ = tx.send(Input::LeaseLost {
                            unit,
                            lease: number,
                            reason,
                        });
                    }
                });
                Verdict::Run
            }
            Coordination::Done { by } => Verdict::Done { by },
            Coordination::Failed { by, reason } => Verdict::Failed { by, reason },
            Coordination::Unavailable(why) => Verdict::Unavailable(why),
        };
        self.apply(Event::Coordinated {
            unit,
            generation,
            verdict,
        });
    }

    /// A loss of the lease this unit holds now (not of an earlier one) goes to the machine.
    pub(super) fn lease_lost(&mut self, unit: UnitId, lease: u64, reason: String) {
        let runtime = &mut self.units[unit];
        if runtime.leases != lease || runtime.lease.take().is_none() {
            return;
        }
        let generation = self.machine.units()[unit].generation;
        self.apply(Event::LeaseLost {
            unit,
            generation,
            reason,
        });
    }

    /// The run's outcome to the store; a failure with the task's last lines of stderr.
    pub(super) fn release(&mut self, unit: UnitId, outcome: Outcome) {
        let runtime = &mut self.units[unit];
        let Some(release) = runtime.lease.take() else {
            return;
        };
        let outcome = match outcome {
            Outcome::Failed(why) => Outcome::Failed(with_last_lines(why, &runtime.kept_output.stderr_tail())),
            other => other,
        };
        let _ = release.send(outcome);
    }
}

/// `reason`, then the last lines of stderr, each `stderr| LINE`, bounded.
pub(super) fn with_last_lines(reason: String, tail: &[String]) -> String {
    let skip = tail.len().saturating_sub(LAST_LINES);
    let mut text = reason;
    for line in tail.iter().skip(skip) {
        let line: String = line.chars().take(LINE_CHARS).collect();
        text.push_str("\nstderr| ");
        text.push_str(&line);
    }
    text
}

/// The longest one holder may take for every attempt of a task: each attempt's timeout and stop
/// timeout, and the longest retry delay between two.
fn budget(plan: Option<TaskPlan>, stop_timeout: Duration, retry_delay_max: Duration) -> Duration {
    let Some(plan) = plan else {
        return Duration::ZERO;
    };
    let attempt = plan.timeout.saturating_add(stop_timeout);
    attempt
        .saturating_mul(plan.attempts)
        .saturating_add(retry_delay_max.saturating_mul(plan.attempts.saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Once;

    #[test]
    fn a_failure_carries_the_last_three_lines_of_stderr_bounded() {
        let tail: Vec<String> = ["one", "two", "three", &"x".repeat(300)]
            .map(String::from)
            .to_vec();
        let text = with_last_lines("exit 1".into(), &tail);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..3], ["exit 1", "stderr| two", "stderr| three"]);
        assert_eq!(lines[3].len(), "stderr| ".len() + LINE_CHARS);
        assert_eq!(with_last_lines("exit 1".into(), &[]), "exit 1");
    }

    #[test]
    fn the_budget_covers_every_attempt_and_the_delays_between() {
        let plan = TaskPlan {
            timeout: Duration::from_secs(60),
            attempts: 3,
            once: Once::Fleet,
        };
        let b = budget(Some(plan), Duration::from_secs(10), Duration::from_secs(30));
        assert_eq!(b, Duration::from_secs(3 * 70 + 2 * 30));
        let huge = TaskPlan {
            timeout: Duration::MAX,
            ..plan
        };
        assert_eq!(budget(Some(huge), Duration::MAX, Duration::MAX), Duration::MAX);
    }
}
