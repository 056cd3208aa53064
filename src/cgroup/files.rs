//! The cgroup v2 interface files kiln uses, read and written directly: each is a line or a few.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Rounds of "read `cgroup.procs`, SIGKILL each" without `cgroup.kill` (kernels before 5.14): a
/// process forks only while it has not been signalled, so each round leaves fewer.
const KILL_ROUNDS: usize = 50;

/// The processes directly in `dir` (not in its children). Pids the reader cannot see (another
/// PID namespace) read as 0 and are left out.
pub fn pids(dir: &Path) -> io::Result<Vec<Pid>> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|&pid| pid > 0)
        .map(Pid::from_raw)
        .collect())
}

/// `dir` and every cgroup below it, parents first.
pub fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut next = 0;
    while let Some(current) = all.get(next).cloned() {
        next += 1;
        if let Ok(entries) = std::fs::read_dir(&current) {
            all.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    all
}

/// Whether any process is in `dir` or below (`cgroup.events`: `populated 1`).
pub fn populated(events: &std::fs::File) -> io::Result<bool> {
    let mut buf = [0u8; 128];
    // From the start each time: one open file serves every read and every poll.
    let n = events.read_at(&mut buf, 0)?;
    let text = std::str::from_utf8(buf.get(..n).unwrap_or_default()).unwrap_or_default();
    Ok(text.lines().any(|l| l.trim() == "populated 1"))
}

/// SIGKILL to every process in `dir` and below: `cgroup.kill` where the kernel has it, else
/// rounds of SIGKILL to what `cgroup.procs` lists.
pub fn kill_all(dir: &Path) -> io::Result<()> {
    match std::fs::write(dir.join("cgroup.kill"), "1") {
        Err(e) if e.kind() == ErrorKind::NotFound => kill_listed(dir),
        done => done,
    }
}

/// SIGKILL to each process `cgroup.procs` lists in `dir` and below, again until none is left.
fn kill_listed(dir: &Path) -> io::Result<()> {
    for _ in 0..KILL_ROUNDS {
        let mut any = false;
        for cgroup in subtree(dir) {
            for pid in pids(&cgroup)? {
                any = true;
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        if !any {
            break;
        }
        std::thread::yield_now();
    }
    Ok(())
}

/// `signal` to every process in `dir` and below.
pub fn signal_all(dir: &Path, signal: Signal) -> io::Result<()> {
    for cgroup in subtree(dir) {
        for pid in pids(&cgroup)? {
            let _ = kill(pid, signal);
        }
    }
    Ok(())
}

/// Kills everything in `dir` and below and waits, blocking, until it is empty or `within` has
/// passed (a process in uninterruptible sleep dies only when it wakes up). True once empty.
pub fn kill_and_wait_blocking(dir: &Path, within: Duration) -> io::Result<bool> {
    let events = std::fs::File::open(dir.join("cgroup.events"))?;
    let deadline = Instant::now() + within;
    loop {
        kill_all(dir)?;
        if !populated(&events)? {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        wait_for_event(&events, left.min(Duration::from_millis(200)));
    }
}

/// Blocks until `cgroup.events` changes (the kernel marks it with POLLPRI) or `timeout`.
fn wait_for_event(events: &std::fs::File, timeout: Duration) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(events.as_fd(), PollFlags::POLLPRI)];
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    let _ = poll(&mut fds, timeout);
}

/// Makes the cgroup `dir`; one that is there already is taken as it is.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        done => done,
    }
}

/// Removes `dir` and every cgroup below it, deepest first. Only empty cgroups can go: one that
/// still holds a process is left, and named in the error.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    let mut first_error = None;
    for cgroup in subtree(dir).into_iter().rev() {
        match std::fs::remove_dir(&cgroup) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                first_error
                    .get_or_insert_with(|| io::Error::new(e.kind(), format!("{}: {e}", cgroup.display())));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Reads a file of one number (`memory.current`, `pids.max`); None when absent or not a number.
pub fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `usage_usec` of `cpu.stat`, which cgroup v2 keeps in every cgroup, with or without the cpu
/// controller.
pub fn cpu_usage_usec(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// The command name of a process, for saying what was killed.
pub fn comm(pid: Pid) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use testkit::cgroups::Scratch;

    /// Kernels before 5.14 have no `cgroup.kill`: the rounds of SIGKILL reach a daemon that
    /// double-forked out of its process group too.
    #[test]
    fn without_cgroup_kill_every_listed_process_is_killed() {
        let scratch = Scratch::new("kill-listed");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(scratch.dir.join("cgroup.procs"))
            .unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "(setsid sleep 1000 &); exec sleep 1000"]);
        // SAFETY: one write(2) of a static buffer between fork and exec.
        unsafe {
            cmd.pre_exec(move || match libc::write(fd, b"0".as_ptr().cast(), 1) {
                1 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            });
        }
        let mut main = cmd.spawn().unwrap();
        let both = testkit::wait::wait_until(
            "the daemon beside its main process",
            Duration::from_secs(10),
            || {
                let pids = pids(&scratch.dir).ok()?;
                (pids.len() == 2).then_some(pids)
            },
        );
        kill_listed(&scratch.dir).unwrap();
        main.wait().unwrap();
        let events = std::fs::File::open(scratch.dir.join("cgroup.events")).unwrap();
        testkit::wait::wait_until("the cgroup empty", Duration::from_secs(10), || {
            (!populated(&events).ok()?).then_some(())
        });
        // Empty means dead: a zombie has left its cgroup already.
        assert_eq!(both.len(), 2);
    }
}
