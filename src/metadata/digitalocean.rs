//! DigitalOcean droplet metadata: one JSON document, no header.
//!
//! DigitalOcean tags are plain labels (letters, digits, `:`, `-`, `_`), not key/value pairs, so
//! this provider has no tags for the environment; user data carries it.

use super::client::{Http, Request, json_string, parse_json};
use super::{InstanceFacts, MetadataProvider, Result};
use serde_json::Value;
use tokio::sync::OnceCell;

pub(super) struct DigitalOcean {
    http: Http,
    document: OnceCell<Value>,
}

impl DigitalOcean {
    pub fn new(http: Http) -> DigitalOcean {
        DigitalOcean {
            http,
            document: OnceCell::new(),
        }
    }

    async fn document(&self) -> Result<&Value> {
        self.document
            .get_or_try_init(|| async {
                let step = "metadata/v1.json";
                let body = self
                    .http
                    .get_required(step, &Request::get("/metadata/v1.json"))
                    .await?;
                parse_json(&self.http, step, &body)
            })
            .await
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
        Ok(facts_from(self.document().await?))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let doc = self.document().await?;
        Ok(doc
            .get("user_data")
            .and_then(Value::as_str)
            .map(|s| s.as_bytes().to_vec()))
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
