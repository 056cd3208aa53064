//! Akamai (Linode) metadata service. `PUT /v1/token` (`Metadata-Token-Expiry-Seconds`,
//! 1..86400, 3600 when absent) gives a token; every other request must carry it in
//! `Metadata-Token`, else 401. `/v1/instance` and `/v1/network` answer JSON when asked with
//! `Accept: application/json`, `key: value` text otherwise; `/v1/user-data` is base64 (404 when
//! the instance has none).

use super::{Answer, Req, State, session};
use base64::Engine;
use serde_json::{Value, json};
use std::time::Duration;

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.path == "/v1/token" {
        if req.method != hyper::Method::PUT {
            return super::text(405, "Method Not Allowed");
        }
        let ttl = match req.header("metadata-token-expiry-seconds") {
            None => Some(Duration::from_secs(3600)),
            Some(_) => session::ttl(req, "metadata-token-expiry-seconds", 1..=86400),
        };
        return match ttl {
            Some(ttl) => super::text(200, session::issue(state, ttl)),
            None => errors(400, "Invalid Metadata-Token-Expiry-Seconds"),
        };
    }
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    if !session::valid(state, req.header("metadata-token")) {
        return errors(401, "Unauthorized");
    }
    let i = &state.options.instance;
    let wants_json = req.header("accept") == Some("application/json");
    let document = |doc: Value| match wants_json {
        true => super::json(200, &doc),
        false => super::text(200, as_text(&doc)),
    };
    match req.path.as_str() {
        "/v1/instance" => document(json!({
            "id": i.id.parse::<u64>().map(Value::from).unwrap_or_else(|_| i.id.clone().into()),
            "host_uuid": "5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80",
            "label": i.hostname,
            "region": i.region,
            "type": "g6-standard-1",
            "tags": i.tags.keys().collect::<Vec<_>>(),
            "specs": { "vcpus": 1, "memory": 2048, "disk": 51200, "transfer": 2000, "gpus": 0 },
            "backups": { "enabled": false, "status": null },
        })),
        "/v1/network" => document(json!({
            "interfaces": [],
            "ipv4": { "public": ["203.0.113.7/32"], "private": [format!("{}/17", i.local_ipv4)], "shared": [] },
            "ipv6": { "slaac": "2600:3c03::f03c:94ff:fe00:1/128", "ranges": [], "link_local": "fe80::f03c:94ff:fe00:1/128", "shared_ranges": [] },
        })),
        "/v1/user-data" => match &i.user_data {
            Some(d) => super::text(200, base64::engine::general_purpose::STANDARD.encode(d)),
            None => errors(404, "Not found"),
        },
        _ => errors(404, "Not found"),
    }
}

fn errors(status: u16, reason: &str) -> Answer {
    super::json(status, &json!({ "errors": [{ "reason": reason }] }))
}

/// The `text/plain` form: `key: value` lines of the top-level scalars.
fn as_text(doc: &Value) -> String {
    let fields = doc.as_object().into_iter().flatten();
    fields
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some(format!("{k}: {s}\n")),
            Value::Number(n) => Some(format!("{k}: {n}\n")),
            _ => None,
        })
        .collect()
}
