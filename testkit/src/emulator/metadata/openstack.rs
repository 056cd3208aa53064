//! OpenStack Nova metadata service: `/openstack/latest/meta_data.json` and `user_data`, plus
//! the EC2-compatible `/latest/meta-data/...` Nova serves beside it (IMDSv1 style, no token).
//! No header is required.

use super::{Answer, Req, State, listing};
use serde_json::json;

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    let i = &state.options.instance;
    let ok = |body: String| super::text(200, body);
    match req.path.as_str() {
        "/openstack" | "/openstack/" => ok(listing(["2012-08-10", "2013-04-04", "2016-06-30", "latest"])),
        "/openstack/latest" | "/openstack/latest/" => {
            let mut entries = vec!["meta_data.json", "network_data.json", "vendor_data.json"];
            if i.user_data.is_some() {
                entries.push("user_data");
            }
            ok(listing(entries))
        }
        "/openstack/latest/meta_data.json" => super::json(
            200,
            &json!({
                "uuid": i.id,
                "name": i.hostname.split('.').next().unwrap_or(""),
                "hostname": i.hostname,
                "availability_zone": i.zone,
                "launch_index": 0,
                "project_id": "6b3bb9a5e6f84e8aa6a5e1d2f2d0b7c4",
                "meta": i.tags,
                "public_keys": {},
                "devices": [],
            }),
        ),
        "/openstack/latest/vendor_data.json" => super::json(200, &json!({})),
        "/openstack/latest/user_data" | "/latest/user-data" => match &i.user_data {
            Some(d) => super::answer(200, "application/octet-stream", d.clone()),
            None => not_found(),
        },
        "/latest/meta-data/instance-id" => ok("i-00000001".into()),
        "/latest/meta-data/local-ipv4" => ok(i.local_ipv4.clone()),
        "/latest/meta-data/hostname" | "/latest/meta-data/local-hostname" => ok(i.hostname.clone()),
        "/latest/meta-data/placement/availability-zone" => ok(i.zone.clone()),
        _ => not_found(),
    }
}

fn not_found() -> Answer {
    super::answer(
        404,
        "text/html; charset=UTF-8",
        "404 Not Found\n\nThe resource could not be found.\n",
    )
}
