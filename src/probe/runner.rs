//! Runs one unit's probes and turns results into transitions, applying periods and thresholds.
//!
//! Until a probe first passes it is polled quickly: the pause between two checks is a tenth of the
//! time waited so far (at least 2 ms, at most the period). A service that is ready in 40 ms is seen
//! ready within about 4 ms of it, rather than one period later, and a slow starter is not hammered.
//! After the first pass the probe runs every period. The startup probe has `failure_threshold × period` in all to
//! pass once, as in Kubernetes.

use super::{Probe, Role};
use crate::process::Reaper;
use std::time::{Duration, Instant};

const MIN_POLL: Duration = Duration::from_millis(2);

/// The pause before the next check of a probe that has not passed yet, `waited` after it began.
fn eager_pause(waited: Duration, period: Duration) -> Duration {
    (waited / 10).clamp(MIN_POLL, period.max(MIN_POLL))
}

/// A unit's probes; each is optional.
#[derive(Debug, Clone, Default)]
pub struct UnitProbes {
    pub startup: Option<Probe>,
    pub ready: Option<Probe>,
    pub live: Option<Probe>,
    /// Without a ready probe: ready once the process has run this long.
    pub ready_after: Duration,
}

/// What the runner tells the supervisor.
#[derive(Debug, Clone)]
pub enum ProbeEvent {
    /// Startup passed (or there is no startup probe): readiness and liveness now run.
    StartupPassed,
    /// The startup probe did not pass within its budget: restart the service.
    StartupFailed(String),
    /// Readiness changed.
    Ready(bool, String),
    /// The liveness probe failed `failure_threshold` times in a row: restart the service.
    LiveFailed(String),
    /// One check's result (for `kiln status`, and whoever counts checks).
    Report(CheckReport),
}

/// The result of one check.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub role: Role,
    /// http, tcp, exec or fastcgi.
    pub kind: &'static str,
    pub ok: bool,
    pub latency: Duration,
    pub detail: String,
}

/// Runs until the task is aborted (the supervisor aborts it when the process exits).
pub async fn run<F>(probes: UnitProbes, reaper: Reaper, send: F)
where
    F: Fn(ProbeEvent) + Send + Sync,
{
    let check = |probe: &Probe| {
        let reaper = reaper.clone();
        let send = &send;
        let probe = probe.clone();
        async move {
            let (outcome, latency) = probe.check(&reaper).await;
            send(ProbeEvent::Report(CheckReport {
                role: probe.role,
                kind: probe.kind(),
                ok: outcome.ok,
                latency,
                detail: outcome.detail.clone(),
            }));
            outcome
        }
    };

    if let Some(probe) = &probes.startup {
        let budget = probe.period * probe.failure_threshold;
        let started = Instant::now();
        let mut successes = 0;
        loop {
            let outcome = check(probe).await;
            if outcome.ok {
                successes += 1;
                if successes >= probe.success_threshold {
                    break;
                }
            } else {
                successes = 0;
                if started.elapsed() >= budget {
                    send(ProbeEvent::StartupFailed(format!(
                        "startup probe did not pass within {}: {}",
                        humantime::format_duration(budget),
                        outcome.detail
                    )));
                    return;
                }
            }
            tokio::time::sleep(eager_pause(started.elapsed(), probe.period)).await;
        }
    }
    send(ProbeEvent::StartupPassed);

    let readiness = async {
        let Some(probe) = &probes.ready else {
            tokio::time::sleep(probes.ready_after).await;
            send(ProbeEvent::Ready(
                true,
                format!("running for {}", humantime::format_duration(probes.ready_after)),
            ));
            return;
        };
        let (mut ready, mut ever_ready) = (false, false);
        let (mut successes, mut failures) = (0, 0);
        let started = Instant::now();
        loop {
            let outcome = check(probe).await;
            if outcome.ok {
                successes += 1;
                failures = 0;
                if !ready && successes >= probe.success_threshold {
                    ready = true;
                    ever_ready = true;
                    send(ProbeEvent::Ready(true, outcome.detail));
                }
            } else {
                failures += 1;
                successes = 0;
                if ready && failures >= probe.failure_threshold {
                    ready = false;
                    send(ProbeEvent::Ready(false, outcome.detail));
                }
            }
            if ever_ready {
                tokio::time::sleep(probe.period).await;
            } else {
                tokio::time::sleep(eager_pause(started.elapsed(), probe.period)).await;
            }
        }
    };

    let liveness = async {
        let Some(probe) = &probes.live else { return };
        let mut failures = 0;
        loop {
            tokio::time::sleep(probe.period).await;
            let outcome = check(probe).await;
            if outcome.ok {
                failures = 0;
            } else {
                failures += 1;
                if failures >= probe.failure_threshold {
                    send(ProbeEvent::LiveFailed(format!(
                        "liveness probe failed {failures} times: {}",
                        outcome.detail
                    )));
                    return;
                }
            }
        }
    };

    tokio::join!(readiness, liveness);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eager_polling_waits_a_tenth_of_the_time_waited_within_bounds() {
        let period = Duration::from_secs(1);
        assert_eq!(eager_pause(Duration::ZERO, period), MIN_POLL);
        assert_eq!(
            eager_pause(Duration::from_millis(40), period),
            Duration::from_millis(4)
        );
        assert_eq!(eager_pause(Duration::from_secs(60), period), period);
        assert_eq!(
            eager_pause(Duration::from_secs(60), Duration::from_millis(1)),
            MIN_POLL
        );
    }
}
