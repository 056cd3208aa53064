//! What `kiln check` (and the boot's log) warns about the drain, `[lb] drain_timeout`: against
//! what this machine's systemd gives kiln to stop (the installed `kiln.service`,
//! `crate::systemd::unit`), and, only when asked (`kiln check --online`), against the ELBv2
//! target group's deregistration delay. It depends on the machine and the cloud, so it lives
//! here, with the drain, rather than with the config's own warnings.

use super::LbError;
use super::elbv2::{CredentialSource, TargetGroup};
use crate::config::Config;
use crate::config::lb::LbPlan;
use crate::systemd::unit::Unit;
use std::time::Duration;

/// How long `kiln check --online` waits for the target group's attributes (credentials
/// included): a check is a quick look, and AWS out of reach is only a note.
pub const ONLINE_BUDGET: Duration = Duration::from_secs(5);

/// The drain against the unit kiln is installed as; nothing without `[lb]` or without a unit.
pub fn warnings(config: &Config) -> Vec<String> {
    if config.lb.plan.is_none() {
        return Vec::new();
    }
    let Some(unit) = crate::systemd::unit::installed() else {
        return Vec::new();
    };
    stop_warning(config.lb.drain_timeout(), &unit)
        .into_iter()
        .collect()
}

/// A drain that systemd would cut: as long as the stop timeout, in a unit that does not take
/// kiln's `EXTEND_TIMEOUT_USEC` (kiln's own unit does: it is `Type=notify`, and kiln extends the
/// timeout while it drains, so there a long drain is never cut).
fn stop_warning(drain: Duration, unit: &Unit) -> Option<String> {
    let stop = unit.stop_timeout?;
    if unit.extends || drain < stop {
        return None;
    }
    Some(format!(
        "[lb] drain_timeout ({}) is not shorter than the time systemd gives kiln to stop ({}), and \
         Type={} does not let kiln extend it while it drains: systemd would kill kiln and its \
         services in the middle of the drain; raise TimeoutStopSec above drain_timeout plus the \
         services' stop (systemctl edit kiln), or use Type=notify as kiln's own unit does",
        humantime::format_duration(drain),
        unit.stop_timeout_from,
        unit.service_type
    ))
}

/// The drain against the ELBv2 target group's deregistration delay, asked of AWS with kiln's
/// credentials (the environment's keys, else the instance role) within [`ONLINE_BUDGET`].
/// Err: why AWS could not say (`kiln check` prints it as a note, never as a warning).
pub async fn online_warnings(config: &Config) -> Result<Vec<String>, LbError> {
    let Some(LbPlan::Elbv2(plan)) = &config.lb.plan else {
        return Ok(Vec::new());
    };
    let imds = plan.imds_endpoint.as_deref().unwrap_or(crate::net::METADATA);
    let credentials = CredentialSource::from_env(imds).map_err(|e| LbError(format!("elbv2: {e}")))?;
    let group = TargetGroup::new(&plan.target_group_arn, plan.endpoint.as_ref(), credentials)?;
    let deadline = tokio::time::Instant::now() + ONLINE_BUDGET;
    let delay = group.deregistration_delay(deadline).await?;
    let drain = config.lb.drain_timeout();
    if drain >= delay {
        return Ok(Vec::new());
    }
    Ok(vec![format!(
        "[lb] drain_timeout ({}) is shorter than the deregistration delay of targetgroup/{} \
         (deregistration_delay.timeout_seconds = {}): kiln would stop the services while the \
         target group still lets requests in flight finish; set drain_timeout = \"{}s\", or lower \
         the target group's delay",
        humantime::format_duration(drain),
        plan.target_group_arn.name(),
        delay.as_secs(),
        delay.as_secs()
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn unit(stop: u64, service_type: &str, extends: bool) -> Unit {
        Unit {
            files: vec![PathBuf::from("/etc/systemd/system/kiln.service")],
            stop_timeout: Some(Duration::from_secs(stop)),
            stop_timeout_from: format!("TimeoutStopSec={stop}s of /etc/systemd/system/kiln.service"),
            service_type: service_type.into(),
            extends,
        }
    }

    #[test]
    fn a_drain_systemd_would_cut_is_a_warning_unless_kiln_extends_the_stop() {
        let drain = Duration::from_secs(120);
        assert_eq!(stop_warning(drain, &unit(90, "notify", true)), None);
        assert_eq!(stop_warning(drain, &unit(300, "simple", false)), None);
        assert_eq!(
            stop_warning(drain, &unit(120, "simple", false)).unwrap(),
            "[lb] drain_timeout (2m) is not shorter than the time systemd gives kiln to stop \
             (TimeoutStopSec=120s of /etc/systemd/system/kiln.service), and Type=simple does not \
             let kiln extend it while it drains: systemd would kill kiln and its services in the \
             middle of the drain; raise TimeoutStopSec above drain_timeout plus the services' stop \
             (systemctl edit kiln), or use Type=notify as kiln's own unit does"
        );
        let endless = Unit {
            stop_timeout: None,
            ..unit(1, "simple", false)
        };
        assert_eq!(stop_warning(drain, &endless), None);
    }
}
