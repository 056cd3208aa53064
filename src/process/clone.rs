//! How a service's process comes to be. Where the kernel can (Linux 5.7+, no seccomp filter in
//! the way), `clone3` with `CLONE_INTO_CGROUP` creates it inside its unit's cgroup, as systemd and
//! crun do: nothing migrates, so nothing waits for the kernel's cgroup lock, whose slow path costs
//! an RCU grace period (6 to 15 ms measured here) when no migration happened recently, as at a
//! boot or a restart. Elsewhere it is forked in kiln's cgroup and writes `0` into its unit's
//! `cgroup.procs` before it can fork or exec anything. The way is decided once, at the first
//! ask ([`path`]), and shown in `kiln status`. With `clone3`, the new process shares kiln's
//! memory until its exec ([`vfork3`]), as `posix_spawn` does: no copy of kiln's page tables.

use crate::state::{SpawnPathKind, SpawnStatus};
use nix::errno::Errno;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::OnceLock;

/// `CLONE_INTO_CGROUP` from `linux/sched.h`: libc has it as a deprecated `c_int` that
/// overflows (glibc targets) or not at all (musl).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forces the fallback when set to `procs`, to test and measure it on a kernel that has no need
/// of it. Read once, at the decision; `kiln status` and the log say when it was used.
pub const FORCE_VAR: &str = "KILN_TEST_SPAWN";

/// How services' processes get into their cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnPath {
    /// `clone3(CLONE_INTO_CGROUP)`: born in the unit's cgroup.
    IntoCgroup,
    /// Forked in kiln's cgroup, then `0` into the unit's `cgroup.procs` before exec.
    Procs(Fallback),
}

/// Why the fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The kernel or a seccomp filter refused `clone3` with the flag.
    Refused(Errno),
    /// [`FORCE_VAR`]`=procs`.
    Forced,
    /// A process `clone3` created in its cgroup was killed before it ran (a kernel that kills
    /// those: see `cgroup::UnitCgroup`); decided on the way, not at boot.
    KilledBeforeItRan,
}

impl SpawnPath {
    /// For `kiln status` and the log.
    pub fn status(&self) -> SpawnStatus {
        match self {
            SpawnPath::IntoCgroup => SpawnStatus {
                path: SpawnPathKind::Clone3,
                why: None,
            },
            SpawnPath::Procs(fallback) => SpawnStatus {
                path: SpawnPathKind::CgroupProcs,
                why: Some(match fallback {
                    Fallback::Refused(errno) => format!("clone3 with CLONE_INTO_CGROUP refused: {errno}"),
                    Fallback::Forced => format!("forced by {FORCE_VAR}=procs"),
                    Fallback::KilledBeforeItRan => {
                        "a process clone3 created in its cgroup was killed before it ran".into()
                    }
                }),
            },
        }
    }
}

/// Decides the way now (at boot, once kiln's cgroups are there), says so in the log when it is
/// the fallback, and returns it for `kiln status`.
pub fn decide() -> SpawnStatus {
    let status = path().status();
    if let Some(why) = &status.why {
        tracing::info!("services: forked, then moved into their cgroups by cgroup.procs ({why})");
    }
    status
}

/// Set once a process created in its cgroup was killed before it ran: the fallback for good.
static DEMOTED: OnceLock<SpawnPath> = OnceLock::new();

/// Takes the fallback from now on, saying why in the log (once).
pub(super) fn demote(why: Fallback) {
    let demoted = SpawnPath::Procs(why);
    let status = demoted.status();
    if DEMOTED.set(demoted).is_ok() {
        tracing::warn!(
            "services: {}; from now on they are forked and moved into their cgroups by cgroup.procs",
            status.why.unwrap_or_default()
        );
    }
}

/// The way, decided on the first call: [`FORCE_VAR`], else what the kernel answers; the
/// fallback once [`demote`]d.
pub fn path() -> &'static SpawnPath {
    static PATH: OnceLock<SpawnPath> = OnceLock::new();
    if let Some(demoted) = DEMOTED.get() {
        return demoted;
    }
    PATH.get_or_init(|| match std::env::var(FORCE_VAR) {
        Ok(value) if value == "procs" => SpawnPath::Procs(Fallback::Forced),
        forced => {
            if forced.is_ok() {
                tracing::warn!("{FORCE_VAR}: only \"procs\" is understood; ignored");
            }
            match probe() {
                Ok(()) => SpawnPath::IntoCgroup,
                Err(refused) => SpawnPath::Procs(Fallback::Refused(refused)),
            }
        }
    })
}

/// Asks for `clone3(CLONE_INTO_CGROUP)` with a descriptor that is not a cgroup (`/dev/null`): a
/// kernel that has the flag checks the descriptor last and answers EBADF, having created
/// nothing. No `clone3` (before 5.3, or a seccomp filter) answers ENOSYS or EPERM; no flag
/// (5.3 to 5.6), EINVAL.
fn probe() -> Result<(), Errno> {
    let null =
        std::fs::File::open("/dev/null").map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    let fd = std::os::fd::AsFd::as_fd(&null);
    match clone3(Some(fd)) {
        Err(Errno::EBADF) => Ok(()),
        Err(refused) => Err(refused),
        // SAFETY: a child of the probe, should a kernel ever create one: it leaves at once,
        // running nothing of kiln's; the reaper collects it as an orphan.
        Ok(None) => unsafe { libc::_exit(0) },
        Ok(Some(_)) => Ok(()),
    }
}

/// A new process, like `fork`: `None` in the child, its pid in the parent. With `cgroup`, it is
/// created inside that cgroup v2 directory. The child has one thread and must only make system
/// calls until it execs (`child::run`).
pub(super) fn clone3(cgroup: Option<BorrowedFd<'_>>) -> Result<Option<Pid>, Errno> {
    let mut args = clone_args();
    args.exit_signal = libc::SIGCHLD as u64;
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3(2) without CLONE_VM and without a stack behaves as fork(2): the child runs
    // on a copy of this stack. The kernel reads `size_of::<clone_args>()` bytes of `args`
    // (`CLONE_ARGS_SIZE_VER2`, the version with `cgroup`).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

/// Runs `child` in a new process that shares kiln's memory until it execs, as `posix_spawn`
/// does (`CLONE_VM | CLONE_VFORK`, with `CLONE_INTO_CGROUP` and `cgroup`): no page table is
/// copied at the clone and none torn down at the exec, which a copy of kiln's address space costs
/// (0.15 to 0.35 ms each here). This thread is suspended until the child has exec'd or exited;
/// the child runs on `stack` and must not return, only make system calls (`child::run`).
/// Returns the child's pid; `Ok(None)` on an architecture without the trampoline below, where
/// the caller creates the process as [`clone3`] does.
pub(super) fn vfork3<T>(
    cgroup: Option<BorrowedFd<'_>>,
    stack: &mut ChildStack,
    child: extern "C" fn(*const T) -> !,
    arg: &T,
) -> Result<Option<Pid>, Errno> {
    let mut args = clone_args();
    args.flags = (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    args.stack = stack.base as u64;
    args.stack_size = stack.len as u64;
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    trampoline(&args, child as usize, arg as *const T as usize)
}

/// clone3(2) with a stack of its own: the child returns from the system call on that stack, with
/// every register but the return value as the parent had it, so it must not return into Rust
/// code; it calls `entry(arg)` there (which never returns). `rax` in, out; `rcx` and `r11` are
/// the system call's to clobber.
#[cfg(target_arch = "x86_64")]
fn trampoline(args: &libc::clone_args, entry: usize, arg: usize) -> Result<Option<Pid>, Errno> {
    let ret: i64;
    // SAFETY: the kernel reads `args` (VER2 size); the new stack's top is 16-byte aligned
    // (`ChildStack`), as a `call` needs. In the parent this is one system call.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *const libc::clone_args,
            in("rsi") std::mem::size_of::<libc::clone_args>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    match ret {
        r if r < 0 => Err(Errno::from_raw(-r as i32)),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn trampoline(_: &libc::clone_args, _: usize, _: usize) -> Result<Option<Pid>, Errno> {
    Ok(None)
}

/// The stack a [`vfork3`] child runs on until its exec: mapped for it, with an inaccessible page
/// below so that an overflow faults instead of writing over kiln's memory.
pub(super) struct ChildStack {
    map: *mut libc::c_void,
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    /// What the child uses is a few KiB: its steps are system calls on the parent's data.
    const LEN: usize = 64 * 1024;
    const GUARD: usize = 4096;

    pub(super) fn new() -> Result<ChildStack, Errno> {
        let total = Self::LEN + Self::GUARD;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let stack = ChildStack {
            map,
            // SAFETY: within the mapping just made.
            base: unsafe { map.cast::<u8>().add(Self::GUARD).cast() },
            len: Self::LEN,
        };
        // SAFETY: the lowest page of the mapping just made.
        if unsafe { libc::mprotect(map, Self::GUARD, libc::PROT_NONE) } != 0 {
            return Err(Errno::last());
        }
        Ok(stack)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the child that ran on it has exec'd or exited (the
        // parent was suspended until then).
        unsafe { libc::munmap(self.map, Self::LEN + Self::GUARD) };
    }
}

/// `fork(2)`, for a kernel without `clone3`. Same contract as [`clone3`].
pub(super) fn fork() -> Result<Option<Pid>, Errno> {
    // SAFETY: the child only makes system calls until it execs (`child::run`).
    match unsafe { libc::fork() } {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid))),
    }
}

fn clone_args() -> libc::clone_args {
    // SAFETY: `clone_args` is plain integers; all zero asks for nothing (no flag, no pidfd, no
    // stack, no cgroup).
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_the_kernels() {
        // include/uapi/linux/sched.h: #define CLONE_INTO_CGROUP 0x200000000ULL
        assert_eq!(CLONE_INTO_CGROUP, 1 << 33);
        // CLONE_ARGS_SIZE_VER2: the struct up to and including `cgroup`.
        assert_eq!(std::mem::size_of::<libc::clone_args>(), 88);
    }
}
