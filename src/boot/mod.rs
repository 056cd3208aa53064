//! `kiln boot`: the walk of one boot. Data flows one way:
//!
//! ```text
//! config → state dir (locked: one kiln each) → serve (health + control, answering "booting")
//!        → cgroups (found, cleared of what a killed kiln left; then a leave is honoured)
//!        → seal (verify, watch) → metadata → env (→ pin → secrets) → render
//!        → supervise (services in dependency order, warm-up, READY=1) → lb → run … → stop
//! ```
//!
//! A failure before services start refuses the boot: nothing is started or registered,
//! `/readyz` stays 503, and `kiln status` says which step failed and why, until kiln is stopped.
//!
//! Signals (`stops`): SIGTERM or SIGINT stop the instance (readiness 503 first, then the load
//! balancer is left, then services stop in reverse order); a second one kills what is left.
//! SIGHUP is refused: an immutable instance never reloads. After the boot, `guards` watch the
//! seal and the metadata, and `[lifecycle]` the platform's notices: a notice that says to leave
//! takes the same stop path, then kiln waits for the power-off (see [`wait_for_power_off`]).

mod guards;
mod stops;

use crate::cgroup::{self, Containment};
use crate::config::Config;
use crate::env::{self, FrozenEnv};
use crate::lb::{self, Membership};
use crate::lifecycle::{self, LeaveRequest, Lifecycle};
use crate::metadata::wireserver::{CheckIn, Report};
use crate::metadata::{self, InstanceFacts, Metadata};
use crate::metrics::Recorder;
use crate::process::reaper::{self, Reaper};
use crate::render::{self, Rendered};
use crate::seal::{self, DriftWatch, Pin, SealError, Verified};
use crate::secrets::{self, Plan, Stores};
use crate::serve;
use crate::state::{
    BootStep, ContainmentKind, EnvVarSource, ExpectedImage, InstanceStatus, LeaveStepKind, Phase,
    ProviderFound, ProviderStatus, SealStatus, SecretsStatus, Shared, now_ms,
};
use crate::supervise::{Supervisor, SupervisorHandle, Units};
use crate::systemd::{self, Notifier};
use crate::warm::Warmer;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use stops::{StopRequests, Stopper, requested, stop_or_leave};
use tokio::sync::watch;

/// Exit code after a refused boot was stopped.
const EXIT_REFUSED: u8 = 1;

pub fn run(config_path: &Path) -> ExitCode {
    // Before any thread starts (the log's writer, the runtime's): they inherit the mask.
    crate::process::signals::unblock_inherited();
    let priority = crate::process::priority::raise();
    let _log = systemd::log::init();
    if let Err(e) = priority {
        tracing::debug!("kiln runs at the nice level it was started with: {e}");
    }
    // Before any listener sizes its cap from the limit.
    crate::fd_budget::raise();
    let shared = Shared::new();
    shared.phase_begin(BootStep::Config);
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            // One entry per problem, each naming the file: journald shows and greps them apart.
            for problem in &e.problems {
                tracing::error!("{}: {problem}", e.file.display());
            }
            tracing::error!("nothing was started");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    // What `kiln check` warns about, where a person reading the boot's log looks first.
    for warning in crate::commands::check::warnings(&config) {
        tracing::warn!("{}: {warning}", config_path.display());
    }
    shared.phase_done(BootStep::Config);
    // One thread is plenty for the supervisor, probes and the control socket; `/readyz` and
    // `/livez` are served on threads of their own (serve::health).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // What happens between two scrapes, for `/metrics`: the boot owns it and hands it to each
    // room that records, so the snapshot stays plain data.
    let recorder = Arc::new(Recorder::default());
    let code = runtime.block_on(walk(config, shared, recorder));
    // Probe or output tasks may still be parked; they hold nothing that needs a goodbye.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// The boot in phases: `prepare` (signals, the reaper, the listeners), `contain` (the units'
/// cgroups), `launch` (seal, metadata, environment, the services), `run_until_stopped` (a
/// stop or a leave), then `leave`. A refusal on the way is handled in one place, [`refuse`].
async fn walk(config: Config, shared: Arc<Shared>, recorder: Arc<Recorder>) -> ExitCode {
    let (boot, reaper) = match prepare(config, shared, recorder).await {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    // Held until this function returns: the cgroups are removed once the services are stopped.
    let containment = match contain(&boot).await {
        Ok(containment) => containment,
        Err(refusal) => return refuse(&boot, refusal).await,
    };
    let running = match launch(&boot, &containment, reaper).await {
        Ok(Launched::Running(running)) => running,
        Ok(Launched::Stopped) => {
            tracing::info!("stopped during boot; nothing was started");
            boot.shared.update(|s| s.phase = Phase::Stopped);
            return ExitCode::SUCCESS;
        }
        Err(refusal) => return refuse(&boot, refusal).await,
    };
    match run_until_stopped(&boot, &running).await {
        Until::Stopped(request) => leave(&boot, running, request).await,
        Until::TaskFailed(reason) => refuse_running(&boot, running, reason).await,
    }
}

/// What the boot holds from its first phase to its exit.
struct Boot {
    config: Config,
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    notifier: Arc<Notifier>,
    stopper: Stopper,
    stops: watch::Receiver<StopRequests>,
    /// The runtime directories and the state dir, this kiln's until the walk ends: after the
    /// services are stopped and the cgroups removed (`containment` is dropped first).
    _owned: crate::state_dir::Owned,
}

/// Signals, the reaper, systemd's notify socket, then the runtime directories and the
/// listeners, so that `/readyz` answers 503 and `kiln status` explains from here on. A failure
/// here cannot be explained that way: it is logged, told to systemd, and kiln exits.
async fn prepare(
    config: Config,
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
) -> Result<(Boot, Reaper), ExitCode> {
    let (stopper, stops) = stops::watch_signals(shared.clone()).map_err(|e| {
        tracing::error!("cannot install signal handlers: {e}");
        ExitCode::FAILURE
    })?;
    reaper::become_subreaper();
    let reaper = Reaper::start().map_err(|e| {
        tracing::error!("cannot watch SIGCHLD: {e}");
        ExitCode::FAILURE
    })?;
    let notifier = Arc::new(Notifier::from_env());
    spawn_heartbeat(&shared);
    spawn_watchdog(&notifier, &shared);

    shared.phase_begin(BootStep::Serve);
    let cannot = |what: &str, e: String| {
        tracing::error!("{e}; nothing was started");
        notifier.notify(&format!("STATUS=cannot {what}: {e}"));
        ExitCode::FAILURE
    };
    let owned = own_runtime_dirs(&config).map_err(|e| cannot("start", e))?;
    start_serving(&config, &shared, &recorder).map_err(|e| cannot("serve", e))?;
    shared.phase_done(BootStep::Serve);
    let boot = Boot {
        config,
        shared,
        recorder,
        notifier,
        stopper,
        stops,
        _owned: owned,
    };
    Ok((boot, reaper))
}

/// After the state dir and the control socket are ours (no other kiln runs on them), before
/// anything starts, and before a leave is honoured: a kiln killed while its leave stopped the
/// services left them running, and they are as much leftovers as any other.
async fn contain(boot: &Boot) -> Result<Containment, Refusal> {
    boot.shared.phase_begin(BootStep::Cgroups);
    // Leftovers that would not die keep the launch from ever starting: ABANDON, so the group
    // replaces the instance now rather than at the hook's timeout.
    let containment = find_cgroups(&boot.config, &boot.shared)
        .await
        .map_err(|reason| Refusal::launching(reason, None))?;
    boot.shared.phase_done(BootStep::Cgroups);
    Ok(containment)
}

/// How a launch ended, when it was not refused.
enum Launched {
    Running(Running),
    /// A stop request came before the services started.
    Stopped,
}

/// The running instance: its services, its notice watch and its load balancer membership.
struct Running {
    handle: SupervisorHandle,
    supervisor: tokio::task::JoinHandle<()>,
    lifecycle: Option<Lifecycle>,
    membership: Option<Membership>,
    /// What the boot fetched: a task that fails for good refuses the boot with it.
    metadata: Box<Metadata>,
    /// `[render]`'s files, removed once the services that read them have stopped.
    rendered: Option<Rendered>,
}

/// Everything that must hold before a service starts (the instance has not left, the seal, the
/// metadata, the environment, the load balancer's and the services' settings), then the
/// services, the guards and the load balancer membership.
async fn launch(boot: &Boot, containment: &Containment, reaper: Reaper) -> Result<Launched, Refusal> {
    let config = &boot.config;
    if let Some(left) = left_before(config) {
        return Err(Refusal::left(left));
    }
    let gathered = tokio::select! {
        gathered = gather(config, &boot.shared, &boot.recorder) => gathered?,
        _ = stop_or_leave(boot.stops.clone()) => return Ok(Launched::Stopped),
    };
    let refused = |reason: String, gathered: Gathered| Refusal::launching(reason, Some(gathered.metadata));
    let registrar = match lb::registrar(config, &gathered.metadata.facts) {
        Ok(registrar) => registrar,
        Err(e) => return Err(refused(format!("lb: {e}"), gathered)),
    };
    let cgroups = match containment {
        Containment::Cgroups { tree, .. } => Ok(tree),
        Containment::ProcessGroups { why } => Err(why.as_str()),
    };
    let fleet = match crate::once::fleet(config, &gathered.verified, &gathered.metadata.facts) {
        Ok(fleet) => fleet,
        Err(e) => return Err(refused(e, gathered)),
    };
    let units = Units {
        services: &config.services,
        tasks: &config.tasks,
        fleet,
    };
    let supervisor = Supervisor::new(
        units,
        gathered.env.clone(),
        reaper,
        cgroups,
        boot.shared.clone(),
        &boot.recorder,
        boot.notifier.clone(),
    );
    let last = supervisor.and_then(|supervisor| before_start(boot, &gathered, supervisor));
    match last {
        Ok((supervisor, rendered)) => Ok(Launched::Running(start(
            boot, gathered, supervisor, registrar, rendered,
        ))),
        Err(reason) => Err(refused(reason, gathered)),
    }
}

/// The last steps before the services start: the warm-up handed to the supervisor (it runs
/// once every service is ready, before READY=1), then `[render]`'s files written, last, so that
/// nothing after them can refuse the boot and leave them behind.
fn before_start(
    boot: &Boot,
    gathered: &Gathered,
    mut supervisor: Supervisor,
) -> Result<(Supervisor, Option<Rendered>), String> {
    if let Some(plan) = &boot.config.warm {
        let warmer = Warmer::new(plan, &gathered.metadata.facts)?;
        supervisor.warm_up_first(warmer.run(boot.shared.clone()));
    }
    let Some(plan) = &boot.config.render else {
        return Ok((supervisor, None));
    };
    let shared = &boot.shared;
    shared.phase_begin(BootStep::Render);
    let (rendered, status) =
        render::render(plan, &gathered.env, &gathered.metadata.facts).map_err(|e| format!("render: {e}"))?;
    let names: Vec<&str> = status.files.iter().map(|f| f.name.as_str()).collect();
    match &status.writable {
        None => tracing::info!("render: {} (read-only tmpfs): {}", status.dir, names.join(", ")),
        Some(why) => tracing::warn!("render: {} ({why}): {}", status.dir, names.join(", ")),
    }
    shared.update(|s| s.render = Some(status));
    shared.phase_done(BootStep::Render);
    Ok((supervisor, Some(rendered)))
}

/// Starts the services, the notice watch, the guards and the load balancer membership (which
/// joins once every service is ready).
fn start(
    boot: &Boot,
    gathered: Gathered,
    supervisor: Supervisor,
    registrar: Option<Box<dyn lb::Registrar>>,
    rendered: Option<Rendered>,
) -> Running {
    let (config, shared, recorder) = (&boot.config, &boot.shared, &boot.recorder);
    let metadata = Box::new(gathered.metadata.clone());
    let handle = supervisor.handle();
    let supervisor = tokio::spawn(supervisor.run());
    let leaver = boot.stopper.clone();
    let lifecycle = Lifecycle::start(
        config,
        &gathered.metadata,
        shared.clone(),
        recorder.clone(),
        move |request| leaver.leave(request),
    );
    // Provisioned: nothing left that could refuse the boot. Services' readiness is the health
    // signal's to tell (see `metadata::wireserver`).
    if let Some(check_in) = CheckIn::on_azure(&config.metadata) {
        check_in.spawn(Report::Ready, shared.clone());
    }
    if let Some(watch) = gathered.seal_watch {
        guards::watch_seal(watch, config.seal.on_drift, shared.clone(), boot.stopper.clone());
    }
    guards::recheck_metadata(
        &config.metadata,
        gathered.metadata,
        shared.clone(),
        recorder.clone(),
    );
    if let (Some(every), Some((plan, stores))) = (config.metadata.recheck, gathered.secrets) {
        let budget = config.metadata.deadline.get();
        secrets::recheck::start(
            plan,
            stores,
            &gathered.env,
            every.get(),
            budget,
            shared.clone(),
            recorder.clone(),
        );
    }
    let membership = registrar.map(|r| {
        Membership::start(
            r,
            shared.clone(),
            boot.notifier.clone(),
            config.lb.drain_timeout(),
        )
    });
    Running {
        handle,
        supervisor,
        lifecycle,
        membership,
        metadata,
        rendered,
    }
}

/// How the running instance ends.
enum Until {
    /// A stop or a leave was asked for.
    Stopped(StopRequests),
    /// A task failed for good: why.
    TaskFailed(String),
}

/// Until a stop or a leave is asked for, or a task fails for good. A leave is written down: it
/// is final.
async fn run_until_stopped(boot: &Boot, running: &Running) -> Until {
    let mut request = tokio::select! {
        request = stop_or_leave(boot.stops.clone()) => request,
        reason = running.handle.task_failed() => return Until::TaskFailed(reason),
    };
    // A signal that came with (or before) the leave is a stop: nothing to wait for then.
    request.leave = request.leave.filter(|_| request.count == 0);
    if let Some(leave) = &request.leave {
        mark_left(&boot.config, leave);
    }
    Until::Stopped(request)
}

/// A task failed for good: the boot is refused as any refusal is, once what had started is
/// stopped in reverse order. Nothing was registered (a task not done keeps the instance from
/// ready, and the load balancer is joined only once ready); the launch hook hears `ABANDON`
/// from the refusal alone (the hook's own watch goes first, so it is answered once).
async fn refuse_running(boot: &Boot, running: Running, reason: String) -> ExitCode {
    let Running {
        handle,
        supervisor,
        lifecycle,
        membership,
        metadata,
        rendered,
    } = running;
    drop(lifecycle);
    boot.shared.update(|s| {
        s.phase = Phase::Failed;
        s.reason = Some(reason.clone());
    });
    tracing::error!("{reason}");
    tracing::info!("a task failed: stopping what had started, in reverse order");
    if let Some(membership) = membership {
        membership.leave().await;
    }
    let mut stopped = std::pin::pin!(handle.stop());
    tokio::select! {
        _ = &mut stopped => {}
        _ = requested(boot.stops.clone(), 2) => {
            handle.kill_all();
            stopped.await;
        }
    }
    let _ = supervisor.await;
    if let Some(rendered) = rendered {
        rendered.remove();
    }
    let mut refusal = Refusal::launching(reason, Some(*metadata));
    refusal.started = true;
    refuse(boot, refusal).await
}

/// Stops the instance (see [`shutdown`]); after a leave, answers the platform and waits for the
/// power-off; after `on_drift = "poweroff"`, powers off.
async fn leave(boot: &Boot, running: Running, request: StopRequests) -> ExitCode {
    let Running {
        handle,
        supervisor,
        lifecycle,
        membership,
        metadata: _,
        rendered,
    } = running;
    let leave = request.leave.as_ref();
    shutdown(boot, &handle, membership, leave).await;
    let _ = supervisor.await;
    if let Some(rendered) = rendered {
        rendered.remove();
    }
    if let Some(leave) = leave {
        if let Some(lifecycle) = &lifecycle {
            lifecycle.services_stopped();
        }
        wait_for_power_off(&boot.shared, &boot.notifier, boot.stops.clone(), leave).await;
        lifecycle::settle_at_stop(&boot.shared).await;
        boot.shared.update(|s| s.phase = Phase::Stopped);
        tracing::info!("stopped after the leave; bye");
        return ExitCode::SUCCESS;
    }
    lifecycle::settle_at_stop(&boot.shared).await;
    boot.shared.update(|s| s.phase = Phase::Stopped);
    tracing::info!("all services stopped; bye");
    if request.poweroff {
        power_off();
    }
    ExitCode::SUCCESS
}

/// Why the boot is refused, and how far it got.
struct Refusal {
    reason: String,
    reached: Reached,
    /// Services (and tasks) had started, and were stopped before the refusal.
    started: bool,
}

/// How far a refused boot got: whether there is a launch to answer for.
enum Reached {
    /// An instance that left for a notice and does not rejoin: its launch was answered long
    /// ago, and the platform is taking it away. The launch hook is not answered.
    Left,
    /// Launching (the cgroups' leftovers, seal, metadata, environment, the load balancer's and
    /// the services' settings): the launch hook hears `ABANDON`, naming the instance and its
    /// group by the metadata when it was fetched.
    Launching(Option<Box<Metadata>>),
}

impl Refusal {
    fn left(reason: String) -> Refusal {
        Refusal {
            reason,
            reached: Reached::Left,
            started: false,
        }
    }

    fn launching(reason: String, metadata: Option<Metadata>) -> Refusal {
        Refusal {
            reason,
            reached: Reached::Launching(metadata.map(Box::new)),
            started: false,
        }
    }
}

/// A boot that cannot go on: say why everywhere a person might look, answer `ABANDON` to a
/// launch hook when it was launching, start nothing, and wait to be stopped (so `/readyz` keeps
/// answering 503 and `kiln status` keeps explaining).
async fn refuse(boot: &Boot, refusal: Refusal) -> ExitCode {
    let Refusal {
        reason,
        reached,
        started,
    } = refusal;
    if let Reached::Launching(metadata) = reached {
        abandon_launch(&boot.config, metadata.map(|m| *m), &boot.shared);
        if let Some(check_in) = CheckIn::on_azure(&boot.config.metadata) {
            check_in.spawn(Report::refused(&reason), boot.shared.clone());
        }
    }
    let (shared, notifier) = (&boot.shared, &boot.notifier);
    tracing::error!("boot refused: {reason}");
    let what = match started {
        true => "what had started was stopped",
        false => "nothing was started",
    };
    tracing::error!("{what}; kiln stays up to explain (kiln status) until it is stopped");
    shared.update(|s| {
        s.phase = Phase::Failed;
        s.reason = Some(reason.clone());
    });
    shared.event("error", format!("boot refused: {reason}"));
    // Start-up is over, in a failed state: systemd should not time the unit out and restart it
    // into the same failure; the status line says what is wrong.
    notifier.notify(&format!(
        "READY=1\nSTATUS=boot refused: {}",
        reason.replace('\n', " ")
    ));
    requested(boot.stops.clone(), 1).await;
    lifecycle::settle_at_stop(shared).await;
    shared.update(|s| s.phase = Phase::Stopped);
    ExitCode::from(EXIT_REFUSED)
}

/// The file under the state dir (on /run: gone at the next boot) that says this instance left.
fn left_marker(config: &Config) -> std::path::PathBuf {
    config.control.state_dir.join("left")
}

/// Leaving is final: the reason is written down, so that a kiln restarted by systemd before the
/// power-off does not start the services and rejoin the load balancer.
fn mark_left(config: &Config, leave: &LeaveRequest) {
    let path = left_marker(config);
    if let Err(e) = std::fs::write(&path, format!("{}\n", leave.reason.replace('\n', " "))) {
        tracing::warn!(
            "cannot write {}: {e}; a restarted kiln would not know it left",
            path.display()
        );
    }
}

/// Why this boot must not start anything, when an earlier kiln of this boot left for a notice.
fn left_before(config: &Config) -> Option<String> {
    let path = left_marker(config);
    let text = std::fs::read(&path).ok()?;
    let reason = String::from_utf8_lossy(&text[..text.len().min(512)])
        .trim()
        .to_string();
    Some(format!(
        "this instance left ({}) and does not rejoin; it waits for the power-off ({} is removed by the next boot)",
        crate::terminal::printable(&reason),
        path.display()
    ))
}

/// A refused boot under an Auto Scaling launch hook answers `ABANDON` (in the background: the
/// refusal is explained at once, the answer follows).
fn abandon_launch(config: &Config, metadata: Option<Metadata>, shared: &Arc<Shared>) {
    if config.lifecycle.as_ref().is_some_and(|l| l.launch_hook.is_some()) {
        tokio::spawn(lifecycle::abandon_refused_boot(
            config.clone(),
            metadata,
            shared.clone(),
        ));
    }
}

/// After a leave: the services are stopped and the platform answered; the machine goes away on
/// the platform's schedule. kiln stays up, not ready, explaining itself in `kiln status`, until
/// that power-off's SIGTERM (then it exits 0). It told systemd only `STATUS=`, never
/// `STOPPING=1`: that would start the unit's stop timeout, and systemd would kill kiln after
/// `TimeoutStopSec` and, the kill being a failure, restart it under `Restart=on-failure`.
async fn wait_for_power_off(
    shared: &Shared,
    notifier: &Notifier,
    stops: watch::Receiver<StopRequests>,
    leave: &LeaveRequest,
) {
    let line = format!("left ({}); waiting for the power-off", leave.reason);
    shared.update(|s| {
        s.phase = Phase::Stopped;
        s.reason = Some(line.clone());
    });
    lifecycle::step(shared, LeaveStepKind::AllServicesStopped);
    notifier.status(&line);
    tracing::info!("{line}; kiln stays up to explain it (kiln status)");
    requested(stops, 1).await;
}

/// Finds or makes the units' cgroups and kills what an earlier kiln left in them: an orphaned
/// php-fpm would hold the socket and pass the new php-fpm's probe. Without a cgroup kiln may
/// use, services get process groups, and status says so. The error (leftovers that would not
/// die) refuses the boot.
async fn find_cgroups(config: &Config, shared: &Shared) -> Result<Containment, String> {
    let state_dir = config.control.state_dir.clone();
    let wanted = cgroup::wanted(&config.processes());
    let containment = tokio::task::spawn_blocking(move || cgroup::contain(&state_dir, &wanted))
        .await
        .map_err(|e| format!("cgroups: stopped: {e}"))?
        .map_err(|e| format!("cgroups: {e}"))?;
    let status = match &containment {
        Containment::Cgroups { tree, cleared } => {
            let controllers: Vec<String> = tree.controllers().iter().map(|c| c.to_string()).collect();
            tracing::info!(
                "services: a cgroup each under {} (controllers: {})",
                tree.dir().display(),
                if controllers.is_empty() {
                    "none".into()
                } else {
                    controllers.join(" ")
                }
            );
            report_cleared(cleared, shared);
            crate::state::Containment {
                kind: ContainmentKind::Cgroups,
                cgroup: Some(tree.dir().display().to_string()),
                controllers,
                why: None,
                spawn: Some(crate::process::clone::decide()),
            }
        }
        Containment::ProcessGroups { why } => {
            tracing::warn!(
                "services: process groups only ({why}): a process that leaves its group outlives its service's stop"
            );
            crate::state::Containment {
                kind: ContainmentKind::ProcessGroups,
                cgroup: None,
                controllers: Vec::new(),
                why: Some(why.clone()),
                spawn: None,
            }
        }
    };
    shared.update(|s| s.containment = Some(status));
    Ok(containment)
}

/// What an earlier kiln left and this one killed: each cgroup in the log with its processes,
/// and one event for `kiln status`.
fn report_cleared(cleared: &[cgroup::Cleared], shared: &Shared) {
    if cleared.is_empty() {
        return;
    }
    for c in cleared {
        let processes: Vec<String> = c
            .processes
            .iter()
            .map(|(pid, comm)| format!("{pid} {comm}"))
            .collect();
        if processes.is_empty() {
            tracing::warn!(
                "cgroup {}: killed processes an earlier kiln left (in another PID namespace: not listed)",
                c.cgroup
            );
        } else {
            tracing::warn!(
                "cgroup {}: killed {} processes an earlier kiln left: {}",
                c.cgroup,
                processes.len(),
                processes.join(", ")
            );
        }
    }
    let summary: Vec<String> = cleared
        .iter()
        .map(|c| match c.processes.len() {
            0 => format!("{} (not listed)", c.cgroup),
            n => format!("{} ({n})", c.cgroup),
        })
        .collect();
    shared.event(
        "warn",
        format!("killed what an earlier kiln left running: {}", summary.join(", ")),
    );
}

/// Checks (and creates) the runtime directories, then makes the state dir this kiln's, before
/// anything is bound or killed: a second kiln on the same state dir must touch nothing.
fn own_runtime_dirs(config: &Config) -> Result<crate::state_dir::Owned, String> {
    for (key, dir) in config.control.runtime_dirs() {
        crate::state_dir::prepare(dir).map_err(|e| format!("[control] {key} {}: {e}", dir.display()))?;
    }
    let dir = &config.control.state_dir;
    crate::state_dir::own(dir).map_err(|e| format!("[control] state_dir {}: {e}", dir.display()))
}

/// Binds `/livez` + `/readyz` and the control socket first, so that a load balancer sees 503
/// (not a refused connection) and `kiln status` can explain while the boot is still under way.
fn start_serving(config: &Config, shared: &Arc<Shared>, recorder: &Arc<Recorder>) -> Result<(), String> {
    serve::start(
        &config.health,
        config.metrics.as_ref(),
        &config.control.socket,
        &config.services,
        shared.clone(),
        recorder.clone(),
    )
}

/// What the steps before the services produced, frozen from here on.
struct Gathered {
    env: Arc<FrozenEnv>,
    /// The seal's release and root hash: the key of a task run once per fleet.
    verified: Verified,
    /// Watching the sealed paths since right after they were verified; None when not sealed.
    seal_watch: Option<DriftWatch>,
    metadata: Metadata,
    /// What `[metadata] recheck` asks the stores again.
    secrets: Option<(Plan, Stores)>,
}

/// The steps that must all pass before a single service starts: seal, metadata, environment,
/// the launch configuration's pin, and the secrets (only for an image the pin accepts).
async fn gather(config: &Config, shared: &Shared, recorder: &Recorder) -> Result<Gathered, Refusal> {
    let refused = |reason| Refusal::launching(reason, None);
    shared.phase_begin(BootStep::Seal);
    let verified = verify_seal(config, shared).await.map_err(refused)?;
    let seal_watch = guards::start_seal_watch(&config.seal, &verified, shared).map_err(refused)?;
    shared.phase_done(BootStep::Seal);

    // One deadline for the metadata and the secrets resolved from it.
    let deadline = tokio::time::Instant::now() + config.metadata.deadline.get();
    shared.phase_begin(BootStep::Metadata);
    let fetch_started = std::time::Instant::now();
    let fetched = metadata::fetch_by(&config.metadata, deadline).await;
    recorder.metadata_fetched(fetch_started.elapsed());
    let metadata = fetched.map_err(|e| refused(e.to_string()))?;
    // The facts name the instance even when a later step refuses the boot (`kiln status`,
    // `kiln fleet`); they hold no secret.
    shared.update(|s| {
        s.instance = Some(instance_status(&metadata.facts));
        s.provider = Some(provider_status(&metadata));
    });
    shared.phase_done(BootStep::Metadata);
    match prepare_env(config, shared, recorder, &verified, &metadata, deadline).await {
        Ok((env, secrets)) => Ok(Gathered {
            env: Arc::new(env),
            verified,
            seal_watch,
            metadata,
            secrets,
        }),
        Err(reason) => Err(Refusal::launching(reason, Some(metadata))),
    }
}

/// The instance's facts as status shows them.
fn instance_status(facts: &InstanceFacts) -> InstanceStatus {
    let InstanceFacts {
        provider,
        instance_id,
        region,
        zone,
        local_ipv4,
        hostname,
    } = facts.clone();
    InstanceStatus {
        provider,
        instance_id,
        region,
        zone,
        local_ipv4,
        hostname,
    }
}

/// The datasource as status shows it, and how kiln chose it.
fn provider_status(metadata: &Metadata) -> ProviderStatus {
    let found = match &metadata.found {
        metadata::Found::Config => ProviderFound::Config,
        metadata::Found::Dmi { field, value } => ProviderFound::Dmi {
            field: field.to_string(),
            value: value.clone(),
        },
        metadata::Found::HypervisorUuid => ProviderFound::HypervisorUuid,
        metadata::Found::ConfigDrive(drive) => ProviderFound::ConfigDrive {
            device: drive.device.display().to_string(),
            filesystem: drive.filesystem.name().to_string(),
        },
    };
    ProviderStatus {
        name: metadata.facts.provider.clone(),
        found,
    }
}

/// The environment from the metadata: layers, the pin, the secrets, the exec limits, the files.
async fn prepare_env(
    config: &Config,
    shared: &Shared,
    recorder: &Recorder,
    verified: &Verified,
    metadata: &Metadata,
    deadline: tokio::time::Instant,
) -> Result<(FrozenEnv, Option<(Plan, Stores)>), String> {
    shared.phase_begin(BootStep::Env);
    let layered = env::layer(&config.env, &config.metadata, metadata).map_err(|e| e.to_string())?;
    check_pin(verified, metadata, layered.pins(), shared)?;
    let resolved = match &config.secrets {
        Some(secrets_config) => {
            shared.phase_begin(BootStep::Secrets);
            let resolve_started = std::time::Instant::now();
            let resolved = resolve_secrets(config, secrets_config, &layered, metadata, deadline).await;
            recorder.secrets_fetched(resolve_started.elapsed());
            let resolved = resolved?;
            shared.phase_done(BootStep::Secrets);
            Some(resolved)
        }
        None => None,
    };
    let (values, report, secrets) = match resolved {
        Some(r) => (r.values, Some(r.report), Some(r.recheck)),
        None => (env::Secrets::default(), None, None),
    };
    let frozen = layered.freeze(values).map_err(|e| e.to_string())?;
    env::check_exec_limits(
        &frozen,
        &config.processes(),
        metadata,
        env::ExecLimits::of_this_machine(),
    )
    .map_err(|e| e.to_string())?;
    if let Some(mut report) = report {
        report.resolved = frozen.secrets();
        tracing::info!(
            "secrets: {} resolved in {}ms ({} requests)",
            report.resolved,
            report.took_us / 1000,
            report.requests
        );
        shared.update(|s| s.secrets = Some(report));
    }
    env::write_files(&config.control.state_dir, &frozen, metadata)
        .map_err(|e| format!("cannot write {}: {e}", config.control.state_dir.display()))?;
    let names: Vec<EnvVarSource> = frozen
        .sources()
        .into_iter()
        .map(|(name, source)| EnvVarSource { name, source })
        .collect();
    shared.update(|s| s.env = names);
    shared.phase_done(BootStep::Env);
    Ok((frozen, secrets))
}

/// What the `secrets` step gave.
struct ResolvedSecrets {
    values: env::Secrets,
    /// For status; `resolved` is counted once the values are in the environment.
    report: SecretsStatus,
    /// What `[metadata] recheck` asks the stores again.
    recheck: (Plan, Stores),
}

/// The `secrets` step: finds the references and resolves them by the boot's deadline. An error
/// names every variable that failed, its reference and the store's error code.
async fn resolve_secrets(
    config: &Config,
    secrets_config: &crate::config::SecretsConfig,
    layered: &env::Layered,
    metadata: &Metadata,
    deadline: tokio::time::Instant,
) -> Result<ResolvedSecrets, String> {
    let plan = secrets::plan(secrets_config, layered).map_err(|e| e.to_string())?;
    let stores = Stores::new(secrets_config, &config.metadata, &metadata.facts)
        .map_err(|e| format!("secrets: {e}"))?;
    let resolution = plan.resolve(&stores, deadline).await.map_err(|e| e.to_string())?;
    let report = SecretsStatus {
        resolved: 0,
        requests: resolution.requests,
        took_us: resolution.took.as_micros() as u64,
        changed: Vec::new(),
    };
    Ok(ResolvedSecrets {
        values: resolution.secrets,
        report,
        recheck: (plan, stores),
    })
}

/// Compares the pin of the launch configuration (tags `kiln-expect-*`, user-data
/// `KILN_EXPECT_*`) with the verified seal; a pin that does not hold refuses the boot.
fn check_pin(
    verified: &Verified,
    metadata: &Metadata,
    pins: &std::collections::BTreeMap<String, String>,
    shared: &Shared,
) -> Result<(), String> {
    let pin = Pin::read(&metadata.tags, pins).map_err(|e| e.to_string())?;
    if pin.is_empty() {
        return Ok(());
    }
    shared.phase_begin(BootStep::Pin);
    let expected = ExpectedImage {
        release: pin.release.as_ref().map(|r| r.value.to_string()),
        root_hash: pin.root_hash.as_ref().map(|h| h.value.to_hex().to_string()),
    };
    shared.update(|s| s.seal.get_or_insert_with(SealStatus::default).expected = Some(expected));
    pin.check(verified).map_err(|e| e.to_string())?;
    tracing::info!("pin: this image is what the launch configuration expects: {pin}");
    shared.phase_done(BootStep::Pin);
    Ok(())
}

/// Remounts the sealed paths read-only first (nothing can change between the check and the
/// mount), then compares them with the manifest, off the async thread: hashing a release tree
/// takes a few hundred milliseconds of CPU.
async fn verify_seal(config: &Config, shared: &Shared) -> Result<Verified, String> {
    if !config.seal.is_enabled() {
        return Ok(Verified::default());
    }
    let readonly = config
        .seal
        .readonly
        .then(|| seal::remount_readonly(&config.seal).to_string());
    shared.update(|s| {
        s.seal = Some(SealStatus {
            readonly: readonly.clone(),
            ..SealStatus::default()
        })
    });
    if let Some(line) = &readonly {
        tracing::info!("sealed paths: {line}");
    }
    let seal_config = config.seal.clone();
    let verify_started = std::time::Instant::now();
    let verified = tokio::task::spawn_blocking(move || seal::verify_at_boot(&seal_config))
        .await
        .map_err(|e| format!("seal: verification stopped: {e}"))?;
    let verify_us = u64::try_from(verify_started.elapsed().as_micros()).unwrap_or(u64::MAX);
    shared.update(|s| s.seal.get_or_insert_with(SealStatus::default).verify_us = Some(verify_us));
    match verified {
        Ok(verified) => {
            if let Some(skipped) = &verified.skipped {
                tracing::warn!("seal: {skipped}");
            }
            shared.update(|s| {
                let status = s.seal.get_or_insert_with(SealStatus::default);
                status.root_hash = verified.root_hash.clone();
                status.release = verified.release.as_ref().map(ToString::to_string);
                status.last_verified_ms = verified.root_hash.as_ref().map(|_| now_ms());
            });
            Ok(verified)
        }
        Err(e) => {
            if let SealError::Drift(differences) = &e {
                let lines = differences.iter().map(ToString::to_string).collect();
                shared.update(|s| s.seal.get_or_insert_with(SealStatus::default).drift = lines);
            }
            Err(format!("seal: {e}"))
        }
    }
}

/// Readiness goes first (the load balancer stops sending), then the services stop in reverse
/// dependency order. A second stop request kills what is left. A leave takes the same path; it
/// tells systemd only its status (see [`wait_for_power_off`]) and records each step.
async fn shutdown(
    boot: &Boot,
    handle: &SupervisorHandle,
    membership: Option<Membership>,
    leave: Option<&LeaveRequest>,
) {
    let (shared, notifier, stops) = (&boot.shared, &boot.notifier, boot.stops.clone());
    let why = match leave {
        Some(leave) => format!("leaving: {}", leave.reason),
        None => "stopping".to_string(),
    };
    tracing::info!("{why}: readiness off, then services in reverse order");
    shared.update(|s| {
        s.phase = Phase::Stopping;
        s.reason = Some(why.clone());
    });
    match leave {
        Some(_) => notifier.status(&why),
        None => {
            shared.event("info", "stop requested");
            notifier.notify("STOPPING=1\nSTATUS=stopping");
        }
    }
    lifecycle::step(shared, LeaveStepKind::ReadinessOff);
    if let Some(membership) = membership {
        // Leave the load balancer (deregister, drain) while services still serve what is in
        // flight; a second stop request cuts the drain short.
        tokio::select! {
            _ = membership.leave() => lifecycle::step(shared, LeaveStepKind::OutOfTheLoadBalancer),
            _ = requested(stops.clone(), 2) => tracing::warn!("drain cut short by a second stop request"),
        }
    }
    let mut stopped = std::pin::pin!(handle.stop());
    tokio::select! {
        _ = &mut stopped => {}
        _ = requested(stops, 2) => {
            handle.kill_all();
            stopped.await;
        }
    }
}

/// Before the supervisor runs (after a refused boot, after a leave) the walk itself is kiln's
/// loop: beat for it, so `/livez` stays 200. Once services run, the supervisor's loop beats.
fn spawn_heartbeat(shared: &Arc<Shared>) {
    let shared = shared.clone();
    tokio::spawn(async move {
        loop {
            // Stopped: waiting for the power-off after a leave, still explaining.
            if matches!(shared.phase(), Phase::Booting | Phase::Failed | Phase::Stopped) {
                shared.beat();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// `WATCHDOG=1` at half of `$WATCHDOG_USEC`, only while the supervisor loop is alive: a hung
/// kiln is then restarted by systemd.
fn spawn_watchdog(notifier: &Arc<Notifier>, shared: &Arc<Shared>) {
    let Some(interval) = notifier.watchdog_interval() else {
        return;
    };
    let (notifier, shared) = (notifier.clone(), shared.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if shared.alive(interval * 2) {
                notifier.notify("WATCHDOG=1");
            }
        }
    });
}

/// `on_drift = "poweroff"`, once everything is stopped: as PID 1 kiln powers off itself; under
/// systemd it asks systemd, which then stops the rest of the machine in order.
fn power_off() {
    tracing::warn!("powering the machine off (seal drift, on_drift = poweroff)");
    if std::process::id() == 1 {
        nix::unistd::sync();
        let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        tracing::error!("power off failed: {e}");
        return;
    }
    match std::process::Command::new("systemctl")
        .args(["poweroff", "--no-block"])
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::error!("systemctl poweroff: {status}"),
        Err(e) => tracing::error!("systemctl poweroff: {e}"),
    }
}
