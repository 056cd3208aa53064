//! `[secrets]`: turns secret references on, and says where the secret stores are.
//!
//! Without this section no value is ever a reference: `ssm:/app/db` in user-data stays that text.
//! With it, a value that starts with one of `schemes` followed by `:` is a reference, resolved at
//! boot (see `crate::secrets`). A value that merely looks like one can therefore never change
//! meaning unless the image's config says so.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// The schemes that mark a reference (default: all four).
    #[serde(default = "all_schemes")]
    pub schemes: Vec<Scheme>,
    /// chamber-style: every SSM parameter directly under each path becomes a variable named
    /// after its last segment (`/app/prod/db_password` → `DB_PASSWORD`).
    #[serde(default)]
    pub ssm_paths: Vec<String>,
    /// AWS region of references that are not ARNs (default: the instance's, else `AWS_REGION` /
    /// `AWS_DEFAULT_REGION` of kiln's environment).
    pub region: Option<String>,
    /// SSM endpoint override (`{region}` allowed); else `AWS_ENDPOINT_URL_SSM`, `AWS_ENDPOINT_URL`.
    pub ssm_endpoint: Option<String>,
    /// Secrets Manager endpoint override; else `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL`.
    pub secretsmanager_endpoint: Option<String>,
    /// GCP Secret Manager API (default `https://secretmanager.googleapis.com`).
    pub gcp_endpoint: Option<String>,
    /// Azure Key Vault address; `{vault}` is the vault's name (default
    /// `https://{vault}.vault.azure.net`). Without `{vault}` every vault is asked there.
    pub keyvault_endpoint: Option<String>,
}

/// A reference scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// AWS SSM Parameter Store.
    Ssm,
    /// AWS Secrets Manager.
    Secretsmanager,
    /// GCP Secret Manager.
    Gcp,
    /// Azure Key Vault.
    Keyvault,
}

impl Scheme {
    pub const ALL: [Scheme; 4] = [Scheme::Ssm, Scheme::Secretsmanager, Scheme::Gcp, Scheme::Keyvault];

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ssm => "ssm",
            Scheme::Secretsmanager => "secretsmanager",
            Scheme::Gcp => "gcp",
            Scheme::Keyvault => "keyvault",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn all_schemes() -> Vec<Scheme> {
    Scheme::ALL.to_vec()
}

impl SecretsConfig {
    /// Every problem serde cannot see, each naming its key.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for path in &self.ssm_paths {
            let ok = path.starts_with('/')
                && path.len() <= 2048
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-'));
            if !ok {
                problems.push(format!(
                    "ssm_paths: {path:?}: an SSM path starts with '/' and holds letters, digits, '/', '_', '.', '-'"
                ));
            }
        }
        if !self.ssm_paths.is_empty() && !self.schemes.contains(&Scheme::Ssm) {
            problems.push("ssm_paths needs \"ssm\" in schemes".into());
        }
        if let Some(region) = &self.region
            && (region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            problems.push(format!("region = {region:?}: not an AWS region name"));
        }
        let endpoints = [
            ("ssm_endpoint", &self.ssm_endpoint),
            ("secretsmanager_endpoint", &self.secretsmanager_endpoint),
            ("gcp_endpoint", &self.gcp_endpoint),
            ("keyvault_endpoint", &self.keyvault_endpoint),
        ];
        for (key, value) in endpoints {
            if let Some(url) = value
                && let Err(e) = super::url::check_http_url(url)
            {
                problems.push(format!("{key} = {url:?}: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    pub fn enables(&self, scheme: Scheme) -> bool {
        self.schemes.contains(&scheme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_enable_every_scheme() {
        let c: SecretsConfig = toml::from_str("").unwrap();
        assert_eq!(c.schemes, Scheme::ALL.to_vec());
        assert!(c.check().is_ok());
        let c: SecretsConfig = toml::from_str("schemes = [\"ssm\"]\nssm_paths = [\"app\"]").unwrap();
        assert!(c.check().unwrap_err()[0].starts_with("ssm_paths: \"app\""));
        assert!(toml::from_str::<SecretsConfig>("schemes = [\"vault\"]").is_err());
    }
}
