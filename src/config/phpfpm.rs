//! `[service.phpfpm_status]`: where kiln reads a php-fpm pool's status page (the pool's
//! `pm.status_path`, over FastCGI) for `kiln status` and `/metrics`.
//!
//! The page is served by one of the pool's own processes: when every process is busy (exactly
//! when the figures matter) a request to the pool's `listen` socket waits in its queue. PHP 8.0's
//! `pm.status_listen` gives the page a socket of its own, answered by a process kept for it;
//! `fastcgi` names that socket.

use super::{FastCgiSocket, HumanDuration};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The shortest `timeout`: a status page is read from memory, but a loaded machine needs a few
/// milliseconds to schedule php-fpm at all.
pub const STATUS_TIMEOUT_MIN: HumanDuration = HumanDuration::from_millis(10);

/// The longest `timeout`: `kiln status` waits for the page (and gives up on kiln after 5 s), and
/// a scrape that waits longer than this for one pool's figures holds up all the others.
pub const STATUS_TIMEOUT_MAX: HumanDuration = HumanDuration::from_secs(3);

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhpFpmStatusConfig {
    /// `unix:/path.sock` or `tcp:host:port`: the pool's `pm.status_listen`, else its `listen`.
    /// Required.
    pub fastcgi: Option<String>,
    /// The pool's `pm.status_path`.
    #[serde(default = "default_path")]
    pub path: String,
    /// How long one read of the page may take; past it the pool shows as down.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_path() -> String {
    "/status".into()
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}

/// Where and how to read a status page, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPage {
    pub socket: FastCgiSocket,
    pub path: String,
    pub timeout: Duration,
}

impl PhpFpmStatusConfig {
    /// The page to read, or every problem, each starting with its key. `replicas` is the
    /// service's: its copies would share the one socket, and their figures could not be told
    /// apart.
    pub fn page(&self, replicas: u32) -> Result<StatusPage, Vec<String>> {
        let mut problems = Vec::new();
        let socket = match self.fastcgi.as_deref() {
            Some(spec) => FastCgiSocket::parse(spec).map_err(|e| problems.push(e)).ok(),
            None => {
                problems.push(
                    "fastcgi: missing: the socket of the pool's pm.status_listen (or listen), like \"unix:/run/php/status.sock\"".into(),
                );
                None
            }
        };
        if !self.path.starts_with('/')
            || self.path.contains(['?', '#'])
            || self.path.chars().any(char::is_control)
        {
            problems.push(format!(
                "path = {:?}: the pool's pm.status_path, starting with / (kiln adds ?json)",
                self.path
            ));
        }
        if self.timeout < STATUS_TIMEOUT_MIN || self.timeout > STATUS_TIMEOUT_MAX {
            problems.push(format!(
                "timeout = \"{}\": between \"{STATUS_TIMEOUT_MIN}\" and \"{STATUS_TIMEOUT_MAX}\"",
                self.timeout
            ));
        }
        if replicas > 1 {
            problems.push(format!(
                "replicas = {replicas}: one status page is one pool; a service with a pool reads it as one unit"
            ));
        }
        match socket {
            Some(socket) if problems.is_empty() => Ok(StatusPage {
                socket,
                path: self.path.clone(),
                timeout: self.timeout.get(),
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> PhpFpmStatusConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_socket_alone_reads_the_default_path_within_a_second() {
        let page = config("fastcgi = \"unix:/run/php/status.sock\"").page(1).unwrap();
        assert_eq!(
            page,
            StatusPage {
                socket: FastCgiSocket::Unix("/run/php/status.sock".into()),
                path: "/status".into(),
                timeout: Duration::from_secs(1),
            }
        );
        let tcp = config("fastcgi = \"127.0.0.1:9001\"\npath = \"/fpm-status\"")
            .page(1)
            .unwrap();
        assert_eq!(tcp.socket, FastCgiSocket::Tcp("127.0.0.1:9001".into()));
        assert_eq!(tcp.socket.to_string(), "tcp:127.0.0.1:9001");
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let bad = config("path = \"status?full\"\ntimeout = \"10s\"")
            .page(2)
            .unwrap_err();
        assert_eq!(
            bad,
            [
                "fastcgi: missing: the socket of the pool's pm.status_listen (or listen), like \"unix:/run/php/status.sock\"",
                "path = \"status?full\": the pool's pm.status_path, starting with / (kiln adds ?json)",
                "timeout = \"10s\": between \"10ms\" and \"3s\"",
                "replicas = 2: one status page is one pool; a service with a pool reads it as one unit",
            ]
        );
        let relative = config("fastcgi = \"unix:run/php.sock\"").page(1).unwrap_err();
        assert_eq!(
            relative,
            ["fastcgi = \"unix:run/php.sock\": the socket path must be absolute"]
        );
    }
}
