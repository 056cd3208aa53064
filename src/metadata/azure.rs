//! Azure Instance Metadata Service (IMDS).
//!
//! Every request carries `Metadata: true` and an `api-version`. The instance document gives the
//! facts and the tags (`compute.tagsList`); user data is a separate base64 text answer. Azure
//! documents 404, 410 and 429 as passing states (the service is updating), so they are retried
//! like 5xx ([`transient`]).

use super::client::{Http, Request, json_string, parse_json, status_text, text};
use super::{InstanceFacts, MetadataProvider, Result, TagNames};
use base64::Engine;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::Value;
use std::collections::BTreeMap;
use tokio::sync::OnceCell;

const INSTANCE: &str = "/metadata/instance?api-version=2021-02-01";
const USER_DATA: &str = "/metadata/instance/compute/userData?api-version=2021-01-01&format=text";

/// What Azure retries: what every peer may pass through (429, 5xx), and 404 and 410.
pub(super) fn transient(status: StatusCode) -> bool {
    crate::net::transient_status(status) || matches!(status.as_u16(), 404 | 410)
}

pub(super) struct Azure {
    http: Http,
    instance: OnceCell<Value>,
}

impl Azure {
    pub fn new(http: Http) -> Azure {
        Azure {
            http,
            instance: OnceCell::new(),
        }
    }

    async fn get(&self, step: &str, path: &str) -> Result<bytes::Bytes> {
        let request = Request::get(path).header("metadata", HeaderValue::from_static("true"));
        let answer = self.http.send(step, &request).await?;
        match answer.status {
            StatusCode::OK => Ok(answer.body),
            status => Err(self.http.error(step, format!("answered {}", status_text(status)))),
        }
    }

    async fn instance(&self) -> Result<&Value> {
        self.instance
            .get_or_try_init(|| async {
                let step = "instance metadata";
                let body = self.get(step, INSTANCE).await?;
                parse_json(&self.http, step, &body)
            })
            .await
    }
}

#[async_trait::async_trait]
impl MetadataProvider for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        Ok(facts_from(self.instance().await?))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let step = "user data";
        let body = self.get(step, USER_DATA).await?;
        let encoded = text(&self.http, step, &body)?;
        if encoded.is_empty() {
            return Ok(None);
        }
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map(Some)
            .map_err(|_| self.http.error(step, "userData is not valid base64"))
    }

    async fn tags(&self, wanted: &TagNames<'_>) -> Result<BTreeMap<String, String>> {
        let doc = self.instance().await?;
        let list = doc
            .pointer("/compute/tagsList")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        Ok(list
            .filter_map(|tag| Some((tag.get("name")?.as_str()?, tag.get("value")?.as_str()?)))
            .filter(|(name, _)| wanted.matches(name))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect())
    }
}

/// The facts in the `/metadata/instance` document.
pub(super) fn facts_from(doc: &Value) -> InstanceFacts {
    InstanceFacts {
        provider: "azure".into(),
        instance_id: json_string(doc, "/compute/vmId"),
        region: json_string(doc, "/compute/location"),
        zone: json_string(doc, "/compute/zone"),
        local_ipv4: json_string(doc, "/network/interface/0/ipv4/ipAddress/0/privateIpAddress"),
        hostname: json_string(doc, "/compute/osProfile/computerName")
            .or_else(|| json_string(doc, "/compute/name")),
    }
}
