//! Leave before the cloud takes the instance.
//!
//! The cloud often knows minutes ahead that an instance is going away, and its fleet engine waits
//! for a word from the instance before it moves on. This room hears the warning and gives the
//! word; it never drives the supervisor or the load balancer itself:
//!
//! - Notices (one file per cloud behind [`NoticeSource`]: `ec2.rs`, `gce.rs`, `azure.rs`) are
//!   read through the metadata room's client and turned into typed [`Notice`]s. What each kind
//!   does is `[lifecycle]`'s `on_*` keys: `leave` asks the boot walk to leave through the same
//!   stop path SIGTERM takes (readiness off, drain, deregister, services stopped in order), then
//!   kiln waits for the power-off, explaining itself; `report` shows it with the time left.
//! - Once the services are stopped after a leave, the notices that asked for an answer get it:
//!   Azure's events are started (`StartRequests`), Auto Scaling's terminate hook `CONTINUE`.
//! - The launch hook (`autoscaling.rs`) is answered `CONTINUE` once the instance is ready and
//!   registered, `ABANDON` when it failed or was refused, with heartbeats meanwhile.
//!
//! A notice that cannot be read or understood is reported, never acted on half-way. Leaving is
//! final: the instance does not rejoin (the boot walk also refuses a restart of kiln after it).

mod autoscaling;
mod azure;
mod dates;
mod ec2;
mod gce;

pub use autoscaling::{Hooks, STOP_GRACE, abandon_refused_boot, settle_at_stop};

use crate::config::{Config, LifecycleConfig, NoticeAction};
use crate::metadata::{Metadata, MetadataWatch};
use crate::metrics::Recorder;
use crate::state::{
    HookState, LeaveStatus, LeaveStep, LeaveStepKind, LifecycleStatus, NoticeKind, NoticeStatus, OnNotice,
    Shared, now_ms,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the platform needs to hear once kiln has left for a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Nothing: the platform goes ahead at its time.
    None,
    /// Azure: start the event now (`POST {"StartRequests": [{"EventId": ...}]}`).
    StartEvent(String),
    /// Auto Scaling: `CompleteLifecycleAction CONTINUE` on the terminate hook.
    TerminateHook,
}

/// One notice of the platform about this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    /// The same across looks (an event id, or the kind and its time): acted on once.
    pub id: String,
    /// What the platform said, for people (never more than it said).
    pub detail: String,
    /// When it takes effect, when the platform says.
    pub due: Option<SystemTime>,
    pub answer: Answer,
}

/// One look at the platform: the notices in force now, and what could not be read or
/// understood (reported, not acted on).
#[derive(Debug, Default)]
pub struct Look {
    pub notices: Vec<Notice>,
    pub problems: Vec<String>,
    /// EC2: Auto Scaling's target lifecycle state, as read.
    pub target_state: Option<String>,
}

impl Look {
    /// Every text of the look as kiln keeps it ([`crate::terminal::peer_text`]): a notice's id
    /// and detail, the problems and the target state all come from the platform's answers, and
    /// reach status, the log and the leave's reason. The one place each cloud's look goes
    /// through.
    fn bounded(self) -> Look {
        use crate::terminal::peer_text;
        let notices = self
            .notices
            .into_iter()
            .map(|n| Notice {
                id: peer_text(&n.id),
                detail: peer_text(&n.detail),
                answer: match n.answer {
                    Answer::StartEvent(id) => Answer::StartEvent(peer_text(&id)),
                    other => other,
                },
                ..n
            })
            .collect();
        Look {
            notices,
            problems: self.problems.iter().map(|p| peer_text(p)).collect(),
            target_state: self.target_state.as_deref().map(peer_text),
        }
    }
}

/// Which notices to ask for: those whose `on_*` is not `ignore`.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub spot: bool,
    pub preemption: bool,
    pub termination: bool,
    pub rebalance: bool,
    pub maintenance: bool,
}

impl Wanted {
    fn of(config: &LifecycleConfig) -> Wanted {
        let on = |action: NoticeAction| action != NoticeAction::Ignore;
        Wanted {
            spot: on(config.on_spot_interruption),
            preemption: on(config.on_preemption),
            termination: on(config.on_termination),
            rebalance: on(config.on_rebalance),
            maintenance: on(config.on_maintenance),
        }
    }

    pub fn kind(&self, kind: NoticeKind) -> bool {
        match kind {
            NoticeKind::SpotInterruption => self.spot,
            NoticeKind::Preemption => self.preemption,
            NoticeKind::Termination => self.termination,
            NoticeKind::Rebalance => self.rebalance,
            NoticeKind::Maintenance => self.maintenance,
        }
    }
}

/// One cloud's notices.
#[async_trait::async_trait]
pub trait NoticeSource: Send + Sync {
    /// Where and how notices are read, e.g. `ec2 instance metadata, every 5s`.
    fn describe(&self) -> String;

    /// Waits for the next look (a poll period, or a change for long polls), then looks.
    /// Cancel-safe: dropping it loses nothing.
    async fn look(&mut self) -> Look;

    /// Gives `notice`'s answer to the platform, when the platform takes it here (Azure).
    /// Ok is what was done, for status and the log.
    async fn answer(&self, _notice: &Notice) -> Result<String, String> {
        Ok(String::new())
    }
}

/// A request to leave, from a notice, to the boot walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveRequest {
    /// e.g. `spot interruption: terminate at 2024-06-01T12:00:00Z`.
    pub reason: String,
    pub kind: NoticeKind,
}

/// The running part of `[lifecycle]`: the notice watch and the launch hook.
pub struct Lifecycle {
    stopped: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Lifecycle {
    /// Starts what `[lifecycle]` asks for on this instance (None without the section).
    /// `leave` hands a leave request to the boot walk; each notice is counted in `recorder`.
    pub fn start(
        config: &Config,
        metadata: &Metadata,
        shared: Arc<Shared>,
        recorder: Arc<Recorder>,
        leave: impl Fn(LeaveRequest) + Send + Sync + 'static,
    ) -> Option<Lifecycle> {
        let lifecycle = config.lifecycle.as_ref()?;
        shared.update(|s| s.lifecycle = Some(LifecycleStatus::default()));
        let hooks = autoscaling::start(config, lifecycle, metadata, &shared);
        let mut tasks = Vec::new();
        if let Some(hooks) = &hooks
            && hooks.has_launch()
        {
            tasks.push(tokio::spawn(autoscaling::answer_launch(
                hooks.clone(),
                lifecycle.ready_timeout.get(),
                config.lb.plan.is_some(),
            )));
        }
        let (stopped, stopped_rx) = watch::channel(false);
        match open_source(lifecycle, &config.metadata) {
            Ok(Some(source)) => {
                let watcher = Watcher {
                    policy: lifecycle.clone(),
                    shared,
                    recorder,
                    leave: Box::new(leave),
                    stopped: stopped_rx,
                    hooks,
                };
                tasks.push(tokio::spawn(watcher.run(source)));
            }
            Ok(None) => shared.update(|s| {
                if let Some(l) = s.lifecycle.as_mut() {
                    l.problem = Some(format!(
                        "no interruption notices on provider {:?}",
                        metadata.facts.provider
                    ));
                }
            }),
            Err(e) => {
                tracing::error!("lifecycle: cannot watch notices: {e}");
                shared.update(|s| {
                    if let Some(l) = s.lifecycle.as_mut() {
                        l.problem = Some(format!("cannot watch notices: {e}"));
                    }
                });
            }
        }
        Some(Lifecycle { stopped, tasks })
    }

    /// After a leave, once every service is stopped: the notices that asked for an answer get it.
    pub fn services_stopped(&self) {
        self.stopped.send_replace(true);
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The notice source of the instance's cloud; None where the cloud has none.
fn open_source(
    config: &LifecycleConfig,
    metadata: &crate::config::MetadataConfig,
) -> Result<Option<Box<dyn NoticeSource>>, String> {
    let wanted = Wanted::of(config);
    let every = config.poll_interval.get();
    Ok(match MetadataWatch::open(metadata).map_err(|e| e.to_string())? {
        Some(MetadataWatch::Ec2(imds)) => Some(Box::new(ec2::Ec2Notices::new(imds, every, wanted))),
        Some(MetadataWatch::Gce(server)) => Some(Box::new(gce::GceNotices::new(server, wanted))),
        Some(MetadataWatch::Azure(imds)) => Some(Box::new(azure::AzureNotices::new(imds, every, wanted))),
        None => None,
    })
}

/// Applies `[lifecycle]`'s `on_*` to what the source sees, for as long as kiln runs.
struct Watcher {
    policy: LifecycleConfig,
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    leave: Box<dyn Fn(LeaveRequest) + Send + Sync>,
    stopped: watch::Receiver<bool>,
    hooks: Option<Arc<Hooks>>,
}

/// What the watcher remembers between looks.
#[derive(Default)]
struct Memory {
    /// Notice id → when kiln first saw it (ms since the epoch).
    seen: HashMap<String, u64>,
    problems: Vec<String>,
    /// The leave was asked for.
    left: bool,
    answered: HashSet<String>,
    current: Vec<Notice>,
    /// The terminate hook's heartbeats, while it waits for kiln.
    terminate_heartbeats: Option<JoinHandle<()>>,
}

impl Drop for Memory {
    /// The watcher ends with kiln: so do the heartbeats it started.
    fn drop(&mut self) {
        if let Some(beats) = &self.terminate_heartbeats {
            beats.abort();
        }
    }
}

impl Watcher {
    async fn run(mut self, mut source: Box<dyn NoticeSource>) {
        let describe = source.describe();
        tracing::info!("lifecycle: watching notices ({describe})");
        self.update(|l| l.source = Some(describe));
        let wanted = Wanted::of(&self.policy);
        let watched: Vec<&'static str> = NoticeKind::ALL
            .into_iter()
            .filter(|&kind| wanted.kind(kind))
            .map(NoticeKind::name)
            .collect();
        self.recorder.lifecycle_notices_watched(&watched);
        let mut memory = Memory::default();
        loop {
            let stopped = *self.stopped.borrow();
            tokio::select! {
                look = source.look() => self.take(look, &mut memory),
                changed = self.stopped.changed(), if !stopped => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            if *self.stopped.borrow() && memory.left {
                self.answer_all(source.as_ref(), &mut memory).await;
            }
        }
    }

    /// Reports a look, and leaves for the first notice whose action is to leave now.
    fn take(&self, look: Look, memory: &mut Memory) {
        let look = look.bounded();
        let now = SystemTime::now();
        let now_ms = now_ms();
        if look.problems != memory.problems {
            for problem in look.problems.iter().filter(|p| !memory.problems.contains(p)) {
                tracing::warn!("lifecycle: {problem}");
                self.shared.event("warn", format!("lifecycle: {problem}"));
            }
            memory.problems = look.problems.clone();
        }
        let mut shown = Vec::new();
        let mut leave_for = None;
        for notice in &look.notices {
            let action = self.action(notice.kind);
            let deferred = action == NoticeAction::Leave && !self.due_to_leave(notice, now);
            let seen_ms = *memory.seen.entry(notice.id.clone()).or_insert_with(|| {
                let line = format!(
                    "notice: {}: {}",
                    notice.kind.describe(),
                    describe(notice, action, deferred, now)
                );
                tracing::warn!("lifecycle: {line}");
                self.shared.event("warn", line);
                self.recorder.lifecycle_notice(notice.kind.name());
                now_ms
            });
            if action == NoticeAction::Leave && !deferred && leave_for.is_none() {
                leave_for = Some((notice.clone(), seen_ms));
            }
            shown.push(NoticeStatus {
                kind: notice.kind,
                detail: notice.detail.clone(),
                seen_ms,
                due_ms: notice.due.map(ms),
                action: shown_action(action),
                deferred,
            });
        }
        self.update(|l| {
            l.notices = shown;
            l.problem = (!look.problems.is_empty()).then(|| look.problems.join("; "));
            l.target_state = look.target_state.clone();
        });
        if let Some(hooks) = &self.hooks
            && memory.terminate_heartbeats.is_none()
            && look.notices.iter().any(|n| n.answer == Answer::TerminateHook)
        {
            memory.terminate_heartbeats = hooks.terminate_waits();
        }
        memory.current = look.notices;
        if let (Some((notice, seen_ms)), false) = (leave_for, memory.left) {
            memory.left = true;
            self.ask_to_leave(&notice, seen_ms);
        }
    }

    fn ask_to_leave(&self, notice: &Notice, seen_ms: u64) {
        let reason = format!("{}: {}", notice.kind.describe(), notice.detail);
        tracing::warn!("lifecycle: leaving for a {reason}");
        self.shared.event("warn", format!("leaving: {reason}"));
        self.update(|l| {
            l.leave = Some(LeaveStatus {
                reason: reason.clone(),
                noticed_ms: seen_ms,
                steps: vec![LeaveStep {
                    step: LeaveStepKind::NoticeSeen,
                    at_ms: seen_ms,
                }],
            })
        });
        (self.leave)(LeaveRequest {
            reason,
            kind: notice.kind,
        });
    }

    /// Once stopped after a leave: every notice in force that kiln leaves for and that waits for
    /// an answer gets it, once.
    async fn answer_all(&self, source: &dyn NoticeSource, memory: &mut Memory) {
        let due: Vec<Notice> = memory
            .current
            .iter()
            .filter(|n| n.answer != Answer::None && self.action(n.kind) == NoticeAction::Leave)
            .filter(|n| !memory.answered.contains(&n.id))
            .cloned()
            .collect();
        for notice in due {
            memory.answered.insert(notice.id.clone());
            match &notice.answer {
                Answer::None => {}
                Answer::StartEvent(id) => match source.answer(&notice).await {
                    Ok(done) => step(&self.shared, LeaveStepKind::Answer(done)),
                    Err(e) => {
                        tracing::error!("lifecycle: cannot start event {id}: {e}");
                        self.shared
                            .event("error", format!("lifecycle: cannot start event {id}: {e}"));
                        step(
                            &self.shared,
                            LeaveStepKind::Answer(format!("event {id} not acknowledged: {e}")),
                        );
                    }
                },
                Answer::TerminateHook => {
                    if let Some(beats) = memory.terminate_heartbeats.take() {
                        beats.abort();
                    }
                    if let Some(hooks) = &self.hooks
                        && let Some(done) = hooks.complete_terminate().await
                    {
                        step(&self.shared, LeaveStepKind::Answer(done));
                    }
                }
            }
        }
    }

    fn action(&self, kind: NoticeKind) -> NoticeAction {
        let p = &self.policy;
        match kind {
            NoticeKind::SpotInterruption => p.on_spot_interruption,
            NoticeKind::Preemption => p.on_preemption,
            NoticeKind::Termination => p.on_termination,
            NoticeKind::Rebalance => p.on_rebalance,
            NoticeKind::Maintenance => p.on_maintenance,
        }
    }

    /// A maintenance is left for once it is due within `maintenance_leave_before` (or has no
    /// time: it is imminent); every other kind at once.
    fn due_to_leave(&self, notice: &Notice, now: SystemTime) -> bool {
        if notice.kind != NoticeKind::Maintenance {
            return true;
        }
        match notice.due {
            Some(due) => due <= now + self.policy.maintenance_leave_before.get(),
            None => true,
        }
    }

    fn update(&self, f: impl FnOnce(&mut LifecycleStatus)) {
        update(&self.shared, f);
    }
}

/// `terminate at 2024-06-01T12:00:00Z (1m52s left): leaving`.
fn describe(notice: &Notice, action: NoticeAction, deferred: bool, now: SystemTime) -> String {
    let left = match notice.due {
        Some(due) => match due.duration_since(now) {
            Ok(left) => format!(
                " ({} left)",
                humantime::format_duration(Duration::from_secs(left.as_secs()))
            ),
            Err(_) => " (due now)".into(),
        },
        None => String::new(),
    };
    let what = match (action, deferred) {
        (NoticeAction::Leave, false) => "leaving".to_string(),
        (NoticeAction::Leave, true) => {
            "reported; kiln leaves once it is due within maintenance_leave_before".into()
        }
        (NoticeAction::Report, _) => format!("reported ({} = \"report\")", key(notice.kind)),
        (NoticeAction::Ignore, _) => format!("ignored ({} = \"ignore\")", key(notice.kind)),
    };
    format!("{}{left}: {what}", notice.detail)
}

/// The action as status shows it.
fn shown_action(action: NoticeAction) -> OnNotice {
    match action {
        NoticeAction::Leave => OnNotice::Leave,
        NoticeAction::Report => OnNotice::Report,
        NoticeAction::Ignore => OnNotice::Ignore,
    }
}

/// The `[lifecycle]` key of a kind.
fn key(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::SpotInterruption => "on_spot_interruption",
        NoticeKind::Preemption => "on_preemption",
        NoticeKind::Termination => "on_termination",
        NoticeKind::Rebalance => "on_rebalance",
        NoticeKind::Maintenance => "on_maintenance",
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn update(shared: &Shared, f: impl FnOnce(&mut LifecycleStatus)) {
    shared.update(|s| f(s.lifecycle.get_or_insert_with(LifecycleStatus::default)));
}

/// A step of the leave, in status and the log with its time since the notice
/// (`out of the load balancer 0.21s after the notice`). Nothing when kiln is not leaving.
pub fn step(shared: &Shared, what: LeaveStepKind) {
    let at_ms = now_ms();
    let mut since = None;
    update(shared, |l| {
        if let Some(leave) = l.leave.as_mut() {
            since = Some(at_ms.saturating_sub(leave.noticed_ms));
            leave.steps.push(LeaveStep {
                step: what.clone(),
                at_ms,
            });
        }
    });
    if let Some(since) = since {
        tracing::info!("lifecycle: {what} {:.2}s after the notice", since as f64 / 1000.0);
    }
}

/// The hook's state in status, for `autoscaling`.
fn set_hook(shared: &Shared, terminate: bool, f: impl FnOnce(&mut crate::state::HookStatus)) {
    update(shared, |l| {
        let hooks = l.hooks.get_or_insert_with(Default::default);
        let hook = if terminate {
            hooks.terminate.as_mut()
        } else {
            hooks.launch.as_mut()
        };
        if let Some(hook) = hook {
            f(hook);
        }
    });
}

/// Whether `state` is an answer (nothing more will happen to the hook).
fn is_final(state: HookState) -> bool {
    matches!(
        state,
        HookState::Continued | HookState::Abandoned | HookState::GaveUp | HookState::Skipped
    )
}
