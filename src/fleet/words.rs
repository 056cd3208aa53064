//! The words `ask`, `source` and `assess` share: the image a member runs (its kiln's side, as
//! `ask` reads it) and what the load balancer says about it (its side, as `source` reads it).
//! `assess` puts both together; none of the three reaches into another for its words.

use serde::Serialize;

/// What the load balancer says about a member, in the words all three load balancers share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbView {
    /// Takes traffic (HAProxy UP, Consul passing or warning, ELBv2 healthy).
    InService,
    /// Registered, health not known yet (ELBv2 initial).
    Joining,
    /// Finishing its requests, no new ones (HAProxy DRAIN or NOLB, ELBv2 draining).
    Draining,
    /// Failing the load balancer's health check (HAProxy DOWN, Consul critical, ELBv2 unhealthy).
    Down,
    /// Taken out by hand or on its way out (HAProxy MAINT, Consul maintenance, ELBv2 unused).
    Maintenance,
    /// Not in the load balancer: an instance named with `--instance` only.
    NotListed,
}

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
