//! Alibaba Cloud ECS instance metadata, in hardened (token-only) mode. `PUT /latest/api/token`
//! with `X-aliyun-ecs-metadata-token-ttl-seconds: 1..21600` gives a token (400 without a valid
//! TTL, 403 when the PUT carries `X-Forwarded-For`); every GET must carry it in
//! `X-aliyun-ecs-metadata-token`: none is 403, an unknown or expired one 401. Text leaves under
//! `/latest/meta-data/`, raw `/latest/user-data` (404 when none).

use super::{Answer, Req, State, listing, session};

const NOT_FOUND: &str = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<html><head><title>404 - Not Found</title></head><body><h1>404 - Not Found</h1></body></html>\n";

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.path == "/latest/api/token" {
        if req.method != hyper::Method::PUT {
            return super::text(405, "Method Not Allowed");
        }
        if req.headers.contains_key("x-forwarded-for") {
            return super::text(403, "Forbidden");
        }
        return match session::ttl(req, "x-aliyun-ecs-metadata-token-ttl-seconds", 1..=21600) {
            Some(ttl) => super::text(200, session::issue(state, ttl)),
            None => super::text(400, "Bad Request"),
        };
    }
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    match req.header("x-aliyun-ecs-metadata-token") {
        None => return super::text(403, "Forbidden"),
        Some(token) if !session::valid(state, Some(token)) => return super::text(401, "Unauthorized"),
        Some(_) => {}
    }
    let i = &state.options.instance;
    let ok = |body: &str| super::text(200, body.to_string());
    match req.path.as_str() {
        "/latest/meta-data" | "/latest/meta-data/" => ok(&listing([
            "dns-conf/",
            "eipv4",
            "hostname",
            "image-id",
            "instance-id",
            "mac",
            "network-type",
            "private-ipv4",
            "public-keys/",
            "region-id",
            "vpc-id",
            "zone-id",
        ])),
        "/latest/meta-data/instance-id" => ok(&i.id),
        "/latest/meta-data/region-id" => ok(&i.region),
        "/latest/meta-data/zone-id" => ok(&i.zone),
        "/latest/meta-data/private-ipv4" => ok(&i.local_ipv4),
        "/latest/meta-data/hostname" => ok(&i.hostname),
        "/latest/meta-data/eipv4" => ok("203.0.113.7"),
        "/latest/meta-data/image-id" => ok("aliyun_3_x64_20G_alibase_20241218.vhd"),
        "/latest/meta-data/vpc-id" => ok("vpc-bp1kiln0example0000"),
        "/latest/user-data" => match &i.user_data {
            Some(d) => super::answer(200, "text/plain", d.clone()),
            None => super::answer(404, "text/html", NOT_FOUND),
        },
        _ => super::answer(404, "text/html", NOT_FOUND),
    }
}
