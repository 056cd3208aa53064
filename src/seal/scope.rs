//! What is sealed: the `[seal] paths`, minus `exclude` and minus the manifest itself (a
//! manifest cannot hold its own hash, and it usually lives in a sealed `/etc/kiln`).

use super::SealError;
use super::entry::absolute;
use super::manifest::temp_path;
use super::resolve::{Resolved, resolve};
use crate::config::SealConfig;
use std::path::{Path, PathBuf};

pub struct Scope {
    /// As `[seal] paths` names them.
    pub roots: Vec<PathBuf>,
    exclude: globset::GlobSet,
    /// The manifest and its temporary file, as named and as resolved.
    manifests: Vec<PathBuf>,
}

/// One sealed path as it resolves now: its name in `[seal] paths` and where its tree really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub named: PathBuf,
    pub resolved: Resolved,
}

impl Located {
    /// Resolves a sealed path now.
    pub fn new(named: &Path) -> Result<Located, SealError> {
        let resolved = resolve(named).map_err(|source| SealError::Walk {
            path: named.to_path_buf(),
            source,
        })?;
        Ok(Located {
            named: named.to_path_buf(),
            resolved,
        })
    }

    /// Where the tree is.
    pub fn real(&self) -> &Path {
        &self.resolved.real
    }
}

impl Scope {
    pub fn new(config: &SealConfig) -> Result<Scope, SealError> {
        let mut manifests = vec![config.manifest.clone(), temp_path(&config.manifest)];
        if let Ok(real) = resolve(&config.manifest) {
            manifests.push(temp_path(&real.real));
            manifests.push(real.real);
        }
        Ok(Scope {
            roots: config.paths.clone(),
            exclude: config.exclude_set().map_err(SealError::Config)?,
            manifests,
        })
    }

    /// Left out of the seal: never recorded, walked or watched. `rel` is relative to the tree of
    /// `at`; `exclude` may name it under the sealed path's name or where it really is.
    pub fn skips(&self, at: &Located, rel: &Path) -> bool {
        let real = absolute(at.real(), rel);
        self.manifests.contains(&real) || self.excluded(at, rel)
    }

    /// Matches `[seal] exclude` (the paths that stay writable under `readonly`).
    pub fn excluded(&self, at: &Located, rel: &Path) -> bool {
        self.exclude.is_match(absolute(at.real(), rel))
            || (at.named != at.resolved.real && self.exclude.is_match(absolute(&at.named, rel)))
    }
}
