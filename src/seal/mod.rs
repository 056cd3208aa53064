//! The bake-time integrity manifest: written by `kiln seal`, verified at boot and watched after.
//!
//! STUB (issue 2): nothing is sealed. The immutability issue adds the manifest.

use crate::config::SealConfig;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SealError(pub String);

/// What a successful verification saw.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// The manifest's root hash (hex), None when sealing is not configured.
    pub root_hash: Option<String>,
}

/// Compares the sealed paths with the manifest; any difference refuses the boot.
pub fn verify_at_boot(_config: &SealConfig) -> Result<Verified, SealError> {
    Ok(Verified::default())
}
