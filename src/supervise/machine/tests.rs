//! The machine's transitions as tables: an event, then the effects it must give, in order, in a
//! short form (see [`brief`]). No process, no runtime, no clock: time is what the harness says.

use super::*;
use crate::probe::Role;
use crate::probe::runner::CheckReport;
use crate::state::UnitStatus;
use crate::supervise::view;
use nix::sys::signal::Signal::{SIGKILL, SIGTERM};
use std::collections::VecDeque;

/// Wall-clock time of the first step.
const T0: u64 = 1_700_000_000_000;

const EXAMPLE: &str = r#"
[[service]]
name = "php-fpm"
command = ["php-fpm8.2"]
stop_signal = "SIGQUIT"
[service.ready]
fastcgi = "unix:/run/php.sock"

[[service]]
name = "nginx"
after = ["php-fpm"]
command = ["nginx"]
stop_signal = "SIGQUIT"
[service.ready]
http = "http://127.0.0.1:8080/healthz"

[[service]]
name = "worker"
command = ["php", "worker.php"]
replicas = 2
"#;

/// What `kiln status` would show after a step.
struct View {
    units: Vec<UnitStatus>,
    phase: Phase,
    reason: Option<String>,
}

/// A machine, a clock, and the timers it asked for.
struct Harness {
    machine: Machine,
    now_ms: u64,
    next_pid: i32,
    /// Timers asked for and not fired yet: when they are due, and which.
    timers: Vec<(u64, Timer)>,
    /// Every effect so far, in full.
    history: Vec<Effect>,
}

impl Harness {
    fn new(services_toml: &str) -> Harness {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            service: Vec<ServiceConfig>,
            #[serde(default)]
            task: Vec<TaskConfig>,
        }
        let file: File = toml::from_str(services_toml).expect("test services parse");
        Harness::with(&file.service, &file.task)
    }

    fn of(services: &[ServiceConfig]) -> Harness {
        Harness::with(services, &[])
    }

    fn with(services: &[ServiceConfig], tasks: &[TaskConfig]) -> Harness {
        Harness {
            machine: Machine::new(services, tasks),
            now_ms: T0,
            next_pid: 100,
            timers: Vec::new(),
            history: Vec::new(),
        }
    }

    /// The example's services, started, with every unit running and ready.
    fn ready_example() -> Harness {
        let mut h = Harness::new(EXAMPLE);
        h.step(Event::Start);
        h.pass("php-fpm");
        h.pass("worker#1");
        h.pass("worker#2");
        h.pass("nginx");
        assert_eq!(h.phase(), Phase::Ready);
        h
    }

    fn id(&self, name: &str) -> UnitId {
        self.machine
            .units()
            .iter()
            .position(|u| &*u.name == name)
            .unwrap_or_else(|| panic!("no unit {name}"))
    }

    fn unit(&self, name: &str) -> &Unit {
        &self.machine.units()[self.id(name)]
    }

    fn state(&self, name: &str) -> UnitState {
        self.unit(name).state
    }

    /// Steps, answers every spawn as the executor does (a fresh pid, before anything else), and
    /// returns the brief of every effect.
    fn step(&mut self, event: Event) -> Vec<String> {
        let mut queue = VecDeque::from([event]);
        let mut briefs = Vec::new();
        while let Some(event) = queue.pop_front() {
            for effect in self.machine.step(event, self.now_ms) {
                match &effect {
                    Effect::Spawn { unit, generation } => {
                        self.next_pid += 1;
                        queue.push_back(Event::Spawned {
                            unit: *unit,
                            generation: *generation,
                            pid: Pid::from_raw(self.next_pid),
                        });
                    }
                    Effect::StartTimer { after, timer } => self
                        .timers
                        .push((self.now_ms.saturating_add(millis(*after)), *timer)),
                    _ => {}
                }
                briefs.extend(brief(&self.machine, &effect));
                self.history.push(effect);
            }
        }
        briefs
    }

    fn generation(&self, name: &str) -> u64 {
        self.unit(name).generation
    }

    fn probe(&mut self, name: &str, event: ProbeEvent) -> Vec<String> {
        let (unit, generation) = (self.id(name), self.generation(name));
        self.step(Event::Probe {
            unit,
            generation,
            event,
        })
    }

    /// The startup probe passes and the unit turns ready.
    fn pass(&mut self, name: &str) -> Vec<String> {
        let mut briefs = self.probe(name, ProbeEvent::StartupPassed);
        briefs.extend(self.probe(name, ProbeEvent::Ready(true, "status 200".into())));
        briefs
    }

    fn exit(&mut self, name: &str, exit: Exit) -> Vec<String> {
        let (unit, generation) = (self.id(name), self.generation(name));
        self.step(Event::Exited {
            unit,
            generation,
            exit,
        })
    }

    /// Fires the unit's pending timer of `kind`, moving the clock to when it is due.
    fn fire(&mut self, name: &str, kind: TimerKind) -> Vec<String> {
        let unit = self.id(name);
        let at = self
            .timers
            .iter()
            .rposition(|(_, t)| t.unit == unit && t.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} timer for {name}"));
        let (due, timer) = self.timers.remove(at);
        self.now_ms = self.now_ms.max(due);
        self.step(Event::Timer(timer))
    }

    /// What the executor publishes after the last step: where the instance stands, and the
    /// units described from the machine as it is now (the last step ended with the publish).
    fn last_view(&self) -> View {
        let standing = self
            .history
            .iter()
            .rev()
            .find_map(|e| match e {
                Effect::Publish(standing) => Some(standing.clone()),
                _ => None,
            })
            .expect("a view was published");
        View {
            units: view::units(&self.machine),
            phase: standing.phase,
            reason: standing.reason,
        }
    }

    fn phase(&self) -> Phase {
        self.last_view().phase
    }

    fn reason(&self) -> Option<String> {
        self.last_view().reason.clone()
    }

    fn status_lines(&self) -> Vec<&str> {
        self.history
            .iter()
            .filter_map(|e| match e {
                Effect::Status(line) => Some(line.as_str()),
                _ => None,
            })
            .collect()
    }

    fn logged(&self, needle: &str) -> bool {
        self.history.iter().any(|e| match e {
            Effect::Log { line, .. } | Effect::Incident { line, .. } => line.contains(needle),
            _ => false,
        })
    }
}

/// An effect in a few words, or None for those the tables leave out: probes started and stopped
/// (they follow spawns and exits), log lines, the view, timeline marks, status lines and the
/// settle timer of every spawn. Tests that care look at `Harness::history`.
fn brief(machine: &Machine, effect: &Effect) -> Option<String> {
    let name = |unit: &UnitId| machine.units()[*unit].name.to_string();
    Some(match effect {
        Effect::Spawn { unit, .. } => format!("spawn {}", name(unit)),
        Effect::Signal { unit, signal, to, .. } => match to {
            StopSignalTo::Main => format!("{} {}", signal.as_str(), name(unit)),
            StopSignalTo::Group => format!("{} {} group", signal.as_str(), name(unit)),
        },
        Effect::KillTree { unit, .. } => format!("kill {}", name(unit)),
        Effect::StartTimer { after, timer } => match timer.kind {
            TimerKind::Settled => return None,
            kind => format!(
                "{kind:?} {} in {}",
                name(&timer.unit),
                humantime::format_duration(*after)
            ),
        },
        Effect::Incident { level, line } => format!("{}: {line}", level.as_str()),
        Effect::AnnounceReady => "READY=1".into(),
        Effect::StartWarmUp => "warm up".into(),
        Effect::StopWarmUp => "stop warm-up".into(),
        Effect::Stopped => "stopped".into(),
        Effect::Coordinate { unit, .. } => format!("coordinate {}", name(unit)),
        Effect::StopCoordinating { unit } => format!("stop coordinating {}", name(unit)),
        Effect::Release { unit, outcome } => match outcome {
            Outcome::Done => format!("release {}: done", name(unit)),
            Outcome::Failed(why) => format!("release {}: failed: {why}", name(unit)),
            Outcome::Abandoned => format!("release {}: abandoned", name(unit)),
        },
        Effect::TaskFailed { reason, .. } => format!("refuse: {reason}"),
        Effect::StartProbes { .. }
        | Effect::StopProbes { .. }
        | Effect::Log { .. }
        | Effect::Timeline(_)
        | Effect::Publish(_)
        | Effect::Status(_) => return None,
    })
}

fn sig(signal: Signal) -> Exit {
    Exit::Signal(signal)
}

#[test]
fn services_start_once_everything_in_their_after_is_ready() {
    let mut h = Harness::new(EXAMPLE);
    assert_eq!(
        h.step(Event::Start),
        ["spawn php-fpm", "spawn worker#1", "spawn worker#2"]
    );
    assert_eq!(h.state("nginx"), UnitState::Waiting);
    assert_eq!(h.last_view().units[1].waiting_for, ["php-fpm"]);
    assert_eq!(h.probe("php-fpm", ProbeEvent::StartupPassed), [] as [&str; 0]);
    assert_eq!(h.state("php-fpm"), UnitState::Running);
    assert_eq!(
        h.probe("php-fpm", ProbeEvent::Ready(true, "200 pong".into())),
        ["spawn nginx"]
    );
    assert!(h.logged("php-fpm: ready (200 pong)"));
    assert_eq!(h.pass("worker#1"), [] as [&str; 0]);
    assert_eq!(h.pass("worker#2"), [] as [&str; 0]);
    assert_eq!(h.phase(), Phase::Starting);
    assert_eq!(h.reason().as_deref(), Some("nginx starting"));
    assert_eq!(h.pass("nginx"), ["READY=1"]);
    assert_eq!(h.phase(), Phase::Ready);
    assert_eq!(h.status_lines().last(), Some(&"ready: 4 units"));
    let timeline: Vec<_> = h
        .history
        .iter()
        .filter_map(|e| match e {
            Effect::Timeline(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        timeline[..4],
        [
            Milestone::Begin(BootStep::Start("php-fpm".into())),
            Milestone::Begin(BootStep::Start("worker".into())),
            Milestone::Begin(BootStep::Start("nginx".into())),
            Milestone::Done(BootStep::Start("php-fpm".into())),
        ]
    );
}

#[test]
fn a_failed_startup_probe_kills_and_restarts_the_unit() {
    let mut h = Harness::new(EXAMPLE);
    h.step(Event::Start);
    let reason = "startup probe did not pass within 10s: connect refused";
    assert_eq!(
        h.probe("php-fpm", ProbeEvent::StartupFailed(reason.into())),
        [
            format!("warn: php-fpm: {reason}: restarting"),
            "kill php-fpm".into()
        ]
    );
    assert_eq!(
        h.exit("php-fpm", sig(SIGKILL)),
        [
            "kill php-fpm".to_string(),
            format!("warn: php-fpm: exited ({reason})"),
            "Restart php-fpm in 100ms".into(),
        ]
    );
    assert_eq!(h.state("php-fpm"), UnitState::Backoff);
    assert_eq!(h.unit("php-fpm").last_exit, Some(Ending::Killed(reason.into())));
    assert_eq!(h.unit("php-fpm").next_restart_ms, Some(T0 + 100));
    assert_eq!(h.fire("php-fpm", TimerKind::Restart), ["spawn php-fpm"]);
    assert_eq!(h.state("php-fpm"), UnitState::Starting);
    assert_eq!(h.unit("php-fpm").restarts, 1);
}

#[test]
fn a_failed_liveness_probe_restarts_the_unit_but_not_while_it_stops() {
    let mut h = Harness::ready_example();
    let reason = "liveness probe failed 3 times: timed out after 1s";
    assert_eq!(
        h.probe("nginx", ProbeEvent::LiveFailed(reason.into())),
        [format!("warn: nginx: {reason}: restarting"), "kill nginx".into()]
    );
    h.exit("nginx", sig(SIGKILL));
    assert_eq!(
        h.last_view().units[1].last_exit.as_deref(),
        Some(reason),
        "status shows why kiln killed it, not the signal"
    );
    assert_eq!(h.phase(), Phase::Degraded);
    assert_eq!(h.fire("nginx", TimerKind::Restart), ["spawn nginx"]);
    assert_eq!(h.pass("nginx"), [] as [&str; 0], "READY=1 is sent once");
    assert_eq!(h.phase(), Phase::Ready);

    h.step(Event::Stop);
    assert_eq!(h.state("nginx"), UnitState::Stopping);
    assert_eq!(
        h.probe("nginx", ProbeEvent::LiveFailed(reason.into())),
        [] as [&str; 0]
    );
}

#[test]
fn readiness_flaps_without_a_restart_and_ready_is_announced_once() {
    let mut h = Harness::ready_example();
    assert_eq!(
        h.probe("nginx", ProbeEvent::Ready(false, "status 502".into())),
        ["warn: nginx: not ready: status 502"]
    );
    assert_eq!(h.phase(), Phase::Degraded);
    assert_eq!(h.state("nginx"), UnitState::Running);
    h.probe(
        "nginx",
        ProbeEvent::Report(CheckReport {
            role: Role::Ready,
            kind: "http",
            ok: false,
            latency: Duration::from_millis(2),
            detail: "status 502".into(),
        }),
    );
    assert_eq!(h.reason().as_deref(), Some("nginx not ready: status 502"));
    assert_eq!(
        h.status_lines().last(),
        Some(&"degraded: nginx not ready: status 502")
    );
    assert_eq!(
        h.probe("nginx", ProbeEvent::Ready(true, "status 200".into())),
        [] as [&str; 0]
    );
    assert_eq!(h.phase(), Phase::Ready);
    assert_eq!(h.status_lines().last(), Some(&"ready: 4 units"));
    let announced = h
        .history
        .iter()
        .filter(|e| matches!(e, Effect::AnnounceReady))
        .count();
    assert_eq!(announced, 1);
}

const FLAKY: &str = r#"
[[service]]
name = "flaky"
command = ["false"]
restart_delay = "100ms"
restart_delay_max = "1s"
[service.ready]
tcp = "127.0.0.1:1"
"#;

#[test]
fn restart_delays_double_up_to_the_cap() {
    let mut h = Harness::new(FLAKY);
    h.step(Event::Start);
    let mut delays = Vec::new();
    for _ in 0..6 {
        let briefs = h.exit("flaky", Exit::Code(1));
        delays.push(briefs.last().unwrap().clone());
        h.fire("flaky", TimerKind::Restart);
    }
    assert_eq!(
        delays,
        [
            "Restart flaky in 100ms",
            "Restart flaky in 200ms",
            "Restart flaky in 400ms",
            "Restart flaky in 800ms",
            "Restart flaky in 1s",
            "Restart flaky in 1s",
        ]
    );
    assert_eq!(h.unit("flaky").restarts, 6);
}

#[test]
fn a_crash_loop_keeps_the_instance_unready_until_one_run_lasts() {
    let mut h = Harness::new(FLAKY);
    h.step(Event::Start);
    for _ in 0..3 {
        h.exit("flaky", Exit::Code(1));
        h.fire("flaky", TimerKind::Restart);
    }
    assert!(h.logged("flaky: crash loop (3 failures in a row), next start in 400ms"));
    h.pass("flaky");
    assert_eq!(h.state("flaky"), UnitState::Running);
    assert!(h.unit("flaky").crash_loop());
    assert_eq!(h.phase(), Phase::Starting, "ready, but crash-looping");
    assert_eq!(
        h.reason().as_deref(),
        Some("flaky crash-looping: exit 1 (3 restarts)")
    );
    // A Settled timer of an earlier run changes nothing.
    let stale = Timer {
        unit: 0,
        generation: 1,
        kind: TimerKind::Settled,
    };
    h.step(Event::Timer(stale));
    assert!(h.unit("flaky").crash_loop());
    assert_eq!(h.fire("flaky", TimerKind::Settled), ["READY=1"]);
    assert_eq!(h.unit("flaky").failures_in_a_row, 0);
    assert!(h.logged("flaky: stable again after 3 failures in a row"));
    assert_eq!(h.phase(), Phase::Ready);
    // The next failure starts the count (and the delay) from the beginning.
    assert_eq!(
        h.exit("flaky", Exit::Code(1)).last().unwrap(),
        "Restart flaky in 100ms"
    );
}

#[test]
fn a_run_that_lasted_before_its_startup_probe_passed_ends_a_crash_loop() {
    let mut h = Harness::new(FLAKY);
    h.step(Event::Start);
    for _ in 0..3 {
        h.exit("flaky", Exit::Code(1));
        h.fire("flaky", TimerKind::Restart);
    }
    // The Settled timer fires while the startup probe still runs...
    h.fire("flaky", TimerKind::Settled);
    assert!(h.unit("flaky").crash_loop());
    // ... so passing it after 10 s settles the unit.
    h.pass("flaky");
    assert_eq!(h.unit("flaky").failures_in_a_row, 0);
    assert_eq!(h.phase(), Phase::Ready);
}

#[test]
fn on_failure_ends_a_unit_on_exit_0_and_restarts_it_otherwise() {
    let mut h = Harness::new(
        r#"
[[service]]
name = "migrate"
command = ["migrate"]
restart = "on-failure"
"#,
    );
    h.step(Event::Start);
    assert_eq!(
        h.exit("migrate", Exit::Code(3)),
        [
            "kill migrate",
            "warn: migrate: exited (exit 3)",
            "Restart migrate in 100ms"
        ]
    );
    h.fire("migrate", TimerKind::Restart);
    assert_eq!(
        h.exit("migrate", Exit::Code(0)),
        [
            "kill migrate",
            "info: migrate: exited (exit 0); restart = on-failure: not restarted",
            "READY=1",
        ]
    );
    assert_eq!(h.state("migrate"), UnitState::Exited);
    assert_eq!(h.phase(), Phase::Ready, "a finished one-shot counts as ready");
}

#[test]
fn restart_never_ends_a_unit_on_any_exit_and_it_is_not_ready() {
    let mut h = Harness::new("[[service]]\nname = \"once\"\ncommand = [\"x\"]\nrestart = \"never\"\n");
    h.step(Event::Start);
    assert_eq!(
        h.exit("once", Exit::Code(0)),
        [
            "kill once",
            "info: once: exited (exit 0); restart = never: not restarted"
        ]
    );
    assert_eq!(
        h.reason().as_deref(),
        Some("once exited (exit 0) and is not restarted")
    );
}

#[test]
fn replicas_run_and_restart_on_their_own_and_the_service_is_ready_with_all_of_them() {
    let mut h = Harness::ready_example();
    assert_eq!(
        h.exit("worker#2", Exit::Code(1)),
        [
            "kill worker#2",
            "warn: worker#2: exited (exit 1)",
            "Restart worker#2 in 100ms"
        ]
    );
    assert_eq!(h.state("worker#1"), UnitState::Running);
    assert_eq!(h.phase(), Phase::Degraded);
    assert_eq!(h.fire("worker#2", TimerKind::Restart), ["spawn worker#2"]);
    let units = &h.last_view().units;
    assert_eq!(
        (units[2].unit.as_str(), units[3].unit.as_str()),
        ("worker#1", "worker#2")
    );
    h.probe("worker#2", ProbeEvent::StartupPassed);
    assert_eq!(h.phase(), Phase::Degraded);
    h.probe("worker#2", ProbeEvent::Ready(true, "running for 1s".into()));
    assert_eq!(h.phase(), Phase::Ready);
}

#[test]
fn a_stop_goes_in_reverse_order_to_main_processes_and_kills_after_the_timeout() {
    let mut h = Harness::ready_example();
    assert_eq!(
        h.step(Event::Stop),
        [
            "SIGQUIT nginx",
            "SIGCONT nginx group",
            "StopTimeout nginx in 10s",
            "SIGTERM worker#1",
            "SIGCONT worker#1 group",
            "StopTimeout worker#1 in 10s",
            "SIGTERM worker#2",
            "SIGCONT worker#2 group",
            "StopTimeout worker#2 in 10s",
        ]
    );
    assert_eq!(h.phase(), Phase::Stopping);
    assert!(h.logged("nginx: stopping (SIGQUIT)"));
    assert_eq!(h.state("php-fpm"), UnitState::Running, "nginx still needs it");
    assert_eq!(h.exit("worker#1", Exit::Code(0)), ["kill worker#1"]);
    assert_eq!(h.exit("worker#2", Exit::Code(0)), ["kill worker#2"]);
    assert_eq!(
        h.fire("nginx", TimerKind::StopTimeout),
        [
            "warn: nginx: still running 10s after the stop signal: SIGKILL",
            "kill nginx",
        ]
    );
    assert_eq!(
        h.exit("nginx", sig(SIGKILL)),
        [
            "kill nginx",
            "SIGQUIT php-fpm",
            "SIGCONT php-fpm group",
            "StopTimeout php-fpm in 10s",
        ]
    );
    assert!(h.logged("nginx: stopped (killed by SIGKILL)"));
    assert_eq!(h.exit("php-fpm", Exit::Code(0)), ["kill php-fpm", "stopped"]);
    // A stop timer that fires after the exit finds nothing to kill.
    assert_eq!(h.fire("php-fpm", TimerKind::StopTimeout), [] as [&str; 0]);
    assert!(h.machine.units().iter().all(|u| u.state == UnitState::Stopped));
}

#[test]
fn stop_signal_to_group_signals_the_whole_process_group() {
    let mut h = Harness::new(
        "[[service]]\nname = \"script\"\ncommand = [\"sh\", \"run.sh\"]\nstop_signal_to = \"group\"\nstop_timeout = \"3s\"\n",
    );
    h.step(Event::Start);
    assert_eq!(
        h.step(Event::Stop),
        [
            "SIGTERM script group",
            "SIGCONT script group",
            "StopTimeout script in 3s"
        ]
    );
    assert!(h.logged("script: stopping (SIGTERM to its process group)"));
    assert_eq!(
        h.exit("script", Exit::Signal(SIGTERM)),
        ["kill script", "stopped"]
    );
}

#[test]
fn a_second_stop_request_kills_every_unit_at_once() {
    let mut h = Harness::ready_example();
    h.step(Event::Stop);
    assert_eq!(
        h.step(Event::KillAll),
        ["kill php-fpm", "kill nginx", "kill worker#1", "kill worker#2"]
    );
    assert_eq!(h.state("php-fpm"), UnitState::Stopping);
    h.exit("nginx", sig(SIGKILL));
    h.exit("worker#1", sig(SIGKILL));
    h.exit("worker#2", sig(SIGKILL));
    assert_eq!(
        h.exit("php-fpm", sig(SIGKILL)),
        ["kill php-fpm", "stopped"],
        "php-fpm is not signalled again once nginx is gone"
    );
}

#[test]
fn a_stop_ends_waiting_and_backing_off_units_at_once() {
    let mut h = Harness::new(EXAMPLE);
    h.step(Event::Start);
    h.exit("worker#1", Exit::Code(1));
    assert_eq!(h.state("nginx"), UnitState::Waiting);
    assert_eq!(h.state("worker#1"), UnitState::Backoff);
    h.step(Event::Stop);
    assert_eq!(h.state("nginx"), UnitState::Stopped);
    assert_eq!(h.state("worker#1"), UnitState::Stopped);
    assert_eq!(h.unit("worker#1").next_restart_ms, None);
    assert_eq!(h.fire("worker#1", TimerKind::Restart), [] as [&str; 0]);
    h.exit("worker#2", Exit::Code(0));
    assert_eq!(h.exit("php-fpm", Exit::Code(0)), ["kill php-fpm", "stopped"]);
}

#[test]
fn a_stop_with_nothing_running_is_done_at_once() {
    let mut h = Harness::new(EXAMPLE);
    assert_eq!(h.step(Event::Stop), ["stopped"]);
}

#[test]
fn events_about_an_earlier_process_are_ignored() {
    let mut h = Harness::ready_example();
    let old = h.generation("nginx");
    h.probe("nginx", ProbeEvent::LiveFailed("hung".into()));
    h.exit("nginx", sig(SIGKILL));
    h.fire("nginx", TimerKind::Restart);
    let unit = h.id("nginx");
    let stale = [
        Event::Exited {
            unit,
            generation: old,
            exit: Exit::Code(1),
        },
        Event::Probe {
            unit,
            generation: old,
            event: ProbeEvent::LiveFailed("hung".into()),
        },
    ];
    for event in stale {
        assert_eq!(h.step(event), [] as [&str; 0]);
    }
    assert_eq!(h.state("nginx"), UnitState::Starting);
    assert_eq!(h.unit("nginx").restarts, 1);
}

#[test]
fn a_unit_that_cannot_start_backs_off_with_the_reason_in_status() {
    let mut h = Harness::new(FLAKY);
    // Straight to the machine: the harness would answer the spawn with success.
    let effects = h.machine.step(Event::Start, T0);
    let generation = match effects.iter().find(|e| matches!(e, Effect::Spawn { .. })) {
        Some(Effect::Spawn { generation, .. }) => *generation,
        other => panic!("no spawn: {other:?}"),
    };
    let reason = "cannot start \"false\": No such file or directory (os error 2)";
    let briefs = h.step(Event::SpawnFailed {
        unit: 0,
        generation,
        reason: reason.into(),
    });
    assert_eq!(
        briefs,
        [format!("error: flaky: {reason}"), "Restart flaky in 100ms".into()]
    );
    assert_eq!(h.state("flaky"), UnitState::Backoff);
    assert_eq!(
        h.reason().as_deref(),
        Some(format!("flaky restarting after {reason}").as_str())
    );
}

#[test]
fn huge_delays_saturate_instead_of_panicking() {
    // The config refuses durations over 10 years; the machine must not panic even so.
    let mut slow: ServiceConfig = toml::from_str("name = \"slow\"\ncommand = [\"x\"]\n").unwrap();
    let huge = crate::config::HumanDuration(std::time::Duration::MAX);
    (slow.restart_delay, slow.restart_delay_max, slow.stop_timeout) = (huge, huge, huge);
    let mut h = Harness::of(&[slow]);
    h.step(Event::Start);
    for _ in 0..3 {
        h.exit("slow", Exit::Code(1));
        h.fire("slow", TimerKind::Restart);
    }
    h.exit("slow", Exit::Code(1));
    assert_eq!(h.unit("slow").next_restart_ms, Some(u64::MAX));
    h.fire("slow", TimerKind::Restart);
    h.step(Event::Stop);
    assert_eq!(
        h.fire("slow", TimerKind::StopTimeout).last().unwrap(),
        "kill slow"
    );
}

#[test]
fn probe_reports_are_kept_for_status() {
    let mut h = Harness::ready_example();
    h.now_ms += 1234;
    h.probe(
        "php-fpm",
        ProbeEvent::Report(CheckReport {
            role: Role::Live,
            kind: "fastcgi",
            ok: true,
            latency: Duration::from_micros(900),
            detail: "200 pong".into(),
        }),
    );
    let report = h.last_view().units[0].last_probe.clone().unwrap();
    assert_eq!(
        (report.probe.as_str(), report.kind.as_str(), report.ok),
        ("live", "fastcgi", true)
    );
    assert_eq!((report.latency_us, report.at_ms), (900, T0 + 1234));
}

// Tasks: units that run to completion.

/// A migration before php-fpm, a warmup after it, and Redis beside them.
const TASKS: &str = r#"
[[service]]
name = "redis"
command = ["redis-server"]
[service.ready]
tcp = "127.0.0.1:6379"

[[service]]
name = "php-fpm"
after = ["migrate"]
command = ["php-fpm8.2"]
[service.ready]
fastcgi = "unix:/run/php.sock"

[[task]]
name = "migrate"
command = ["php", "bin/console", "app:migrate"]
retries = 2
retry_delay = "1s"
retry_delay_max = "10s"

[[task]]
name = "warmup"
after = ["php-fpm"]
command = ["php", "bin/console", "cache:warmup"]
timeout = "5s"
stop_timeout = "2s"
"#;

/// The same migration, run once for the fleet.
const FLEET: &str = r#"
[[service]]
name = "php-fpm"
after = ["migrate"]
command = ["php-fpm8.2"]
[service.ready]
fastcgi = "unix:/run/php.sock"

[[task]]
name = "migrate"
command = ["php", "bin/console", "app:migrate"]
once = "fleet"
"#;

impl Harness {
    /// The fleet's word on the task, as the executor feeds it back.
    fn coordinated(&mut self, name: &str, verdict: Verdict) -> Vec<String> {
        let (unit, generation) = (self.id(name), self.generation(name));
        self.step(Event::Coordinated {
            unit,
            generation,
            verdict,
        })
    }

    fn lease_lost(&mut self, name: &str, reason: &str) -> Vec<String> {
        let (unit, generation) = (self.id(name), self.generation(name));
        self.step(Event::LeaseLost {
            unit,
            generation,
            reason: reason.into(),
        })
    }

    fn task(&self, name: &str) -> crate::state::TaskStatus {
        let view = self.last_view();
        let unit = view.units.iter().find(|u| u.unit == name).expect("the unit");
        unit.task.clone().expect("a task")
    }
}

#[test]
fn a_task_runs_to_exit_0_before_what_waits_for_it_and_counts_as_done() {
    let mut h = Harness::new(TASKS);
    assert_eq!(
        h.step(Event::Start),
        ["spawn redis", "spawn migrate", "TaskTimeout migrate in 10m"]
    );
    assert_eq!(
        h.state("migrate"),
        UnitState::Running,
        "no startup probe to wait for"
    );
    assert!(h.logged("migrate: started (pid 102), attempt 1 of 3"));
    assert_eq!(h.reason().as_deref(), Some("redis starting (+3 more)"));
    h.pass("redis");
    assert_eq!(
        h.reason().as_deref(),
        Some("php-fpm waiting for migrate (+2 more)")
    );
    let view = h.last_view();
    assert_eq!(view.units[2].waiting_for, [] as [&str; 0]);
    assert_eq!(view.units[3].waiting_for, ["php-fpm"]);
    h.now_ms += 1500;
    assert_eq!(
        h.exit("migrate", Exit::Code(0)),
        [
            "kill migrate",
            "info: migrate: done (exit 0) in 1.5s",
            "spawn php-fpm"
        ]
    );
    assert_eq!(h.state("migrate"), UnitState::Done);
    assert_eq!(h.state("warmup"), UnitState::Waiting);
    assert_eq!(
        h.pass("php-fpm"),
        ["spawn warmup", "TaskTimeout warmup in 5s"],
        "a task after a service runs once the service is ready"
    );
    assert_eq!(h.exit("warmup", Exit::Code(0)).last().unwrap(), "READY=1");
    assert_eq!(h.phase(), Phase::Ready);
    assert!(h.logged("all 2 services ready, 2 tasks done"));
    assert_eq!(h.status_lines().last(), Some(&"ready: 2 units"));
    let task = h.task("migrate");
    assert_eq!(
        (
            task.once.as_str(),
            task.attempts,
            task.attempts_max,
            task.ran_here,
            task.took_us
        ),
        ("instance", 1, 3, Some(true), Some(1_500_000))
    );
    let view = h.last_view();
    let migrate = view.units.iter().find(|u| u.unit == "migrate").unwrap();
    assert_eq!(
        (migrate.kind, migrate.ready),
        (crate::state::UnitKind::Task, true)
    );
    let timeline: Vec<_> = h
        .history
        .iter()
        .filter_map(|e| match e {
            Effect::Timeline(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        timeline[..3],
        [
            Milestone::Begin(BootStep::Start("redis".into())),
            Milestone::Begin(BootStep::Task("migrate".into())),
            Milestone::Done(BootStep::Start("redis".into())),
        ]
    );
    assert!(timeline.contains(&Milestone::Done(BootStep::Task("migrate".into()))));
    assert!(timeline.contains(&Milestone::Done(BootStep::Task("warmup".into()))));
}

#[test]
fn a_failed_attempt_is_retried_with_backoff_and_the_last_refuses_the_boot() {
    let mut h = Harness::new(TASKS);
    h.step(Event::Start);
    assert_eq!(
        h.exit("migrate", Exit::Code(1)),
        [
            "kill migrate",
            "warn: migrate: attempt 1 of 3 failed (exit 1): retrying in 1s",
            "Restart migrate in 1s",
        ]
    );
    assert_eq!(h.state("migrate"), UnitState::Backoff);
    h.pass("redis");
    assert_eq!(
        h.reason().as_deref(),
        Some("php-fpm waiting for migrate (+2 more)")
    );
    assert_eq!(
        h.fire("migrate", TimerKind::Restart),
        ["spawn migrate", "TaskTimeout migrate in 10m"]
    );
    assert_eq!(
        h.exit("migrate", Exit::Code(1)).last().unwrap(),
        "Restart migrate in 2s"
    );
    h.fire("migrate", TimerKind::Restart);
    let refused = "task \"migrate\" failed: exit 1 (attempt 3 of 3)";
    assert_eq!(
        h.exit("migrate", Exit::Code(1)),
        [
            "kill migrate".to_string(),
            format!("error: {refused}"),
            format!("refuse: {refused}"),
        ]
    );
    assert_eq!(h.state("migrate"), UnitState::Failed);
    assert_eq!(
        h.state("php-fpm"),
        UnitState::Waiting,
        "nothing starts after a task failed"
    );
    assert_eq!(h.state("redis"), UnitState::Running, "the boot walk stops it");
    assert!(
        !h.unit("migrate").crash_loop(),
        "retries are counted, not a crash loop"
    );
    assert_eq!(
        h.reason().as_deref(),
        Some("php-fpm waiting for migrate (+2 more)")
    );
    let why: Vec<String> = h
        .machine
        .units()
        .iter()
        .map(|u| h.machine.why_not_ready(u))
        .collect();
    assert_eq!(why[2], "task migrate failed: exit 1");
    let task = h.task("migrate");
    assert_eq!((task.attempts, task.ran_here), (3, Some(true)));
}

#[test]
fn a_task_that_cannot_start_is_a_failed_attempt() {
    let mut h = Harness::new(TASKS);
    let effects = h.machine.step(Event::Start, T0);
    let unit = h.id("migrate");
    let generation = effects
        .iter()
        .find_map(|e| match e {
            Effect::Spawn { unit: u, generation } if *u == unit => Some(*generation),
            _ => None,
        })
        .unwrap();
    let reason = "cannot start \"php\": No such file or directory (os error 2)";
    assert_eq!(
        h.step(Event::SpawnFailed {
            unit,
            generation,
            reason: reason.into()
        }),
        [
            format!("error: migrate: {reason}"),
            format!("warn: migrate: attempt 0 of 3 failed ({reason}): retrying in 1s"),
            "Restart migrate in 1s".into(),
        ]
    );
}

#[test]
fn a_task_past_its_timeout_gets_its_stop_signal_then_sigkill_and_fails() {
    let mut h = Harness::new(TASKS);
    h.step(Event::Start);
    h.exit("migrate", Exit::Code(0));
    h.pass("php-fpm");
    assert_eq!(
        h.fire("warmup", TimerKind::TaskTimeout),
        [
            "warn: warmup: timed out after 5s: stopping it (SIGTERM)",
            "SIGTERM warmup",
            "SIGCONT warmup group",
            "StopTimeout warmup in 2s",
        ]
    );
    assert_eq!(
        h.fire("warmup", TimerKind::StopTimeout),
        [
            "warn: warmup: still running 2s after the stop signal: SIGKILL",
            "kill warmup"
        ]
    );
    let refused = "task \"warmup\" failed: timed out after 5s (attempt 1 of 1)";
    assert_eq!(
        h.exit("warmup", sig(SIGKILL)),
        [
            "kill warmup".to_string(),
            format!("error: {refused}"),
            format!("refuse: {refused}"),
        ]
    );
    assert_eq!(
        h.unit("warmup").last_exit.as_ref().and_then(Ending::code),
        Some(137)
    );
}

#[test]
fn a_timeout_timer_of_an_earlier_attempt_changes_nothing() {
    let mut h = Harness::new(TASKS);
    h.step(Event::Start);
    let stale = h
        .timers
        .iter()
        .find(|(_, t)| t.kind == TimerKind::TaskTimeout)
        .unwrap()
        .1;
    h.exit("migrate", Exit::Code(1));
    h.fire("migrate", TimerKind::Restart);
    assert_eq!(h.step(Event::Timer(stale)), [] as [&str; 0]);
    assert_eq!(h.state("migrate"), UnitState::Running);
}

#[test]
fn once_per_fleet_the_task_runs_only_under_the_lease_and_releases_it_with_the_outcome() {
    let mut h = Harness::new(FLEET);
    assert_eq!(h.step(Event::Start), ["coordinate migrate"]);
    assert_eq!(h.state("migrate"), UnitState::Coordinating);
    let (unit, generation) = (h.id("migrate"), h.generation("migrate"));
    h.step(Event::FleetWords {
        unit,
        generation,
        words: "i-0002 holds the lease".into(),
    });
    assert_eq!(h.task("migrate").lease.as_deref(), Some("i-0002 holds the lease"));
    assert_eq!(
        h.machine.why_not_ready(h.unit("migrate")),
        "task migrate waiting for the fleet: i-0002 holds the lease"
    );
    assert_eq!(
        h.coordinated("migrate", Verdict::Run),
        [
            "info: migrate: this instance holds the fleet's lease: running it",
            "spawn migrate",
            "TaskTimeout migrate in 10m",
        ]
    );
    assert_eq!(h.task("migrate").lease.as_deref(), Some("held by this instance"));
    assert_eq!(
        h.coordinated("migrate", Verdict::Run),
        [] as [&str; 0],
        "an answer about an earlier wait is ignored"
    );
    assert_eq!(
        h.exit("migrate", Exit::Code(0)),
        [
            "kill migrate",
            "info: migrate: done (exit 0) in 0ms",
            "release migrate: done",
            "spawn php-fpm"
        ]
    );
    let task = h.task("migrate");
    assert_eq!(
        (task.once.as_str(), task.ran_here, task.lease.as_deref()),
        ("fleet", Some(true), Some("released: done"))
    );
}

#[test]
fn once_per_fleet_another_instances_outcome_is_this_instances() {
    let mut h = Harness::new(FLEET);
    h.step(Event::Start);
    let by = Verdict::Done { by: "i-0002".into() };
    assert_eq!(
        h.coordinated("migrate", by),
        [
            "info: migrate: done by i-0002 for this release: not run here",
            "spawn php-fpm"
        ]
    );
    let task = h.task("migrate");
    assert_eq!(
        (task.ran_here, task.by.as_deref(), task.attempts),
        (Some(false), Some("i-0002"), 0)
    );
    assert_eq!(h.pass("php-fpm"), ["READY=1"]);

    let mut h = Harness::new(FLEET);
    h.step(Event::Start);
    let failed = Verdict::Failed {
        by: "i-0003".into(),
        reason: "exit 1\nstderr| no such table".into(),
    };
    let refused = "task \"migrate\" failed on i-0003: exit 1\nstderr| no such table";
    assert_eq!(
        h.coordinated("migrate", failed),
        [format!("error: {refused}"), format!("refuse: {refused}")],
        "the winner's reason, and no lease to release"
    );
    assert_eq!(h.state("migrate"), UnitState::Failed);
    assert_eq!(h.state("php-fpm"), UnitState::Waiting);

    let mut h = Harness::new(FLEET);
    h.step(Event::Start);
    let why = "waited 10m30s for i-0002, which still holds the lease in dynamodb table t";
    assert_eq!(
        h.coordinated("migrate", Verdict::Unavailable(why.into())),
        [
            format!("error: task \"migrate\": {why}"),
            format!("refuse: task \"migrate\": {why}")
        ]
    );
}

#[test]
fn once_per_fleet_a_failure_under_the_lease_is_recorded_then_refuses() {
    let mut h = Harness::new(FLEET);
    h.step(Event::Start);
    h.coordinated("migrate", Verdict::Run);
    let refused = "task \"migrate\" failed: exit 3 (attempt 1 of 1)";
    assert_eq!(
        h.exit("migrate", Exit::Code(3)),
        [
            "kill migrate".to_string(),
            "release migrate: failed: exit 3".into(),
            format!("error: {refused}"),
            format!("refuse: {refused}"),
        ]
    );
}

#[test]
fn a_lost_lease_kills_the_run_at_once_and_the_task_asks_the_fleet_again() {
    let mut h = Harness::new(FLEET);
    h.step(Event::Start);
    h.coordinated("migrate", Verdict::Run);
    assert_eq!(
        h.lease_lost("migrate", "not renewed within its life: no answer"),
        [
            "warn: migrate: lost the fleet's lease (not renewed within its life: no answer): killing this run",
            "kill migrate"
        ]
    );
    assert_eq!(
        h.exit("migrate", sig(SIGKILL)),
        ["kill migrate", "coordinate migrate"],
        "no outcome is released: the lease is not this instance's"
    );
    assert_eq!(h.state("migrate"), UnitState::Coordinating);
    // The instance that took it over ran it.
    h.coordinated("migrate", Verdict::Done { by: "i-0004".into() });
    assert_eq!(h.state("migrate"), UnitState::Done);
    assert_eq!(h.task("migrate").attempts, 1);
    // A second loss of a lease no longer held changes nothing.
    assert_eq!(h.lease_lost("migrate", "late"), [] as [&str; 0]);
}

#[test]
fn a_lease_lost_between_two_attempts_ends_the_retry_and_asks_the_fleet_again() {
    let mut h = Harness::new(&FLEET.replace("once = \"fleet\"", "once = \"fleet\"\nretries = 1"));
    h.step(Event::Start);
    h.coordinated("migrate", Verdict::Run);
    h.exit("migrate", Exit::Code(1));
    assert_eq!(h.state("migrate"), UnitState::Backoff);
    assert_eq!(
        h.lease_lost("migrate", "another instance holds it now"),
        [
            "warn: migrate: lost the fleet's lease (another instance holds it now) between attempts",
            "coordinate migrate"
        ]
    );
    assert_eq!(
        h.fire("migrate", TimerKind::Restart),
        [] as [&str; 0],
        "the retry is off"
    );
}

#[test]
fn a_stop_ends_a_wait_for_the_fleet_and_abandons_a_lease_held() {
    let mut h = Harness::new(FLEET);
    h.step(Event::Start);
    assert_eq!(h.step(Event::Stop), ["stop coordinating migrate", "stopped"]);
    assert_eq!(h.state("migrate"), UnitState::Stopped);
    assert_eq!(h.coordinated("migrate", Verdict::Run), [] as [&str; 0]);

    let mut h = Harness::new(FLEET);
    h.step(Event::Start);
    h.coordinated("migrate", Verdict::Run);
    assert_eq!(
        h.step(Event::Stop),
        [
            "SIGTERM migrate",
            "SIGCONT migrate group",
            "StopTimeout migrate in 10s"
        ]
    );
    assert_eq!(
        h.exit("migrate", Exit::Signal(SIGTERM)),
        ["kill migrate", "release migrate: abandoned", "stopped"],
        "stopped before an outcome: another instance may take over at once"
    );
}

#[test]
fn a_warm_up_runs_once_between_every_service_ready_and_ready_1() {
    let mut h = Harness::new(EXAMPLE);
    h.machine.warm_up_first();
    h.step(Event::Start);
    h.pass("php-fpm");
    h.pass("worker#1");
    h.pass("worker#2");
    assert_eq!(h.pass("nginx"), ["warm up"]);
    assert_eq!(h.phase(), Phase::Starting, "not ready while warming up");
    assert_eq!(h.reason().as_deref(), Some("warming up (kiln status: warm-up)"));
    // A service that stops being ready meanwhile: its reason comes first, no second warm-up.
    assert_eq!(
        h.probe("nginx", ProbeEvent::Ready(false, "status 502".into())),
        ["warn: nginx: not ready: status 502"]
    );
    assert_eq!(h.reason().as_deref(), Some("nginx not ready yet"));
    assert_eq!(
        h.step(Event::WarmedUp),
        [] as [&str; 0],
        "not ready: no READY=1 yet"
    );
    assert_eq!(h.phase(), Phase::Starting);
    assert_eq!(h.pass("nginx"), ["READY=1"]);
    assert_eq!(h.phase(), Phase::Ready);
    let warm: Vec<_> = h
        .history
        .iter()
        .filter_map(|e| match e {
            Effect::Timeline(m @ (Milestone::Begin(BootStep::Warm) | Milestone::Done(BootStep::Warm))) => {
                Some(m.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        warm,
        [Milestone::Begin(BootStep::Warm), Milestone::Done(BootStep::Warm)]
    );
    assert_eq!(
        h.step(Event::WarmedUp),
        [] as [&str; 0],
        "a late answer changes nothing"
    );
}

#[test]
fn a_stop_during_the_warm_up_aborts_it_and_never_says_ready() {
    let mut h = Harness::new(EXAMPLE);
    h.machine.warm_up_first();
    h.step(Event::Start);
    for unit in ["php-fpm", "worker#1", "worker#2", "nginx"] {
        h.pass(unit);
    }
    let effects = h.step(Event::Stop);
    assert_eq!(
        effects.first().map(String::as_str),
        Some("stop warm-up"),
        "{effects:?}"
    );
    assert!(!effects.iter().any(|e| e == "READY=1"), "{effects:?}");
    assert_eq!(h.phase(), Phase::Stopping);
    assert_eq!(h.step(Event::WarmedUp), [] as [&str; 0]);
}
