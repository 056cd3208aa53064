//! Secrets by reference: values that name a secret in a cloud's secret store are replaced by the
//! secret at boot, after the env layers merge and before the environment freezes.
//!
//! `reference` is the syntax (enabled per scheme by `[secrets]`); one file per store resolves its
//! references: `ssm` (batched GetParameters, paged GetParametersByPath), `secretsmanager`
//! (GetSecretValue, one JSON key), `gcp` (Secret Manager `:access`), `keyvault` (Key Vault).
//! AWS goes through the shared `crate::aws` client, the GCP and Azure tokens through the metadata
//! room's identity client. Everything runs concurrently inside the boot's metadata deadline.
//!
//! Values never leave this room except into [`crate::env::Secrets`]: errors name the variable, the
//! reference and the store's error code; `Debug` of anything holding a value redacts it.

mod gcp;
mod keyvault;
pub mod recheck;
pub mod reference;
mod rest;
mod secretsmanager;
mod ssm;
mod stores;

pub use reference::{Reference, Target};
pub use stores::Stores;

use crate::config::SecretsConfig;
use crate::env::{Layered, SecretValue, Secrets, Source};
use futures_util::future::join_all;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// What the boot must resolve: each distinct reference with the variables that hold it, and the
/// SSM paths to load.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub references: BTreeMap<Reference, Vec<String>>,
    pub paths: Vec<String>,
}

/// The store could not give a secret: its error code when it answered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Option<String>,
    pub reason: String,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure {
            code: None,
            reason: reason.into(),
        }
    }
}

impl From<crate::aws::CallError> for Failure {
    fn from(e: crate::aws::CallError) -> Failure {
        Failure {
            code: e.code().map(str::to_string),
            reason: e.to_string(),
        }
    }
}

/// One secret the boot could not resolve: the variables, the reference, the cloud's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError {
    /// The variables holding the reference; empty for an `ssm_paths` load.
    pub variables: Vec<String>,
    /// The reference as written, or `ssm path /app/prod/`.
    pub reference: String,
    pub failure: Failure,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.variables.as_slice() {
            [] => write!(f, "secrets ({}): {}", self.reference, self.failure.reason),
            names => write!(
                f,
                "secret {} ({}): {}",
                names.join(", "),
                self.reference,
                self.failure.reason
            ),
        }
    }
}

/// Every secret that failed, first ones first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretErrors(pub Vec<SecretError>);

impl fmt::Display for SecretErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&all.join("; "))
    }
}

impl std::error::Error for SecretErrors {}

/// What a resolution gave: the values for [`Layered::freeze`] and how it went.
pub struct Resolution {
    pub secrets: Secrets,
    /// Requests sent to secret stores and token endpoints (retries included).
    pub requests: u64,
    pub took: Duration,
}

/// Finds the references in the merged layers. kiln's own inherited environment is not
/// searched: only what the image (`defaults`) or the instance (tags, user-data) set.
pub fn plan(config: &SecretsConfig, layered: &Layered) -> Result<Plan, SecretErrors> {
    let mut plan = Plan {
        paths: config.ssm_paths.clone(),
        ..Plan::default()
    };
    let mut errors = Vec::new();
    for (name, value, source) in layered.vars() {
        if source == Source::Kiln {
            continue;
        }
        match Reference::parse(value, config) {
            None => {}
            Some(Ok(reference)) => plan
                .references
                .entry(reference)
                .or_default()
                .push(name.to_string()),
            Some(Err(reason)) => errors.push(SecretError {
                variables: vec![name.to_string()],
                reference: format!("from {}", source.as_str()),
                failure: Failure::new(reason),
            }),
        }
    }
    match errors.is_empty() {
        true => Ok(plan),
        false => Err(SecretErrors(errors)),
    }
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.references.is_empty() && self.paths.is_empty()
    }

    /// Resolves every reference and path, all stores at once, by `deadline`.
    pub async fn resolve(&self, stores: &Stores, deadline: Instant) -> Result<Resolution, SecretErrors> {
        let started = std::time::Instant::now();
        let requests_before = stores.requests();
        let (values, loaded) = tokio::join!(self.fetch(stores, deadline), self.load_paths(stores, deadline));
        let mut errors = Vec::new();
        let mut secrets = Secrets::default();
        for (reference, variables) in &self.references {
            match values.get(reference) {
                Some(Ok(value)) => {
                    for name in variables {
                        let secret = SecretValue {
                            value: value.clone(),
                            reference: reference.text.clone(),
                        };
                        secrets.references.insert(name.clone(), secret);
                    }
                }
                Some(Err(failure)) => errors.push(SecretError {
                    variables: variables.clone(),
                    reference: reference.text.clone(),
                    failure: failure.clone(),
                }),
                None => errors.push(SecretError {
                    variables: variables.clone(),
                    reference: reference.text.clone(),
                    failure: Failure::new("not resolved (internal error)"),
                }),
            }
        }
        match loaded {
            Ok(loaded) => secrets.loaded = loaded,
            Err(e) => errors.push(e),
        }
        if !errors.is_empty() {
            return Err(SecretErrors(errors));
        }
        Ok(Resolution {
            secrets,
            requests: stores.requests() - requests_before,
            took: started.elapsed(),
        })
    }

    /// Every reference's value (or failure), each store's references concurrently.
    pub async fn fetch(
        &self,
        stores: &Stores,
        deadline: Instant,
    ) -> BTreeMap<Reference, Result<String, Failure>> {
        let refs: Vec<&Reference> = self.references.keys().collect();
        let by = |scheme| {
            refs.iter()
                .copied()
                .filter(move |r| r.scheme() == scheme)
                .collect::<Vec<_>>()
        };
        use crate::config::Scheme;
        let (ssm, sm, gcp, kv) = tokio::join!(
            ssm::resolve(stores, by(Scheme::Ssm), deadline),
            secretsmanager::resolve(stores, by(Scheme::Secretsmanager), deadline),
            gcp::resolve(stores, by(Scheme::Gcp), deadline),
            keyvault::resolve(stores, by(Scheme::Keyvault), deadline),
        );
        ssm.into_iter().chain(sm).chain(gcp).chain(kv).collect()
    }

    /// The `ssm_paths` parameters as variables; a name two paths give is an error.
    async fn load_paths(
        &self,
        stores: &Stores,
        deadline: Instant,
    ) -> Result<BTreeMap<String, SecretValue>, SecretError> {
        let pages = join_all(self.paths.iter().map(|p| ssm::load_path(stores, p, deadline))).await;
        let mut loaded = BTreeMap::new();
        for (path, result) in self.paths.iter().zip(pages) {
            let fail = |failure| SecretError {
                variables: Vec::new(),
                reference: format!("ssm path {path}"),
                failure,
            };
            for (name, secret) in result.map_err(fail)? {
                if let Some(before) = loaded.insert(name.clone(), secret) {
                    return Err(fail(Failure::new(format!(
                        "{name} is given by {} and by another path",
                        before.reference
                    ))));
                }
            }
        }
        Ok(loaded)
    }
}

/// The variable a path's parameter becomes, chamber-style: the last segment, upper-cased, with
/// `-` and `.` as `_` (`/app/prod/db-password` → `DB_PASSWORD`).
pub fn variable_name(parameter: &str) -> String {
    parameter
        .rsplit('/')
        .next()
        .unwrap_or(parameter)
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn chamber_names() {
        assert_eq!(super::variable_name("/app/prod/db_password"), "DB_PASSWORD");
        assert_eq!(super::variable_name("/app/prod/api-key.v2"), "API_KEY_V2");
    }
}
