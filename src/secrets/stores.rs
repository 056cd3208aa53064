//! The clients of every secret store, built once per resolution: the AWS client (credentials
//! from kiln's environment or the instance role), the metadata identity (GCE and Azure tokens,
//! each fetched once), and an HTTPS client for GCP and Key Vault (`crate::net::client::api`).

use super::Failure;
use crate::aws::{Api, AwsClient, CredentialSource, Region, SECRETS_MANAGER, SSM, Service};
use crate::config::{MetadataConfig, SecretsConfig};
use crate::metadata::{Identity, InstanceFacts};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::OnceCell;
use tokio::time::Instant;

pub struct Stores {
    pub(super) config: SecretsConfig,
    aws: Result<AwsClient, String>,
    /// Region of AWS references that are not ARNs, or why the one given is not a region.
    region: Option<Result<Region, String>>,
    identity: Identity,
    pub(super) http: reqwest::Client,
    /// Requests to GCP, Key Vault and token endpoints (AWS counts its own).
    pub(super) requests: AtomicU64,
    gce_token: OnceCell<String>,
    azure_token: OnceCell<String>,
}

impl Stores {
    pub fn new(
        config: &SecretsConfig,
        metadata: &MetadataConfig,
        facts: &InstanceFacts,
    ) -> Result<Stores, String> {
        let identity = Identity::from_config(metadata).map_err(|e| e.to_string())?;
        let aws = CredentialSource::from_env_or(identity.clone()).and_then(AwsClient::new);
        let region = default_region(config, facts);
        let http = crate::net::client::api()?;
        Ok(Stores {
            config: config.clone(),
            aws,
            region,
            identity,
            http,
            requests: AtomicU64::new(0),
            gce_token: OnceCell::new(),
            azure_token: OnceCell::new(),
        })
    }

    /// Requests sent so far to every store (retries included).
    pub fn requests(&self) -> u64 {
        let aws = self.aws.as_ref().map(AwsClient::requests).unwrap_or(0);
        aws + self.requests.load(Ordering::Relaxed)
    }

    /// The AWS API of `service` in the reference's region (from its ARN), else the default one.
    pub(super) fn aws(&self, service: &'static Service, arn_region: Option<&Region>) -> Result<Api, Failure> {
        let client = self.aws.as_ref().map_err(|e| Failure::new(e.clone()))?;
        let region = match (arn_region, &self.region) {
            (Some(region), _) | (None, Some(Ok(region))) => region,
            (None, Some(Err(why))) => return Err(Failure::new(why.clone())),
            (None, None) => {
                return Err(Failure::new(
                    "no AWS region: the instance has none; set [secrets] region or use an ARN",
                ));
            }
        };
        let configured = match service.name {
            name if name == SSM.name => self.config.ssm_endpoint.as_deref(),
            name if name == SECRETS_MANAGER.name => self.config.secretsmanager_endpoint.as_deref(),
            _ => None,
        };
        client.api(service, region, configured).map_err(Failure::new)
    }

    /// The region a reference is read in: its ARN's, else the default one (so references by
    /// name and by ARN in one region share their batches).
    pub(super) fn region<'a>(&'a self, arn_region: Option<&'a Region>) -> Option<&'a Region> {
        arn_region.or(self.region.as_ref().and_then(|r| r.as_ref().ok()))
    }

    /// The GCE default service account's token, fetched once.
    pub(super) async fn gce_token(&self, deadline: Instant) -> Result<&str, Failure> {
        self.gce_token
            .get_or_try_init(|| async {
                self.requests.fetch_add(1, Ordering::Relaxed);
                let token = self.identity.gce_token(deadline).await;
                token.map(|t| t.token).map_err(|e| Failure::new(e.to_string()))
            })
            .await
            .map(String::as_str)
    }

    /// The Azure managed identity's token for Key Vault, fetched once.
    pub(super) async fn azure_token(&self, deadline: Instant) -> Result<&str, Failure> {
        self.azure_token
            .get_or_try_init(|| async {
                self.requests.fetch_add(1, Ordering::Relaxed);
                let token = self
                    .identity
                    .azure_token(super::keyvault::RESOURCE, deadline)
                    .await;
                token.map(|t| t.token).map_err(|e| Failure::new(e.to_string()))
            })
            .await
            .map(String::as_str)
    }
}

/// `[secrets] region`, else the instance's, else `AWS_REGION` / `AWS_DEFAULT_REGION` of kiln's
/// environment; an error names where the one that is not a region came from.
fn default_region(config: &SecretsConfig, facts: &InstanceFacts) -> Option<Result<Region, String>> {
    let kiln_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (text, from) = None
        .or_else(|| config.region.clone().map(|r| (r, "[secrets] region")))
        .or_else(|| {
            let region = facts.region.clone().filter(|r| !r.is_empty());
            region.map(|r| (r, "the instance's region (metadata)"))
        })
        .or_else(|| kiln_env("AWS_REGION").map(|r| (r, "AWS_REGION")))
        .or_else(|| kiln_env("AWS_DEFAULT_REGION").map(|r| (r, "AWS_DEFAULT_REGION")))?;
    Some(Region::parse(&text).map_err(|e| format!("{from} is {e}")))
}
