//! The bake-time integrity manifest: written by `kiln seal`, verified at boot, watched after.
//!
//! - `manifest`: the versioned file format, its release label and its root hash.
//! - `resolve`: where a sealed path leads, through the symlinks on the way.
//! - `walk`: the sealed tree into sorted entries (with their `xattrs`), hashed on every core.
//! - `diff`: manifest against disk, as a sorted list of differences.
//! - `watch`: inotify, the mount table (`mounts`) and a periodic full rescan, after boot.
//! - `readonly`: bind-remounting the sealed paths read-only.
//! - `pin`: the release or root hash the launch configuration expects.
//! - `warnings`: what `kiln check` says of sealed paths that are not there.
//!
//! Without a `[seal]` section nothing is sealed, verified, watched or remounted.

mod diff;
mod entry;
mod escape;
mod manifest;
mod mounts;
pub mod pin;
mod polled;
mod readonly;
mod resolve;
mod scope;
mod walk;
mod warnings;
mod watch;
mod xattrs;

pub use diff::{Change, Difference};
pub use entry::{Entry, Kind};
pub use manifest::{FORMAT_VERSION, Manifest, SealedRoot};
pub use pin::Pin;
pub use readonly::{ReadonlyOutcome, remount_readonly};
pub use resolve::Link;
pub use warnings::warnings;
pub use watch::{DriftReport, DriftWatch, FoundBy, watch, watch_within};
pub use xattrs::Xattr;

use crate::config::{Release, SealConfig};
use escape::shown;
use rayon::prelude::*;
use scope::{Located, Scope};
use std::path::PathBuf;
use std::sync::Arc;

/// How many differences an error message or log line lists before "and N more".
const SHOWN_DIFFERENCES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{0}")]
    Config(String),
    #[error("no [seal] section in the config: nothing is sealed")]
    NotConfigured,
    #[error(
        "no seal manifest at {}: run `kiln seal` as the last step of the image bake \
         (or set [seal] required = false for development)",
        shown(path)
    )]
    ManifestMissing { path: PathBuf },
    #[error("cannot read the seal manifest {}: {source}", shown(path))]
    ManifestUnreadable { path: PathBuf, source: std::io::Error },
    #[error("bad seal manifest {}: {reason}", shown(path))]
    ManifestInvalid { path: PathBuf, reason: String },
    #[error("cannot write the seal manifest {}: {source}", shown(path))]
    ManifestWrite { path: PathBuf, source: std::io::Error },
    #[error(
        "the seal manifest {} covers [{}] but [seal] paths is [{}]: seal again (`kiln seal`)",
        shown(manifest),
        list(recorded),
        list(configured)
    )]
    PathsChanged {
        manifest: PathBuf,
        recorded: Vec<PathBuf>,
        configured: Vec<PathBuf>,
    },
    #[error("cannot read the sealed path {}: {source}", shown(path))]
    Walk { path: PathBuf, source: std::io::Error },
    /// The tree differs from the manifest; every difference, sorted.
    #[error("{}", drift_summary(.0))]
    Drift(Vec<Difference>),
    #[error("cannot watch the sealed paths: {0}")]
    Watch(String),
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| shown(p)).collect::<Vec<_>>().join(", ")
}

/// `3 differences from the seal: content changed /srv/app/x; ...; and 1 more`.
pub fn drift_summary(differences: &[Difference]) -> String {
    let n = differences.len();
    let mut text = format!("{n} difference{} from the seal: ", if n == 1 { "" } else { "s" });
    let shown: Vec<String> = differences
        .iter()
        .take(SHOWN_DIFFERENCES)
        .map(|d| d.to_string())
        .collect();
    text.push_str(&shown.join("; "));
    if n > SHOWN_DIFFERENCES {
        text.push_str(&format!("; and {} more", n - SHOWN_DIFFERENCES));
    }
    text
}

/// What a successful boot verification saw; handed to [`watch()`].
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// The manifest's root hash (hex); None when nothing was verified.
    pub root_hash: Option<String>,
    /// The manifest's release label, when it has one.
    pub release: Option<Release>,
    pub manifest: Option<Arc<Manifest>>,
    /// Why nothing was verified, when nothing was (no `[seal]`, or no manifest and
    /// `required = false`).
    pub skipped: Option<String>,
}

/// A comparison of the sealed paths with the manifest.
#[derive(Debug, Clone)]
pub struct Verification {
    pub manifest: Arc<Manifest>,
    /// Empty when the tree matches the seal.
    pub differences: Vec<Difference>,
}

/// `kiln seal`: walks the sealed paths (each through the symlinks on its way) and writes the
/// manifest, labelled with `[seal] release`, atomically.
pub fn seal(config: &SealConfig) -> Result<Manifest, SealError> {
    if !config.is_enabled() {
        return Err(SealError::NotConfigured);
    }
    let scope = Scope::new(config)?;
    let located = scope
        .roots
        .iter()
        .map(|root| {
            let at = Located::new(root)?;
            std::fs::symlink_metadata(at.real()).map_err(|source| SealError::Walk {
                path: at.real().to_path_buf(),
                source,
            })?;
            Ok(at)
        })
        .collect::<Result<Vec<_>, SealError>>()?;
    let roots = located
        .par_iter()
        .map(|at| {
            let entries = walk::walk(&scope, at, "".as_ref(), true)?;
            Ok(SealedRoot {
                path: at.named.clone(),
                links: at.resolved.links.clone(),
                entries,
            })
        })
        .collect::<Result<Vec<_>, SealError>>()?;
    let manifest = Manifest::new(config.release.clone(), roots);
    manifest.write(&config.manifest)?;
    Ok(manifest)
}

/// `kiln verify`: reads the manifest and compares the sealed paths with it.
pub fn verify(config: &SealConfig) -> Result<Verification, SealError> {
    if !config.is_enabled() {
        return Err(SealError::NotConfigured);
    }
    let scope = Scope::new(config)?;
    let manifest = Manifest::read(&config.manifest)?;
    let differences = check(&scope, &manifest, &config.manifest)?;
    Ok(Verification {
        manifest: Arc::new(manifest),
        differences,
    })
}

/// The boot step: Ok only when the sealed paths match the manifest exactly. A missing manifest
/// refuses too, unless `required = false`; without `[seal]` nothing is checked.
pub fn verify_at_boot(config: &SealConfig) -> Result<Verified, SealError> {
    if !config.is_enabled() {
        return Ok(Verified {
            skipped: Some("no [seal] section: nothing is sealed".into()),
            ..Verified::default()
        });
    }
    match verify(config) {
        Ok(Verification {
            manifest,
            differences,
        }) if differences.is_empty() => Ok(Verified {
            root_hash: Some(manifest.root_hash_hex()),
            release: manifest.release.clone(),
            manifest: Some(manifest),
            skipped: None,
        }),
        Ok(verification) => Err(SealError::Drift(verification.differences)),
        Err(SealError::ManifestMissing { path }) if !config.required => Ok(Verified {
            skipped: Some(format!(
                "no seal manifest at {} and [seal] required = false: booting unsealed",
                shown(&path)
            )),
            ..Verified::default()
        }),
        Err(e) => Err(e),
    }
}

/// Compares every sealed path with the manifest, in parallel; differences in manifest order,
/// the links on the way to each tree before the tree.
fn check(
    scope: &Scope,
    manifest: &Manifest,
    manifest_path: &std::path::Path,
) -> Result<Vec<Difference>, SealError> {
    let recorded: Vec<PathBuf> = manifest.roots.iter().map(|r| r.path.clone()).collect();
    if recorded != scope.roots {
        return Err(SealError::PathsChanged {
            manifest: manifest_path.to_path_buf(),
            recorded,
            configured: scope.roots.clone(),
        });
    }
    let per_root = manifest
        .roots
        .par_iter()
        .map(|root| {
            let at = Located::new(&root.path)?;
            let mut differences = diff::compare_links(&root.links, &at.resolved.links);
            let actual = walk::walk(scope, &at, "".as_ref(), true)?;
            differences.extend(diff::compare(at.real(), &root.entries, &actual));
            Ok(differences)
        })
        .collect::<Result<Vec<_>, SealError>>()?;
    Ok(per_root.into_iter().flatten().collect())
}
