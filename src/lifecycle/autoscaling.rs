//! EC2 Auto Scaling lifecycle hooks, through the one AWS client (Query API, SigV4).
//!
//! - Launch: the instance waits in `Pending:Wait` until told. `CONTINUE` once every service is
//!   ready (and registered, with `[lb]`), so an instance refresh moves on only when the new
//!   instance truly serves; `ABANDON` when the boot is refused, the instance fails, or it is not
//!   ready within `ready_timeout`, so the group replaces it instead of waiting out the hook.
//!   `RecordLifecycleActionHeartbeat` every `heartbeat_interval` meanwhile.
//! - Terminate: the instance waits in `Terminating:Wait` once Auto Scaling's target lifecycle
//!   state turns `Terminated`; heartbeats while kiln drains and stops, then `CONTINUE`.
//!
//! A call is retried while AWS answers with throttling, 5xx or not at all, within the hook's
//! `heartbeat_timeout` (past it the hook has timed out anyway; `crate::net` says how); any other
//! answer is final. A stop cuts that short: it waits at most [`STOP_GRACE`] for an answer being
//! sent ([`settle_at_stop`]). Every step (waiting, sending CONTINUE or ABANDON, answered, gave
//! up, skipped) is a [`HookState`] in `kiln status` and a line in the log, with AWS's code on an
//! error.

use super::{is_final, set_hook, update};
use crate::aws::{AUTOSCALING, Api, AwsClient, CallError, CredentialSource, Region};
use crate::config::{Config, LifecycleConfig, MetadataConfig, UserDataFormat};
use crate::metadata::{AUTOSCALING_GROUP_TAG, Identity, Metadata};
use crate::net::retry::{self, Backoff, GaveUp, Outcome, Retrying, Verdict};
use crate::state::{HookState, HookStatus, HooksStatus, LbState, Phase, Shared, now_ms};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Pauses between two series of attempts of one call while AWS cannot be reached: `net`'s rule
/// at a call's pace (a series is itself up to [`crate::net::API_CALL_BUDGET`] of retries).
const SERIES_PAUSES: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// How long a stop waits for an answer being sent to a hook before it gives the answer up. One
/// request to the regional Auto Scaling API answers in tens of milliseconds, so an answer that
/// was about to go through does; one AWS throttles or does not answer would not within this
/// either, and the hook's own timeout then gives the group its `DefaultResult`. No stop of kiln
/// (systemd's, the machine's shutdown) waits longer on AWS than this.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Launch,
    Terminate,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transition::Launch => "launch",
            Transition::Terminate => "terminate",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookResult {
    Continue,
    Abandon,
}

impl HookResult {
    fn as_str(self) -> &'static str {
        match self {
            HookResult::Continue => "CONTINUE",
            HookResult::Abandon => "ABANDON",
        }
    }

    /// The hook's state while this answer is being sent.
    fn sending(self) -> HookState {
        match self {
            HookResult::Continue => HookState::SendingContinue,
            HookResult::Abandon => HookState::SendingAbandon,
        }
    }

    /// The hook's state once this answer was accepted.
    fn answered(self) -> HookState {
        match self {
            HookResult::Continue => HookState::Continued,
            HookResult::Abandon => HookState::Abandoned,
        }
    }

    /// The answer a state is sending, if it is sending one.
    fn being_sent(state: HookState) -> Option<HookResult> {
        match state {
            HookState::SendingContinue => Some(HookResult::Continue),
            HookState::SendingAbandon => Some(HookResult::Abandon),
            _ => None,
        }
    }
}

impl fmt::Display for HookResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hooks of this instance's group, ready to answer.
pub struct Hooks {
    api: Api,
    group: String,
    instance_id: String,
    launch: Option<String>,
    terminate: Option<String>,
    heartbeat_every: Duration,
    /// The hooks' `HeartbeatTimeout`: no call is worth retrying past it.
    bound: Duration,
    shared: Arc<Shared>,
}

/// The answer of an action without a result (`CompleteLifecycleAction`,
/// `RecordLifecycleActionHeartbeat`): whatever it holds is ignored.
#[derive(serde::Deserialize)]
struct Answered {}

/// Shows the hooks in status and builds them; None (the reason in status and the log) when
/// they cannot be answered on this instance.
pub(super) fn start(
    config: &Config,
    lifecycle: &LifecycleConfig,
    metadata: &Metadata,
    shared: &Arc<Shared>,
) -> Option<Arc<Hooks>> {
    if !lifecycle.has_hooks() {
        return None;
    }
    let idle = |name: &Option<String>| {
        name.as_ref().map(|name| HookStatus {
            name: name.clone(),
            state: HookState::Idle,
            detail: None,
            heartbeats: 0,
            since_ms: now_ms(),
        })
    };
    let mut status = HooksStatus {
        group: None,
        problem: None,
        launch: idle(&lifecycle.launch_hook),
        terminate: idle(&lifecycle.terminate_hook),
    };
    let hooks = match Hooks::new(config, lifecycle, metadata, shared.clone()) {
        Ok(hooks) => {
            status.group = Some(hooks.group.clone());
            Some(Arc::new(hooks))
        }
        Err(problem) => {
            tracing::error!("lifecycle: the Auto Scaling hooks cannot be answered: {problem}");
            shared.event("error", format!("lifecycle hooks: {problem}"));
            status.problem = Some(problem);
            None
        }
    };
    update(shared, |l| l.hooks = Some(status));
    hooks
}

impl Hooks {
    fn new(
        config: &Config,
        lifecycle: &LifecycleConfig,
        metadata: &Metadata,
        shared: Arc<Shared>,
    ) -> Result<Hooks, String> {
        let instance_id = metadata
            .facts
            .instance_id
            .clone()
            .ok_or("the instance's metadata gives no instance id")?;
        let group = lifecycle
            .group
            .clone()
            .or_else(|| metadata.tags.get(AUTOSCALING_GROUP_TAG).cloned())
            .ok_or_else(|| {
                format!(
                    "no Auto Scaling group: set [lifecycle] group, or allow tags in instance metadata (tag {AUTOSCALING_GROUP_TAG})"
                )
            })?;
        check_names(&group, lifecycle, &instance_id)?;
        let region = region(metadata)?;
        let identity = Identity::from_config(&config.metadata).map_err(|e| e.to_string())?;
        let credentials = CredentialSource::from_env_or(identity)?;
        let api = AwsClient::new(credentials)?.api(&AUTOSCALING, &region, lifecycle.endpoint.as_deref())?;
        Ok(Hooks {
            api,
            group,
            instance_id,
            launch: lifecycle.launch_hook.clone(),
            terminate: lifecycle.terminate_hook.clone(),
            heartbeat_every: lifecycle.heartbeat_every(),
            bound: lifecycle.heartbeat_timeout.get(),
            shared,
        })
    }

    pub(super) fn has_launch(&self) -> bool {
        self.launch.is_some()
    }

    fn name(&self, transition: Transition) -> Option<&str> {
        match transition {
            Transition::Launch => self.launch.as_deref(),
            Transition::Terminate => self.terminate.as_deref(),
        }
    }

    fn set(&self, transition: Transition, state: HookState, detail: Option<String>) {
        set_hook(&self.shared, transition == Transition::Terminate, |h| {
            if h.state != state {
                h.since_ms = now_ms();
            }
            h.state = state;
            h.detail = detail;
        });
    }

    /// One call about this instance on `hook`.
    async fn call(
        &self,
        action: &str,
        hook: &str,
        result: Option<HookResult>,
        deadline: Instant,
    ) -> Result<(), CallError> {
        let mut params = vec![
            ("AutoScalingGroupName", self.group.clone()),
            ("LifecycleHookName", hook.to_string()),
            ("InstanceId", self.instance_id.clone()),
        ];
        if let Some(result) = result {
            params.push(("LifecycleActionResult", result.as_str().to_string()));
        }
        let _: Answered = self.api.query(action, &params, deadline).await?;
        Ok(())
    }

    /// `CompleteLifecycleAction` (`why`: for the log and status), retried within the hook's
    /// timeout while AWS cannot answer: series of calls of [`crate::net::API_CALL_BUDGET`] (the
    /// AWS client retries inside each), [`SERIES_PAUSES`] apart. Returns what happened, e.g.
    /// `terminate hook kiln-terminate: CONTINUE sent`.
    pub async fn complete(&self, transition: Transition, result: HookResult, why: &str) -> String {
        let Some(hook) = self.name(transition) else {
            return format!("no {transition} hook");
        };
        tracing::info!("lifecycle: {transition} hook {hook}: sending {result} ({why})");
        self.set(transition, result.sending(), Some(why.to_string()));
        let bound = Instant::now() + self.bound;
        let attempt = || {
            let deadline = (Instant::now() + crate::net::API_CALL_BUDGET).min(bound);
            self.call("CompleteLifecycleAction", hook, Some(result), deadline)
        };
        let classify = |called: &Result<(), CallError>| match called {
            Err(e) if e.is_transient() => Verdict::Retry(e.to_string()),
            _ => Verdict::Final,
        };
        let waiting = |r: &Retrying<'_>| {
            let next = crate::net::millis(r.pause);
            tracing::warn!(
                "lifecycle: {transition} hook {hook}: {result} not sent yet: {}; sending again in {next}",
                r.reason
            );
            let detail = format!(
                "{result} not sent yet: {} (attempt {}, next in {next})",
                r.reason, r.attempt
            );
            self.set(transition, result.sending(), Some(detail));
        };
        let (error, nothing) = match retry::until(bound, SERIES_PAUSES, attempt, classify, waiting).await {
            Outcome::Final(Ok(())) => return self.sent(transition, hook, result),
            Outcome::Final(Err(e))
            | Outcome::GaveUp(GaveUp {
                last: Some((Err(e), _)),
                ..
            }) => (e.to_string(), nothing_waiting(&e)),
            Outcome::GaveUp(gave_up) => (gave_up.reason().to_string(), false),
        };
        match nothing {
            true => self.skipped(transition, hook, &error),
            false => self.not_sent(transition, hook, result, &error),
        }
    }

    /// `CONTINUE sent`: in the log, the events and the hook's state.
    fn sent(&self, transition: Transition, hook: &str, result: HookResult) -> String {
        let line = format!("{transition} hook {hook}: {result} sent");
        tracing::info!("lifecycle: {line} (group {})", self.group);
        self.shared.event("info", line.clone());
        self.set(transition, result.answered(), Some(format!("{result} sent")));
        line
    }

    /// Refused because nothing waits (a kiln restarted on an instance already in service, a
    /// launch outside a group's scaling): nothing to answer, and nothing wrong.
    fn skipped(&self, transition: Transition, hook: &str, error: &str) -> String {
        let line = format!("{transition} hook {hook}: nothing was waiting ({error})");
        tracing::info!("lifecycle: {line}");
        self.set(
            transition,
            HookState::Skipped,
            Some(format!("nothing was waiting: {error}")),
        );
        line
    }

    /// Refused, or not sent within the hook's timeout.
    fn not_sent(&self, transition: Transition, hook: &str, result: HookResult, error: &str) -> String {
        let line = format!("{transition} hook {hook}: gave up: {result} not sent: {error}");
        tracing::error!("lifecycle: {line}");
        self.shared.event("error", line.clone());
        self.set(
            transition,
            HookState::GaveUp,
            Some(format!("{result} not sent: {error}")),
        );
        line
    }

    /// `RecordLifecycleActionHeartbeat` every `heartbeat_interval`, until aborted. A failed
    /// heartbeat is reported and tried again at the next one.
    async fn keep_alive(self: Arc<Self>, transition: Transition) {
        let Some(hook) = self.name(transition).map(str::to_string) else {
            return;
        };
        loop {
            tokio::time::sleep(self.heartbeat_every).await;
            let deadline = Instant::now() + crate::net::API_CALL_BUDGET.min(self.heartbeat_every);
            match self
                .call("RecordLifecycleActionHeartbeat", &hook, None, deadline)
                .await
            {
                Ok(()) => {
                    tracing::info!("lifecycle: {transition} hook {hook}: heartbeat recorded");
                    set_hook(&self.shared, transition == Transition::Terminate, |h| {
                        h.heartbeats += 1;
                    });
                }
                Err(e) => {
                    tracing::warn!("lifecycle: {transition} hook {hook}: heartbeat failed: {e}");
                    self.shared
                        .event("warn", format!("{transition} hook {hook}: heartbeat failed: {e}"));
                    set_hook(&self.shared, transition == Transition::Terminate, |h| {
                        if !is_final(h.state) {
                            h.detail = Some(format!("heartbeat failed: {e}"));
                        }
                    });
                }
            }
        }
    }

    /// Auto Scaling is terminating the instance: the terminate hook waits for kiln. Heartbeats
    /// until aborted (None without a terminate hook).
    pub(super) fn terminate_waits(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        self.terminate.as_ref()?;
        self.waiting(
            Transition::Terminate,
            "the instance waits for kiln to drain and stop",
        );
        Some(tokio::spawn(self.clone().keep_alive(Transition::Terminate)))
    }

    /// The instance waits on the hook (`Pending:Wait`, `Terminating:Wait`) for `what`.
    fn waiting(&self, transition: Transition, what: &str) {
        if let Some(hook) = self.name(transition) {
            tracing::info!("lifecycle: {transition} hook {hook}: waiting: {what}");
        }
        self.set(transition, HookState::Waiting, Some(what.to_string()));
    }

    /// After the drain and the stop: `CONTINUE` on the terminate hook (None without one).
    pub(super) async fn complete_terminate(&self) -> Option<String> {
        self.terminate.as_ref()?;
        let why = "every service stopped after the leave";
        Some(
            self.complete(Transition::Terminate, HookResult::Continue, why)
                .await,
        )
    }
}

/// The instance's region, else `AWS_REGION` / `AWS_DEFAULT_REGION` of kiln's environment; an
/// error names where the one that is not a region came from.
fn region(metadata: &Metadata) -> Result<Region, String> {
    let kiln_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (text, from) = None
        .or_else(|| {
            let region = metadata.facts.region.clone().filter(|r| !r.is_empty());
            region.map(|r| (r, "the instance's region (metadata)"))
        })
        .or_else(|| kiln_env("AWS_REGION").map(|r| (r, "AWS_REGION")))
        .or_else(|| kiln_env("AWS_DEFAULT_REGION").map(|r| (r, "AWS_DEFAULT_REGION")))
        .ok_or("no region: the instance's metadata gives none, nor AWS_REGION")?;
    Region::parse(&text).map_err(|e| format!("{from} is {e}"))
}

/// The names kiln sends Auto Scaling, checked against its grammar before any call: the group
/// (from the config or the instance's tags: 1 to 255 characters, no control character), the
/// hooks (1 to 255 of `A-Za-z0-9-_/`) and the instance id (`i-` and hex digits).
fn check_names(group: &str, lifecycle: &LifecycleConfig, instance_id: &str) -> Result<(), String> {
    if group.is_empty() || group.chars().count() > 255 || group.chars().any(char::is_control) {
        return Err(
            "the Auto Scaling group name is not one (1 to 255 characters, none a control character)".into(),
        );
    }
    let hook_ok = |h: &str| {
        (1..=255).contains(&h.len())
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/'))
    };
    for (key, hook) in [
        ("launch_hook", &lifecycle.launch_hook),
        ("terminate_hook", &lifecycle.terminate_hook),
    ] {
        if hook.as_deref().is_some_and(|h| !hook_ok(h)) {
            return Err(format!(
                "[lifecycle] {key} is not a hook name (1 to 255 of A-Z a-z 0-9 - _ /)"
            ));
        }
    }
    let id_ok = instance_id
        .strip_prefix("i-")
        .is_some_and(|hex| (1..=32).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !id_ok {
        return Err("the instance's id (metadata) is not an EC2 instance id (i-...)".into());
    }
    Ok(())
}

/// AWS's answer when no lifecycle action of this instance waits on the hook. Its code,
/// `ValidationError`, covers every malformed call too; only the message tells them apart.
fn nothing_waiting(e: &CallError) -> bool {
    match e {
        CallError::Aws { error, .. } => {
            error.code == "ValidationError" && error.message.starts_with("No active Lifecycle Action found")
        }
        CallError::Failed { .. } => false,
    }
}

/// How the wait under the launch hook ended.
enum Launched {
    Ready,
    Failed(String),
    Leaving,
}

/// The launch hook: heartbeats while the services start; `CONTINUE` once ready (and registered
/// when `with_lb`), `ABANDON` when the instance fails or is not ready within `ready_timeout`.
/// Stopping first (a leave, SIGTERM) answers nothing: the instance is going away anyway.
pub(super) async fn answer_launch(hooks: Arc<Hooks>, ready_timeout: Duration, with_lb: bool) {
    let waiting_for = if with_lb {
        "every service to be ready and registered"
    } else {
        "every service to be ready"
    };
    hooks.waiting(Transition::Launch, &format!("waiting for {waiting_for}"));
    let beats = tokio::spawn(hooks.clone().keep_alive(Transition::Launch));
    let mut snapshots = hooks.shared.subscribe();
    let waited = tokio::time::timeout(ready_timeout, async {
        loop {
            let s = snapshots.borrow_and_update().clone();
            let registered = !with_lb || s.lb.as_ref().is_some_and(|lb| lb.state == LbState::Registered);
            match s.phase {
                Phase::Ready if registered => return Launched::Ready,
                Phase::Failed => return Launched::Failed(s.reason.clone().unwrap_or_default()),
                Phase::Stopping | Phase::Stopped => return Launched::Leaving,
                _ => {}
            }
            if snapshots.changed().await.is_err() {
                return Launched::Leaving;
            }
        }
    })
    .await;
    beats.abort();
    let (result, why) = match waited {
        Ok(Launched::Ready) if with_lb => (
            HookResult::Continue,
            "every service is ready and registered".into(),
        ),
        Ok(Launched::Ready) => (HookResult::Continue, "every service is ready".into()),
        Ok(Launched::Failed(reason)) => (HookResult::Abandon, format!("the instance failed: {reason}")),
        Ok(Launched::Leaving) => {
            tracing::info!("lifecycle: launch hook: not answered: the instance stopped first");
            let detail = "not answered: the instance stopped first".to_string();
            return hooks.set(Transition::Launch, HookState::Skipped, Some(detail));
        }
        Err(_) => {
            let why = format!(
                "not ready within ready_timeout ({})",
                humantime::format_duration(ready_timeout)
            );
            hooks.shared.event("error", format!("lifecycle: {why}: ABANDON"));
            (HookResult::Abandon, why)
        }
    };
    hooks.complete(Transition::Launch, result, &why).await;
}

/// A refused boot under a launch hook: `ABANDON`, so the group replaces the instance at once.
/// `metadata` is what the boot fetched, if it got that far; otherwise the instance's identity is
/// fetched here (without user-data, which may be what was refused).
pub async fn abandon_refused_boot(config: Config, metadata: Option<Metadata>, shared: Arc<Shared>) {
    let Some(lifecycle) = config.lifecycle.as_ref().filter(|l| l.launch_hook.is_some()) else {
        return;
    };
    let metadata = match metadata {
        Some(metadata) => metadata,
        None => {
            let identity_only = MetadataConfig {
                user_data: UserDataFormat::None,
                ..config.metadata.clone()
            };
            match crate::metadata::fetch(&identity_only).await {
                Ok(metadata) => metadata,
                Err(e) => {
                    let problem = format!("cannot answer ABANDON: {e}");
                    tracing::error!("lifecycle: launch hook: {problem}");
                    update(&shared, |l| {
                        l.hooks.get_or_insert_with(HooksStatus::default).problem = Some(problem)
                    });
                    return;
                }
            }
        }
    };
    if let Some(hooks) = start(&config, lifecycle, &metadata, &shared) {
        let why = "the boot was refused";
        hooks.complete(Transition::Launch, HookResult::Abandon, why).await;
    }
}

/// A stop: an answer being sent to a hook gets at most [`STOP_GRACE`] more to go through. One
/// still being sent then is given up, in status and the log; the caller then drops the task
/// sending it (nothing runs in between on kiln's one thread).
pub async fn settle_at_stop(shared: &Shared) {
    let mut snapshots = shared.subscribe();
    let settled = tokio::time::timeout(STOP_GRACE, snapshots.wait_for(|s| being_sent(s).is_empty())).await;
    if matches!(settled, Ok(Ok(_))) {
        return;
    }
    let grace = crate::net::millis(STOP_GRACE);
    for (transition, hook, result) in being_sent(&shared.snapshot()) {
        let why = format!(
            "{result} not sent: kiln stopped before AWS answered (a stop waits {grace} at most for a hook's answer)"
        );
        set_hook(shared, transition == Transition::Terminate, |h| {
            h.state = HookState::GaveUp;
            h.detail = Some(why.clone());
            h.since_ms = now_ms();
        });
        let line = format!("{transition} hook {hook}: gave up: {why}");
        tracing::error!("lifecycle: {line}");
        shared.event("error", line);
    }
}

/// The hooks with an answer being sent: which, its name, and the answer.
fn being_sent(snapshot: &crate::state::Snapshot) -> Vec<(Transition, String, HookResult)> {
    let Some(hooks) = snapshot.lifecycle.as_ref().and_then(|l| l.hooks.as_ref()) else {
        return Vec::new();
    };
    [
        (Transition::Launch, &hooks.launch),
        (Transition::Terminate, &hooks.terminate),
    ]
    .into_iter()
    .filter_map(|(transition, hook)| {
        let hook = hook.as_ref()?;
        Some((transition, hook.name.clone(), HookResult::being_sent(hook.state)?))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An endpoint answering `503` to the first `failures` requests, then an empty answer.
    async fn endpoint(failures: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let n = counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buf[..read]),
                        }
                    }
                    let (status, body) = match n < failures {
                        true => ("503 Service Unavailable", "unavailable"),
                        false => ("200 OK", "<CompleteLifecycleActionResponse/>"),
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, hits)
    }

    fn hooks(url: &str, bound: Duration) -> (Hooks, Arc<Shared>) {
        let shared = Shared::new();
        let status = HooksStatus {
            launch: Some(HookStatus {
                name: "kiln-launch".into(),
                state: HookState::Idle,
                detail: None,
                heartbeats: 0,
                since_ms: 0,
            }),
            ..HooksStatus::default()
        };
        update(&shared, |l| l.hooks = Some(status));
        let credentials = CredentialSource::Static(aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "not-a-real-secret",
            None,
            None,
            "test",
        ));
        let api = AwsClient::new(credentials)
            .unwrap()
            .api(&AUTOSCALING, &Region::parse("us-east-1").unwrap(), Some(url))
            .unwrap();
        let hooks = Hooks {
            api,
            group: "web".into(),
            instance_id: "i-0abc".into(),
            launch: Some("kiln-launch".into()),
            terminate: None,
            heartbeat_every: Duration::from_secs(60),
            bound,
            shared: shared.clone(),
        };
        (hooks, shared)
    }

    fn launch(shared: &Shared) -> HookStatus {
        let snapshot = shared.snapshot();
        let hooks = snapshot.lifecycle.as_ref().unwrap().hooks.as_ref().unwrap();
        hooks.launch.clone().unwrap()
    }

    #[tokio::test]
    async fn an_unavailable_endpoint_is_retried_until_it_answers() {
        let (url, hits) = endpoint(3).await;
        let (hooks, shared) = hooks(&url, Duration::from_secs(30));
        let done = hooks
            .complete(Transition::Launch, HookResult::Continue, "a test")
            .await;
        assert_eq!(done, "launch hook kiln-launch: CONTINUE sent");
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        assert_eq!(launch(&shared).state, HookState::Continued);
    }

    #[tokio::test]
    async fn a_call_that_keeps_failing_is_reported_at_its_bound() {
        let (url, hits) = endpoint(usize::MAX).await;
        let (hooks, shared) = hooks(&url, Duration::from_secs(2));
        let done = hooks
            .complete(Transition::Launch, HookResult::Continue, "a test")
            .await;
        assert!(
            done.starts_with("launch hook kiln-launch: gave up: CONTINUE not sent: "),
            "{done}"
        );
        assert!(hits.load(Ordering::SeqCst) > 1, "not retried");
        let hook = launch(&shared);
        assert_eq!(hook.state, HookState::GaveUp);
        let detail = hook.detail.unwrap();
        assert!(
            detail.contains("HTTP 503") && detail.contains("gave up at the deadline after"),
            "{detail}"
        );
        assert!(!detail.contains("not-a-real-secret"), "{detail}");
    }
}
