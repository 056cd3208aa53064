//! The one owner of `waitpid`. Every exit status in kiln arrives here, on SIGCHLD, through
//! `waitpid(-1, WNOHANG)`; it is handed to whoever spawned that pid. Orphans that kiln did not
//! start (daemonising grandchildren, or anything when kiln is PID 1) are reaped and forgotten.
//!
//! Spawning goes through [`Reaper::start_child`] (or [`Reaper::spawn`]) as well: it holds the
//! table's lock while a child is created, so a child that exits at once is never reaped before
//! its waiter is registered, and the `waitpid` of a child that failed before its exec (the
//! spawner's, or the standard library's) never races with ours.

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(nix::sys::signal::Signal),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => write!(f, "killed by {}", s.as_str()),
        }
    }
}

#[derive(Clone, Default)]
pub struct Reaper {
    waiters: Arc<Mutex<HashMap<i32, oneshot::Sender<Exit>>>>,
}

impl Reaper {
    /// Starts reaping on SIGCHLD (and once a second, in case a signal was coalesced away).
    /// Must be called inside a tokio runtime.
    pub fn start() -> std::io::Result<Reaper> {
        let reaper = Reaper::default();
        let mut sigchld = signal(SignalKind::child())?;
        let task = reaper.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = sigchld.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                task.reap();
            }
        });
        Ok(reaper)
    }

    /// Spawns `command` and returns the child with a receiver for its exit. Never call
    /// `Child::wait` on the result: the reaper owns the status.
    pub fn spawn(&self, command: &mut Command) -> std::io::Result<(Child, oneshot::Receiver<Exit>)> {
        self.start_child(|| {
            let child = command.spawn()?;
            let pid = Pid::from_raw(child.id() as i32);
            Ok((child, pid))
        })
    }

    /// Runs `start`, which creates a child and returns it with its pid, and registers a
    /// receiver for the child's exit. `start` may wait for a child that failed before its exec
    /// (nothing else reaps while it runs).
    pub fn start_child<T>(
        &self,
        start: impl FnOnce() -> std::io::Result<(T, Pid)>,
    ) -> std::io::Result<(T, oneshot::Receiver<Exit>)> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let (child, pid) = start()?;
        let (tx, rx) = oneshot::channel();
        waiters.insert(pid.as_raw(), tx);
        Ok((child, rx))
    }

    /// Collects every exited child without blocking.
    fn reap(&self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("waitpid: {e}");
                    return;
                }
            };
            match waiters.remove(&pid.as_raw()) {
                Some(tx) => {
                    let _ = tx.send(exit);
                }
                None => tracing::debug!("reaped orphan {pid} ({exit})"),
            }
        }
    }
}

/// Makes kiln the reaper of orphaned descendants when it is not PID 1 (PID 1 is already).
pub fn become_subreaper() {
    if std::process::id() != 1
        && let Err(e) = nix::sys::prctl::set_child_subreaper(true)
    {
        tracing::warn!("cannot become child subreaper: {e}; orphans of services will be reaped by init");
    }
}
