//! Azure's provisioning check-in, for images without a provisioning agent (no waagent, no
//! cloud-init): until an instance reports `Ready` to the WireServer, Azure shows it as
//! "creating" and fails the deployment when its provisioning timeout passes.
//!
//! The protocol (WireServer version `2012-11-30`, every request with `x-ms-version`):
//! `GET /machine/?comp=goalstate` answers XML with `Incarnation`, `Container/ContainerId` and
//! `Container/RoleInstanceList/RoleInstance/InstanceId`; then `POST /machine/?comp=health`
//! (`Content-Type: text/xml; charset=utf-8`) a `Health` document echoing the three, whose
//! `Role/Health/State` is `Ready`, or `NotReady` with `Details/SubStatus` and
//! `Details/Description`: the portal and the scale set show those two.
//!
//! When: `Ready` once the boot has everything a refusal could check (metadata read,
//! environment frozen and written, the load balancer's and the services' settings accepted),
//! as the services start; `NotReady` (`ProvisioningFailed`, the refusal's reason) for a boot
//! refused while launching. Whether the services become ready is the health signal's to say
//! (`/azure/health` for the Application Health extension, `/readyz` for a load balancer probe):
//! a scale set's rolling upgrade and instance repairs read that, and provisioning held back
//! until the services are ready would only turn a slow or broken service into a provisioning
//! timeout, with no reason shown, instead of an unhealthy instance.
//!
//! Retries follow the Azure agents: no answer, 429, 5xx and 403 (the WireServer's throttling)
//! are retried; 410 means the goal state changed, so the next attempt asks for it anew. The
//! check-in runs beside the boot, for up to [`DEADLINE`].

use crate::config::{MetadataConfig, ProviderKind};
use crate::net::retry::{self, Backoff, Outcome, Verdict};
use crate::state::{CheckInOutcome, CheckInStatus, HealthReport, Shared, now_ms};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The WireServer protocol version kiln speaks (the one every agent uses).
const VERSION: &str = "2012-11-30";
const GOAL_STATE: &str = "/machine/?comp=goalstate";
const HEALTH: &str = "/machine/?comp=health";
/// Azure fails an unprovisioned Linux VM after about this long; cloud-init retries as long.
pub const DEADLINE: Duration = Duration::from_secs(20 * 60);
/// One request and its answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Quick at first (the boot may race the network), then gentle on a shared host service.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
/// A goal state is a few KiB.
const BODY_LIMIT: usize = 64 * 1024;
/// The longest `Description` kiln sends (cloud-init trims to the same).
pub const DESCRIPTION_MAX_CHARS: usize = 512;
/// The substatus the Azure agents report a failed provisioning with.
pub const SUBSTATUS_FAILED: &str = "ProvisioningFailed";
/// Goal state values kiln echoes: a GUID, or `GUID.name`.
const ID_MAX_CHARS: usize = 256;

/// What kiln tells the WireServer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Ready,
    /// The boot was refused; the description says why (never a value), bounded.
    NotReady {
        description: String,
    },
}

impl Report {
    /// `NotReady` for a refused boot: the reason on one line, without control characters, at
    /// most [`DESCRIPTION_MAX_CHARS`].
    pub fn refused(reason: &str) -> Report {
        let one_line = reason.lines().map(str::trim).collect::<Vec<_>>().join("; ");
        let clean: String = format!("kiln refused the boot: {one_line}")
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let description = match clean.chars().count() > DESCRIPTION_MAX_CHARS {
            true => clean
                .chars()
                .take(DESCRIPTION_MAX_CHARS - 1)
                .chain(['…'])
                .collect(),
            false => clean,
        };
        Report::NotReady { description }
    }

    fn state(&self) -> HealthReport {
        match self {
            Report::Ready => HealthReport::Ready,
            Report::NotReady { .. } => HealthReport::NotReady,
        }
    }
}

/// This boot's check-in: kiln runs on Azure (`provider = "azure"`, or `auto` and DMI says
/// Azure).
pub struct CheckIn {
    base: String,
    enabled: bool,
}

impl CheckIn {
    /// None off Azure. On Azure with `check_in = false`, a check-in that only says it is off.
    pub fn on_azure(config: &MetadataConfig) -> Option<CheckIn> {
        let azure = match config.provider {
            ProviderKind::Azure => true,
            ProviderKind::Auto => {
                super::detect(&config.dmi_dir, &config.hypervisor_uuid) == Ok(ProviderKind::Azure)
            }
            _ => false,
        };
        azure.then(|| CheckIn {
            base: config
                .wireserver
                .as_deref()
                .unwrap_or(crate::net::WIRESERVER)
                .trim_end_matches('/')
                .to_string(),
            enabled: config.check_in,
        })
    }

    /// Sends `report` in the background (the boot does not wait), saying in status how it goes.
    pub fn spawn(self, report: Report, shared: Arc<Shared>) {
        let state = report.state();
        if !self.enabled {
            let detail = "[metadata] check_in = false: something else reports (waagent)";
            update(&shared, state, CheckInOutcome::Off, 0, None, Some(detail.into()));
            return;
        }
        tokio::spawn(async move { self.run(report, &shared).await });
    }

    async fn run(&self, report: Report, shared: &Shared) {
        let state = report.state();
        update(shared, state, CheckInOutcome::Sending, 0, None, None);
        let progress = |attempts: u32, reason: &str| {
            tracing::info!("azure check-in: {state} not taken yet ({reason}); retrying");
            update(
                shared,
                state,
                CheckInOutcome::Sending,
                attempts,
                None,
                Some(reason.into()),
            );
        };
        match send(&self.base, &report, Instant::now() + DEADLINE, progress).await {
            Ok(accepted) => {
                let line = format!(
                    "azure check-in: {state} reported to the WireServer (goal state incarnation {})",
                    accepted.incarnation
                );
                tracing::info!("{line}");
                shared.event("info", line);
                let incarnation = Some(accepted.incarnation);
                update(
                    shared,
                    state,
                    CheckInOutcome::Accepted,
                    accepted.attempts,
                    incarnation,
                    None,
                );
            }
            Err(failed) => {
                let line = format!("azure check-in: {state} not reported: {}", failed.reason);
                tracing::error!("{line}");
                shared.event("error", line);
                update(
                    shared,
                    state,
                    CheckInOutcome::Failed,
                    failed.attempts,
                    None,
                    Some(failed.reason),
                );
            }
        }
    }
}

fn update(
    shared: &Shared,
    report: HealthReport,
    outcome: CheckInOutcome,
    attempts: u32,
    incarnation: Option<String>,
    detail: Option<String>,
) {
    shared.update(|s| {
        s.check_in = Some(CheckInStatus {
            report,
            outcome,
            attempts,
            incarnation,
            detail,
            since_ms: now_ms(),
        })
    });
}

/// A report the WireServer took.
#[derive(Debug)]
pub struct Accepted {
    /// The goal state incarnation the report answered.
    pub incarnation: String,
    pub attempts: u32,
}

/// A report the WireServer did not take, and why.
#[derive(Debug)]
pub struct Failed {
    pub reason: String,
    pub attempts: u32,
}

/// One attempt's failure: its step and reason, and whether another attempt may do better.
#[derive(Debug)]
struct Problem {
    reason: String,
    transient: bool,
}

/// Reads the goal state and posts `report` against it, until the WireServer takes it or
/// `deadline` passes. `progress` hears of every retry (attempts so far, why).
pub async fn send(
    base: &str,
    report: &Report,
    deadline: Instant,
    mut progress: impl FnMut(u32, &str),
) -> Result<Accepted, Failed> {
    let client = crate::net::client::link_local().map_err(|reason| Failed { reason, attempts: 0 })?;
    let attempts = AtomicU32::new(0);
    let attempt = || {
        attempts.fetch_add(1, Ordering::Relaxed);
        once(&client, base, report, deadline)
    };
    let classify = |tried: &Result<String, Problem>| match tried {
        Err(problem) if problem.transient => Verdict::Retry(problem.reason.clone()),
        _ => Verdict::Final,
    };
    let on_retry = |r: &retry::Retrying<'_>| progress(r.attempt, r.reason);
    let outcome = retry::until(deadline, BACKOFF, attempt, classify, on_retry).await;
    let attempts = attempts.load(Ordering::Relaxed);
    match outcome {
        Outcome::Final(Ok(incarnation)) => Ok(Accepted {
            incarnation,
            attempts,
        }),
        Outcome::Final(Err(problem)) => Err(Failed {
            reason: format!("WireServer at {base}, {}", problem.reason),
            attempts,
        }),
        Outcome::GaveUp(gave_up) => Err(Failed {
            reason: format!(
                "WireServer at {base}: gave up after {} and {} (deadline): {}",
                crate::net::millis(gave_up.elapsed),
                retry::attempts(gave_up.attempts),
                gave_up.reason()
            ),
            attempts,
        }),
    }
}

/// The goal state, then the health report against it; the incarnation it answered.
async fn once(
    client: &reqwest::Client,
    base: &str,
    report: &Report,
    deadline: Instant,
) -> Result<String, Problem> {
    let timeout = || ATTEMPT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
    let request = client
        .get(format!("{base}{GOAL_STATE}"))
        .header("x-ms-version", VERSION)
        .header("x-ms-agent-name", "kiln");
    let answer = exchange("goal state", request, timeout()).await?;
    let goal = GoalState::parse(&answer).map_err(|reason| Problem {
        reason: format!("goal state: {reason}"),
        transient: false,
    })?;
    let request = client
        .post(format!("{base}{HEALTH}"))
        .header("x-ms-version", VERSION)
        .header("x-ms-agent-name", "kiln")
        .header("content-type", "text/xml; charset=utf-8")
        .body(health_document(&goal, report));
    exchange("health report", request, timeout()).await?;
    Ok(goal.incarnation)
}

/// One request; its body when the answer is a success.
async fn exchange(
    step: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Vec<u8>, Problem> {
    let answer = crate::net::exchange(request, timeout, BODY_LIMIT)
        .await
        .map_err(|reason| Problem {
            reason: format!("{step}: {reason}"),
            transient: true,
        })?;
    let status = answer.status;
    if status.is_success() {
        return Ok(answer.body.to_vec());
    }
    let words = match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    };
    let reason = match status {
        StatusCode::GONE => format!("{step}: answered {words} (the goal state changed; asking for it anew)"),
        _ => format!("{step}: answered {words}"),
    };
    Err(Problem {
        reason,
        transient: transient(status),
    })
}

/// What the WireServer says will pass: what every peer may pass through (429, 5xx), its
/// throttling (403, as the Azure agents retry it) and a goal state that moved on (410).
fn transient(status: StatusCode) -> bool {
    crate::net::transient_status(status) || matches!(status.as_u16(), 403 | 410)
}

/// The three values of the goal state a health report echoes, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalState {
    pub incarnation: String,
    pub container_id: String,
    pub instance_id: String,
}

#[derive(Deserialize)]
struct GoalStateXml {
    #[serde(rename = "Incarnation")]
    incarnation: String,
    #[serde(rename = "Container")]
    container: ContainerXml,
}

#[derive(Deserialize)]
struct ContainerXml {
    #[serde(rename = "ContainerId")]
    container_id: String,
    #[serde(rename = "RoleInstanceList")]
    role_instances: RoleInstancesXml,
}

#[derive(Deserialize)]
struct RoleInstancesXml {
    #[serde(rename = "RoleInstance", default)]
    list: Vec<RoleInstanceXml>,
}

#[derive(Deserialize)]
struct RoleInstanceXml {
    #[serde(rename = "InstanceId")]
    instance_id: String,
}

impl GoalState {
    /// The goal state document, refusing one that lacks a value or holds one kiln would not
    /// echo (an incarnation that is not a number, an id with control characters or too long).
    pub fn parse(body: &[u8]) -> Result<GoalState, String> {
        let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
        let xml: GoalStateXml = quick_xml::de::from_str(text).map_err(|e| {
            format!(
                "not the documented XML ({})",
                crate::terminal::peer_word(&e.to_string())
            )
        })?;
        let instance = xml
            .container
            .role_instances
            .list
            .into_iter()
            .next()
            .ok_or("no RoleInstance in Container/RoleInstanceList")?;
        let incarnation = xml.incarnation.trim().to_string();
        if incarnation.is_empty()
            || incarnation.len() > 20
            || !incarnation.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("Incarnation is not a number".into());
        }
        let id = |name: &str, value: String| {
            let value = value.trim().to_string();
            let fits = !value.is_empty() && value.chars().count() <= ID_MAX_CHARS;
            match fits && !value.chars().any(|c| c.is_control() || c.is_whitespace()) {
                true => Ok(value),
                false => Err(format!(
                    "{name} is empty, too long or holds spaces or control characters"
                )),
            }
        };
        Ok(GoalState {
            incarnation,
            container_id: id("ContainerId", xml.container.container_id)?,
            instance_id: id("InstanceId", instance.instance_id)?,
        })
    }
}

#[derive(Serialize)]
#[serde(rename = "Health")]
struct HealthXml<'a> {
    #[serde(rename = "@xmlns:xsi")]
    xsi: &'static str,
    #[serde(rename = "@xmlns:xsd")]
    xsd: &'static str,
    #[serde(rename = "GoalStateIncarnation")]
    incarnation: &'a str,
    #[serde(rename = "Container")]
    container: HealthContainerXml<'a>,
}

#[derive(Serialize)]
struct HealthContainerXml<'a> {
    #[serde(rename = "ContainerId")]
    container_id: &'a str,
    #[serde(rename = "RoleInstanceList")]
    roles: RoleListXml<'a>,
}

#[derive(Serialize)]
struct RoleListXml<'a> {
    #[serde(rename = "Role")]
    role: RoleXml<'a>,
}

#[derive(Serialize)]
struct RoleXml<'a> {
    #[serde(rename = "InstanceId")]
    instance_id: &'a str,
    #[serde(rename = "Health")]
    health: RoleHealthXml<'a>,
}

#[derive(Serialize)]
struct RoleHealthXml<'a> {
    #[serde(rename = "State")]
    state: &'static str,
    #[serde(rename = "Details", skip_serializing_if = "Option::is_none")]
    details: Option<DetailsXml<'a>>,
}

#[derive(Serialize)]
struct DetailsXml<'a> {
    #[serde(rename = "SubStatus")]
    substatus: &'static str,
    #[serde(rename = "Description")]
    description: &'a str,
}

/// The `Health` document for `report` against `goal`, as the Azure agents send it.
pub fn health_document(goal: &GoalState, report: &Report) -> String {
    let (state, details) = match report {
        Report::Ready => ("Ready", None),
        Report::NotReady { description } => (
            "NotReady",
            Some(DetailsXml {
                substatus: SUBSTATUS_FAILED,
                description,
            }),
        ),
    };
    let document = HealthXml {
        xsi: "http://www.w3.org/2001/XMLSchema-instance",
        xsd: "http://www.w3.org/2001/XMLSchema",
        incarnation: &goal.incarnation,
        container: HealthContainerXml {
            container_id: &goal.container_id,
            roles: RoleListXml {
                role: RoleXml {
                    instance_id: &goal.instance_id,
                    health: RoleHealthXml { state, details },
                },
            },
        },
    };
    // Plain strings and borrowed structs: serializing them cannot fail.
    let body = quick_xml::se::to_string(&document).unwrap_or_default();
    format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOAL: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="goalstate10.xsd">
  <Version>2012-11-30</Version>
  <Incarnation>3</Incarnation>
  <Machine><ExpectedState>Started</ExpectedState><StopRolesDeadlineHint>300000</StopRolesDeadlineHint></Machine>
  <Container>
    <ContainerId>c6d5526c-5ac2-4200-b6e2-56f2b70c5ab2</ContainerId>
    <RoleInstanceList>
      <RoleInstance>
        <InstanceId>7d2fd5e4-f13d-4a1c-9a5a-8f6b5c7e0c3a.web-1</InstanceId>
        <State>Started</State>
        <Configuration><ConfigName>7d2fd5e4.0.xml</ConfigName></Configuration>
      </RoleInstance>
    </RoleInstanceList>
  </Container>
</GoalState>"#;

    fn goal() -> GoalState {
        GoalState::parse(GOAL.as_bytes()).unwrap()
    }

    #[test]
    fn a_goal_state_gives_its_three_values() {
        assert_eq!(
            goal(),
            GoalState {
                incarnation: "3".into(),
                container_id: "c6d5526c-5ac2-4200-b6e2-56f2b70c5ab2".into(),
                instance_id: "7d2fd5e4-f13d-4a1c-9a5a-8f6b5c7e0c3a.web-1".into(),
            }
        );
    }

    #[test]
    fn a_goal_state_kiln_would_not_echo_is_refused() {
        let cases = [
            (
                GOAL.replace("<Incarnation>3<", "<Incarnation>three<"),
                "Incarnation is not a number",
            ),
            (
                GOAL.replace("<InstanceId>7d2f", "<InstanceId>a b"),
                "InstanceId is empty, too long or holds spaces or control characters",
            ),
            (
                GOAL.replace("<RoleInstance>", "<Other>")
                    .replace("</RoleInstance>", "</Other>"),
                "no RoleInstance in Container/RoleInstanceList",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(GoalState::parse(text.as_bytes()).unwrap_err(), want);
        }
        assert!(
            GoalState::parse(b"<html>oops")
                .unwrap_err()
                .starts_with("not the documented XML")
        );
    }

    #[test]
    fn the_ready_document_is_the_agents_shape() {
        assert_eq!(
            health_document(&goal(), &Report::Ready),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Health xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><GoalStateIncarnation>3</GoalStateIncarnation><Container>\
             <ContainerId>c6d5526c-5ac2-4200-b6e2-56f2b70c5ab2</ContainerId><RoleInstanceList><Role>\
             <InstanceId>7d2fd5e4-f13d-4a1c-9a5a-8f6b5c7e0c3a.web-1</InstanceId><Health><State>Ready</State></Health>\
             </Role></RoleInstanceList></Container></Health>"
        );
    }

    #[test]
    fn a_refusal_is_one_bounded_escaped_line() {
        let reason = format!(
            "seal: 2 differences\n  /srv/app/a <b> & \u{1b}[31m{}",
            "x".repeat(600)
        );
        let report = Report::refused(&reason);
        let Report::NotReady { description } = &report else {
            panic!()
        };
        assert_eq!(description.chars().count(), DESCRIPTION_MAX_CHARS);
        assert!(description.starts_with("kiln refused the boot: seal: 2 differences; /srv/app/a <b> & [31m"));
        assert!(description.ends_with('…'));
        let document = health_document(&goal(), &report);
        assert!(document.contains("<State>NotReady</State><Details><SubStatus>ProvisioningFailed</SubStatus><Description>kiln refused the boot: seal: 2 differences; /srv/app/a &lt;b&gt; &amp; [31m"), "{document}");
    }

    #[test]
    fn the_wireserver_retries_its_throttling_and_a_moved_goal_state() {
        for (status, again) in [
            (403, true),
            (410, true),
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (404, false),
        ] {
            assert_eq!(
                transient(StatusCode::from_u16(status).unwrap()),
                again,
                "{status}"
            );
        }
    }
}
