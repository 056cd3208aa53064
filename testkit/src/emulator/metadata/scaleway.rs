//! Scaleway instance metadata (169.254.42.42): `/conf?format=json` (the whole instance; without
//! `format=json`, `KEY=VALUE` lines), and user-data keys under `/user_data/` (a listing with
//! `?format=json`, each key raw, 404 when absent), which Scaleway serves only to a request from
//! a source port below 1024: any other gets 403. No header is required.

use super::{Answer, Req, State};
use serde_json::{Value, json};

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    let i = &state.options.instance;
    if req.path == "/conf" {
        let doc = conf(state);
        return match req.query.get("format").map(String::as_str) {
            Some("json") => super::json(200, &doc),
            _ => super::text(200, as_lines(&doc)),
        };
    }
    let Some(key) = req.path.strip_prefix("/user_data") else {
        return super::text(404, "Not Found");
    };
    if req.peer.port() >= 1024 {
        return super::json(
            403,
            &json!({ "message": "user_data is only served to privileged ports (<1024)" }),
        );
    }
    match (key, &i.user_data) {
        ("" | "/", data) => super::json(
            200,
            &json!({ "user_data": data.iter().map(|_| "cloud-init").collect::<Vec<_>>() }),
        ),
        ("/cloud-init", Some(data)) => super::answer(200, "application/octet-stream", data.clone()),
        _ => super::json(404, &json!({ "message": "user_data key not found" })),
    }
}

fn conf(state: &State) -> Value {
    let i = &state.options.instance;
    json!({
        "id": i.id,
        "name": i.hostname,
        "hostname": i.hostname,
        "commercial_type": "DEV1-S",
        "organization": "8f3c2a1e-0b6d-4c5e-9f7a-1d2e3f4a5b6c",
        "project": "8f3c2a1e-0b6d-4c5e-9f7a-1d2e3f4a5b6c",
        "tags": i.tags.keys().collect::<Vec<_>>(),
        "state_detail": "booted",
        "public_ip": { "id": "0b8c2f1e-1111-4222-8333-944455566677", "address": "51.15.0.7", "dynamic": false, "family": "inet" },
        "private_ip": i.local_ipv4,
        "ipv6": null,
        "location": { "zone_id": i.zone, "platform_id": "14", "cluster_id": "38", "hypervisor_id": "1202", "node_id": "4" },
        "zone": i.zone,
        "ssh_public_keys": [],
        "timezone": "UTC",
    })
}

/// The text form: `KEY=VALUE` lines of the top-level scalars, upper-cased as Scaleway writes them.
fn as_lines(doc: &Value) -> String {
    let fields = doc.as_object().into_iter().flatten();
    fields
        .filter_map(|(k, v)| Some(format!("{}={}\n", k.to_uppercase(), v.as_str()?)))
        .collect()
}
