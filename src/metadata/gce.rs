//! Google Compute Engine metadata server.
//!
//! Every request carries `Metadata-Flavor: Google` and every answer must carry it back (a server
//! that does not is not the metadata server). One recursive request of the root gives everything
//! a boot needs in one round trip: the instance (id, zone, hostname, interfaces, its custom
//! attributes, `user-data` among them) and the project's attributes. Tags are custom attributes;
//! instance attributes override project ones, as on GCE itself.

use super::client::{Http, Request, json_string, parse_json};
use super::{InstanceFacts, MetadataProvider, Result, TagNames};
use reqwest::header::HeaderValue;
use serde_json::Value;
use std::collections::BTreeMap;
use tokio::sync::OnceCell;

pub(super) struct Gce {
    http: Http,
    /// The root document: `{"instance": {...}, "project": {...}}`.
    document: OnceCell<Value>,
}

impl Gce {
    pub fn new(http: Http) -> Gce {
        Gce {
            http,
            document: OnceCell::new(),
        }
    }

    async fn get_json(&self, step: &str, path: &str) -> Result<Option<Value>> {
        let request = Request::get(path).header("metadata-flavor", HeaderValue::from_static("Google"));
        let answer = self.http.send(step, &request).await?;
        if answer.headers.get("metadata-flavor").map(HeaderValue::as_bytes) != Some(b"Google") {
            return Err(self.http.error(
                step,
                format!(
                    "answered {} without the header Metadata-Flavor: Google: not a GCE metadata server",
                    answer.status.as_u16()
                ),
            ));
        }
        match answer.status.as_u16() {
            200 => Ok(Some(parse_json(&self.http, step, &answer.body)?)),
            404 => Ok(None),
            _ => Err(self.http.error(
                step,
                format!("answered {}", super::client::status_text(answer.status)),
            )),
        }
    }

    /// The whole metadata tree, fetched once however many callers ask at the same time.
    async fn document(&self) -> Result<&Value> {
        self.document
            .get_or_try_init(|| async {
                let step = "instance metadata";
                self.get_json(step, "/computeMetadata/v1/?recursive=true&alt=json")
                    .await?
                    .ok_or_else(|| self.http.error(step, "answered 404 Not Found"))
            })
            .await
    }

    /// The instance part of the document.
    async fn instance(&self) -> Result<&Value> {
        self.document()
            .await?
            .get("instance")
            .filter(|i| i.is_object())
            .ok_or_else(|| {
                self.http
                    .error("instance metadata", "the answer has no instance object")
            })
    }
}

#[async_trait::async_trait]
impl MetadataProvider for Gce {
    fn name(&self) -> &'static str {
        "gce"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        Ok(facts_from(self.instance().await?))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let doc = self.instance().await?;
        Ok(doc
            .pointer("/attributes/user-data")
            .and_then(Value::as_str)
            .map(|s| s.as_bytes().to_vec()))
    }

    async fn tags(&self, wanted: &TagNames<'_>) -> Result<BTreeMap<String, String>> {
        let instance = self.instance().await?;
        let project = self.document().await?.pointer("/project/attributes");
        let mut tags = BTreeMap::new();
        // Project first: the instance's own attributes override them.
        for attributes in [project, instance.get("attributes")].into_iter().flatten() {
            if let Some(map) = attributes.as_object() {
                for (key, value) in map {
                    if let (true, Some(value)) = (wanted.matches(key), value.as_str()) {
                        tags.insert(key.clone(), value.to_string());
                    }
                }
            }
        }
        Ok(tags)
    }
}

/// The facts in the instance part of the recursive document.
pub(super) fn facts_from(doc: &Value) -> InstanceFacts {
    // `projects/123456/zones/europe-west1-b`: the zone is the last part, its region the zone
    // without its last `-x`.
    let zone = json_string(doc, "/zone").and_then(|z| z.rsplit('/').next().map(str::to_string));
    let region = zone
        .as_deref()
        .and_then(|z| z.rsplit_once('-'))
        .map(|(region, _)| region.to_string());
    InstanceFacts {
        provider: "gce".into(),
        instance_id: json_string(doc, "/id"),
        region,
        zone,
        local_ipv4: json_string(doc, "/networkInterfaces/0/ip"),
        hostname: json_string(doc, "/hostname"),
    }
}
