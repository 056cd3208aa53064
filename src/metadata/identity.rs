//! Credentials of the instance's own identity, as its cloud's metadata service hands them out:
//! the EC2 instance role's keys, the GCE default service account's access token, the Azure
//! managed identity's token. They go through the same retrying client, tokens and headers as the
//! rest of this room, so there is one IMDS client in kiln, whoever needs credentials (the AWS
//! client, the secret stores).
//!
//! Everything here is a credential: `Debug` redacts it, and errors never hold it.

use super::client::{Http, Request, parse_json, status_text};
use super::{MetadataConfig, MetadataError, Result};
use std::fmt;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Credential answers are small; anything bigger is not one.
const BODY_LIMIT: usize = 64 * 1024;

/// Azure IMDS identity endpoint's api-version (the one Azure's own SDKs use).
const AZURE_IDENTITY_API: &str = "2018-02-01";

/// Where and how to ask the metadata service for the instance's credentials.
#[derive(Clone)]
pub struct Identity {
    client: reqwest::Client,
    endpoint: String,
    request_timeout: Duration,
    imdsv1: bool,
}

/// An instance role's temporary AWS keys.
#[derive(Clone)]
pub struct AwsRoleKeys {
    pub role: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: Option<String>,
    pub expiry: Option<SystemTime>,
}

impl fmt::Debug for AwsRoleKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AwsRoleKeys {{ role: {:?}, .. }}", self.role)
    }
}

/// An OAuth2 bearer token (GCE service account, Azure managed identity).
#[derive(Clone)]
pub struct AccessToken {
    pub token: String,
    pub expiry: Option<SystemTime>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

impl Identity {
    /// The metadata service `[metadata]` points at (its endpoint, request timeout, `imdsv1`).
    pub fn from_config(config: &MetadataConfig) -> Result<Identity> {
        Identity::at(
            &config.endpoint_or(crate::net::METADATA),
            config.request_timeout.get(),
            config.imdsv1,
        )
    }

    /// The metadata service at `endpoint` (`http://HOST[:PORT]`).
    pub fn at(endpoint: &str, request_timeout: Duration, imdsv1: bool) -> Result<Identity> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let client = crate::net::client::link_local().map_err(|reason| MetadataError {
            provider: "identity".into(),
            endpoint: endpoint.clone(),
            step: "start".into(),
            reason,
        })?;
        Ok(Identity {
            client,
            endpoint,
            request_timeout,
            imdsv1,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn http(
        &self,
        provider: &'static str,
        deadline: Instant,
        transient: fn(reqwest::StatusCode) -> bool,
    ) -> Http {
        Http::new(
            self.client.clone(),
            provider,
            self.endpoint.clone(),
            deadline,
            self.request_timeout,
            BODY_LIMIT,
            transient,
        )
    }

    /// The EC2 instance role's keys through IMDSv2: a token, the role's name, its keys.
    pub async fn aws_role_keys(&self, deadline: Instant) -> Result<AwsRoleKeys> {
        super::ec2::Ec2::new(
            self.http("ec2", deadline, crate::net::transient_status),
            self.imdsv1,
        )
        .role_keys()
        .await
    }

    /// The GCE default service account's access token (`Metadata-Flavor: Google`).
    pub async fn gce_token(&self, deadline: Instant) -> Result<AccessToken> {
        let http = self.http("gce", deadline, crate::net::transient_status);
        let step = "service account token";
        let request = Request::get("/computeMetadata/v1/instance/service-accounts/default/token").header(
            "metadata-flavor",
            reqwest::header::HeaderValue::from_static("Google"),
        );
        let answer = http.send(step, &request).await?;
        match answer.status.as_u16() {
            200 => token_answer(&http, step, &answer.body),
            404 => Err(http.error(
                step,
                "no service account on this instance (404); attach one with access to the secrets",
            )),
            _ => Err(http.error(step, format!("answered {}", status_text(answer.status)))),
        }
    }

    /// An Azure managed identity token for `resource` (e.g. `https://vault.azure.net`).
    pub async fn azure_token(&self, resource: &str, deadline: Instant) -> Result<AccessToken> {
        let http = self.http("azure", deadline, super::azure::transient);
        let step = "managed identity token";
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("api-version", AZURE_IDENTITY_API)
            .append_pair("resource", resource)
            .finish();
        let request = Request::get(format!("/metadata/identity/oauth2/token?{query}"))
            .header("metadata", reqwest::header::HeaderValue::from_static("true"));
        let answer = http.send(step, &request).await?;
        match answer.status.as_u16() {
            200 => token_answer(&http, step, &answer.body),
            status => {
                // Azure's identity errors are OAuth2's: {"error", "error_description"}; no secret.
                let doc: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
                let code = doc
                    .as_ref()
                    .and_then(|d| d.get("error"))
                    .and_then(|e| e.as_str())
                    .unwrap_or("");
                let description = doc
                    .as_ref()
                    .and_then(|d| d.get("error_description"))
                    .and_then(|e| e.as_str())
                    .unwrap_or("");
                Err(http.error(
                    step,
                    format!("answered {status}: {code}: {description}")
                        .trim_end_matches(": ")
                        .to_string(),
                ))
            }
        }
    }
}

/// `{"access_token", "expires_in"}` (GCE gives a number, Azure a string of digits).
fn token_answer(http: &Http, step: &str, body: &[u8]) -> Result<AccessToken> {
    let doc = parse_json(http, step, body)?;
    let token = doc
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| http.error(step, "the answer has no access_token"))?;
    let expires_in = match doc.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Ok(AccessToken {
        token: token.to_string(),
        expiry: expires_in.map(|s| SystemTime::now() + Duration::from_secs(s)),
    })
}
