//! DigitalOcean droplet metadata: `/metadata/v1.json` (the whole droplet) and the same facts
//! as text under `/metadata/v1/`. No header is required; `user_data` is absent when the
//! droplet has none.

use super::{Answer, Req, State, listing};
use serde_json::{Value, json};

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    let i = &state.options.instance;
    let ok = |body: String| super::text(200, body);
    match req.path.as_str() {
        "/metadata/v1.json" => super::json(200, &document(state)),
        "/metadata/v1" | "/metadata/v1/" => ok(listing([
            "id",
            "hostname",
            "user-data",
            "vendor-data",
            "public-keys",
            "region",
            "interfaces/",
            "tags/",
        ])),
        "/metadata/v1/id" => ok(i.id.clone()),
        "/metadata/v1/hostname" => ok(i.hostname.clone()),
        "/metadata/v1/region" => ok(i.region.clone()),
        "/metadata/v1/interfaces/private/0/ipv4/address" => ok(i.local_ipv4.clone()),
        "/metadata/v1/user-data" => match &i.user_data {
            Some(d) => super::answer(200, "text/plain", d.clone()),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn not_found() -> Answer {
    super::text(404, "not found")
}

fn document(state: &State) -> Value {
    let i = &state.options.instance;
    let id: Value =
        i.id.parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(i.id.clone()));
    let mut doc = json!({
        "droplet_id": id,
        "hostname": i.hostname,
        "vendor_data": "#cloud-config\n",
        "public_keys": [],
        "auth_key": "",
        "region": i.region,
        "interfaces": {
            "private": [{
                "ipv4": { "ip_address": i.local_ipv4, "netmask": "255.255.0.0", "gateway": "0.0.0.0" },
                "mac": "f6:16:de:9a:9e:d9",
                "type": "private",
            }],
            "public": [{
                "ipv4": { "ip_address": "203.0.113.7", "netmask": "255.255.240.0", "gateway": "203.0.113.1" },
                "mac": "f6:16:de:9a:9e:d8",
                "type": "public",
            }],
        },
        "floating_ip": { "ipv4": { "active": false } },
        "dns": { "nameservers": ["67.207.67.2", "67.207.67.3"] },
        "tags": i.tags.keys().collect::<Vec<_>>(),
        "features": { "dhcp_enabled": false },
    });
    if let Some(data) = &i.user_data {
        doc["user_data"] = Value::String(String::from_utf8_lossy(data).into_owned());
    }
    doc
}
