//! The cgroups tests make and kiln makes for them, found and removed even when a test fails.
//!
//! kiln puts each unit in a cgroup v2 of its own. On the CI machines the test process sits at the
//! root of the hierarchy (`0::/`, the hybrid layout's `/sys/fs/cgroup/unified`), so kiln makes its
//! tree there as `kiln@<state_dir escaped as systemd-escape --path does>`. kiln removes it when it
//! stops; a kiln killed with SIGKILL (by a test, by the sweep of [`crate::peers`]) leaves it, so
//! [`crate::example::Example`] removes the tree of its state directory when dropped (after the
//! kilns that used it: declared first, dropped last). The name rule is kiln's
//! (`kiln::cgroup::instance_name`), which follows `systemd-escape --path`; testkit asks
//! systemd-escape, and `tests/cgroup.rs` checks that kiln agrees with it.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::wait::poll_until;

/// How long killed processes may take to leave a cgroup before the cleanup gives up on it.
const EMPTY_DEADLINE: Duration = Duration::from_secs(10);

/// The directory of the test process's own cgroup v2, where kiln makes its tree. None without a
/// writable cgroup2 mount.
pub fn own_dir() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_end()
        .to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = before.split(' ').collect();
        let (root, point) = (fields.get(3)?, fields.get(4)?);
        let relative = Path::new(&own).strip_prefix(root).ok()?;
        Some(match relative.as_os_str().is_empty() {
            true => PathBuf::from(point),
            false => Path::new(point).join(relative),
        })
    })
}

/// Where kiln, run by this test process with `state_dir`, puts its cgroups.
pub fn kiln_dir(state_dir: &Path) -> Option<PathBuf> {
    Some(own_dir()?.join(format!("kiln@{}", escape_path(state_dir.to_str()?))))
}

/// Every process in `dir` and the cgroups below it.
pub fn procs(dir: &Path) -> Vec<i32> {
    subtree(dir)
        .iter()
        .flat_map(|c| {
            std::fs::read_to_string(c.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Kills everything in `dir` and below, waits until it is empty, and removes every cgroup of it,
/// deepest first. Says on stderr what it could not remove; never panics (it runs in drops).
pub fn remove_tree(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let emptied = poll_until(EMPTY_DEADLINE, || {
        let left = procs(dir);
        for pid in &left {
            kill(Pid::from_raw(*pid), Signal::SIGKILL).ok();
        }
        left.is_empty().then_some(())
    });
    if emptied.is_none() {
        eprintln!(
            "kiln-testkit: processes in {} would not die: {:?}",
            dir.display(),
            procs(dir)
        );
    }
    for cgroup in subtree(dir).iter().rev() {
        if let Err(e) = std::fs::remove_dir(cgroup)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("kiln-testkit: cannot remove the cgroup {}: {e}", cgroup.display());
        }
    }
}

/// A cgroup of the test's own below its cgroup (`kt-<name>`), removed with everything in it when
/// dropped: a place to start kiln in a cgroup that is not the root, as a container's PID 1 is.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    /// Panics when the test process has no writable cgroup2.
    pub fn new(name: &str) -> Scratch {
        let dir = own_dir()
            .expect("a cgroup2 mount showing the test's cgroup")
            .join(format!("kt-{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create the cgroup {}: {e}", dir.display()));
        Scratch { dir }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_tree(&self.dir);
    }
}

/// `dir` and every cgroup below it, parents first.
fn subtree(dir: &Path) -> Vec<PathBuf> {
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

/// `systemd-escape --path PATH`, the rule kiln names its cgroups by (`tests/cgroup.rs` checks
/// that kiln follows it), asked of systemd's own tool rather than copied.
pub fn escape_path(path: &str) -> String {
    let out = std::process::Command::new("systemd-escape")
        .args(["--path", path])
        .output()
        .expect("systemd-escape (package systemd)");
    assert!(out.status.success(), "systemd-escape --path {path:?}: {out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim_end()
        .to_string()
}
