//! Oracle Cloud (OCI) instance metadata service v2: `/opc/v2/instance/` and `/opc/v2/vnics/`,
//! every request with `Authorization: Bearer Oracle` (v2 refuses a request without it, 401).
//!
//! The instance document gives the OCID, the region (`canonicalRegionName`), the availability
//! domain (the zone), the host name, `metadata.user_data` (base64) and `freeformTags` (read as
//! tags). The private IPv4 is the first VNIC's `privateIp`.

use super::client::{Http, Request, json_string, parse_json};
use super::{InstanceFacts, MetadataProvider, Result, TagNames};
use base64::Engine;
use reqwest::header::HeaderValue;
use serde_json::Value;
use std::collections::BTreeMap;
use tokio::sync::OnceCell;

pub(super) struct Oracle {
    http: Http,
    instance: OnceCell<Value>,
}

/// What IMDS v2 requires on every request.
fn request(path: &str) -> Request {
    Request::get(path).header("authorization", HeaderValue::from_static("Bearer Oracle"))
}

impl Oracle {
    pub fn new(http: Http) -> Oracle {
        Oracle {
            http,
            instance: OnceCell::new(),
        }
    }

    async fn instance(&self) -> Result<&Value> {
        self.instance
            .get_or_try_init(|| async {
                let step = "opc/v2/instance";
                let body = self
                    .http
                    .get_required(step, &request("/opc/v2/instance/"))
                    .await?;
                parse_json(&self.http, step, &body)
            })
            .await
    }

    async fn private_ipv4(&self) -> Result<Option<String>> {
        let step = "opc/v2/vnics";
        let Some(body) = self.http.get_optional(step, &request("/opc/v2/vnics/")).await? else {
            return Ok(None);
        };
        Ok(json_string(&parse_json(&self.http, step, &body)?, "/0/privateIp"))
    }
}

#[async_trait::async_trait]
impl MetadataProvider for Oracle {
    fn name(&self) -> &'static str {
        "oracle"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let (doc, ipv4) = tokio::try_join!(self.instance(), self.private_ipv4())?;
        Ok(facts_from(doc, ipv4))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let doc = self.instance().await?;
        let Some(encoded) = doc.pointer("/metadata/user_data").and_then(Value::as_str) else {
            return Ok(None);
        };
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map(Some)
            .map_err(|e| self.http.error("metadata.user_data", format!("not base64: {e}")))
    }

    async fn tags(&self, wanted: &TagNames<'_>) -> Result<BTreeMap<String, String>> {
        let doc = self.instance().await?;
        let tags = doc
            .get("freeformTags")
            .and_then(Value::as_object)
            .into_iter()
            .flatten();
        Ok(tags
            .filter(|(k, _)| wanted.matches(k))
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect())
    }
}

/// The facts in the instance document, with the first VNIC's address.
pub(super) fn facts_from(doc: &Value, local_ipv4: Option<String>) -> InstanceFacts {
    InstanceFacts {
        provider: "oracle".into(),
        instance_id: json_string(doc, "/id"),
        region: json_string(doc, "/canonicalRegionName").or_else(|| json_string(doc, "/region")),
        zone: json_string(doc, "/availabilityDomain"),
        local_ipv4,
        hostname: json_string(doc, "/hostname"),
    }
}
