//! Exoscale instance metadata (CloudStack's layout): text leaves under `/1.0/meta-data/`, a
//! listing at `/1.0/meta-data/`, and `/1.0/user-data` (raw, 404 when none). No header.

use super::{Answer, Req, State, listing};

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    let i = &state.options.instance;
    let ok = |body: &str| super::text(200, body.to_string());
    match req.path.as_str() {
        "/1.0/meta-data" | "/1.0/meta-data/" => ok(&listing([
            "service-offering",
            "availability-zone",
            "local-ipv4",
            "local-hostname",
            "public-ipv4",
            "public-hostname",
            "instance-id",
            "vm-id",
            "public-keys",
            "cloud-identifier",
        ])),
        "/1.0/meta-data/instance-id" | "/1.0/meta-data/vm-id" => ok(&i.id),
        "/1.0/meta-data/availability-zone" => ok(&i.zone),
        "/1.0/meta-data/local-ipv4" => ok(&i.local_ipv4),
        "/1.0/meta-data/local-hostname" | "/1.0/meta-data/public-hostname" => ok(&i.hostname),
        "/1.0/meta-data/public-ipv4" => ok("203.0.113.7"),
        "/1.0/meta-data/service-offering" => ok("standard.medium"),
        "/1.0/meta-data/cloud-identifier" => ok("CloudStack-{kiln}"),
        "/1.0/meta-data/public-keys" => ok("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln kiln"),
        "/1.0/user-data" => match &i.user_data {
            Some(d) => super::answer(200, "text/plain", d.clone()),
            None => super::text(404, "Not Found"),
        },
        _ => super::text(404, "Not Found"),
    }
}
