//! The GET that GCP Secret Manager and Azure Key Vault share: a bearer token, retried by
//! `crate::net::retry` inside the deadline on what `net` retries (no connection, no answer, 429,
//! 5xx).

use super::{Failure, Stores};
use crate::net::retry::{self, Backoff, Outcome, Verdict};
use reqwest::Url;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

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
    let classify = |tried: &Result<crate::net::Answer, String>| match tried {
        Ok(answer) if crate::net::transient_status(answer.status) => {
            Verdict::Retry(format!("answered {}", answer.status.as_u16()))
        }
        Ok(_) => Verdict::Final,
        Err(reason) => Verdict::Retry(reason.clone()),
    };
    let log = |r: &retry::Retrying<'_>| {
        tracing::info!(
            store = what,
            attempt = r.attempt,
            "secret request failed ({}); retrying in {}",
            r.reason,
            crate::net::millis(r.pause)
        );
    };
    let attempt = || attempt(stores, &url, token, deadline);
    match retry::until(deadline, Backoff::REQUEST, attempt, classify, log).await {
        Outcome::Final(Ok(answer)) => Ok(Answer {
            status: answer.status.as_u16(),
            body: answer.body.to_vec(),
        }),
        Outcome::Final(Err(reason)) => Err(Failure::new(format!("{what} GET {url}: {reason}"))),
        Outcome::GaveUp(gave_up) => Err(Failure::new(format!(
            "{what} GET {url}: {} (gave up at the deadline after {})",
            gave_up.reason(),
            retry::attempts(gave_up.attempts)
        ))),
    }
}

async fn attempt(
    stores: &Stores,
    url: &Url,
    token: &str,
    deadline: Instant,
) -> Result<crate::net::Answer, String> {
    stores.requests.fetch_add(1, Ordering::Relaxed);
    let request = stores
        .http
        .get(url.clone())
        .bearer_auth(token)
        .header("accept", "application/json");
    let timeout = crate::net::API_REQUEST_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
    crate::net::exchange(request, timeout, BODY_LIMIT).await
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
