//! Where the files go: a tmpfs of kiln's own mounted on `[render] dir`, written, then remounted
//! read-only.
//!
//! Why a read-only mount, and not only modes: a file's owner may `chmod` it back and write, and
//! root ignores modes; on a read-only file system `open` for writing, `chmod`, `chown`, `unlink`
//! and `rename` fail with EROFS for everyone, the service's own user and root alike, until
//! someone with CAP_SYS_ADMIN remounts it. And a tmpfs keeps the secrets in memory: they never
//! reach a disk, and are gone when it is unmounted (at kiln's stop) or at power-off.
//!
//! kiln mounts in its own mount namespace (the machine's, under the shipped unit); the services
//! are its children and see it. A tmpfs a killed kiln left at `dir` (source [`SOURCE`]) is
//! detached first. Without the privilege to mount (kiln not root), the files are written into
//! `dir` as it is, which must then be a tmpfs already (`/run/user/UID`), and stay writable by
//! kiln's user: status says so.

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statfs::{FsType, TMPFS_MAGIC, statfs};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The source name of kiln's tmpfs in the mount table: how a later kiln knows it for its own.
pub const SOURCE: &str = "kiln-render";

/// One file, ready to write.
pub struct Contents<'a> {
    pub name: &'a str,
    pub bytes: Vec<u8>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: u32,
}

/// How the files are held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// On kiln's tmpfs, read-only.
    ReadOnly,
    /// In the directory as it was (a tmpfs), writable by kiln's user: why.
    Writable(String),
}

/// Writes `files` into `dir`: mounted, written, remounted read-only; or, without the privilege
/// to mount, written in place. Nothing is left mounted when it fails.
pub fn write_all(dir: &Path, files: &[Contents<'_>]) -> Result<Held, String> {
    crate::state_dir::prepare(dir)?;
    detach_earlier(dir)?;
    let bytes: usize = files.iter().map(|f| f.bytes.len().saturating_add(4096)).sum();
    let size = bytes.saturating_add(64 * 1024);
    let options = format!(
        "mode=0755,size={size},nr_inodes={}",
        files.len().saturating_add(16)
    );
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(Some(SOURCE), dir, Some("tmpfs"), flags, Some(options.as_str())) {
        Ok(()) => {}
        Err(Errno::EPERM) => return write_in_place(dir, files),
        Err(e) => return Err(format!("cannot mount a tmpfs there: {}", e.desc())),
    }
    let written = files.iter().try_for_each(|f| write_one(dir, f)).and_then(|()| {
        let none: Option<&str> = None;
        mount(
            none,
            dir,
            none,
            flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            none,
        )
        .map_err(|e| format!("cannot make it read-only: {}", e.desc()))
    });
    match written {
        Ok(()) => Ok(Held::ReadOnly),
        Err(e) => {
            let _ = umount2(dir, MntFlags::MNT_DETACH);
            Err(e)
        }
    }
}

/// No privilege to mount: the files go into `dir` itself, which must keep them off any disk.
fn write_in_place(dir: &Path, files: &[Contents<'_>]) -> Result<Held, String> {
    let fs = statfs(dir).map_err(|e| format!("cannot check it: {}", e.desc()))?;
    // RAMFS_MAGIC of linux/magic.h: neither nix nor libc names it.
    let ramfs = FsType(0x8584_58f6);
    if fs.filesystem_type() != TMPFS_MAGIC && fs.filesystem_type() != ramfs {
        return Err(
            "kiln may not mount a tmpfs there (not root) and it is not on one: the files may hold \
             secrets, which must not reach a disk; give a directory on a tmpfs (/run/user/UID/...)"
                .into(),
        );
    }
    for file in files {
        let path = dir.join(file.name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot replace {}: {e}", path.display()));
            }
            _ => {}
        }
        write_one(dir, file)?;
    }
    Ok(Held::Writable(
        "kiln may not mount (not root): written in place, writable by kiln's user".into(),
    ))
}

/// Created with its final mode (never wider on the way), owned as asked, written whole.
fn write_one(dir: &Path, file: &Contents<'_>) -> Result<(), String> {
    let path = dir.join(file.name);
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{}: cannot {what}: {e}", path.display());
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| fail("create it", &e))?;
    // The umask may have taken bits off: set exactly what was asked.
    out.set_permissions(fs::Permissions::from_mode(file.mode))
        .map_err(|e| fail("set its mode", &e))?;
    if file.uid.is_some() || file.gid.is_some() {
        std::os::unix::fs::fchown(&out, file.uid, file.gid).map_err(|e| {
            let who = format!("uid {:?}, gid {:?}", file.uid, file.gid);
            fail(
                &format!("give it to {who} (kiln runs as uid {})", nix::unistd::geteuid()),
                &e,
            )
        })?;
    }
    out.write_all(&file.bytes).map_err(|e| fail("write it", &e))
}

/// Detaches every tmpfs of kiln's own at `dir` (a killed kiln's, holding its secrets).
fn detach_earlier(dir: &Path) -> Result<(), String> {
    while ours_on_top(dir)? {
        umount2(dir, MntFlags::MNT_DETACH)
            .map_err(|e| format!("cannot unmount an earlier kiln's tmpfs: {}", e.desc()))?;
    }
    Ok(())
}

/// The mount on top at `dir` is a tmpfs kiln mounted.
fn ours_on_top(dir: &Path) -> Result<bool, String> {
    let text = fs::read_to_string(crate::mountinfo::PATH)
        .map_err(|e| format!("cannot read {}: {e}", crate::mountinfo::PATH))?;
    let real = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    // Later lines are mounted later: the last one at the point is on top.
    let top = crate::mountinfo::parse(&text)
        .into_iter()
        .rev()
        .find(|m| m.point == real);
    Ok(top.is_some_and(|m| m.fstype == "tmpfs" && m.device == SOURCE))
}

/// At stop: the files go (unmounted, or removed when written in place). Best effort: a stop
/// goes on whatever happens here.
pub fn remove(dir: &Path, held: &Held, names: &[PathBuf]) {
    match held {
        Held::ReadOnly => match ours_on_top(dir) {
            Ok(true) => {
                if let Err(e) = umount2(dir, MntFlags::MNT_DETACH) {
                    tracing::warn!("render: cannot unmount {}: {}", dir.display(), e.desc());
                }
            }
            Ok(false) => tracing::warn!(
                "render: {} is no longer kiln's tmpfs: left as it is",
                dir.display()
            ),
            Err(e) => tracing::warn!("render: {e}"),
        },
        Held::Writable(_) => {
            for name in names {
                let _ = fs::remove_file(dir.join(name));
            }
        }
    }
}
