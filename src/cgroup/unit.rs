//! One unit's cgroup: where its processes are born (or, where the kernel cannot do that, what
//! they join before they exec), what stop and restart kill, and what tells when the unit is gone.
//!
//! Once a run's processes are gone the cgroup is made afresh (removed, made, its limits written
//! again) for the next run. Linux kernels with the fix for the race of fork and `cgroup.kill`
//! (6.14, and the stable kernels it went back to) kill a process that `clone3` creates inside a
//! cgroup that `cgroup.kill` has ever emptied, before it runs: the kernel compares the cgroup's
//! kill count with the one of the parent's own cgroup. A new cgroup's count is 0, as kiln's own.

use super::files;
use super::limits::Setting;
use nix::sys::signal::Signal;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
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
    /// The limits, written each time the cgroup is made.
    settings: Vec<Setting>,
    /// The cgroup's directory, open from before any spawn: `clone3(CLONE_INTO_CGROUP)` takes it
    /// to create a unit's process inside the cgroup (see `process::spawn`). Replaced when the
    /// cgroup is made afresh.
    fd: Mutex<OwnedFd>,
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
    /// Makes (or takes) the cgroup `dir`, writes its limits and opens it for spawning into.
    /// The error names the directory or the key of the limit.
    pub(super) fn make(dir: PathBuf, settings: Vec<Setting>) -> Result<UnitCgroup, String> {
        let fd = make_dir(&dir, &settings)?;
        Ok(UnitCgroup {
            dir,
            settings,
            fd: Mutex::new(fd),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup's directory for `clone3(CLONE_INTO_CGROUP)` (close-on-exec: the service never
    /// sees it), held while the process is created.
    pub fn dir_fd(&self) -> MutexGuard<'_, OwnedFd> {
        self.fd.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `cgroup.procs`, open for writing (close-on-exec), for a kernel that cannot create a
    /// process inside a cgroup: the child writes `0` into it before it execs, so nothing it
    /// forks starts outside the cgroup. Opened for each spawn: only that path needs it.
    pub fn open_procs(&self) -> io::Result<OwnedFd> {
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        Ok(procs.into())
    }

    /// SIGKILL to every process of the unit.
    /// Nothing is written to an empty cgroup: `cgroup.kill` kills nothing there but still
    /// counts, and a kernel that compares that count (see the module's doc) would kill the next
    /// process born in it. Only kiln creates processes in it, from the thread that kills.
    pub fn kill(&self) -> io::Result<()> {
        let events = File::open(self.dir.join("cgroup.events"));
        if let Ok(false) = events.and_then(|events| files::populated(&events)) {
            return Ok(());
        }
        files::kill_all(&self.dir)
    }

    /// `signal` to every process of the unit (`stop_signal_to = "group"`, the SIGCONT after a
    /// stop signal).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        files::signal_all(&self.dir, signal)
    }

    /// Ends a run: kills what is left of the unit, returns once its cgroup is empty (only then
    /// is the unit gone, and only then may it start again), with the cgroup made afresh for the
    /// next run (see the module's doc).
    pub async fn end_run(&self, unit: &str) {
        self.kill_and_wait_empty(unit).await;
        self.renew(unit);
    }

    /// Removes the empty cgroup and makes it again, with its limits; on failure the old one
    /// stays (a process created in it may then be killed at once: `process::spawn` sees that
    /// and takes the fallback).
    fn renew(&self, unit: &str) {
        let mut fd = self.dir_fd();
        let made = files::remove_tree(&self.dir)
            .map_err(|e| format!("cannot remove: {e}"))
            .and_then(|()| make_dir(&self.dir, &self.settings));
        match made {
            Ok(new) => *fd = new,
            Err(e) => tracing::warn!("{unit}: cannot make its cgroup afresh: {e}"),
        }
    }

    /// Waits on `cgroup.events`, which the kernel marks (POLLPRI) when `populated` changes.
    async fn kill_and_wait_empty(&self, unit: &str) {
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

/// Makes (or takes) the cgroup `dir`, writes `settings` and opens the directory.
fn make_dir(dir: &Path, settings: &[Setting]) -> Result<OwnedFd, String> {
    files::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for setting in settings {
        std::fs::write(dir.join(setting.file), &setting.value).map_err(|e| {
            format!(
                "{}: cannot write {}/{}: {e}",
                setting.key,
                dir.display(),
                setting.file
            )
        })?;
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    Ok(opened.into())
}

/// Memory and CPU of the unit cgroup `dir`.
pub fn usage(dir: &Path) -> Usage {
    Usage {
        memory_bytes: files::read_number(&dir.join("memory.current")),
        cpu_usec: files::cpu_usage_usec(dir),
    }
}
