//! `/etc/kiln/kiln.toml`: read once at boot, never reloaded. Unknown keys are errors.
//!
//! Each section's types live in their own file; [`Config::load`] parses the whole file and then
//! runs the checks that serde cannot express (see `validate.rs`).

mod duration;
mod env;
pub mod lb;
mod metadata;
mod seal;
mod secrets;
mod service;
mod signal;
mod validate;

pub use duration::HumanDuration;
pub use env::{BUILTIN_DENY, EnvConfig, RESERVED_PREFIX, check_name, glob_match, is_valid_name};
pub use lb::LbConfig;
pub use metadata::{MetadataConfig, ProviderKind, USER_DATA_LIMIT_MAX, UserDataFormat};
pub use seal::{OnDrift, Release, SealConfig};
pub use secrets::{Scheme, SecretsConfig};
pub use service::{FastCgiSocket, ProbeConfig, ProbeTarget, RestartPolicy, ServiceConfig, StopSignalTo};
pub use signal::SignalName;

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
    #[serde(default)]
    pub metadata: MetadataConfig,
    #[serde(default)]
    pub env: EnvConfig,
    #[serde(default)]
    pub lb: LbConfig,
    #[serde(default)]
    pub seal: SealConfig,
    /// Secret references; None (no section): no value is a reference.
    pub secrets: Option<SecretsConfig>,
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

/// A config that could not be used, with the file and the place in it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

impl Config {
    /// Reads, parses and checks the file. Nothing is started and nothing is written.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            file: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let config = Self::parse(&text).map_err(fail)?;
        Ok(config)
    }

    /// Parses and checks config text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        validate::check(&config)?;
        Ok(config)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }
}
