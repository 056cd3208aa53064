//! When kiln is in the load balancer: joins once every service is ready, leaves on stop, and says
//! which of the two it is in `kiln status` — never "registered" before the load balancer said so.
//!
//! After registration, a service that stops being ready (crash loop, failing probe) does *not*
//! deregister: `/readyz` and the agent-check say so at once and the load balancer's checks take
//! the instance out and put it back when it recovers, without a second registration path that can
//! fail. `Phase::Failed` (seal drift with the `fail` policy) is terminal: the instance is to be
//! replaced, so it leaves the load balancer as on stop.

use super::{DrainProgress, LbError, Registrar};
use crate::state::{DrainSummary, LbState, LbStatus, Phase, Shared, Snapshot, now_ms};
use crate::systemd::notify::Notifier;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// First wait after a failed registration; doubles up to [`RETRY_MAX`], forever.
const RETRY_START: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// `EXTEND_TIMEOUT_USEC` is sent this often while the drain runs, each time asking for
/// [`EXTEND_BY`] more: systemd then never kills kiln in the middle of a drain it bounds itself.
const EXTEND_EVERY: Duration = Duration::from_secs(5);
const EXTEND_BY: Duration = Duration::from_secs(15);

/// The instance's membership in one load balancer.
pub struct Membership {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

struct Inner {
    registrar: Box<dyn Registrar>,
    shared: Arc<Shared>,
    notifier: Arc<Notifier>,
    drain_timeout: Duration,
    steps: Mutex<Steps>,
}

/// What has been done so far (the task and `leave` both read it).
#[derive(Debug, Default, Clone, Copy)]
struct Steps {
    /// A registration was sent (it may have reached the load balancer even if it then failed).
    attempted: bool,
    /// The instance has already left (after `Phase::Failed`).
    left: bool,
}

impl Membership {
    /// Spawns the task that waits for `Phase::Ready`, then registers, retrying with capped
    /// exponential backoff forever while the load balancer refuses or cannot be reached, and
    /// reports each step in `shared` (`lb`).
    pub fn start(
        registrar: Box<dyn Registrar>,
        shared: Arc<Shared>,
        notifier: Arc<Notifier>,
        drain_timeout: Duration,
    ) -> Membership {
        let inner = Arc::new(Inner {
            registrar,
            shared,
            notifier,
            drain_timeout,
            steps: Mutex::new(Steps::default()),
        });
        inner.report(
            LbState::Unregistered,
            Some("waiting for every service to be ready".into()),
            None,
        );
        let task = tokio::spawn(inner.clone().run());
        Membership { inner, task }
    }

    /// The stop sequence, once the caller has set `Phase::Stopping` (so `/readyz` says 503 and
    /// the agent says drain): deregister → wait until drained, at most `drain_timeout` (with
    /// `EXTEND_TIMEOUT_USEC` to systemd meanwhile) → remove. Returns when the instance is out of
    /// the load balancer, or when the bound is reached; failures are reported, never fatal.
    pub async fn leave(self) {
        self.task.abort();
        let _ = self.task.await;
        let steps = *lock(&self.inner.steps);
        if steps.left {
            return;
        }
        if !steps.attempted {
            self.inner.report(
                LbState::Unregistered,
                Some("stopped before registration".into()),
                None,
            );
            return;
        }
        let inner = self.inner.clone();
        let extender = tokio::spawn(async move {
            loop {
                inner.notifier.extend_timeout(inner.drain_timeout + EXTEND_BY);
                tokio::time::sleep(EXTEND_EVERY).await;
            }
        });
        self.inner.drain_out("stopping").await;
        extender.abort();
    }
}

impl Inner {
    async fn run(self: Arc<Self>) {
        let mut phases = self.shared.subscribe();
        let mut delay = RETRY_START;
        let mut attempt = 0u32;
        let mut last_error = String::new();
        loop {
            if wait_phase(&mut phases, |p| p != Phase::Ready && !is_terminal(p)).await != Phase::Ready {
                return;
            }
            attempt += 1;
            lock(&self.steps).attempted = true;
            match self.registrar.register().await {
                Ok(()) => break,
                Err(LbError(e)) => {
                    if e != last_error {
                        tracing::warn!("lb: cannot register {}: {e}", self.registrar.describe());
                        self.shared.event("warn", format!("lb: cannot register: {e}"));
                        last_error = e.clone();
                    }
                    self.report(
                        LbState::Unregistered,
                        Some(format!("{e} (attempt {attempt}, next in {delay:.1?})")),
                        None,
                    );
                    // Sleeps, but a stop or failure ends the retries at once.
                    let stop = wait_phase(&mut phases, |p| !is_terminal(p));
                    if tokio::time::timeout(delay, stop).await.is_ok() {
                        return;
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
        let target = self.registrar.describe();
        tracing::info!("lb: registered {} {target}", self.registrar.kind());
        self.shared.event(
            "info",
            format!("lb: registered with {} {target}", self.registrar.kind()),
        );
        self.report(LbState::Registered, None, None);

        if wait_phase(&mut phases, |p| !is_terminal(p)).await == Phase::Failed {
            let reason = self.shared.snapshot().reason.clone().unwrap_or_default();
            tracing::warn!("lb: the instance failed ({reason}): leaving the load balancer");
            self.drain_out(&format!("instance failed: {reason}")).await;
            lock(&self.steps).left = true;
        }
    }

    /// Deregister → drained or deadline → remove, reporting as it goes.
    async fn drain_out(&self, why: &str) {
        let start = Instant::now();
        let deadline = start + self.drain_timeout;
        self.report(LbState::Draining, None, Some(format!("deregistering ({why})")));
        self.shared.event("info", format!("lb: leaving ({why})"));
        if let Err(LbError(e)) = self.deregister(deadline).await {
            // The load balancer still has the instance; its checks see /readyz 503 and the agent
            // saying drain, so waiting out the drain still lets in-flight requests finish.
            tracing::error!("lb: cannot deregister: {e}; relying on health checks until drain_timeout");
            self.shared.event("error", format!("lb: cannot deregister: {e}"));
            self.report(
                LbState::Registered,
                Some(format!("cannot deregister: {e}")),
                Some(format!(
                    "relying on health checks, up to {}",
                    humantime::format_duration(self.drain_timeout)
                )),
            );
            tokio::time::sleep_until(deadline.into()).await;
            return;
        }
        let summary = self.wait_drained(start, deadline).await;
        self.remove(summary).await;
    }

    /// Deregisters, retried with backoff while the next try would still be before `deadline`.
    async fn deregister(&self, deadline: Instant) -> Result<(), LbError> {
        let mut delay = RETRY_START;
        loop {
            match self.registrar.deregister().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() + delay >= deadline => return Err(e),
                Err(e) => {
                    tracing::warn!("lb: cannot deregister (retrying): {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Waits for the registrar's drain, reporting what is left as it goes (status, and systemd's
    /// STATUS line when it changes), records how it ended in `lb.last_drain`, and says so:
    /// `drained in 0.52s`, `not drained after 30.00s: ...`.
    async fn wait_drained(&self, start: Instant, deadline: Instant) -> String {
        let timeout = humantime::format_duration(self.drain_timeout);
        let last_line = Mutex::new(String::new());
        let last_sessions = Mutex::new(None);
        let progress = |left: DrainProgress| {
            let text = format!("{left}, {:.1}s of {timeout}", start.elapsed().as_secs_f64());
            self.report(LbState::Draining, None, Some(text));
            *lock(&last_sessions) = left.sessions;
            let previous = std::mem::replace(&mut *lock(&last_line), left.line.clone());
            if previous != left.line {
                self.notifier.status(&format!("draining: {left}"));
            }
        };
        let drained = self.registrar.wait_drained(deadline, &progress).await;
        let took = start.elapsed();
        let sessions_left = match &drained {
            Ok(()) => self.registrar.counts_sessions().then_some(0),
            Err(_) => *lock(&last_sessions),
        };
        self.shared.update(|s| {
            if let Some(lb) = &mut s.lb {
                lb.last_drain = Some(DrainSummary {
                    took_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                    sessions_left,
                });
            }
        });
        match drained {
            Ok(()) => format!("drained in {:.2}s", took.as_secs_f64()),
            Err(LbError(e)) => {
                tracing::warn!("lb: {e}");
                format!("not drained after {:.2}s: {e}", took.as_secs_f64())
            }
        }
    }

    /// Removes what is left of the registration and reports the instance out, with `summary`
    /// (how the drain went) and what went wrong, if anything.
    async fn remove(&self, mut summary: String) {
        match self.registrar.remove().await {
            Ok(()) => {
                tracing::info!("lb: left {} ({summary})", self.registrar.describe());
                self.shared.event("info", format!("lb: deregistered, {summary}"));
                self.report(LbState::Deregistered, None, Some(summary));
            }
            Err(LbError(e)) => {
                tracing::error!("lb: {e}");
                self.shared.event("error", format!("lb: {e}"));
                summary.push_str(&format!("; {e}"));
                self.report(LbState::Deregistered, Some(e), Some(summary));
            }
        }
    }

    fn report(&self, state: LbState, reason: Option<String>, drain: Option<String>) {
        let kind = self.registrar.kind().to_string();
        let target = self.registrar.describe();
        self.shared.update(|s| {
            let since_ms = match &s.lb {
                Some(lb) if lb.state == state => lb.since_ms,
                _ => now_ms(),
            };
            let last_drain = s.lb.as_ref().and_then(|lb| lb.last_drain);
            s.lb = Some(LbStatus {
                kind,
                target,
                state,
                reason,
                since_ms,
                drain,
                last_drain,
            });
        });
    }
}

/// The value behind `mutex`, even if a thread panicked holding it, as the rest of kiln locks:
/// what these locks guard is whole after every write, and a drain must not stop on a panic
/// elsewhere.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stopping, stopped or failed: nothing will be registered any more.
fn is_terminal(p: Phase) -> bool {
    matches!(p, Phase::Stopping | Phase::Stopped | Phase::Failed)
}

/// Waits while `keep_waiting(phase)`; returns the phase that ended the wait.
async fn wait_phase(rx: &mut watch::Receiver<Arc<Snapshot>>, keep_waiting: impl Fn(Phase) -> bool) -> Phase {
    loop {
        let phase = rx.borrow_and_update().phase;
        if !keep_waiting(phase) {
            return phase;
        }
        if rx.changed().await.is_err() {
            return Phase::Stopped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panic_elsewhere_still_gives_its_value() {
        let steps = Mutex::new(Steps {
            attempted: true,
            left: false,
        });
        let panicked = std::panic::catch_unwind(|| {
            let _held = lock(&steps);
            panic!("a panic while the lock is held");
        });
        assert!(panicked.is_err() && steps.is_poisoned());
        assert!(lock(&steps).attempted);
        lock(&steps).left = true;
        assert!(lock(&steps).left);
    }
}
