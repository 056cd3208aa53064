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
pub mod warnings;

pub use membership::Membership;

use crate::config::lb::{Elbv2Plan, LbPlan};
use crate::config::{Config, Fact, Template};
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

/// The registrar the config's plan asks for; None for `kind = "none"`. Fills the templates from
/// the instance's facts: a template naming a fact the instance does not have is an error.
pub fn registrar(config: &Config, facts: &InstanceFacts) -> Result<Option<Box<dyn Registrar>>, LbError> {
    let Some(plan) = &config.lb.plan else {
        return Ok(None);
    };
    Ok(Some(match plan {
        LbPlan::Haproxy(plan) => Box::new(haproxy::HaproxyRegistrar::new(plan, facts)?),
        LbPlan::Elbv2(plan) => Box::new(elbv2::Elbv2Registrar::with_credentials(
            plan,
            facts,
            aws_credentials(config, plan)?,
        )?),
        LbPlan::Consul(plan) => Box::new(consul::ConsulRegistrar::new(plan, &config.health, facts)?),
    }))
}

/// kiln's `AWS_*` keys, else the instance role through the metadata service `[metadata]` names
/// (or `[lb] imds_endpoint`), with its request timeout and `imdsv1` setting.
fn aws_credentials(config: &Config, plan: &Elbv2Plan) -> Result<crate::aws::CredentialSource, LbError> {
    let meta = &config.metadata;
    let identity = match &plan.imds_endpoint {
        Some(imds) => crate::metadata::Identity::at(imds, meta.request_timeout.get(), meta.imdsv1),
        None => crate::metadata::Identity::from_config(meta),
    }
    .map_err(|e| LbError(e.to_string()))?;
    crate::aws::CredentialSource::from_env_or(identity).map_err(|e| LbError(format!("elbv2: {e}")))
}

/// The template of `[lb] key` with the instance's facts filled in; a fact the instance does not
/// have (or has empty) is an error naming the key and the fact.
pub(crate) fn fill(key: &str, template: &Template, facts: &InstanceFacts) -> Result<String, LbError> {
    template.render(|fact| fact_of(facts, fact)).map_err(|missing| {
        LbError(format!(
            "[lb] {key} = {:?}: the instance has no {} (metadata provider {:?})",
            template.as_str(),
            missing.name(),
            facts.provider
        ))
    })
}

fn fact_of(facts: &InstanceFacts, fact: Fact) -> Option<&str> {
    let value = match fact {
        Fact::InstanceId => &facts.instance_id,
        Fact::LocalIpv4 => &facts.local_ipv4,
        Fact::Region => &facts.region,
        Fact::Hostname => &facts.hostname,
    };
    value.as_deref().filter(|v| !v.is_empty())
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

    fn render(key: &str, template: &str, facts: &InstanceFacts) -> Result<String, LbError> {
        fill(key, &Template::parse(template).unwrap(), facts)
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
