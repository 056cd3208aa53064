//! What the platform announces to the instance: Auto Scaling's target lifecycle state, spot
//! interruptions, rebalance recommendations and scheduled maintenance (EC2), preemption and host
//! maintenance (GCE), Scheduled Events (Azure). A test changes them while the emulator runs
//! ([`super::MetadataEmulator::notices`]); each cloud's handler serves them in its documented
//! format, and GCE's hanging GETs wake up on every change.
//!
//! Setters build the documented documents; the raw fields take anything, so a test can also
//! serve a notice kiln must refuse to act on.

use serde_json::{Value, json};
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct Notices {
    /// EC2 `meta-data/autoscaling/target-lifecycle-state` (`InService`, `Terminated`, ...);
    /// None: 404, as on an instance outside any Auto Scaling group.
    pub target_lifecycle_state: Option<String>,
    /// EC2 `meta-data/spot/instance-action`, as served; None: 404 (no interruption scheduled).
    pub spot_instance_action: Option<String>,
    /// EC2 `meta-data/events/recommendations/rebalance`, as served; None: 404.
    pub rebalance_recommendation: Option<String>,
    /// EC2 `meta-data/events/maintenance/scheduled`: served as a JSON array (`[]` when empty).
    pub ec2_maintenance: Vec<Value>,
    /// EC2: the whole `events/maintenance/scheduled` answer instead of the array above.
    pub ec2_maintenance_raw: Option<String>,
    /// GCE `instance/preempted` (`TRUE` / `FALSE`).
    pub preempted: bool,
    /// GCE `instance/maintenance-event`: `NONE`, `MIGRATE_ON_HOST_MAINTENANCE`,
    /// `TERMINATE_ON_HOST_MAINTENANCE`.
    pub maintenance_event: String,
    /// Azure Scheduled Events, in the `Events` array.
    pub azure_events: Vec<Value>,
    /// Azure: the whole Scheduled Events answer instead of the document built from the above.
    pub azure_raw: Option<String>,
    /// Azure `DocumentIncarnation`: goes up on every change of the events.
    pub document_incarnation: u64,
    /// Azure: event ids acknowledged (POST `StartRequests`), in order, each once per POST.
    pub acknowledged: Vec<String>,
}

impl Default for Notices {
    fn default() -> Self {
        Notices {
            target_lifecycle_state: None,
            spot_instance_action: None,
            rebalance_recommendation: None,
            ec2_maintenance: Vec::new(),
            ec2_maintenance_raw: None,
            preempted: false,
            maintenance_event: "NONE".into(),
            azure_events: Vec::new(),
            azure_raw: None,
            document_incarnation: 0,
            acknowledged: Vec::new(),
        }
    }
}

impl Notices {
    /// EC2: `{"action": "terminate|stop|hibernate", "time": "2017-09-18T08:22:00Z"}`.
    pub fn spot_interruption(&mut self, action: &str, at: SystemTime) {
        self.spot_instance_action = Some(json!({ "action": action, "time": rfc3339(at) }).to_string());
    }

    /// EC2: `{"noticeTime": "2020-10-27T08:22:00Z"}`.
    pub fn rebalance(&mut self, at: SystemTime) {
        self.rebalance_recommendation = Some(json!({ "noticeTime": rfc3339(at) }).to_string());
    }

    /// EC2: one active scheduled event (`system-reboot`, `instance-reboot`, `system-maintenance`,
    /// `instance-retirement`, `instance-stop`) with its window; returns its id.
    pub fn ec2_scheduled(&mut self, code: &str, not_before: SystemTime, not_after: SystemTime) -> String {
        let id = format!("instance-event-{:017x}", self.ec2_maintenance.len() + 0x0abc);
        self.ec2_maintenance.push(json!({
            "NotBefore": ec2_date(not_before),
            "Code": code,
            "Description": format!("scheduled {code}"),
            "EventId": id,
            "NotAfter": ec2_date(not_after),
            "State": "active",
        }));
        id
    }

    /// Azure: one scheduled event for `resources` (VM names); returns its id.
    pub fn azure_event(&mut self, event_type: &str, resources: &[&str], not_before: SystemTime) -> String {
        let id = uuid_like(self.document_incarnation + self.azure_events.len() as u64 + 1);
        self.azure_events.push(json!({
            "EventId": id,
            "EventStatus": "Scheduled",
            "EventType": event_type,
            "ResourceType": "VirtualMachine",
            "Resources": resources,
            "NotBefore": http_date(not_before),
            "Description": format!("{event_type} scheduled by the emulator"),
            "EventSource": "Platform",
            "DurationInSeconds": -1,
        }));
        self.document_incarnation += 1;
        id
    }

    /// Azure: the Scheduled Events document.
    pub(super) fn azure_document(&self) -> String {
        if let Some(raw) = &self.azure_raw {
            return raw.clone();
        }
        json!({ "DocumentIncarnation": self.document_incarnation, "Events": self.azure_events }).to_string()
    }

    /// Azure: a POST body; Ok with how many events it started, or why it is refused (400).
    pub(super) fn azure_acknowledge(&mut self, body: &[u8]) -> Result<usize, &'static str> {
        let doc: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON")?;
        let requests = doc
            .get("StartRequests")
            .and_then(Value::as_array)
            .ok_or("StartRequests is missing")?;
        let mut started = 0;
        for request in requests {
            let id = request
                .get("EventId")
                .and_then(Value::as_str)
                .ok_or("a StartRequest has no EventId")?;
            let event = self
                .azure_events
                .iter_mut()
                .find(|e| e["EventId"] == id)
                .ok_or("no such EventId")?;
            event["EventStatus"] = "Started".into();
            event["NotBefore"] = "".into();
            self.acknowledged.push(id.to_string());
            started += 1;
        }
        if started > 0 {
            self.document_incarnation += 1;
        }
        Ok(started)
    }

    /// EC2: the scheduled maintenance answer.
    pub(super) fn ec2_maintenance_document(&self) -> String {
        match &self.ec2_maintenance_raw {
            Some(raw) => raw.clone(),
            None => Value::Array(self.ec2_maintenance.clone()).to_string(),
        }
    }
}

/// `2017-09-18T08:22:00Z`, as EC2's notices write times.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `21 Jan 2019 09:00:43 GMT`, as EC2's scheduled events write times.
pub fn ec2_date(t: SystemTime) -> String {
    let full = httpdate::fmt_http_date(t);
    full.split_once(", ")
        .map_or(full.clone(), |(_, rest)| rest.to_string())
}

/// `Mon, 19 Sep 2016 18:29:47 GMT`, as Azure writes `NotBefore`.
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// An id in the shape of Azure's event ids (`602d9444-d2cd-49c7-8624-8643e7171297`).
fn uuid_like(n: u64) -> String {
    let hex = format!(
        "{:032x}",
        u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    );
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
    .to_uppercase()
}

/// GCE's ETag of a value: a hash of its text, 16 hex digits as the metadata server writes them.
pub(super) fn etag(value: &str) -> String {
    // FNV-1a: stable across runs, which is all an ETag needs.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
