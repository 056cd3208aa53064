//! The image a member runs, as `ask` reads it from a kiln and `assess` counts it: the vocabulary
//! both share, so that neither reaches into the other.

use serde::Serialize;

/// One image: a sealed root hash and its release label, as the members report them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Image {
    pub release: Option<String>,
    /// None: the members run without a seal.
    pub root_hash: Option<String>,
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hash = self.root_hash.as_deref().map(short_hash);
        match (&self.release, hash) {
            (Some(r), Some(h)) => write!(f, "{r} ({h})"),
            (Some(r), None) => write!(f, "{r} (unsealed)"),
            (None, Some(h)) => write!(f, "{h}"),
            (None, None) => write!(f, "unsealed"),
        }
    }
}

/// The first 12 hex digits: enough to tell images apart on a screen. Characters, not bytes:
/// a member may report anything as its hash.
pub fn short_hash(hash: &str) -> &str {
    hash.char_indices().nth(12).map_or(hash, |(cut, _)| &hash[..cut])
}
