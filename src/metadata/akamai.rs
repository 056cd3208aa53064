//! Akamai (Linode) metadata service: a token from `PUT /v1/token`
//! (`Metadata-Token-Expiry-Seconds`), then `/v1/instance` and `/v1/network` (JSON, asked with
//! `Accept: application/json`) and `/v1/user-data` (base64), each with `Metadata-Token`. The
//! service refuses a request without the token (401).
//!
//! Linode tags are plain labels, not key/value pairs: no tags for the environment. Linode has no
//! zones and no host name in its metadata; the label is the instance's name.

use super::client::{Http, Request, json_string, parse_json, session_token, text};
use super::{InstanceFacts, MetadataProvider, Result};
use base64::Engine;
use reqwest::header::HeaderValue;
use serde_json::Value;
use tokio::sync::OnceCell;

/// How long the token lives: one fetch needs seconds.
const TOKEN_EXPIRY_SECONDS: &str = "300";

pub(super) struct Akamai {
    http: Http,
    token: OnceCell<HeaderValue>,
}

impl Akamai {
    pub fn new(http: Http) -> Akamai {
        Akamai {
            http,
            token: OnceCell::new(),
        }
    }

    async fn token(&self) -> Result<&HeaderValue> {
        self.token
            .get_or_try_init(|| {
                session_token(
                    &self.http,
                    "token",
                    "/v1/token",
                    "metadata-token-expiry-seconds",
                    TOKEN_EXPIRY_SECONDS,
                )
            })
            .await
    }

    async fn get(&self, step: &str, path: &str) -> Result<Option<bytes::Bytes>> {
        let request = Request::get(path)
            .header("metadata-token", self.token().await?.clone())
            .header("accept", HeaderValue::from_static("application/json"));
        self.http.get_optional(step, &request).await
    }

    async fn json(&self, step: &str, path: &str) -> Result<Value> {
        let body = self
            .get(step, path)
            .await?
            .ok_or_else(|| self.http.error(step, "answered 404 Not Found"))?;
        parse_json(&self.http, step, &body)
    }
}

#[async_trait::async_trait]
impl MetadataProvider for Akamai {
    fn name(&self) -> &'static str {
        "akamai"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let (instance, network) = tokio::try_join!(
            self.json("v1/instance", "/v1/instance"),
            self.json("v1/network", "/v1/network"),
        )?;
        Ok(facts_from(&instance, &network))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let step = "v1/user-data";
        let Some(body) = self.get(step, "/v1/user-data").await? else {
            return Ok(None);
        };
        let encoded = text(&self.http, step, &body)?;
        if encoded.is_empty() {
            return Ok(None);
        }
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(Some)
            .map_err(|e| self.http.error(step, format!("not base64: {e}")))
    }
}

/// The facts in `/v1/instance` and `/v1/network`: the local address is the first private IPv4
/// (given with its prefix length, `192.168.1.5/17`).
pub(super) fn facts_from(instance: &Value, network: &Value) -> InstanceFacts {
    let private = json_string(network, "/ipv4/private/0")
        .map(|cidr| cidr.split('/').next().unwrap_or_default().to_string());
    InstanceFacts {
        provider: "akamai".into(),
        instance_id: json_string(instance, "/id"),
        region: json_string(instance, "/region"),
        zone: None,
        local_ipv4: private.filter(|ip| !ip.is_empty()),
        hostname: json_string(instance, "/label"),
    }
}
