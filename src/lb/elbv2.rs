//! AWS ELBv2 target groups through the Query API (`POST /`, `Version=2015-12-01`), signed with
//! SigV4 by the `aws-sigv4` crate.
//!
//! Joining is `RegisterTargets`; leaving is `DeregisterTargets`, then `DescribeTargetHealth` until
//! the target is `unused` (the target group's deregistration delay is the drain). Errors carry
//! AWS's own code and message, e.g. `SignatureDoesNotMatch: The request signature ...`.
//!
//! Credentials: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` from kiln's
//! environment, else the instance role through IMDSv2, fetched again before they expire.

use super::{LbError, Registrar, http_client, render, value_or};
use crate::config::LbConfig;
use crate::config::lb::{TargetType, arn_region};
use crate::http_client::root_cause;
use crate::metadata::InstanceFacts;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Mutex;

const API_VERSION: &str = "2015-12-01";
const SIGNING_NAME: &str = "elasticloadbalancing";
const DEFAULT_ENDPOINT: &str = "https://elasticloadbalancing.{region}.amazonaws.com";
const DEFAULT_IMDS: &str = "http://169.254.169.254";
/// Role credentials are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// DescribeTargetHealth pace while draining (the API is rate limited per account).
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Where the signing credentials come from.
pub enum CredentialSource {
    /// Fixed keys (from the environment).
    Static(Credentials),
    /// The instance role, through IMDSv2 at this address; cached until shortly before expiry.
    InstanceRole {
        imds: String,
        cached: Mutex<Option<Credentials>>,
    },
}

impl CredentialSource {
    /// The environment's keys when `AWS_ACCESS_KEY_ID` is set, else the instance role at `imds`.
    pub fn from_env(imds: &str) -> Result<CredentialSource, LbError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Ok(CredentialSource::Static(Credentials::new(
                id,
                secret,
                var("AWS_SESSION_TOKEN"),
                None,
                "environment",
            ))),
            (Some(_), None) => Err(LbError(
                "elbv2: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
            )),
            _ => Ok(CredentialSource::instance_role(imds)),
        }
    }

    pub fn instance_role(imds: &str) -> CredentialSource {
        CredentialSource::InstanceRole {
            imds: imds.trim_end_matches('/').to_string(),
            cached: Mutex::new(None),
        }
    }

    fn describe(&self) -> String {
        match self {
            CredentialSource::Static(_) => "keys from the environment".into(),
            CredentialSource::InstanceRole { imds, .. } => format!("instance role via {imds}"),
        }
    }

    async fn get(&self, http: &reqwest::Client) -> Result<Credentials, LbError> {
        match self {
            CredentialSource::Static(c) => Ok(c.clone()),
            CredentialSource::InstanceRole { imds, cached } => {
                let mut cached = cached.lock().await;
                if let Some(c) = cached.as_ref() {
                    let fresh = c
                        .expiry()
                        .is_none_or(|e| SystemTime::now() + REFRESH_BEFORE_EXPIRY < e);
                    if fresh {
                        return Ok(c.clone());
                    }
                }
                let c = fetch_role_credentials(http, imds).await?;
                *cached = Some(c.clone());
                Ok(c)
            }
        }
    }
}

/// IMDSv2: a session token, the role's name, then the role's keys.
async fn fetch_role_credentials(http: &reqwest::Client, imds: &str) -> Result<Credentials, LbError> {
    let fail = |step: &str, why: String| {
        LbError(format!(
            "elbv2: instance role credentials from {imds}, {step}: {why}"
        ))
    };
    let token = http
        .put(format!("{imds}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
        .send()
        .await
        .map_err(|e| fail("token", root_cause(&e)))?;
    let token = ok_text(token).await.map_err(|e| fail("token", e))?;
    let get = |path: String| {
        http.get(format!("{imds}/latest/meta-data/iam/security-credentials/{path}"))
            .header("X-aws-ec2-metadata-token", token.trim())
            .send()
    };
    let role = get(String::new())
        .await
        .map_err(|e| fail("role name", root_cause(&e)))?;
    if role.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(fail(
            "role name",
            "no instance role attached (404); attach one or set AWS_ACCESS_KEY_ID".into(),
        ));
    }
    let role = ok_text(role).await.map_err(|e| fail("role name", e))?;
    let role = role.lines().next().unwrap_or("").trim().to_string();
    if role.is_empty() {
        return Err(fail("role name", "no instance role attached (empty list)".into()));
    }
    let keys = get(role.clone())
        .await
        .map_err(|e| fail("keys", root_cause(&e)))?;
    let keys = ok_text(keys).await.map_err(|e| fail("keys", e))?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RoleKeys {
        code: Option<String>,
        access_key_id: String,
        secret_access_key: String,
        token: Option<String>,
        expiration: Option<String>,
    }
    let keys: RoleKeys = serde_json::from_str(&keys).map_err(|e| {
        fail(
            &format!("keys of role {role:?}"),
            format!("unexpected answer ({e})"),
        )
    })?;
    if let Some(code) = keys.code.as_deref().filter(|c| *c != "Success") {
        return Err(fail(&format!("keys of role {role:?}"), format!("Code {code}")));
    }
    let expiry = match keys.expiration.as_deref() {
        Some(e) => Some(
            humantime::parse_rfc3339_weak(e.trim_end_matches('Z')).map_err(|err| {
                fail(
                    &format!("keys of role {role:?}"),
                    format!("Expiration {e:?}: {err}"),
                )
            })?,
        ),
        None => None,
    };
    tracing::info!("elbv2: using the credentials of instance role {role:?}");
    Ok(Credentials::new(
        keys.access_key_id,
        keys.secret_access_key,
        keys.token,
        expiry,
        "instance-role",
    ))
}

async fn ok_text(response: reqwest::Response) -> Result<String, String> {
    let status = response.status();
    let text = response.text().await.map_err(|e| root_cause(&e))?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// A client of the ELBv2 Query API.
pub struct QueryApi {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: CredentialSource,
}

/// An error answer of an AWS Query API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl QueryApi {
    pub fn new(endpoint: String, region: String, credentials: CredentialSource) -> Result<QueryApi, LbError> {
        Ok(QueryApi {
            http: http_client()?,
            endpoint,
            region,
            credentials,
        })
    }

    /// Calls `action` with `params`; Ok is the response body, Err(Ok) an AWS error answer,
    /// Err(Err) a failure to get an answer at all.
    async fn call(
        &self,
        action: &str,
        params: &[(String, String)],
    ) -> Result<String, Result<AwsError, LbError>> {
        // Err(Err(..)): no AWS answer to show.
        let fail = |why: String| Err(LbError(format!("elbv2 {action} at {}: {why}", self.endpoint)));
        let cannot_sign = |e: &dyn std::fmt::Display| fail(format!("cannot sign: {e}"));
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action)
                .append_pair("Version", API_VERSION);
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let credentials = self.credentials.get(&self.http).await.map_err(Err)?;
        let identity = credentials.into();
        let url = format!("{}/", self.endpoint.trim_end_matches('/'));
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| cannot_sign(&e))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            [("content-type", content_type)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| cannot_sign(&e))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| cannot_sign(&e))?.into_parts();
        let mut request = self
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(body.clone());
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| fail(root_cause(&e)))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| fail(root_cause(&e)))?;
        if status.is_success() {
            return Ok(text);
        }
        match (xml_text(&text, "Code"), xml_text(&text, "Message")) {
            (Some(code), message) => Err(Ok(AwsError {
                status: status.as_u16(),
                code,
                message: message.unwrap_or_default(),
            })),
            (None, _) => Err(fail(format!("HTTP {status} without an AWS error code"))),
        }
    }

    /// [`QueryApi::call`] with AWS errors made into an [`LbError`] naming code and message.
    async fn call_ok(&self, action: &str, params: &[(String, String)]) -> Result<String, LbError> {
        self.call(action, params).await.map_err(|e| match e {
            Ok(aws) => LbError(format!(
                "elbv2 {action}: {} (HTTP {}): {}",
                aws.code, aws.status, aws.message
            )),
            Err(e) => e,
        })
    }
}

/// The text of the first `<tag>` in an XML answer, unescaped. AWS answers are small and flat
/// enough that this is the whole parser kiln needs.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
            .trim()
            .to_string(),
    )
}

/// One `TargetHealthDescriptions` member: id, port, state, reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    pub id: String,
    pub port: Option<u16>,
    pub state: String,
    pub reason: Option<String>,
}

fn parse_target_health(xml: &str) -> Vec<TargetHealth> {
    let Some(list) = xml.split("<TargetHealthDescriptions>").nth(1) else {
        return Vec::new();
    };
    let list = list.split("</TargetHealthDescriptions>").next().unwrap_or("");
    list.split("<member>")
        .skip(1)
        .filter_map(|m| {
            Some(TargetHealth {
                id: xml_text(m, "Id")?,
                port: xml_text(m, "Port").and_then(|p| p.parse().ok()),
                state: xml_text(m, "State").unwrap_or_default(),
                reason: xml_text(m, "Reason"),
            })
        })
        .collect()
}

/// Joins one target group as one target.
pub struct Elbv2Registrar {
    api: QueryApi,
    target_group_arn: String,
    target_id: String,
    port: Option<u16>,
}

impl Elbv2Registrar {
    /// Credentials as [`CredentialSource::from_env`].
    pub fn new(lb: &LbConfig, facts: &InstanceFacts) -> Result<Elbv2Registrar, LbError> {
        let source = CredentialSource::from_env(value_or(&lb.imds_endpoint, DEFAULT_IMDS))?;
        Self::with_credentials(lb, facts, source)
    }

    pub fn with_credentials(
        lb: &LbConfig,
        facts: &InstanceFacts,
        credentials: CredentialSource,
    ) -> Result<Elbv2Registrar, LbError> {
        let arn = lb
            .target_group_arn
            .clone()
            .ok_or_else(|| LbError("[lb] target_group_arn is required".into()))?;
        let region = arn_region(&arn)
            .map_err(|e| LbError(format!("[lb] target_group_arn = {arn:?}: {e}")))?
            .to_string();
        // The ARN's region is where the target group lives, whatever the instance's is.
        let arn_facts = InstanceFacts {
            region: Some(region.clone()),
            ..facts.clone()
        };
        let endpoint = render("endpoint", value_or(&lb.endpoint, DEFAULT_ENDPOINT), &arn_facts)?;
        let target_id = match lb.target_type.unwrap_or_default() {
            TargetType::Instance => render("target_type", "{instance_id}", facts)?,
            TargetType::Ip => render("target_type", "{local_ipv4}", facts)?,
        };
        Ok(Elbv2Registrar {
            api: QueryApi::new(endpoint, region, credentials)?,
            target_group_arn: arn,
            target_id,
            port: lb.port,
        })
    }

    fn target_params(&self) -> Vec<(String, String)> {
        let mut p = vec![
            ("TargetGroupArn".to_string(), self.target_group_arn.clone()),
            ("Targets.member.1.Id".to_string(), self.target_id.clone()),
        ];
        if let Some(port) = self.port {
            p.push(("Targets.member.1.Port".to_string(), port.to_string()));
        }
        p
    }

    /// This target's health as the target group sees it; None when it is not listed.
    pub async fn target_health(&self) -> Result<Option<TargetHealth>, LbError> {
        let xml = self
            .api
            .call_ok("DescribeTargetHealth", &self.target_params())
            .await?;
        Ok(parse_target_health(&xml)
            .into_iter()
            .find(|t| t.id == self.target_id && (self.port.is_none() || t.port == self.port)))
    }
}

#[async_trait::async_trait]
impl Registrar for Elbv2Registrar {
    fn kind(&self) -> &'static str {
        "elbv2"
    }

    fn describe(&self) -> String {
        let name = self
            .target_group_arn
            .split(':')
            .next_back()
            .unwrap_or(&self.target_group_arn);
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{name} {}{port} ({}, {})",
            self.target_id,
            self.api.region,
            self.api.credentials.describe()
        )
    }

    async fn register(&self) -> Result<(), LbError> {
        self.api.call_ok("RegisterTargets", &self.target_params()).await?;
        Ok(())
    }

    async fn deregister(&self) -> Result<(), LbError> {
        match self.api.call("DeregisterTargets", &self.target_params()).await {
            Ok(_) => Ok(()),
            // Not registered (any more): nothing to take out.
            Err(Ok(aws)) if aws.code == "InvalidTarget" => Ok(()),
            Err(Ok(aws)) => Err(LbError(format!(
                "elbv2 DeregisterTargets: {} (HTTP {}): {}",
                aws.code, aws.status, aws.message
            ))),
            Err(Err(e)) => Err(e),
        }
    }

    async fn wait_drained(
        &self,
        deadline: Instant,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), LbError> {
        let in_flight = || async {
            Ok(match self.target_health().await? {
                None => None,
                Some(t) if t.state == "unused" => None,
                Some(t) => Some(match t.reason {
                    Some(r) => format!("target {} ({r})", t.state),
                    None => format!("target {}", t.state),
                }),
            })
        };
        match super::poll_until_drained(deadline, DRAIN_POLL, progress, in_flight).await? {
            None => Ok(()),
            Some(line) => Err(LbError(format!(
                "elbv2 {}: drain timed out, {line}",
                self.target_id
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aws_error_gives_code_and_message() {
        let xml = r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
          <Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>
          <Message>The request signature we calculated does not match &amp; so on</Message></Error>
          <RequestId>x</RequestId></ErrorResponse>"#;
        assert_eq!(xml_text(xml, "Code").unwrap(), "SignatureDoesNotMatch");
        assert_eq!(
            xml_text(xml, "Message").unwrap(),
            "The request signature we calculated does not match & so on"
        );
    }

    #[test]
    fn target_health_members_are_read() {
        let xml = r#"<DescribeTargetHealthResponse><DescribeTargetHealthResult><TargetHealthDescriptions>
          <member><HealthCheckPort>80</HealthCheckPort><Target><Id>i-0abc</Id><Port>8080</Port></Target>
          <TargetHealth><State>healthy</State></TargetHealth></member>
          <member><Target><Id>i-0def</Id><Port>8080</Port></Target>
          <TargetHealth><State>draining</State><Reason>Target.DeregistrationInProgress</Reason></TargetHealth></member>
          </TargetHealthDescriptions></DescribeTargetHealthResult></DescribeTargetHealthResponse>"#;
        let t = parse_target_health(xml);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].id, "i-0abc");
        assert_eq!(t[0].port, Some(8080));
        assert_eq!(t[0].state, "healthy");
        assert_eq!(t[1].reason.as_deref(), Some("Target.DeregistrationInProgress"));
    }
}
