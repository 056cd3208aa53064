//! With `[metadata] recheck`, the secrets are resolved again every period and compared with the
//! boot's: a secret that changed (rotation) is announced, never applied. An immutable instance
//! is replaced, not mutated. Only BLAKE3 digests of the boot's values are kept here.

use super::{Plan, Stores};
use crate::env::FrozenEnv;
use crate::metrics::Recorder;
use crate::state::Shared;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What status and the log say for one variable.
pub fn changed_line(variable: &str) -> String {
    format!("secret {variable} changed since boot: replace this instance")
}

/// Digests of the values each reference gave at boot (by reference text).
fn digests(plan: &Plan, env: &FrozenEnv) -> BTreeMap<String, blake3::Hash> {
    plan.references
        .iter()
        .filter_map(|(reference, vars)| {
            let value = env.get(vars.first()?)?;
            Some((reference.text.clone(), blake3::hash(value.as_bytes())))
        })
        .collect()
}

/// Starts the recheck every `every`; `budget` bounds one round.
pub fn start(
    plan: Plan,
    stores: Stores,
    env: &FrozenEnv,
    every: Duration,
    budget: Duration,
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
) {
    let at_boot = digests(&plan, env);
    if at_boot.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut announced = BTreeSet::new();
        loop {
            tokio::time::sleep(every).await;
            let started = Instant::now();
            let now = plan.fetch(&stores, started + budget).await;
            recorder.secrets_fetched(started.elapsed());
            for (reference, result) in now {
                let Ok(value) = result else {
                    tracing::debug!("secret recheck: {} could not be read", reference.text);
                    continue;
                };
                let same = at_boot.get(&reference.text) == Some(&blake3::hash(value.as_bytes()));
                if same {
                    continue;
                }
                for variable in plan.references.get(&reference).into_iter().flatten() {
                    if announced.insert(variable.clone()) {
                        let line = changed_line(variable);
                        tracing::warn!("{line} (nothing was applied)");
                        shared.event("warn", line.clone());
                        shared.update(|s| {
                            s.warnings.push(line.clone());
                            if let Some(secrets) = s.secrets.as_mut() {
                                secrets.changed.push(variable.clone());
                            }
                        });
                    }
                }
            }
        }
    });
}
