//! The directories kiln writes at runtime: `state_dir` (the env file, `instance.json`) and the
//! control socket's. Only root and kiln's user may be able to change what is in them or what
//! leads to them: otherwise another user could swap the env file kiln wrote, or put a socket of
//! their own where `kiln status` connects.
//!
//! The rules, checked on every existing part of the path without following a symlink planted
//! at the end:
//! - the directory itself, when it exists: a real directory (not a symlink), owned by kiln's
//!   user, not writable by group or others;
//! - its parent: owned by root or kiln's user, writable by nobody else (in a world-writable
//!   directory such as `/tmp` anyone can take the name before kiln does);
//! - every directory above: owned by root or kiln's user, writable by others only with the
//!   sticky bit (which keeps others from renaming what they do not own).
//!
//! `kiln check` runs [`check`]; `kiln boot` runs [`prepare`], which also creates what is missing
//! (the directory 0700, missing parents 0755) and checks again what it made, then [`own`]s the
//! state dir for as long as it runs.

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::Uid;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

const STICKY: u32 = 0o1000;
const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const OTHER_WRITE: u32 = 0o002;

/// Why `dir` is not safe for kiln's runtime state, with what exists of it as it is now.
pub fn check(dir: &Path) -> Result<(), String> {
    if !dir.is_absolute()
        || dir
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err("must be an absolute path without \".\" or \"..\"".into());
    }
    let kiln = Uid::effective();
    let trusted = |uid: u32| uid == 0 || uid == kiln.as_raw();
    // Every directory above, root first. A symlink among them (/var/run -> /run) is followed: it
    // sits in a directory already checked, and what it leads to is checked as well.
    let ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
    for (i, above) in ancestors.iter().enumerate().rev() {
        let is_parent = i == 0;
        for path in [
            above.to_path_buf(),
            fs::canonicalize(above).unwrap_or(above.to_path_buf()),
        ] {
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot check {}: {e}", path.display())),
            };
            let mode = meta.permissions().mode();
            if !trusted(meta.uid()) {
                return Err(format!(
                    "{} is owned by uid {}, neither root nor kiln's user: that user could swap what kiln writes",
                    path.display(),
                    meta.uid()
                ));
            }
            if is_parent && mode & OTHER_WRITE != 0 {
                return Err(format!(
                    "its parent {} is writable by every user: anyone can create or take its name before kiln \
                     does; keep it in a directory only root or kiln's user can write, like /run",
                    path.display()
                ));
            }
            if mode & GROUP_OR_OTHER_WRITE != 0 && (is_parent || mode & STICKY == 0) {
                return Err(format!(
                    "{} is writable by other users (mode {:o}): they could swap what kiln writes",
                    path.display(),
                    mode & 0o7777
                ));
            }
        }
    }
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot check it: {e}")),
    };
    if meta.file_type().is_symlink() {
        return Err("is a symlink: kiln does not follow a link planted where its state goes".into());
    }
    if !meta.is_dir() {
        return Err("exists and is not a directory".into());
    }
    if meta.uid() != kiln.as_raw() {
        return Err(format!(
            "is owned by uid {}, not by kiln's user (uid {kiln}): someone else made it",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & GROUP_OR_OTHER_WRITE != 0 {
        return Err(format!(
            "is writable by other users (mode {:o}): they could swap what kiln writes",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Checks `dir`, creates it when missing (0700; missing parents 0755) and checks what is there
/// afterwards: a directory that appeared in between is judged like any other.
pub fn prepare(dir: &Path) -> Result<(), String> {
    check(dir)?;
    if let Some(parent) = dir.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create it: {e}")),
    }
    check(dir)
}

/// The file in the state dir that a running kiln holds locked, with its pid in it.
pub const LOCK_FILE: &str = "lock";

/// The state dir is this kiln's while this lives (the lock goes with the descriptor, when kiln
/// exits however it exits).
#[derive(Debug)]
pub struct Owned {
    _lock: Flock<File>,
}

/// Makes the state dir this kiln's, as s6-supervise does its own: an exclusive `flock` on
/// [`LOCK_FILE`], held through a descriptor kiln keeps (close-on-exec, so no service inherits
/// it). Two kilns on one state dir would share its cgroups and each take the other's services
/// for an earlier kiln's leftovers and kill them: the second one gets an error naming the
/// holder's pid, and must touch nothing. The file stays after kiln exits; only the lock counts.
pub fn own(dir: &Path) -> Result<Owned, String> {
    let path = dir.join(LOCK_FILE);
    let cannot = |e: &dyn std::fmt::Display| format!("cannot lock {}: {e}", path.display());
    // std opens with O_CLOEXEC; O_NOFOLLOW: a link planted there is refused, not followed.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| cannot(&e))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            // The holder writes its pid right after it took the lock: it may not be there yet.
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "its pid not written yet".into(),
            };
            return Err(format!(
                "is in use by another kiln ({holder}, {} is locked): two kilns on one state_dir would \
                 kill each other's services; give each kiln a state_dir of its own",
                path.display()
            ));
        }
        Err((_, e)) => return Err(cannot(&e)),
    };
    let pid = format!("{}\n", std::process::id());
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(pid.as_bytes()))
        .map_err(|e| cannot(&e))?;
    Ok(Owned { _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        root
    }

    #[test]
    fn creates_a_missing_directory_private() {
        let root = tree();
        let dir = root.path().join("run/kiln");
        prepare(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(root.path().join("run"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        prepare(&dir).unwrap();
    }

    #[test]
    fn refuses_a_world_writable_parent_even_with_the_sticky_bit() {
        let root = tree();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        let err = check(&root.path().join("kiln")).unwrap_err();
        assert!(err.starts_with("its parent "), "{err}");
        assert!(err.contains("is writable by every user"), "{err}");
    }

    #[test]
    fn a_sticky_world_writable_grandparent_is_fine() {
        let root = tree();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        let mine = root.path().join("mine");
        DirBuilder::new().mode(0o755).create(&mine).unwrap();
        prepare(&mine.join("kiln")).unwrap();
    }

    #[test]
    fn refuses_a_group_writable_directory_above_without_sticky_bit() {
        let root = tree();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o775)).unwrap();
        let mine = root.path().join("mine");
        DirBuilder::new().mode(0o755).create(&mine).unwrap();
        let err = check(&mine.join("kiln")).unwrap_err();
        assert!(err.contains("is writable by other users (mode 775)"), "{err}");
    }

    #[test]
    fn refuses_a_symlink_where_the_directory_goes() {
        let root = tree();
        let elsewhere = root.path().join("elsewhere");
        DirBuilder::new().mode(0o700).create(&elsewhere).unwrap();
        let dir = root.path().join("kiln");
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        assert!(prepare(&dir).unwrap_err().starts_with("is a symlink"));
    }

    #[test]
    fn a_second_owner_is_refused_with_the_holders_pid_until_the_first_is_gone() {
        let root = tree();
        let dir = root.path().join("kiln");
        prepare(&dir).unwrap();
        let first = own(&dir).unwrap();
        let lock = dir.join(LOCK_FILE);
        assert_eq!(
            fs::read_to_string(&lock).unwrap(),
            format!("{}\n", std::process::id())
        );
        let err = own(&dir).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "is in use by another kiln (pid {}, {} is locked)",
                std::process::id(),
                lock.display()
            )),
            "{err}"
        );
        drop(first);
        own(&dir).unwrap();
    }

    #[test]
    fn refuses_an_existing_directory_writable_by_others() {
        let root = tree();
        let dir = root.path().join("kiln");
        DirBuilder::new().mode(0o700).create(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare(&dir).unwrap_err();
        assert_eq!(
            err,
            "is writable by other users (mode 777): they could swap what kiln writes"
        );
    }
}
