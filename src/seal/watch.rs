//! After boot: inotify on every sealed directory (and on the parent of each sealed path, for the
//! path itself), plus a full re-verification every `rescan` that catches what inotify cannot
//! (a lost event queue, a full watch table, writes through another mount of the same files).
//!
//! An event marks a path dirty; after a short debounce, only the dirty paths are walked again and
//! compared with the manifest, so a change is seen well within a second even on a large tree.

use super::diff::{Change, Difference, compare};
use super::entry::absolute;
use super::escape::shown;
use super::manifest::Manifest;
use super::scope::Scope;
use super::{SealError, Verified, walk};
use crate::config::SealConfig;
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

/// Events are gathered this long after the first one, then checked together.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// What can change an entry or the set of entries of a watched directory.
const CHANGES: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MODIFY)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_ONLYDIR)
    .union(AddWatchFlags::IN_DONT_FOLLOW);

const SEALED_DIR: AddWatchFlags = CHANGES
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

/// Events after which a whole subtree is walked again, not just the entry.
const SUBTREE: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

/// The current drift, sent when it changes (watch) and after every full rescan.
#[derive(Debug, Clone)]
pub struct DriftReport {
    /// Every difference from the manifest now, sorted; empty: the tree matches the seal.
    pub differences: Vec<Difference>,
    pub found_by: FoundBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    /// inotify saw a change; sent only when the set of differences changed.
    Watch,
    /// The periodic full re-verification (the first one right after [`watch`] starts, to
    /// cover the time since the boot verification); sent every time, so status can show when
    /// the tree was last verified.
    Rescan,
}

/// A running watch over the sealed paths. Dropping it stops the watch.
pub struct DriftWatch {
    reports: mpsc::Receiver<DriftReport>,
    task: tokio::task::JoinHandle<()>,
}

impl DriftWatch {
    /// The next report; None only if the watch stopped.
    pub async fn next(&mut self) -> Option<DriftReport> {
        self.reports.recv().await
    }
}

impl Drop for DriftWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the paths `verified` covers (call inside a tokio runtime, after
/// [`super::verify_at_boot`]). None when nothing was verified, so nothing is watched.
pub fn watch(config: &SealConfig, verified: &Verified) -> Result<Option<DriftWatch>, SealError> {
    let Some(manifest) = verified.manifest.clone() else {
        return Ok(None);
    };
    let scope = Arc::new(Scope::new(config)?);
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(|e| SealError::Watch(format!("inotify_init: {e}")))?;
    // SAFETY: the Inotify owns its descriptor and keeps it open, unchanged, for as long as the
    // AsyncFd that owns the Inotify lives.
    let inotify = unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) }
        .map_err(|e| SealError::Watch(format!("registering inotify with tokio: {}", e.into_parts().1)))?;
    let mut watcher = Watcher {
        scope,
        manifest,
        inotify,
        dirs: HashMap::new(),
        current: BTreeMap::new(),
        reported: Vec::new(),
    };
    for root in watcher.scope.roots.clone() {
        watcher.watch_root(&root)?;
    }
    let (tx, reports) = mpsc::channel(16);
    let task = tokio::spawn(watcher.run(tx, config.rescan.get()));
    Ok(Some(DriftWatch { reports, task }))
}

struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// What one watch descriptor stands for.
enum Watched {
    /// A directory inside a sealed path.
    Sealed(PathBuf),
    /// The directory holding sealed paths: only events about those names count.
    Parent { dir: PathBuf, names: Vec<OsString> },
}

/// Paths to walk again: `true` for the whole subtree, `false` for the entry alone.
type Dirty = BTreeMap<PathBuf, bool>;

struct Watcher {
    scope: Arc<Scope>,
    manifest: Arc<Manifest>,
    inotify: AsyncFd<InotifyFd>,
    dirs: HashMap<WatchDescriptor, Watched>,
    /// Differences now, by (sealed path index, path relative to it).
    current: BTreeMap<(usize, PathBuf), Vec<Difference>>,
    reported: Vec<Difference>,
}

impl Watcher {
    async fn run(mut self, tx: mpsc::Sender<DriftReport>, period: Duration) {
        let mut rescan = tokio::time::interval(period);
        rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut dirty = Dirty::new();
        let mut due: Option<Instant> = None;
        let mut inotify_ok = true;
        loop {
            let report = tokio::select! {
                ready = self.inotify.readable(), if inotify_ok => {
                    let events = match ready {
                        Ok(mut guard) => match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(Into::into)) {
                            Ok(result) => result,
                            Err(_would_block) => continue,
                        },
                        Err(e) => Err(e),
                    };
                    match events {
                        Ok(events) => {
                            if self.note(events, &mut dirty) {
                                rescan.reset_immediately();
                            }
                            if !dirty.is_empty() && due.is_none() {
                                due = Some(Instant::now() + DEBOUNCE);
                            }
                        }
                        Err(e) => {
                            tracing::warn!("seal watch: reading inotify failed ({e}); relying on the rescan");
                            inotify_ok = false;
                        }
                    }
                    None
                }
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    due = None;
                    let paths = std::mem::take(&mut dirty);
                    self.recheck(paths).await;
                    (self.flatten() != self.reported).then_some(FoundBy::Watch)
                }
                _ = rescan.tick() => {
                    self.rescan().await;
                    Some(FoundBy::Rescan)
                }
                _ = tx.closed() => return,
            };
            if let Some(found_by) = report {
                let differences = self.flatten();
                self.reported = differences.clone();
                if tx
                    .send(DriftReport {
                        differences,
                        found_by,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }

    fn flatten(&self) -> Vec<Difference> {
        self.current.values().flatten().cloned().collect()
    }

    /// Turns events into dirty paths, watching new directories at once. True: the event queue
    /// overflowed, so only a full rescan can tell.
    fn note(&mut self, events: Vec<InotifyEvent>, dirty: &mut Dirty) -> bool {
        let mut overflow = false;
        for event in events {
            if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                overflow = true;
                continue;
            }
            if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                self.dirs.remove(&event.wd);
                continue;
            }
            let path = match (self.dirs.get(&event.wd), event.name) {
                (Some(Watched::Sealed(dir)), Some(name)) => dir.join(name),
                (Some(Watched::Sealed(dir)), None) => dir.clone(),
                (Some(Watched::Parent { dir, names }), Some(name)) if names.contains(&name) => dir.join(name),
                _ => continue,
            };
            if self.scope.skips(&path) {
                continue;
            }
            let below = event.mask.intersects(SUBTREE);
            if event.mask.contains(AddWatchFlags::IN_ISDIR) {
                if event
                    .mask
                    .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                {
                    if let Err(e) = self.watch_tree(&path) {
                        tracing::warn!("seal watch: {e}; relying on the rescan below {}", shown(&path));
                    }
                } else if event.mask.contains(AddWatchFlags::IN_MOVED_FROM) {
                    self.unwatch_below(&path);
                }
            }
            let entry = dirty.entry(path).or_insert(false);
            *entry |= below;
        }
        overflow
    }

    fn watch_root(&mut self, root: &Path) -> Result<(), SealError> {
        if let (Some(parent), Some(name)) = (root.parent(), root.file_name()) {
            let wd = self.add_watch(parent, CHANGES)?;
            match self.dirs.get_mut(&wd) {
                Some(Watched::Parent { names, .. }) => names.push(name.to_owned()),
                _ => {
                    let watched = Watched::Parent {
                        dir: parent.to_path_buf(),
                        names: vec![name.to_owned()],
                    };
                    self.dirs.insert(wd, watched);
                }
            }
        }
        self.watch_tree(root)
    }

    /// Watches `dir` and every directory below it (no-op for anything but a directory).
    fn watch_tree(&mut self, dir: &Path) -> Result<(), SealError> {
        if self.scope.skips(dir) {
            return Ok(());
        }
        match self.add_watch(dir, SEALED_DIR) {
            Ok(wd) => {
                self.dirs.insert(wd, Watched::Sealed(dir.to_path_buf()));
            }
            Err(SealError::Watch(_)) if !dir.is_dir() => return Ok(()),
            Err(e) => return Err(e),
        }
        let Ok(children) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                self.watch_tree(&child.path())?;
            }
        }
        Ok(())
    }

    fn add_watch(&self, dir: &Path, mask: AddWatchFlags) -> Result<WatchDescriptor, SealError> {
        self.inotify.get_ref().0.add_watch(dir, mask).map_err(|e| {
            SealError::Watch(match e {
                Errno::ENOSPC => format!(
                    "the inotify watch limit is reached at {} (fs.inotify.max_user_watches = {}): \
                     raise it with sysctl",
                    shown(dir),
                    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                        .unwrap_or_default()
                        .trim()
                ),
                e => format!("inotify_add_watch {}: {e}", shown(dir)),
            })
        })
    }

    /// A directory moved away: its watches would report under a stale name.
    fn unwatch_below(&mut self, dir: &Path) {
        let gone: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(_, w)| matches!(w, Watched::Sealed(p) if p.starts_with(dir)))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            let _ = self.inotify.get_ref().0.rm_watch(wd);
            self.dirs.remove(&wd);
        }
    }

    /// Walks the dirty paths again and replaces their part of the current differences.
    async fn recheck(&mut self, dirty: Dirty) {
        let mut regions: Vec<(usize, PathBuf, bool)> = Vec::new();
        for (path, below) in &dirty {
            let covered = path.ancestors().skip(1).any(|a| dirty.get(a) == Some(&true));
            if let (false, Some((root, rel))) = (covered, self.scope.locate(path)) {
                regions.push((root, rel, *below));
            }
        }
        let (scope, manifest) = (self.scope.clone(), self.manifest.clone());
        let checked = tokio::task::spawn_blocking(move || {
            regions
                .into_iter()
                .map(|(root, rel, below)| {
                    let differences = check_region(&scope, &manifest, root, &rel, below);
                    (root, rel, below, differences)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(checked) = checked else { return };
        for (root, rel, below, differences) in checked {
            let stale: Vec<(usize, PathBuf)> = self
                .current
                .range((root, rel.clone())..)
                .map(|(key, _)| key)
                .take_while(|(r, p)| *r == root && (*p == rel || (below && p.starts_with(&rel))))
                .cloned()
                .collect();
            for key in stale {
                self.current.remove(&key);
            }
            self.insert(root, differences);
        }
    }

    async fn rescan(&mut self) {
        let (scope, manifest) = (self.scope.clone(), self.manifest.clone());
        let checked = tokio::task::spawn_blocking(move || {
            (0..manifest.roots.len())
                .map(|root| (root, check_region(&scope, &manifest, root, Path::new(""), true)))
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(checked) = checked else { return };
        self.current.clear();
        for (root, differences) in checked {
            self.insert(root, differences);
        }
        // Directories that appeared while the event queue overflowed get their watches now.
        for root in self.scope.roots.clone() {
            if let Err(e) = self.watch_tree(&root) {
                tracing::warn!("seal watch: {e}");
            }
        }
    }

    fn insert(&mut self, root: usize, differences: Vec<Difference>) {
        let base = &self.manifest.roots[root].path;
        for d in differences {
            let rel = d.path.strip_prefix(base).unwrap_or(Path::new("")).to_path_buf();
            self.current.entry((root, rel)).or_default().push(d);
        }
    }
}

/// The differences at `rel` (and below it) in one sealed path; a walk error becomes an
/// `Unreadable` difference, since what cannot be read cannot be vouched for.
fn check_region(scope: &Scope, manifest: &Manifest, root: usize, rel: &Path, below: bool) -> Vec<Difference> {
    let sealed = &manifest.roots[root];
    let abs = absolute(&sealed.path, rel);
    match walk::walk(scope, &abs, rel, below) {
        Ok(actual) => compare(&sealed.path, sealed.expected(rel, below), &actual),
        Err(SealError::Walk { path, source }) => vec![Difference {
            path,
            change: Change::Unreadable {
                error: source.to_string(),
            },
        }],
        Err(e) => vec![Difference {
            path: abs,
            change: Change::Unreadable { error: e.to_string() },
        }],
    }
}
