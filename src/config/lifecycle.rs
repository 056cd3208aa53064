//! `[lifecycle]`: leave before the cloud takes the instance.
//!
//! Two parts, both off without the section:
//! - Auto Scaling lifecycle hooks (EC2): the launch hook is answered `CONTINUE` once kiln is ready
//!   (and registered) or `ABANDON` when the boot is refused; the terminate hook `CONTINUE` once
//!   kiln has drained and stopped everything.
//! - Interruption and maintenance notices of the instance's cloud (EC2 spot, rebalance and
//!   scheduled events, GCE preemption and maintenance, Azure Scheduled Events), each with what it
//!   does: `leave` (drain, stop, wait for the power-off; final), `report` (status and log), or
//!   `ignore` (not even asked for).

use super::{HumanDuration, MetadataConfig, ProviderKind};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// The Auto Scaling group; default: the instance's `aws:autoscaling:groupName` tag (instance
    /// tags in metadata must be on).
    pub group: Option<String>,
    /// Hook on `autoscaling:EC2_INSTANCE_LAUNCHING`: `CONTINUE` once ready, `ABANDON` on a refused
    /// boot or when not ready within `ready_timeout`.
    pub launch_hook: Option<String>,
    /// Hook on `autoscaling:EC2_INSTANCE_TERMINATING`: `CONTINUE` once drained and stopped.
    pub terminate_hook: Option<String>,
    /// The hooks' `HeartbeatTimeout` as set on the group (AWS's default, 1h): calls are retried
    /// within it, and heartbeats keep a slow start inside it.
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout: HumanDuration,
    /// How often `RecordLifecycleActionHeartbeat` is sent while a hook waits (default: half of
    /// `heartbeat_timeout`).
    pub heartbeat_interval: Option<HumanDuration>,
    /// Longest wait for READY (and registration) under the launch hook; then `ABANDON`.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: HumanDuration,
    /// Auto Scaling API override; else `AWS_ENDPOINT_URL_AUTO_SCALING`, `AWS_ENDPOINT_URL`, then
    /// `https://autoscaling.{region}.amazonaws.com`. `{region}` is the instance's.
    pub endpoint: Option<String>,

    /// How often EC2 and Azure notices are asked for (GCE's are long-polled and need no period).
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
    /// EC2 `spot/instance-action` (terminate, stop, hibernate).
    #[serde(default = "leave")]
    pub on_spot_interruption: NoticeAction,
    /// GCE `instance/preempted`, Azure `Preempt`.
    #[serde(default = "leave")]
    pub on_preemption: NoticeAction,
    /// Azure `Terminate`, Auto Scaling `target-lifecycle-state` `Terminated`.
    #[serde(default = "leave")]
    pub on_termination: NoticeAction,
    /// EC2 `events/recommendations/rebalance`.
    #[serde(default = "report")]
    pub on_rebalance: NoticeAction,
    /// EC2 `events/maintenance/scheduled`, GCE `instance/maintenance-event`, Azure `Reboot`,
    /// `Redeploy`, `Freeze`.
    #[serde(default = "report")]
    pub on_maintenance: NoticeAction,
    /// With `on_maintenance = "leave"`: leave once the maintenance is due within this long
    /// (a reboot three days away is only reported until then).
    #[serde(default = "default_maintenance_leave_before")]
    pub maintenance_leave_before: HumanDuration,
}

/// What a notice makes kiln do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeAction {
    /// Drain, stop the services, answer the platform, wait for the power-off. Final.
    Leave,
    /// Shown in `kiln status` and the log, with the time left.
    Report,
    /// Not asked for at all.
    Ignore,
}

impl NoticeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeAction::Leave => "leave",
            NoticeAction::Report => "report",
            NoticeAction::Ignore => "ignore",
        }
    }
}

impl fmt::Display for NoticeAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn leave() -> NoticeAction {
    NoticeAction::Leave
}

fn report() -> NoticeAction {
    NoticeAction::Report
}

fn default_heartbeat_timeout() -> HumanDuration {
    HumanDuration::from_secs(3600)
}

fn default_ready_timeout() -> HumanDuration {
    HumanDuration::from_secs(600)
}

fn default_poll_interval() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_maintenance_leave_before() -> HumanDuration {
    HumanDuration::from_secs(600)
}

/// AWS's bounds of a hook's `HeartbeatTimeout`.
const HEARTBEAT_TIMEOUT_MIN: HumanDuration = HumanDuration::from_secs(30);
const HEARTBEAT_TIMEOUT_MAX: HumanDuration = HumanDuration::from_secs(7200);
/// A spot notice comes 2 minutes ahead: a slower poll could miss most of it.
const POLL_INTERVAL_MAX: HumanDuration = HumanDuration::from_secs(60);
const ONE_SECOND: HumanDuration = HumanDuration::from_secs(1);

impl LifecycleConfig {
    /// Whether any Auto Scaling hook is named.
    pub fn has_hooks(&self) -> bool {
        self.launch_hook.is_some() || self.terminate_hook.is_some()
    }

    /// `heartbeat_interval`, or half of `heartbeat_timeout`.
    pub fn heartbeat_every(&self) -> std::time::Duration {
        match self.heartbeat_interval {
            Some(every) => every.get(),
            None => self.heartbeat_timeout.get().checked_div(2).unwrap_or_default(),
        }
    }

    /// Every problem serde cannot see, each naming its key. `metadata` tells which cloud the
    /// hooks and notices would come from.
    pub fn check(&self, metadata: &MetadataConfig) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (key, name) in [
            ("launch_hook", &self.launch_hook),
            ("terminate_hook", &self.terminate_hook),
        ] {
            if let Some(name) = name
                && let Err(why) = check_hook_name(name)
            {
                problems.push(format!("{key} = {name:?}: {why}"));
            }
        }
        if let Some(group) = &self.group {
            if let Err(why) = check_group_name(group) {
                problems.push(format!("group = {group:?}: {why}"));
            }
            if !self.has_hooks() {
                problems.push("group is only used with launch_hook or terminate_hook: name a hook".into());
            }
        }
        if self.has_hooks() && !matches!(metadata.provider, ProviderKind::Ec2 | ProviderKind::Auto) {
            problems.push(format!(
                "launch_hook, terminate_hook: Auto Scaling lifecycle hooks are EC2's, and [metadata] provider = \"{}\" (use \"ec2\" or \"auto\")",
                metadata.provider
            ));
        }
        if self.terminate_hook.is_some() && self.on_termination != NoticeAction::Leave {
            problems.push(format!(
                "terminate_hook needs on_termination = \"leave\" (it is \"{}\"): the hook is answered once kiln has left",
                self.on_termination
            ));
        }
        let timeout = self.heartbeat_timeout;
        if timeout < HEARTBEAT_TIMEOUT_MIN || timeout > HEARTBEAT_TIMEOUT_MAX {
            problems.push(format!(
                "heartbeat_timeout = \"{timeout}\": a hook's HeartbeatTimeout is 30s to 2h (as set on the group)"
            ));
        }
        if let Some(every) = self.heartbeat_interval
            && (every < ONE_SECOND || every >= timeout)
        {
            problems.push(format!(
                "heartbeat_interval = \"{every}\": at least 1s and less than heartbeat_timeout (\"{timeout}\")"
            ));
        }
        if self.ready_timeout < ONE_SECOND {
            problems.push(format!("ready_timeout = \"{}\": at least 1s", self.ready_timeout));
        }
        if self.poll_interval < ONE_SECOND || self.poll_interval > POLL_INTERVAL_MAX {
            problems.push(format!(
                "poll_interval = \"{}\": 1s to 1m (a spot interruption is announced 2 minutes ahead)",
                self.poll_interval
            ));
        }
        if let Some(url) = &self.endpoint
            && let Err(e) = super::url::check_http_url(url)
        {
            problems.push(format!("endpoint = {url:?}: {e}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// AWS: 1 to 255 of `[A-Za-z0-9-_/]`.
fn check_hook_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
    if ok {
        Ok(())
    } else {
        Err("a lifecycle hook name is 1 to 255 letters, digits, '-', '_' or '/'")
    }
}

/// AWS: 1 to 255 characters; control characters would forge log and status lines.
fn check_group_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
        Err("an Auto Scaling group name is 1 to 255 characters, no control characters")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> LifecycleConfig {
        toml::from_str(text).unwrap()
    }

    fn ec2() -> MetadataConfig {
        MetadataConfig {
            provider: ProviderKind::Ec2,
            ..MetadataConfig::default()
        }
    }

    #[test]
    fn defaults_leave_on_interruptions_and_report_the_rest() {
        let c = parse("");
        assert_eq!(c.on_spot_interruption, NoticeAction::Leave);
        assert_eq!(c.on_preemption, NoticeAction::Leave);
        assert_eq!(c.on_termination, NoticeAction::Leave);
        assert_eq!(c.on_rebalance, NoticeAction::Report);
        assert_eq!(c.on_maintenance, NoticeAction::Report);
        assert_eq!(c.poll_interval, HumanDuration::from_secs(5));
        assert_eq!(c.heartbeat_every(), std::time::Duration::from_secs(1800));
        assert!(!c.has_hooks());
        assert!(c.check(&MetadataConfig::default()).is_ok());
        assert!(toml::from_str::<LifecycleConfig>("on_rebalance = \"panic\"").is_err());
        assert!(toml::from_str::<LifecycleConfig>("hook = \"x\"").is_err());
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let c = parse(
            "group = \"\"\nlaunch_hook = \"bad name\"\nheartbeat_timeout = \"10s\"\nheartbeat_interval = \"0s\"\n\
             poll_interval = \"5m\"\nendpoint = \"autoscaling.local\"\nready_timeout = \"0s\"",
        );
        let problems = c.check(&ec2()).unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|p| p.split([' ', ',']).next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "launch_hook",
                "group",
                "heartbeat_timeout",
                "heartbeat_interval",
                "ready_timeout",
                "poll_interval",
                "endpoint"
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn hooks_need_ec2_and_a_group_needs_a_hook() {
        let gce = MetadataConfig {
            provider: ProviderKind::Gce,
            ..MetadataConfig::default()
        };
        let problems = parse("launch_hook = \"kiln-launch\"").check(&gce).unwrap_err();
        assert!(problems[0].contains("provider = \"gce\""), "{problems:?}");
        assert!(parse("launch_hook = \"kiln/launch-1\"").check(&ec2()).is_ok());
        let problems = parse("group = \"web\"").check(&ec2()).unwrap_err();
        assert!(problems[0].starts_with("group is only used"), "{problems:?}");
        let problems = parse("terminate_hook = \"t\"\non_termination = \"report\"")
            .check(&ec2())
            .unwrap_err();
        assert!(
            problems[0].starts_with("terminate_hook needs on_termination"),
            "{problems:?}"
        );
    }
}
