//! Vultr instance metadata: `/v1.json` (one JSON document) and `/latest/user-data` (raw). No
//! header is required.
//!
//! Vultr tags are plain labels, not key/value pairs: no tags for the environment.

use super::client::{Http, Request, json_string, parse_json};
use super::{InstanceFacts, MetadataProvider, Result};
use serde_json::Value;

pub(super) struct Vultr {
    http: Http,
}

impl Vultr {
    pub fn new(http: Http) -> Vultr {
        Vultr { http }
    }
}

#[async_trait::async_trait]
impl MetadataProvider for Vultr {
    fn name(&self) -> &'static str {
        "vultr"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let step = "v1.json";
        let body = self.http.get_required(step, &Request::get("/v1.json")).await?;
        Ok(facts_from(&parse_json(&self.http, step, &body)?))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let request = Request::get("/latest/user-data");
        let body = self.http.get_optional("user-data", &request).await?;
        Ok(body.filter(|b| !b.is_empty()).map(|b| b.to_vec()))
    }
}

/// The facts in `v1.json`: the private address is the interface whose `network-type` is
/// `private` (a VPC), if the instance has one.
pub(super) fn facts_from(doc: &Value) -> InstanceFacts {
    let interfaces = doc
        .get("interfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let private = interfaces
        .filter(|i| i.get("network-type").and_then(Value::as_str) == Some("private"))
        .find_map(|i| json_string(i, "/ipv4/address"));
    InstanceFacts {
        provider: "vultr".into(),
        instance_id: json_string(doc, "/instance-v2-id").or_else(|| json_string(doc, "/instanceid")),
        region: json_string(doc, "/region/regioncode"),
        zone: None,
        local_ipv4: private,
        hostname: json_string(doc, "/hostname"),
    }
}
