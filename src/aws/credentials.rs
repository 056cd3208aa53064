//! Where the signing keys come from: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//! `AWS_SESSION_TOKEN` in kiln's own environment, else the instance role through the metadata
//! room's IMDS client, cached until 5 minutes before they expire.

use crate::metadata::Identity;
use aws_credential_types::Credentials;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Role keys are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

pub enum CredentialSource {
    /// Fixed keys (from the environment).
    Static(Credentials),
    /// The instance role, through IMDS; cached until shortly before expiry. Concurrent callers
    /// share one fetch (the lock is held while fetching).
    InstanceRole {
        identity: Identity,
        cached: Mutex<Option<Credentials>>,
    },
}

impl CredentialSource {
    /// The environment's keys when `AWS_ACCESS_KEY_ID` is set, else the instance role at `imds`
    /// (`http://HOST[:PORT]`, default request timeout, IMDSv2 only).
    pub fn from_env(imds: &str) -> Result<CredentialSource, String> {
        match Self::from_env_keys()? {
            Some(keys) => Ok(keys),
            None => Ok(Self::instance_role(imds)),
        }
    }

    /// The environment's keys, else the instance role through `identity`.
    pub fn from_env_or(identity: Identity) -> Result<CredentialSource, String> {
        Ok(Self::from_env_keys()?.unwrap_or(CredentialSource::InstanceRole {
            identity,
            cached: Mutex::new(None),
        }))
    }

    fn from_env_keys() -> Result<Option<CredentialSource>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Ok(Some(CredentialSource::Static(Credentials::new(
                id,
                secret,
                var("AWS_SESSION_TOKEN"),
                None,
                "environment",
            )))),
            (Some(_), None) => Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into()),
            _ => Ok(None),
        }
    }

    /// The instance role at `imds`.
    pub fn instance_role(imds: &str) -> CredentialSource {
        let identity = Identity::at(imds, Duration::from_secs(2), false)
            .expect("an HTTP client without TLS roots always builds");
        CredentialSource::InstanceRole {
            identity,
            cached: Mutex::new(None),
        }
    }

    /// For messages: `keys from the environment`, `instance role via http://169.254.169.254`.
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Static(_) => "keys from the environment".into(),
            CredentialSource::InstanceRole { identity, .. } => {
                format!("instance role via {}", identity.endpoint())
            }
        }
    }

    /// Keys to sign with now. An error names the metadata step that failed, never a key.
    pub(super) async fn get(&self, deadline: Instant) -> Result<Credentials, String> {
        match self {
            CredentialSource::Static(c) => Ok(c.clone()),
            CredentialSource::InstanceRole { identity, cached } => {
                let mut cached = cached.lock().await;
                if let Some(c) = cached.as_ref() {
                    let fresh = c
                        .expiry()
                        .is_none_or(|e| SystemTime::now() + REFRESH_BEFORE_EXPIRY < e);
                    if fresh {
                        return Ok(c.clone());
                    }
                }
                let keys = identity
                    .aws_role_keys(deadline)
                    .await
                    .map_err(|e| format!("instance role credentials: {e}"))?;
                tracing::info!("aws: using the credentials of instance role {:?}", keys.role);
                let c = Credentials::new(
                    keys.access_key_id,
                    keys.secret_access_key,
                    keys.token,
                    keys.expiry,
                    "instance-role",
                );
                *cached = Some(c.clone());
                Ok(c)
            }
        }
    }
}
