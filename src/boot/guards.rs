//! What keeps a running instance honest after its boot. Neither guard changes anything in the
//! instance: they notice, say so, and apply the policy the image was baked with.
//!
//! - The seal watch: drift in the sealed paths is shown in status and, per `[seal] on_drift`,
//!   reported only, fails the instance (readiness 503, agent down, the load balancer membership
//!   leaves: the fleet replaces it), or drains and powers the machine off. A failure is sticky:
//!   putting the file back does not make a tampered instance trustworthy again. The watch starts
//!   right after the boot verification, before anything else: a sealed path it cannot watch
//!   refuses the boot, unless `on_drift = "report"` (then status shows it).
//! - The metadata recheck (`[metadata] recheck`): user-data or tags that changed since the boot
//!   are announced ("replace this instance"), never applied.

use super::stops::Stopper;
use crate::config::{MetadataConfig, OnDrift, SealConfig};
use crate::metadata::{self, Metadata};
use crate::metrics::Recorder;
use crate::seal::{self, DriftWatch, FoundBy, Verified};
use crate::state::{Phase, SealStatus, Shared, now_ms};
use std::sync::Arc;

pub const METADATA_CHANGED: &str = "metadata changed since boot: replace this instance";

/// Starts watching the sealed paths (None when nothing is sealed). What cannot be watched is
/// drift: it refuses the boot, or with `on_drift = "report"` is shown in status.
pub fn start_seal_watch(
    config: &SealConfig,
    verified: &Verified,
    shared: &Shared,
) -> Result<Option<DriftWatch>, String> {
    let Some(watch) = seal::watch(config, verified).map_err(|e| format!("seal: {e}"))? else {
        return Ok(None);
    };
    let blind = watch.unwatched();
    if blind.is_empty() {
        return Ok(Some(watch));
    }
    let lines = blind.iter().map(ToString::to_string).collect();
    shared.update(|s| s.seal.get_or_insert_with(SealStatus::default).drift = lines);
    let summary = seal::drift_summary(blind);
    if config.on_drift != OnDrift::Report {
        return Err(format!("seal: the watch cannot see every sealed path: {summary}"));
    }
    tracing::error!("seal watch: {summary}; on_drift = report: booting, the rescan still covers them");
    shared.event("error", format!("seal watch: {summary}"));
    Ok(Some(watch))
}

/// Applies `policy` to what the watch reports, for as long as kiln runs.
pub fn watch_seal(watch: DriftWatch, policy: OnDrift, shared: Arc<Shared>, stopper: Stopper) {
    tokio::spawn(on_drift(watch, policy, shared, stopper));
}

async fn on_drift(mut watch: DriftWatch, policy: OnDrift, shared: Arc<Shared>, stopper: Stopper) {
    let mut acted = false;
    while let Some(report) = watch.next().await {
        let lines: Vec<String> = report.differences.iter().map(ToString::to_string).collect();
        let clean = lines.is_empty();
        let changed = shared.snapshot().seal.as_ref().is_none_or(|s| s.drift != lines);
        shared.update(|s| {
            let seal = s.seal.get_or_insert_with(SealStatus::default);
            if report.found_by == FoundBy::Rescan {
                seal.last_verified_ms = Some(now_ms());
            }
            seal.drift = lines;
        });
        if !changed {
            continue;
        }
        if clean {
            tracing::warn!("the sealed paths match the seal again; the drift stays on record");
            shared.event("warn", "sealed paths match the seal again");
            continue;
        }
        let summary = seal::drift_summary(&report.differences);
        tracing::error!("seal drift: {summary}");
        shared.event("error", format!("seal drift: {summary}"));
        if acted {
            continue;
        }
        match policy {
            OnDrift::Report => {}
            OnDrift::Fail => {
                acted = true;
                tracing::error!("on_drift = fail: this instance is no longer ready; replace it");
                shared.update(|s| {
                    if !matches!(s.phase, Phase::Stopping | Phase::Stopped) {
                        s.phase = Phase::Failed;
                        s.reason = Some(format!("seal drift: {summary}"));
                    }
                });
            }
            OnDrift::Poweroff => {
                acted = true;
                tracing::error!("on_drift = poweroff: draining, then powering the machine off");
                stopper.request(true);
            }
        }
    }
}

/// Every `recheck`, fetches the metadata again and compares user-data and tags with the boot's.
pub fn recheck_metadata(
    config: &MetadataConfig,
    at_boot: Metadata,
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
) {
    let Some(every) = config.recheck else { return };
    let config = config.clone();
    tokio::spawn(async move {
        let mut announced = false;
        loop {
            tokio::time::sleep(every.get()).await;
            let started = std::time::Instant::now();
            let fetched = metadata::fetch(&config).await;
            recorder.metadata_fetched(started.elapsed());
            match fetched {
                // Tags include the pin tags: a changed pin is announced too.
                Ok(now) if now.user_data != at_boot.user_data || now.tags != at_boot.tags => {
                    if !announced {
                        announced = true;
                        tracing::warn!("{METADATA_CHANGED} (user-data or tags differ; nothing was applied)");
                        shared.event("warn", METADATA_CHANGED);
                        shared.update(|s| s.warnings.push(METADATA_CHANGED.into()));
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("metadata recheck: {e}"),
            }
        }
    });
}
