//! Passes on a 2xx or 3xx answer (redirects are not followed), and on `expect` in the body.

use super::Outcome;
use crate::http_client::root_cause;
use std::sync::OnceLock;

/// One client for every HTTP probe: no redirects (a 3xx passes as it is), plain HTTP only, so no
/// trust roots are loaded (that would cost milliseconds on the way to READY=1).
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::http_client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1)
            .tls_certs_only(std::iter::empty())
            .build()
            .expect("an HTTP client without TLS always builds")
    })
}

pub async fn check(url: &str, expect: Option<&str>) -> Outcome {
    let response = match client().get(url).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(root_cause(&e)),
    };
    let status = response.status();
    if !(status.is_success() || status.is_redirection()) {
        return Outcome::fail(format!("status {}", status.as_u16()));
    }
    match expect {
        None => Outcome::pass(format!("status {}", status.as_u16())),
        Some(want) => match response.text().await {
            Ok(body) if body.contains(want) => Outcome::pass(format!("status {}", status.as_u16())),
            Ok(_) => Outcome::fail(format!("status {} but the body lacks {want:?}", status.as_u16())),
            Err(e) => Outcome::fail(root_cause(&e)),
        },
    }
}
