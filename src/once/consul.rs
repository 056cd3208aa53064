//! The lease in Consul's KV store, as `consul lock` holds one: a session with a TTL
//! (`PUT /v1/session/create`, renewed with `PUT /v1/session/renew/ID`) and a lock on a key
//! (`PUT /v1/kv/KEY?acquire=SESSION` answers `true` or `false`). A session that is not renewed
//! expires and releases its lock; Consul then refuses the lock to anyone for `LockDelay` (a
//! third of `lease_ttl` here), a guard against a holder that has not noticed yet.
//!
//! Two keys per task and release, under the lease's key: `lock` (the lease: its value names the
//! holder) and `outcome` (written once, `?cas=0`, before the lock is released). A lock is never
//! taken over an outcome: the key's value is replaced by the acquire itself, so the outcome
//! lives apart, and an instance that gets the lock reads it again and lets the lock go if an
//! outcome came meanwhile. Through the agent's client (`crate::lb::consul::ConsulApi`), with
//! `CONSUL_HTTP_TOKEN` as the ACL token.

use super::record::{Found, Record, State};
use super::{Held, Key, Store, StoreError};
use crate::config::Coordination;
use crate::lb::consul::ConsulApi;
use crate::net::Answer;
use base64::Engine;
use reqwest::Method;
use std::time::Duration;
use tokio::time::Instant;

/// A record is a few hundred bytes; more is not an answer to keep.
const BODY_LIMIT: usize = 64 * 1024;

pub struct ConsulStore {
    api: ConsulApi,
    instance: String,
    ttl: Duration,
}

/// One entry of `GET /v1/kv/KEY`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    session: Option<String>,
}

impl ConsulStore {
    pub fn new(agent: &str, plan: &Coordination, instance: &str) -> Result<ConsulStore, String> {
        Ok(ConsulStore {
            api: ConsulApi::new(agent).map_err(|e| format!("coordination: {e}"))?,
            instance: instance.to_string(),
            ttl: plan.lease_ttl,
        })
    }

    /// One call to the agent: its answer, or why there is none (transient).
    async fn call(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<String>,
        deadline: Instant,
    ) -> Result<Answer, StoreError> {
        if Instant::now() >= deadline {
            return Err(StoreError::Transient(
                "the deadline passed before the request was sent".into(),
            ));
        }
        let sent = self.api.send(method, path, query, body, BODY_LIMIT);
        match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(StoreError::Transient(e.0)),
            Err(_) => Err(StoreError::Transient(format!(
                "consul agent at {}: no answer in time",
                self.api.agent()
            ))),
        }
    }

    /// The entry of `KEY/leaf`, None when there is none.
    async fn get(&self, key: &Key, leaf: &str, deadline: Instant) -> Result<Option<Entry>, StoreError> {
        let path = kv_path(key, leaf);
        let answer = self.call(Method::GET, &refs(&path), &[], None, deadline).await?;
        if answer.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = self.ok(answer, "GET", &path)?;
        let mut entries: Vec<Entry> = serde_json::from_slice(&body)
            .map_err(|_| StoreError::Final(format!("{}: not a KV entry list", shown(&path))))?;
        Ok(entries.pop())
    }

    /// A KV write answering `true` or `false`.
    async fn put_kv(
        &self,
        key: &Key,
        leaf: &str,
        query: &[(&str, &str)],
        record: &Record,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        let path = kv_path(key, leaf);
        let body = serde_json::to_string(record).map_err(|e| StoreError::Final(e.to_string()))?;
        let answer = self
            .call(Method::PUT, &refs(&path), query, Some(body), deadline)
            .await?;
        let body = self.ok(answer, "PUT", &path)?;
        Ok(String::from_utf8_lossy(&body).trim() == "true")
    }

    /// The body of a 2xx answer; else an error (5xx transient, others final).
    fn ok(&self, answer: Answer, method: &str, path: &[String]) -> Result<bytes::Bytes, StoreError> {
        if answer.status.is_success() {
            return Ok(answer.body);
        }
        let first = String::from_utf8_lossy(&answer.body);
        let why = format!(
            "consul agent at {}: {method} {}: {}: {}",
            self.api.agent(),
            shown(path),
            answer.status,
            crate::terminal::peer_text(first.lines().next().unwrap_or("").trim())
        );
        match crate::net::transient_status(answer.status) {
            true => Err(StoreError::Transient(why)),
            false => Err(StoreError::Final(why)),
        }
    }

    /// A session for one lease: `release` behaviour, the lease's TTL, a third of it as
    /// `LockDelay`.
    async fn session(&self, key: &Key, deadline: Instant) -> Result<String, StoreError> {
        let body = serde_json::json!({
            "Name": format!("kiln {key} {}", self.instance),
            "TTL": format!("{}s", self.ttl.as_secs()),
            "Behavior": "release",
            "LockDelay": format!("{}ms", (self.ttl / 3).as_millis()),
        });
        let path = ["v1", "session", "create"].map(String::from);
        let answer = self
            .call(Method::PUT, &refs(&path), &[], Some(body.to_string()), deadline)
            .await?;
        let body = self.ok(answer, "PUT", &path)?;
        let created: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| StoreError::Final("session/create: not a session".into()))?;
        created["ID"]
            .as_str()
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
            .map(String::from)
            .ok_or_else(|| StoreError::Final("session/create: no session ID".into()))
    }

    /// Ends a session (its locks are released without a lock delay); a failure only logged: the
    /// session expires anyway.
    async fn destroy(&self, session: &str, deadline: Instant) {
        let path = ["v1", "session", "destroy", session].map(String::from);
        if let Err(e) = self.call(Method::PUT, &refs(&path), &[], None, deadline).await {
            tracing::debug!("consul: cannot destroy session {session}: {e:?}");
        }
    }

    fn record(&self, state: State, reason: Option<String>) -> Record {
        Record {
            state,
            instance: self.instance.clone(),
            reason,
            at_ms: crate::state::now_ms(),
        }
    }
}

#[async_trait::async_trait]
impl Store for ConsulStore {
    async fn read(&self, key: &Key, deadline: Instant) -> Result<Option<Found>, StoreError> {
        if let Some(entry) = self.get(key, "outcome", deadline).await? {
            let record = parse(&entry)?;
            return Ok(Some(Found { record, live: false }));
        }
        let Some(entry) = self.get(key, "lock", deadline).await? else {
            return Ok(None);
        };
        let live = entry.session.as_deref().is_some_and(|s| !s.is_empty());
        let mut record = parse(&entry).unwrap_or_else(|_| self.record(State::Running, None));
        // The lock's value only names its holder: an outcome lives in `outcome`.
        record.state = State::Running;
        Ok(Some(Found { record, live }))
    }

    async fn take(&self, key: &Key, deadline: Instant) -> Result<Option<Held>, StoreError> {
        let session = self.session(key, deadline).await?;
        let running = self.record(State::Running, None);
        let acquired = self
            .put_kv(key, "lock", &[("acquire", &session)], &running, deadline)
            .await;
        let held = Held {
            key: key.clone(),
            token: session.clone(),
        };
        match acquired {
            Ok(true) => {}
            Ok(false) => {
                self.destroy(&session, deadline).await;
                return Ok(None);
            }
            Err(e) => {
                self.destroy(&session, deadline).await;
                return Err(e);
            }
        }
        // An outcome recorded between the read and the lock: it stands; the lock goes.
        match self.get(key, "outcome", deadline).await {
            Ok(None) => Ok(Some(held)),
            other => {
                self.destroy(&session, deadline).await;
                other.map(|_| None)
            }
        }
    }

    async fn renew(&self, held: &Held, deadline: Instant) -> Result<(), StoreError> {
        let path = ["v1", "session", "renew", held.token.as_str()].map(String::from);
        let answer = self.call(Method::PUT, &refs(&path), &[], None, deadline).await?;
        if answer.status == reqwest::StatusCode::NOT_FOUND {
            return Err(StoreError::Lost("the Consul session expired".into()));
        }
        self.ok(answer, "PUT", &path).map(drop)
    }

    async fn finish(
        &self,
        held: &Held,
        outcome: Option<(State, Option<String>)>,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let result = match outcome {
            Some((state, reason)) => {
                let record = self.record(state, reason);
                match self
                    .put_kv(&held.key, "outcome", &[("cas", "0")], &record, deadline)
                    .await
                {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(StoreError::Lost("another outcome was recorded first".into())),
                    Err(e) => Err(e),
                }
            }
            None => Ok(()),
        };
        let running = self.record(State::Running, None);
        let released = self
            .put_kv(&held.key, "lock", &[("release", &held.token)], &running, deadline)
            .await;
        self.destroy(&held.token, deadline).await;
        result.and(released.map(drop))
    }

    fn describe(&self) -> String {
        format!("consul agent {}", self.api.agent())
    }
}

/// `v1/kv/PARTS.../leaf`.
fn kv_path(key: &Key, leaf: &str) -> Vec<String> {
    ["v1", "kv"]
        .into_iter()
        .chain(key.parts())
        .chain([leaf])
        .map(String::from)
        .collect()
}

fn refs(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

fn shown(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}

/// An entry's value (base64 of the record's JSON) as a record.
fn parse(entry: &Entry) -> Result<Record, StoreError> {
    let value = entry.value.as_deref().unwrap_or("");
    let json = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| StoreError::Final("the lease's record is not base64".into()))?;
    serde_json::from_slice(&json)
        .map_err(|_| StoreError::Final("the lease's record is not one kiln wrote".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, session: Option<&str>) -> Entry {
        Entry {
            value: Some(base64::engine::general_purpose::STANDARD.encode(value)),
            session: session.map(String::from),
        }
    }

    #[test]
    fn a_record_reads_from_its_base64_value_and_another_shape_is_refused() {
        let record = parse(&entry(
            r#"{"state":"failed","instance":"i-3","reason":"exit 2","at_ms":7}"#,
            None,
        ))
        .unwrap();
        assert_eq!(
            record,
            Record {
                state: State::Failed,
                instance: "i-3".into(),
                reason: Some("exit 2".into()),
                at_ms: 7
            }
        );
        assert!(parse(&entry("{}", None)).is_err());
        assert!(parse(&entry(r#"{"state":"paused","instance":"i"}"#, None)).is_err());
        let not_base64 = Entry {
            value: Some("%%%".into()),
            session: None,
        };
        assert!(parse(&not_base64).is_err());
    }

    #[test]
    fn the_kv_path_is_the_lease_key_and_its_leaf() {
        let key = Key(["kiln", "tasks", "migrate", "v1", "ab12"]
            .map(String::from)
            .to_vec());
        assert_eq!(
            shown(&kv_path(&key, "lock")),
            "/v1/kv/kiln/tasks/migrate/v1/ab12/lock"
        );
    }
}
