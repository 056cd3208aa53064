//! The one HTTP client every provider shares: plain HTTP, no proxy, a per-request timeout and
//! capped exponential backoff inside the fetch's deadline.
//!
//! Retries cover what goes away by itself: connection errors, timeouts, cut answers and the
//! statuses the provider names (5xx everywhere; Azure documents 404/410/429 too). Any other
//! answer is final and goes back to the provider, which knows what a 401 or a 404 means there.

use super::MetadataError;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use std::time::Duration;
use tokio::time::Instant;

/// First pause between two attempts; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Builds the client all providers share (no proxy: see `http_client`). No trust roots are
/// loaded: it never speaks TLS, and loading them would cost milliseconds at every boot.
///
/// Every request gets a connection of its own. Metadata servers that are not hyper (Python's
/// `http.server`, others) write an answer's head and body in two segments with Nagle's
/// algorithm on: on a reused connection the body then waits for the client's delayed ACK,
/// about 40 ms per request, while a fresh connection acknowledges at once (quick-ack mode). A
/// boot makes a handful of requests to a link-local server, where a connection costs well under
/// a millisecond.
pub(super) fn build_client() -> Result<reqwest::Client, String> {
    crate::http_client::builder()
        .pool_max_idle_per_host(0)
        .no_gzip()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only(std::iter::empty())
        .build()
        .map_err(|e| {
            format!(
                "cannot build the HTTP client: {}",
                crate::http_client::root_cause(&e)
            )
        })
}

/// A request, described so it can be sent again on retry.
pub(super) struct Request {
    pub method: Method,
    /// Path and query, from the first `/`.
    pub path: String,
    pub headers: HeaderMap,
    /// Empty for GET and PUT.
    pub body: Bytes,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Request {
        Request {
            method: Method::GET,
            path: path.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// A POST of a JSON document (Azure's Scheduled Events acknowledgement).
    pub fn post_json(path: impl Into<String>, body: impl Into<Bytes>) -> Request {
        Request {
            method: Method::POST,
            body: body.into(),
            ..Request::get(path)
        }
        .header("content-type", HeaderValue::from_static("application/json"))
    }

    pub fn put(path: impl Into<String>) -> Request {
        Request {
            method: Method::PUT,
            ..Request::get(path)
        }
    }

    pub fn header(mut self, name: &'static str, value: HeaderValue) -> Request {
        self.headers.insert(HeaderName::from_static(name), value);
        self
    }
}

/// A final answer: any status the provider did not ask to retry.
pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// One provider's view of the shared client: its base address, its retry statuses, the deadline.
#[derive(Clone)]
pub(super) struct Http {
    client: reqwest::Client,
    pub provider: &'static str,
    pub base: String,
    deadline: Instant,
    request_timeout: Duration,
    /// Largest answer body read; past it the answer is refused (a metadata document is small).
    body_limit: usize,
    retry_status: fn(StatusCode) -> bool,
}

/// 5xx and 429 (too many requests) pass; every other answer is final.
pub(super) fn retry_5xx(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

impl Http {
    pub fn new(
        client: reqwest::Client,
        provider: &'static str,
        base: String,
        deadline: Instant,
        request_timeout: Duration,
        body_limit: usize,
        retry_status: fn(StatusCode) -> bool,
    ) -> Http {
        Http {
            client,
            provider,
            base,
            deadline,
            request_timeout,
            body_limit,
            retry_status,
        }
    }

    /// Later requests give up at `deadline` (a watcher gives each read a deadline of its own).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    pub fn error(&self, step: &str, reason: impl Into<String>) -> MetadataError {
        MetadataError {
            provider: self.provider.to_string(),
            endpoint: self.base.clone(),
            step: step.to_string(),
            reason: reason.into(),
        }
    }

    /// Sends `request` until it gets a final answer or the deadline passes.
    pub async fn send(&self, step: &str, request: &Request) -> Result<Answer, MetadataError> {
        let url = format!("{}{}", self.base, request.path);
        let started = Instant::now();
        let mut backoff = BACKOFF_FIRST;
        let mut attempts = 0u32;
        let mut last_reason = None;
        loop {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                let reason =
                    last_reason.unwrap_or_else(|| "the deadline passed before the first attempt".into());
                return Err(self.error(
                    step,
                    format!(
                        "gave up after {} and {attempts} attempt{} (deadline): {reason}",
                        millis(started.elapsed()),
                        if attempts == 1 { "" } else { "s" }
                    ),
                ));
            }
            attempts += 1;
            let timeout = remaining.min(self.request_timeout);
            let reason = match tokio::time::timeout(timeout, self.attempt(&url, request)).await {
                Ok(Ok(answer)) if !(self.retry_status)(answer.status) => return Ok(answer),
                Ok(Ok(answer)) => format!("answered {}", status_text(answer.status)),
                Ok(Err(reason)) => reason,
                Err(_) => format!("no answer within {}", millis(timeout)),
            };
            let pause = backoff.min(self.deadline.saturating_duration_since(Instant::now()));
            if !pause.is_zero() {
                tracing::info!(
                    provider = self.provider,
                    step,
                    attempt = attempts,
                    "metadata request failed ({reason}); retrying in {}",
                    millis(pause)
                );
                tokio::time::sleep(pause).await;
            }
            last_reason = Some(reason);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One attempt. The error is a reason fit for a message: no URL query, no body.
    async fn attempt(&self, url: &str, request: &Request) -> Result<Answer, String> {
        let mut builder = self
            .client
            .request(request.method.clone(), url)
            .headers(request.headers.clone());
        if !request.body.is_empty() {
            builder = builder.body(request.body.clone());
        }
        let mut response = builder.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        if let Some(len) = response.content_length()
            && len > self.body_limit as u64
        {
            return Err(format!(
                "answer of {len} bytes is over the {} byte limit",
                self.body_limit
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > self.body_limit {
                return Err(format!("answer is over the {} byte limit", self.body_limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body: Bytes::from(body),
        })
    }

    /// GET where 200 is the answer and 404 means "the instance has none".
    pub async fn get_optional(&self, step: &str, request: &Request) -> Result<Option<Bytes>, MetadataError> {
        let answer = self.send(step, request).await?;
        match answer.status {
            StatusCode::OK => Ok(Some(answer.body)),
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(self.error(step, format!("answered {}", status_text(status)))),
        }
    }

    /// GET where only 200 will do.
    pub async fn get_required(&self, step: &str, request: &Request) -> Result<Bytes, MetadataError> {
        self.get_optional(step, request)
            .await?
            .ok_or_else(|| self.error(step, "answered 404 Not Found"))
    }
}

pub(super) fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// A duration to the millisecond, as people read it (`1s 500ms`).
fn millis(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() {
        format!("cannot connect: {}", crate::http_client::root_cause(e))
    } else if e.is_timeout() {
        "timed out".to_string()
    } else {
        crate::http_client::root_cause(e)
    }
}

/// The innermost cause (e.g. "Connection refused (os error 111)"), without reqwest's URL prefix.
/// Reads a JSON document, refusing anything else. serde_json's syntax errors carry a position,
/// never the text, so the reason is safe to show.
pub(super) fn parse_json(http: &Http, step: &str, body: &[u8]) -> Result<serde_json::Value, MetadataError> {
    serde_json::from_slice(body).map_err(|e| http.error(step, format!("not the expected JSON: {e}")))
}

/// The string at a JSON pointer; numbers are written out (ids are numbers on some clouds).
/// Empty strings are None.
pub(super) fn json_string(doc: &serde_json::Value, pointer: &str) -> Option<String> {
    match doc.pointer(pointer)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A UTF-8 text answer, trimmed. Names the step on failure, never the content.
pub(super) fn text(http: &Http, step: &str, body: &[u8]) -> Result<String, MetadataError> {
    std::str::from_utf8(body)
        .map(|s| s.trim().to_string())
        .map_err(|_| http.error(step, "answer is not UTF-8 text"))
}
