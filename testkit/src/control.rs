//! Asking a running kiln through its control socket, as `kiln status` does.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends one request line, returns the raw answer.
pub fn ask(socket: &Path, request: &str) -> Result<String, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    Ok(answer)
}

/// The `status` snapshot as JSON, or None while kiln does not answer yet.
pub fn status(socket: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&ask(socket, "status").ok()?).ok()
}

/// One unit (`php-fpm`, `worker#2`) of a status snapshot; panics when it is not there.
pub fn unit<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    try_unit(status, name).unwrap_or_else(|| panic!("no unit {name:?} in status: {status}"))
}

/// One unit of a status snapshot, None while kiln has not published it (still booting).
pub fn try_unit<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["services"].as_array()?.iter().find(|u| u["unit"] == name)
}

/// The pid of a running unit, when it has one.
pub fn unit_pid(socket: &Path, name: &str) -> Option<i32> {
    let status = status(socket)?;
    try_unit(&status, name)?["pid"].as_i64().map(|p| p as i32)
}

/// A phase or point of kiln's boot timeline that testkit looks for, as status JSON spells it.
/// testkit reads the JSON as a script would, so it names the spelling here once rather than
/// taking kiln's own type: a change of the wire then fails here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootStep {
    /// The secret references resolved.
    Secrets,
    /// Every service ready, `READY=1` sent: a point.
    Ready,
}

impl BootStep {
    pub fn word(self) -> &'static str {
        match self {
            BootStep::Secrets => "secrets",
            BootStep::Ready => "READY=1",
        }
    }
}

/// A step of kiln's leave for a notice, as status JSON spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveStep {
    OutOfTheLoadBalancer,
    AllServicesStopped,
}

impl LeaveStep {
    pub fn words(self) -> &'static str {
        match self {
            LeaveStep::OutOfTheLoadBalancer => "out of the load balancer",
            LeaveStep::AllServicesStopped => "all services stopped",
        }
    }
}

/// The boot timeline's entry for `step`, once kiln has it.
pub fn timeline_entry(status: &serde_json::Value, step: BootStep) -> Option<&serde_json::Value> {
    status["timeline"]
        .as_array()?
        .iter()
        .find(|e| e["phase"] == step.word())
}

/// The leave's entry for `step`, once kiln has reached it.
pub fn leave_step(status: &serde_json::Value, step: LeaveStep) -> Option<&serde_json::Value> {
    status["lifecycle"]["leave"]["steps"]
        .as_array()?
        .iter()
        .find(|s| s["step"] == step.words())
}
