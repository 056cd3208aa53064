//! The frozen environment every service gets, built once per boot from the fetched metadata.
//!
//! Layers, each overriding the one before:
//! kiln's own inherited environment (`kiln`) < `[env] defaults` (`default`) < tags matching
//! `tags_prefix` (`tag`) < user-data (`user-data`) < instance facts `KILN_*` (`instance`).
//! Defaults, tags and user-data are checked (names, the reserved `KILN_` prefix, the deny lists,
//! NUL bytes); kiln's own environment is not, since services need its `PATH` and the like.
//! Then every `required` name must have a non-empty value from defaults, tags or user-data.
//! Errors name the source, the place and the variable, never a value. The pins of the image
//! (`kiln-expect-*` tags, `KILN_EXPECT_*` user-data keys, see `seal::pin`) are not variables:
//! they are set aside for the boot's pin check.

mod dotenv;
mod file;
mod user_data;

pub use file::{render, write_files};

use crate::config::{EnvConfig, MetadataConfig, RESERVED_PREFIX, UserDataFormat, check_name, is_valid_name};
use crate::metadata::Metadata;
use crate::seal::pin;
use std::collections::BTreeMap;
use std::fmt;

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

/// The variables kiln sets from the instance facts, in the order of [`InstanceFacts`]' fields.
///
/// [`InstanceFacts`]: crate::metadata::InstanceFacts
pub const INSTANCE_FACTS: [&str; 6] = [
    "KILN_PROVIDER",
    "KILN_INSTANCE_ID",
    "KILN_REGION",
    "KILN_ZONE",
    "KILN_LOCAL_IPV4",
    "KILN_HOSTNAME",
];

/// Where a variable's value came from, for `kiln env` and `kiln status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// kiln's own environment (the unit's, passed on).
    Kiln,
    Default,
    Tag,
    UserData,
    Instance,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Kiln => "kiln",
            Source::Default => "default",
            Source::Tag => "tag",
            Source::UserData => "user-data",
            Source::Instance => "instance",
        }
    }
}

#[derive(Clone)]
struct Var {
    value: String,
    source: Source,
}

/// The environment, frozen at boot: built once, never changed, shared read-only.
/// Its `Debug` shows names and sources only.
#[derive(Clone, Default)]
pub struct FrozenEnv {
    vars: BTreeMap<String, Var>,
    /// User-data's `KILN_EXPECT_*` keys: for the boot's pin check, never for services.
    pins: BTreeMap<String, String>,
}

impl fmt::Debug for FrozenEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.vars.iter().map(|(k, v)| (k, v.source.as_str())))
            .finish()
    }
}

impl FrozenEnv {
    /// kiln's own environment, minus what belongs to systemd's supervision of kiln.
    pub fn inherit() -> FrozenEnv {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| !SUPERVISOR_ONLY.contains(&k.as_str()))
            .map(|(k, value)| {
                let var = Var {
                    value,
                    source: Source::Kiln,
                };
                (k, var)
            })
            .collect();
        FrozenEnv {
            vars,
            pins: BTreeMap::new(),
        }
    }

    /// The user-data keys that pin the image (`KILN_EXPECT_*`), kept out of the environment.
    pub fn pins(&self) -> &BTreeMap<String, String> {
        &self.pins
    }

    /// Sorted by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.value.as_str()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.value.as_str())
    }

    pub fn source(&self, name: &str) -> Option<Source> {
        self.vars.get(name).map(|v| v.source)
    }

    /// Names and where each came from, for `status` (never values).
    pub fn sources(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.source.as_str().to_string()))
            .collect()
    }

    fn set(&mut self, name: &str, value: String, source: Source) {
        self.vars.insert(name.to_string(), Var { value, source });
    }
}

/// The environment could not be built: which datasource, which step, why (never a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment ({provider} at {endpoint}), {step}: {reason}")]
pub struct EnvError {
    pub provider: String,
    pub endpoint: String,
    /// `user-data line 3`, `tag env.X`, `[env] required`, ...
    pub step: String,
    pub reason: String,
}

/// Builds and validates the frozen environment from the fetched metadata.
pub fn freeze(env: &EnvConfig, meta: &MetadataConfig, metadata: &Metadata) -> Result<FrozenEnv, EnvError> {
    let fail = |step: &str, reason: String| EnvError {
        provider: metadata.facts.provider.clone(),
        endpoint: metadata.endpoint.clone(),
        step: step.to_string(),
        reason,
    };
    // The rules for anything that is not kiln's own environment.
    let admit = |step: &str, name: &str, value: &str| -> Result<(), EnvError> {
        check_name(name).map_err(|e| fail(step, e))?;
        if name.starts_with(RESERVED_PREFIX) {
            return Err(fail(
                step,
                format!("{name}: the {RESERVED_PREFIX} prefix is reserved for instance facts"),
            ));
        }
        if let Some(why) = env.denied(name) {
            return Err(fail(step, format!("{name} is denied ({why})")));
        }
        if value.contains('\0') {
            return Err(fail(step, format!("{name} has a NUL byte in its value")));
        }
        Ok(())
    };

    let mut frozen = FrozenEnv::inherit();
    // A name a shell or systemd cannot carry would make the env file and the services disagree;
    // an inherited instance fact would outlive the instance it describes.
    frozen
        .vars
        .retain(|name, _| is_valid_name(name) && !INSTANCE_FACTS.contains(&name.as_str()));

    for (name, value) in &env.defaults {
        admit("[env] defaults", name, value)?;
        frozen.set(name, value.clone(), Source::Default);
    }

    if let Some(prefix) = &meta.tags_prefix {
        for (tag, value) in &metadata.tags {
            let Some(name) = tag.strip_prefix(prefix.as_str()) else {
                continue;
            };
            if tag.starts_with(pin::TAG_PREFIX) {
                continue;
            }
            admit(&format!("tag {tag}"), name, value)?;
            frozen.set(name, value.clone(), Source::Tag);
        }
    }

    if let (Some(raw), true) = (&metadata.user_data, meta.user_data != UserDataFormat::None) {
        let entries = user_data::parse(raw, meta.user_data, meta.user_data_limit)
            .map_err(|e| fail(&e.step, e.reason))?;
        for entry in entries {
            if entry.name.starts_with(pin::USER_DATA_PREFIX) {
                frozen.pins.insert(entry.name, entry.value);
                continue;
            }
            let step = match entry.line {
                Some(line) => format!("user-data line {line}"),
                None => "user-data".to_string(),
            };
            admit(&step, &entry.name, &entry.value)?;
            frozen.set(&entry.name, entry.value, Source::UserData);
        }
    }

    for name in &env.required {
        match frozen.vars.get(name) {
            Some(var) if var.source != Source::Kiln && !var.value.is_empty() => {}
            Some(var) if var.source != Source::Kiln => {
                return Err(fail(
                    "[env] required",
                    format!("{name} is empty (set by {})", var.source.as_str()),
                ));
            }
            _ => {
                return Err(fail(
                    "[env] required",
                    format!("{name} not set by user-data or tags"),
                ));
            }
        }
    }

    let facts = &metadata.facts;
    let values = [
        Some(&facts.provider),
        facts.instance_id.as_ref(),
        facts.region.as_ref(),
        facts.zone.as_ref(),
        facts.local_ipv4.as_ref(),
        facts.hostname.as_ref(),
    ];
    for (name, value) in INSTANCE_FACTS.into_iter().zip(values) {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            if value.contains('\0') {
                return Err(fail("instance facts", format!("{name} has a NUL byte")));
            }
            frozen.set(name, value.clone(), Source::Instance);
        }
    }
    Ok(frozen)
}
