//! OpenStack metadata service (the HTTP one; config drives are not read).
//!
//! `meta_data.json` gives the uuid, hostname, availability zone and `meta` (the instance's
//! key/value metadata, read as tags); `user_data` is raw. The local IPv4 comes from the
//! EC2-compatible `local-ipv4`, which Nova serves on the same address. OpenStack has no region
//! in its metadata.

use super::client::{Http, Request, json_string, parse_json, text};
use super::{InstanceFacts, MetadataProvider, Result, TagNames};
use serde_json::Value;
use std::collections::BTreeMap;
use tokio::sync::OnceCell;

pub(super) struct OpenStack {
    http: Http,
    meta_data: OnceCell<Value>,
}

impl OpenStack {
    pub fn new(http: Http) -> OpenStack {
        OpenStack {
            http,
            meta_data: OnceCell::new(),
        }
    }

    async fn meta_data(&self) -> Result<&Value> {
        self.meta_data
            .get_or_try_init(|| async {
                let step = "meta_data.json";
                let body = self
                    .http
                    .get_required(step, &Request::get("/openstack/latest/meta_data.json"))
                    .await?;
                parse_json(&self.http, step, &body)
            })
            .await
    }
}

#[async_trait::async_trait]
impl MetadataProvider for OpenStack {
    fn name(&self) -> &'static str {
        "openstack"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let step = "local-ipv4";
        let request = Request::get("/latest/meta-data/local-ipv4");
        let (doc, ipv4) = tokio::try_join!(self.meta_data(), self.http.get_optional(step, &request))?;
        let local_ipv4 = match ipv4 {
            Some(body) => Some(text(&self.http, step, &body)?).filter(|s| !s.is_empty()),
            None => None,
        };
        Ok(facts_from(doc, local_ipv4))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let request = Request::get("/openstack/latest/user_data");
        Ok(self
            .http
            .get_optional("user_data", &request)
            .await?
            .map(|b| b.to_vec()))
    }

    async fn tags(&self, wanted: &TagNames<'_>) -> Result<BTreeMap<String, String>> {
        let doc = self.meta_data().await?;
        let meta = doc.get("meta").and_then(Value::as_object).into_iter().flatten();
        Ok(meta
            .filter(|(k, _)| wanted.matches(k))
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect())
    }
}

/// The facts in `meta_data.json`, with the address EC2-style metadata gave.
pub(super) fn facts_from(doc: &Value, local_ipv4: Option<String>) -> InstanceFacts {
    InstanceFacts {
        provider: "openstack".into(),
        instance_id: json_string(doc, "/uuid"),
        region: None,
        zone: json_string(doc, "/availability_zone"),
        local_ipv4,
        hostname: json_string(doc, "/hostname"),
    }
}
