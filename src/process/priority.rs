//! kiln a step ahead of its services on the CPU. At boot on a small machine a service's start
//! competes with the others' (two PHP workers booting on two cores): the process kiln creates,
//! and kiln's thread after its exec, waited 2 to 7 ms for a CPU, and a reap or a probe would wait
//! the same under an app's load. Two things, measured by `bench/spawn.sh`:
//!
//! - kiln's main thread (the supervisor's: starts, reaps, probes) runs [`STEP`] nice levels above
//!   what kiln was started with, with `SCHED_RESET_ON_FORK`: every process and thread it creates
//!   is born at nice 0 (the kernel resets a negative level), so that nothing lowers its priority
//!   while it runs, which makes the kernel reschedule it at once. A child that must be at another
//!   level (kiln started above 0) takes it back before its exec;
//! - for a start, the thread pins itself to its CPU ([`Pinned`]), so that the child is born there.
//!
//! Services, tasks and probes run at the level and on the CPUs kiln was started with.

use std::io;
use std::sync::OnceLock;

/// How many nice levels kiln's main thread runs above what kiln was started with.
const STEP: i32 = 5;

/// The level children take back before their exec, where they are not born at it.
static FOR_CHILDREN: OnceLock<Option<i32>> = OnceLock::new();

/// Raises the calling thread's priority; call on the thread that creates the services, before
/// any other starts. `Err`: not allowed (no CAP_SYS_NICE), and everything runs at one level.
pub fn raise() -> io::Result<()> {
    let nice = own()?;
    let raised = (nice - STEP).max(-20);
    if raised == nice {
        return Ok(());
    }
    // The kernel's `struct sched_param` is one int (musl's is larger, with fields it ignores).
    let priority: libc::c_int = 0;
    let policy = libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK;
    // SAFETY: sched_setscheduler(2) and setpriority(2) of this thread; `priority` is on the stack.
    // The raw system call: musl's wrapper answers ENOSYS by design.
    unsafe {
        let param = &priority as *const libc::c_int;
        if libc::syscall(libc::SYS_sched_setscheduler, 0, policy, param) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setpriority(libc::PRIO_PROCESS, 0, raised) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // What a child is born with: 0 in place of a negative level, else kiln's own.
    let born = if raised < 0 { 0 } else { raised };
    let _ = FOR_CHILDREN.set((born != nice).then_some(nice));
    Ok(())
}

/// The nice level a child takes back before its exec; None when it is born at the right one.
pub fn for_children() -> Option<i32> {
    FOR_CHILDREN.get().copied().flatten()
}

/// This thread's nice level (getpriority(2) answers -1 for a level as for an error).
fn own() -> io::Result<i32> {
    // SAFETY: errno is this thread's; cleared so that a -1 level can be told from a failure.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: getpriority(2) of this thread.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    match io::Error::last_os_error().raw_os_error() {
        Some(0) | None => Ok(nice),
        Some(_) if nice != -1 => Ok(nice),
        Some(_) => Err(io::Error::last_os_error()),
    }
}

/// In a child before its exec: the level it runs at (its service's `nice`, or the one kiln was
/// started with). Raw system call only.
pub fn set_nice_in_child(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority(2) of the calling process, which has one thread (below kiln's level
    // needs root: the child sets it before switching to its user).
    match unsafe { libc::syscall(libc::SYS_setpriority, libc::PRIO_PROCESS, 0, nice) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// This thread pinned to the CPU it runs on, for the time of one `vfork3` start: the child is
/// born on that CPU, which this thread leaves free by waiting, rather than in the queue of another
/// busy CPU while this one idles (2 ms seen on a loaded 2-core machine). The child gives both
/// their CPUs back before its exec ([`unpin_in_child`]), so that this thread, woken by the exec,
/// may run on whichever CPU is free; and this thread takes its own back on drop, whatever the
/// child did.
pub struct Pinned {
    own: libc::cpu_set_t,
    tid: libc::pid_t,
}

impl Pinned {
    /// None where the CPUs cannot be read or set: the start goes on unpinned.
    pub fn here() -> Option<Pinned> {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: cpu_set_t is a plain bit array (all zero: the empty set); sched_getaffinity(2)
        // of this thread writes into `own`; sched_getcpu(3) and gettid(2) read nothing.
        unsafe {
            let mut own: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size, &mut own) != 0 {
                return None;
            }
            let cpu = usize::try_from(libc::sched_getcpu()).ok()?;
            if cpu >= libc::CPU_SETSIZE as usize || !libc::CPU_ISSET(cpu, &own) {
                return None;
            }
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
            (libc::sched_setaffinity(0, size, &one) == 0).then_some(Pinned { own, tid })
        }
    }

    /// What the child needs to give the CPUs back: the set, and this thread's id.
    pub fn for_child(&self) -> (&libc::cpu_set_t, libc::pid_t) {
        (&self.own, self.tid)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: sched_setaffinity(2) of this thread, with the set it had.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.own) };
    }
}

/// In a child before its exec: its CPUs and its parent thread's back ([`Pinned`]). The parent's
/// is best effort (it takes its own back anyway); the child's must succeed. Raw system calls only.
pub fn unpin_in_child((own, parent): (&libc::cpu_set_t, libc::pid_t)) -> io::Result<()> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    let own = own as *const libc::cpu_set_t;
    // SAFETY: sched_setaffinity(2) reading a set the parent keeps alive.
    unsafe {
        libc::syscall(libc::SYS_sched_setaffinity, parent, size, own);
        match libc::syscall(libc::SYS_sched_setaffinity, 0, size, own) {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}
