//! DigitalOcean droplet metadata: one JSON document, no header.
//!
//! DigitalOcean tags are plain labels (letters, digits, `:`, `-`, `_`), not key/value pairs, so
//! this provider has no tags for the environment; user data carries it.

use super::client::{Http, JsonDocument, json_string};
use super::{InstanceFacts, MetadataProvider, Result};
use serde_json::Value;

pub(super) struct DigitalOcean {
    http: Http,
    document: JsonDocument,
}

impl DigitalOcean {
    pub fn new(http: Http) -> DigitalOcean {
        DigitalOcean {
            http,
            document: JsonDocument::new("/metadata/v1.json"),
        }
    }
}

#[async_trait::async_trait]
impl MetadataProvider for DigitalOcean {
    fn name(&self) -> &'static str {
        "digitalocean"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        Ok(facts_from(self.document.get(&self.http).await?))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        self.document.user_data(&self.http).await
    }
}

/// The facts in the `metadata/v1.json` document.
pub(super) fn facts_from(doc: &Value) -> InstanceFacts {
    InstanceFacts {
        provider: "digitalocean".into(),
        instance_id: json_string(doc, "/droplet_id"),
        region: json_string(doc, "/region"),
        zone: None,
        local_ipv4: json_string(doc, "/interfaces/private/0/ipv4/ip_address"),
        hostname: json_string(doc, "/hostname"),
    }
}
