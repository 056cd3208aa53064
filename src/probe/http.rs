//! Passes on a 2xx or 3xx answer (redirects are not followed), and on `expect` in the body.

use super::Outcome;
use std::sync::OnceLock;

/// One client for every HTTP probe: no proxy (a proxy variable must not reroute health checks),
/// no redirects, plain HTTP.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1)
            .build()
            .expect("an HTTP client without TLS always builds")
    })
}

pub async fn check(url: &str, expect: Option<&str>) -> Outcome {
    let response = match client().get(url).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(describe(&e)),
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
            Err(e) => Outcome::fail(describe(&e)),
        },
    }
}

/// reqwest's errors nest their cause; the innermost one is what a person needs.
fn describe(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    format!("{source}")
}
