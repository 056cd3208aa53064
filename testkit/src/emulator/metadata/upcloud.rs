//! UpCloud server metadata: `/metadata/v1.json` (the whole server, `user_data` in it) and the
//! same as text leaves under `/metadata/v1/`. No header is required.

use super::{Answer, Req, State};
use serde_json::json;

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    let i = &state.options.instance;
    let user_data = i
        .user_data
        .as_deref()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .unwrap_or_default();
    match req.path.as_str() {
        "/metadata/v1.json" => super::json(
            200,
            &json!({
                "cloud_name": "upcloud",
                "instance_id": i.id,
                "hostname": i.hostname,
                "platform": "servers",
                "subplatform": "metadata (http://169.254.169.254)",
                "public_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln kiln"],
                "region": i.region,
                "network": {
                    "interfaces": [
                        { "index": 1, "ip_addresses": [{ "address": "94.237.0.7", "dhcp": true, "dns": ["94.237.127.9"], "family": "IPv4", "floating": false, "gateway": "94.237.0.1", "network": "94.237.0.0/22" }],
                          "mac": "de:ad:be:ef:00:01", "network_id": "031cbd2e-1e8e-4b9f-b1c7-8c2d0a0a0001", "type": "public" },
                        { "index": 2, "ip_addresses": [{ "address": "10.6.3.27", "dhcp": true, "dns": null, "family": "IPv4", "floating": false, "gateway": "10.6.0.1", "network": "10.6.0.0/22" }],
                          "mac": "de:ad:be:ef:00:02", "network_id": "03000000-0000-4000-8046-000000000000", "type": "utility" },
                        { "index": 3, "ip_addresses": [{ "address": i.local_ipv4, "dhcp": true, "dns": null, "family": "IPv4", "floating": false, "gateway": "10.0.0.1", "network": "10.0.0.0/24" }],
                          "mac": "de:ad:be:ef:00:03", "network_id": "035a0a0a-8a8a-4a4a-8a8a-0a0a0a0a0a0a", "type": "private" },
                    ],
                    "dns": ["94.237.127.9", "94.237.40.9"],
                },
                "storage": { "disks": [] },
                "tags": i.tags.keys().collect::<Vec<_>>(),
                "user_data": user_data,
                "vendor_data": "",
            }),
        ),
        "/metadata/v1/instance_id" => super::text(200, i.id.clone()),
        "/metadata/v1/hostname" => super::text(200, i.hostname.clone()),
        "/metadata/v1/region" => super::text(200, i.region.clone()),
        "/metadata/v1/user_data" => super::text(200, user_data),
        _ => super::text(404, "Not Found"),
    }
}
