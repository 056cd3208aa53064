//! Turning a service's config into a process: its unit's cgroup (joined before exec, so nothing
//! it forks is ever outside it), its own session and process group (what a kill reaches where
//! there is no cgroup), its identity, its environment, pipes for its output, and default signal
//! dispositions with an empty mask. Exec probes get their own process group and the
//! same clean signal state.

use super::signals;
use crate::config::ServiceConfig;
use crate::env::FrozenEnv;
use nix::unistd::{Gid, Uid, User};
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Who a service runs as, resolved before fork (reading /etc/passwd after fork is not safe).
#[derive(Debug, Clone)]
pub struct Identity {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    home: Option<String>,
    name: Option<String>,
}

impl Identity {
    /// Resolves `user`/`group`; None when both are unset (the service runs as kiln does).
    pub fn resolve(service: &ServiceConfig) -> Result<Option<Identity>, String> {
        if service.user.is_none() && service.group.is_none() {
            return Ok(None);
        }
        let user = match &service.user {
            Some(name) => Some(
                User::from_name(name)
                    .map_err(|e| format!("user {name:?}: {e}"))?
                    .ok_or_else(|| format!("user {name:?}: no such user"))?,
            ),
            None => None,
        };
        let gid = match &service.group {
            Some(name) => {
                nix::unistd::Group::from_name(name)
                    .map_err(|e| format!("group {name:?}: {e}"))?
                    .ok_or_else(|| format!("group {name:?}: no such group"))?
                    .gid
            }
            None => user.as_ref().map(|u| u.gid).unwrap_or_else(Gid::current),
        };
        let groups = match &user {
            Some(u) => {
                let cname = CString::new(u.name.clone()).map_err(|e| e.to_string())?;
                nix::unistd::getgrouplist(&cname, gid).map_err(|e| format!("groups of {:?}: {e}", u.name))?
            }
            None => vec![gid],
        };
        Ok(Some(Identity {
            uid: user.as_ref().map(|u| u.uid).unwrap_or_else(Uid::current),
            gid,
            groups,
            home: user.as_ref().map(|u| u.dir.to_string_lossy().into_owned()),
            name: user.map(|u| u.name),
        }))
    }
}

/// The command for one replica of `service`. `replica` is 1-based and exported to the process as
/// `KILN_REPLICA` so that workers can tell themselves apart. `cgroup_procs` is the unit's
/// `cgroup.procs`, open for writing (close-on-exec): the child moves itself there first thing
/// after fork, before it can fork anything of its own.
pub fn command(
    service: &ServiceConfig,
    env: &FrozenEnv,
    identity: Option<&Identity>,
    replica: u32,
    cgroup_procs: Option<RawFd>,
) -> Command {
    let mut cmd = Command::new(&service.command[0]);
    cmd.args(&service.command[1..])
        .env_clear()
        .envs(env.for_service(service.env_allow.as_deref()))
        .envs(&service.env)
        .env("KILN_SERVICE", &service.name)
        .env("KILN_REPLICA", replica.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &service.working_dir {
        cmd.current_dir(dir);
    }
    if let Some(id) = identity {
        if let Some(home) = &id.home {
            cmd.env("HOME", home);
        }
        if let Some(name) = &id.name {
            cmd.env("USER", name).env("LOGNAME", name);
        }
    }
    let identity = identity.cloned();
    // SAFETY: the closure only makes async-signal-safe system calls (write, rt_sigaction,
    // sigprocmask, setsid, setrlimit, setgroups, setgid, setuid) on data prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(procs) = cgroup_procs {
                join_cgroup(procs)?;
            }
            signals::reset_in_child()?;
            nix::unistd::setsid()?;
            crate::fd_budget::restore_in_child()?;
            if let Some(id) = &identity {
                nix::unistd::setgroups(&id.groups)?;
                nix::unistd::setgid(id.gid)?;
                nix::unistd::setuid(id.uid)?;
            }
            Ok(())
        });
    }
    cmd
}

/// Writes `0` ("the calling process") into an open `cgroup.procs`. Runs between fork and
/// exec: one write(2) of a static buffer, async-signal-safe.
fn join_cgroup(procs: RawFd) -> std::io::Result<()> {
    // SAFETY: write(2) from a static buffer to a descriptor the parent opened before fork.
    let written = unsafe { libc::write(procs, b"0".as_ptr().cast(), 1) };
    if written == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The command of an exec probe: the service's environment, no input or output, and a process
/// group of its own so that a timeout kills everything it started.
pub fn probe_command(argv: &[String], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: rt_sigaction and sigprocmask only (async-signal-safe).
    unsafe {
        cmd.pre_exec(signals::reset_in_child);
    }
    cmd
}
