//! The sealed files left without an inotify watch of their own, because the watch budget is
//! spent (see `watch.rs`). A write through a hard link from outside the sealed tree shows on no
//! directory watch, so for these files the inode is looked at instead: one `lstat` each every
//! [`POLL`], cheap next to reading them. A change of inode, size, modification or status-change
//! time (which any write, chmod, chown, xattr or new link moves) makes the file dirty.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the polled files are looked at: a round takes about 65 ms of CPU for 20,000 files
/// (`benches/seal_watch.rs`), so 1.3 % of a core, for a write seen within seconds instead of at
/// the rescan.
pub const POLL: Duration = Duration::from_secs(5);

/// What a file's inode looked like; None: nothing there (or not readable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// Polled files by (sealed path index, path relative to its tree): where each is now, and its
/// stamp when last looked at.
#[derive(Debug, Default)]
pub struct Polled(BTreeMap<(usize, PathBuf), (PathBuf, Option<Stamp>)>);

impl Polled {
    /// Polls the file at `abs` from now on (stamped now: a change after this is seen).
    pub fn insert(&mut self, key: (usize, PathBuf), abs: &Path) {
        let now = stamp(abs);
        self.0.insert(key, (abs.to_path_buf(), now));
    }

    pub fn remove(&mut self, key: &(usize, PathBuf)) {
        self.0.remove(key);
    }

    /// Stops polling the files at and below `under` in the tree of `root`.
    pub fn remove_under(&mut self, root: usize, under: &Path) {
        let gone: Vec<(usize, PathBuf)> = self
            .0
            .range((root, under.to_path_buf())..)
            .map(|(key, _)| key)
            .take_while(|(r, p)| *r == root && p.starts_with(under))
            .cloned()
            .collect();
        for key in gone {
            self.0.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Looks at every file (blocking: one `lstat` each); returns those whose stamp changed, and
    /// remembers the new stamps.
    pub fn changed(&mut self) -> Vec<(usize, PathBuf)> {
        let mut out = Vec::new();
        for (key, (abs, was)) in self.0.iter_mut() {
            let now = stamp(abs);
            if now != *was {
                *was = now;
                out.push(key.clone());
            }
        }
        out
    }
}
