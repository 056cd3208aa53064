//! The GET that GCP Secret Manager and Azure Key Vault share: a bearer token, a per-request
//! timeout, and retries on connection errors, timeouts, 429 and 5xx with the metadata requests'
//! capped exponential backoff, inside the deadline.

use super::{Failure, Stores};
use crate::http_client::BodyError;
use reqwest::Url;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A secret is at most 64 KiB; its JSON envelope (base64 for GCP) a little more.
const BODY_LIMIT: usize = 256 * 1024;

/// A final answer (any status that is not retried).
pub(super) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GETs `url` with `token` until a final answer or the deadline. `what` names the store in
/// messages (`gcp`, `keyvault`); the URL is not secret, the token never appears.
pub(super) async fn get(
    stores: &Stores,
    what: &str,
    url: Url,
    token: &str,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let mut backoff = BACKOFF_FIRST;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let reason = match attempt(stores, &url, token, remaining.min(REQUEST_TIMEOUT)).await {
            Ok(answer) if !(answer.status >= 500 || answer.status == 429) => return Ok(answer),
            Ok(answer) => format!("answered {}", answer.status),
            Err(reason) => reason,
        };
        let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
        if pause.is_zero() {
            return Err(Failure::new(format!(
                "{what} GET {url}: {reason} (gave up at the deadline after {attempts} attempts)"
            )));
        }
        tracing::info!(
            store = what,
            attempt = attempts,
            "secret request failed ({reason}); retrying"
        );
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn attempt(stores: &Stores, url: &Url, token: &str, timeout: Duration) -> Result<Answer, String> {
    if timeout.is_zero() {
        return Err("the deadline passed".into());
    }
    stores.requests.fetch_add(1, Ordering::Relaxed);
    let mut response = stores
        .http
        .get(url.clone())
        .bearer_auth(token)
        .header("accept", "application/json")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| crate::http_client::root_cause(&e))?;
    let status = response.status().as_u16();
    let body = match crate::http_client::read_body(&mut response, BODY_LIMIT).await {
        Ok(body) => body,
        Err(BodyError::TooLong(limit)) => return Err(format!("answer is over the {limit} byte limit")),
        Err(BodyError::Read(e)) => return Err(crate::http_client::root_cause(&e)),
    };
    Ok(Answer { status, body })
}

/// `base` (an endpoint, which may carry a path) with `segments` appended, each percent-encoded
/// as one path segment: a name can neither add a segment nor leave the endpoint's path.
pub(super) fn url(base: &str, segments: &[&str]) -> Result<Url, String> {
    let mut url = Url::parse(base)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or("not an http(s) URL")?;
    url.path_segments_mut()
        .map_err(|()| "not a base URL")?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// `{"error": {"code", "message", "status"}}`, the shape both Google and Azure use: the code
/// (Google's `status` such as `NOT_FOUND`, Azure's `code` such as `SecretNotFound`) and message.
pub(super) fn error(answer: &Answer, code_field: &str) -> (Option<String>, String) {
    let doc: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    let error = doc.as_ref().and_then(|d| d.get("error"));
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(|v| v.as_str())
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    let message = crate::terminal::peer_text(&field("message").unwrap_or_default());
    (field(code_field).map(|c| crate::terminal::peer_word(&c)), message)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_path_segments_of_the_endpoint() {
        let url = super::url(
            "http://127.0.0.1:9/prefix/",
            &["secrets", "a/b?c#d", "..", "v:access"],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/prefix/secrets/a%2Fb%3Fc%23d/v:access"
        );
        let url = super::url("https://secretmanager.googleapis.com", &["v1", "projects", "p"]).unwrap();
        assert_eq!(url.as_str(), "https://secretmanager.googleapis.com/v1/projects/p");
        assert!(super::url("not a url", &["x"]).is_err());
    }
}
