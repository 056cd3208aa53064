//! Health probes, Kubernetes-style: `startup` gates the others and restarts the service when it
//! never passes; `ready` decides whether the instance takes traffic; `live` restarts a service
//! that hangs. One file per kind of check; `runner` applies periods and thresholds.

mod exec;
pub mod fastcgi;
mod http;
pub mod runner;
mod tcp;

use crate::config::{FastCgiSocket, HttpTarget, ProbeConfig, ProbeTarget};
use crate::process::Reaper;
use std::time::{Duration, Instant};

/// Which of a service's three probes this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Startup,
    Ready,
    Live,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Startup => "startup",
            Role::Ready => "ready",
            Role::Live => "live",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ok: bool,
    /// A short line for status: the status code, the body, or the error.
    pub detail: String,
}

impl Outcome {
    fn pass(detail: String) -> Outcome {
        Outcome { ok: true, detail }
    }

    fn fail(detail: String) -> Outcome {
        Outcome { ok: false, detail }
    }
}

/// What a probe checks, parsed once from its config.
#[derive(Debug, Clone)]
enum Target {
    Http(HttpTarget),
    Tcp(String),
    Exec(Vec<String>),
    FastCgi { socket: FastCgiSocket, path: String },
}

/// One configured probe, ready to run.
#[derive(Debug, Clone)]
pub struct Probe {
    pub role: Role,
    target: Target,
    expect: Option<String>,
    /// The environment of exec probes (the service's).
    env: Vec<(String, String)>,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

impl Probe {
    /// Builds a probe from a config the config checks already accepted (`ProbeConfig::target`
    /// is their check: an error here is one `kiln check` reports too).
    pub fn new(role: Role, config: &ProbeConfig, env: Vec<(String, String)>) -> Result<Probe, String> {
        let target = match config.target()? {
            ProbeTarget::Http(target) => Target::Http(target),
            ProbeTarget::Tcp { addr } => Target::Tcp(addr),
            ProbeTarget::Exec { argv } => Target::Exec(argv),
            ProbeTarget::FastCgi { socket, path } => Target::FastCgi { socket, path },
        };
        Ok(Probe {
            role,
            target,
            expect: config.expect.clone(),
            env,
            period: config.period.get(),
            timeout: config.timeout.get(),
            failure_threshold: config.failure_threshold,
            success_threshold: config.success_threshold,
        })
    }

    pub fn kind(&self) -> &'static str {
        match self.target {
            Target::Http(_) => "http",
            Target::Tcp(_) => "tcp",
            Target::Exec(_) => "exec",
            Target::FastCgi { .. } => "fastcgi",
        }
    }

    /// Runs the check once, bounded by the probe's timeout; returns the outcome and its latency.
    pub async fn check(&self, reaper: &Reaper) -> (Outcome, Duration) {
        let started = Instant::now();
        let expect = self.expect.as_deref();
        let outcome = match &self.target {
            // Exec kills its process group on timeout, so it applies the timeout itself.
            Target::Exec(argv) => exec::check(argv, &self.env, reaper, self.timeout).await,
            target => {
                // Dropping a check (timeout, or the probe task aborted) closes what it opened.
                let check = async {
                    match target {
                        Target::Http(target) => http::check(target, expect).await,
                        Target::Tcp(addr) => tcp::check(addr).await,
                        Target::FastCgi { socket, path } => fastcgi::check(socket, path, expect).await,
                        Target::Exec(_) => unreachable!("handled above"),
                    }
                };
                tokio::time::timeout(self.timeout, check)
                    .await
                    .unwrap_or_else(|_| {
                        Outcome::fail(format!(
                            "timed out after {}",
                            humantime::format_duration(self.timeout)
                        ))
                    })
            }
        };
        (outcome, started.elapsed())
    }
}
