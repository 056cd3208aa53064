//! Runs one unit's probes and turns results into transitions, applying periods and thresholds.
//!
//! Until a probe first passes it is polled quickly: the pause between two checks is a tenth of the
//! time waited so far (at least 2 ms, at most the period). A service that is ready in 40 ms is seen
//! ready within about 4 ms of it, rather than one period later, and a slow starter is not hammered.
//! After the first pass the probe runs every period. The startup probe has `failure_threshold × period` in all to
//! pass once, as in Kubernetes.

use super::{Outcome, Probe, Role};
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

impl UnitProbes {
    /// The roles of the probes configured.
    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        [&self.startup, &self.ready, &self.live]
            .into_iter()
            .flatten()
            .map(|probe| probe.role)
    }
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
    let checker = Checker { reaper, send: &send };
    if let Some(probe) = &probes.startup
        && let Err(reason) = startup(&checker, probe).await
    {
        send(ProbeEvent::StartupFailed(reason));
        return;
    }
    send(ProbeEvent::StartupPassed);
    let readiness = async {
        match &probes.ready {
            Some(probe) => readiness(&checker, probe).await,
            None => {
                tokio::time::sleep(probes.ready_after).await;
                let detail = format!("running for {}", humantime::format_duration(probes.ready_after));
                send(ProbeEvent::Ready(true, detail));
            }
        }
    };
    let liveness = async {
        if let Some(probe) = &probes.live {
            let reason = liveness(&checker, probe).await;
            send(ProbeEvent::LiveFailed(reason));
        }
    };
    tokio::join!(readiness, liveness);
}

/// Runs checks and reports each one.
struct Checker<'a, F> {
    reaper: Reaper,
    send: &'a F,
}

impl<F: Fn(ProbeEvent)> Checker<'_, F> {
    async fn check(&self, probe: &Probe) -> Outcome {
        let (outcome, latency) = probe.check(&self.reaper).await;
        (self.send)(ProbeEvent::Report(CheckReport {
            role: probe.role,
            kind: probe.kind(),
            ok: outcome.ok,
            latency,
            detail: outcome.detail.clone(),
        }));
        outcome
    }
}

/// Polls eagerly until `success_threshold` passes in a row; gives up (with the reason) once
/// `failure_threshold × period` has gone by.
async fn startup<F: Fn(ProbeEvent)>(checker: &Checker<'_, F>, probe: &Probe) -> Result<(), String> {
    let budget = probe.period.saturating_mul(probe.failure_threshold);
    let started = Instant::now();
    let mut successes = 0u32;
    loop {
        let outcome = checker.check(probe).await;
        if outcome.ok {
            successes = successes.saturating_add(1);
            if successes >= probe.success_threshold {
                return Ok(());
            }
        } else {
            successes = 0;
            if started.elapsed() >= budget {
                let budget = humantime::format_duration(budget);
                return Err(format!(
                    "startup probe did not pass within {budget}: {}",
                    outcome.detail
                ));
            }
        }
        crate::timer::sleep(eager_pause(started.elapsed(), probe.period)).await;
    }
}

/// Reports every change of readiness, forever: eager until the first pass, then every period.
async fn readiness<F: Fn(ProbeEvent)>(checker: &Checker<'_, F>, probe: &Probe) {
    let (mut ready, mut ever_ready) = (false, false);
    let (mut successes, mut failures) = (0u32, 0u32);
    let started = Instant::now();
    loop {
        let outcome = checker.check(probe).await;
        if outcome.ok {
            successes = successes.saturating_add(1);
            failures = 0;
            if !ready && successes >= probe.success_threshold {
                (ready, ever_ready) = (true, true);
                (checker.send)(ProbeEvent::Ready(true, outcome.detail));
            }
        } else {
            failures = failures.saturating_add(1);
            successes = 0;
            if ready && failures >= probe.failure_threshold {
                ready = false;
                (checker.send)(ProbeEvent::Ready(false, outcome.detail));
            }
        }
        match ever_ready {
            true => tokio::time::sleep(probe.period).await,
            false => crate::timer::sleep(eager_pause(started.elapsed(), probe.period)).await,
        }
    }
}

/// Returns why, once `failure_threshold` checks in a row have failed.
async fn liveness<F: Fn(ProbeEvent)>(checker: &Checker<'_, F>, probe: &Probe) -> String {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(probe.period).await;
        let outcome = checker.check(probe).await;
        if outcome.ok {
            failures = 0;
            continue;
        }
        failures = failures.saturating_add(1);
        if failures >= probe.failure_threshold {
            return format!("liveness probe failed {failures} times: {}", outcome.detail);
        }
    }
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

    #[tokio::test]
    async fn huge_periods_and_thresholds_do_not_panic() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let mut config: crate::config::ProbeConfig = toml::from_str(&format!(
            "tcp = \"{addr}\"\nfailure_threshold = 4294967295\nsuccess_threshold = 4294967295"
        ))
        .unwrap();
        // The config refuses durations over 10 years; the runner must not panic even so.
        config.period = crate::config::HumanDuration(Duration::MAX);
        let probe = Probe::new(Role::Startup, &config, Vec::new()).unwrap();
        let probes = UnitProbes {
            startup: Some(probe.clone()),
            ready: Some(Probe {
                role: Role::Ready,
                ..probe.clone()
            }),
            live: Some(Probe {
                role: Role::Live,
                ..probe
            }),
            ready_after: Duration::MAX,
        };
        let reports = std::sync::atomic::AtomicU32::new(0);
        let send = |event: ProbeEvent| {
            assert!(matches!(event, ProbeEvent::Report(_)), "{event:?}");
            reports.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let ran =
            tokio::time::timeout(Duration::from_millis(100), run(probes, Reaper::default(), send)).await;
        assert!(
            ran.is_err(),
            "the startup probe keeps trying within its (huge) budget"
        );
        assert!(reports.load(std::sync::atomic::Ordering::Relaxed) > 0);
    }
}
