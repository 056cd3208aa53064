//! Every unit in a cgroup v2 of its own, so that nothing a service forks can leave it: a process
//! can leave its process group with `setsid()`, never its cgroup. A stop or a restart kills the
//! whole cgroup (`cgroup.kill`), and a unit counts as gone only once its cgroup is empty.
//!
//! The tree, under the cgroup systemd delegates to `kiln.service` (`Delegate=yes`):
//!
//! ```text
//! kiln.service/          base: controllers enabled for the children
//! ├── kiln/              kiln itself (cgroup v2 allows no processes beside enabled children)
//! └── services/
//!     ├── php-fpm/       one per unit; replicas are `worker@1`, `worker@2`
//!     └── nginx/
//! ```
//!
//! When kiln's own cgroup is the root (a container's PID 1 in its cgroup namespace, a test on a
//! hybrid host), the base is `kiln-<hash of state_dir>` below the root and kiln stays where it is:
//! stable across runs of the same instance (so a new kiln finds what a killed one left), distinct
//! between instances. Anywhere else (a login session's scope) kiln's cgroup is not its to divide:
//! kiln falls back to process groups and says so.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The controllers kiln enables for its units, when delegated: memory and CPU for `kiln status`
/// and the limits, pids for `tasks_max`.
const WANTED: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];
/// How long a killed cgroup may take to empty before kiln gives up waiting.
pub const EMPTY_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Cpu,
    Pids,
}

impl Controller {
    pub fn as_str(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }

    /// The `[[service]]` key whose limit needs this controller.
    pub fn limit_key(self) -> &'static str {
        match self {
            Controller::Memory => "memory_max",
            Controller::Cpu => "cpu_weight",
            Controller::Pids => "tasks_max",
        }
    }
}

/// Limits written into a unit's cgroup (`[[service]] memory_max`, `cpu_weight`, `tasks_max`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_max: Option<u64>,
    pub cpu_weight: Option<u16>,
    pub tasks_max: Option<u64>,
}

impl Limits {
    /// The controllers these limits need.
    pub fn needs(&self) -> Vec<Controller> {
        let mut needs = Vec::new();
        if self.memory_max.is_some() {
            needs.push(Controller::Memory);
        }
        if self.cpu_weight.is_some() {
            needs.push(Controller::Cpu);
        }
        if self.tasks_max.is_some() {
            needs.push(Controller::Pids);
        }
        needs
    }

    fn files(&self) -> Vec<(&'static str, String)> {
        let mut files = Vec::new();
        if let Some(bytes) = self.memory_max {
            files.push(("memory.max", bytes.to_string()));
        }
        if let Some(weight) = self.cpu_weight {
            files.push(("cpu.weight", weight.to_string()));
        }
        if let Some(tasks) = self.tasks_max {
            files.push(("pids.max", tasks.to_string()));
        }
        files
    }
}

/// How kiln holds its services: cgroups, or process groups only (and why).
#[derive(Debug)]
pub enum Containment {
    Cgroups(Cgroups),
    ProcessGroups(String),
}

impl Containment {
    /// One line for `kiln status`.
    pub fn describe(&self) -> String {
        match self {
            Containment::Cgroups(c) => c.describe(),
            Containment::ProcessGroups(why) => format!("process groups only: {why}"),
        }
    }
}

/// kiln's part of the cgroup tree.
#[derive(Debug)]
pub struct Cgroups {
    /// Ours to remove on exit (the `kiln-<hash>` base); None when the base is kiln.service's own.
    owned_base: Option<PathBuf>,
    services: PathBuf,
    controllers: Vec<Controller>,
}

/// Finds or makes kiln's part of the cgroup tree, and kills what a previous kiln left in it.
/// Returns how kiln holds its services and one line per unit cleared of leftovers.
pub fn setup(state_dir: &Path) -> (Containment, Vec<String>) {
    match Cgroups::create(state_dir) {
        Ok(cgroups) => {
            if let Some(base) = &cgroups.owned_base {
                // Where this instance's tree is, for a person (and a test) cleaning up after a
                // kiln that could not (kill -9).
                let _ = fs::write(state_dir.join("cgroup"), format!("{}\n", base.display()));
            }
            let cleared = cgroups.clear_leftovers();
            (Containment::Cgroups(cgroups), cleared)
        }
        Err(why) => (Containment::ProcessGroups(why), Vec::new()),
    }
}

impl Cgroups {
    fn create(state_dir: &Path) -> Result<Cgroups, String> {
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let mount = cgroup2_mount(&mountinfo).ok_or("no cgroup2 file system is mounted")?;
        let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let own = own_cgroup(&own).ok_or("kiln is in no cgroup v2 (/proc/self/cgroup)")?;
        let (base, owned) = if own == "/" {
            (mount.join(base_name(state_dir)), true)
        } else if std::process::id() == 1 || own.ends_with(".service") {
            (mount.join(own.trim_start_matches('/')), false)
        } else {
            return Err(format!(
                "kiln's cgroup {own} is not delegated to it (start kiln from a unit with Delegate=yes)"
            ));
        };
        make_dir(&base)?;
        if !owned {
            // No processes may sit beside children that have controllers: kiln moves to a leaf.
            let leaf = base.join("kiln");
            make_dir(&leaf)?;
            write(&leaf.join("cgroup.procs"), "0")
                .map_err(|e| format!("{}: cannot move kiln there: {e}", leaf.display()))?;
        }
        let services = base.join("services");
        make_dir(&services)?;
        let available = read(&base.join("cgroup.controllers")).unwrap_or_default();
        for controller in WANTED {
            if available.split_whitespace().any(|c| c == controller.as_str()) {
                let enable = format!("+{}", controller.as_str());
                // Best effort: what could not be enabled is missing below and named by a limit.
                let _ = write(&base.join("cgroup.subtree_control"), &enable)
                    .and_then(|()| write(&services.join("cgroup.subtree_control"), &enable));
            }
        }
        let enabled = read(&services.join("cgroup.subtree_control")).unwrap_or_default();
        let controllers = WANTED
            .into_iter()
            .filter(|c| enabled.split_whitespace().any(|e| e == c.as_str()))
            .collect();
        Ok(Cgroups {
            owned_base: owned.then_some(base),
            services,
            controllers,
        })
    }

    pub fn describe(&self) -> String {
        let controllers: Vec<&str> = self.controllers.iter().map(|c| c.as_str()).collect();
        let controllers = if controllers.is_empty() {
            "no controllers".to_string()
        } else {
            controllers.join(" ")
        };
        format!("cgroup v2 {} ({controllers})", self.services.display())
    }

    pub fn has(&self, controller: Controller) -> bool {
        self.controllers.contains(&controller)
    }

    /// The unit's cgroup, made if missing, with its limits written.
    pub fn unit(&self, unit: &str, limits: &Limits) -> io::Result<UnitCgroup> {
        let path = self.services.join(unit.replace('#', "@"));
        match fs::create_dir(&path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        for (file, value) in limits.files() {
            write(&path.join(file), &value)
                .map_err(|e| io::Error::new(e.kind(), format!("{file} = {value}: {e}")))?;
        }
        Ok(UnitCgroup { path })
    }

    /// Kills and removes every unit cgroup a previous kiln left; one line per unit that still held
    /// processes.
    fn clear_leftovers(&self) -> Vec<String> {
        let mut cleared = Vec::new();
        for dir in sub_dirs(&self.services) {
            let unit = UnitCgroup { path: dir };
            // By `populated`, not by pids: processes of another PID namespace are listed as 0.
            if !unit.is_empty() {
                let left = unit.pids().len();
                let _ = unit.kill();
                let empty = unit.wait_empty_blocking(EMPTY_WITHIN);
                let name = unit
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let how = if empty {
                    "killed"
                } else {
                    "killed, some still dying"
                };
                let left = if left == 0 {
                    "processes".to_string()
                } else {
                    format!("{left} processes")
                };
                cleared.push(format!("{name}: {left} left by a previous kiln, {how}"));
            }
            remove_tree(&unit.path);
        }
        cleared
    }

    /// Removes the units' cgroups (all stopped by now) and the base kiln made.
    fn remove(&self) {
        for dir in sub_dirs(&self.services) {
            remove_tree(&dir);
        }
        if let Some(base) = &self.owned_base {
            let _ = fs::remove_dir(&self.services);
            let _ = fs::remove_dir(base);
        }
    }
}

/// When kiln is done with its services (they stopped, or the boot was refused before any
/// started), their cgroups go: nothing of a stopped instance is left in the tree.
impl Drop for Cgroups {
    fn drop(&mut self) {
        self.remove();
    }
}

/// One unit's cgroup.
#[derive(Debug)]
pub struct UnitCgroup {
    path: PathBuf,
}

impl UnitCgroup {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `cgroup.procs` opened for writing, to move a child into the cgroup before it execs (the
    /// write of `0` in the child is async-signal-safe; the descriptor closes on exec).
    pub fn procs_for_child(&self) -> io::Result<fs::File> {
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.path.join("cgroup.procs"))
    }

    /// SIGKILL to every process in the cgroup, descendants that left their group included.
    pub fn kill(&self) -> io::Result<()> {
        match write(&self.path.join("cgroup.kill"), "1") {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.path.exists() => {
                // Before Linux 5.14: one by one, until none is left.
                self.signal_all(nix::sys::signal::Signal::SIGKILL);
                Ok(())
            }
            other => other,
        }
    }

    /// `signal` to every process in the cgroup (a stop signal meant for the whole service).
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// The processes of the cgroup that kiln can see: those of other PID namespaces are listed
    /// as 0, and `kill(0, …)` would signal kiln's own process group.
    pub fn pids(&self) -> Vec<i32> {
        read(&self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|&pid| pid > 0)
            .collect()
    }

    /// No process left in the cgroup or below it (`cgroup.events`: `populated 0`).
    pub fn is_empty(&self) -> bool {
        match read(&self.path.join("cgroup.events")) {
            Ok(events) => events.lines().any(|l| l.trim() == "populated 0"),
            Err(_) => true,
        }
    }

    /// Waits until the cgroup is empty or `within` has passed; true when empty.
    pub async fn wait_empty(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut pause = Duration::from_millis(1);
        while !self.is_empty() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        true
    }

    fn wait_empty_blocking(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.is_empty() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

/// What a unit's cgroup has used, for `kiln status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `memory.current`, when the memory controller is enabled.
    pub memory_bytes: Option<u64>,
    /// `cpu.stat` `usage_usec`, kept by cgroup v2 with or without the cpu controller.
    pub cpu_usec: Option<u64>,
}

/// Reads a unit cgroup's usage; fields it cannot read stay None.
pub fn usage(cgroup: &Path) -> Usage {
    let memory_bytes = read(&cgroup.join("memory.current"))
        .ok()
        .and_then(|m| m.trim().parse().ok());
    let cpu_usec = read(&cgroup.join("cpu.stat")).ok().and_then(|stat| {
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok())
    });
    Usage {
        memory_bytes,
        cpu_usec,
    }
}

/// The mount point of the cgroup2 file system (the unified hierarchy, or its hybrid mount).
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next() != Some("cgroup2") {
            return None;
        }
        let point = mount.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(point)))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape_octal(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// kiln's cgroup v2 path, from `/proc/self/cgroup`'s `0::/path` line.
fn own_cgroup(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end_matches(" (deleted)"))
        .filter(|p| p.starts_with('/'))
}

/// `kiln-` and 12 hex digits of the state directory's hash: stable for one instance, distinct
/// between instances sharing a root cgroup.
fn base_name(state_dir: &Path) -> String {
    let hash = blake3::hash(state_dir.as_os_str().as_encoded_bytes());
    format!("kiln-{}", &hash.to_hex()[..12])
}

fn make_dir(path: &Path) -> Result<(), String> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create cgroup {}: {e}", path.display())),
    }
}

fn sub_dirs(path: &Path) -> Vec<PathBuf> {
    fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// cgroups are removed leaves first, with rmdir (their files cannot be deleted).
fn remove_tree(path: &Path) {
    for dir in sub_dirs(path) {
        remove_tree(&dir);
    }
    if let Err(e) = fs::remove_dir(path) {
        tracing::debug!("rmdir {}: {e}", path.display());
    }
}

fn read(path: &Path) -> io::Result<String> {
    fs::read_to_string(path)
}

/// cgroupfs takes one value per write(2).
fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_in_a_hybrid_layout() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_the_unified_mount_and_unescapes_it() {
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup\\040x rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount(mountinfo), Some(PathBuf::from("/sys/fs/cgroup x")));
        assert_eq!(cgroup2_mount("1 2 0:1 / / rw - ext4 /dev/vda rw\n"), None);
    }

    #[test]
    fn reads_its_own_v2_cgroup_among_v1_lines() {
        let cgroup = "4:memory:/x\n1:cpu:/\n0::/system.slice/kiln.service\n";
        assert_eq!(own_cgroup(cgroup), Some("/system.slice/kiln.service"));
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
    }

    #[test]
    fn base_names_are_stable_per_state_dir_and_distinct_between_them() {
        let a = base_name(Path::new("/run/kiln"));
        assert_eq!(a, base_name(Path::new("/run/kiln")));
        assert_ne!(a, base_name(Path::new("/run/kiln-2")));
        assert!(a.starts_with("kiln-") && a.len() == 17, "{a}");
    }

    #[test]
    fn limits_name_their_controllers_and_files() {
        let limits = Limits {
            memory_max: Some(512 << 20),
            cpu_weight: None,
            tasks_max: Some(64),
        };
        assert_eq!(limits.needs(), [Controller::Memory, Controller::Pids]);
        assert_eq!(
            limits.files(),
            [
                ("memory.max", "536870912".to_string()),
                ("pids.max", "64".to_string())
            ]
        );
    }
}
