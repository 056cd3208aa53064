//! The frozen environment every service gets, built once per boot from the fetched metadata.
//!
//! Layers, each overriding the one before:
//! kiln's own inherited environment (`kiln`, minus what is kiln's alone: `AWS_*`, `KILN_LOG` and
//! systemd's supervision variables) < `[env] defaults` (`default`) < SSM paths loaded by
//! `[secrets] ssm_paths` (`secret`) < tags matching `tags_prefix` (`tag`) < user-data
//! (`user-data`) < instance facts `KILN_*` (`instance`).
//! Defaults, tags, user-data and secrets are checked (names, the reserved `KILN_` prefix, the
//! deny lists, NUL bytes, secret sizes); kiln's own environment is not, since services need its
//! `PATH` and the like. Then every `required` name must have a non-empty value.
//! Errors name the source, the place and the variable, never a value. The pins of the image
//! (`kiln-expect-*` tags, `KILN_EXPECT_*` user-data keys, [`PIN_KEY_PREFIX`]) are not
//! variables: they are set aside for the boot's pin check (`seal::pin`).
//!
//! Building is two steps so that secrets can be resolved in between: [`layer`] merges the layers
//! (references still in place), `crate::secrets` resolves the references it finds there, and
//! [`Layered::freeze`] puts the values in, checks them and freezes the result.

mod dotenv;
mod file;
mod limits;
mod mime;
mod user_data;

pub use file::{render, write_files};
pub use limits::{ExecLimits, check_exec_limits};

use crate::config::{
    EnvConfig, ForeignUserData, MetadataConfig, RESERVED_PREFIX, UserDataFormat, check_name, is_valid_name,
};
use crate::metadata::Metadata;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

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

/// Variables of kiln's own process environment that configure kiln itself (its AWS keys and
/// endpoints, its log level): services never see them. Globs.
const KILN_ONLY: &[&str] = &["AWS_*", "KILN_LOG"];

/// User-data names with this prefix pin the image instead of entering the environment: the only
/// `KILN_` names user-data may set. `seal::pin` compares them with the seal and refuses an
/// unknown one, so a typo never pins nothing.
pub const PIN_KEY_PREFIX: &str = "KILN_EXPECT_";
pub const PIN_RELEASE_KEY: &str = "KILN_EXPECT_RELEASE";
pub const PIN_SEAL_KEY: &str = "KILN_EXPECT_SEAL";

/// Largest secret value accepted (Secrets Manager's own limit; SSM's is 8 KiB).
pub const SECRET_VALUE_LIMIT: usize = 64 * 1024;

/// Names every service gets whatever its `env_allow` says: nothing runs well without `PATH`.
const ALWAYS_ALLOWED: &[&str] = &["PATH"];

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
    /// Resolved from a secret store (a reference, or an `ssm_paths` parameter).
    Secret,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Kiln => "kiln",
            Source::Default => "default",
            Source::Tag => "tag",
            Source::UserData => "user-data",
            Source::Instance => "instance",
            Source::Secret => "secret",
        }
    }
}

#[derive(Clone)]
struct Var {
    value: String,
    source: Source,
    /// The reference a secret came from (`ssm:/app/prod/db`).
    reference: Option<Arc<str>>,
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
            .filter(|(k, _)| !KILN_ONLY.iter().any(|p| crate::config::glob_match(p, k)))
            .map(|(k, value)| {
                let var = Var {
                    value,
                    source: Source::Kiln,
                    reference: None,
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

    /// Where a variable came from, as `kiln env` and `kiln status` show it:
    /// `user-data`, or `secret (ssm:/app/prod/db)`.
    pub fn describe_source(&self, name: &str) -> Option<String> {
        let var = self.vars.get(name)?;
        Some(match &var.reference {
            Some(reference) => format!("{} ({reference})", var.source.as_str()),
            None => var.source.as_str().to_string(),
        })
    }

    /// Names and where each came from, for `status` (never values).
    pub fn sources(&self) -> Vec<(String, String)> {
        self.vars
            .keys()
            .filter_map(|k| Some((k.clone(), self.describe_source(k)?)))
            .collect()
    }

    /// How many variables came from a secret store.
    pub fn secrets(&self) -> usize {
        self.vars.values().filter(|v| v.source == Source::Secret).count()
    }

    /// What one service gets: every variable, or with `allow` (globs of `env_allow`) only the
    /// names it matches, plus `PATH`.
    pub fn for_service<'a>(
        &'a self,
        allow: Option<&'a [String]>,
    ) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.vars().filter(move |(name, _)| match allow {
            None => true,
            Some(globs) => {
                ALWAYS_ALLOWED.contains(name) || globs.iter().any(|g| crate::config::glob_match(g, name))
            }
        })
    }

    fn set(&mut self, name: &str, value: String, source: Source) {
        let var = Var {
            value,
            source,
            reference: None,
        };
        self.vars.insert(name.to_string(), var);
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

/// Values resolved from secret stores, for [`Layered::freeze`]. Built by `crate::secrets`.
#[derive(Default)]
pub struct Secrets {
    /// Variables whose value was a reference, by name.
    pub references: BTreeMap<String, SecretValue>,
    /// Variables loaded from `[secrets] ssm_paths`, by name.
    pub loaded: BTreeMap<String, SecretValue>,
}

/// One secret's value and where it came from. `Debug` shows the reference only.
#[derive(Clone)]
pub struct SecretValue {
    pub value: String,
    /// As `kiln env` shows it: `ssm:/app/prod/db`.
    pub reference: String,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue({})", self.reference)
    }
}

/// The merged layers, references not yet resolved: what `crate::secrets` reads.
pub struct Layered {
    env: FrozenEnv,
    config: EnvConfig,
    metadata_facts: crate::metadata::InstanceFacts,
    provider: String,
    endpoint: String,
}

/// Builds and validates the frozen environment from the fetched metadata, without secrets.
pub fn freeze(env: &EnvConfig, meta: &MetadataConfig, metadata: &Metadata) -> Result<FrozenEnv, EnvError> {
    layer(env, meta, metadata)?.freeze(Secrets::default())
}

impl Layered {
    /// Every variable (name, value, source) so far, sorted by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str, Source)> {
        self.env
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.value.as_str(), v.source))
    }

    /// The user-data keys that pin the image (`KILN_EXPECT_*`), kept out of the environment.
    pub fn pins(&self) -> &BTreeMap<String, String> {
        self.env.pins()
    }

    fn fail(&self, step: &str, reason: String) -> EnvError {
        EnvError {
            provider: self.provider.clone(),
            endpoint: self.endpoint.clone(),
            step: step.to_string(),
            reason,
        }
    }

    /// Puts the secrets in, checks `required`, adds the instance facts: the frozen environment.
    pub fn freeze(mut self, secrets: Secrets) -> Result<FrozenEnv, EnvError> {
        for (name, secret) in secrets.loaded {
            let step = format!("[secrets] ssm_paths ({})", secret.reference);
            admit(&self.config, &name, &secret.value)
                .and_then(|()| check_secret(&name, &secret.value))
                .map_err(|e| self.fail(&step, e))?;
            // Below tags and user-data: the instance's own settings win over the store's.
            let lower = self
                .env
                .vars
                .get(&name)
                .is_none_or(|v| matches!(v.source, Source::Kiln | Source::Default));
            if lower {
                self.set_secret(&name, secret);
            }
        }
        for (name, secret) in secrets.references {
            let step = format!("secret {name} ({})", secret.reference);
            check_secret(&name, &secret.value).map_err(|e| self.fail(&step, e))?;
            self.set_secret(&name, secret);
        }
        self.check_required()?;
        self.add_facts()?;
        Ok(self.env)
    }

    fn set_secret(&mut self, name: &str, secret: SecretValue) {
        let var = Var {
            value: secret.value,
            source: Source::Secret,
            reference: Some(secret.reference.into()),
        };
        self.env.vars.insert(name.to_string(), var);
    }

    fn check_required(&self) -> Result<(), EnvError> {
        for name in &self.config.required {
            match self.env.vars.get(name) {
                Some(var) if var.source != Source::Kiln && !var.value.is_empty() => {}
                Some(var) if var.source != Source::Kiln => {
                    let source = self.env.describe_source(name).unwrap_or_default();
                    return Err(self.fail("[env] required", format!("{name} is empty (set by {source})")));
                }
                _ => {
                    return Err(self.fail("[env] required", format!("{name} not set by user-data or tags")));
                }
            }
        }
        Ok(())
    }

    fn add_facts(&mut self) -> Result<(), EnvError> {
        let facts = self.metadata_facts.clone();
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
                    return Err(self.fail("instance facts", format!("{name} has a NUL byte")));
                }
                self.env.set(name, value.clone(), Source::Instance);
            }
        }
        Ok(())
    }
}

/// The rules for anything that is not kiln's own environment: a valid name, not `KILN_*`, not
/// denied, no NUL byte.
fn admit(env: &EnvConfig, name: &str, value: &str) -> Result<(), String> {
    check_name(name)?;
    if name.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "{name}: the {RESERVED_PREFIX} prefix is reserved for instance facts"
        ));
    }
    if let Some(why) = env.denied(name) {
        return Err(format!("{name} is denied ({why})"));
    }
    if value.contains('\0') {
        return Err(format!("{name} has a NUL byte in its value"));
    }
    Ok(())
}

/// A secret value obeys the rules of every value (UTF-8 is given by `String`), and a size limit.
fn check_secret(name: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!("{name}: the secret has a NUL byte"));
    }
    if value.len() > SECRET_VALUE_LIMIT {
        return Err(format!(
            "{name}: the secret is {} bytes, over the {SECRET_VALUE_LIMIT} byte limit",
            value.len()
        ));
    }
    Ok(())
}

/// Merges kiln's own environment, defaults, tags and user-data; references stay as written.
pub fn layer(env: &EnvConfig, meta: &MetadataConfig, metadata: &Metadata) -> Result<Layered, EnvError> {
    let fail = |step: &str, reason: String| EnvError {
        provider: metadata.facts.provider.clone(),
        endpoint: metadata.endpoint.clone(),
        step: step.to_string(),
        reason,
    };
    let admit = |step: &str, name: &str, value: &str| admit(env, name, value).map_err(|e| fail(step, e));

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
            if tag.starts_with(crate::metadata::PIN_TAG_PREFIX) {
                continue;
            }
            admit(&format!("tag {tag}"), name, value)?;
            frozen.set(name, value.clone(), Source::Tag);
        }
    }

    if let (Some(raw), true) = (&metadata.user_data, meta.user_data != UserDataFormat::None) {
        let entries = user_data::parse(raw, meta.user_data, meta.user_data_limit, meta.user_data_foreign)
            .map_err(|e| fail(&e.step, e.reason))?;
        for entry in entries {
            if entry.name.starts_with(PIN_KEY_PREFIX) {
                frozen.pins.insert(entry.name, entry.value);
                continue;
            }
            admit(&entry.step, &entry.name, &entry.value)?;
            frozen.set(&entry.name, entry.value, Source::UserData);
        }
    }
    Ok(Layered {
        env: frozen,
        config: env.clone(),
        metadata_facts: metadata.facts.clone(),
        provider: metadata.facts.provider.clone(),
        endpoint: metadata.endpoint.clone(),
    })
}

/// For the fuzz targets (`fuzz/`): user-data decoded and parsed as a boot does, as
/// `(name, value)` pairs, or the error as a boot would show it.
#[doc(hidden)]
pub fn parse_user_data(
    raw: &[u8],
    format: UserDataFormat,
    limit: u64,
) -> Result<Vec<(String, String)>, String> {
    user_data::parse(raw, format, limit, ForeignUserData::Refuse)
        .map(|entries| entries.into_iter().map(|e| (e.name, e.value)).collect())
        .map_err(|e| format!("{}: {}", e.step, e.reason))
}

/// For the fuzz targets (`fuzz/`): the leaf parts of a MIME document as user-data reads them,
/// as `(content type, decoded body)`, or the error.
#[doc(hidden)]
pub fn mime_parts(document: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    mime::parts(document).map(|parts| parts.into_iter().map(|p| (p.content_type, p.body)).collect())
}

/// For the fuzz targets: the most leaf parts a MIME user-data may have.
#[doc(hidden)]
pub const MIME_PARTS_MAX: usize = mime::PARTS_MAX;
