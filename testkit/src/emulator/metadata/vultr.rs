//! Vultr instance metadata: `/v1.json` (the whole instance), `/v1/KEY` text leaves and
//! `/latest/user-data` (raw, 404 when none). No header is required.

use super::{Answer, Req, State};
use serde_json::json;

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    let i = &state.options.instance;
    match req.path.as_str() {
        "/v1.json" => super::json(
            200,
            &json!({
                "bgp": { "ipv4": {}, "ipv6": {} },
                "hostname": i.hostname,
                "instanceid": "a1b2c3d4",
                "instance-v2-id": i.id,
                "interfaces": [
                    { "ipv4": { "address": "203.0.113.7", "gateway": "203.0.113.1", "netmask": "255.255.254.0" },
                      "mac": "56:00:04:a8:3b:01", "network-type": "public" },
                    { "ipv4": { "address": i.local_ipv4, "gateway": "", "netmask": "255.255.240.0" },
                      "mac": "5a:00:04:a8:3b:01", "network-type": "private", "network-v2-id": "7c2f1b3a-6d0e-4b47-9a1f-0f9a4e6b2c11" },
                ],
                "public-keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln kiln"],
                "region": { "regioncode": i.region },
                "tags": i.tags.keys().collect::<Vec<_>>(),
            }),
        ),
        "/v1/hostname" => super::text(200, i.hostname.clone()),
        "/v1/instance-v2-id" => super::text(200, i.id.clone()),
        "/v1/region/regioncode" => super::text(200, i.region.clone()),
        "/latest/user-data" | "/user-data/user-data" => match &i.user_data {
            Some(d) => super::answer(200, "text/plain", d.clone()),
            None => super::text(404, "Not Found"),
        },
        _ => super::text(404, "Not Found"),
    }
}
