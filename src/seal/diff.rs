//! Differences between what the manifest recorded and what is on disk now.

use super::entry::{Entry, Kind, Mode, absolute};
use super::escape::shown;
use std::cmp::Ordering;
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
    /// The watch could not read it back, so it cannot vouch for it (boot refuses with an error).
    Unreadable {
        error: String,
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
            Change::Unreadable { error } => write!(f, "unreadable {path} ({error})"),
        }
    }
}
