//! The series a snapshot cannot hold: what happened between two scrapes (each probe check's
//! latency and failure, each fetch's duration, each lifecycle notice), counted where it happens.
//!
//! Recording is a few atomic adds or one short lock inside prometheus-client's metric; it never
//! waits on a scrape for longer than the copy of one histogram. Nothing here reads kiln's state,
//! and nothing in kiln reads these numbers back to decide anything: they only leave by `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Upper bounds of the probe latency buckets, seconds: a TCP connect or a FastCGI ping on the
/// same machine takes well under a millisecond, a slow HTTP check or an exec probe seconds, and
/// a probe's `timeout` rarely exceeds 10 s.
const PROBE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

/// Upper bounds of the metadata and secret fetch buckets, seconds: a local metadata service
/// answers in milliseconds, a retried one within `[metadata] deadline` (60 s at most is usual).
const FETCH_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

/// One probe of one unit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    service: String,
    unit: String,
    /// startup, ready or live.
    probe: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoticeLabels {
    kind: &'static str,
}

/// Every series kiln records as things happen. One per kiln: the boot makes it and hands it to
/// each room that records (the supervisor's probes, the fetches, the notice watch) and to the
/// `/metrics` listener.
#[derive(Debug)]
pub struct Recorder {
    probe_duration: Family<ProbeLabels, Histogram, fn() -> Histogram>,
    probe_failures: Family<ProbeLabels, Counter>,
    metadata_fetch: Histogram,
    secrets_fetch: Histogram,
    lifecycle_notices: Family<NoticeLabels, Counter>,
}

/// A unit's probe series, resolved once so that a check records without a lookup or an
/// allocation.
#[derive(Clone, Debug)]
pub struct ProbeSeries {
    duration: Histogram,
    failures: Counter,
}

impl ProbeSeries {
    /// One check: its latency, and whether it failed.
    pub fn record(&self, latency: Duration, ok: bool) {
        self.duration.observe(latency.as_secs_f64());
        if !ok {
            self.failures.inc();
        }
    }
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            probe_duration: Family::new_with_constructor(|| Histogram::new(PROBE_BUCKETS)),
            probe_failures: Family::default(),
            metadata_fetch: Histogram::new(FETCH_BUCKETS),
            secrets_fetch: Histogram::new(FETCH_BUCKETS),
            lifecycle_notices: Family::default(),
        }
    }
}

impl Recorder {
    /// The series of one probe of one unit, created now (at zero) so that they exist from the
    /// unit's first start: `rate()` and alerts see the first failure, not a series appearing.
    /// `probe` is the probe's role (`startup`, `ready`, `live`).
    pub fn probe(&self, service: &str, unit: &str, probe: &'static str) -> ProbeSeries {
        let labels = ProbeLabels {
            service: service.to_string(),
            unit: unit.to_string(),
            probe,
        };
        ProbeSeries {
            duration: self.probe_duration.get_or_create_owned(&labels),
            failures: self.probe_failures.get_or_create_owned(&labels),
        }
    }

    /// One fetch of the instance metadata (at boot, and each `[metadata] recheck`).
    pub fn metadata_fetched(&self, took: Duration) {
        self.metadata_fetch.observe(took.as_secs_f64());
    }

    /// One resolution of the secret references (at boot, and each recheck).
    pub fn secrets_fetched(&self, took: Duration) {
        self.secrets_fetch.observe(took.as_secs_f64());
    }

    /// Creates the lifecycle notice series at zero, for the kinds this instance watches: call
    /// once when the watch starts, so the first notice is an increase Prometheus can see.
    pub fn lifecycle_notices_watched(&self, kinds: &[&'static str]) {
        for &kind in kinds {
            drop(self.lifecycle_notices.get_or_create(&NoticeLabels { kind }));
        }
    }

    /// One lifecycle notice received (an interruption, a rebalance recommendation, a scheduled
    /// maintenance, an Auto Scaling terminate...). `kind` is the notice's snake_case name, e.g.
    /// `spot_interruption`: a `&'static str`, so that no text from the network becomes a label.
    pub fn lifecycle_notice(&self, kind: &'static str) {
        self.lifecycle_notices.get_or_create(&NoticeLabels { kind }).inc();
    }

    /// Registers every series (clones share the counts) into the scrape's registry.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "kiln_probe_duration_seconds",
            "How long each probe check took, by unit and probe",
            self.probe_duration.clone(),
        );
        registry.register(
            "kiln_probe_failures",
            "Probe checks that failed, by unit and probe",
            self.probe_failures.clone(),
        );
        registry.register(
            "kiln_metadata_fetch_duration_seconds",
            "How long each fetch of the instance metadata took (boot and rechecks)",
            self.metadata_fetch.clone(),
        );
        registry.register(
            "kiln_secrets_fetch_duration_seconds",
            "How long each resolution of the secret references took (boot and rechecks)",
            self.secrets_fetch.clone(),
        );
        registry.register(
            "kiln_lifecycle_notices",
            "Lifecycle notices received from the platform, by kind",
            self.lifecycle_notices.clone(),
        );
    }
}
