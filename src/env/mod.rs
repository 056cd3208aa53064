//! The frozen environment every service gets.
//!
//! STUB (issue 2): kiln's own environment passes through. The metadata issue replaces [`freeze`]
//! with defaults < tags < user-data < instance facts, validated.

use crate::config::{EnvConfig, MetadataConfig};
use crate::metadata::Metadata;
use std::collections::BTreeMap;
use std::path::Path;

/// Variables of kiln's own process environment that belong to kiln's supervisor (systemd) and
/// must not leak into services: php-fpm would answer systemd's notify socket itself.
const SUPERVISOR_ONLY: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
];

/// The environment, frozen at boot: built once, never changed, shared read-only.
#[derive(Debug, Clone, Default)]
pub struct FrozenEnv {
    vars: BTreeMap<String, String>,
}

impl FrozenEnv {
    /// kiln's own environment, minus what belongs to systemd's supervision of kiln.
    pub fn inherit() -> FrozenEnv {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| !SUPERVISOR_ONLY.contains(&k.as_str()))
            .collect();
        FrozenEnv { vars }
    }

    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Names and where each came from, for `status` (never values).
    pub fn sources(&self) -> Vec<(String, String)> {
        self.vars
            .keys()
            .map(|k| (k.clone(), "kiln".to_string()))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Builds and validates the frozen environment from the fetched metadata.
pub fn freeze(_env: &EnvConfig, _meta: &MetadataConfig, _metadata: &Metadata) -> Result<FrozenEnv, EnvError> {
    Ok(FrozenEnv::inherit())
}

/// Writes `STATE_DIR/env` (0600) and `STATE_DIR/instance.json`.
pub fn write_files(_state_dir: &Path, _env: &FrozenEnv, _metadata: &Metadata) -> std::io::Result<()> {
    Ok(())
}
