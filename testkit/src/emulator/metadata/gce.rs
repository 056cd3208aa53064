//! Google Compute Engine metadata server.
//!
//! Every request must carry `Metadata-Flavor: Google` (else 403) and must not carry
//! `X-Forwarded-For` (403); every answer carries `Metadata-Flavor: Google`. Directories end in
//! `/` (without it: 301 to it) and list their entries, or answer JSON with `?recursive=true`;
//! leaves answer text, or a JSON value with `?alt=json`. Instance attributes hold custom
//! metadata, `user-data` among them.
//!
//! Every 200 answer carries an `ETag` (a hash of the answer). `?wait_for_change=true` makes a
//! hanging GET: it is answered when the value's ETag differs from `last_etag` (at once if it
//! already does; without `last_etag`, from the value when the request came), or after
//! `timeout_sec` seconds with the current value (at once, whatever the ETag, with
//! `Options::gce_never_waits`). `instance/preempted` (`TRUE`/`FALSE`) and
//! `instance/maintenance-event` come from [`super::Notices`].

use super::{Answer, Req, State, listing};
use serde_json::{Value, json};
use std::time::Duration;

const PREFIX: &str = "/computeMetadata/v1";

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    let mut answer = route(state, req);
    answer
        .headers_mut()
        .insert("metadata-flavor", "Google".parse().unwrap());
    answer
}

fn route(state: &State, req: &Req) -> Answer {
    if req.header("metadata-flavor") != Some("Google") {
        return super::answer(
            403,
            "text/html; charset=UTF-8",
            "Your client does not have permission to get URL from this server. Missing Metadata-Flavor:Google header.",
        );
    }
    if req.headers.contains_key("x-forwarded-for") {
        return super::answer(
            403,
            "text/html; charset=UTF-8",
            "Forbidden: X-Forwarded-For is not allowed.",
        );
    }
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    let Some(rest) = req.path.strip_prefix(PREFIX) else {
        return not_found();
    };
    if let Some(account) = rest
        .strip_prefix("/instance/service-accounts/")
        .and_then(|r| r.strip_suffix("/token"))
    {
        return token(state, account);
    }
    let tree = tree(state);
    let segments: Vec<&str> = rest
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut node = &tree;
    for segment in &segments {
        node = match node {
            Value::Object(map) => match map.get(*segment) {
                Some(next) => next,
                None => return not_found(),
            },
            Value::Array(items) => match segment.parse::<usize>().ok().and_then(|n| items.get(n)) {
                Some(next) => next,
                None => return not_found(),
            },
            _ => return not_found(),
        };
    }
    let is_dir = matches!(node, Value::Object(_) | Value::Array(_));
    let recursive = req.query.get("recursive").is_some_and(|v| v == "true");
    let alt_json = req.query.get("alt").is_some_and(|v| v == "json");
    if is_dir && !req.path.ends_with('/') {
        let mut answer = super::text(301, "");
        answer
            .headers_mut()
            .insert("location", format!("{}/", req.path).parse().unwrap());
        return answer;
    }
    match node {
        _ if is_dir && recursive => served("application/json", to_wire(node).to_string()),
        Value::Object(map) => served(
            "application/text",
            listing(map.iter().map(|(k, v)| match v {
                Value::Object(_) | Value::Array(_) => format!("{k}/"),
                _ => k.clone(),
            })),
        ),
        Value::Array(items) => served(
            "application/text",
            listing((0..items.len()).map(|n| format!("{n}/"))),
        ),
        leaf if alt_json => served("application/json", leaf.to_string()),
        Value::String(s) => served("application/text", s.clone()),
        other => served("application/text", other.to_string()),
    }
}

/// A 200 answer with its ETag.
fn served(content_type: &str, body: String) -> Answer {
    let etag = super::notices::etag(&body);
    let mut answer = super::answer(200, content_type, body);
    answer.headers_mut().insert("etag", etag.parse().unwrap());
    answer
}

/// A hanging GET (`?wait_for_change=true`).
pub(super) fn waits(req: &Req) -> bool {
    req.query.get("wait_for_change").is_some_and(|v| v == "true")
}

/// Answers once the value's ETag differs from the one the client has, or at `timeout_sec`.
pub(super) async fn wait_for_change(state: &State, req: &Req) -> Answer {
    let mut changes = state.changes.subscribe();
    let now = handle(state, req);
    let Some(current) = etag_of(&now) else {
        return now;
    };
    let known = req
        .query
        .get("last_etag")
        .cloned()
        .unwrap_or_else(|| current.clone());
    if known != current {
        return now;
    }
    let timeout = req
        .query
        .get("timeout_sec")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let _waiting = Waiting::count(state);
    let changed = async {
        loop {
            if changes.changed().await.is_err() {
                return handle(state, req);
            }
            let answer = handle(state, req);
            if etag_of(&answer).is_none_or(|e| e != known) {
                return answer;
            }
        }
    };
    match timeout {
        Some(t) => match tokio::time::timeout(t, changed).await {
            Ok(answer) => answer,
            Err(_) => handle(state, req),
        },
        None => changed.await,
    }
}

/// Counts a hanging GET in `State::waiting` while it waits (however its wait ends).
struct Waiting<'a>(&'a State);

impl<'a> Waiting<'a> {
    fn count(state: &'a State) -> Waiting<'a> {
        state.waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Waiting(state)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn etag_of(answer: &Answer) -> Option<String> {
    answer.headers().get("etag")?.to_str().ok().map(str::to_string)
}

/// The service account's OAuth2 access token, as `gcloud` and the client libraries get it.
fn token(state: &State, account: &str) -> Answer {
    let known = account == "default" || account == SERVICE_ACCOUNT;
    if !state.options.identity || !known {
        return not_found();
    }
    let token = state.options.access_tokens.issue("gce");
    super::json(
        200,
        &json!({ "access_token": token, "expires_in": 3599, "token_type": "Bearer" }),
    )
}

/// The instance's default service account.
const SERVICE_ACCOUNT: &str = "123456789012-compute@developer.gserviceaccount.com";

fn not_found() -> Answer {
    super::answer(404, "text/html; charset=UTF-8", "Not Found")
}

/// The metadata tree in its path shape (`network-interfaces`, kebab-case).
fn tree(state: &State) -> Value {
    let i = &state.options.instance;
    let mut attributes = serde_json::Map::new();
    for (k, v) in &i.tags {
        attributes.insert(k.clone(), Value::String(v.clone()));
    }
    if let Some(data) = &i.user_data {
        attributes.insert(
            "user-data".into(),
            Value::String(String::from_utf8_lossy(data).into_owned()),
        );
    }
    let project: serde_json::Map<String, Value> = i
        .project_attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let id: Value =
        i.id.parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(i.id.clone()));
    let notices = state.notices.lock().unwrap();
    json!({
        "instance": {
            "attributes": attributes,
            "hostname": i.hostname,
            "id": id,
            "maintenance-event": notices.maintenance_event,
            "preempted": if notices.preempted { "TRUE" } else { "FALSE" },
            "machine-type": "projects/123456789012/machineTypes/e2-small",
            "name": i.hostname.split('.').next().unwrap_or(""),
            "service-accounts": service_accounts(state),
            "network-interfaces": [{
                "ip": i.local_ipv4,
                "network": "projects/123456789012/networks/default",
            }],
            "tags": [],
            "zone": format!("projects/123456789012/zones/{}", i.zone),
        },
        "project": {
            "attributes": project,
            "numeric-project-id": 123456789012u64,
            "project-id": "kiln-test",
        },
    })
}

fn service_accounts(state: &State) -> Value {
    if !state.options.identity {
        return json!({});
    }
    let account = json!({
        "aliases": ["default"],
        "email": SERVICE_ACCOUNT,
        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
    });
    json!({ "default": account.clone(), SERVICE_ACCOUNT: account })
}

/// Recursive answers use camelCase keys (`networkInterfaces`), except inside attributes,
/// whose keys are the user's.
fn to_wire(node: &Value) -> Value {
    fn convert(v: &Value, user_keys: bool) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let key = if user_keys { k.clone() } else { camel(k) };
                        (key, convert(v, k == "attributes"))
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| convert(v, false)).collect()),
            other => other.clone(),
        }
    }
    // A request for an attributes directory itself keeps the user's keys.
    let is_attributes = node.as_object().is_some_and(|m| m.values().all(Value::is_string));
    convert(node, is_attributes)
}

fn camel(key: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in key.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
