//! UpCloud server metadata: `/metadata/v1.json`, one JSON document with `user_data` in it. No
//! header is required.
//!
//! UpCloud tags are plain labels, not key/value pairs: no tags for the environment.

use super::client::{Http, JsonDocument, json_string};
use super::{InstanceFacts, MetadataProvider, Result};
use serde_json::Value;

pub(super) struct UpCloud {
    http: Http,
    document: JsonDocument,
}

impl UpCloud {
    pub fn new(http: Http) -> UpCloud {
        UpCloud {
            http,
            document: JsonDocument::new("/metadata/v1.json"),
        }
    }
}

#[async_trait::async_trait]
impl MetadataProvider for UpCloud {
    fn name(&self) -> &'static str {
        "upcloud"
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

/// The facts in `metadata/v1.json`: the local address is the first IPv4 of the first interface
/// of type `private` (an SDN network), else of type `utility`.
pub(super) fn facts_from(doc: &Value) -> InstanceFacts {
    let interfaces = doc.pointer("/network/interfaces").and_then(Value::as_array);
    let ipv4_of = |kind: &str| {
        interfaces
            .into_iter()
            .flatten()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some(kind))
            .flat_map(|i| {
                i.get("ip_addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter(|a| a.get("family").and_then(Value::as_str) == Some("IPv4"))
            .find_map(|a| json_string(a, "/address"))
    };
    InstanceFacts {
        provider: "upcloud".into(),
        instance_id: json_string(doc, "/instance_id"),
        region: json_string(doc, "/region"),
        zone: None,
        local_ipv4: ipv4_of("private").or_else(|| ipv4_of("utility")),
        hostname: json_string(doc, "/hostname"),
    }
}
