//! How kiln's own process crashes: without a core file.
//!
//! kiln's memory holds every secret it resolved and its own credentials (`AWS_SECRET_ACCESS_KEY`
//! in its environment). A core file (or systemd-coredump's copy of it) would keep them on disk;
//! `/proc/<kiln>/environ` and `/proc/<kiln>/mem` would show them to any process of kiln's user.
//! [`no_core`] marks the process non-dumpable, which forbids both. It is not inherited by what
//! kiln starts: the kernel makes a process dumpable again when it execs a binary it may read
//! under credentials that are all one user's (a service after `setuid`, kiln's own probes), as
//! for any other program; only the moment between fork and exec stays non-dumpable.

/// Marks kiln non-dumpable: no core file, and its `/proc/PID/environ` and `/proc/PID/mem` closed
/// to every process without `CAP_SYS_PTRACE`, its own user's included. Call first thing, before
/// a secret is read (the environment kiln was started with is in memory from the start).
pub fn no_core() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)
}
