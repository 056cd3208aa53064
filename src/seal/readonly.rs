//! Bind-remounting the sealed paths read-only, so a write fails with EROFS for the services and
//! for anyone logged in, not only gets noticed by the watch.
//!
//! For each sealed path: bind it on itself (recursively, so mounts below it stay visible), make
//! that new mount private (so the excluded paths bound below it next do not propagate to other
//! namespaces), then remount it read-only, keeping nosuid/nodev/noexec/atime flags as they were.
//! The `exclude`d directories and files found below are bound on themselves again and remounted
//! read-write, so a cache folder stays writable. Only the mount namespace kiln runs in changes.
//! A path that is already read-only (a read-only filesystem, or a kiln that restarted) is left as
//! it is.

use super::entry::absolute;
use super::escape::shown;
use super::scope::{Located, Scope};
use crate::config::SealConfig;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};
use std::fmt;
use std::path::{Path, PathBuf};

/// What [`remount_readonly`] did; its `Display` is the line for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadonlyOutcome {
    /// No `[seal]` section.
    NotSealed,
    /// `[seal] readonly = false`.
    Disabled,
    /// Every sealed path is read-only; the `writable` ones are excluded paths kept writable.
    ReadOnly {
        paths: Vec<PathBuf>,
        writable: Vec<PathBuf>,
    },
    /// kiln may not mount here (not root, no CAP_SYS_ADMIN): nothing changed.
    NoPrivilege { error: String },
    /// Stopped at `path`; the paths in `done` are read-only, the rest are not.
    Failed {
        done: Vec<PathBuf>,
        path: PathBuf,
        error: String,
    },
}

impl ReadonlyOutcome {
    pub fn is_read_only(&self) -> bool {
        matches!(self, ReadonlyOutcome::ReadOnly { .. })
    }
}

impl fmt::Display for ReadonlyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |paths: &[PathBuf]| paths.iter().map(|p| shown(p)).collect::<Vec<_>>().join(", ");
        match self {
            ReadonlyOutcome::NotSealed => write!(f, "not remounted: nothing is sealed"),
            ReadonlyOutcome::Disabled => write!(f, "not remounted: [seal] readonly = false"),
            ReadonlyOutcome::ReadOnly { paths, writable } if writable.is_empty() => {
                write!(f, "read-only: {}", list(paths))
            }
            ReadonlyOutcome::ReadOnly { paths, writable } => {
                write!(f, "read-only: {} (writable: {})", list(paths), list(writable))
            }
            ReadonlyOutcome::NoPrivilege { error } => write!(f, "not remounted: no privilege ({error})"),
            ReadonlyOutcome::Failed { done, path, error } if done.is_empty() => {
                write!(f, "not remounted: {}: {error}", shown(path))
            }
            ReadonlyOutcome::Failed { done, path, error } => write!(
                f,
                "partly remounted: {}: {error} (read-only: {})",
                shown(path),
                list(done)
            ),
        }
    }
}

/// Makes every sealed path read-only in kiln's mount namespace, when kiln may; never fails the
/// boot: the outcome says what happened.
pub fn remount_readonly(config: &SealConfig) -> ReadonlyOutcome {
    if !config.is_enabled() {
        return ReadonlyOutcome::NotSealed;
    }
    if !config.readonly {
        return ReadonlyOutcome::Disabled;
    }
    let scope = match Scope::new(config) {
        Ok(scope) => scope,
        Err(e) => {
            return ReadonlyOutcome::Failed {
                done: Vec::new(),
                path: config.manifest.clone(),
                error: e.to_string(),
            };
        }
    };
    let (mut done, mut writable) = (Vec::new(), Vec::new());
    for root in &scope.roots {
        let failed = |done: Vec<PathBuf>, path: &Path, error: String| ReadonlyOutcome::Failed {
            done,
            path: path.to_path_buf(),
            error,
        };
        match statvfs(root.as_path()) {
            Ok(st) if st.flags().contains(FsFlags::ST_RDONLY) => done.push(root.clone()),
            Ok(_) => match bind(root, true) {
                Ok(()) => done.push(root.clone()),
                Err(Errno::EPERM) if done.is_empty() => {
                    return ReadonlyOutcome::NoPrivilege {
                        error: "EPERM".into(),
                    };
                }
                Err(e) => return failed(done, root, e.desc().to_string()),
            },
            Err(e) => return failed(done, root, e.desc().to_string()),
        }
        if config.exclude.is_empty() {
            continue;
        }
        let at = match Located::new(root) {
            Ok(at) => at,
            Err(e) => return failed(done, root, e.to_string()),
        };
        for path in excluded_below(&scope, &at, Path::new("")) {
            // Already writable when a kiln before this one (restarted) bound it.
            let read_only =
                statvfs(path.as_path()).map_or(true, |st| st.flags().contains(FsFlags::ST_RDONLY));
            if read_only && let Err(e) = bind(&path, false) {
                return failed(done, &path, format!("keeping it writable: {}", e.desc()));
            }
            writable.push(path);
        }
    }
    ReadonlyOutcome::ReadOnly {
        paths: done,
        writable,
    }
}

/// `ST_RELATIME` from linux/statfs.h. nix leaves it out on musl, whose statvfs reports it all the same.
const ST_RELATIME: FsFlags = FsFlags::from_bits_retain(0x1000);

/// Binds `path` on itself, privately, then sets it read-only or read-write.
fn bind(path: &Path, read_only: bool) -> nix::Result<()> {
    let kept = statvfs(path)?.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if kept.contains(st) {
            flags |= ms;
        }
    }
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    let none: Option<&str> = None;
    mount(Some(path), path, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)?;
    let result = mount(none, path, none, MsFlags::MS_PRIVATE | MsFlags::MS_REC, none)
        .and_then(|()| mount(none, path, none, flags, none));
    if result.is_err() {
        let _ = umount2(path, MntFlags::MNT_DETACH);
    }
    result
}

/// The outermost excluded directories and files below `rel` (which the walk skips), where they
/// really are.
fn excluded_below(scope: &Scope, at: &Located, rel: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(children) = std::fs::read_dir(absolute(at.real(), rel)) else {
        return found;
    };
    let mut children: Vec<_> = children.flatten().collect();
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let Ok(kind) = child.file_type() else { continue };
        let rel = rel.join(child.file_name());
        if scope.excluded(at, &rel) {
            if kind.is_dir() || kind.is_file() {
                found.push(child.path());
            }
        } else if kind.is_dir() {
            found.extend(excluded_below(scope, at, &rel));
        }
    }
    found
}
