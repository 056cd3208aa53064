//! After boot, three ways of noticing drift, none depending on another:
//!
//! - inotify on every directory of each sealed tree, on every regular file in it, and on the
//!   directories holding the names that decide where a sealed path leads (the tree's own name,
//!   and each symlink crossed on the way to it: swapping `current -> releases/42` is seen at
//!   once, see `resolve.rs`). A directory's watch sees writes made through its own names only; a
//!   file's watch is on its inode, so it also sees a write through a hard link from outside the
//!   tree (made before boot or after). File watches take at most half of
//!   `fs.inotify.max_user_watches` (directories first, the rest is left to other programs); the
//!   files past that budget are looked at with `lstat` every [`POLL`] instead (`polled.rs`);
//! - the mount table (`mounts.rs`): a mount on, under or over a sealed tree, or a mount that was
//!   there at boot (kiln's read-only bind) going away;
//! - a full re-verification every `rescan`, which always runs and catches what the other two
//!   cannot (a lost event queue, a write through `mmap`, which inotify never reports).
//!
//! What cannot be watched (an inotify watch refused, the mount table unreadable) is itself a
//! difference, `not watched`, so the drift policy applies to it: a blind spot is never just a log
//! line. An event marks a path dirty; after a short debounce only the dirty paths are walked
//! again and compared with the manifest, so a change is seen well within a second on a large tree.

use super::diff::{Change, Difference, compare, compare_links};
use super::entry::absolute;
use super::escape::shown;
use super::manifest::Manifest;
use super::mounts::{Mount, MountTable, touches};
use super::polled::{POLL, Polled};
use super::scope::{Located, Scope};
use super::{SealError, Verified, walk};
use crate::config::SealConfig;
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// What can change a watched directory, its entries, or the directory itself.
const WATCHED: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MODIFY)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR)
    .union(AddWatchFlags::IN_DONT_FOLLOW);

/// What can change a sealed file's inode, through any of its names.
const FILE_WATCHED: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_DONT_FOLLOW);

/// Without a readable `fs.inotify.max_user_watches`, the kernel's smallest default.
const DEFAULT_MAX_WATCHES: usize = 8192;

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
    /// inotify or the mount table saw a change; sent only when the set of differences changed.
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
    unwatched: Vec<Difference>,
}

impl DriftWatch {
    /// The next report; None only if the watch stopped.
    pub async fn next(&mut self) -> Option<DriftReport> {
        self.reports.recv().await
    }

    /// What could not be watched when the watch started (`not watched` differences); the boot
    /// refuses on them unless `on_drift = "report"`. Later ones arrive in reports.
    pub fn unwatched(&self) -> &[Difference] {
        &self.unwatched
    }
}

impl Drop for DriftWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the paths `verified` covers (call inside a tokio runtime, after
/// [`super::verify_at_boot`]). None when nothing was verified, so nothing is watched. The rescan
/// runs whatever else fails; see [`DriftWatch::unwatched`].
pub fn watch(config: &SealConfig, verified: &Verified) -> Result<Option<DriftWatch>, SealError> {
    let max = max_user_watches();
    watch_within(config, verified, max.unwrap_or(DEFAULT_MAX_WATCHES) / 2)
}

/// [`watch`], with at most `budget` inotify watches before sealed files fall back to polling
/// (directories are always watched); tests use it to reach the fallback.
pub fn watch_within(
    config: &SealConfig,
    verified: &Verified,
    budget: usize,
) -> Result<Option<DriftWatch>, SealError> {
    let Some(manifest) = verified.manifest.clone() else {
        return Ok(None);
    };
    let scope = Arc::new(Scope::new(config)?);
    let mut watcher = Watcher::new(scope, manifest, budget);
    for root in 0..watcher.located.len() {
        watcher.watch_root(root);
    }
    watcher.say_what_is_watched();
    let unwatched = watcher.flatten();
    let (tx, reports) = mpsc::channel(16);
    let task = tokio::spawn(watcher.run(tx, config.rescan.get()));
    Ok(Some(DriftWatch {
        reports,
        task,
        unwatched,
    }))
}

struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// What one watched directory stands for: a directory of a sealed tree, a directory holding
/// names on the way to sealed trees, or both.
struct Watched {
    /// (sealed path index, path relative to its tree).
    tree: Option<(usize, PathBuf)>,
    ways: Vec<Way>,
}

/// A name in a watched directory that decides where sealed path `root` leads.
struct Way {
    name: OsString,
    root: usize,
    /// The tree's own name (else a symlink on the way to it).
    is_tree: bool,
}

/// Paths to walk again: `true` for the whole subtree, `false` for the entry alone.
type Dirty = BTreeMap<(usize, PathBuf), bool>;

struct Watcher {
    scope: Arc<Scope>,
    manifest: Arc<Manifest>,
    /// Where each sealed path leads now.
    located: Vec<Located>,
    inotify: Option<AsyncFd<InotifyFd>>,
    mount_table: Option<AsyncFd<MountTable>>,
    /// Why inotify or the mount table cannot be used at all.
    blind_everywhere: Vec<String>,
    /// Every mount when the watch started, by id.
    baseline: BTreeMap<u64, Mount>,
    dirs: HashMap<WatchDescriptor, Watched>,
    /// Watched sealed files: their inode's names in the trees, as (sealed path index, path
    /// relative to its tree).
    files: HashMap<WatchDescriptor, Vec<(usize, PathBuf)>>,
    /// The same, by name: what is below a path that went away is found in one range.
    file_names: BTreeMap<(usize, PathBuf), WatchDescriptor>,
    /// Sealed files past the watch budget.
    polled: Polled,
    /// How many inotify watches (directories and files) files may be added up to.
    budget: usize,
    /// Whether the start's line was logged, and whether some files were said to be polled.
    said: bool,
    said_polled: bool,
    /// Differences in the trees now, by (sealed path index, path relative to its tree).
    tree: BTreeMap<(usize, PathBuf), Vec<Difference>>,
    /// Differences in the links on the way to each tree, by sealed path index.
    links: Vec<Vec<Difference>>,
    /// Mounts that appeared or went away.
    mounted: Vec<Difference>,
    /// Directories that could not be watched, by (sealed path index, absolute path).
    blind: BTreeMap<(usize, PathBuf), Difference>,
    reported: Vec<Difference>,
}

impl Watcher {
    fn new(scope: Arc<Scope>, manifest: Arc<Manifest>, budget: usize) -> Watcher {
        let mut blind_everywhere = Vec::new();
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| format!("inotify_init: {e}"))
            .and_then(|inotify| {
                // SAFETY: the Inotify owns its descriptor and keeps it open, unchanged, for as
                // long as the AsyncFd that owns the Inotify lives.
                unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) }
                    .map_err(|e| format!("registering inotify: {}", e.into_parts().1))
            })
            .map_err(|e| blind_everywhere.push(e))
            .ok();
        let mount_table = MountTable::open()
            .and_then(|table| {
                // SAFETY: the MountTable owns its File and keeps it open, unchanged, for as long
                // as the AsyncFd that owns the MountTable lives.
                unsafe { AsyncFd::register_with_interest(table, Interest::PRIORITY) }
                    .map_err(|e| e.into_parts().1)
            })
            .map_err(|e| blind_everywhere.push(format!("mount table {}: {e}", super::mounts::MOUNTINFO)))
            .ok();
        let baseline = mount_table
            .as_ref()
            .and_then(|t| t.get_ref().read().ok())
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        let located = manifest
            .roots
            .iter()
            .map(|root| Located::new(&root.path).unwrap_or_else(|_| unresolved(&root.path)))
            .collect();
        Watcher {
            links: vec![Vec::new(); manifest.roots.len()],
            scope,
            manifest,
            located,
            inotify,
            mount_table,
            blind_everywhere,
            baseline,
            dirs: HashMap::new(),
            files: HashMap::new(),
            file_names: BTreeMap::new(),
            polled: Polled::default(),
            budget,
            said: false,
            said_polled: false,
            tree: BTreeMap::new(),
            mounted: Vec::new(),
            blind: BTreeMap::new(),
            reported: Vec::new(),
        }
    }

    async fn run(mut self, tx: mpsc::Sender<DriftReport>, period: Duration) {
        let mut rescan = tokio::time::interval(period);
        rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut dirty = Dirty::new();
        let mut relocate = BTreeSet::new();
        let mut due: Option<Instant> = None;
        loop {
            let report = tokio::select! {
                events = inotify_events(self.inotify.as_ref()) => {
                    match events {
                        Ok(events) => {
                            if self.note(events, &mut dirty, &mut relocate) {
                                rescan.reset_immediately();
                            }
                        }
                        Err(e) => {
                            self.lose_inotify(e);
                            due.get_or_insert_with(Instant::now);
                        }
                    }
                    None
                }
                changed = mount_table_changed(self.mount_table.as_ref()) => {
                    match changed {
                        Ok(()) => self.check_mounts(&mut dirty, &mut relocate),
                        Err(e) => {
                            self.mount_table = None;
                            self.blind_everywhere.push(format!("polling the mount table: {e}"));
                        }
                    }
                    due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                    None
                }
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    due = None;
                    self.recheck(std::mem::take(&mut dirty), std::mem::take(&mut relocate)).await;
                    (self.flatten() != self.reported).then_some(FoundBy::Watch)
                }
                _ = rescan.tick() => {
                    self.rescan().await;
                    Some(FoundBy::Rescan)
                }
                _ = poll.tick(), if !self.polled.is_empty() => {
                    for key in self.poll().await {
                        dirty.entry(key).or_insert(false);
                    }
                    None
                }
                _ = tx.closed() => return,
            };
            if (!dirty.is_empty() || !relocate.is_empty()) && due.is_none() {
                due = Some(Instant::now() + DEBOUNCE);
            }
            if let Some(found_by) = report
                && !self.send(&tx, found_by).await
            {
                return;
            }
        }
    }

    /// Sends the differences now; false when nobody listens any more.
    async fn send(&mut self, tx: &mpsc::Sender<DriftReport>, found_by: FoundBy) -> bool {
        let differences = self.flatten();
        self.reported = differences.clone();
        let report = DriftReport {
            differences,
            found_by,
        };
        tx.send(report).await.is_ok()
    }

    /// inotify cannot be read any more: every watch is gone, and that is a blind spot.
    fn lose_inotify(&mut self, e: std::io::Error) {
        tracing::error!(
            "seal watch: reading inotify failed ({e}); only the rescan and the mount table watch remain"
        );
        self.inotify = None;
        self.dirs.clear();
        self.files.clear();
        self.file_names.clear();
        self.blind_everywhere.push(format!("reading inotify: {e}"));
    }

    /// Every difference now: per sealed path its links, its tree, what in it is not watched;
    /// then the mounts; then what cannot be watched at all.
    fn flatten(&self) -> Vec<Difference> {
        let mut out = Vec::new();
        for root in 0..self.located.len() {
            out.extend(self.links[root].iter().cloned());
            let tree = self
                .tree
                .range((root, PathBuf::new())..)
                .take_while(|((r, _), _)| *r == root);
            out.extend(tree.flat_map(|(_, d)| d.iter().cloned()));
            let blind = self
                .blind
                .range((root, PathBuf::new())..)
                .take_while(|((r, _), _)| *r == root);
            out.extend(blind.map(|(_, d)| d.clone()));
        }
        out.extend(self.mounted.iter().cloned());
        for reason in &self.blind_everywhere {
            out.extend(self.manifest.roots.iter().map(|root| Difference {
                path: root.path.clone(),
                change: Change::Unwatched {
                    error: reason.clone(),
                },
            }));
        }
        out
    }

    /// Turns events into dirty paths and sealed paths to resolve again, watching new directories
    /// at once. True: the event queue overflowed, so only a full rescan can tell.
    fn note(&mut self, events: Vec<InotifyEvent>, dirty: &mut Dirty, relocate: &mut BTreeSet<usize>) -> bool {
        let mut overflow = false;
        for event in events {
            if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                overflow = true;
                continue;
            }
            if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                self.dirs.remove(&event.wd);
                for name in self.files.remove(&event.wd).unwrap_or_default() {
                    if self.file_names.get(&name) == Some(&event.wd) {
                        self.file_names.remove(&name);
                    }
                }
                continue;
            }
            if let Some(names) = self.files.get(&event.wd) {
                for key in names {
                    dirty.entry(key.clone()).or_insert(false);
                }
                continue;
            }
            let Some(watched) = self.dirs.get(&event.wd) else {
                continue;
            };
            let below = event.mask.intersects(SUBTREE);
            if let Some(name) = &event.name {
                for way in watched.ways.iter().filter(|w| w.name == *name) {
                    if below {
                        relocate.insert(way.root);
                    } else if way.is_tree {
                        dirty.entry((way.root, PathBuf::new())).or_insert(false);
                    }
                }
            }
            let Some((root, dir)) = watched.tree.clone() else {
                continue;
            };
            let rel = match &event.name {
                Some(name) => dir.join(name),
                None => dir,
            };
            if self.scope.skips(&self.located[root], &rel) {
                continue;
            }
            if event.name.is_some() {
                self.follow(root, &rel, event.mask);
            }
            *dirty.entry((root, rel)).or_insert(false) |= below;
        }
        overflow
    }

    /// Keeps the watches in step with a name that came or went in a tree: a new directory or file
    /// is watched (a new inode at a sealed name needs a watch of its own); what went away is no
    /// longer watched under that name (it is again wherever it lands in a tree).
    fn follow(&mut self, root: usize, rel: &Path, mask: AddWatchFlags) {
        if mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO) {
            self.watch_tree(root, rel);
        } else if mask.intersects(AddWatchFlags::IN_MOVED_FROM | AddWatchFlags::IN_DELETE) {
            if mask.contains(AddWatchFlags::IN_ISDIR) {
                self.unwatch(|w| matches!(&w.tree, Some((r, p)) if *r == root && p.starts_with(rel)));
            }
            self.forget_files(root, rel);
        }
    }

    /// Compares the mount table with the one at the start: a new mount touching a sealed tree
    /// (or the way to it) and a mount gone from there are differences, and what they touch is
    /// walked again.
    fn check_mounts(&mut self, dirty: &mut Dirty, relocate: &mut BTreeSet<usize>) {
        let Some(table) = &self.mount_table else { return };
        let now = match table.get_ref().read() {
            Ok(now) => now,
            Err(e) => {
                self.blind_everywhere
                    .push(format!("reading the mount table: {e}"));
                self.mount_table = None;
                return;
            }
        };
        // Mount ids are reused once freed (by any namespace on the machine): a new mount may
        // carry the id of one that was in the baseline, so a mount is the same only with the
        // same id, point and source.
        let same = |a: &Mount, b: &Mount| a.id == b.id && a.point == b.point && a.source == b.source;
        let appeared = now
            .iter()
            .filter(|m| !self.baseline.get(&m.id).is_some_and(|b| same(b, m)));
        let gone = self.baseline.values().filter(|m| !now.iter().any(|n| same(n, m)));
        let mut changed: Vec<(Mount, bool)> = appeared.map(|m| (m.clone(), true)).collect();
        changed.extend(gone.map(|m| (m.clone(), false)));
        let mut mounted = Vec::new();
        for (mount, appeared) in changed {
            let touched: Vec<usize> = (0..self.located.len())
                .filter(|&root| {
                    let at = &self.located[root];
                    touches(&mount.point, at.real())
                        || at.resolved.links.iter().any(|l| l.path.starts_with(&mount.point))
                })
                .collect();
            for &root in &touched {
                match mount.point.strip_prefix(self.located[root].real()) {
                    Ok(rel) => {
                        let rel = rel.to_path_buf();
                        self.watch_tree(root, &rel);
                        dirty.insert((root, rel), true);
                    }
                    Err(_) => {
                        relocate.insert(root);
                    }
                }
            }
            if touched.is_empty() {
                continue;
            }
            let (fstype, source) = (mount.fstype.clone(), mount.source.clone());
            let change = match appeared {
                true => Change::Mounted { fstype, source },
                false => Change::Unmounted { fstype, source },
            };
            mounted.push(Difference {
                path: mount.point,
                change,
            });
        }
        mounted.sort_by(|a, b| a.path.cmp(&b.path));
        self.mounted = mounted;
    }

    /// Watches the names that decide where sealed path `root` leads, and its whole tree.
    fn watch_root(&mut self, root: usize) {
        let at = self.located[root].clone();
        let mut ways: Vec<(PathBuf, OsString, bool)> = at
            .resolved
            .links
            .iter()
            .filter_map(|l| {
                Some((
                    l.path.parent()?.to_path_buf(),
                    l.path.file_name()?.to_owned(),
                    false,
                ))
            })
            .collect();
        if let (Some(parent), Some(name)) = (at.real().parent(), at.real().file_name()) {
            ways.push((parent.to_path_buf(), name.to_owned(), true));
        }
        for (dir, name, is_tree) in ways {
            match self.add_watch(&dir) {
                Ok(wd) => {
                    self.dirs
                        .entry(wd)
                        .or_insert_with(Watched::none)
                        .ways
                        .push(Way { name, root, is_tree })
                }
                Err(error) => self.not_watched(root, &dir, error),
            }
        }
        self.watch_tree(root, Path::new(""));
    }

    /// Watches the directory at `rel` in the tree of `root` and everything below it, or the
    /// regular file at `rel` (no-op for anything else).
    fn watch_tree(&mut self, root: usize, rel: &Path) {
        let at = &self.located[root];
        if self.inotify.is_none() || self.scope.skips(at, rel) {
            return;
        }
        let dir = absolute(at.real(), rel);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.is_file() => return self.watch_file(root, rel, &dir),
            _ => return,
        }
        match self.add_watch(&dir) {
            Ok(wd) => {
                self.dirs.entry(wd).or_insert_with(Watched::none).tree = Some((root, rel.to_path_buf()));
                self.blind.remove(&(root, dir.clone()));
            }
            Err(error) => return self.not_watched(root, &dir, error),
        }
        let Ok(children) = std::fs::read_dir(&dir) else {
            return;
        };
        for child in children.flatten() {
            let Ok(kind) = child.file_type() else { continue };
            let rel = rel.join(child.file_name());
            if kind.is_dir() {
                self.watch_tree(root, &rel);
            } else if kind.is_file() && !self.scope.skips(&self.located[root], &rel) {
                self.watch_file(root, &rel, &child.path());
            }
        }
    }

    /// Watches the inode of the sealed file at `rel` (`abs`), so that a write through any of its
    /// names is seen; past the budget, or if it cannot be watched, it is polled instead.
    fn watch_file(&mut self, root: usize, rel: &Path, abs: &Path) {
        let key = (root, rel.to_path_buf());
        let room = self.dirs.len() + self.files.len() < self.budget;
        let added = match &self.inotify {
            Some(inotify) if room => inotify.get_ref().0.add_watch(abs, FILE_WATCHED),
            _ => Err(Errno::ENOSPC),
        };
        match added {
            Ok(wd) => {
                if let Some(was) = self.file_names.insert(key.clone(), wd)
                    && was != wd
                {
                    // Another inode at this name now: the old one's watch keeps its other names.
                    self.drop_name(was, &key);
                }
                let names = self.files.entry(wd).or_default();
                if !names.contains(&key) {
                    names.push(key.clone());
                }
                self.polled.remove(&key);
            }
            // Gone already: the walk of its directory says so.
            Err(Errno::ENOENT) => {}
            Err(e) => {
                if e != Errno::ENOSPC {
                    tracing::warn!(
                        "seal watch: inotify_add_watch {}: {e}; polled instead",
                        shown(abs)
                    );
                } else {
                    // The kernel's limit (other programs use watches too), or kiln's budget.
                    self.budget = self.budget.min(self.dirs.len() + self.files.len());
                }
                if let Some(was) = self.file_names.remove(&key) {
                    self.drop_name(was, &key);
                }
                self.polled.insert(key, abs);
            }
        }
    }

    /// Forgets the names at and below `under` in the tree of `root`: a file watch goes with its
    /// last name in the trees, a polled file is no longer polled.
    fn forget_files(&mut self, root: usize, under: &Path) {
        let names: Vec<((usize, PathBuf), WatchDescriptor)> = self
            .file_names
            .range((root, under.to_path_buf())..)
            .take_while(|((r, p), _)| *r == root && p.starts_with(under))
            .map(|(key, wd)| (key.clone(), *wd))
            .collect();
        for (key, wd) in names {
            self.file_names.remove(&key);
            self.drop_name(wd, &key);
        }
        self.polled.remove_under(root, under);
    }

    /// Takes `key` off the names of the file watch `wd`, and the watch away with its last name.
    fn drop_name(&mut self, wd: WatchDescriptor, key: &(usize, PathBuf)) {
        let Some(names) = self.files.get_mut(&wd) else {
            return;
        };
        names.retain(|n| n != key);
        if names.is_empty() {
            self.files.remove(&wd);
            if let Some(inotify) = &self.inotify {
                let _ = inotify.get_ref().0.rm_watch(wd);
            }
        }
    }

    /// Looks at the polled files off the async thread; returns those that changed.
    async fn poll(&mut self) -> Vec<(usize, PathBuf)> {
        let mut polled = std::mem::take(&mut self.polled);
        let looked = tokio::task::spawn_blocking(move || {
            let changed = polled.changed();
            (polled, changed)
        })
        .await;
        let Ok((polled, changed)) = looked else {
            return Vec::new();
        };
        self.polled = polled;
        changed
    }

    /// At start, one line: how much of the trees inotify sees. Later, only when files start
    /// being polled (a swapped release bigger than the budget).
    fn say_what_is_watched(&mut self) {
        if self.said && (self.polled.is_empty() || self.said_polled) {
            return;
        }
        let watched = format!("{} directories and {} files", self.dirs.len(), self.files.len());
        match self.polled.len() {
            0 if !self.said => tracing::info!("seal watch: {watched} watched"),
            0 => {}
            _ if self.said_polled => {}
            n => {
                self.said_polled = true;
                tracing::warn!(
                    "seal watch: {watched} watched; {n} files past kiln's budget of {} inotify \
                     watches (half of fs.inotify.max_user_watches: raise it with sysctl) are \
                     checked every {}s instead",
                    self.budget,
                    POLL.as_secs()
                );
            }
        }
        self.said = true;
    }

    fn not_watched(&mut self, root: usize, dir: &Path, error: String) {
        tracing::error!("seal watch: {error}");
        let difference = Difference {
            path: dir.to_path_buf(),
            change: Change::Unwatched { error },
        };
        self.blind.insert((root, dir.to_path_buf()), difference);
    }

    fn add_watch(&self, dir: &Path) -> Result<WatchDescriptor, String> {
        let Some(inotify) = &self.inotify else {
            return Err("inotify is not available".into());
        };
        inotify.get_ref().0.add_watch(dir, WATCHED).map_err(|e| match e {
            Errno::ENOSPC => format!(
                "the inotify watch limit is reached at {} (fs.inotify.max_user_watches = {}): \
                 raise it with sysctl",
                shown(dir),
                max_user_watches().map(|n| n.to_string()).unwrap_or_default()
            ),
            e => format!("inotify_add_watch {}: {e}", shown(dir)),
        })
    }

    /// Stops watching what `matches` (a moved directory, a sealed path that leads elsewhere now).
    fn unwatch(&mut self, matches: impl Fn(&Watched) -> bool) {
        let gone: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(_, w)| matches(w))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            if let Some(inotify) = &self.inotify {
                let _ = inotify.get_ref().0.rm_watch(wd);
            }
            self.dirs.remove(&wd);
        }
    }

    /// Resolves sealed path `root` again, compares the links on the way with the manifest's, and
    /// watches the tree (anew: it may be another tree, or the same path holding other inodes).
    fn relocate(&mut self, root: usize) {
        let sealed = &self.manifest.roots[root];
        match Located::new(&sealed.path) {
            Ok(at) => {
                self.links[root] = compare_links(&sealed.links, &at.resolved.links);
                if at != self.located[root] {
                    // Another tree: its files are watched anew. The same one keeps its file
                    // watches (dropping tens of thousands at every rescan would overflow the
                    // event queue with their IN_IGNORED).
                    self.forget_files(root, Path::new(""));
                }
                self.located[root] = at;
            }
            Err(e) => {
                self.links[root] = vec![Difference {
                    path: sealed.path.clone(),
                    change: Change::Unreadable { error: e.to_string() },
                }];
            }
        }
        for watched in self.dirs.values_mut() {
            watched.ways.retain(|w| w.root != root);
            if watched.tree.as_ref().is_some_and(|(r, _)| *r == root) {
                watched.tree = None;
            }
        }
        self.unwatch(|w| w.tree.is_none() && w.ways.is_empty());
        self.blind.retain(|(r, _), _| *r != root);
        self.watch_root(root);
    }

    /// Walks the dirty paths again (and whole trees of relocated sealed paths) and replaces
    /// their part of the current differences.
    async fn recheck(&mut self, dirty: Dirty, relocate: BTreeSet<usize>) {
        for &root in &relocate {
            self.relocate(root);
        }
        self.say_what_is_watched();
        let mut regions: Vec<(usize, PathBuf, bool)> =
            relocate.iter().map(|&r| (r, PathBuf::new(), true)).collect();
        for ((root, rel), below) in &dirty {
            let covered = relocate.contains(root)
                || rel
                    .ancestors()
                    .skip(1)
                    .any(|a| dirty.get(&(*root, a.to_path_buf())) == Some(&true));
            if !covered {
                regions.push((*root, rel.clone(), *below));
            }
        }
        self.check_regions(regions).await;
    }

    /// Everything again: where each sealed path leads, the mount table, every tree.
    async fn rescan(&mut self) {
        let (mut ignored, mut relocate) = (Dirty::new(), BTreeSet::new());
        self.check_mounts(&mut ignored, &mut relocate);
        for root in 0..self.located.len() {
            self.relocate(root);
        }
        self.say_what_is_watched();
        let regions = (0..self.located.len())
            .map(|r| (r, PathBuf::new(), true))
            .collect();
        self.check_regions(regions).await;
    }

    /// Walks each region off the async thread and puts its differences in place of the old ones.
    async fn check_regions(&mut self, regions: Vec<(usize, PathBuf, bool)>) {
        let (scope, manifest, located) = (self.scope.clone(), self.manifest.clone(), self.located.clone());
        let checked = tokio::task::spawn_blocking(move || {
            regions
                .into_iter()
                .map(|(root, rel, below)| {
                    let differences = check_region(&scope, &manifest, &located[root], root, &rel, below);
                    (root, rel, below, differences)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(checked) = checked else { return };
        for (root, rel, below, differences) in checked {
            let stale: Vec<(usize, PathBuf)> = self
                .tree
                .range((root, rel.clone())..)
                .map(|(key, _)| key)
                .take_while(|(r, p)| *r == root && (*p == rel || (below && p.starts_with(&rel))))
                .cloned()
                .collect();
            for key in stale {
                self.tree.remove(&key);
            }
            let real = self.located[root].real().to_path_buf();
            for d in differences {
                let rel = d.path.strip_prefix(&real).unwrap_or(Path::new("")).to_path_buf();
                self.tree.entry((root, rel)).or_default().push(d);
            }
        }
    }
}

impl Watched {
    fn none() -> Watched {
        Watched {
            tree: None,
            ways: Vec::new(),
        }
    }
}

/// A sealed path that could not be resolved when the watch started (the first rescan says why).
fn unresolved(path: &Path) -> Located {
    Located {
        named: path.to_path_buf(),
        resolved: super::resolve::Resolved {
            links: Vec::new(),
            real: path.to_path_buf(),
        },
    }
}

/// `fs.inotify.max_user_watches`: how many watches each user may hold.
fn max_user_watches() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches").ok()?;
    text.trim().parse().ok()
}

/// The next batch of inotify events; never ready without inotify.
async fn inotify_events(inotify: Option<&AsyncFd<InotifyFd>>) -> std::io::Result<Vec<InotifyEvent>> {
    let Some(inotify) = inotify else {
        return std::future::pending().await;
    };
    loop {
        let mut guard = inotify.readable().await?;
        match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(Into::into)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

/// Ready when the mount table changed (POLLPRI); never without it.
async fn mount_table_changed(table: Option<&AsyncFd<MountTable>>) -> std::io::Result<()> {
    let Some(table) = table else {
        return std::future::pending().await;
    };
    let mut guard = table.ready(Interest::PRIORITY).await?;
    guard.clear_ready();
    Ok(())
}

/// The differences at `rel` (and below it) in one sealed tree; a walk error becomes an
/// `Unreadable` difference, since what cannot be read cannot be vouched for.
fn check_region(
    scope: &Scope,
    manifest: &Manifest,
    at: &Located,
    root: usize,
    rel: &Path,
    below: bool,
) -> Vec<Difference> {
    let sealed = &manifest.roots[root];
    match walk::walk(scope, at, rel, below) {
        Ok(actual) => compare(at.real(), sealed.expected(rel, below), &actual),
        Err(SealError::Walk { path, source }) => vec![Difference {
            path,
            change: Change::Unreadable {
                error: source.to_string(),
            },
        }],
        Err(e) => vec![Difference {
            path: absolute(at.real(), rel),
            change: Change::Unreadable { error: e.to_string() },
        }],
    }
}
