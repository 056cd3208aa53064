//! Once per fleet: a task marked `once = "fleet"` runs on one instance per release for the whole
//! fleet, under a lease in a store the fleet already trusts (`dynamodb.rs`: a conditional
//! `PutItem` with an expiry; `consul.rs`: a session with a TTL and a KV `acquire`).
//!
//! The lease's key is `[coordination] key_prefix`, the task, the release label and the seal's
//! root hash: the next release runs the task again. The instance that takes the lease runs the
//! task, renewing the lease every third of `lease_ttl`, and records the outcome in it; the others
//! read the record every `poll_interval`: done → they go on; failed → they refuse with the
//! winner's reason; a lease that expired (its holder died) → one of them takes it over. They
//! wait at most the task's budget (every attempt's timeout, stop timeout and retry delay) plus a
//! lease's life per holder, then refuse.
//!
//! What it guarantees: at most one run at a time for the fleet (a holder that cannot renew kills
//! its run before its lease can expire, given clocks within a fraction of `lease_ttl`), and one
//! recorded outcome per release. Not "exactly once": a holder that dies mid-run leaves the task
//! half done for the next holder, so the task must be idempotent (Doctrine's migrations are).
//!
//! The supervisor asks through its [`Fleet`] trait; this room implements it.

mod consul;
mod dynamodb;
mod record;

use crate::config::{Config, Once, Store as StoreKind};
use crate::metadata::InstanceFacts;
use crate::seal::Verified;
use crate::supervise::{Coordination, Fleet, FleetTask, Lease, Outcome};
use record::{Next, State, decide};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The longest one call to the store may take (a renewal gets less: what is left of the lease).
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// Where a lease lives: the same key in every store, as words joined by `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(Vec<String>);

impl Key {
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// A lease this instance took: its key and the store's proof that it is this instance's (the
/// owner written in DynamoDB, the Consul session).
#[derive(Debug, Clone)]
pub struct Held {
    pub key: Key,
    pub token: String,
}

/// Why a call to the store did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Worth another try (no answer, 5xx, throttling).
    Transient(String),
    /// Not worth another (no table, access denied, a refused request).
    Final(String),
    /// The lease is not this instance's any more.
    Lost(String),
}

impl StoreError {
    fn words(&self) -> &str {
        match self {
            StoreError::Transient(e) | StoreError::Final(e) | StoreError::Lost(e) => e,
        }
    }
}

/// One store, behind the protocol above.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The record of `key` as it is now; None when there is none.
    async fn read(&self, key: &Key, deadline: Instant) -> Result<Option<record::Found>, StoreError>;
    /// Takes the lease for this instance: None when another instance has it (or has just
    /// recorded an outcome).
    async fn take(&self, key: &Key, deadline: Instant) -> Result<Option<Held>, StoreError>;
    /// Keeps the lease for another `lease_ttl`; `Lost` when it is not this instance's any more.
    async fn renew(&self, held: &Held, deadline: Instant) -> Result<(), StoreError>;
    /// Records the outcome (`Some`) and lets the lease go; `None` lets it go without one, for
    /// another instance to take at once.
    async fn finish(
        &self,
        held: &Held,
        outcome: Option<(State, Option<String>)>,
        deadline: Instant,
    ) -> Result<(), StoreError>;
    fn describe(&self) -> String;
}

/// The fleet of this release, for the config's tasks run once per fleet; None when no task is.
/// An error (no verified release, no instance id, no region, no credentials) refuses the boot.
pub fn fleet(
    config: &Config,
    verified: &Verified,
    facts: &InstanceFacts,
) -> Result<Option<Arc<dyn Fleet>>, String> {
    if !config.tasks.iter().any(|t| t.once == Once::Fleet) {
        return Ok(None);
    }
    let plan = config
        .coordination
        .as_ref()
        .ok_or("a task runs once per fleet and there is no [coordination] section")?;
    let root = verified.root_hash.clone().ok_or_else(|| {
        let why = verified.skipped.as_deref().unwrap_or("nothing was verified");
        format!(
            "coordination: a task runs once per fleet, per release, and the seal gives no release ({why})"
        )
    })?;
    let instance = facts
        .instance_id
        .clone()
        .ok_or("coordination: the instance's metadata gives no instance id to hold a lease by")?;
    let release = verified
        .release
        .as_ref()
        .map_or("unlabelled".to_string(), ToString::to_string);
    let store: Arc<dyn Store> = match &plan.store {
        StoreKind::DynamoDb { .. } => Arc::new(dynamodb::DynamoStore::new(config, plan, facts, &instance)?),
        StoreKind::Consul { agent } => Arc::new(consul::ConsulStore::new(agent, plan, &instance)?),
    };
    Ok(Some(Arc::new(Coordinator {
        store,
        prefix: plan.key_prefix.clone(),
        release,
        root,
        lease_ttl: plan.lease_ttl,
        poll: plan.poll_interval,
    })))
}

/// The fleet through one store, for one release.
struct Coordinator {
    store: Arc<dyn Store>,
    prefix: String,
    release: String,
    root: String,
    lease_ttl: Duration,
    poll: Duration,
}

impl Coordinator {
    /// `PREFIX/TASK/RELEASE/ROOT`.
    fn key(&self, task: &str) -> Key {
        let mut parts: Vec<String> = self.prefix.split('/').map(String::from).collect();
        parts.extend([task.to_string(), self.release.clone(), self.root.clone()]);
        Key(parts)
    }
}

#[async_trait::async_trait]
impl Fleet for Coordinator {
    async fn take_or_wait(&self, task: &FleetTask, words: &(dyn Fn(String) + Send + Sync)) -> Coordination {
        let key = self.key(&task.name);
        let mut wait = Wait::new(task.budget.saturating_add(self.lease_ttl));
        tracing::info!(
            "task {}: asking {} for the lease {key}",
            task.name,
            self.store.describe()
        );
        loop {
            let call = Instant::now() + CALL_DEADLINE.min(self.lease_ttl);
            let next = match self.store.read(&key, call).await {
                Ok(found) => decide(found.as_ref()),
                Err(e) => match self.again(&mut wait, &task.name, &e, words) {
                    Some(gave_up) => return gave_up,
                    None => continue,
                },
            };
            match next {
                Next::Take => match self.store.take(&key, call).await {
                    Ok(Some(held)) => return Coordination::Run(self.hold(held, &task.name)),
                    Ok(None) => {}
                    Err(e) => {
                        if let Some(gave_up) = self.again(&mut wait, &task.name, &e, words) {
                            return gave_up;
                        }
                        continue;
                    }
                },
                Next::Wait { holder } => {
                    if wait.holder(&holder) {
                        tracing::info!("task {}: {holder} holds the lease: waiting", task.name);
                        words(format!("{holder} holds the lease"));
                    }
                    if wait.past() {
                        return Coordination::Unavailable(format!(
                            "waited {} for {holder}, which still holds the lease in {}",
                            humantime::format_duration(wait.bound),
                            self.store.describe()
                        ));
                    }
                }
                Next::Done { by } => return Coordination::Done { by },
                Next::Failed { by, reason } => return Coordination::Failed { by, reason },
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    fn describe(&self) -> String {
        self.store.describe()
    }
}

impl Coordinator {
    /// After a failed call: a final error, or a transient one past the wait, gives up (Some);
    /// else a pause, and the caller reads again (None).
    fn again(
        &self,
        wait: &mut Wait,
        task: &str,
        e: &StoreError,
        words: &(dyn Fn(String) + Send + Sync),
    ) -> Option<Coordination> {
        let gave_up = || Coordination::Unavailable(format!("{}: {}", self.store.describe(), e.words()));
        if matches!(e, StoreError::Final(_)) || wait.past() {
            return Some(gave_up());
        }
        if wait.error(e.words()) {
            tracing::warn!(
                "task {task}: {}: {}; trying again",
                self.store.describe(),
                e.words()
            );
            words(format!("cannot use {}: {}", self.store.describe(), e.words()));
        }
        None
    }

    /// The lease this instance took: renewed in the background until the run's outcome comes,
    /// then recorded.
    fn hold(&self, held: Held, task: &str) -> Lease {
        let (lease, lost, outcome) = Lease::new();
        tracing::info!("task {task}: this instance took the lease {}", held.key);
        let keeper = Keeper {
            store: self.store.clone(),
            held,
            ttl: self.lease_ttl,
            task: task.to_string(),
        };
        tokio::spawn(keeper.keep(lost, outcome));
        lease
    }
}

/// How long an instance waits, and for whom: the bound starts again with each new holder.
struct Wait {
    bound: Duration,
    until: Instant,
    holder: Option<String>,
    error: Option<String>,
}

impl Wait {
    fn new(bound: Duration) -> Wait {
        Wait {
            bound,
            until: Instant::now() + bound,
            holder: None,
            error: None,
        }
    }

    /// Notes who holds the lease; true when that is news (and the bound starts again).
    fn holder(&mut self, holder: &str) -> bool {
        self.error = None;
        if self.holder.as_deref() == Some(holder) {
            return false;
        }
        self.holder = Some(holder.to_string());
        self.until = Instant::now() + self.bound;
        true
    }

    /// Notes an error; true when it is news.
    fn error(&mut self, error: &str) -> bool {
        let news = self.error.as_deref() != Some(error);
        self.error = Some(error.to_string());
        news
    }

    fn past(&self) -> bool {
        Instant::now() >= self.until
    }
}

/// The holder's side of a lease: renewals until the outcome comes or the lease is lost.
struct Keeper {
    store: Arc<dyn Store>,
    held: Held,
    ttl: Duration,
    task: String,
}

impl Keeper {
    /// Renews every third of the lease's life. The lease counts as lost a tenth of its life
    /// before it would expire without a renewal: the run is killed before another instance
    /// may take over.
    async fn keep(
        self,
        lost: tokio::sync::oneshot::Sender<String>,
        mut outcome: tokio::sync::oneshot::Receiver<Outcome>,
    ) {
        let every = self.ttl / 3;
        let margin = self.ttl / 10;
        let mut valid_until = Instant::now() + self.ttl - margin;
        loop {
            tokio::select! {
                outcome = &mut outcome => return self.finish(outcome.ok()).await,
                _ = tokio::time::sleep(every) => {}
            }
            let started = Instant::now();
            match self.store.renew(&self.held, valid_until).await {
                Ok(()) => valid_until = started + self.ttl - margin,
                Err(StoreError::Lost(why)) => return self.lose(lost, why),
                Err(e) if Instant::now() >= valid_until => {
                    return self.lose(lost, format!("not renewed within its life: {}", e.words()));
                }
                Err(e) => tracing::warn!(
                    "task {}: cannot renew the lease: {}; trying again",
                    self.task,
                    e.words()
                ),
            }
        }
    }

    fn lose(self, lost: tokio::sync::oneshot::Sender<String>, why: String) {
        tracing::error!("task {}: lost the lease {}: {why}", self.task, self.held.key);
        let _ = lost.send(why);
    }

    /// The outcome into the store (None: the run was stopped, or its lease dropped).
    async fn finish(self, outcome: Option<Outcome>) {
        let record = match outcome {
            Some(Outcome::Done) => Some((State::Done, None)),
            Some(Outcome::Failed(reason)) => Some((State::Failed, Some(reason))),
            Some(Outcome::Abandoned) | None => None,
        };
        let what = record
            .as_ref()
            .map_or("released without an outcome", |(s, _)| s.as_str());
        let deadline = Instant::now() + CALL_DEADLINE;
        match self.store.finish(&self.held, record, deadline).await {
            Ok(()) => tracing::info!("task {}: lease {}: {what}", self.task, self.held.key),
            Err(e) => tracing::warn!(
                "task {}: lease {}: cannot record {what}: {}; the others take over once it expires",
                self.task,
                self.held.key,
                e.words()
            ),
        }
    }
}
