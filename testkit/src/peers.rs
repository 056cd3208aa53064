//! Processes started by tests — kiln itself and real peers (php-fpm, nginx, haproxy, moto...) — and
//! the guarantee that none of them, nor anything they started, outlives the test.
//!
//! kiln starts each service in its own session, services fork workers and daemons may double-fork,
//! so killing the process we spawned is not enough. Every tree is tracked by three means:
//!
//! - a tag: `KILN_TEST_TAG=<unique>` in the environment of the spawned process, inherited by whatever
//!   it execs (kiln passes its environment to its services);
//! - descent: everything below a tagged process or the spawned process belongs to the tree. This
//!   covers nginx and php-fpm, which overwrite their own environment area with their process title,
//!   so `/proc/PID/environ` no longer shows the tag;
//! - orphans: the test process is a child subreaper, so a process whose parent died is re-parented to
//!   the test, not to init. A child of the test that runs in a process group of its own (not the
//!   test's) and started after the tree's root belongs to the tree (unless it is another tree's root
//!   or carries another tag). This is exact under nextest, where every test is its own process.
//!
//! On drop: a graceful signal first, then SIGKILL to every member until none is left, reaping
//! the zombies re-parented to the test (only those: never `waitpid(-1)`). When the test panics, the
//! tail of the process's log is printed, so a failure shows what kiln or the peer said.
//!
//! The orphan rule cannot tell two live trees of one test apart: an orphan that appears while two
//! handles live counts for both (it is a leak either way). Under `cargo test`, where tests share a
//! process, an orphan of a concurrent test could be taken for ours: run the suite with nextest.

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::wait::{POLL, poll_until, wait_until};

/// The environment variable that marks every process of one tree.
pub const TAG_VAR: &str = "KILN_TEST_TAG";

/// How long kiln gets to stop gracefully on drop before SIGKILL.
pub const KILN_STOP_GRACE: Duration = Duration::from_secs(15);
/// How long a peer gets to stop gracefully on drop before SIGKILL.
pub const PEER_STOP_GRACE: Duration = Duration::from_secs(5);
/// How long the SIGKILL sweep may take before giving up with a warning.
const SWEEP_DEADLINE: Duration = Duration::from_secs(10);
/// Lines of a process's log printed when its test panics.
const LOG_TAIL_LINES: usize = 200;

/// Environment variables that would send kiln's output or notifications elsewhere than the test:
/// removed from every spawned process unless the test sets them again explicitly.
const SCRUBBED_ENV: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"];

/// A running `kiln` started by a test. Dropping it stops kiln and everything it started.
pub struct Kiln {
    tree: Tree,
}

impl Kiln {
    /// `kiln boot --config CONFIG`. Tests pass `env!("CARGO_BIN_EXE_kiln")`.
    pub fn boot(kiln_bin: &str, config: &Path) -> Kiln {
        let config = config.to_str().expect("config path is UTF-8");
        Kiln::boot_with(kiln_bin, &["boot", "--config", config], &[])
    }

    /// `PROGRAM ARGS...` with extra environment: any kiln subcommand, or kiln under a wrapper
    /// (`boot_with("unshare", &["--pid", "--fork", "--mount-proc", kiln, "boot", ...], &[])`).
    pub fn boot_with(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Kiln {
        let mut cmd = Command::new(program);
        cmd.args(args);
        for (key, value) in envs {
            cmd.env(key, value);
        }
        Kiln {
            tree: Tree::spawn(cmd, "kiln"),
        }
    }

    /// Any command that runs kiln (set up by the caller, e.g. to start in a network namespace):
    /// tracked, logged and cleaned up like [`Kiln::boot_with`]'s.
    pub fn spawn(cmd: Command) -> Kiln {
        Kiln {
            tree: Tree::spawn(cmd, "kiln"),
        }
    }

    /// Pid of the spawned process (kiln, or the wrapper given to `boot_with`).
    pub fn pid(&self) -> i32 {
        self.tree.pid
    }

    /// Sends `sig` to kiln. Panics when kiln has already been reaped.
    pub fn signal(&self, sig: Signal) {
        self.tree.signal(sig)
    }

    /// Waits for kiln to exit and reaps it; panics (showing kiln's log) on timeout.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        self.tree.wait_exit(deadline)
    }

    /// kiln's exit status if it has exited (reaps it), `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.tree.try_exit()
    }

    /// Everything kiln wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.tree.log()
    }

    /// The file kiln's stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.tree.log_path
    }

    /// Waits until kiln's log contains `needle`; panics with the log on timeout.
    pub fn wait_log(&self, needle: &str, deadline: Duration) {
        self.tree.wait_log(needle, deadline)
    }

    /// Waits until `needle` occurs at least `count` times in kiln's log (e.g. the 3rd restart).
    pub fn wait_log_count(&self, needle: &str, count: usize, deadline: Duration) {
        self.tree.wait_log_count(needle, count, deadline)
    }

    /// The index of the first line of the log containing `needle` (to assert an order of
    /// events); panics with the log when there is none.
    pub fn line_of(&self, needle: &str) -> usize {
        let log = self.log();
        log.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in the log:\n{log}"))
    }

    /// The unique value of `KILN_TEST_TAG` for this kiln and everything below it.
    pub fn tag(&self) -> &str {
        &self.tree.tag
    }

    /// Every live process of this kiln's tree, kiln included while it runs.
    pub fn processes(&self) -> Vec<(i32, String)> {
        tagged_processes(&self.tree.tag)
    }
}

impl Drop for Kiln {
    fn drop(&mut self) {
        self.tree
            .shut_down(&[self.tree.pid], Signal::SIGTERM, KILN_STOP_GRACE);
    }
}

/// A real peer (php-fpm, nginx, haproxy, moto...) started by a test, in a process group of its
/// own, with stdout and stderr captured. Dropping it stops it and everything it started.
pub struct Process {
    tree: Tree,
}

impl Process {
    /// Spawns `cmd` with the tag in its environment, stdin from /dev/null and stdout and stderr
    /// into a log file (any stdio set on `cmd` is replaced). `NOTIFY_SOCKET`, `WATCHDOG_*` and
    /// `JOURNAL_STREAM` are removed unless `cmd` sets them.
    pub fn spawn(cmd: Command) -> Process {
        let name = Path::new(cmd.get_program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "process".into());
        Process {
            tree: Tree::spawn(cmd, &name),
        }
    }

    pub fn pid(&self) -> i32 {
        self.tree.pid
    }

    /// Sends `sig` to the spawned process. Panics when it has already been reaped.
    pub fn signal(&self, sig: Signal) {
        self.tree.signal(sig)
    }

    /// Sends `sig` to the spawned process's group (it is the group's leader).
    pub fn signal_group(&self, sig: Signal) {
        self.tree.assert_not_reaped();
        killpg(Pid::from_raw(self.tree.pid), sig).ok();
    }

    /// Waits for the spawned process to exit and reaps it; panics (showing its log) on timeout.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        self.tree.wait_exit(deadline)
    }

    /// Sends `sig` and waits for the exit: a graceful stop in the middle of a test.
    pub fn stop(&mut self, sig: Signal, deadline: Duration) -> ExitStatus {
        self.signal(sig);
        self.wait_exit(deadline)
    }

    /// The exit status if it has exited (reaps it), `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.tree.try_exit()
    }

    /// Everything it wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.tree.log()
    }

    pub fn log_path(&self) -> &Path {
        &self.tree.log_path
    }

    pub fn wait_log(&self, needle: &str, deadline: Duration) {
        self.tree.wait_log(needle, deadline)
    }

    pub fn wait_log_count(&self, needle: &str, count: usize, deadline: Duration) {
        self.tree.wait_log_count(needle, count, deadline)
    }

    pub fn tag(&self) -> &str {
        &self.tree.tag
    }

    /// Every live process of this tree.
    pub fn processes(&self) -> Vec<(i32, String)> {
        tagged_processes(&self.tree.tag)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.tree.shut_down(&[], Signal::SIGTERM, PEER_STOP_GRACE);
    }
}

/// Makes the process `cmd` starts die (SIGKILL) when the thread that starts it ends: for a
/// peer that must not outlive a test process killed before its drops ran (a timeout). Start it
/// from the test's own thread, which lives as long as the test.
pub fn die_with_test(cmd: &mut Command) {
    // SAFETY: between fork and exec, only the prctl system call runs.
    unsafe {
        cmd.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
}

/// Pid and command name of every live process of the tree carrying `tag` (see the module docs:
/// tagged, below a tagged process or the tree's root, or an orphan of the tree). Zombies are not
/// listed (see [`tagged_zombies`]).
pub fn tagged_processes(tag: &str) -> Vec<(i32, String)> {
    members(tag, &snapshot())
        .into_iter()
        .filter(|p| !p.is_zombie())
        .map(|p| (p.pid, p.comm))
        .collect()
}

/// Zombies of the tree carrying `tag`: exited, but not reaped by their parent.
pub fn tagged_zombies(tag: &str) -> Vec<(i32, String)> {
    members(tag, &snapshot())
        .into_iter()
        .filter(ProcStat::is_zombie)
        .map(|p| (p.pid, p.comm))
        .collect()
}

/// Direct children of `pid`: pid and command name, zombies included.
pub fn children(pid: i32) -> Vec<(i32, String)> {
    snapshot()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .map(|p| (p.pid, p.comm))
        .collect()
}

/// Zombies anywhere below `pid` (e.g. orphans kiln should have reaped).
pub fn zombies_below(pid: i32) -> Vec<(i32, String)> {
    let procs = snapshot();
    let below = descendants(&procs, [pid]);
    procs
        .into_iter()
        .filter(|p| below.contains(&p.pid) && p.pid != pid && p.is_zombie())
        .map(|p| (p.pid, p.comm))
        .collect()
}

/// Makes the test process a child subreaper (once), so orphans of its trees stay below it.
pub fn become_subreaper() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("prctl(PR_SET_CHILD_SUBREAPER)");
    });
}

/// One spawned process and what is needed to find and stop everything below it.
struct Tree {
    name: String,
    tag: String,
    child: Child,
    pid: i32,
    exited: Option<ExitStatus>,
    log_path: PathBuf,
    /// Holds the log file; removed on drop.
    _log_dir: tempfile::TempDir,
}

impl Tree {
    fn spawn(mut cmd: Command, name: &str) -> Tree {
        become_subreaper();
        let tag = new_tag();
        let log_dir = tempfile::Builder::new()
            .prefix("kiln-testkit-log-")
            .tempdir()
            .expect("create a temp dir for a process log");
        let log_path = log_dir.path().join(format!("{name}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("create the process log");
        let log_err = log.try_clone().expect("dup the process log");
        let explicit: HashSet<String> = cmd
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for var in SCRUBBED_ENV {
            if !explicit.contains(*var) {
                cmd.env_remove(var);
            }
        }
        cmd.env(TAG_VAR, &tag)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({:?}): {e}", cmd.get_program()));
        let pid = child.id() as i32;
        let start = stat(pid).map(|s| s.start).unwrap_or(0);
        registry().push(Registered {
            tag: tag.clone(),
            pid,
            start,
        });
        Tree {
            name: name.to_string(),
            tag,
            child,
            pid,
            exited: None,
            log_path,
            _log_dir: log_dir,
        }
    }

    fn assert_not_reaped(&self) {
        if let Some(status) = self.exited {
            panic!(
                "{} (pid {}) already exited ({status}); cannot signal it",
                self.name, self.pid
            );
        }
    }

    fn signal(&self, sig: Signal) {
        // The pid cannot be reused before we reap it, and we reap only in wait/try_exit.
        self.assert_not_reaped();
        kill(Pid::from_raw(self.pid), sig).ok();
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        match poll_until(deadline, || self.try_exit()) {
            Some(status) => status,
            None => panic!(
                "timed out after {deadline:?} waiting for {} (pid {}) to exit; its log:\n{}",
                self.name,
                self.pid,
                tail(&self.log(), LOG_TAIL_LINES)
            ),
        }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    fn wait_log(&self, needle: &str, deadline: Duration) {
        self.wait_log_count(needle, 1, deadline)
    }

    fn wait_log_count(&self, needle: &str, count: usize, deadline: Duration) {
        let found = || (self.log().matches(needle).count() >= count).then_some(());
        if poll_until(deadline, found).is_none() {
            panic!(
                "timed out after {deadline:?} waiting for {needle:?} {count} time(s) in the log of {}; the log:\n{}",
                self.name,
                tail(&self.log(), LOG_TAIL_LINES)
            );
        }
    }

    /// Graceful signal to the root (and its group unless `root_only` names it), grace period,
    /// then SIGKILL sweeps until nothing of the tree is left.
    fn shut_down(&mut self, root_only: &[i32], sig: Signal, grace: Duration) {
        if self.try_exit().is_none() {
            let pid = Pid::from_raw(self.pid);
            if root_only.contains(&self.pid) {
                kill(pid, sig).ok();
            } else {
                killpg(pid, sig).ok();
            }
            if poll_until(grace, || self.try_exit()).is_none() {
                killpg(pid, Signal::SIGKILL).ok();
                kill(pid, Signal::SIGKILL).ok();
                let _ = self.child.wait().map(|s| self.exited = Some(s));
            }
        }
        let leftovers = sweep(&self.tag, SWEEP_DEADLINE);
        if std::thread::panicking() {
            eprintln!(
                "--- log of {} (pid {}, {TAG_VAR}={}), last {LOG_TAIL_LINES} lines ---\n{}\n--- end of log of {} ---",
                self.name,
                self.pid,
                self.tag,
                tail(&self.log(), LOG_TAIL_LINES),
                self.name
            );
        }
        registry().retain(|r| r.tag != self.tag);
        if !leftovers.is_empty() {
            eprintln!(
                "kiln-testkit: {} ({TAG_VAR}={}) left processes that would not die: {leftovers:?}",
                self.name, self.tag
            );
        }
    }
}

/// SIGKILLs every member of the tree until none is left; reaps members re-parented to the test.
/// Returns what is still there at the deadline.
fn sweep(tag: &str, deadline: Duration) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let started = Instant::now();
    loop {
        let left = members(tag, &snapshot());
        if left.is_empty() {
            return Vec::new();
        }
        for p in &left {
            if !p.is_zombie() {
                kill(Pid::from_raw(p.pid), Signal::SIGKILL).ok();
            } else if p.ppid == me && !is_registered_root(p.pid) {
                // Ours: a member of this tree, re-parented to the test process.
                waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG)).ok();
            }
        }
        if started.elapsed() >= deadline {
            return left.into_iter().map(|p| (p.pid, p.comm)).collect();
        }
        std::thread::sleep(POLL);
    }
}

/// The members of the tree carrying `tag` in `procs` (see the module docs).
fn members(tag: &str, procs: &[ProcStat]) -> Vec<ProcStat> {
    let me = std::process::id() as i32;
    let my_group = nix::unistd::getpgrp().as_raw();
    let my_start = stat(me).map(|s| s.start).unwrap_or(0);
    let registered: Vec<Registered> = registry().clone();
    let root = registered.iter().find(|r| r.tag == tag);
    let other_roots: HashSet<i32> = registered
        .iter()
        .filter(|r| r.tag != tag)
        .map(|r| r.pid)
        .collect();
    let mut seeds = Vec::new();
    for p in procs {
        // A tag is born in this test process: older processes cannot carry it.
        if p.pid == me || p.start < my_start || other_roots.contains(&p.pid) {
            continue;
        }
        let env_tag = environ_tag(p.pid);
        let is_root = root.is_some_and(|r| r.pid == p.pid && r.start == p.start);
        let is_orphan = root.is_some_and(|r| {
            p.ppid == me
                && p.pgid != my_group
                && p.start >= r.start
                && env_tag.as_deref().is_none_or(|t| t == tag)
        });
        if is_root || is_orphan || env_tag.as_deref() == Some(tag) {
            seeds.push(p.pid);
        }
    }
    let mut tree = descendants(procs, seeds);
    tree.remove(&me);
    tree.retain(|pid| !other_roots.contains(pid));
    procs.iter().filter(|p| tree.contains(&p.pid)).cloned().collect()
}

/// `roots` and everything below them in `procs`.
fn descendants(procs: &[ProcStat], roots: impl IntoIterator<Item = i32>) -> HashSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen: HashSet<i32> = HashSet::new();
    let mut stack: Vec<i32> = roots.into_iter().collect();
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            stack.extend(children.get(&pid).into_iter().flatten().copied());
        }
    }
    seen
}

#[derive(Clone)]
struct Registered {
    tag: String,
    pid: i32,
    start: u64,
}

static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<Registered>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_registered_root(pid: i32) -> bool {
    registry().iter().any(|r| r.pid == pid)
}

fn new_tag() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "kt-{}-{:x}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// What `/proc/PID/stat` says about a process.
#[derive(Clone, Debug)]
struct ProcStat {
    pid: i32,
    ppid: i32,
    pgid: i32,
    state: char,
    /// Start time in clock ticks after boot: with the pid, identifies a process across pid reuse.
    start: u64,
    comm: String,
}

impl ProcStat {
    fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

fn stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: it ends at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let fields: Vec<&str> = text.get(close + 2..)?.split(' ').collect();
    Some(ProcStat {
        pid,
        comm: text[open + 1..close].to_string(),
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

fn snapshot() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// The value of `KILN_TEST_TAG` in a process's initial environment, if readable and present.
fn environ_tag(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{TAG_VAR}=");
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until no live process of the tree carrying `tag` is left; panics naming them otherwise.
pub fn wait_no_tagged_processes(tag: &str, deadline: Duration) {
    let mut last = Vec::new();
    let gone = poll_until(deadline, || {
        last = tagged_processes(tag);
        last.is_empty().then_some(())
    });
    if gone.is_none() {
        panic!("timed out after {deadline:?} waiting for the processes tagged {tag} to go: {last:?}");
    }
}

/// Waits until a process of the tree carrying `tag` has command name `comm`; returns its pid.
pub fn wait_tagged_process(tag: &str, comm: &str, deadline: Duration) -> i32 {
    wait_until(&format!("a process {comm:?} tagged {tag}"), deadline, || {
        tagged_processes(tag)
            .into_iter()
            .find(|(_, c)| c == comm)
            .map(|(pid, _)| pid)
    })
}
