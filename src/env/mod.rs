//! The frozen environment every service gets.

use std::collections::BTreeMap;

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
}
