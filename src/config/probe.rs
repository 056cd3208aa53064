//! `[service.startup]`, `[service.ready]`, `[service.live]`: what a probe talks to and how often.
//!
//! The target is parsed here once, for `kiln check` and for the probe that `kiln boot` builds
//! from it: a URL the probe could not use is the config's problem, never a boot's.

use super::HumanDuration;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The shortest `period`: a tenth of a second, the pace of systemd's default `RestartSec=`.
/// Faster, a probe is a busy loop (an exec probe forks ten times a second for each unit) and
/// says nothing sooner: until it first passes a probe is polled eagerly anyway (see
/// `probe::runner`). Kubernetes takes whole seconds only (`periodSeconds` at least 1).
pub const PERIOD_MIN: HumanDuration = HumanDuration::from_millis(100);

/// The shortest `timeout`: below it a check on a loaded machine misses a healthy service (a
/// fork and exec alone take milliseconds), and a probe that never passes restarts its service
/// forever. Docker takes 1ms, Kubernetes 1s (`timeoutSeconds` at least 1).
pub const TIMEOUT_MIN: HumanDuration = HumanDuration::from_millis(10);

/// One probe. Exactly one of `http`, `tcp`, `exec`, `fastcgi` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// `http://host:port/path`: passes on 2xx or 3xx.
    pub http: Option<String>,
    /// `host:port`: passes when a connection is accepted.
    pub tcp: Option<String>,
    /// Program and arguments: passes on exit 0.
    pub exec: Option<Vec<String>>,
    /// `unix:/path.sock` or `tcp:host:port` (or `host:port`): a FastCGI request to `path`.
    pub fastcgi: Option<String>,
    /// FastCGI request path (php-fpm's `ping.path`).
    pub path: Option<String>,
    /// The body must contain this (http and fastcgi).
    pub expect: Option<String>,
    #[serde(default = "default_period")]
    pub period: HumanDuration,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_success_threshold")]
    pub success_threshold: u32,
}

fn default_period() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_success_threshold() -> u32 {
    1
}

/// What a probe talks to, parsed from the one target key a `ProbeConfig` sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    Http(HttpTarget),
    Tcp { addr: String },
    Exec { argv: Vec<String> },
    FastCgi { socket: FastCgiSocket, path: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastCgiSocket {
    Unix(PathBuf),
    Tcp(String),
}

/// Where an `http` probe connects and what it asks for, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// Host name or address to connect to (an IPv6 address without brackets).
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written, for the Host header.
    pub authority: String,
    /// Path and query, `/` when the URL has none.
    pub path: String,
}

impl HttpTarget {
    /// Parsed as the probe's HTTP client (hyper) reads it; the error names the key and the URL.
    pub fn parse(url: &str) -> Result<HttpTarget, String> {
        let bad = |why: &str| format!("http = {url:?}: {why}");
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("must start with http://"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user info is not supported"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // `Uri` reads a port that is not a u16 as no port at all: that would be port 80.
        let port = match authority
            .as_str()
            .get(authority.host().len()..)
            .unwrap_or_default()
        {
            "" => 80,
            rest => rest
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| bad("the port is not a number from 0 to 65535"))?,
        };
        Ok(HttpTarget {
            host: host.to_string(),
            port,
            authority: authority.as_str().to_string(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        })
    }
}

impl ProbeConfig {
    /// The probe's target, or why the table does not name exactly one valid target.
    pub fn target(&self) -> Result<ProbeTarget, String> {
        let set = [
            self.http.is_some(),
            self.tcp.is_some(),
            self.exec.is_some(),
            self.fastcgi.is_some(),
        ];
        match set.iter().filter(|s| **s).count() {
            0 => return Err("set one of http, tcp, exec or fastcgi".into()),
            1 => {}
            _ => return Err("set only one of http, tcp, exec or fastcgi".into()),
        }
        if let Some(url) = &self.http {
            return HttpTarget::parse(url).map(ProbeTarget::Http);
        }
        if let Some(addr) = &self.tcp {
            check_host_port(addr).map_err(|e| format!("tcp = {addr:?}: {e}"))?;
            return Ok(ProbeTarget::Tcp { addr: addr.clone() });
        }
        if let Some(argv) = &self.exec {
            if argv.first().is_none_or(String::is_empty) {
                return Err("exec = []: give a program and its arguments".into());
            }
            return Ok(ProbeTarget::Exec { argv: argv.clone() });
        }
        let socket = FastCgiSocket::parse(self.fastcgi.as_deref().unwrap_or_default())?;
        let path = self.path.clone().unwrap_or_else(|| "/ping".into());
        if !path.starts_with('/') {
            return Err(format!("path = {path:?}: must start with /"));
        }
        Ok(ProbeTarget::FastCgi { socket, path })
    }

    /// The timings' problems, each naming its key: below the minimums, and `period` times a
    /// threshold (the runner's startup budget, its time to flip) over `"10y"`. The keys in
    /// `dropped` were refused as written: their defaults are not weighed against the others.
    pub(super) fn timing_problems(&self, dropped: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value, min) in [
            ("period", self.period, PERIOD_MIN),
            ("timeout", self.timeout, TIMEOUT_MIN),
        ] {
            if value < min {
                problems.push(format!("{key} = \"{value}\": at least \"{min}\""));
            }
        }
        if self.failure_threshold == 0 || self.success_threshold == 0 {
            problems.push("failure_threshold and success_threshold must be at least 1".into());
        }
        for (key, count) in [
            ("failure_threshold", self.failure_threshold),
            ("success_threshold", self.success_threshold),
        ] {
            if dropped.contains(&"period") || dropped.contains(&key) {
                continue;
            }
            let within = self
                .period
                .get()
                .checked_mul(count)
                .is_some_and(|total| total <= HumanDuration::MAX.get());
            if !within {
                problems.push(format!(
                    "period (\"{}\") × {key} ({count}) is over \"10y\": lower one of them",
                    self.period
                ));
            }
        }
        problems
    }
}

impl FastCgiSocket {
    /// `unix:/absolute/path.sock`, `tcp:host:port` or `host:port`, as the `fastcgi` key of a
    /// probe or of `[service.phpfpm_status]` takes it; the error names the key.
    pub fn parse(spec: &str) -> Result<FastCgiSocket, String> {
        if let Some(path) = spec.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("fastcgi = {spec:?}: the socket path must be absolute"));
            }
            return Ok(FastCgiSocket::Unix(PathBuf::from(path)));
        }
        let addr = spec.strip_prefix("tcp:").unwrap_or(spec);
        check_host_port(addr).map_err(|e| format!("fastcgi = {spec:?}: {e}"))?;
        Ok(FastCgiSocket::Tcp(addr.to_string()))
    }
}

impl std::fmt::Display for FastCgiSocket {
    /// As the config writes it: `unix:/run/php.sock`, `tcp:127.0.0.1:9000`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FastCgiSocket::Unix(path) => write!(f, "unix:{}", path.display()),
            FastCgiSocket::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

fn check_host_port(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or("expected host:port, like \"127.0.0.1:8080\"")?;
    if host.is_empty() {
        return Err("expected host:port, the host is empty".into());
    }
    port.parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_into_where_to_connect_and_what_to_ask() {
        let t = HttpTarget::parse("http://127.0.0.1:8080/healthz?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1", 8080, "127.0.0.1:8080", "/healthz?x=1")
        );
        let t = HttpTarget::parse("http://[::1]/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 80, "/"));
        let t = HttpTarget::parse("http://localhost:81").unwrap();
        assert_eq!((t.host.as_str(), t.path.as_str()), ("localhost", "/"));
        assert!(HttpTarget::parse("https://x/").is_err());
        assert!(HttpTarget::parse("http://u:p@x/").is_err());
        assert!(HttpTarget::parse("http://x:99999/").is_err());
        assert_eq!(
            HttpTarget::parse("http://[::1:80/x").unwrap_err(),
            "http = \"http://[::1:80/x\": invalid authority"
        );
    }
}
