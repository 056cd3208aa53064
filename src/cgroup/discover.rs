//! Where the cgroup v2 hierarchy is mounted (`/proc/self/mountinfo`), which cgroup kiln is in
//! (`/proc/self/cgroup`), and whether kiln may make cgroups there.

use std::path::{Path, PathBuf};

/// kiln's cgroup, found in a cgroup2 mount kiln may write to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// kiln's cgroup as a directory (`/sys/fs/cgroup/system.slice/kiln.service`).
    pub dir: PathBuf,
    pub owner: Owner,
}

/// Why kiln may make cgroups below its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// kiln's cgroup is the root of the whole hierarchy (no systemd: a CI container, the hybrid
    /// layout's `unified` mount). kiln leaves the root alone and makes a sub-tree of its own.
    Root,
    /// Given to kiln: systemd's `Delegate=yes` (the `trusted.delegate` mark), the root of kiln's
    /// cgroup namespace (a container's), or kiln is PID 1 (a container without one).
    Delegated,
}

/// kiln's cgroup in a writable cgroup2 mount, before the question of whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// kiln's cgroup as a directory.
    pub dir: PathBuf,
    /// kiln's cgroup as `/proc/self/cgroup` names it (`/system.slice/kiln.service`).
    pub own: String,
    /// Where the cgroup2 file system is mounted: its top cgroup.
    pub mount: PathBuf,
}

/// Finds kiln's cgroup; the error says, in words, why services get process groups only.
pub fn find() -> Result<Found, String> {
    let located = locate()?;
    let owner = owner(&located.dir, &located.own, std::process::id())?;
    Ok(Found {
        dir: located.dir,
        owner,
    })
}

/// Finds kiln's cgroup in a cgroup2 mount kiln may write to; the error says why there is none.
pub fn locate() -> Result<Located, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let own = unified_path(&own).ok_or("no cgroup v2 line (0::) in /proc/self/cgroup")?;
    let (mount, relative) = cgroup2_mounts(&mountinfo)
        .into_iter()
        .find_map(|m| {
            let relative = Path::new(own).strip_prefix(&m.root).ok()?.to_path_buf();
            Some((m, relative))
        })
        .ok_or_else(|| format!("no cgroup2 file system mounted that shows kiln's cgroup {own}"))?;
    if mount.read_only {
        return Err(format!(
            "cgroup2 at {} is mounted read-only",
            mount.point.display()
        ));
    }
    let dir = if relative.as_os_str().is_empty() {
        mount.point.clone()
    } else {
        mount.point.join(relative)
    };
    Ok(Located {
        dir,
        own: own.to_string(),
        mount: mount.point,
    })
}

/// The rule of who owns kiln's cgroup. The real root has no `cgroup.type` (every other cgroup
/// has one), which tells it from the root of a cgroup namespace.
pub fn owner(dir: &Path, own: &str, pid: u32) -> Result<Owner, String> {
    if own == "/" && !dir.join("cgroup.type").exists() {
        return Ok(Owner::Root);
    }
    if own == "/" || pid == 1 || delegated(dir) {
        return Ok(Owner::Delegated);
    }
    Err(format!(
        "kiln's cgroup {own} is not delegated to it (start kiln from kiln.service, which sets Delegate=yes)"
    ))
}

/// systemd marks the cgroup of a unit with `Delegate=yes` with the extended attribute
/// `trusted.delegate` (and `user.delegate` from v251) set to `1`.
fn delegated(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"]
        .iter()
        .any(|name| matches!(xattr::get(dir, name), Ok(Some(v)) if v.first() == Some(&b'1')))
}

/// kiln's cgroup v2 path: the `0::` line of `/proc/self/cgroup`.
fn unified_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim_end)
        .filter(|p| p.starts_with('/'))
}

/// A cgroup2 mount of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// The cgroup shown at the mount point (`/` unless a sub-tree is bind-mounted).
    root: String,
    point: PathBuf,
    read_only: bool,
}

/// Every cgroup2 mount, `/sys/fs/cgroup` and `/sys/fs/cgroup/unified` first.
fn cgroup2_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = crate::mountinfo::parse(mountinfo)
        .into_iter()
        .filter(|m| m.fstype == "cgroup2")
        .map(|m| Mount {
            read_only: m.read_only(),
            root: m.root,
            point: m.point,
        })
        .collect();
    mounts.sort_by_key(|m| !m.point.starts_with("/sys/fs/cgroup"));
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CONTAINER: &str = "\
600 500 0:40 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw
601 500 0:41 / /mnt/with\\040space rw - cgroup2 cgroup rw
";

    #[test]
    fn finds_cgroup2_mounts_in_the_hybrid_and_in_containers() {
        assert_eq!(
            cgroup2_mounts(HYBRID),
            [Mount {
                root: "/".into(),
                point: "/sys/fs/cgroup/unified".into(),
                read_only: false
            }]
        );
        let mounts = cgroup2_mounts(CONTAINER);
        assert_eq!(
            (mounts[0].root.as_str(), mounts[0].read_only),
            ("/docker/abc", true)
        );
        assert_eq!(mounts[1].point, PathBuf::from("/mnt/with space"));
    }

    #[test]
    fn reads_the_unified_line_of_proc_self_cgroup() {
        let hybrid = "4:memory:/process_api/d48c\n1:cpu:/\n0::/\n";
        assert_eq!(unified_path(hybrid), Some("/"));
        assert_eq!(
            unified_path("0::/system.slice/kiln.service\n"),
            Some("/system.slice/kiln.service")
        );
        assert_eq!(unified_path("4:memory:/x\n"), None);
    }

    #[test]
    fn the_root_is_a_sub_tree_and_a_cgroup_of_our_own_needs_delegation() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(owner(root.path(), "/", 4242), Ok(Owner::Root));
        // A cgroup namespace's root has cgroup.type, as every cgroup but the real root.
        std::fs::write(root.path().join("cgroup.type"), "domain\n").unwrap();
        assert_eq!(owner(root.path(), "/", 4242), Ok(Owner::Delegated));
        assert_eq!(owner(root.path(), "/docker/abc", 1), Ok(Owner::Delegated));
        let refused = owner(root.path(), "/user.slice/session-1.scope", 4242).unwrap_err();
        assert_eq!(
            refused,
            "kiln's cgroup /user.slice/session-1.scope is not delegated to it (start kiln from kiln.service, which sets Delegate=yes)"
        );
    }
}
