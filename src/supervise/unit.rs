//! One running copy of a service and what kiln remembers about it across restarts: plain data,
//! changed only by the machine.

use crate::probe::runner::CheckReport;
use crate::process::Exit;
use crate::state::UnitState;
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

    /// The exit as a shell reports it: the code, or 128 + the signal's number. A process kiln
    /// killed for a probe died of SIGKILL (137); one that never started has none.
    pub fn code(&self) -> Option<i32> {
        match self {
            Ending::Exited(Exit::Code(code)) => Some(*code),
            Ending::Exited(Exit::Signal(signal)) => Some(128 + *signal as i32),
            Ending::Killed(_) => Some(128 + nix::sys::signal::Signal::SIGKILL as i32),
            Ending::NotStarted(_) => None,
        }
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

/// Whose run a task's outcome is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RanBy {
    Here,
    /// Another instance of the fleet: its name as the lease's record gives it.
    Other(String),
}

/// What a task unit keeps beyond a service's: its attempts, its lease, its outcome.
#[derive(Debug, Clone, Default)]
pub struct TaskRun {
    /// Attempts started on this instance.
    pub attempts: u32,
    /// This instance holds the fleet's lease (taken, not yet released).
    pub holds_lease: bool,
    /// Why the lease was lost while the task ran: its run is killed and the task waits again.
    pub lost: Option<String>,
    /// The lease in words, for status.
    pub lease: Option<String>,
    pub by: Option<RanBy>,
    /// When the task began (waiting for its `after` over, wall clock ms), and when it was done.
    pub began_ms: Option<u64>,
    pub done_ms: Option<u64>,
}

/// A unit's last probe check, and when it came (wall clock, ms since the epoch).
#[derive(Debug, Clone)]
pub struct LastCheck {
    pub report: CheckReport,
    pub at_ms: u64,
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
    pub last_check: Option<LastCheck>,
    /// Why kiln is killing the process (liveness, startup): its ending instead of "killed by SIGKILL".
    pub kill_reason: Option<String>,
    /// Some for the unit of a task.
    pub task: Option<TaskRun>,
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
            last_check: None,
            kill_reason: None,
            task: None,
        }
    }

    /// Failed often in a row: a service's restarts, never a task's retries (they are counted).
    pub fn crash_loop(&self) -> bool {
        self.task.is_none() && self.failures_in_a_row >= CRASH_LOOP_AFTER
    }

    /// Has a process that kiln must stop or wait for.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            UnitState::Starting | UnitState::Running | UnitState::Stopping
        )
    }

    /// Ready to serve, or finished for good after a successful run it was allowed to end with
    /// (a task done, here or by another instance of the fleet).
    pub fn counts_as_ready(&self, completed_ok: bool) -> bool {
        match self.state {
            UnitState::Running => self.task.is_none() && self.ready && !self.crash_loop(),
            UnitState::Exited => completed_ok,
            UnitState::Done => true,
            _ => false,
        }
    }

    /// Delay before the next restart: doubles with each failure in a row, capped.
    pub fn backoff(&self, first: Duration, max: Duration) -> Duration {
        let doublings = self.failures_in_a_row.saturating_sub(1).min(20);
        first.saturating_mul(1u32 << doublings).min(max)
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

    #[test]
    fn exit_codes_read_as_a_shell_shows_them() {
        let codes = [
            (Ending::Exited(Exit::Code(3)), Some(3)),
            (Ending::Exited(Exit::Signal(Signal::SIGTERM)), Some(143)),
            (Ending::Killed("liveness probe failed".into()), Some(137)),
            (Ending::NotStarted("cannot start".into()), None),
        ];
        for (ending, code) in codes {
            assert_eq!(ending.code(), code, "{ending}");
        }
    }
}
