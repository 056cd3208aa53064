//! Load balancer registration (one file per registrar behind one trait).
//!
//! STUB (issue 2): no registrar. The load-balancer issue adds haproxy, elbv2 and consul.

use crate::config::LbConfig;
use crate::metadata::InstanceFacts;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LbError(pub String);

/// One load balancer kiln joins when ready and leaves on stop.
#[async_trait::async_trait]
pub trait Registrar: Send + Sync {
    /// What kiln registers where, e.g. `haproxy app/i-0abc (10.0.0.5:8080)`.
    fn describe(&self) -> String;
    async fn register(&self) -> Result<(), LbError>;
    async fn deregister(&self) -> Result<(), LbError>;
    /// Waits until no request is in flight to this instance, or `deadline`. Returns a progress
    /// line for status (e.g. "3 sessions") through `progress` while waiting.
    async fn wait_drained(
        &self,
        deadline: Instant,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), LbError>;
}

/// The registrar the config asks for; None for `kind = "none"` or no `[lb]`.
pub fn registrar(_config: &LbConfig, _facts: &InstanceFacts) -> Result<Option<Box<dyn Registrar>>, LbError> {
    Ok(None)
}
