//! Differences between what the manifest recorded and what is on disk now.

use super::entry::{Entry, Kind, Mode, absolute};
use super::escape::shown;
use super::resolve::Link;
use super::xattrs::{self, Xattr};
use std::cmp::Ordering;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// One way the tree differs from the seal, at one absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: PathBuf,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// On disk, not in the manifest.
    Added {
        kind: &'static str,
    },
    /// In the manifest, gone from disk.
    Removed {
        kind: &'static str,
    },
    /// A file became a directory, a symlink a file... (mode and owner are then not compared).
    TypeChanged {
        from: &'static str,
        to: &'static str,
    },
    ContentChanged {
        from_size: u64,
        to_size: u64,
    },
    SymlinkRetargeted {
        from: PathBuf,
        to: PathBuf,
    },
    DeviceChanged {
        from: (u32, u32),
        to: (u32, u32),
    },
    ModeChanged {
        from: u32,
        to: u32,
    },
    /// `(uid, gid)`.
    OwnerChanged {
        from: (u32, u32),
        to: (u32, u32),
    },
    /// An extended attribute (capabilities, an ACL, ...) appeared (`from` None), went away (`to`
    /// None) or changed.
    XattrChanged {
        name: OsString,
        from: Option<Vec<u8>>,
        to: Option<Vec<u8>>,
    },
    /// The watch could not read it back, so it cannot vouch for it (boot refuses with an error).
    Unreadable {
        error: String,
    },
    /// The watch cannot see changes here (an inotify watch or the mount table could not be
    /// watched); only the periodic rescan can.
    Unwatched {
        error: String,
    },
    /// Something was mounted on or over a sealed path after the boot verified it.
    Mounted {
        fstype: String,
        source: String,
    },
    /// A mount that was there when the boot verified the sealed paths (such as kiln's read-only
    /// bind) is gone.
    Unmounted {
        fstype: String,
        source: String,
    },
}

/// Compares two sorted entry lists of the sealed path `root`; differences come out in walk
/// order (first ones first), several per path when several things changed.
pub fn compare(root: &Path, expected: &[Entry], actual: &[Entry]) -> Vec<Difference> {
    let mut out = Vec::new();
    let (mut e, mut a) = (expected.iter().peekable(), actual.iter().peekable());
    loop {
        let order = match (e.peek(), a.peek()) {
            (None, None) => return out,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.path.cmp(&y.path),
        };
        match order {
            Ordering::Less => {
                let was = e.next().unwrap();
                out.push(difference(
                    root,
                    was,
                    Change::Removed {
                        kind: was.kind.name(),
                    },
                ));
            }
            Ordering::Greater => {
                let now = a.next().unwrap();
                out.push(difference(
                    root,
                    now,
                    Change::Added {
                        kind: now.kind.name(),
                    },
                ));
            }
            Ordering::Equal => {
                let (was, now) = (e.next().unwrap(), a.next().unwrap());
                compare_entry(root, was, now, &mut out);
            }
        }
    }
}

fn compare_entry(root: &Path, was: &Entry, now: &Entry, out: &mut Vec<Difference>) {
    if !was.kind.same_type(&now.kind) {
        let change = Change::TypeChanged {
            from: was.kind.name(),
            to: now.kind.name(),
        };
        out.push(difference(root, now, change));
        return;
    }
    let content = match (&was.kind, &now.kind) {
        (Kind::File { size: s1, hash: h1 }, Kind::File { size: s2, hash: h2 }) if (s1, h1) != (s2, h2) => {
            Some(Change::ContentChanged {
                from_size: *s1,
                to_size: *s2,
            })
        }
        (Kind::Symlink { target: t1 }, Kind::Symlink { target: t2 }) if t1 != t2 => {
            Some(Change::SymlinkRetargeted {
                from: t1.clone(),
                to: t2.clone(),
            })
        }
        (
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor },
            Kind::CharDevice { major: m2, minor: n2 } | Kind::BlockDevice { major: m2, minor: n2 },
        ) if (major, minor) != (m2, n2) => Some(Change::DeviceChanged {
            from: (*major, *minor),
            to: (*m2, *n2),
        }),
        _ => None,
    };
    out.extend(content.map(|c| difference(root, now, c)));
    if was.mode != now.mode {
        let change = Change::ModeChanged {
            from: was.mode,
            to: now.mode,
        };
        out.push(difference(root, now, change));
    }
    if (was.uid, was.gid) != (now.uid, now.gid) {
        let change = Change::OwnerChanged {
            from: (was.uid, was.gid),
            to: (now.uid, now.gid),
        };
        out.push(difference(root, now, change));
    }
    for change in compare_xattrs(&was.xattrs, &now.xattrs) {
        out.push(difference(root, now, change));
    }
}

/// Two name-sorted attribute lists, merged.
fn compare_xattrs(was: &[Xattr], now: &[Xattr]) -> Vec<Change> {
    let mut out = Vec::new();
    let (mut w, mut n) = (was.iter().peekable(), now.iter().peekable());
    loop {
        let (from, to) = match (w.peek(), n.peek()) {
            (None, None) => return out,
            (Some(a), Some(b)) if a.name == b.name => (w.next(), n.next()),
            (Some(a), Some(b)) if a.name < b.name => (w.next(), None),
            (Some(_), None) => (w.next(), None),
            _ => (None, n.next()),
        };
        let name = from.or(to).map(|x| x.name.clone()).unwrap_or_default();
        let (from, to) = (from.map(|x| x.value.clone()), to.map(|x| x.value.clone()));
        if from != to {
            out.push(Change::XattrChanged { name, from, to });
        }
    }
}

/// The symlinks recorded on the way to a sealed tree against those crossed now (see
/// `resolve.rs`): a retargeted link, a link that became something else, a new link on the way.
pub fn compare_links(recorded: &[Link], now: &[Link]) -> Vec<Difference> {
    let mut out = Vec::new();
    for was in recorded {
        let change = match now.iter().find(|l| l.path == was.path) {
            Some(l) if l.target != was.target => Change::SymlinkRetargeted {
                from: was.target.clone(),
                to: l.target.clone(),
            },
            Some(_) => continue,
            None => match std::fs::symlink_metadata(&was.path) {
                // No longer on the way, because a link before it changed (reported there).
                Ok(m) if m.file_type().is_symlink() => continue,
                Ok(m) => Change::TypeChanged {
                    from: "symlink",
                    to: Kind::of(&m).name(),
                },
                Err(_) => Change::Removed { kind: "symlink" },
            },
        };
        out.push(Difference {
            path: was.path.clone(),
            change,
        });
    }
    for link in now.iter().filter(|l| !recorded.iter().any(|r| r.path == l.path)) {
        out.push(Difference {
            path: link.path.clone(),
            change: Change::Added { kind: "symlink" },
        });
    }
    out
}

/// Text from the mount table, escaped like paths: anyone who may mount picks it.
fn word(text: &str) -> String {
    super::escape::escape(std::ffi::OsStr::new(text))
}

fn difference(root: &Path, entry: &Entry, change: Change) -> Difference {
    Difference {
        path: absolute(root, &entry.path),
        change,
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = shown(&self.path);
        match &self.change {
            Change::Added { kind } => write!(f, "added {path} ({kind})"),
            Change::Removed { kind } => write!(f, "removed {path} ({kind})"),
            Change::TypeChanged { from, to } => write!(f, "type changed {path} ({from} -> {to})"),
            Change::ContentChanged { from_size, to_size } if from_size != to_size => {
                write!(f, "content changed {path} (size {from_size} -> {to_size})")
            }
            Change::ContentChanged { .. } => write!(f, "content changed {path}"),
            Change::SymlinkRetargeted { from, to } => {
                write!(f, "symlink retargeted {path} ({} -> {})", shown(from), shown(to))
            }
            Change::DeviceChanged { from, to } => write!(
                f,
                "device changed {path} ({}:{} -> {}:{})",
                from.0, from.1, to.0, to.1
            ),
            Change::ModeChanged { from, to } => {
                write!(f, "mode changed {path} ({} -> {})", Mode(*from), Mode(*to))
            }
            Change::OwnerChanged { from, to } => write!(
                f,
                "owner changed {path} ({}:{} -> {}:{})",
                from.0, from.1, to.0, to.1
            ),
            Change::XattrChanged { name, from, to } => {
                let title = xattrs::title(name);
                let describe =
                    |value: &Option<Vec<u8>>| value.as_ref().and_then(|v| xattrs::describe(name, v));
                match (describe(from), describe(to)) {
                    (_, Some(now)) if from.is_none() => write!(f, "{title} added {path} ({now})"),
                    (Some(was), _) if to.is_none() => write!(f, "{title} removed {path} ({was})"),
                    (Some(was), Some(now)) => write!(f, "{title} changed {path} ({was} -> {now})"),
                    _ if from.is_none() => write!(f, "{title} added {path}"),
                    _ if to.is_none() => write!(f, "{title} removed {path}"),
                    _ => write!(f, "{title} changed {path}"),
                }
            }
            Change::Unreadable { error } => write!(f, "unreadable {path} ({error})"),
            Change::Unwatched { error } => write!(f, "not watched {path} ({error})"),
            Change::Mounted { fstype, source } => {
                write!(f, "mounted over {path} ({} {})", word(fstype), word(source))
            }
            Change::Unmounted { fstype, source } => {
                write!(f, "unmounted {path} ({} {})", word(fstype), word(source))
            }
        }
    }
}
