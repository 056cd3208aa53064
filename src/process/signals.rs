//! Signal state that must not leak into children. Dispositions set to "ignore" and blocked signals
//! survive fork and exec: started from a shell's background job, kiln inherits an ignored SIGINT
//! and SIGQUIT, and would hand them on, so that nginx or php-fpm could lose a stop signal sent
//! before they install their own handlers. A child starts as systemd would start it: default
//! dispositions, nothing blocked.

use std::io;

/// Unblocks every signal in kiln itself. Call before any thread starts: threads inherit the mask,
/// and a SIGTERM blocked by whoever started kiln would never reach its handler.
pub fn unblock_inherited() {
    if let Err(e) = nix::sys::signal::SigSet::empty().thread_set_mask() {
        tracing::warn!("cannot clear the inherited signal mask: {e}");
    }
}

/// The kernel's signal numbers run from 1 to 64 (`_NSIG`) on Linux.
const LAST_SIGNAL: libc::c_int = 64;
/// `sizeof(sigset_t)` as the kernel counts it: 64 bits.
const KERNEL_SIGSET_SIZE: libc::size_t = 8;

/// Default dispositions for every signal, then an empty mask (the parent blocks every signal
/// while it creates a child, so that none reaches one of kiln's handlers in the child). Runs in
/// the child before exec, so it makes raw system calls only and allocates nothing.
///
/// The raw `rt_sigaction` system call is used because glibc's wrapper refuses the two real-time
/// signals it keeps for itself (32 and 33), and an ignored one of those is inherited too.
pub fn reset_in_child() -> io::Result<()> {
    // An all-zero kernel `struct sigaction` is SIG_DFL with no flags and an empty mask, whatever
    // the order of its fields on this architecture; 64 bytes is more than any of them needs.
    let default = [0u64; 8];
    for signal in 1..=LAST_SIGNAL {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: the kernel reads a struct sigaction from `default` and writes nothing back.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                KERNEL_SIGSET_SIZE,
            );
        }
    }
    // The raw system call, as above: an empty kernel sigset is eight zero bytes.
    let empty = 0u64;
    // SAFETY: rt_sigprocmask(2) reads the mask from a stack value and writes nothing back.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            KERNEL_SIGSET_SIZE,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
