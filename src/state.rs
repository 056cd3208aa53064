//! The instance's live state, as one snapshot that the boot walk and the supervisor update and
//! that `/readyz`, the control socket and `kiln status` read. Values of the environment never
//! enter it: only names and where they came from.
//!
//! The snapshot is a schema, the one every room writes into and reads from, so it imports none
//! of them: it has its own types for what it shows (the instance's facts, what a notice makes
//! kiln do, the log's figures), and the rooms that produce those convert into them.
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How many recent events the snapshot keeps.
const EVENTS_KEPT: usize = 100;

/// Where the instance is in its life. `kiln status` maps it to its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Phase {
    /// Before services start: seal, metadata, environment.
    Booting,
    /// Services are starting; not all ready yet.
    Starting,
    /// Every service is ready.
    Ready,
    /// Was ready; a service is not ready now (crash, probe failure).
    Degraded,
    /// The boot was refused (bad metadata, environment or seal). Nothing was started.
    Failed,
    /// Draining and stopping.
    Stopping,
    Stopped,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Booting,
        Phase::Starting,
        Phase::Ready,
        Phase::Degraded,
        Phase::Failed,
        Phase::Stopping,
        Phase::Stopped,
    ];

    /// The exit code of `kiln status`: 0 ready, 1 failed, 2 anything in between.
    pub fn exit_code(self) -> u8 {
        match self {
            Phase::Ready => 0,
            Phase::Failed => 1,
            _ => 2,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    pub pid: u32,
    /// Wall clock of kiln's start, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    pub phase: Phase,
    /// Why the instance is not ready (or why the boot failed); None when ready.
    pub reason: Option<String>,
    pub services: Vec<UnitStatus>,
    pub timeline: Vec<TimelineEntry>,
    pub events: VecDeque<EventEntry>,
    /// Control-socket verbs refused because the instance is immutable.
    pub refused_mutations: u64,
    /// Facts of the instance (no secrets), once fetched.
    pub instance: Option<InstanceStatus>,
    /// Which datasource the metadata came from and how kiln chose it, once fetched.
    #[serde(default)]
    pub provider: Option<ProviderStatus>,
    /// Azure: the provisioning report to the WireServer; None elsewhere.
    #[serde(default)]
    pub check_in: Option<CheckInStatus>,
    /// Names of the frozen environment and where each came from; never values.
    pub env: Vec<EnvVarSource>,
    /// Load balancer membership, when `[lb]` is configured.
    pub lb: Option<LbStatus>,
    /// The integrity seal, when `[seal]` is configured.
    pub seal: Option<SealStatus>,
    /// Secret references, when `[secrets]` is configured.
    #[serde(default)]
    pub secrets: Option<SecretsStatus>,
    /// Auto Scaling hooks, platform notices and the leave, when `[lifecycle]` is configured.
    #[serde(default)]
    pub lifecycle: Option<LifecycleStatus>,
    /// Things a person should know that do not change readiness (metadata changed since boot...).
    pub warnings: Vec<String>,
    /// How the services' processes are held (a cgroup per unit, or process groups and why);
    /// None until the boot has looked.
    #[serde(default)]
    pub containment: Option<Containment>,
    /// kiln's own log: its sink and the lines it dropped. Filled in when status is asked.
    #[serde(default)]
    pub log: LogStatus,
    /// The health port, agent port and control socket: connections open, cap, shed at the cap.
    /// Filled in when status is asked.
    #[serde(default)]
    pub listeners: Vec<ListenerStatus>,
    /// php-fpm's pools, from their status pages (`[service.phpfpm_status]`). Read when status or
    /// a scrape asks.
    #[serde(default)]
    pub php_fpm: Vec<PhpFpmStatus>,
}

/// Facts about the instance, as the metadata gave them; None where the provider has no answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// `ec2`, `gce`, ... as in `[metadata] provider`.
    pub provider: String,
    pub instance_id: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub local_ipv4: Option<String>,
    pub hostname: Option<String>,
}

/// The datasource kiln read, and how it came to read that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStatus {
    /// `ec2`, `azure`, ... as in `[metadata] provider` (`openstack` for a config drive).
    pub name: String,
    pub found: ProviderFound,
}

/// How kiln chose the datasource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum ProviderFound {
    /// `[metadata] provider` names it.
    Config,
    /// `provider = "auto"`: this DMI field (`/sys/class/dmi/id/<field>`) had this value.
    Dmi { field: String, value: String },
    /// `provider = "auto"`: `/sys/hypervisor/uuid` starts with `ec2` (older Xen EC2 instances).
    HypervisorUuid,
    /// A config drive (a filesystem labelled `config-2`), preferred to the metadata service.
    ConfigDrive { device: String, filesystem: String },
}

/// Azure's provisioning report: what kiln tells the WireServer and how that went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInStatus {
    /// What is reported: `Ready`, or `NotReady` for a refused boot.
    pub report: HealthReport,
    pub outcome: CheckInOutcome,
    /// Requests sent so far (goal state and health report, retries included).
    pub attempts: u32,
    /// The goal state incarnation the accepted report answered.
    pub incarnation: Option<String>,
    /// The last retry's reason while sending, why it failed, or why it is off.
    pub detail: Option<String>,
    /// When the outcome last changed, ms since the Unix epoch.
    pub since_ms: u64,
}

/// The two states a provisioning report can carry, as the WireServer spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthReport {
    Ready,
    NotReady,
}

impl fmt::Display for HealthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthReport::Ready => "Ready",
            HealthReport::NotReady => "NotReady",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckInOutcome {
    /// Being sent (the first attempt, or retries until the deadline).
    Sending,
    /// The WireServer took it.
    Accepted,
    /// Given up (the deadline passed, or a final refusal); the detail says why.
    Failed,
    /// `[metadata] check_in = false`: nothing is reported.
    Off,
}

/// Where kiln's own log goes and what it lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStatus {
    /// `stderr` or `journald`; empty before logging starts.
    pub sink: String,
    /// Events dropped because the sink did not take them fast enough.
    pub dropped_lines: u64,
}

/// How kiln holds each unit's processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Containment {
    pub kind: ContainmentKind,
    /// The cgroup every unit's cgroup is a child of (`…/services`), with cgroups.
    pub cgroup: Option<String>,
    /// Controllers enabled in each unit's cgroup (`memory`, `pids`, `cpu`), with cgroups.
    pub controllers: Vec<String>,
    /// Why there are no cgroups, with process groups.
    pub why: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainmentKind {
    /// A cgroup v2 per unit: nothing a unit forks escapes its stop.
    Cgroups,
    /// Each unit's own session and process group: a process that leaves its group (`setsid`
    /// after a double fork) outlives the unit's stop.
    ProcessGroups,
}

/// One of kiln's listeners and the connections it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerStatus {
    /// `health`, `agent` or `control`.
    pub name: String,
    pub open: usize,
    pub cap: usize,
    /// Connections closed to make room for new ones since kiln started.
    pub shed: u64,
}

/// One php-fpm pool's status page, as kiln read it when it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhpFpmStatus {
    pub service: String,
    pub unit: String,
    /// What the page said; None when it could not be read.
    pub pool: Option<PhpFpmPool>,
    /// Why the page could not be read (refused, timed out, not php-fpm's JSON).
    pub problem: Option<String>,
}

/// The figures of php-fpm's status page (`?json`), named as php-fpm names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhpFpmPool {
    /// The pool's name (`[www]` in php-fpm's config).
    pub pool: String,
    /// `static`, `dynamic` or `ondemand`.
    pub process_manager: String,
    /// When the pool started, seconds since the Unix epoch.
    pub start_time: u64,
    /// Seconds since the pool started.
    pub start_since: u64,
    /// Requests the pool took since it started.
    pub accepted_conn: u64,
    /// Requests waiting for a free process now (php-fpm counts them on TCP listeners only).
    pub listen_queue: u64,
    /// The most requests that waited at once since the pool started.
    pub max_listen_queue: u64,
    /// The size of the socket's queue (its backlog; TCP listeners only).
    pub listen_queue_len: u64,
    pub idle_processes: u64,
    pub active_processes: u64,
    pub total_processes: u64,
    /// The most processes busy at once since the pool started.
    pub max_active_processes: u64,
    /// Times the process manager wanted another process and `pm.max_children` said no (`dynamic`
    /// and `ondemand` only: `static` never counts).
    pub max_children_reached: u64,
    /// Requests that ran longer than `request_slowlog_timeout`.
    pub slow_requests: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvVarSource {
    pub name: String,
    /// default, tag, user-data, instance or kiln.
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LbStatus {
    /// haproxy, elbv2 or consul.
    pub kind: String,
    /// What is registered where, e.g. `app/i-0abc (10.0.0.5:8080)`.
    pub target: String,
    pub state: LbState,
    /// Why it is not registered (last error), when it is not.
    pub reason: Option<String>,
    pub since_ms: u64,
    /// Progress of the drain while draining, e.g. `3 sessions, 4.1s of 30s`.
    pub drain: Option<String>,
    /// How the last drain ended, once one has.
    #[serde(default)]
    pub last_drain: Option<DrainSummary>,
}

/// The end of a drain, as numbers (for metrics; `drain` says it in words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainSummary {
    pub took_us: u64,
    /// Sessions still in flight when it ended (0 once drained); None where the load balancer
    /// does not count them (ELBv2, Consul).
    pub sessions_left: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbState {
    Unregistered,
    Registered,
    Draining,
    Deregistered,
}

/// How the boot's secrets went. Names only, never values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecretsStatus {
    /// Variables set from secret stores (references and `ssm_paths` parameters).
    pub resolved: usize,
    /// Requests sent to the stores and token endpoints, retries included.
    pub requests: u64,
    pub took_us: u64,
    /// Variables whose secret changed since boot (`[metadata] recheck`).
    #[serde(default)]
    pub changed: Vec<String>,
}

/// What the platform says about the instance's future and what kiln did about it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LifecycleStatus {
    /// Where notices come from, e.g. `ec2 instance metadata, every 5s`; None: not watched.
    pub source: Option<String>,
    /// Why notices are not watched, or the last problem reading them (cleared by a good read).
    pub problem: Option<String>,
    /// Notices in force, oldest first.
    pub notices: Vec<NoticeStatus>,
    /// Auto Scaling's target lifecycle state (EC2), as last read.
    pub target_state: Option<String>,
    /// The Auto Scaling hooks, when `launch_hook` or `terminate_hook` is set.
    pub hooks: Option<HooksStatus>,
    /// The leave, once a notice made kiln leave.
    pub leave: Option<LeaveStatus>,
}

/// One notice of the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeStatus {
    pub kind: NoticeKind,
    /// What the platform said, e.g. `terminate at 2024-06-01T12:00:00Z`.
    pub detail: String,
    /// When kiln first saw it, ms since the Unix epoch.
    pub seen_ms: u64,
    /// When it takes effect, if the platform says, ms since the Unix epoch.
    pub due_ms: Option<u64>,
    /// What `[lifecycle]` says to do with it.
    pub action: OnNotice,
    /// `leave` that waits for its time (maintenance further away than `maintenance_leave_before`).
    #[serde(default)]
    pub deferred: bool,
}

/// The kinds of notice, each with its own `on_*` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    SpotInterruption,
    Preemption,
    Termination,
    Rebalance,
    Maintenance,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 5] = [
        NoticeKind::SpotInterruption,
        NoticeKind::Preemption,
        NoticeKind::Termination,
        NoticeKind::Rebalance,
        NoticeKind::Maintenance,
    ];

    /// The kind as status JSON and the metrics' `kind` label spell it.
    pub fn name(self) -> &'static str {
        match self {
            NoticeKind::SpotInterruption => "spot_interruption",
            NoticeKind::Preemption => "preemption",
            NoticeKind::Termination => "termination",
            NoticeKind::Rebalance => "rebalance",
            NoticeKind::Maintenance => "maintenance",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            NoticeKind::SpotInterruption => "spot interruption",
            NoticeKind::Preemption => "preemption",
            NoticeKind::Termination => "termination",
            NoticeKind::Rebalance => "rebalance recommendation",
            NoticeKind::Maintenance => "maintenance",
        }
    }
}

/// What a notice makes kiln do, as its `[lifecycle] on_*` key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNotice {
    /// Drain, stop the services, answer the platform, wait for the power-off.
    Leave,
    /// Shown in `kiln status` and the log.
    Report,
    Ignore,
}

impl fmt::Display for OnNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnNotice::Leave => "leave",
            OnNotice::Report => "report",
            OnNotice::Ignore => "ignore",
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HooksStatus {
    /// The Auto Scaling group; None when it is not known (see `problem`).
    pub group: Option<String>,
    /// Why the hooks cannot be answered (no group, no instance id, no credentials).
    pub problem: Option<String>,
    pub launch: Option<HookStatus>,
    pub terminate: Option<HookStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStatus {
    pub name: String,
    pub state: HookState,
    /// What happened last: the answer and when, or the AWS error with its code.
    pub detail: Option<String>,
    pub heartbeats: u32,
    pub since_ms: u64,
}

/// One step of a hook, each with its line in the log: idle → waiting → sending CONTINUE or
/// ABANDON → answered (continued, abandoned), gave up or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookState {
    /// Not due yet (terminate: the instance is not leaving).
    Idle,
    /// The instance waits on this hook; heartbeats keep it inside the hook's timeout.
    Waiting,
    /// `CONTINUE` is being sent: retried while AWS throttles or does not answer (the detail
    /// says why, and when the next attempt goes).
    SendingContinue,
    /// `ABANDON` is being sent, likewise.
    SendingAbandon,
    /// Answered `CONTINUE`.
    Continued,
    /// Answered `ABANDON`.
    Abandoned,
    /// Not answered: refused for good, not answered within the hook's timeout, or cut short by
    /// a stop (the detail says which, with AWS's code). Formerly `failed`, still read as it.
    #[serde(alias = "failed")]
    GaveUp,
    /// Not answered: nothing was waiting, or the instance left first.
    Skipped,
}

/// A leave for a notice: why, and each step with its time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveStatus {
    pub reason: String,
    /// When kiln saw the notice, ms since the Unix epoch.
    pub noticed_ms: u64,
    pub steps: Vec<LeaveStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveStep {
    pub step: LeaveStepKind,
    pub at_ms: u64,
}

/// A step of a leave. Status JSON spells each in words, as a person reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum LeaveStepKind {
    NoticeSeen,
    /// `/readyz` answers 503 and the agent says drain.
    ReadinessOff,
    OutOfTheLoadBalancer,
    AllServicesStopped,
    /// What the platform was told (`event X acknowledged (StartRequests)`, a hook's answer), or
    /// why it could not be; the platform's words, shown as they are.
    Answer(String),
}

impl LeaveStepKind {
    const NAMED: [LeaveStepKind; 4] = [
        LeaveStepKind::NoticeSeen,
        LeaveStepKind::ReadinessOff,
        LeaveStepKind::OutOfTheLoadBalancer,
        LeaveStepKind::AllServicesStopped,
    ];

    fn words(&self) -> &str {
        match self {
            LeaveStepKind::NoticeSeen => "notice seen",
            LeaveStepKind::ReadinessOff => "readiness off (/readyz 503, agent drain)",
            LeaveStepKind::OutOfTheLoadBalancer => "out of the load balancer",
            LeaveStepKind::AllServicesStopped => "all services stopped",
            LeaveStepKind::Answer(words) => words,
        }
    }
}

impl fmt::Display for LeaveStepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.words())
    }
}

impl From<LeaveStepKind> for String {
    fn from(step: LeaveStepKind) -> String {
        step.to_string()
    }
}

impl From<String> for LeaveStepKind {
    fn from(words: String) -> LeaveStepKind {
        LeaveStepKind::NAMED
            .into_iter()
            .find(|step| step.words() == words)
            .unwrap_or(LeaveStepKind::Answer(words))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SealStatus {
    pub root_hash: Option<String>,
    /// The image's label from the manifest (`kiln seal --release`).
    #[serde(default)]
    pub release: Option<String>,
    /// What the launch configuration pins (tags `kiln-expect-*`, user-data `KILN_EXPECT_*`);
    /// None when it pins nothing.
    #[serde(default)]
    pub expected: Option<ExpectedImage>,
    pub last_verified_ms: Option<u64>,
    /// How long the verification at boot took.
    #[serde(default)]
    pub verify_us: Option<u64>,
    /// Read-only remount state, e.g. `read-only` or `not remounted: no privilege (EPERM)`.
    pub readonly: Option<String>,
    pub drift: Vec<String>,
}

/// The image the launch configuration says must run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedImage {
    pub release: Option<String>,
    pub root_hash: Option<String>,
}

/// One running copy of a service (`name#N` when the service has replicas).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitStatus {
    pub service: String,
    /// `php-fpm`, or `worker#2` when the service has replicas.
    pub unit: String,
    pub state: UnitState,
    pub ready: bool,
    pub pid: Option<u32>,
    /// When the current process started, ms since the Unix epoch.
    pub since_ms: Option<u64>,
    pub restarts: u32,
    /// Failures in a row (reset once a run lasts); 3 or more is a crash loop.
    pub failures_in_a_row: u32,
    pub crash_loop: bool,
    /// When the next restart is due, ms since the Unix epoch.
    pub next_restart_ms: Option<u64>,
    pub last_probe: Option<ProbeReport>,
    pub last_exit: Option<String>,
    /// The last exit as a shell shows it: the exit code, or 128 + the signal's number; None
    /// before the first exit and when the process could not be started.
    #[serde(default)]
    pub last_exit_code: Option<i32>,
    /// Last lines the service wrote to stderr.
    pub stderr_tail: Vec<String>,
    /// Lines of its output not logged because it wrote more than kiln forwards a second.
    #[serde(default)]
    pub dropped_lines: u64,
    /// Its cgroup's directory, when kiln holds units in cgroups.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// `memory.current` of its cgroup (where the memory controller is enabled), read when a
    /// status is asked for.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// CPU time of everything in its cgroup, microseconds (`cpu.stat` `usage_usec`), read when a
    /// status is asked for.
    #[serde(default)]
    pub cpu_usec: Option<u64>,
    /// What the unit is waiting for, when it is waiting.
    pub waiting_for: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    /// Waits for the services in its `after` to be ready.
    Waiting,
    /// Spawned; its startup probe has not passed yet.
    Starting,
    Running,
    /// Exited; restarts when the backoff delay has passed.
    Backoff,
    Stopping,
    Stopped,
    /// Exited and will not be restarted (restart policy).
    Exited,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReport {
    /// startup, ready or live.
    pub probe: String,
    /// http, tcp, exec or fastcgi.
    pub kind: String,
    pub ok: bool,
    pub latency_us: u64,
    pub detail: String,
    pub at_ms: u64,
}

/// One phase of the boot walk, like a line of `systemd-analyze blame`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub phase: BootStep,
    /// Offset from kiln's start.
    pub start_us: u64,
    pub duration_us: Option<u64>,
    /// A point in time (`READY=1`), not a phase that lasted.
    #[serde(default)]
    pub point: bool,
}

/// A phase or a point of the boot timeline. Status JSON and the metrics' labels spell each as a
/// word (`config`, `start php-fpm`, `READY=1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum BootStep {
    Config,
    /// The health port and the control socket bound.
    Serve,
    Cgroups,
    Seal,
    Metadata,
    Env,
    /// Within `env`: the launch configuration's pin compared with the seal.
    Pin,
    /// Within `env`: the secret references resolved.
    Secrets,
    /// A service, from its first spawn until it is ready; its name.
    Start(String),
    /// Every service ready, `READY=1` sent: a point.
    Ready,
    /// A step this kiln does not know (a snapshot of another version), as it was spelt.
    Other(String),
}

impl BootStep {
    const NAMED: [BootStep; 9] = [
        BootStep::Config,
        BootStep::Serve,
        BootStep::Cgroups,
        BootStep::Seal,
        BootStep::Metadata,
        BootStep::Env,
        BootStep::Pin,
        BootStep::Secrets,
        BootStep::Ready,
    ];

    /// The word of a step without a name in it.
    fn word(&self) -> Option<&'static str> {
        Some(match self {
            BootStep::Config => "config",
            BootStep::Serve => "serve",
            BootStep::Cgroups => "cgroups",
            BootStep::Seal => "seal",
            BootStep::Metadata => "metadata",
            BootStep::Env => "env",
            BootStep::Pin => "pin",
            BootStep::Secrets => "secrets",
            BootStep::Ready => "READY=1",
            BootStep::Start(_) | BootStep::Other(_) => return None,
        })
    }
}

impl fmt::Display for BootStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootStep::Start(service) => write!(f, "start {service}"),
            BootStep::Other(words) => f.write_str(words),
            named => f.write_str(named.word().unwrap_or_default()),
        }
    }
}

impl From<BootStep> for String {
    fn from(step: BootStep) -> String {
        step.to_string()
    }
}

impl From<String> for BootStep {
    fn from(words: String) -> BootStep {
        if let Some(step) = BootStep::NAMED
            .into_iter()
            .find(|s| s.word() == Some(words.as_str()))
        {
            return step;
        }
        match words.strip_prefix("start ") {
            Some(service) => BootStep::Start(service.to_string()),
            None => BootStep::Other(words),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventEntry {
    pub at_ms: u64,
    pub level: String,
    pub message: String,
}

/// The shared handle: one writer at a time through [`Shared::update`], any number of readers.
pub struct Shared {
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// The snapshot's phase, mirrored so that `/readyz` reads one byte and touches no shared
    /// reference count (load balancers poll it from many connections on every core).
    phase: AtomicU8,
    started: Instant,
    /// Milliseconds since `started` at which the main loop last ticked (for `/livez`).
    heartbeat_ms: AtomicU64,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        let snapshot = Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at_ms: now_ms(),
            phase: Phase::Booting,
            reason: None,
            services: Vec::new(),
            timeline: Vec::new(),
            events: VecDeque::new(),
            refused_mutations: 0,
            instance: None,
            provider: None,
            check_in: None,
            env: Vec::new(),
            lb: None,
            seal: None,
            secrets: None,
            lifecycle: None,
            warnings: Vec::new(),
            containment: None,
            log: Default::default(),
            listeners: Vec::new(),
            php_fpm: Vec::new(),
        };
        Arc::new(Shared {
            snapshot: watch::Sender::new(Arc::new(snapshot)),
            phase: AtomicU8::new(Phase::Booting as u8),
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    pub fn phase(&self) -> Phase {
        Phase::ALL[self.phase.load(Ordering::Acquire) as usize]
    }

    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
    }

    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        self.snapshot.send_modify(|s| {
            let snapshot = Arc::make_mut(s);
            f(snapshot);
            self.phase.store(snapshot.phase as u8, Ordering::Release);
        });
    }

    /// Appends to the recent events; old ones fall off.
    pub fn event(&self, level: &str, message: impl Into<String>) {
        let entry = EventEntry {
            at_ms: now_ms(),
            level: level.into(),
            message: message.into(),
        };
        self.update(|s| {
            if s.events.len() == EVENTS_KEPT {
                s.events.pop_front();
            }
            s.events.push_back(entry);
        });
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Start of a boot phase; close it with [`Shared::phase_done`].
    pub fn phase_begin(&self, phase: BootStep) {
        let start_us = self.elapsed().as_micros() as u64;
        self.update(|s| {
            s.timeline.push(TimelineEntry {
                phase,
                start_us,
                duration_us: None,
                point: false,
            })
        });
    }

    pub fn phase_done(&self, phase: BootStep) {
        let now_us = self.elapsed().as_micros() as u64;
        self.update(|s| {
            if let Some(e) = s
                .timeline
                .iter_mut()
                .rev()
                .find(|e| e.phase == phase && e.duration_us.is_none())
            {
                e.duration_us = Some(now_us.saturating_sub(e.start_us));
            }
        });
    }

    /// A point on the timeline (zero duration), such as `READY=1`.
    pub fn mark(&self, phase: BootStep) {
        let start_us = self.elapsed().as_micros() as u64;
        self.update(|s| {
            s.timeline.push(TimelineEntry {
                phase,
                start_us,
                duration_us: Some(0),
                point: true,
            })
        });
    }

    pub fn beat(&self) {
        self.heartbeat_ms
            .store(self.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The main loop ticked within `within`.
    pub fn alive(&self, within: Duration) -> bool {
        let last = self.heartbeat_ms.load(Ordering::Relaxed);
        (self.elapsed().as_millis() as u64).saturating_sub(last) <= within.as_millis() as u64
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{BootStep, LeaveStepKind, NoticeKind, OnNotice};

    #[test]
    fn a_notice_kind_names_itself_as_status_json_does() {
        for kind in NoticeKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
    }

    #[test]
    fn boot_and_leave_steps_read_back_as_they_are_spelt() {
        let boot = [
            "config", "serve", "cgroups", "seal", "metadata", "env", "pin", "secrets", "READY=1",
        ];
        for word in boot {
            let step = BootStep::from(word.to_string());
            assert!(!matches!(step, BootStep::Other(_)), "{word}");
            assert_eq!(serde_json::to_value(&step).unwrap(), word);
        }
        let start: BootStep = serde_json::from_str("\"start php-fpm\"").unwrap();
        assert_eq!(start, BootStep::Start("php-fpm".into()));
        assert_eq!(start.to_string(), "start php-fpm");
        assert_eq!(
            BootStep::from("later".to_string()),
            BootStep::Other("later".into())
        );
        for step in LeaveStepKind::NAMED {
            assert_eq!(LeaveStepKind::from(step.to_string()), step);
        }
        let answer = "event e-1 acknowledged (StartRequests)";
        assert_eq!(
            serde_json::to_value(LeaveStepKind::from(answer.to_string())).unwrap(),
            answer
        );
    }

    #[test]
    fn a_notice_action_shows_as_status_json_spells_it() {
        for action in [OnNotice::Leave, OnNotice::Report, OnNotice::Ignore] {
            assert_eq!(serde_json::to_value(action).unwrap(), action.to_string());
        }
    }
}
