//! The lease in a DynamoDB table: one item per task and release, its partition key `pk` (a
//! string) the lease's key. Through the one AWS client (`crate::aws`, JSON 1.0, SigV4
//! `dynamodb`), with kiln's credentials (its `AWS_*` keys, else the instance role).
//!
//! - take: `PutItem` with `attribute_not_exists(pk) OR (#state = :running AND expires_at <
//!   :now)`: no item, or a running one whose lease expired; a done or failed item is never
//!   taken (the outcome is final for the release).
//! - renew: `UpdateItem SET expires_at` with `#owner = :me AND #state = :running`.
//! - finish: `UpdateItem SET #state, reason` with `#owner = :me`; without an outcome, `SET
//!   expires_at = 0` (the lease expires at once, for another instance to take).
//!
//! `expires_at` is wall-clock milliseconds since the Unix epoch, written by the holder and
//! compared by the others with their own clocks: clocks must agree within a fraction of
//! `lease_ttl` (NTP does).

use super::record::{Found, Record, State};
use super::{Held, Key, Store, StoreError};
use crate::aws::{Api, AwsClient, CallError, CredentialSource, DYNAMODB, Region};
use crate::config::{Config, Coordination, Store as StoreKind};
use crate::metadata::{Identity, InstanceFacts};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The code of a condition that did not hold: not an error of the protocol, an answer.
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

pub struct DynamoStore {
    api: Api,
    table: String,
    /// This instance, as the records name it.
    instance: String,
    /// This boot's mark in `owner`: the instance id and a random word, so that a restarted kiln
    /// on the same instance never takes its predecessor's lease for its own.
    token: String,
    ttl: Duration,
}

impl DynamoStore {
    pub fn new(
        config: &Config,
        plan: &Coordination,
        facts: &InstanceFacts,
        instance: &str,
    ) -> Result<DynamoStore, String> {
        let StoreKind::DynamoDb {
            table,
            region,
            endpoint,
        } = &plan.store
        else {
            return Err("coordination: not a DynamoDB store".into());
        };
        let region = match region {
            Some(region) => region.clone(),
            None => {
                let name = facts
                    .region
                    .as_deref()
                    .ok_or("coordination: the instance has no region; set [coordination] region")?;
                Region::parse(name).map_err(|e| format!("coordination: the instance's region is {e}"))?
            }
        };
        let identity = Identity::from_config(&config.metadata).map_err(|e| e.to_string())?;
        let credentials =
            CredentialSource::from_env_or(identity).map_err(|e| format!("coordination: {e}"))?;
        let api = AwsClient::new(credentials)?.api(&DYNAMODB, &region, endpoint.as_deref())?;
        Ok(DynamoStore {
            api,
            table: table.clone(),
            instance: instance.to_string(),
            token: format!("{instance}/{:016x}", fastrand::u64(..)),
            ttl: plan.lease_ttl,
        })
    }

    /// One UpdateItem of this instance's item; a condition that does not hold is `Err(None)`.
    /// `#state` and `#owner` stand for `state` and `owner` (reserved words of DynamoDB); every
    /// expression here uses both, as DynamoDB refuses a name given and not used.
    async fn update(
        &self,
        key: &Key,
        set: &str,
        condition: &str,
        values: Value,
        deadline: Instant,
    ) -> Result<(), Option<StoreError>> {
        let mut names = json!({ "#state": "state", "#owner": "owner" });
        if set.contains("#reason") {
            names["#reason"] = json!("reason");
        }
        let input = json!({
            "TableName": self.table,
            "Key": { "pk": { "S": key.to_string() } },
            "UpdateExpression": set,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        });
        let answer: Result<Value, CallError> = self.api.dynamodb("UpdateItem", &input, deadline).await;
        answer.map(drop).map_err(classify)
    }
}

#[async_trait::async_trait]
impl Store for DynamoStore {
    async fn read(&self, key: &Key, deadline: Instant) -> Result<Option<Found>, StoreError> {
        let input = json!({
            "TableName": self.table,
            "Key": { "pk": { "S": key.to_string() } },
            "ConsistentRead": true,
        });
        let answer: Value = self
            .api
            .dynamodb("GetItem", &input, deadline)
            .await
            .map_err(|e| classify(e).unwrap_or_else(|| StoreError::Final(CONDITION_FAILED.into())))?;
        match answer.get("Item") {
            None | Some(Value::Null) => Ok(None),
            Some(item) => found(item, crate::state::now_ms())
                .map(Some)
                .map_err(StoreError::Final),
        }
    }

    async fn take(&self, key: &Key, deadline: Instant) -> Result<Option<Held>, StoreError> {
        let now = crate::state::now_ms();
        let expires = now.saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let input = json!({
            "TableName": self.table,
            "Item": {
                "pk": { "S": key.to_string() },
                "state": { "S": State::Running.as_str() },
                "owner": { "S": self.token },
                "instance": { "S": self.instance },
                "expires_at": { "N": expires.to_string() },
                "at_ms": { "N": now.to_string() },
            },
            "ConditionExpression": "attribute_not_exists(pk) OR (#state = :running AND expires_at < :now)",
            "ExpressionAttributeNames": { "#state": "state" },
            "ExpressionAttributeValues": {
                ":running": { "S": State::Running.as_str() },
                ":now": { "N": now.to_string() },
            },
        });
        let answer: Result<Value, CallError> = self.api.dynamodb("PutItem", &input, deadline).await;
        match answer.map_err(classify) {
            Ok(_) => Ok(Some(Held {
                key: key.clone(),
                token: self.token.clone(),
            })),
            Err(None) => Ok(None),
            Err(Some(e)) => Err(e),
        }
    }

    async fn renew(&self, held: &Held, deadline: Instant) -> Result<(), StoreError> {
        let now = crate::state::now_ms();
        let expires = now.saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let values = json!({
            ":exp": { "N": expires.to_string() },
            ":now": { "N": now.to_string() },
            ":me": { "S": held.token },
            ":running": { "S": State::Running.as_str() },
        });
        self.update(
            &held.key,
            "SET expires_at = :exp, at_ms = :now",
            "#owner = :me AND #state = :running",
            values,
            deadline,
        )
        .await
        .map_err(|e| e.unwrap_or_else(|| StoreError::Lost("another instance holds it now".into())))
    }

    async fn finish(
        &self,
        held: &Held,
        outcome: Option<(State, Option<String>)>,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let now = crate::state::now_ms().to_string();
        let (set, condition, mut values) = match &outcome {
            Some((state, _)) => (
                "SET #state = :state, expires_at = :now, at_ms = :now",
                "#owner = :me",
                json!({ ":state": { "S": state.as_str() }, ":now": { "N": now } }),
            ),
            None => (
                "SET expires_at = :zero, at_ms = :now",
                "#owner = :me AND #state = :running",
                json!({ ":zero": { "N": "0" }, ":now": { "N": now }, ":running": { "S": "running" } }),
            ),
        };
        values[":me"] = json!({ "S": held.token });
        let set = match outcome.as_ref().and_then(|(_, reason)| reason.as_ref()) {
            Some(reason) => {
                values[":reason"] = json!({ "S": reason });
                format!("{set}, #reason = :reason")
            }
            None => set.to_string(),
        };
        self.update(&held.key, &set, condition, values, deadline)
            .await
            .map_err(|e| {
                e.unwrap_or_else(|| StoreError::Lost("another instance took the lease over first".into()))
            })
    }

    fn describe(&self) -> String {
        format!("dynamodb table {}", self.table)
    }
}

/// A failed call as the protocol sees it: None for a condition that did not hold.
fn classify(e: CallError) -> Option<StoreError> {
    if e.code() == Some(CONDITION_FAILED) {
        return None;
    }
    Some(match e.is_transient() {
        true => StoreError::Transient(e.to_string()),
        false => StoreError::Final(e.to_string()),
    })
}

/// An item as a record, and whether its lease lives at `now_ms`.
fn found(item: &Value, now_ms: u64) -> Result<Found, String> {
    let attributes: BTreeMap<String, Value> =
        serde_json::from_value(item.clone()).map_err(|_| "the lease's item is not a DynamoDB item")?;
    let text = |name: &str| {
        attributes
            .get(name)
            .and_then(|v| v.get("S"))
            .and_then(Value::as_str)
    };
    let number = |name: &str| {
        attributes
            .get(name)
            .and_then(|v| v.get("N"))
            .and_then(Value::as_str)
            .and_then(|n| n.parse::<u64>().ok())
    };
    let state = text("state")
        .and_then(State::parse)
        .ok_or("the lease's item has no state of running, done or failed")?;
    let record = Record {
        state,
        instance: text("instance").unwrap_or("an unnamed instance").to_string(),
        reason: text("reason").map(String::from),
        at_ms: number("at_ms").unwrap_or(0),
    };
    let live = number("expires_at").is_some_and(|expires| expires >= now_ms);
    Ok(Found { record, live })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(state: &str, expires_at: u64) -> Value {
        json!({
            "pk": { "S": "kiln/tasks/migrate/v1/abc" },
            "state": { "S": state },
            "owner": { "S": "i-0002/00ff" },
            "instance": { "S": "i-0002" },
            "expires_at": { "N": expires_at.to_string() },
            "at_ms": { "N": "5" },
        })
    }

    #[test]
    fn a_lease_lives_until_its_expiry_by_the_readers_clock() {
        let now = 1_700_000_000_000;
        assert!(found(&item("running", now), now).unwrap().live);
        assert!(!found(&item("running", now - 1), now).unwrap().live);
        let done = found(&item("done", 0), now).unwrap();
        assert_eq!(
            (done.record.state, done.record.instance.as_str(), done.live),
            (State::Done, "i-0002", false)
        );
    }

    #[test]
    fn an_item_of_another_shape_is_refused_not_guessed() {
        assert!(found(&item("paused", 1), 0).is_err());
        assert!(found(&json!({ "pk": { "S": "x" } }), 0).is_err());
        assert!(found(&json!([1, 2]), 0).is_err());
        let no_expiry = json!({ "state": { "S": "running" }, "instance": { "S": "i-1" } });
        assert!(!found(&no_expiry, 0).unwrap().live, "no expiry: a dead holder");
    }

    #[test]
    fn a_condition_that_does_not_hold_is_an_answer_and_throttling_is_transient() {
        let aws = |code: &str, status: u16| CallError::Aws {
            service: "dynamodb",
            action: "PutItem".into(),
            endpoint: "http://x".into(),
            status,
            error: crate::aws::AwsError {
                code: code.into(),
                message: "m".into(),
            },
            attempts: 1,
        };
        assert_eq!(classify(aws(CONDITION_FAILED, 400)), None);
        assert!(matches!(
            classify(aws("ProvisionedThroughputExceededException", 400)),
            Some(StoreError::Transient(_))
        ));
        assert!(matches!(
            classify(aws("ResourceNotFoundException", 400)),
            Some(StoreError::Final(_))
        ));
    }
}
