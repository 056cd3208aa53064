//! How kiln's own process crashes: without a core file, and for real when it is sent SIGSEGV.
//!
//! kiln's memory holds every secret it resolved and its own credentials (`AWS_SECRET_ACCESS_KEY`
//! in its environment). A core file (or systemd-coredump's copy of it) would keep them on disk;
//! `/proc/<kiln>/environ` and `/proc/<kiln>/mem` would show them to any process of kiln's user.
//! [`no_core`] marks the process non-dumpable, which forbids both. It is not inherited by what
//! kiln starts: the kernel makes a process dumpable again when it execs a binary it may read
//! under credentials that are all one user's (a service after `setuid`, kiln's own probes), as
//! for any other program; only the moment between fork and exec stays non-dumpable.
//!
//! The standard library catches SIGSEGV and SIGBUS to report stack overflows. For any other
//! fault its handler puts the default disposition back and returns, counting on the faulting
//! instruction to fault again: true of a real fault, not of a `kill -SEGV`, which it swallows.
//! [`crash_on_segv`] puts a handler in front of it that lets a sent signal kill kiln as a crash
//! would (systemd records it and restarts the unit), and hands real faults to the standard
//! library's handler.

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::OnceLock;

/// The standard library's handlers, replaced by ours and called for real faults.
static STD_SEGV: OnceLock<SigAction> = OnceLock::new();
static STD_BUS: OnceLock<SigAction> = OnceLock::new();

/// Marks kiln non-dumpable: no core file, and its `/proc/PID/environ` and `/proc/PID/mem` closed
/// to every process without `CAP_SYS_PTRACE`, its own user's included. Call first thing, before
/// a secret is read (the environment kiln was started with is in memory from the start).
pub fn no_core() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)
}

/// Makes a sent SIGSEGV or SIGBUS kill kiln (see the module docs). Call after the standard
/// library set up its handlers (that is, from `main`), before any thread starts.
pub fn crash_on_segv() -> nix::Result<()> {
    // SA_ONSTACK: a stack overflow is reported from the alternate stack the standard library
    // gives each of its threads; without it, the handler would fault on the exhausted stack.
    let ours = SigAction::new(
        SigHandler::SigAction(on_fault),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK,
        SigSet::empty(),
    );
    for (sig, slot) in [(Signal::SIGSEGV, &STD_SEGV), (Signal::SIGBUS, &STD_BUS)] {
        // SAFETY: `on_fault` only makes async-signal-safe calls (sigaction, raise) and reads
        // a `OnceLock` (an atomic load); until it is set, a fault is handled as a sent one.
        let previous = unsafe { signal::sigaction(sig, &ours) }?;
        let _ = slot.set(previous);
    }
    Ok(())
}

/// A fault the kernel raised goes to the standard library's handler; a signal sent by a process
/// (`si_code` of `SI_USER`, `SI_TKILL`, `SI_QUEUE`: not above zero) kills kiln with that signal.
extern "C" fn on_fault(signum: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t.
    let sent = unsafe { (*info).si_code } <= 0;
    let previous = match signum {
        libc::SIGSEGV => STD_SEGV.get(),
        _ => STD_BUS.get(),
    };
    if !sent && let Some(SigHandler::SigAction(handler)) = previous.map(SigAction::handler) {
        // The standard library's handler: "has overflowed its stack" and abort, or the default
        // disposition back and the fault repeated.
        handler(signum, info, context);
        return;
    }
    die_by(signum);
}

/// Puts the default disposition back and raises `signum` again: it is delivered (and kills)
/// as soon as the handler returns and the signal is unblocked.
fn die_by(signum: libc::c_int) {
    let Ok(sig) = Signal::try_from(signum) else {
        return;
    };
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: sigaction(2) and raise(3) are async-signal-safe.
    unsafe {
        let _ = signal::sigaction(sig, &default);
    }
    let _ = signal::raise(sig);
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    const CHILD: &str = "KILN_TEST_OVERFLOW_CHILD";

    /// The child of [`a_stack_overflow_is_still_reported_and_aborts`]; does nothing on its own.
    #[test]
    fn overflow_in_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        super::crash_on_segv().unwrap();
        let _ = std::thread::spawn(|| deeper(0)).join();
    }

    fn deeper(depth: u64) -> u64 {
        let frame = std::hint::black_box([depth; 64]);
        match depth {
            u64::MAX => 0,
            _ => deeper(depth + 1).wrapping_add(frame[7]),
        }
    }

    /// A real fault still reaches the standard library's handler, on the alternate stack.
    #[test]
    fn a_stack_overflow_is_still_reported_and_aborts() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "process::crash::tests::overflow_in_child",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{}: {stderr}",
            out.status
        );
        assert!(stderr.contains("has overflowed its stack"), "{stderr}");
    }
}
