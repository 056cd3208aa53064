//! `[warm]`: requests kiln sends through the app's own listener once every service is ready and
//! before it says so (`READY=1`, `/readyz` 200, the load balancer join), so that the first
//! requests of real clients find OPcache, the autoloader and the app's caches hot.
//!
//! Read in two steps as `[lb]`: [`WarmTable`] as written, [`WarmTable::check`] makes it a
//! [`WarmPlan`] (the URL a [`Template`] of the instance's facts, defaults applied).

use super::HumanDuration;
use super::template::Template;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Requests sent in all, by default.
pub const DEFAULT_REQUESTS: u32 = 50;
/// Requests in flight at once, by default.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// The whole warm-up's bound, by default.
pub const DEFAULT_TIMEOUT: HumanDuration = HumanDuration::from_secs(30);
/// One request's bound, by default.
pub const DEFAULT_REQUEST_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);

const MAX_REQUESTS: u32 = 100_000;
const MAX_CONCURRENCY: u32 = 256;
const MAX_PATHS: usize = 256;

/// `[warm]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WarmTable {
    /// The app's own listener: `http://127.0.0.1:8080`, or `http://{local_ipv4}:80`.
    url: Option<String>,
    /// Paths asked in turn (`GET`), each starting with `/`.
    #[serde(default)]
    paths: Vec<String>,
    /// Requests in all, spread over `paths` in turn.
    requests: Option<u32>,
    /// Requests in flight at once.
    concurrency: Option<u32>,
    /// The warm-up's bound: past it kiln stops warming and says ready all the same.
    timeout: Option<HumanDuration>,
    /// One request's bound (answer and body).
    request_timeout: Option<HumanDuration>,
    /// The `Host` header, for an app served under a name (nginx `server_name`).
    host: Option<String>,
}

/// `[warm]`, checked.
#[derive(Debug, Clone)]
pub struct WarmPlan {
    /// The base URL, `{placeholders}` of facts filled at boot.
    pub url: Template,
    pub paths: Vec<String>,
    pub requests: u32,
    pub concurrency: u32,
    pub timeout: Duration,
    pub request_timeout: Duration,
    pub host: Option<String>,
}

impl WarmTable {
    /// The plan, or every problem, each naming its key.
    pub fn check(&self) -> Result<WarmPlan, Vec<String>> {
        let mut problems = Vec::new();
        let url = match self.url.as_deref() {
            None => {
                problems.push("url: missing: the app's own listener, as \"http://127.0.0.1:80\"".into());
                None
            }
            Some(url) => check_url(url)
                .map_err(|e| problems.push(format!("url = {url:?}: {e}")))
                .ok(),
        };
        if self.paths.is_empty() {
            problems.push("paths: missing: the paths to ask, as [\"/\"]".into());
        }
        if self.paths.len() > MAX_PATHS {
            problems.push(format!("paths: {} paths, at most {MAX_PATHS}", self.paths.len()));
        }
        for path in &self.paths {
            if let Err(e) = check_path(path) {
                problems.push(format!("paths: {path:?}: {e}"));
            }
        }
        let requests = self.requests.unwrap_or(DEFAULT_REQUESTS);
        if requests == 0 || requests > MAX_REQUESTS {
            problems.push(format!(
                "requests = {requests}: must be between 1 and {MAX_REQUESTS}"
            ));
        } else if (requests as usize) < self.paths.len() {
            problems.push(format!(
                "requests = {requests}: fewer than the {} paths: some would never be asked",
                self.paths.len()
            ));
        }
        let concurrency = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 || concurrency > MAX_CONCURRENCY {
            problems.push(format!(
                "concurrency = {concurrency}: must be between 1 and {MAX_CONCURRENCY}"
            ));
        }
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let request_timeout = self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if timeout.get().is_zero() || request_timeout.get().is_zero() {
            problems.push("timeout, request_timeout: must be above zero".into());
        } else if request_timeout > timeout {
            problems.push(format!(
                "request_timeout = \"{request_timeout}\": longer than timeout = \"{timeout}\""
            ));
        }
        if let Some(host) = &self.host
            && !is_host(host)
        {
            problems.push(format!(
                "host = {host:?}: a host name (and port), as nginx's server_name, without spaces"
            ));
        }
        match url {
            Some(url) if problems.is_empty() => Ok(WarmPlan {
                url,
                paths: self.paths.clone(),
                requests,
                concurrency,
                timeout: timeout.get(),
                request_timeout: request_timeout.get(),
                host: self.host.clone(),
            }),
            _ => Err(problems),
        }
    }
}

/// `http://` only (the app's own listener, on this machine or its network: no TLS to verify),
/// no query or fragment (the paths bring theirs), placeholders of facts only.
fn check_url(url: &str) -> Result<Template, String> {
    if !url.starts_with("http://") {
        return Err("give an http:// URL of the app's own listener (kiln warms it before any TLS)".into());
    }
    super::url::check_http_url(url)?;
    if url.contains(['?', '#']) {
        return Err("no query or fragment: the paths carry theirs".into());
    }
    Template::parse(url)
}

/// A path of the app: starts with `/`, printable ASCII without spaces or `#`.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if path.len() > 2048 || !path.chars().all(|c| c.is_ascii_graphic() && c != '#') {
        return Err("printable ASCII without spaces or '#' (percent-encode the rest), at most 2048".into());
    }
    Ok(())
}

fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str) -> Result<WarmPlan, Vec<String>> {
        toml::from_str::<WarmTable>(toml).unwrap().check()
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let plan =
            check("url = \"http://{local_ipv4}:8080\"\npaths = [\"/\", \"/products?page=1\"]\n").unwrap();
        assert_eq!(plan.url.as_str(), "http://{local_ipv4}:8080");
        assert_eq!(
            (
                plan.requests,
                plan.concurrency,
                plan.timeout,
                plan.request_timeout
            ),
            (50, 4, Duration::from_secs(30), Duration::from_secs(10))
        );
        assert_eq!(plan.host, None);
    }

    #[test]
    fn every_problem_is_named_with_its_key() {
        assert_eq!(
            check("url = \"https://x\"\npaths = [\"a\", \"/b c\"]\nrequests = 1\nconcurrency = 0\ntimeout = \"1s\"\nrequest_timeout = \"2s\"\nhost = \"a b\"\n")
                .unwrap_err(),
            [
                "url = \"https://x\": give an http:// URL of the app's own listener (kiln warms it before any TLS)",
                "paths: \"a\": must start with '/'",
                "paths: \"/b c\": printable ASCII without spaces or '#' (percent-encode the rest), at most 2048",
                "requests = 1: fewer than the 2 paths: some would never be asked",
                "concurrency = 0: must be between 1 and 256",
                "request_timeout = \"2s\": longer than timeout = \"1s\"",
                "host = \"a b\": a host name (and port), as nginx's server_name, without spaces",
            ]
        );
        assert_eq!(
            check("").unwrap_err(),
            [
                "url: missing: the app's own listener, as \"http://127.0.0.1:80\"",
                "paths: missing: the paths to ask, as [\"/\"]",
            ]
        );
        assert_eq!(
            check("url = \"http://{ip}:80/x?y\"\npaths = [\"/\"]\n").unwrap_err(),
            ["url = \"http://{ip}:80/x?y\": no query or fragment: the paths carry theirs"]
        );
    }
}
