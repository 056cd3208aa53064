//! File descriptors: how many kiln's listeners may hold, so that the supervisor always has its own.
//!
//! Probes open sockets, a restart opens pipes, every service holds two pipes for its output: when
//! clients of the health port take every descriptor, probes fail with `Too many open files`, a
//! healthy service is killed and cannot be started again. So kiln raises its soft `RLIMIT_NOFILE`
//! to the hard limit at start (services get the soft limit kiln was started with, as systemd
//! gives it: some programs still size `select()` sets by it), keeps [`RESERVED`] descriptors out
//! of the listeners' reach, and caps each listener's connections within what is left.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::sync::atomic::{AtomicU64, Ordering};

/// Descriptors no listener may use: the supervisor's pipes, probes and spawns, the log, the seal's
/// watch, the runtimes' own (epoll, eventfd, timers).
pub const RESERVED: u64 = 256;
/// Most connections the health port (`/livez`, `/readyz`) holds at once, across its threads.
pub const HEALTH_MAX: usize = 128;
/// Most connections the agent-check port holds at once.
pub const AGENT_MAX: usize = 32;
/// Most connections the control socket holds at once.
pub const CONTROL_MAX: usize = 16;
/// Most connections the metrics listener holds at once (a Prometheus pair needs two).
pub const METRICS_MAX: usize = 16;

/// The soft limit kiln was started with, given back to the services it spawns. 0: not raised.
static STARTED_WITH: AtomicU64 = AtomicU64::new(0);

/// How many connections each listener may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub health: usize,
    pub agent: usize,
    pub control: usize,
    pub metrics: usize,
}

impl Caps {
    /// The caps for a descriptor limit: the listeners share what [`RESERVED`] leaves (health half
    /// of it, the agent an eighth, the control socket and the metrics listener a thirty-second
    /// each), each within its maximum.
    /// Under a limit too small to leave anything, each still gets a few.
    pub fn for_limit(nofile: u64) -> Caps {
        let spare = usize::try_from(nofile.saturating_sub(RESERVED)).unwrap_or(usize::MAX);
        Caps {
            health: (spare / 2).clamp(8, HEALTH_MAX),
            agent: (spare / 8).clamp(2, AGENT_MAX),
            control: (spare / 32).clamp(2, CONTROL_MAX),
            metrics: (spare / 32).clamp(2, METRICS_MAX),
        }
    }

    /// The caps under kiln's current soft limit.
    pub fn now() -> Caps {
        let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
        Caps::for_limit(soft)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit kiln now has.
pub fn raise() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            STARTED_WITH.store(soft, Ordering::Relaxed);
            hard
        }
        Err(e) => {
            tracing::warn!("cannot raise the open files limit from {soft} to {hard}: {e}");
            soft
        }
    }
}

/// The open files limit a service gets: the soft limit kiln was started with, under the hard
/// limit of now; None where kiln did not raise its own (the child keeps kiln's). Read before a
/// spawn: the child only sets it, with one system call.
pub fn for_children() -> Option<(u64, u64)> {
    let soft = STARTED_WITH.load(Ordering::Relaxed);
    if soft == 0 {
        return None;
    }
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    Some((soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listeners_leave_the_reserve_alone() {
        let caps = Caps::for_limit(1024);
        assert_eq!(
            caps,
            Caps {
                health: 128,
                agent: 32,
                control: 16,
                metrics: 16
            }
        );
        assert!(1024 - (caps.health + caps.agent + caps.control + caps.metrics) as u64 >= RESERVED);
        let tight = Caps::for_limit(400);
        assert_eq!(
            tight,
            Caps {
                health: 72,
                agent: 18,
                control: 4,
                metrics: 4
            }
        );
        assert!(400 - (tight.health + tight.agent + tight.control + tight.metrics) as u64 >= RESERVED);
    }

    #[test]
    fn a_tiny_limit_still_leaves_a_few_connections() {
        assert_eq!(
            Caps::for_limit(64),
            Caps {
                health: 8,
                agent: 2,
                control: 2,
                metrics: 2
            }
        );
        assert_eq!(Caps::for_limit(u64::MAX).health, HEALTH_MAX);
    }
}
