//! Consul's sessions and KV store, as the HTTP API documents them (`/v1/session/*`,
//! `/v1/kv/*`) and the agent behaves:
//!
//! - `PUT /v1/session/create` `{Name, TTL, Behavior, LockDelay}` → `{"ID"}`; a TTL outside
//!   10s..24h is a 400, a `Behavior` other than `release` or `delete` too. `LockDelay` defaults
//!   to 15s.
//! - `PUT /v1/session/renew/<id>` → `[session]`, 404 when there is no such session (expired or
//!   destroyed); `PUT /v1/session/destroy/<id>` → `true`; `GET /v1/session/info/<id>` →
//!   `[session]` or `[]`.
//! - `GET /v1/kv/<key>` → `[{LockIndex, Key, Flags, Value (base64), Session, CreateIndex,
//!   ModifyIndex}]` (`Session` only while locked), 404 when absent.
//! - `PUT /v1/kv/<key>` with the body as the value → `true`/`false`: `?acquire=<session>` locks
//!   the key for the session (false if another session holds it or its lock delay runs; an
//!   unknown session is a 500), updating the value; `?release=<session>` unlocks it (false when
//!   that session does not hold it), updating the value; `?cas=<index>` writes only if the key's
//!   `ModifyIndex` is that (0: only if the key does not exist). `DELETE` removes it.
//! - A session with a TTL that is not renewed within it is invalidated (Consul allows up to twice
//!   the TTL; this emulator takes exactly the TTL). Invalidating or destroying a session releases
//!   its locks (`release`) or deletes its keys (`delete`), and each of those keys refuses an
//!   `acquire` for the session's `LockDelay`. An explicit `?release=` sets no lock delay.

use super::{json_reply, parse_go_duration, query_param, reply};
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TTL_MIN: Duration = Duration::from_secs(10);
const TTL_MAX: Duration = Duration::from_secs(86_400);
const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
struct Session {
    id: String,
    name: String,
    ttl: Option<Duration>,
    /// `release` or `delete`.
    behavior: String,
    lock_delay: Duration,
    /// When it is invalidated unless renewed.
    expires: Option<Instant>,
    create_index: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    flags: u64,
    session: Option<String>,
    lock_index: u64,
    create_index: u64,
    modify_index: u64,
}

/// Sessions, keys, lock delays and the index every write bumps.
#[derive(Default)]
pub(super) struct Store {
    sessions: BTreeMap<String, Session>,
    entries: BTreeMap<String, Entry>,
    /// Keys that refuse an acquire until then.
    lock_delays: BTreeMap<String, Instant>,
    index: u64,
    /// Sessions made so far (for their IDs).
    made: u64,
}

type Answer = Response<Full<Bytes>>;

/// The answer to a sessions or KV request; None for any other route.
pub(super) fn handle(
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    store: &mut Store,
) -> Option<Answer> {
    store.expire(Instant::now());
    if let Some(rest) = path.strip_prefix("/v1/session/") {
        return Some(store.session_route(method, rest, body));
    }
    let key = path.strip_prefix("/v1/kv/")?;
    Some(match *method {
        Method::GET => store.get(key),
        Method::PUT => store.put(key, query, body),
        Method::DELETE => {
            store.entries.remove(key);
            store.index += 1;
            json_reply(StatusCode::OK, &json!(true))
        }
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    })
}

impl Store {
    pub(super) fn entry(&self, key: &str) -> Option<(Vec<u8>, Option<String>)> {
        self.entries
            .get(key)
            .map(|e| (e.value.clone(), e.session.clone()))
    }

    pub(super) fn keys(&self, prefix: &str) -> Vec<String> {
        self.entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn session_route(&mut self, method: &Method, rest: &str, body: &[u8]) -> Answer {
        match (method, rest.split_once('/').unwrap_or((rest, ""))) {
            (&Method::PUT, ("create", "")) => self.create(body),
            (&Method::PUT, ("renew", id)) => match self.sessions.get_mut(id) {
                Some(session) => {
                    session.expires = session.ttl.map(|ttl| Instant::now() + ttl);
                    let session = session.clone();
                    json_reply(StatusCode::OK, &json!([session_json(&session)]))
                }
                None => reply(StatusCode::NOT_FOUND, format!("Session id '{id}' not found")),
            },
            (&Method::PUT, ("destroy", id)) => {
                self.invalidate(id, Instant::now());
                json_reply(StatusCode::OK, &json!(true))
            }
            (&Method::GET, ("info", id)) => {
                let found: Vec<Value> = self.sessions.get(id).map(session_json).into_iter().collect();
                json_reply(StatusCode::OK, &Value::Array(found))
            }
            (&Method::GET, ("list", "")) => {
                let all: Vec<Value> = self.sessions.values().map(session_json).collect();
                json_reply(StatusCode::OK, &Value::Array(all))
            }
            _ => reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }

    fn create(&mut self, body: &[u8]) -> Answer {
        let v: Value = match body {
            [] => json!({}),
            body => match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return reply(StatusCode::BAD_REQUEST, format!("Request decode failed: {e}")),
            },
        };
        let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let ttl = match text("TTL").as_str() {
            "" => None,
            t => match parse_go_duration(t) {
                Some(ttl) if (TTL_MIN..=TTL_MAX).contains(&ttl) => Some(ttl),
                Some(_) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        "Bad request: TTL must be between [10s=24h0m0s]",
                    );
                }
                None => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        format!("Request decode failed: TTL {t:?}"),
                    );
                }
            },
        };
        let behavior = match text("Behavior").as_str() {
            "" | "release" => "release",
            "delete" => "delete",
            other => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid Behavior setting '{other}'"),
                );
            }
        };
        let lock_delay = match v.get("LockDelay") {
            None | Some(Value::Null) => DEFAULT_LOCK_DELAY,
            Some(Value::Number(n)) => Duration::from_secs(n.as_u64().unwrap_or(0)),
            Some(Value::String(d)) => match parse_go_duration(d) {
                Some(d) => d,
                None => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        format!("Request decode failed: LockDelay {d:?}"),
                    );
                }
            },
            Some(_) => return reply(StatusCode::BAD_REQUEST, "Request decode failed: LockDelay"),
        };
        self.made += 1;
        self.index += 1;
        let id = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), self.made);
        let session = Session {
            id: id.clone(),
            name: text("Name"),
            ttl,
            behavior: behavior.into(),
            lock_delay,
            expires: ttl.map(|ttl| Instant::now() + ttl),
            create_index: self.index,
        };
        self.sessions.insert(id.clone(), session);
        json_reply(StatusCode::OK, &json!({ "ID": id }))
    }

    /// Sessions past their TTL are invalidated, as the agent's timers do.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.expires.is_some_and(|at| at <= now))
            .map(|s| s.id.clone())
            .collect();
        for id in expired {
            self.invalidate(&id, now);
        }
    }

    /// The session goes; its locks are released (or its keys deleted), each key under its lock
    /// delay.
    fn invalidate(&mut self, id: &str, now: Instant) {
        let Some(session) = self.sessions.remove(id) else {
            return;
        };
        self.index += 1;
        let held: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.session.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for key in held {
            if session.behavior == "delete" {
                self.entries.remove(&key);
            } else if let Some(e) = self.entries.get_mut(&key) {
                e.session = None;
                e.modify_index = self.index;
            }
            if !session.lock_delay.is_zero() {
                self.lock_delays.insert(key, now + session.lock_delay);
            }
        }
    }

    fn get(&self, key: &str) -> Answer {
        match self.entries.get(key) {
            Some(e) => json_reply(StatusCode::OK, &json!([entry_json(key, e)])),
            None => reply(StatusCode::NOT_FOUND, ""),
        }
    }

    fn put(&mut self, key: &str, query: &str, body: &[u8]) -> Answer {
        let done = if let Some(session) = query_param(query, "acquire") {
            match self.acquire(key, &session, body) {
                Ok(done) => done,
                Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        } else if let Some(session) = query_param(query, "release") {
            self.release(key, &session, body)
        } else if let Some(cas) = query_param(query, "cas") {
            let Ok(cas) = cas.parse::<u64>() else {
                return reply(StatusCode::BAD_REQUEST, "Invalid cas index");
            };
            let current = self.entries.get(key).map_or(0, |e| e.modify_index);
            current == cas && self.set(key, body, None)
        } else {
            let session = self.entries.get(key).and_then(|e| e.session.clone());
            self.set(key, body, session)
        };
        json_reply(StatusCode::OK, &json!(done))
    }

    fn acquire(&mut self, key: &str, session: &str, body: &[u8]) -> Result<bool, String> {
        if !self.sessions.contains_key(session) {
            return Err(format!("invalid session \"{session}\""));
        }
        if self
            .lock_delays
            .get(key)
            .is_some_and(|until| *until > Instant::now())
        {
            return Ok(false);
        }
        match self.entries.get(key).and_then(|e| e.session.as_deref()) {
            Some(holder) if holder != session => Ok(false),
            Some(_) => Ok(self.set(key, body, Some(session.to_string()))),
            None => {
                self.set(key, body, Some(session.to_string()));
                if let Some(e) = self.entries.get_mut(key) {
                    e.lock_index += 1;
                }
                Ok(true)
            }
        }
    }

    fn release(&mut self, key: &str, session: &str, body: &[u8]) -> bool {
        match self.entries.get(key).and_then(|e| e.session.as_deref()) {
            Some(holder) if holder == session => self.set(key, body, None),
            _ => false,
        }
    }

    /// Writes the value (and who holds the key); always true.
    fn set(&mut self, key: &str, body: &[u8], session: Option<String>) -> bool {
        self.index += 1;
        let index = self.index;
        let e = self.entries.entry(key.to_string()).or_insert(Entry {
            value: Vec::new(),
            flags: 0,
            session: None,
            lock_index: 0,
            create_index: index,
            modify_index: index,
        });
        e.value = body.to_vec();
        e.session = session;
        e.modify_index = index;
        true
    }
}

fn session_json(s: &Session) -> Value {
    json!({
        "ID": s.id, "Name": s.name, "Node": super::NODE,
        "LockDelay": u64::try_from(s.lock_delay.as_nanos()).unwrap_or(u64::MAX),
        "Behavior": s.behavior,
        "TTL": s.ttl.map(|t| format!("{}s", t.as_secs())).unwrap_or_default(),
        "NodeChecks": ["serfHealth"], "ServiceChecks": null,
        "CreateIndex": s.create_index, "ModifyIndex": s.create_index,
    })
}

fn entry_json(key: &str, e: &Entry) -> Value {
    let value = match e.value.is_empty() {
        true => Value::Null,
        false => Value::String(base64::engine::general_purpose::STANDARD.encode(&e.value)),
    };
    let mut v = json!({
        "LockIndex": e.lock_index, "Key": key, "Flags": e.flags, "Value": value,
        "CreateIndex": e.create_index, "ModifyIndex": e.modify_index,
    });
    if let Some(session) = &e.session {
        v["Session"] = json!(session);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::super::ConsulAgent;
    use super::*;
    use crate::wait::http_request;

    fn call(agent: &ConsulAgent, method: &str, path: &str, body: &str) -> (u16, String) {
        let r = http_request(method, &format!("{}{path}", agent.url()), &[], body.as_bytes()).unwrap();
        (r.status, r.body)
    }

    fn session(agent: &ConsulAgent, body: &str) -> String {
        let (status, created) = call(agent, "PUT", "/v1/session/create", body);
        assert_eq!(status, 200, "{created}");
        serde_json::from_str::<Value>(&created).unwrap()["ID"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_lock_is_one_sessions_until_released_and_cas_0_writes_once() {
        let agent = ConsulAgent::start();
        let (a, b) = (
            session(&agent, r#"{"TTL":"10s","LockDelay":"0s"}"#),
            session(&agent, "{}"),
        );
        let acquire = |s: &str, v: &str| call(&agent, "PUT", &format!("/v1/kv/app/lock?acquire={s}"), v);
        assert_eq!(acquire(&a, "held by a"), (200, "true".into()));
        assert_eq!(acquire(&b, "held by b"), (200, "false".into()));
        assert_eq!(
            acquire(&a, "still a"),
            (200, "true".into()),
            "the holder may write"
        );
        let (status, entry) = call(&agent, "GET", "/v1/kv/app/lock", "");
        let entry: Value = serde_json::from_str(&entry).unwrap();
        assert_eq!(
            (
                status,
                entry[0]["Session"].as_str(),
                entry[0]["LockIndex"].as_u64()
            ),
            (200, Some(a.as_str()), Some(1))
        );
        assert_eq!(
            entry[0]["Value"],
            base64::engine::general_purpose::STANDARD.encode("still a")
        );
        assert_eq!(
            call(&agent, "PUT", &format!("/v1/kv/app/lock?release={b}"), "x").1,
            "false"
        );
        assert_eq!(
            call(&agent, "PUT", &format!("/v1/kv/app/lock?release={a}"), "free").1,
            "true"
        );
        assert_eq!(agent.kv("app/lock"), Some((b"free".to_vec(), None)));
        assert_eq!(
            acquire(&b, "b now"),
            (200, "true".into()),
            "no lock delay after a release"
        );

        assert_eq!(call(&agent, "PUT", "/v1/kv/app/outcome?cas=0", "first").1, "true");
        assert_eq!(
            call(&agent, "PUT", "/v1/kv/app/outcome?cas=0", "second").1,
            "false"
        );
        assert_eq!(agent.kv("app/outcome").unwrap().0, b"first");
        assert_eq!(call(&agent, "GET", "/v1/kv/app/nothing", "").0, 404);
        let (status, error) = acquire("no-such-session", "x");
        assert_eq!(status, 500, "{error}");
    }

    #[test]
    fn a_destroyed_session_releases_its_locks_under_its_lock_delay() {
        let agent = ConsulAgent::start();
        let a = session(&agent, r#"{"TTL":"10s","LockDelay":"30s","Behavior":"release"}"#);
        let b = session(&agent, r#"{"TTL":"10s"}"#);
        call(&agent, "PUT", &format!("/v1/kv/k?acquire={a}"), "a");
        assert_eq!(call(&agent, "PUT", &format!("/v1/session/renew/{a}"), "").0, 200);
        assert_eq!(
            call(&agent, "PUT", &format!("/v1/session/destroy/{a}"), "").1,
            "true"
        );
        assert_eq!(
            agent.kv("k"),
            Some((b"a".to_vec(), None)),
            "released, the value kept"
        );
        assert_eq!(
            call(&agent, "PUT", &format!("/v1/kv/k?acquire={b}"), "b").1,
            "false",
            "lock delay"
        );
        assert_eq!(call(&agent, "PUT", &format!("/v1/session/renew/{a}"), "").0, 404);
        assert_eq!(call(&agent, "GET", &format!("/v1/session/info/{a}"), "").1, "[]");
    }

    #[test]
    fn sessions_take_only_what_consul_takes() {
        let agent = ConsulAgent::start();
        for (body, says) in [
            (r#"{"TTL":"5s"}"#, "TTL must be between [10s=24h0m0s]"),
            (r#"{"TTL":"25h"}"#, "TTL must be between"),
            (r#"{"Behavior":"keep"}"#, "Invalid Behavior setting 'keep'"),
            ("not json", "Request decode failed"),
        ] {
            let (status, error) = call(&agent, "PUT", "/v1/session/create", body);
            assert_eq!(status, 400, "{body}: {error}");
            assert!(error.contains(says), "{body}: {error}");
        }
    }

    #[test]
    fn a_session_not_renewed_within_its_ttl_is_invalidated() {
        let mut store = Store::default();
        let created = store.create(br#"{"TTL":"10s","LockDelay":"1s","Behavior":"delete"}"#);
        assert_eq!(created.status(), StatusCode::OK);
        let id = store.sessions.keys().next().unwrap().clone();
        assert!(store.acquire("gone", &id, b"x").unwrap());
        let later = Instant::now() + Duration::from_secs(11);
        store.expire(later);
        assert!(store.sessions.is_empty());
        assert!(
            !store.entries.contains_key("gone"),
            "behavior delete removes its keys"
        );
        assert!(store.lock_delays.contains_key("gone"));
    }
}
