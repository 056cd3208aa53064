//! What a new process does between its creation and its exec. It is made by `clone3` or `fork`,
//! one thread of a multi-threaded kiln: either sharing kiln's memory on a stack of its own while
//! the parent's thread waits (`clone::vfork3`), or a copy of it. Either way: only system calls on
//! data the parent prepared, no allocation, no lock, and no write to memory but its own stack
//! and `errno` (the waiting thread's own). libc's `setuid`, `setgid`, `setgroups` and `setrlimit` are
//! avoided too: they reach every thread of the process (glibc's and musl's set-ID broadcast), and
//! after a raw `clone3` the C library still believes kiln's threads are there.
//!
//! In order: join the unit's cgroup (only where the process could not be created inside it),
//! default signal dispositions and an empty mask, a session of its own, the open files limit kiln
//! was started with, stdin/stdout/stderr, the working directory, the CPUs and the nice level (its
//! `nice`, or kiln's at start), the identity, exec. On the report pipe (close-on-exec: its end
//! of file comes with the exec), the child first says that it runs (one byte, [`HELLO`]); a step
//! that fails is reported after it, and the process exits 127.
//! Nothing at all means the process was killed before it ran a single instruction.

use super::signals;
use std::ffi::{CStr, CString, c_char};
use std::os::fd::RawFd;

/// What failed before the exec: the first byte of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Step {
    JoinCgroup = 1,
    Signals,
    Session,
    OpenFilesLimit,
    Stdio,
    WorkingDir,
    Priority,
    Groups,
    Gid,
    Uid,
    Exec,
}

impl Step {
    const ALL: [Step; 11] = [
        Step::JoinCgroup,
        Step::Signals,
        Step::Session,
        Step::OpenFilesLimit,
        Step::Stdio,
        Step::WorkingDir,
        Step::Priority,
        Step::Groups,
        Step::Gid,
        Step::Uid,
        Step::Exec,
    ];

    pub(super) fn from_byte(byte: u8) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u8 == byte)
    }

    /// What the child was doing, for the error the parent returns.
    pub(super) fn doing(self) -> &'static str {
        match self {
            Step::JoinCgroup => "joining its cgroup (cgroup.procs)",
            Step::Signals => "resetting signals",
            Step::Session => "setsid",
            Step::OpenFilesLimit => "setting the open files limit",
            Step::Priority => "setting its nice level and CPUs",
            Step::Stdio => "setting up stdin, stdout and stderr",
            Step::WorkingDir => "changing to working_dir",
            Step::Groups => "setgroups",
            Step::Gid => "setgid",
            Step::Uid => "setuid",
            Step::Exec => "exec",
        }
    }
}

/// The first byte of every report: the child runs.
pub(super) const HELLO: u8 = 0;
/// A failure's report after [`HELLO`]: the step, then its errno in native byte order.
pub(super) const FAILURE_LEN: usize = 5;

/// Who the process becomes, as the kernel takes it.
#[derive(Debug, Clone)]
pub(super) struct Ids {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
}

/// Everything the child needs, made by the parent before the process is created. The pointer
/// lists end with a null pointer and point into strings the parent keeps alive.
pub(super) struct Plan<'a> {
    /// The paths to exec, in order (a bare name, looked up in PATH, has one per directory).
    pub exec: &'a [CString],
    pub argv: &'a [*const c_char],
    pub envp: &'a [*const c_char],
    /// What becomes descriptors 0, 1 and 2; each is 3 or more, so that no `dup2` overwrites
    /// another's source.
    pub stdio: [RawFd; 3],
    pub cwd: Option<&'a CStr>,
    pub ids: Option<&'a Ids>,
    /// `RLIMIT_NOFILE` (soft, hard) to set.
    pub nofile: Option<(u64, u64)>,
    /// The nice level to set: the service's `nice`, or the one kiln was started with where the
    /// child is not born at it (`process::priority`).
    pub nice: Option<i32>,
    /// The CPUs to give back, and the parent thread's id, where it pinned itself for the start.
    pub cpus: Option<(&'a libc::cpu_set_t, libc::pid_t)>,
    /// `cgroup.procs` to write `0` into, where the process was not created in its cgroup.
    pub join: Option<RawFd>,
    /// The write end of the report pipe.
    pub report: RawFd,
}

/// Runs in the new process: sets it up and execs, or reports the failed step and exits.
pub(super) fn run(plan: &Plan<'_>) -> ! {
    // SAFETY: write(2) of one byte from a static to the report pipe.
    unsafe { libc::write(plan.report, [HELLO].as_ptr().cast(), 1) };
    let failed = match prepare(plan) {
        Ok(()) => exec(plan),
        Err(failed) => failed,
    };
    report(plan.report, failed)
}

/// The last `errno`, read without allocating.
fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A step's failure from the error of a helper that made its system calls.
fn failed(step: Step) -> impl Fn(std::io::Error) -> (Step, i32) {
    move |e| (step, e.raw_os_error().unwrap_or(libc::EIO))
}

/// `Ok` for a system call's return value that is not -1.
fn check(step: Step, ret: libc::c_long) -> Result<(), (Step, i32)> {
    match ret {
        -1 => Err((step, errno())),
        _ => Ok(()),
    }
}

/// Every step before the exec.
fn prepare(plan: &Plan<'_>) -> Result<(), (Step, i32)> {
    if let Some(procs) = plan.join {
        // SAFETY: write(2) of a static buffer to a descriptor the parent opened.
        let written = unsafe { libc::write(procs, b"0".as_ptr().cast(), 1) };
        check(Step::JoinCgroup, written as libc::c_long)?;
    }
    signals::reset_in_child().map_err(failed(Step::Signals))?;
    // SAFETY: setsid(2) takes no argument.
    check(Step::Session, unsafe { libc::syscall(libc::SYS_setsid) })?;
    if let Some((soft, hard)) = plan.nofile {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: prlimit64(2) on this process, reading `limit` from the stack.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                libc::RLIMIT_NOFILE,
                &limit as *const libc::rlimit,
                std::ptr::null_mut::<libc::rlimit>(),
            )
        };
        check(Step::OpenFilesLimit, ret)?;
    }
    for (target, fd) in plan.stdio.into_iter().enumerate() {
        // SAFETY: dup2(2) between descriptors; each source is above 2 (`Plan::stdio`), so the
        // copy clears close-on-exec on the target and overwrites no other source.
        let ret = unsafe { libc::dup2(fd, target as RawFd) };
        check(Step::Stdio, ret as libc::c_long)?;
    }
    if let Some(cwd) = plan.cwd {
        // SAFETY: chdir(2) with a NUL-terminated path the parent keeps alive.
        check(Step::WorkingDir, unsafe { libc::chdir(cwd.as_ptr()) }
            as libc::c_long)?;
    }
    // Both before the identity switch: another user may not set the CPUs of kiln's thread, and
    // a nice level below kiln's needs root.
    if let Some(cpus) = plan.cpus {
        super::priority::unpin_in_child(cpus).map_err(failed(Step::Priority))?;
    }
    if let Some(nice) = plan.nice {
        super::priority::set_nice_in_child(nice).map_err(failed(Step::Priority))?;
    }
    if let Some(ids) = plan.ids {
        switch_identity(ids)?;
    }
    Ok(())
}

/// Supplementary groups, then the group, then the user (after which the others are refused).
/// The raw system calls change this one thread, which is all the process has.
fn switch_identity(ids: &Ids) -> Result<(), (Step, i32)> {
    // SAFETY: setgroups(2) reads `groups.len()` gids from a slice the parent keeps alive.
    let ret = unsafe { libc::syscall(libc::SYS_setgroups, ids.groups.len(), ids.groups.as_ptr()) };
    check(Step::Groups, ret)?;
    // SAFETY: setgid(2) and setuid(2) take a number.
    check(Step::Gid, unsafe { libc::syscall(libc::SYS_setgid, ids.gid) })?;
    // SAFETY: as above.
    check(Step::Uid, unsafe { libc::syscall(libc::SYS_setuid, ids.uid) })
}

/// Tries each path as `execvp` does: on to the next where the file is not there, and "permission
/// denied" at the end if one was not executable; any other error stops at once.
fn exec(plan: &Plan<'_>) -> (Step, i32) {
    let mut failed = libc::ENOENT;
    for path in plan.exec {
        // SAFETY: execve(2) with NUL-terminated strings and null-terminated pointer lists that the
        // parent keeps alive; it returns only on failure.
        unsafe { libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr()) };
        match errno() {
            libc::EACCES => failed = libc::EACCES,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            other => return (Step::Exec, other),
        }
    }
    (Step::Exec, failed)
}

/// Tells the parent which step failed and why, and exits without running anything of kiln's.
fn report(fd: RawFd, (step, errno): (Step, i32)) -> ! {
    let mut message = [0u8; FAILURE_LEN];
    message[0] = step as u8;
    message[1..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write(2) of a stack buffer, then _exit(2): no destructor, no atexit handler, no
    // flush of a buffer that belongs to the parent.
    unsafe {
        libc::write(fd, message.as_ptr().cast(), message.len());
        libc::_exit(127)
    }
}
