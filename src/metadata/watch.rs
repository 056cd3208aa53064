//! Reads of the metadata service after the boot, for whoever watches it (the lifecycle notices):
//! the same client, headers, EC2 token, retry rule and body limit as the boot's fetch, with a
//! deadline per read instead of one for the whole fetch. What the answers mean is the watcher's
//! business; this room only knows how each cloud is asked.
//!
//! - EC2: GET under the IMDSv2 session; the token is kept and renewed on 401.
//! - GCE: hanging GETs (`?wait_for_change=true&last_etag=E&timeout_sec=N`) that come back when
//!   the value changes; the `ETag` of each answer goes into the next request, so a change between
//!   two requests is never missed. [`GcePace`] spaces them, for servers that do not hang.
//! - Azure: GET and POST with `Metadata: true` (Scheduled Events and their acknowledgement).

use super::client::{Http, Request, status_text, text};
use super::{MetadataError, Result};
use crate::config::{MetadataConfig, ProviderKind};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use std::time::Duration;
use tokio::time::Instant;

/// Notice documents are small; Scheduled Events with many events stay far below this.
const BODY_LIMIT: usize = 256 * 1024;

/// Azure: the first Scheduled Events request enables the service and may take up to two
/// minutes to answer (Azure's documentation).
const AZURE_FIRST_ANSWER: Duration = Duration::from_secs(150);

/// A GCE hanging GET is answered at most this long after `timeout_sec`; then it is retried.
const GCE_HANG_MARGIN: Duration = Duration::from_secs(10);

/// Two GCE hanging GETs for one value start at least this far apart.
const GCE_MIN_GAP: Duration = Duration::from_secs(1);

/// The gap grows to this at most: a preemption is announced 30 s ahead, so a server that does not
/// hang is still heard in time.
const GCE_MAX_GAP: Duration = Duration::from_secs(5);

/// The metadata service of the instance's cloud, for reads after the boot.
pub enum MetadataWatch {
    Ec2(Ec2Watch),
    Gce(GceWatch),
    Azure(AzureWatch),
}

impl MetadataWatch {
    /// The watch for the cloud `[metadata]` names (detected for `auto`); None for clouds
    /// without notices (OpenStack, DigitalOcean, nocloud).
    pub fn open(config: &MetadataConfig) -> Result<Option<MetadataWatch>> {
        let kind =
            match config.provider {
                ProviderKind::Auto => super::detect::detect(&config.dmi_dir, &config.hypervisor_uuid)
                    .map_err(|reason| MetadataError {
                        provider: "auto".into(),
                        endpoint: config.dmi_dir.display().to_string(),
                        step: "detect the cloud".into(),
                        reason,
                    })?,
                kind => kind,
            };
        let base = config.endpoint_or(crate::net::METADATA);
        let client = crate::net::client::link_local().map_err(|reason| MetadataError {
            provider: kind.to_string(),
            endpoint: base.clone(),
            step: "start".into(),
            reason,
        })?;
        let http = |name: &'static str, timeout: Duration, transient: fn(StatusCode) -> bool| {
            Http::new(
                client.clone(),
                name,
                base.clone(),
                Instant::now(),
                timeout,
                BODY_LIMIT,
                transient,
            )
        };
        let timeout = config.request_timeout.get();
        Ok(match kind {
            ProviderKind::Ec2 => Some(MetadataWatch::Ec2(Ec2Watch {
                ec2: Box::new(tokio::sync::Mutex::new(super::ec2::Ec2::new(
                    http("ec2", timeout, crate::net::transient_status),
                    config.imdsv1,
                ))),
            })),
            ProviderKind::Gce => Some(MetadataWatch::Gce(GceWatch {
                client: client.clone(),
                base: base.clone(),
            })),
            ProviderKind::Azure => Some(MetadataWatch::Azure(AzureWatch {
                http: http("azure", timeout.max(AZURE_FIRST_ANSWER), super::azure::transient),
            })),
            _ => None,
        })
    }

    /// `ec2`, `gce` or `azure`.
    pub fn provider(&self) -> &'static str {
        match self {
            MetadataWatch::Ec2(_) => "ec2",
            MetadataWatch::Gce(_) => "gce",
            MetadataWatch::Azure(_) => "azure",
        }
    }
}

/// EC2 IMDSv2, one session (token) for every read.
pub struct Ec2Watch {
    /// Boxed: the client (two addresses, IPv4 and IPv6) is several times the other clouds' size.
    ec2: Box<tokio::sync::Mutex<super::ec2::Ec2>>,
}

impl Ec2Watch {
    /// GET `path` (from `/latest/`); None when it is absent (404), as a notice is until the
    /// instance has one.
    pub async fn get(&self, path: &str, deadline: Instant) -> Result<Option<Bytes>> {
        let mut ec2 = self.ec2.lock().await;
        ec2.set_deadline(deadline);
        ec2.get(path.trim_start_matches("/latest/meta-data/"), path).await
    }
}

/// A value of the GCE metadata server and the `ETag` it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GceValue {
    /// The text answer, trimmed.
    pub value: String,
    pub etag: Option<String>,
}

/// The GCE metadata server (`Metadata-Flavor: Google` both ways).
pub struct GceWatch {
    client: reqwest::Client,
    base: String,
}

impl GceWatch {
    /// The value at `path` (from `/computeMetadata/v1/`) now, or, with `last_etag`, once it
    /// differs from the value that had that ETag (at once if it already does), at most
    /// `hang` later (then the current value). None when the path does not exist.
    pub async fn wait_for_change(
        &self,
        path: &str,
        last_etag: Option<&str>,
        hang: Duration,
    ) -> Result<Option<GceValue>> {
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(etag) = last_etag {
                query
                    .append_pair("wait_for_change", "true")
                    .append_pair("last_etag", etag)
                    .append_pair("timeout_sec", &hang.as_secs().max(1).to_string());
            }
            query.finish()
        };
        let full = match query.is_empty() {
            true => path.to_string(),
            false => format!("{path}?{query}"),
        };
        let step = path.trim_start_matches("/computeMetadata/v1/");
        // One attempt may hang for `hang`: it gets that long and a margin.
        let per_attempt = hang + GCE_HANG_MARGIN;
        let http = Http::new(
            self.client.clone(),
            "gce",
            self.base.clone(),
            Instant::now() + per_attempt + GCE_HANG_MARGIN,
            per_attempt,
            BODY_LIMIT,
            crate::net::transient_status,
        );
        let request = Request::get(full).header("metadata-flavor", HeaderValue::from_static("Google"));
        let answer = http.send(step, &request).await?;
        if answer.headers.get("metadata-flavor").map(HeaderValue::as_bytes) != Some(b"Google") {
            return Err(http.error(
                step,
                format!(
                    "answered {} without the header Metadata-Flavor: Google: not a GCE metadata server",
                    answer.status.as_u16()
                ),
            ));
        }
        match answer.status {
            StatusCode::OK => Ok(Some(GceValue {
                value: text(&http, step, &answer.body)?,
                etag: answer
                    .headers
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            })),
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(http.error(step, format!("answered {}", status_text(status)))),
        }
    }
}

/// When the next hanging GET for one GCE value may start. A server that answers
/// `wait_for_change` at once without a change (one that ignores it, a proxy that drops the query)
/// would else be asked as fast as it answers, thousands of times a second. Requests start at
/// least [`GCE_MIN_GAP`] apart; each early answer that changes nothing doubles the gap up to
/// [`GCE_MAX_GAP`]; a changed value, or an answer that came after waiting as asked, resets it.
#[derive(Debug)]
pub struct GcePace {
    path: &'static str,
    hang: Duration,
    gap: Duration,
    started: Option<Instant>,
    /// The value of the previous answer (None inside: the path did not exist); None before one.
    last: Option<Option<String>>,
    warned: bool,
}

impl GcePace {
    /// For the value at `path`, asked with `timeout_sec` = `hang`.
    pub fn new(path: &'static str, hang: Duration) -> GcePace {
        GcePace {
            path,
            hang,
            gap: GCE_MIN_GAP,
            started: None,
            last: None,
            warned: false,
        }
    }

    /// Waits until the next request may start (the gap after the previous one started).
    pub async fn ready(&mut self) {
        if let Some(started) = self.started {
            tokio::time::sleep_until(started + self.gap).await;
        }
        self.started = Some(Instant::now());
    }

    /// Notes the answer to the request started by the last [`GcePace::ready`]: the value, or
    /// None when the path does not exist.
    pub fn answered(&mut self, value: Option<&str>) {
        let changed = self.last.as_ref().is_none_or(|last| last.as_deref() != value);
        let waited = self.started.is_some_and(|s| s.elapsed() >= self.hang / 2);
        self.last = Some(value.map(str::to_string));
        if changed || waited {
            self.gap = GCE_MIN_GAP;
            return;
        }
        self.gap = (self.gap * 2).min(GCE_MAX_GAP);
        if self.gap == GCE_MAX_GAP && !self.warned {
            self.warned = true;
            tracing::warn!(
                "gce metadata server answers wait_for_change on {} at once without a change: \
                 asking every {}s instead of hanging",
                self.path.trim_start_matches("/computeMetadata/v1/"),
                GCE_MAX_GAP.as_secs()
            );
        }
    }
}

/// Azure IMDS (`Metadata: true`).
pub struct AzureWatch {
    http: Http,
}

impl AzureWatch {
    /// GET `path_and_query`; only 200 will do (Azure's passing 404/410/429 are retried).
    pub async fn get(&self, step: &str, path_and_query: &str, deadline: Instant) -> Result<Bytes> {
        let mut http = self.http.clone();
        http.set_deadline(deadline);
        let request = Request::get(path_and_query).header("metadata", HeaderValue::from_static("true"));
        let answer = http.send(step, &request).await?;
        match answer.status {
            StatusCode::OK => Ok(answer.body),
            status => Err(http.error(step, format!("answered {}", status_text(status)))),
        }
    }

    /// POST a JSON document to `path_and_query`; any 2xx will do.
    pub async fn post(
        &self,
        step: &str,
        path_and_query: &str,
        body: String,
        deadline: Instant,
    ) -> Result<()> {
        let mut http = self.http.clone();
        http.set_deadline(deadline);
        let request =
            Request::post_json(path_and_query, body).header("metadata", HeaderValue::from_static("true"));
        let answer = http.send(step, &request).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(http.error(step, format!("answered {}", status_text(answer.status))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers as a server that does not hang gives them: at once.
    fn answer(pace: &mut GcePace, value: Option<&str>) -> Duration {
        pace.started = Some(Instant::now());
        pace.answered(value);
        pace.gap
    }

    #[test]
    fn the_gap_doubles_on_answers_that_change_nothing_and_resets_on_a_change() {
        let mut pace = GcePace::new("/computeMetadata/v1/instance/preempted", Duration::from_secs(300));
        let secs = Duration::from_secs;
        assert_eq!(answer(&mut pace, Some("FALSE")), secs(1));
        let gaps: Vec<Duration> = (0..4).map(|_| answer(&mut pace, Some("FALSE"))).collect();
        assert_eq!(gaps, [secs(2), secs(4), secs(5), secs(5)]);
        assert_eq!(answer(&mut pace, Some("TRUE")), secs(1));
        assert_eq!(answer(&mut pace, Some("TRUE")), secs(2));
        assert_eq!(answer(&mut pace, None), secs(1), "the value went away: a change");
    }

    #[test]
    fn an_answer_after_the_hang_is_no_reason_to_slow_down() {
        let mut pace = GcePace::new("/computeMetadata/v1/instance/preempted", Duration::from_secs(2));
        answer(&mut pace, Some("FALSE"));
        answer(&mut pace, Some("FALSE"));
        pace.started = Instant::now().checked_sub(Duration::from_secs(2));
        pace.answered(Some("FALSE"));
        assert_eq!(pace.gap, GCE_MIN_GAP);
    }
}
