//! Instance facts and user-data from the cloud's metadata endpoint (one file per provider).
//!
//! STUB (issue 2): returns empty facts. The metadata issue replaces the body of [`fetch`].

use crate::config::MetadataConfig;
use std::collections::BTreeMap;

/// Facts about the instance, the same on every provider. None where the provider has no answer.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct InstanceFacts {
    pub provider: String,
    pub instance_id: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub local_ipv4: Option<String>,
    pub hostname: Option<String>,
}

/// Everything one fetch returned. User-data and tags may hold secrets: never log them.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// The address that was asked (for error messages and status).
    pub endpoint: String,
    pub facts: InstanceFacts,
    /// Raw user-data as the endpoint gave it (maybe gzip); None when the instance has none.
    pub user_data: Option<Vec<u8>>,
    /// Instance tags / custom attributes, by name.
    pub tags: BTreeMap<String, String>,
}

/// A fetch that failed: which provider, which address, which step, and why (never a value).
#[derive(Debug, thiserror::Error)]
#[error("metadata ({provider} at {endpoint}), {step}: {reason}")]
pub struct MetadataError {
    pub provider: String,
    pub endpoint: String,
    pub step: String,
    pub reason: String,
}

/// Fetches facts, tags and user-data within the configured deadline.
pub async fn fetch(_config: &MetadataConfig) -> Result<Metadata, MetadataError> {
    Ok(Metadata {
        endpoint: "none".into(),
        facts: InstanceFacts {
            provider: "none".into(),
            ..Default::default()
        },
        ..Default::default()
    })
}
