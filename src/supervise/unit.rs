//! One running copy of a service and what kiln remembers about it across restarts: plain data,
//! changed only by the machine.

use crate::process::Exit;
use crate::state::{ProbeReport, UnitState, UnitStatus};
use nix::unistd::Pid;
use std::sync::Arc;
use std::time::Duration;

/// Failures in a row from which a unit counts as crash-looping (and the instance as not ready).
pub const CRASH_LOOP_AFTER: u32 = 3;
/// A run this long clears the failure count: the service is stable again.
pub const SETTLE_AFTER: Duration = Duration::from_secs(10);

/// How a unit's last run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The process ended: by itself, or by a signal kiln did not send on purpose.
    Exited(Exit),
    /// kiln killed it because a probe said so; the probe's words.
    Killed(String),
    /// The process could not be started; the error.
    NotStarted(String),
}

impl Ending {
    pub fn success(&self) -> bool {
        matches!(self, Ending::Exited(exit) if exit.success())
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Exited(exit) => exit.fmt(f),
            Ending::Killed(reason) | Ending::NotStarted(reason) => f.write_str(reason),
        }
    }
}

#[derive(Debug)]
pub struct Unit {
    pub service: usize,
    /// 1-based replica number.
    pub replica: u32,
    /// `php-fpm`, or `worker#2` for replicated services.
    pub name: Arc<str>,
    pub state: UnitState,
    /// Bumped on every spawn; events about an older process are ignored.
    pub generation: u64,
    pub pid: Option<Pid>,
    /// When the current process started (wall clock, ms since the epoch).
    pub since_ms: Option<u64>,
    pub ready: bool,
    pub restarts: u32,
    pub failures_in_a_row: u32,
    pub next_restart_ms: Option<u64>,
    pub last_exit: Option<Ending>,
    pub last_probe: Option<ProbeReport>,
    /// Why kiln is killing the process (liveness, startup): its ending instead of "killed by SIGKILL".
    pub kill_reason: Option<String>,
}

impl Unit {
    pub fn new(service: usize, service_name: &str, replica: u32, replicas: u32) -> Unit {
        let name: Arc<str> = if replicas > 1 {
            format!("{service_name}#{replica}").into()
        } else {
            service_name.into()
        };
        Unit {
            service,
            replica,
            name,
            state: UnitState::Waiting,
            generation: 0,
            pid: None,
            since_ms: None,
            ready: false,
            restarts: 0,
            failures_in_a_row: 0,
            next_restart_ms: None,
            last_exit: None,
            last_probe: None,
            kill_reason: None,
        }
    }

    pub fn crash_loop(&self) -> bool {
        self.failures_in_a_row >= CRASH_LOOP_AFTER
    }

    /// Has a process that kiln must stop or wait for.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            UnitState::Starting | UnitState::Running | UnitState::Stopping
        )
    }

    /// Ready to serve, or finished for good after a successful run it was allowed to end with.
    pub fn counts_as_ready(&self, completed_ok: bool) -> bool {
        match self.state {
            UnitState::Running => self.ready && !self.crash_loop(),
            UnitState::Exited => completed_ok,
            _ => false,
        }
    }

    /// Delay before the next restart: doubles with each failure in a row, capped.
    pub fn backoff(&self, first: Duration, max: Duration) -> Duration {
        let doublings = self.failures_in_a_row.saturating_sub(1).min(20);
        first.saturating_mul(1u32 << doublings).min(max)
    }

    /// The unit as `kiln status` shows it; the executor adds the stderr tail, the dropped lines
    /// and the cgroup it keeps.
    pub fn status(&self, service: &str, waiting_for: Vec<String>) -> UnitStatus {
        UnitStatus {
            service: service.to_string(),
            unit: self.name.to_string(),
            state: self.state,
            ready: self.state == UnitState::Running && self.ready,
            pid: self.pid.map(|p| p.as_raw() as u32),
            since_ms: self.since_ms,
            restarts: self.restarts,
            failures_in_a_row: self.failures_in_a_row,
            crash_loop: self.crash_loop(),
            next_restart_ms: self.next_restart_ms,
            last_probe: self.last_probe.clone(),
            last_exit: self.last_exit.as_ref().map(ToString::to_string),
            stderr_tail: Vec::new(),
            dropped_lines: 0,
            cgroup: None,
            memory_bytes: None,
            cpu_usec: None,
            waiting_for,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut u = Unit::new(0, "w", 1, 1);
        let (first, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (1..=6)
            .map(|n| {
                u.failures_in_a_row = n;
                u.backoff(first, max).as_millis()
            })
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn backoff_never_overflows() {
        let mut u = Unit::new(0, "w", 1, 1);
        u.failures_in_a_row = u32::MAX;
        assert_eq!(u.backoff(Duration::MAX, Duration::MAX), Duration::MAX);
    }

    #[test]
    fn replicas_are_numbered_only_when_there_are_several() {
        assert_eq!(&*Unit::new(0, "php-fpm", 1, 1).name, "php-fpm");
        assert_eq!(&*Unit::new(0, "worker", 2, 3).name, "worker#2");
    }

    #[test]
    fn only_a_clean_exit_is_a_success_and_endings_read_as_before() {
        let endings = [
            (Ending::Exited(Exit::Code(0)), true, "exit 0"),
            (Ending::Exited(Exit::Code(1)), false, "exit 1"),
            (
                Ending::Exited(Exit::Signal(Signal::SIGKILL)),
                false,
                "killed by SIGKILL",
            ),
            (
                Ending::Killed("liveness probe failed 3 times: x".into()),
                false,
                "liveness probe failed 3 times: x",
            ),
            (
                Ending::NotStarted("cannot start \"nope\": x".into()),
                false,
                "cannot start \"nope\": x",
            ),
        ];
        for (ending, success, text) in endings {
            assert_eq!((ending.success(), ending.to_string().as_str()), (success, text));
        }
    }
}
