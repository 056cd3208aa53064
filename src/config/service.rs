//! `[[service]]` tables: what to run, in which order, as whom, and how to tell it is healthy.

use super::{ByteSize, HumanDuration, SignalName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Unique name; replicas are shown as `name#1`, `name#2`, ...
    pub name: String,
    /// Program and arguments, exec'd directly (no shell).
    pub command: Vec<String>,
    /// Services that must be ready before this one starts.
    #[serde(default)]
    pub after: Vec<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub working_dir: Option<PathBuf>,
    /// Extra variables for this service only, on top of the frozen environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Globs of the frozen environment's names this service gets (`["APP_*", "DATABASE_URL"]`);
    /// unset: all of it. `PATH`, its own `env` and `KILN_SERVICE`/`KILN_REPLICA` always pass.
    pub env_allow: Option<Vec<String>>,
    /// Signal for a graceful stop (php-fpm and nginx: SIGQUIT).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: SignalName,
    /// Where `stop_signal` goes: the main process (default) or its whole process group.
    #[serde(default)]
    pub stop_signal_to: StopSignalTo,
    /// How long a graceful stop may take before SIGKILL goes to the process group.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: HumanDuration,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// First restart delay; doubles on every failure in a row.
    #[serde(default = "default_restart_delay")]
    pub restart_delay: HumanDuration,
    /// Cap of the restart delay. Restarts go on forever at this pace.
    #[serde(default = "default_restart_delay_max")]
    pub restart_delay_max: HumanDuration,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Without a `ready` probe, the service counts as ready once it has run this long (like
    /// supervisord's `startsecs`): a worker that dies at once never makes the instance look ready.
    #[serde(default = "default_ready_after")]
    pub ready_after: HumanDuration,
    /// `memory.max` of each unit's cgroup: the kernel reclaims, then OOM-kills inside the unit.
    pub memory_max: Option<ByteSize>,
    /// `cpu.weight` of each unit's cgroup (1 to 10000, default 100): its share under contention.
    pub cpu_weight: Option<u16>,
    /// `pids.max` of each unit's cgroup: a fork bomb stops at this many tasks.
    pub tasks_max: Option<u64>,
    /// Gates readiness and liveness until it passes once; failing it restarts the service.
    pub startup: Option<ProbeConfig>,
    /// Failing it takes the instance out of the load balancer; the service keeps running.
    pub ready: Option<ProbeConfig>,
    /// Failing it restarts the service.
    pub live: Option<ProbeConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// Where a service's `stop_signal` goes. The SIGKILL after `stop_timeout` always goes to the
/// whole process group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopSignalTo {
    /// The main process only, as systemd's `KillMode=mixed`: nginx and php-fpm masters stop their
    /// own workers, and a worker signalled beside its master would be told twice.
    #[default]
    Main,
    /// Every process of the service's group, for a main process that does not pass the signal on
    /// (a shell script with children of its own).
    Group,
}

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

/// The smallest `memory_max` taken: below it php-fpm or nginx cannot even start, and a typo
/// (`"512"` for `"512M"`) would show up as an OOM loop instead of a config error.
pub const MEMORY_MAX_MIN: ByteSize = ByteSize(1 << 20);

impl ServiceConfig {
    /// The cgroup limits hold values the kernel takes.
    pub fn limit_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(m) = self.memory_max
            && m < MEMORY_MAX_MIN
        {
            problems.push(format!("memory_max = \"{m}\": at least \"{MEMORY_MAX_MIN}\""));
        }
        if let Some(w) = self.cpu_weight
            && !(1..=10_000).contains(&w)
        {
            problems.push(format!("cpu_weight = {w}: must be between 1 and 10000"));
        }
        if self.tasks_max == Some(0) {
            problems.push("tasks_max = 0: must be at least 1".into());
        }
        problems
    }

    /// `env_allow` holds name globs.
    pub fn env_allow_problems(&self) -> Vec<String> {
        self.env_allow
            .iter()
            .flatten()
            .filter_map(|pattern| {
                let e = super::env::check_pattern(pattern).err()?;
                Some(format!("env_allow: {pattern:?}: {e}"))
            })
            .collect()
    }
}

fn default_stop_signal() -> SignalName {
    SignalName(nix::sys::signal::Signal::SIGTERM)
}
fn default_stop_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_restart_delay() -> HumanDuration {
    HumanDuration::from_millis(100)
}
fn default_restart_delay_max() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_ready_after() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_replicas() -> u32 {
    1
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
    Http { url: String },
    Tcp { addr: String },
    Exec { argv: Vec<String> },
    FastCgi { socket: FastCgiSocket, path: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastCgiSocket {
    Unix(PathBuf),
    Tcp(String),
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
            let rest = url
                .strip_prefix("http://")
                .ok_or_else(|| format!("http = {url:?}: must start with http://"))?;
            if rest.is_empty() || rest.starts_with('/') {
                return Err(format!("http = {url:?}: no host"));
            }
            return Ok(ProbeTarget::Http { url: url.clone() });
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
        let spec = self.fastcgi.as_deref().unwrap_or_default();
        let socket = if let Some(path) = spec.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("fastcgi = {spec:?}: the socket path must be absolute"));
            }
            FastCgiSocket::Unix(PathBuf::from(path))
        } else {
            let addr = spec.strip_prefix("tcp:").unwrap_or(spec);
            check_host_port(addr).map_err(|e| format!("fastcgi = {spec:?}: {e}"))?;
            FastCgiSocket::Tcp(addr.to_string())
        };
        let path = self.path.clone().unwrap_or_else(|| "/ping".into());
        if !path.starts_with('/') {
            return Err(format!("path = {path:?}: must start with /"));
        }
        Ok(ProbeTarget::FastCgi { socket, path })
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
