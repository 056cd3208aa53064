//! `[warm]`: once every service is ready and before kiln says so (`READY=1`, `/readyz` 200, the
//! load balancer join), requests through the app's own listener to the paths the config names,
//! so that OPcache, the autoloader and the app's caches are hot when the first client comes. A
//! new instance that joins cold serves its first requests slowly, exactly when a scale-out or an
//! instance refresh needs it most.
//!
//! The warm-up is bounded by `[warm] timeout`, and it never refuses the boot: a request that
//! fails or a timeout is a warning (log, event, status), and the instance goes on to ready. Why:
//! readiness is the probes' to decide, and they said yes; the warm-up makes the first requests
//! faster, it does not judge them. Refusing would turn a slow disk or a slow dependency on one
//! boot into a replaced instance, and a scale-out under load into none at all, when a slower
//! first minute is the lesser harm.

use crate::config::{Fact, WarmPlan};
use crate::metadata::InstanceFacts;
use crate::state::{Shared, WarmState, WarmStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// An answer's body is read whole (as a client would) up to this; past it, the request counts
/// as failed.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The snapshot is updated at most this often while requests run.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// The warm-up, its URLs filled with this instance's facts and its client built.
#[derive(Debug)]
pub struct Warmer {
    client: reqwest::Client,
    /// One URL per `[warm] paths` entry, in order.
    urls: Vec<String>,
    host: Option<String>,
    requests: u32,
    concurrency: u32,
    timeout: Duration,
    request_timeout: Duration,
}

impl Warmer {
    /// Before any service starts: the URL filled (a fact the instance lacks refuses the boot,
    /// like any other setting that cannot be used) and the client built.
    pub fn new(plan: &WarmPlan, facts: &InstanceFacts) -> Result<Warmer, String> {
        let base = plan.url.render(|fact| fact_of(facts, fact)).map_err(|missing| {
            format!(
                "[warm] url = {:?}: the instance has no {} (metadata provider {:?})",
                plan.url.as_str(),
                missing.name(),
                facts.provider
            )
        })?;
        let base = base.trim_end_matches('/');
        let client = crate::net::client::local(plan.concurrency as usize, plan.request_timeout)
            .map_err(|e| format!("[warm]: {e}"))?;
        Ok(Warmer {
            client,
            urls: plan.paths.iter().map(|p| format!("{base}{p}")).collect(),
            host: plan.host.clone(),
            requests: plan.requests,
            concurrency: plan.concurrency,
            timeout: plan.timeout,
            request_timeout: plan.request_timeout,
        })
    }

    /// Sends the requests, `concurrency` at a time, until all are answered or `timeout` passes;
    /// reports as it goes and says how it went. Never fails: see the module's doc.
    pub async fn run(self, shared: Arc<Shared>) {
        let (requests, timeout) = (self.requests, self.timeout);
        tracing::info!(
            "warm-up: {requests} requests to {} path{}, {} at a time, within {}",
            self.urls.len(),
            if self.urls.len() == 1 { "" } else { "s" },
            self.concurrency,
            humantime::format_duration(timeout)
        );
        let tally = Tally::new(requests, shared.clone());
        tally.publish(WarmState::Running);
        let next = AtomicU32::new(0);
        let me = &self;
        let workers = (0..self.concurrency.min(requests)).map(|_| async {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return;
                }
                let url = &me.urls[i as usize % me.urls.len()];
                let started = Instant::now();
                let outcome = me.ask(url).await;
                tally.record(
                    started.elapsed(),
                    outcome.map_err(|e| format!("GET {}: {e}", path_of(url))),
                );
            }
        });
        let all = futures_util::future::join_all(workers);
        let state = match tokio::time::timeout(timeout, all).await {
            Ok(_) => WarmState::Done,
            Err(_) => WarmState::TimedOut,
        };
        tally.finish(state);
    }

    /// One request: an answer of 2xx or 3xx, its body read, within `request_timeout`.
    async fn ask(&self, url: &str) -> Result<(), String> {
        let mut request = self.client.get(url);
        if let Some(host) = &self.host {
            request = request.header(reqwest::header::HOST, host);
        }
        let answer = crate::net::exchange(request, self.request_timeout, BODY_LIMIT).await?;
        let status = answer.status;
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("status {}", status.as_u16()))
        }
    }
}

/// The path and query of one of the warm-up's URLs, for messages.
fn path_of(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// A fact of the instance by the name a `{placeholder}` gives it (as `lb` fills its own).
fn fact_of(facts: &InstanceFacts, fact: Fact) -> Option<&str> {
    let value = match fact {
        Fact::InstanceId => &facts.instance_id,
        Fact::LocalIpv4 => &facts.local_ipv4,
        Fact::Region => &facts.region,
        Fact::Hostname => &facts.hostname,
    };
    value.as_deref().filter(|v| !v.is_empty())
}

/// What the requests gave so far, published to the snapshot now and then.
struct Tally {
    shared: Arc<Shared>,
    started: Instant,
    inner: Mutex<Counts>,
}

struct Counts {
    status: WarmStatus,
    latencies: Vec<Duration>,
    published: Instant,
}

impl Tally {
    fn new(requests: u32, shared: Arc<Shared>) -> Tally {
        let status = WarmStatus {
            requests,
            ..WarmStatus::default()
        };
        Tally {
            shared,
            started: Instant::now(),
            inner: Mutex::new(Counts {
                status,
                latencies: Vec::with_capacity(requests.min(10_000) as usize),
                published: Instant::now(),
            }),
        }
    }

    fn record(&self, took: Duration, outcome: Result<(), String>) {
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        counts.status.answered += 1;
        counts.latencies.push(took);
        if let Err(e) = outcome {
            counts.status.failed += 1;
            counts.status.first_failure.get_or_insert(e);
        }
        if counts.published.elapsed() >= PUBLISH_EVERY {
            counts.published = Instant::now();
            let status = self.summed(&mut counts, WarmState::Running);
            drop(counts);
            self.shared.update(|s| s.warm = Some(status));
        }
    }

    fn publish(&self, state: WarmState) {
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let status = self.summed(&mut counts, state);
        drop(counts);
        self.shared.update(|s| s.warm = Some(status));
    }

    /// The status with the time so far and the latencies' median and maximum.
    fn summed(&self, counts: &mut Counts, state: WarmState) -> WarmStatus {
        counts.latencies.sort_unstable();
        let micros = |d: Option<&Duration>| d.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        WarmStatus {
            state,
            took_us: micros(Some(&self.started.elapsed())),
            p50_us: micros(counts.latencies.get(counts.latencies.len() / 2)),
            max_us: micros(counts.latencies.last()),
            ..counts.status.clone()
        }
    }

    /// The last word: status, and a log line (a warning and an event when not all went well).
    fn finish(&self, state: WarmState) {
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let status = self.summed(&mut counts, state);
        drop(counts);
        let line = summary(&status);
        if state == WarmState::Done && status.failed == 0 {
            tracing::info!("warm-up: {line}");
        } else {
            tracing::warn!("warm-up: {line}; going on to ready all the same (the probes decide readiness)");
            self.shared.event("warn", format!("warm-up: {line}"));
        }
        self.shared.update(|s| s.warm = Some(status));
    }
}

/// `50 requests in 1.23s (p50 12ms, max 340ms), 3 failed (first: GET /x: status 500)`, or
/// `stopped at its timeout (1m) after 20 of 50 requests ...`: for the log and `kiln status`.
pub fn summary(status: &WarmStatus) -> String {
    let ms = |us: u64| crate::net::millis(Duration::from_micros(us));
    let timing = format!("(p50 {}, max {})", ms(status.p50_us), ms(status.max_us));
    let (answered, requests) = (status.answered, status.requests);
    let head = match status.state {
        WarmState::TimedOut => format!(
            "stopped at its timeout ({}) after {answered} of {requests} requests {timing}",
            ms(status.took_us)
        ),
        WarmState::Stopped => format!("stopped after {answered} of {requests} requests"),
        WarmState::Running => format!("{answered} of {requests} requests, {} so far", ms(status.took_us)),
        WarmState::Done => format!("{answered} requests in {} {timing}", ms(status.took_us)),
    };
    match (&status.first_failure, status.failed) {
        (Some(first), failed) => format!("{head}, {failed} failed (first: {first})"),
        (None, _) => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_says_what_happened_in_one_line() {
        let mut status = WarmStatus {
            state: WarmState::Done,
            requests: 50,
            answered: 50,
            failed: 0,
            first_failure: None,
            took_us: 1_230_000,
            p50_us: 12_000,
            max_us: 340_000,
        };
        assert_eq!(summary(&status), "50 requests in 1s 230ms (p50 12ms, max 340ms)");
        status.failed = 3;
        status.first_failure = Some("GET /x: status 500".into());
        status.state = WarmState::TimedOut;
        status.answered = 20;
        status.took_us = 30_000_000;
        assert_eq!(
            summary(&status),
            "stopped at its timeout (30s) after 20 of 50 requests (p50 12ms, max 340ms), 3 failed (first: GET /x: status 500)"
        );
        assert_eq!(path_of("http://127.0.0.1:8080/a?b=1"), "/a?b=1");
        assert_eq!(path_of("http://127.0.0.1:8080"), "/");
    }
}
