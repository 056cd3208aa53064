//! One unit's cgroup: what its processes are put into before they exec, what stop and restart
//! kill, and what tells when the unit is gone.

use super::files;
use nix::sys::signal::Signal;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How long `cgroup.events` may stay silent before kiln looks again (and kills again): a safety
/// net under the kernel's notification, never the way an exit is normally seen.
const RECHECK: Duration = Duration::from_secs(1);
/// Where `cgroup.events` cannot be watched, how often it is read instead.
const POLL_WITHOUT_EVENTS: Duration = Duration::from_millis(20);
/// After this long, processes that outlive the SIGKILL are worth a warning (they are in
/// uninterruptible sleep: a hung NFS mount, a disk).
const WARN_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct UnitCgroup {
    dir: PathBuf,
    /// `cgroup.procs`, open for writing from before any fork: the child writes `0` into it
    /// before it execs (see `process::spawn`), so nothing it forks starts outside the cgroup.
    procs: File,
}

/// What a unit's cgroup has used, read when `kiln status` asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `memory.current`: only where the memory controller is enabled for the unit.
    pub memory_bytes: Option<u64>,
    /// `usage_usec` of `cpu.stat`: every cgroup v2 has it.
    pub cpu_usec: Option<u64>,
}

impl UnitCgroup {
    /// Opens the cgroup `dir` (made by the tree) for spawning into.
    pub(super) fn open(dir: PathBuf) -> io::Result<UnitCgroup> {
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?;
        Ok(UnitCgroup { dir, procs })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The descriptor a child writes `0` into to join the cgroup (close-on-exec: the service
    /// never sees it).
    pub fn join_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// SIGKILL to every process of the unit.
    pub fn kill(&self) -> io::Result<()> {
        files::kill_all(&self.dir)
    }

    /// `signal` to every process of the unit (`stop_signal_to = "group"`, the SIGCONT after a
    /// stop signal).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        files::signal_all(&self.dir, signal)
    }

    /// Kills what is left of the unit and returns once its cgroup is empty: only then is the
    /// unit gone, and only then may it start again. Waits on `cgroup.events`, which the kernel
    /// marks (POLLPRI) when `populated` changes.
    pub async fn kill_and_wait_empty(&self, unit: &str) {
        let events = match File::open(self.dir.join("cgroup.events")) {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!("{unit}: cannot watch {}: {e}", self.dir.display());
                return;
            }
        };
        // Registered before the first read: a change after it wakes the wait below.
        // SAFETY: the AsyncFd owns the File, so the descriptor stays open and the same for as
        // long as the AsyncFd lives.
        let watch = unsafe { AsyncFd::register_with_interest(events, Interest::PRIORITY) }.ok();
        let started = tokio::time::Instant::now();
        let mut warned = false;
        loop {
            if let Err(e) = self.kill() {
                tracing::warn!("{unit}: SIGKILL to {}: {e}", self.dir.display());
            }
            let populated = match &watch {
                Some(watch) => files::populated(watch.get_ref()),
                None => File::open(self.dir.join("cgroup.events")).and_then(|f| files::populated(&f)),
            };
            if !populated.unwrap_or(false) {
                return;
            }
            if !warned && started.elapsed() >= WARN_AFTER {
                warned = true;
                let left = files::pids(&self.dir).map(|p| p.len()).unwrap_or(0);
                tracing::warn!(
                    "{unit}: {left} processes still in {} {}s after SIGKILL; the unit counts as stopped once they are gone",
                    self.dir.display(),
                    WARN_AFTER.as_secs()
                );
            }
            match &watch {
                Some(watch) => {
                    let changed = tokio::time::timeout(RECHECK, watch.ready(Interest::PRIORITY)).await;
                    if let Ok(Ok(mut ready)) = changed {
                        ready.clear_ready();
                    }
                }
                None => tokio::time::sleep(POLL_WITHOUT_EVENTS).await,
            }
        }
    }
}

/// Memory and CPU of the unit cgroup `dir`.
pub fn usage(dir: &Path) -> Usage {
    Usage {
        memory_bytes: files::read_number(&dir.join("memory.current")),
        cpu_usec: files::cpu_usage_usec(dir),
    }
}
