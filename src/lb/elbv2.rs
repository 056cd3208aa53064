//! AWS ELBv2 target groups through the Query API (`Version=2015-12-01`), by the shared AWS
//! client (`crate::aws`: credentials, endpoint, SigV4, XML answers, AWS errors, retries).
//!
//! Joining is `RegisterTargets`; leaving is `DeregisterTargets`, then `DescribeTargetHealth` until
//! the target is `unused` (the target group's deregistration delay is the drain). Errors carry
//! AWS's own code and message, e.g. `SignatureDoesNotMatch: The request signature ...`.
//!
//! Credentials: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` from kiln's
//! environment, else the instance role through the metadata room's IMDS client.

use super::{DrainProgress, LbError, Registrar, fill};
use crate::aws::{Api, AwsClient, CallError, ELBV2, Members, TargetGroupArn};
use crate::config::Template;
use crate::config::lb::Elbv2Plan;
use crate::metadata::InstanceFacts;
use crate::terminal::peer_text;
use serde::Deserialize;
use std::time::{Duration, Instant};

pub use crate::aws::CredentialSource;

/// DescribeTargetHealth pace while draining (the API is rate limited per account).
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// One `TargetHealthDescriptions` member: id, port, state, reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    pub id: String,
    pub port: Option<u16>,
    pub state: String,
    pub reason: Option<String>,
}

/// `DescribeTargetHealthResponse`, as much of it as kiln reads.
#[derive(Deserialize)]
struct DescribeTargetHealthResponse {
    #[serde(rename = "DescribeTargetHealthResult")]
    result: DescribeTargetHealthResult,
}

#[derive(Deserialize)]
struct DescribeTargetHealthResult {
    #[serde(rename = "TargetHealthDescriptions")]
    descriptions: Option<Members<TargetHealthDescription>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetHealthDescription {
    target: Target,
    target_health: TargetHealthState,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Target {
    id: String,
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetHealthState {
    #[serde(default)]
    state: String,
    reason: Option<String>,
}

/// `DescribeTargetGroupAttributesResponse`, as much of it as kiln reads.
#[derive(Deserialize)]
struct DescribeTargetGroupAttributesResponse {
    #[serde(rename = "DescribeTargetGroupAttributesResult")]
    result: DescribeTargetGroupAttributesResult,
}

#[derive(Deserialize)]
struct DescribeTargetGroupAttributesResult {
    #[serde(rename = "Attributes")]
    attributes: Option<Members<TargetGroupAttribute>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetGroupAttribute {
    key: String,
    value: Option<String>,
}

fn lb_error(e: CallError) -> LbError {
    LbError(e.to_string())
}

/// One call, retries on throttling and 5xx included, gets [`crate::net::API_CALL_BUDGET`]; the
/// membership retries beyond it.
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + crate::net::API_CALL_BUDGET
}

/// Joins one target group as one target.
pub struct Elbv2Registrar {
    api: Api,
    target_group_arn: TargetGroupArn,
    target_id: String,
    port: Option<u16>,
}

impl Elbv2Registrar {
    /// Credentials as [`CredentialSource::from_env`], the instance role at `[lb] imds_endpoint`.
    pub fn new(plan: &Elbv2Plan, facts: &InstanceFacts) -> Result<Elbv2Registrar, LbError> {
        let imds = plan.imds_endpoint.as_deref().unwrap_or(crate::net::METADATA);
        let source = CredentialSource::from_env(imds).map_err(|e| LbError(format!("elbv2: {e}")))?;
        Self::with_credentials(plan, facts, source)
    }

    pub fn with_credentials(
        plan: &Elbv2Plan,
        facts: &InstanceFacts,
        credentials: CredentialSource,
    ) -> Result<Elbv2Registrar, LbError> {
        let arn = &plan.target_group_arn;
        let api = group_api(arn, plan.endpoint.as_ref(), facts, credentials)?;
        let target_id = fill("target_type", &Template::fact(plan.target_type.fact()), facts)?;
        Ok(Elbv2Registrar {
            api,
            target_group_arn: arn.clone(),
            target_id,
            port: plan.port.map(std::num::NonZeroU16::get),
        })
    }

    fn target_params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("TargetGroupArn", self.target_group_arn.as_str().to_string()),
            ("Targets.member.1.Id", self.target_id.clone()),
        ];
        if let Some(port) = self.port {
            p.push(("Targets.member.1.Port", port.to_string()));
        }
        p
    }

    /// A call whose answer kiln does not read.
    async fn call(&self, action: &str) -> Result<(), CallError> {
        self.api
            .query::<serde::de::IgnoredAny>(action, &self.target_params(), deadline())
            .await
            .map(|_| ())
    }

    /// This target's health as the target group sees it; None when it is not listed.
    pub async fn target_health(&self) -> Result<Option<TargetHealth>, LbError> {
        Ok(describe_target_health(&self.api, &self.target_params())
            .await?
            .into_iter()
            .find(|t| t.id == self.target_id && (self.port.is_none() || t.port == self.port)))
    }
}

/// The target group's API: in its region, at the `[lb] endpoint` template filled with that
/// region (the ARN is checked: its region picks the host kiln sends its credentials to).
fn group_api(
    arn: &TargetGroupArn,
    endpoint: Option<&Template>,
    facts: &InstanceFacts,
    credentials: CredentialSource,
) -> Result<Api, LbError> {
    // The ARN's region is where the target group lives, whatever the instance's is.
    let arn_facts = InstanceFacts {
        region: Some(arn.region().to_string()),
        ..facts.clone()
    };
    let endpoint = match endpoint {
        Some(template) => Some(fill("endpoint", template, &arn_facts)?),
        None => None,
    };
    let aws = AwsClient::new(credentials).map_err(LbError)?;
    aws.api(&ELBV2, arn.region(), endpoint.as_deref())
        .map_err(|e| LbError(format!("[lb] endpoint: {e}")))
}

/// `DescribeTargetHealth` with `params`: every target it lists, its texts kept as a peer's
/// ([`peer_text`]): they reach the drain's progress in status, the log and `kiln fleet`.
async fn describe_target_health(api: &Api, params: &[(&str, String)]) -> Result<Vec<TargetHealth>, LbError> {
    let answer: DescribeTargetHealthResponse = api
        .query("DescribeTargetHealth", params, deadline())
        .await
        .map_err(lb_error)?;
    Ok(answer
        .result
        .descriptions
        .map(|d| d.member)
        .unwrap_or_default()
        .into_iter()
        .map(|d| TargetHealth {
            id: peer_text(&d.target.id),
            port: d.target.port,
            state: peer_text(&d.target_health.state),
            reason: d.target_health.reason.as_deref().map(peer_text),
        })
        .collect())
}

/// A target group, read-only: who is in it and how healthy (`kiln fleet`).
pub struct TargetGroup {
    api: Api,
    arn: TargetGroupArn,
}

impl TargetGroup {
    /// The group `arn` names, at the `[lb] endpoint` template when there is one.
    pub fn new(
        arn: &TargetGroupArn,
        endpoint: Option<&Template>,
        credentials: CredentialSource,
    ) -> Result<TargetGroup, LbError> {
        let api = group_api(arn, endpoint, &InstanceFacts::default(), credentials)?;
        Ok(TargetGroup {
            api,
            arn: arn.clone(),
        })
    }

    /// `targetgroup/app/0123 (eu-west-1, keys from the environment)`.
    pub fn describe(&self) -> String {
        format!(
            "targetgroup/{} ({}, {})",
            self.arn.name(),
            self.api.endpoint().region,
            self.api.client().credentials().describe()
        )
    }

    /// The target group's API: its region, endpoint and client (credentials, connections),
    /// for the calls about its targets (`kiln fleet` asks EC2 where `instance` targets are).
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// `deregistration_delay.timeout_seconds`: how long the group keeps a deregistered target
    /// draining (`kiln check --online` compares `[lb] drain_timeout` with it).
    pub async fn deregistration_delay(&self, deadline: tokio::time::Instant) -> Result<Duration, LbError> {
        const KEY: &str = "deregistration_delay.timeout_seconds";
        let params = [("TargetGroupArn", self.arn.as_str().to_string())];
        let answer: DescribeTargetGroupAttributesResponse = self
            .api
            .query("DescribeTargetGroupAttributes", &params, deadline)
            .await
            .map_err(lb_error)?;
        let attributes = answer.result.attributes.map(|a| a.member).unwrap_or_default();
        let value = attributes
            .into_iter()
            .find(|a| a.key == KEY)
            .and_then(|a| a.value);
        value
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| {
                LbError(format!(
                    "elbv2 DescribeTargetGroupAttributes: no number for {KEY}"
                ))
            })
    }

    /// Every target registered, with its health.
    pub async fn members(&self) -> Result<Vec<TargetHealth>, LbError> {
        describe_target_health(&self.api, &[("TargetGroupArn", self.arn.as_str().to_string())]).await
    }
}

#[async_trait::async_trait]
impl Registrar for Elbv2Registrar {
    fn kind(&self) -> &'static str {
        "elbv2"
    }

    fn describe(&self) -> String {
        let name = format!("targetgroup/{}", self.target_group_arn.name());
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{name} {}{port} ({}, {})",
            self.target_id,
            self.api.endpoint().region,
            self.api.client().credentials().describe()
        )
    }

    async fn register(&self) -> Result<(), LbError> {
        self.call("RegisterTargets").await.map_err(lb_error)
    }

    async fn deregister(&self) -> Result<(), LbError> {
        match self.call("DeregisterTargets").await {
            Ok(()) => Ok(()),
            // Not registered (any more): nothing to take out.
            Err(e) if e.code() == Some("InvalidTarget") => Ok(()),
            Err(e) => Err(lb_error(e)),
        }
    }

    async fn wait_drained(
        &self,
        deadline: Instant,
        progress: &(dyn Fn(DrainProgress) + Send + Sync),
    ) -> Result<(), LbError> {
        let in_flight = || async {
            Ok(match self.target_health().await? {
                None => None,
                Some(t) if t.state == "unused" => None,
                Some(t) => Some(DrainProgress::from(match t.reason {
                    Some(r) => format!("target {} ({r})", t.state),
                    None => format!("target {}", t.state),
                })),
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
