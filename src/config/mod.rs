//! `/etc/kiln/kiln.toml`: read once at boot, never reloaded. Unknown keys are errors.
//!
//! Each section's types live in their own file; [`Config::load`] parses the whole file and then
//! runs the checks that serde cannot express (see `validate.rs`), collecting every problem.
//!
//! Config text is input: nothing here may panic on it, so arithmetic and indexing that could
//! overflow or go out of bounds are lint errors in this module.

#![warn(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

mod duration;
mod env;
mod file;
pub mod lb;
mod lifecycle;
mod metadata;
mod metrics;
mod phpfpm;
mod probe;
mod read;
mod seal;
mod secrets;
mod service;
mod signal;
mod size;
mod template;
mod url;
mod validate;
mod warnings;

pub use duration::HumanDuration;
pub use env::{BUILTIN_DENY, EnvConfig, RESERVED_PREFIX, check_name, glob_match, is_valid_name};
pub use lb::{LbConfig, LbTable};
pub use lifecycle::{LifecycleConfig, NoticeAction};
pub use metadata::{ForeignUserData, MetadataConfig, ProviderKind, USER_DATA_LIMIT_MAX, UserDataFormat};
pub use metrics::MetricsConfig;
pub use phpfpm::{PhpFpmStatusConfig, STATUS_TIMEOUT_MAX, STATUS_TIMEOUT_MIN, StatusPage};
pub use probe::{FastCgiSocket, HttpTarget, PERIOD_MIN, ProbeConfig, ProbeTarget, TIMEOUT_MIN};
pub use seal::{OnDrift, Release, SealConfig};
pub use secrets::{Scheme, SecretsConfig};
pub use service::{MEMORY_MAX_MIN, RestartPolicy, ServiceConfig, StopSignalTo};
pub use signal::SignalName;
pub use size::ByteSize;
pub use template::{Fact, Template};
pub use validate::{ServicePlace, place};

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/kiln/kiln.toml";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub control: ControlConfig,
    /// `GET /metrics` for Prometheus; None (no section): no metrics port.
    pub metrics: Option<MetricsConfig>,
    #[serde(default)]
    pub metadata: MetadataConfig,
    #[serde(default)]
    pub env: EnvConfig,
    /// `[lb]` as written; [`Config::parse`] checks it into `lb`, which is all kiln reads.
    #[serde(default, rename = "lb")]
    lb_table: LbTable,
    /// `[lb]`, checked: the load balancer to join and how.
    #[serde(skip)]
    pub lb: LbConfig,
    #[serde(default)]
    pub seal: SealConfig,
    /// Secret references; None (no section): no value is a reference.
    pub secrets: Option<SecretsConfig>,
    /// Auto Scaling hooks and interruption notices; None (no section): neither.
    pub lifecycle: Option<LifecycleConfig>,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `GET /livez` and `GET /readyz` for the load balancer.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// HAProxy agent-check port (off when unset).
    pub agent_listen: Option<SocketAddr>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            agent_listen: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9100))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Read-only control socket used by `kiln status`; mode 0600.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Everything kiln writes at runtime lives here.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

/// The longest path a unix socket may have: `sun_path` holds 108 bytes, the last one a NUL.
const SOCKET_PATH_MAX: usize = 107;

impl ControlConfig {
    /// What is wrong with the paths themselves, whatever the machine: relative, or a socket path
    /// the kernel cannot bind.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, path) in [("state_dir", &self.state_dir), ("socket", &self.socket)] {
            if !path.is_absolute() {
                problems.push(format!("[control] {key} = {path:?}: must be an absolute path"));
            }
        }
        let len = self.socket.as_os_str().len();
        if len > SOCKET_PATH_MAX {
            problems.push(format!(
                "[control] socket = {:?}: {len} bytes, over the {SOCKET_PATH_MAX} a unix socket path may have",
                self.socket
            ));
        }
        problems
    }

    /// Every problem of the runtime directories as they are on this machine now (see
    /// [`crate::state_dir`]); `kiln check` reports them with the config's, `kiln boot` creates
    /// what is missing and refuses the same.
    pub fn runtime_dir_problems(&self) -> Vec<String> {
        self.runtime_dirs()
            .filter_map(|(key, dir)| {
                let e = crate::state_dir::check(dir).err()?;
                Some(format!("[control] {key} {}: {e}", dir.display()))
            })
            .collect()
    }

    /// `state_dir`, and the socket's directory when it is another one.
    pub fn runtime_dirs(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        let socket_dir = self.socket.parent().filter(|d| *d != self.state_dir);
        [
            ("state_dir", Some(self.state_dir.as_path())),
            ("socket's directory", socket_dir),
        ]
        .into_iter()
        .filter_map(|(key, dir)| Some((key, dir?)))
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: default_socket(),
            state_dir: default_state_dir(),
        }
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/kiln/control.sock")
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/run/kiln")
}

/// A config that cannot be used: the file, and everything wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Never empty: the one error that stopped reading or parsing, or every problem the checks
    /// found, each naming its place (`[[service]] #2 "nginx": after: unknown service "php"`).
    pub problems: Vec<String>,
}

impl std::error::Error for ConfigError {}

/// One problem on one line after the file; several as an indented list.
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.display();
        match self.problems.as_slice() {
            [one] => write!(f, "{file}: {one}"),
            many => {
                write!(f, "{file}: {} errors:", many.len())?;
                for problem in many {
                    // A TOML syntax error spans lines (the line and a caret): keep it indented.
                    write!(f, "\n  - {}", problem.replace('\n', "\n    "))?;
                }
                Ok(())
            }
        }
    }
}

impl Config {
    /// Reads, parses and checks the file. Nothing is started and nothing is written.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |problems: Vec<String>| ConfigError {
            file: path.to_path_buf(),
            problems,
        };
        let text = file::read(path).map_err(|e| fail(vec![e]))?;
        Self::parse(&text).map_err(fail)
    }

    /// Parses and checks config text. A TOML syntax error is one problem (the parser stops
    /// there); otherwise every problem is collected: the values serde refuses and unknown keys
    /// first, in file order, then what the checks find.
    pub fn parse(text: &str) -> Result<Config, Vec<String>> {
        let read = read::read::<Config>(text)?;
        let mut config = read.value;
        let mut problems = read.problems;
        let lb = config.lb_table.check();
        problems.extend(validate::check(&config, &lb, &read.dropped));
        match lb {
            Ok(lb) if problems.is_empty() => {
                config.lb = lb;
                Ok(config)
            }
            _ => Err(problems),
        }
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }
}
