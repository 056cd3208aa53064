//! What is sealed: the `[seal] paths`, minus `exclude` and minus the manifest itself (a
//! manifest cannot hold its own hash, and it usually lives in a sealed `/etc/kiln`).

use super::SealError;
use super::manifest::temp_path;
use crate::config::SealConfig;
use std::path::{Path, PathBuf};

pub struct Scope {
    pub roots: Vec<PathBuf>,
    exclude: globset::GlobSet,
    manifest: PathBuf,
    manifest_temp: PathBuf,
}

impl Scope {
    pub fn new(config: &SealConfig) -> Result<Scope, SealError> {
        Ok(Scope {
            roots: config.paths.clone(),
            exclude: config.exclude_set().map_err(SealError::Config)?,
            manifest: config.manifest.clone(),
            manifest_temp: temp_path(&config.manifest),
        })
    }

    /// Left out of the seal: never recorded, walked or watched.
    pub fn skips(&self, path: &Path) -> bool {
        path == self.manifest || path == self.manifest_temp || self.exclude.is_match(path)
    }

    /// Matches `[seal] exclude` (the paths that stay writable under `readonly`).
    pub fn excluded(&self, path: &Path) -> bool {
        self.exclude.is_match(path)
    }

    /// The sealed path holding `path`, and `path` relative to it.
    pub fn locate(&self, path: &Path) -> Option<(usize, PathBuf)> {
        self.roots
            .iter()
            .enumerate()
            .find_map(|(i, root)| path.strip_prefix(root).ok().map(|rel| (i, rel.to_path_buf())))
    }
}
