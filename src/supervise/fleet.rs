//! What the supervisor asks of the fleet for a task run once per fleet, and what it holds while
//! this instance runs one. The store behind it (DynamoDB, Consul) is the `once` room's: the boot
//! builds it and hands it in as a [`Fleet`], so the supervisor knows no store.

use super::machine::Outcome;
use std::time::Duration;
use tokio::sync::oneshot;

/// The fleet's coordination of once-per-fleet tasks, for this instance's release.
#[async_trait::async_trait]
pub trait Fleet: Send + Sync {
    /// Takes the lease of `task` for this release, or waits for the instance that holds it,
    /// until there is a verdict; `words` hears how it stands meanwhile (`i-0002 holds the
    /// lease`), for status. Cancel-safe: dropped, it stops waiting.
    async fn take_or_wait(&self, task: &FleetTask, words: &(dyn Fn(String) + Send + Sync)) -> Coordination;

    /// The store, for messages (`dynamodb table kiln-tasks`).
    fn describe(&self) -> String;
}

/// A task as the fleet knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetTask {
    pub name: String,
    /// The longest a holder may take for all its attempts (timeouts, stop timeouts and retry
    /// delays): how long another instance waits for it, plus a lease's life.
    pub budget: Duration,
}

/// The fleet's word on a task for this release.
pub enum Coordination {
    /// This instance holds the lease: run it, then release it with the outcome.
    Run(Lease),
    Done {
        by: String,
    },
    Failed {
        by: String,
        reason: String,
    },
    /// No word: the store cannot be used, or the holder took longer than its budget.
    Unavailable(String),
}

/// A lease this instance holds, renewed in the background by its store until released.
pub struct Lease {
    /// Answers once if the lease is lost before it is released: why.
    pub lost: oneshot::Receiver<String>,
    /// Where the run's outcome goes. Dropped without an outcome, the lease is abandoned
    /// (released without one, so another instance may take it at once).
    pub release: oneshot::Sender<Outcome>,
}

impl Lease {
    /// A lease and the store's ends of it: the store sends on the first when the lease is lost,
    /// and receives the outcome on the second.
    pub fn new() -> (Lease, oneshot::Sender<String>, oneshot::Receiver<Outcome>) {
        let (lost_tx, lost) = oneshot::channel();
        let (release, outcome) = oneshot::channel();
        (Lease { lost, release }, lost_tx, outcome)
    }
}
