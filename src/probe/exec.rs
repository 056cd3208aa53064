//! Passes when the command exits 0. It runs in its own process group so that a timeout kills
//! everything it started, and it is reaped by kiln's one reaper like every other child.

use super::Outcome;
use crate::process::spawn::probe_command;
use crate::process::{Exit, Reaper};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::time::Duration;

pub async fn check(argv: &[String], env: &[(String, String)], reaper: &Reaper, timeout: Duration) -> Outcome {
    let mut cmd = probe_command(argv, env);
    let (child, exit) = match reaper.spawn(&mut cmd) {
        Ok(spawned) => spawned,
        Err(e) => return Outcome::fail(format!("cannot run {:?}: {e}", argv[0])),
    };
    let pgid = Pid::from_raw(child.id() as i32);
    match tokio::time::timeout(timeout, exit).await {
        Ok(Ok(Exit::Code(0))) => Outcome::pass("exit 0".into()),
        Ok(Ok(other)) => Outcome::fail(other.to_string()),
        Ok(Err(_)) => Outcome::fail("exit status lost".into()),
        Err(_) => {
            let _ = killpg(pgid, Signal::SIGKILL);
            Outcome::fail(format!("timed out after {}", humantime::format_duration(timeout)))
        }
    }
}
