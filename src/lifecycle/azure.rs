//! Azure Scheduled Events, polled: `GET /metadata/scheduledevents?api-version=2020-07-01` with
//! `Metadata: true` gives `{"DocumentIncarnation": n, "Events": [...]}`; each event names the
//! VMs it affects in `Resources` (an availability set or scale set sees its neighbours' events
//! too), so only those naming this VM (`compute/name`) count. `Preempt` (at least 30 s ahead) is
//! a preemption, `Terminate` a termination, `Reboot`, `Redeploy` and `Freeze` maintenance.
//!
//! Its events are taken afresh only when `DocumentIncarnation` changes. Once kiln has left
//! for an event, it starts it (`POST {"StartRequests": [{"EventId": ...}]}`) so the platform
//! goes ahead at once instead of waiting out `NotBefore`. The first request of a VM enables the
//! service and may take up to two minutes to answer (Azure's documentation).

use super::{Answer, Look, Notice, NoticeSource, Wanted, dates};
use crate::metadata::watch::AzureWatch;
use crate::state::NoticeKind;
use crate::terminal::peer_word;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

const EVENTS: &str = "/metadata/scheduledevents?api-version=2020-07-01";
const VM_NAME: &str = "/metadata/instance/compute/name?api-version=2021-02-01&format=text";

/// The first request may take this long (Azure enables Scheduled Events on it).
const FIRST_ANSWER: Duration = Duration::from_secs(150);
const READ_BUDGET_MIN: Duration = Duration::from_secs(2);
/// An acknowledgement gets this long.
const ANSWER_BUDGET: Duration = Duration::from_secs(10);

pub(super) struct AzureNotices {
    imds: AzureWatch,
    every: Duration,
    wanted: Wanted,
    vm_name: Option<String>,
    polls: u32,
    /// The last document's incarnation and what it held.
    last: Option<(u64, Vec<Notice>, Vec<String>)>,
}

impl AzureNotices {
    pub fn new(imds: AzureWatch, every: Duration, wanted: Wanted) -> AzureNotices {
        AzureNotices {
            imds,
            every,
            wanted,
            vm_name: None,
            polls: 0,
            last: None,
        }
    }

    async fn read(&mut self) -> Result<Look, String> {
        let budget = match self.last {
            None => FIRST_ANSWER,
            Some(_) => self.every.max(READ_BUDGET_MIN),
        };
        let deadline = Instant::now() + budget;
        if self.vm_name.is_none() {
            let body = self
                .imds
                .get("compute/name", VM_NAME, deadline)
                .await
                .map_err(|e| format!("cannot read this VM's name: {e}"))?;
            let name = String::from_utf8_lossy(&body).trim().to_string();
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err("compute/name is not a VM name".into());
            }
            self.vm_name = Some(name);
        }
        let body = self
            .imds
            .get("scheduledevents", EVENTS, deadline)
            .await
            .map_err(|e| format!("cannot read Scheduled Events: {e}"))?;
        let document: Document = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "scheduledevents: not the documented document ({}); not acted on",
                crate::terminal::peer_word(&e.to_string())
            )
        })?;
        if let Some((incarnation, notices, problems)) = &self.last
            && *incarnation == document.incarnation
        {
            return Ok(Look {
                notices: notices.clone(),
                problems: problems.clone(),
                ..Look::default()
            });
        }
        let vm_name = self.vm_name.as_deref().unwrap_or_default();
        let (notices, problems) = events_for(&document.events, vm_name, self.wanted);
        self.last = Some((document.incarnation, notices.clone(), problems.clone()));
        Ok(Look {
            notices,
            problems,
            ..Look::default()
        })
    }
}

#[async_trait::async_trait]
impl NoticeSource for AzureNotices {
    fn describe(&self) -> String {
        format!(
            "azure scheduled events, every {}",
            humantime::format_duration(self.every)
        )
    }

    async fn look(&mut self) -> Look {
        if self.polls > 0 {
            tokio::time::sleep(self.every).await;
        }
        self.polls = self.polls.wrapping_add(1);
        match self.read().await {
            Ok(look) => look,
            Err(problem) => Look {
                problems: vec![problem],
                // What the last good document said still holds.
                notices: self.last.as_ref().map(|l| l.1.clone()).unwrap_or_default(),
                ..Look::default()
            },
        }
    }

    async fn answer(&self, notice: &Notice) -> Result<String, String> {
        let Answer::StartEvent(id) = &notice.answer else {
            return Ok(String::new());
        };
        let body = serde_json::json!({ "StartRequests": [{ "EventId": id }] }).to_string();
        self.imds
            .post("scheduledevents", EVENTS, body, Instant::now() + ANSWER_BUDGET)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("event {id} acknowledged (StartRequests)"))
    }
}

#[derive(Deserialize)]
struct Document {
    #[serde(rename = "DocumentIncarnation")]
    incarnation: u64,
    #[serde(rename = "Events", default)]
    events: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    event_id: String,
    event_type: String,
    #[serde(default)]
    resources: Vec<String>,
    event_status: String,
    #[serde(default)]
    not_before: String,
}

/// The events naming `vm_name`, as notices; each event that cannot be understood is a problem.
fn events_for(events: &[serde_json::Value], vm_name: &str, wanted: Wanted) -> (Vec<Notice>, Vec<String>) {
    let (mut notices, mut problems) = (Vec::new(), Vec::new());
    for event in events {
        match notice_of(event, vm_name, wanted) {
            Ok(notice) => notices.extend(notice),
            Err(why) => problems.push(format!("scheduledevents: {why}; not acted on")),
        }
    }
    (notices, problems)
}

/// One event as a notice: None when it does not name `vm_name` or is of a kind not wanted; an
/// error says why it cannot be understood.
fn notice_of(event: &serde_json::Value, vm_name: &str, wanted: Wanted) -> Result<Option<Notice>, String> {
    let event: Event = serde_json::from_value(event.clone()).map_err(|e| {
        format!(
            "an event is not the documented shape ({})",
            crate::terminal::peer_word(&e.to_string())
        )
    })?;
    if !event.resources.iter().any(|r| r.eq_ignore_ascii_case(vm_name)) {
        return Ok(None);
    }
    let id = peer_word(&event.event_id);
    let kind = match event.event_type.as_str() {
        "Preempt" => NoticeKind::Preemption,
        "Terminate" => NoticeKind::Termination,
        "Reboot" | "Redeploy" | "Freeze" => NoticeKind::Maintenance,
        other => return Err(format!("event {id}: unknown EventType {:?}", peer_word(other))),
    };
    if !wanted.kind(kind) {
        return Ok(None);
    }
    let due = match event.not_before.trim() {
        "" => None,
        text => Some(dates::gmt(text).ok_or_else(|| {
            format!(
                "event {id}: NotBefore {:?} is not a time like \"Mon, 19 Sep 2016 18:29:47 GMT\"",
                peer_word(text)
            )
        })?),
    };
    let when = due
        .map(|t| format!(", not before {}", dates::show(t)))
        .unwrap_or_default();
    Ok(Some(Notice {
        kind,
        id: format!("azure {}", event.event_id),
        detail: format!(
            "{} {} (event {id}{when})",
            peer_word(&event.event_type),
            peer_word(&event.event_status).to_lowercase(),
        ),
        due,
        answer: Answer::StartEvent(event.event_id),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Wanted {
        Wanted {
            spot: true,
            preemption: true,
            termination: true,
            rebalance: true,
            maintenance: true,
        }
    }

    #[test]
    fn events_naming_this_vm_become_notices() {
        let doc: Document = serde_json::from_str(
            r#"{"DocumentIncarnation": 2, "Events": [
              {"EventId": "602D9444-D2CD-49C7-8624-8643E7171297", "EventStatus": "Scheduled", "EventType": "Preempt",
               "ResourceType": "VirtualMachine", "Resources": ["web-1"], "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT",
               "Description": "", "EventSource": "Platform", "DurationInSeconds": -1},
              {"EventId": "B", "EventStatus": "Scheduled", "EventType": "Reboot", "ResourceType": "VirtualMachine",
               "Resources": ["web-2"], "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT"},
              {"EventId": "C", "EventStatus": "Started", "EventType": "Freeze", "ResourceType": "VirtualMachine",
               "Resources": ["WEB-1"], "NotBefore": ""},
              {"EventId": "D", "EventStatus": "Scheduled", "EventType": "Explode", "Resources": ["web-1"], "NotBefore": ""}
            ]}"#,
        )
        .unwrap();
        let (notices, problems) = events_for(&doc.events, "web-1", all());
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert_eq!(notices[0].kind, NoticeKind::Preemption);
        assert_eq!(
            notices[0].answer,
            Answer::StartEvent("602D9444-D2CD-49C7-8624-8643E7171297".into())
        );
        assert_eq!(
            notices[0].detail,
            "Preempt scheduled (event 602D9444-D2CD-49C7-8624-8643E7171297, not before 2016-09-19T18:29:47Z)"
        );
        assert_eq!(notices[1].kind, NoticeKind::Maintenance);
        assert_eq!(notices[1].due, None);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("unknown EventType \"Explode\""),
            "{problems:?}"
        );
        let no_maintenance = Wanted {
            maintenance: false,
            ..all()
        };
        assert_eq!(events_for(&doc.events, "web-1", no_maintenance).0.len(), 1);
    }
}
