//! EC2's notices, polled through IMDSv2 (it has no long poll):
//!
//! - `meta-data/spot/instance-action`: 404 until an interruption is scheduled, then
//!   `{"action": "terminate|stop|hibernate", "time": "2017-09-18T08:22:00Z"}` (two minutes
//!   ahead; AWS suggests polling every 5 s).
//! - `meta-data/autoscaling/target-lifecycle-state`: plain text; `Terminated` when Auto Scaling
//!   is about to terminate the instance (its terminate hook, if any, then waits for kiln).
//! - `meta-data/events/recommendations/rebalance`: 404, then `{"noticeTime": "..."}`.
//! - `meta-data/events/maintenance/scheduled`: a JSON array of `{Code, Description, EventId,
//!   NotBefore, NotAfter, State}` with times like `21 Jan 2019 09:00:43 GMT`.
//!
//! The first two are asked every `poll_interval`; the last two, which announce things minutes
//! to days ahead, every [`SLOW_EVERY`]th time (about a minute at the default 5 s).

use super::{Answer, Look, Notice, NoticeSource, Wanted, dates};
use crate::metadata::watch::Ec2Watch;
use crate::state::NoticeKind;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

const SPOT: &str = "/latest/meta-data/spot/instance-action";
const TARGET_STATE: &str = "/latest/meta-data/autoscaling/target-lifecycle-state";
const REBALANCE: &str = "/latest/meta-data/events/recommendations/rebalance";
const MAINTENANCE: &str = "/latest/meta-data/events/maintenance/scheduled";

/// Rebalance recommendations and scheduled maintenance are asked every this many polls.
const SLOW_EVERY: u32 = 12;

/// The least time a poll's reads get, however short the poll interval.
const READ_BUDGET_MIN: Duration = Duration::from_secs(2);

pub(super) struct Ec2Notices {
    imds: Ec2Watch,
    every: Duration,
    wanted: Wanted,
    polls: u32,
    /// The last slow look's notices and problems, carried between slow looks.
    slow: (Vec<Notice>, Vec<String>),
}

impl Ec2Notices {
    pub fn new(imds: Ec2Watch, every: Duration, wanted: Wanted) -> Ec2Notices {
        Ec2Notices {
            imds,
            every,
            wanted,
            polls: 0,
            slow: (Vec::new(), Vec::new()),
        }
    }

    /// One path's answer; the problem names the path, never more than a short reason.
    async fn read(&self, path: &str, deadline: Instant) -> Result<Option<String>, String> {
        let short = path.trim_start_matches("/latest/meta-data/");
        match self.imds.get(path, deadline).await {
            Ok(Some(body)) => String::from_utf8(body.to_vec())
                .map(Some)
                .map_err(|_| format!("{short}: the answer is not UTF-8; not acted on")),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("cannot read {short}: {e}")),
        }
    }
}

#[async_trait::async_trait]
impl NoticeSource for Ec2Notices {
    fn describe(&self) -> String {
        format!(
            "ec2 instance metadata, every {}",
            humantime::format_duration(self.every)
        )
    }

    async fn look(&mut self) -> Look {
        if self.polls > 0 {
            tokio::time::sleep(self.every).await;
        }
        let slow = self.polls.is_multiple_of(SLOW_EVERY);
        self.polls = self.polls.wrapping_add(1);
        let deadline = Instant::now() + self.every.max(READ_BUDGET_MIN);
        let mut look = Look::default();
        if self.wanted.spot {
            match self.read(SPOT, deadline).await {
                Ok(Some(text)) => match spot_notice(&text) {
                    Ok(notice) => look.notices.push(notice),
                    Err(e) => look.problems.push(e),
                },
                Ok(None) => {}
                Err(e) => look.problems.push(e),
            }
        }
        if self.wanted.termination {
            match self.read(TARGET_STATE, deadline).await {
                Ok(Some(text)) => match target_state(&text) {
                    Ok(state) => {
                        if state == TargetState::Terminated {
                            look.notices.push(terminated_notice());
                        }
                        look.target_state = Some(text.trim().to_string());
                    }
                    Err(e) => look.problems.push(e),
                },
                Ok(None) => {}
                Err(e) => look.problems.push(e),
            }
        }
        if slow {
            self.slow = self.slow_look(deadline).await;
        }
        look.notices.extend(self.slow.0.iter().cloned());
        look.problems.extend(self.slow.1.iter().cloned());
        look
    }
}

impl Ec2Notices {
    async fn slow_look(&self, deadline: Instant) -> (Vec<Notice>, Vec<String>) {
        let (mut notices, mut problems) = (Vec::new(), Vec::new());
        if self.wanted.rebalance {
            match self.read(REBALANCE, deadline).await {
                Ok(Some(text)) => match rebalance_notice(&text) {
                    Ok(notice) => notices.push(notice),
                    Err(e) => problems.push(e),
                },
                Ok(None) => {}
                Err(e) => problems.push(e),
            }
        }
        if self.wanted.maintenance {
            match self.read(MAINTENANCE, deadline).await {
                Ok(Some(text)) => {
                    let (found, refused) = maintenance_notices(&text);
                    notices.extend(found);
                    problems.extend(refused);
                }
                Ok(None) => {}
                Err(e) => problems.push(e),
            }
        }
        (notices, problems)
    }
}

#[derive(Deserialize)]
struct SpotAction {
    action: String,
    time: String,
}

/// `{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`; anything else is a problem.
fn spot_notice(text: &str) -> Result<Notice, String> {
    let refused = |why: String| format!("spot/instance-action: {why}; not acted on");
    let spot: SpotAction = serde_json::from_str(text).map_err(|e| {
        refused(format!(
            "not the documented notice ({})",
            crate::terminal::peer_word(&e.to_string())
        ))
    })?;
    if !matches!(spot.action.as_str(), "terminate" | "stop" | "hibernate") {
        return Err(refused(format!(
            "unknown action {:?} (terminate, stop or hibernate)",
            crate::terminal::peer_word(&spot.action)
        )));
    }
    let due = dates::rfc3339(&spot.time).ok_or_else(|| {
        refused(format!(
            "time {:?} is not an RFC 3339 time",
            crate::terminal::peer_word(&spot.time)
        ))
    })?;
    Ok(Notice {
        kind: NoticeKind::SpotInterruption,
        id: format!("spot {} {}", spot.action, spot.time),
        detail: format!("{} at {}", spot.action, dates::show(due)),
        due: Some(due),
        answer: Answer::None,
    })
}

/// Auto Scaling's steady states; `Warmed:*` are the warm pool's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TargetState {
    InService,
    Terminated,
    Detached,
    Standby,
    Warmed,
}

fn target_state(text: &str) -> Result<TargetState, String> {
    Ok(match text.trim() {
        "InService" => TargetState::InService,
        "Terminated" => TargetState::Terminated,
        "Detached" => TargetState::Detached,
        "Standby" => TargetState::Standby,
        s if s.starts_with("Warmed:") && s.len() < 64 => TargetState::Warmed,
        other => {
            return Err(format!(
                "autoscaling/target-lifecycle-state: unknown state {:?}; not acted on",
                crate::terminal::peer_word(other)
            ));
        }
    })
}

fn terminated_notice() -> Notice {
    Notice {
        kind: NoticeKind::Termination,
        id: "autoscaling Terminated".into(),
        detail: "Auto Scaling is terminating the instance (target lifecycle state Terminated)".into(),
        due: None,
        answer: Answer::TerminateHook,
    }
}

#[derive(Deserialize)]
struct Rebalance {
    #[serde(rename = "noticeTime")]
    notice_time: String,
}

fn rebalance_notice(text: &str) -> Result<Notice, String> {
    let refused = |why: String| format!("events/recommendations/rebalance: {why}; not acted on");
    let rebalance: Rebalance = serde_json::from_str(text).map_err(|e| {
        refused(format!(
            "not the documented notice ({})",
            crate::terminal::peer_word(&e.to_string())
        ))
    })?;
    let at = dates::rfc3339(&rebalance.notice_time).ok_or_else(|| {
        refused(format!(
            "noticeTime {:?} is not an RFC 3339 time",
            crate::terminal::peer_word(&rebalance.notice_time)
        ))
    })?;
    Ok(Notice {
        kind: NoticeKind::Rebalance,
        id: format!("rebalance {}", rebalance.notice_time),
        detail: format!("elevated risk of interruption since {}", dates::show(at)),
        due: None,
        answer: Answer::None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduledEvent {
    code: String,
    event_id: String,
    not_before: String,
    #[serde(default)]
    not_after: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// The active events of the array (completed and canceled ones are history); each event that
/// cannot be understood is a problem of its own.
fn maintenance_notices(text: &str) -> (Vec<Notice>, Vec<String>) {
    let refused = |why: String| format!("events/maintenance/scheduled: {why}; not acted on");
    let events: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(events) => events,
        Err(e) => {
            return (
                Vec::new(),
                vec![refused(format!(
                    "not a JSON array ({})",
                    crate::terminal::peer_word(&e.to_string())
                ))],
            );
        }
    };
    let (mut notices, mut problems) = (Vec::new(), Vec::new());
    for event in events {
        let event: ScheduledEvent = match serde_json::from_value(event) {
            Ok(event) => event,
            Err(e) => {
                problems.push(refused(format!(
                    "an event is not the documented shape ({})",
                    crate::terminal::peer_word(&e.to_string())
                )));
                continue;
            }
        };
        if event.state.as_deref().is_some_and(|s| s != "active") {
            continue;
        }
        let Some(not_before) = dates::gmt(&event.not_before) else {
            problems.push(refused(format!(
                "event {}: NotBefore {:?} is not a time like \"21 Jan 2019 09:00:43 GMT\"",
                crate::terminal::peer_word(&event.event_id),
                crate::terminal::peer_word(&event.not_before)
            )));
            continue;
        };
        let until = event
            .not_after
            .as_deref()
            .and_then(dates::gmt)
            .map(|t| format!(" until {}", dates::show(t)))
            .unwrap_or_default();
        notices.push(Notice {
            kind: NoticeKind::Maintenance,
            id: format!("ec2 event {}", event.event_id),
            detail: format!(
                "{} ({}) from {}{until}",
                crate::terminal::peer_word(&event.code),
                crate::terminal::peer_word(&event.event_id),
                dates::show(not_before)
            ),
            due: Some(not_before),
            answer: Answer::None,
        });
    }
    (notices, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_interruptions_as_documented() {
        let n = spot_notice(r#"{"action": "terminate", "time": "2017-09-18T08:22:00Z"}"#).unwrap();
        assert_eq!(n.kind, NoticeKind::SpotInterruption);
        assert_eq!(n.detail, "terminate at 2017-09-18T08:22:00Z");
        assert!(n.due.is_some());
        let e = spot_notice(r#"{"action": "explode", "time": "2017-09-18T08:22:00Z"}"#).unwrap_err();
        assert!(
            e.contains("unknown action \"explode\"") && e.ends_with("not acted on"),
            "{e}"
        );
        assert!(spot_notice(r#"{"action": "stop", "time": "soon"}"#).is_err());
        assert!(spot_notice("<html>").is_err());
    }

    #[test]
    fn target_states() {
        assert_eq!(target_state("InService\n").unwrap(), TargetState::InService);
        assert_eq!(target_state("Terminated").unwrap(), TargetState::Terminated);
        assert_eq!(target_state("Warmed:Hibernated").unwrap(), TargetState::Warmed);
        assert!(target_state("Exploded").is_err());
    }

    #[test]
    fn scheduled_maintenance_keeps_active_events_and_names_bad_ones() {
        let text = r#"[
          {"NotBefore": "21 Jan 2019 09:00:43 GMT", "Code": "system-reboot", "Description": "scheduled reboot",
           "EventId": "instance-event-0d59937288b749b32", "NotAfter": "21 Jan 2019 09:17:23 GMT", "State": "active"},
          {"NotBefore": "21 Jan 2019 09:00:43 GMT", "Code": "system-reboot", "Description": "[Completed] scheduled reboot",
           "EventId": "instance-event-1", "NotAfter": "21 Jan 2019 09:17:23 GMT", "State": "completed"},
          {"NotBefore": "2019-01-21T09:00:43Z", "Code": "instance-stop", "EventId": "instance-event-2", "State": "active"}
        ]"#;
        let (notices, problems) = maintenance_notices(text);
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(
            notices[0].detail,
            "system-reboot (instance-event-0d59937288b749b32) from 2019-01-21T09:00:43Z until 2019-01-21T09:17:23Z"
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("instance-event-2"), "{problems:?}");
        assert_eq!(maintenance_notices("[]"), (Vec::new(), Vec::new()));
    }
}
