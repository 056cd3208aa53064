//! The metadata services' view of `net`: a provider's base address, its deadline and request
//! timeout, its body bound and which statuses it retries (5xx and 429 everywhere; Azure documents
//! 404 and 410 too). The loop, the backoff and the reading are `net`'s; any answer not retried
//! goes back to the provider, which knows what a 401 or a 404 means there.

use super::MetadataError;
use crate::net::retry::{self, Backoff, Outcome, Verdict};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use std::time::Duration;
use tokio::time::Instant;

pub(super) use crate::net::Answer;

/// One attempt of [`Http::send_with`]: an answer, a reason to try again (no answer, cut), or an
/// error that ends the request at once (EC2: the session token was refused).
pub(super) type Tried = Result<Result<Answer, String>, MetadataError>;

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
    /// Which statuses are retried: [`crate::net::transient_status`], or a provider's own.
    transient: fn(StatusCode) -> bool,
}

impl Http {
    pub fn new(
        client: reqwest::Client,
        provider: &'static str,
        base: String,
        deadline: Instant,
        request_timeout: Duration,
        body_limit: usize,
        transient: fn(StatusCode) -> bool,
    ) -> Http {
        Http {
            client,
            provider,
            base,
            deadline,
            request_timeout,
            body_limit,
            transient,
        }
    }

    /// Later requests give up at `deadline` (a watcher gives each read a deadline of its own).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// The same client, deadline and rules at another base address.
    pub fn at(&self, base: &str) -> Http {
        Http {
            base: base.to_string(),
            ..self.clone()
        }
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
        let classify = |answer: &Answer| self.by_status(answer.status);
        self.send_with(step, || async { Ok(self.once(request).await) }, classify)
            .await
    }

    /// [`crate::net::retry::until`] with the provider's attempt and classifier of answers (EC2:
    /// a token on each attempt, and a 401 asks for a new one). Connection errors, timeouts and
    /// cut answers are retried; an `Err` of the attempt ends it at once.
    pub async fn send_with<A, Fut>(
        &self,
        step: &str,
        attempt: A,
        mut classify: impl FnMut(&Answer) -> Verdict,
    ) -> Result<Answer, MetadataError>
    where
        A: FnMut() -> Fut,
        Fut: Future<Output = Tried>,
    {
        let verdict = |tried: &Tried| match tried {
            Ok(Ok(answer)) => classify(answer),
            Ok(Err(reason)) => Verdict::Retry(reason.clone()),
            Err(_) => Verdict::Final,
        };
        let log = |r: &retry::Retrying<'_>| {
            tracing::info!(
                provider = self.provider,
                step,
                attempt = r.attempt,
                "metadata request failed ({}); retrying in {}",
                r.reason,
                crate::net::millis(r.pause)
            );
        };
        match retry::until(self.deadline, Backoff::REQUEST, attempt, verdict, log).await {
            Outcome::Final(tried) => tried?.map_err(|reason| self.error(step, reason)),
            Outcome::GaveUp(gave_up) => Err(self.error(
                step,
                format!(
                    "gave up after {} and {} (deadline): {}",
                    crate::net::millis(gave_up.elapsed),
                    retry::attempts(gave_up.attempts),
                    gave_up.reason()
                ),
            )),
        }
    }

    /// Retried: what `net` retries everywhere (429, 5xx) and what the provider adds.
    pub fn by_status(&self, status: StatusCode) -> Verdict {
        match (self.transient)(status) {
            true => Verdict::Retry(format!("answered {}", status_text(status))),
            false => Verdict::Final,
        }
    }

    /// One attempt, within the request timeout or what is left of the deadline. The error is a
    /// reason fit for a message: no URL query, no body.
    pub async fn once(&self, request: &Request) -> Result<Answer, String> {
        let timeout = self
            .request_timeout
            .min(self.deadline.saturating_duration_since(Instant::now()));
        let mut builder = self
            .client
            .request(request.method.clone(), format!("{}{}", self.base, request.path))
            .headers(request.headers.clone());
        if !request.body.is_empty() {
            builder = builder.body(request.body.clone());
        }
        crate::net::exchange(builder, timeout, self.body_limit).await
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

/// A provider's one JSON document (`/metadata/v1.json` of DigitalOcean and UpCloud), asked once
/// per boot and kept: facts and user-data come from the same answer.
pub(super) struct JsonDocument {
    path: &'static str,
    value: tokio::sync::OnceCell<serde_json::Value>,
}

impl JsonDocument {
    pub fn new(path: &'static str) -> JsonDocument {
        JsonDocument {
            path,
            value: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn get(&self, http: &Http) -> Result<&serde_json::Value, MetadataError> {
        self.value
            .get_or_try_init(|| async {
                let step = self.path.trim_start_matches('/');
                let body = http.get_required(step, &Request::get(self.path)).await?;
                parse_json(http, step, &body)
            })
            .await
    }

    /// The document's `user_data` string, None when absent or empty.
    pub async fn user_data(&self, http: &Http) -> Result<Option<Vec<u8>>, MetadataError> {
        let doc = self.get(http).await?;
        Ok(doc
            .get("user_data")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec()))
    }
}

/// A session token asked with `PUT path` and its lifetime in `ttl_header` (Akamai's and
/// Alibaba's flow, IMDSv2's shape): the answer's body, as the header value later requests carry.
pub(super) async fn session_token(
    http: &Http,
    step: &str,
    path: &str,
    ttl_header: &'static str,
    ttl_seconds: &'static str,
) -> Result<HeaderValue, MetadataError> {
    let request = Request::put(path).header(ttl_header, HeaderValue::from_static(ttl_seconds));
    let answer = http.send(step, &request).await?;
    if answer.status != StatusCode::OK {
        let status = status_text(answer.status);
        return Err(http.error(step, format!("answered {status}")));
    }
    let token = text(http, step, &answer.body)?;
    HeaderValue::from_str(&token).map_err(|_| http.error(step, "the token is not a header value"))
}
