//! `[[service]]` tables: what to run, in which order, as whom, and how to tell it is healthy.

use super::{ByteSize, HumanDuration, PhpFpmStatusConfig, ProbeConfig, SignalName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Unique name; replicas are shown as `name#1`, `name#2`, ... Required: a missing one reads
    /// as empty, which the checks refuse (a missing key is then one problem among the others).
    #[serde(default)]
    pub name: String,
    /// Program and arguments, exec'd directly (no shell). Required, as `name`.
    #[serde(default)]
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
    /// The nice level its processes run at (-20 to 19), as systemd's `Nice=`; unset: the level
    /// kiln was started with.
    pub nice: Option<i8>,
    /// Gates readiness and liveness until it passes once; failing it restarts the service.
    pub startup: Option<ProbeConfig>,
    /// Failing it takes the instance out of the load balancer; the service keeps running.
    pub ready: Option<ProbeConfig>,
    /// Failing it restarts the service.
    pub live: Option<ProbeConfig>,
    /// php-fpm's status page, read for `kiln status` and `/metrics` (`config::phpfpm`).
    pub phpfpm_status: Option<PhpFpmStatusConfig>,
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

/// The smallest `memory_max` taken: below it php-fpm or nginx cannot even start, and a typo
/// (`"512"` for `"512M"`) would show up as an OOM loop instead of a config error.
pub const MEMORY_MAX_MIN: ByteSize = ByteSize(1 << 20);

impl ServiceConfig {
    /// The cgroup limits and the nice level hold values the kernel takes.
    pub fn limit_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(n) = self.nice
            && !(-20..=19).contains(&n)
        {
            problems.push(format!("nice = {n}: must be between -20 and 19"));
        }
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
