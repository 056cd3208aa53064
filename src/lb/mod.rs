//! Load balancer registration: one file per registrar behind one trait, and the membership
//! lifecycle that decides *when* to join and leave (`membership.rs`).
//!
//! A registrar only knows how to talk to its load balancer; it never looks at kiln's state.
//! [`Membership`] watches the state and calls it: join once every service is ready, leave on
//! stop (deregister → wait drained → remove), and report each step in `kiln status`.

pub mod consul;
pub mod elbv2;
pub mod haproxy;
mod membership;

pub use membership::Membership;

use crate::config::Config;
use crate::config::lb::LbKind;
use crate::metadata::InstanceFacts;
use std::time::Instant;

/// Why a load balancer call failed, naming the load balancer, the step and its answer.
/// Never holds a credential.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LbError(pub String);

/// One load balancer kiln joins when ready and leaves on stop.
#[async_trait::async_trait]
pub trait Registrar: Send + Sync {
    /// `haproxy`, `elbv2` or `consul`.
    fn kind(&self) -> &'static str;
    /// What kiln registers where, e.g. `app/i-0abc (10.0.0.5:8080)`.
    fn describe(&self) -> String;
    /// Joins, taking over what a previous run of kiln on this instance left registered.
    async fn register(&self) -> Result<(), LbError>;
    /// Stops new requests from coming (the start of the drain). Done already is not an error.
    async fn deregister(&self) -> Result<(), LbError>;
    /// Waits until no request is in flight to this instance, or `deadline` (then an error saying
    /// what is left). Reports what is left (e.g. "3 sessions") through `progress`.
    async fn wait_drained(
        &self,
        deadline: Instant,
        progress: &(dyn Fn(DrainProgress) + Send + Sync),
    ) -> Result<(), LbError>;
    /// Whether [`Registrar::wait_drained`] counts the sessions in flight (so a drain that ended
    /// well left 0), rather than waiting for a state or a time.
    fn counts_sessions(&self) -> bool {
        false
    }
    /// After the drain: removes what is left of the registration (HAProxy's server entry).
    async fn remove(&self) -> Result<(), LbError> {
        Ok(())
    }
}

/// What is still in flight while a drain runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainProgress {
    /// For people: `3 sessions, 1 queued`, `target draining`.
    pub line: String,
    /// Sessions in flight, where the load balancer counts them.
    pub sessions: Option<u64>,
}

impl From<String> for DrainProgress {
    fn from(line: String) -> DrainProgress {
        DrainProgress { line, sessions: None }
    }
}

impl std::fmt::Display for DrainProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

/// The drain loop of registrars that can see what is in flight: asks `in_flight` every `poll`
/// (None: nothing left) and reports each answer through `progress`. Returns None once drained,
/// or what was still in flight when `deadline` passed.
pub(crate) async fn poll_until_drained<F, Fut>(
    deadline: Instant,
    poll: std::time::Duration,
    progress: &(dyn Fn(DrainProgress) + Send + Sync),
    mut in_flight: F,
) -> Result<Option<DrainProgress>, LbError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<DrainProgress>, LbError>>,
{
    loop {
        let Some(left) = in_flight().await? else {
            return Ok(None);
        };
        progress(left.clone());
        if Instant::now() >= deadline {
            return Ok(Some(left));
        }
        tokio::time::sleep(poll.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// The registrar the config asks for; None for `kind = "none"`. Fills the templates from the
/// instance's facts: a template naming a fact the instance does not have is an error.
pub fn registrar(config: &Config, facts: &InstanceFacts) -> Result<Option<Box<dyn Registrar>>, LbError> {
    let lb = &config.lb;
    Ok(match lb.kind {
        LbKind::None => None,
        LbKind::Haproxy => Some(Box::new(haproxy::HaproxyRegistrar::new(lb, facts)?)),
        LbKind::Elbv2 => Some(Box::new(elbv2::Elbv2Registrar::with_credentials(
            lb,
            facts,
            aws_credentials(config)?,
        )?)),
        LbKind::Consul => Some(Box::new(consul::ConsulRegistrar::new(lb, &config.health, facts)?)),
    })
}

/// kiln's `AWS_*` keys, else the instance role through the metadata service `[metadata]` names
/// (or `[lb] imds_endpoint`), with its request timeout and `imdsv1` setting.
fn aws_credentials(config: &Config) -> Result<crate::aws::CredentialSource, LbError> {
    let meta = &config.metadata;
    let identity = match &config.lb.imds_endpoint {
        Some(imds) => crate::metadata::Identity::at(imds, meta.request_timeout.get(), meta.imdsv1),
        None => crate::metadata::Identity::from_config(meta),
    }
    .map_err(|e| LbError(e.to_string()))?;
    crate::aws::CredentialSource::from_env_or(identity).map_err(|e| LbError(format!("elbv2: {e}")))
}

/// Fills `{instance_id}`, `{local_ipv4}`, `{region}`, `{hostname}` in the value of `[lb] key`.
pub(crate) fn render(key: &str, template: &str, facts: &InstanceFacts) -> Result<String, LbError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| LbError(format!("[lb] {key} = {template:?}: a '{{' is not closed")))?;
        let name = &after[..close];
        let value = match name {
            "instance_id" => &facts.instance_id,
            "local_ipv4" => &facts.local_ipv4,
            "region" => &facts.region,
            "hostname" => &facts.hostname,
            _ => {
                return Err(LbError(format!(
                    "[lb] {key} = {template:?}: unknown placeholder {{{name}}}"
                )));
            }
        };
        let value = value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| {
            LbError(format!(
                "[lb] {key} = {template:?}: the instance has no {name} (metadata provider {:?})",
                facts.provider
            ))
        })?;
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `[lb]` value or its default.
fn value_or<'a>(value: &'a Option<String>, default: &'a str) -> &'a str {
    value.as_deref().unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> InstanceFacts {
        InstanceFacts {
            provider: "ec2".into(),
            instance_id: Some("i-0abc".into()),
            local_ipv4: Some("10.0.0.5".into()),
            region: Some("eu-west-1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn templates_take_the_instance_facts() {
        assert_eq!(
            render("address", "{local_ipv4}:8080", &facts()).unwrap(),
            "10.0.0.5:8080"
        );
        assert_eq!(
            render("server", "web-{instance_id}", &facts()).unwrap(),
            "web-i-0abc"
        );
    }

    #[test]
    fn a_missing_fact_is_named_with_the_key() {
        let err = render("server", "{hostname}", &facts()).unwrap_err().0;
        assert!(err.contains("[lb] server"), "{err}");
        assert!(err.contains("no hostname"), "{err}");
    }
}
