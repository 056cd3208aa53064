//! `[[task]]` tables: what runs to completion at boot instead of staying up (a cache warmup that
//! needs the runtime environment, the database migrations of a release), ordered with the
//! services by `after`. A task is a unit whose exit 0 is its completion; a task that fails for
//! good (after its `retries`) refuses the boot.
//!
//! Tasks are tables of their own, not `[[service]]` tables with a kind: most of a service's keys
//! (replicas, probes, `restart`, `ready_after`) mean nothing for a run to completion, and a
//! task's own (`timeout`, `retries`, `once`) mean nothing for a service. With their own table,
//! a service key written on a task is an unknown key, refused with its line, not ignored.

use super::{ByteSize, HumanDuration, RestartPolicy, ServiceConfig, SignalName, StopSignalTo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The most `retries` a task takes: past that, a failure is not transient.
pub const RETRIES_MAX: u32 = 100;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Unique among services and tasks (`after` names either). Required, as a service's.
    #[serde(default)]
    pub name: String,
    /// Program and arguments, exec'd directly (no shell). Required.
    #[serde(default)]
    pub command: Vec<String>,
    /// Services that must be ready, and tasks that must be done, before this task runs.
    #[serde(default)]
    pub after: Vec<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub working_dir: Option<PathBuf>,
    /// Extra variables for this task only, on top of the frozen environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Globs of the frozen environment's names this task gets; unset: all of it.
    pub env_allow: Option<Vec<String>>,
    /// How long one attempt may run; then `stop_signal`, and SIGKILL after `stop_timeout`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Attempts after a failed one (exit other than 0, killed, timed out, not started).
    #[serde(default)]
    pub retries: u32,
    /// Delay before the first retry; doubles with each failure, up to `retry_delay_max`.
    #[serde(default = "default_retry_delay")]
    pub retry_delay: HumanDuration,
    #[serde(default = "default_retry_delay_max")]
    pub retry_delay_max: HumanDuration,
    /// Signal for a graceful stop (at `timeout`, or when kiln stops during the run).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: SignalName,
    #[serde(default)]
    pub stop_signal_to: StopSignalTo,
    /// How long a graceful stop may take before SIGKILL goes to everything the task runs.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: HumanDuration,
    /// `instance` (default): on every instance that boots. `fleet`: on one instance per release
    /// for the whole fleet, under a lease in `[coordination]`'s store.
    #[serde(default)]
    pub once: Once,
    /// The cgroup limits, as a service's.
    pub memory_max: Option<ByteSize>,
    pub cpu_weight: Option<u16>,
    pub tasks_max: Option<u64>,
    /// The nice level, as a service's.
    pub nice: Option<i8>,
}

/// Where a task runs once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Once {
    /// On each instance, at each boot.
    #[default]
    Instance,
    /// On one instance per release (label and seal root hash) for the whole fleet.
    Fleet,
}

impl Once {
    pub fn as_str(self) -> &'static str {
        match self {
            Once::Instance => "instance",
            Once::Fleet => "fleet",
        }
    }
}

impl TaskConfig {
    /// The task as a process to start: what spawning, cgroups, identities and exec limits read
    /// from a service. It never restarts by itself and has no probes; its retries are the
    /// supervisor's (`restart_delay` here is `retry_delay`).
    pub fn process(&self) -> ServiceConfig {
        ServiceConfig {
            name: self.name.clone(),
            command: self.command.clone(),
            after: self.after.clone(),
            user: self.user.clone(),
            group: self.group.clone(),
            working_dir: self.working_dir.clone(),
            env: self.env.clone(),
            env_allow: self.env_allow.clone(),
            stop_signal: self.stop_signal,
            stop_signal_to: self.stop_signal_to,
            stop_timeout: self.stop_timeout,
            restart: RestartPolicy::Never,
            restart_delay: self.retry_delay,
            restart_delay_max: self.retry_delay_max,
            replicas: 1,
            ready_after: HumanDuration::from_millis(0),
            memory_max: self.memory_max,
            cpu_weight: self.cpu_weight,
            tasks_max: self.tasks_max,
            nice: self.nice,
            startup: None,
            ready: None,
            live: None,
            phpfpm_status: None,
        }
    }

    /// What serde cannot say about the task's own keys, each starting with its key.
    pub fn own_problems(&self, dropped: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        if matches!(self.name.as_str(), "." | "..") {
            problems.push("name: a task is not named \".\" or \"..\"".into());
        }
        if !dropped.contains(&"timeout") && self.timeout.get().is_zero() {
            problems.push("timeout = \"0s\": give each attempt some time, like \"10m\"".into());
        }
        if self.retries > RETRIES_MAX {
            problems.push(format!("retries = {}: at most {RETRIES_MAX}", self.retries));
        }
        let delays_read = !dropped.contains(&"retry_delay") && !dropped.contains(&"retry_delay_max");
        if delays_read && (self.retry_delay.get().is_zero() || self.retry_delay > self.retry_delay_max) {
            problems.push(format!(
                "retry_delay = \"{}\": must be above zero and at most retry_delay_max (\"{}\")",
                self.retry_delay, self.retry_delay_max
            ));
        }
        problems
    }
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(600)
}
fn default_retry_delay() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_retry_delay_max() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_stop_signal() -> SignalName {
    SignalName(nix::sys::signal::Signal::SIGTERM)
}
fn default_stop_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
