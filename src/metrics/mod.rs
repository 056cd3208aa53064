//! Metrics for Prometheus: what `kiln status` shows a person, in the format a fleet's monitoring
//! scrapes (`GET /metrics` on `[metrics] listen`, see `serve::metrics`).
//!
//! Most series are read at each scrape from the same snapshot `kiln status` reads (`snapshot`):
//! phases, units, the load balancer, the seal. What a snapshot cannot hold, because it happens
//! between two scrapes, is counted where it happens by the [`Recorder`] (`recorder`): each probe
//! check's latency and failure, each fetch's duration, each lifecycle notice. Data flows one way:
//! this room reads kiln's state and never reaches back into a decision.
//!
//! prometheus-client encodes both formats (`format`): the Prometheus text format by default,
//! OpenMetrics when the scraper's `Accept` asks for it. Names follow Prometheus' conventions:
//! `kiln_` first, base units (`_seconds`, `_bytes`), counters end in `_total`, enums are one
//! series per value (1 for the current one), labels only from what the config bounds (services,
//! units, probes); the instance's identity is on `kiln_info` alone.

mod format;
mod recorder;
mod snapshot;

pub use format::Format;
pub use recorder::{ProbeSeries, Recorder};

use crate::state::Snapshot;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The exposition of `snapshot` (completed with the log's and the listeners' figures and the
/// units' cgroup usage, as `kiln status` does) and of `recorder`'s series, in `format`.
pub fn render(snapshot: Arc<Snapshot>, recorder: &Recorder, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot::SnapshotSeries(snapshot)));
    // A sub-registry is encoded after the collector: the instance's own series come first.
    recorder.register(registry.sub_registry_with_labels(std::iter::empty()));
    format.encode(&registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every series of a snapshot with every section (`status/golden/snapshot.json`) stays the
    /// same byte for byte (`status/golden/metrics.txt`).
    #[test]
    fn a_full_snapshot_exposes_the_same_series() {
        let snapshot: Snapshot =
            serde_json::from_str(include_str!("../status/golden/snapshot.json")).unwrap();
        let text = render(Arc::new(snapshot), &Recorder::default(), Format::Prometheus);
        if std::env::var_os("KILN_GOLDEN_WRITE").is_some() {
            std::fs::write("src/status/golden/metrics.txt", &text).unwrap();
        }
        assert_eq!(text, include_str!("../status/golden/metrics.txt"));
    }
}
