//! EC2 instance metadata service (IMDS).
//!
//! `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 1..21600` gives a token
//! (400 without a valid TTL, 403 when the PUT carries `X-Forwarded-For` or the endpoint is
//! disabled). GETs carry it in `X-aws-ec2-metadata-token`; an unknown or expired token is 401,
//! and so is no token at all when tokens are required. Missing paths are 404; directories list
//! their entries, one per line, sub-directories with a trailing `/`.
//!
//! Notices ([`super::Notices`]): `meta-data/autoscaling/target-lifecycle-state` (plain text, 404
//! outside a group), `meta-data/spot/instance-action` and
//! `meta-data/events/recommendations/rebalance` (JSON, 404 until there is one),
//! `meta-data/events/maintenance/scheduled` (a JSON array, `[]` when none).
//!
//! Every entry a listing names answers (cloud-init crawls `meta-data/` whole and gives up on the
//! first entry that does not), and the dated API versions (`/2021-03-23/...`, which cloud-init
//! asks for) serve what `/latest/` serves; `/` lists them.

use super::{Answer, Imds, Req, State, json, listing, random_token, text};
use hyper::Method;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const NOT_FOUND: &str = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<html><head><title>404 - Not Found</title></head><body><h1>404 - Not Found</h1></body></html>\n";

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    let options = &state.options;
    if options.imds == Imds::Disabled {
        return text(403, "Forbidden");
    }
    if req.path == "/latest/api/token" {
        return token(state, req);
    }
    if req.method != Method::GET && req.method != Method::HEAD {
        return text(405, "Method Not Allowed");
    }
    match req.header("x-aws-ec2-metadata-token") {
        Some(token) => {
            let tokens = state.tokens.lock().unwrap();
            match tokens.get(token) {
                Some(expiry) if Instant::now() < *expiry => {}
                _ => return text(401, "Unauthorized"),
            }
        }
        None if options.imds == Imds::V2Only => return text(401, "Unauthorized"),
        None => {}
    }
    match resource(state, &latest(&req.path)) {
        Some(answer) => answer,
        None => super::answer(404, "text/html", NOT_FOUND),
    }
}

fn token(state: &State, req: &Req) -> Answer {
    let options = &state.options;
    if options.imds == Imds::V1Only {
        return super::answer(404, "text/html", NOT_FOUND);
    }
    if req.method != Method::PUT {
        return text(405, "Method Not Allowed");
    }
    if req.headers.contains_key("x-forwarded-for") {
        return text(403, "Forbidden");
    }
    let ttl = req
        .header("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ttl| (1..=21600).contains(ttl));
    let Some(ttl) = ttl else {
        return text(400, "Bad Request");
    };
    let first = state.tokens_issued.fetch_add(1, Ordering::SeqCst) == 0;
    let lives = match (first, options.first_token_ttl) {
        (true, Some(short)) => short,
        _ => Duration::from_secs(ttl),
    };
    let token = random_token();
    state
        .tokens
        .lock()
        .unwrap()
        .insert(token.clone(), Instant::now() + lives);
    let mut answer = text(200, token);
    answer.headers_mut().insert(
        "x-aws-ec2-metadata-token-ttl-seconds",
        ttl.to_string().parse().unwrap(),
    );
    answer
}

/// The API versions IMDS serves besides `latest` (a few of them: the ones clients ask for).
const VERSIONS: [&str; 5] = ["2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23", "latest"];

/// A dated version's path as its `/latest/` path.
fn latest(path: &str) -> String {
    let mut segments = path.splitn(3, '/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some(""), Some(version), rest) if VERSIONS.contains(&version) => {
            format!("/latest/{}", rest.unwrap_or(""))
        }
        _ => path.to_string(),
    }
}

fn resource(state: &State, path: &str) -> Option<Answer> {
    if path == "/" || path.is_empty() {
        return Some(text(200, listing(VERSIONS)));
    }
    if let Some(answer) = notice(state, path) {
        return answer;
    }
    let i = &state.options.instance;
    let tags_on = state.options.instance_tags;
    let ok = |body: String| Some(text(200, body));
    match path {
        "/latest" | "/latest/" => {
            let mut entries = vec!["dynamic", "meta-data"];
            if i.user_data.is_some() {
                entries.push("user-data");
            }
            ok(listing(entries))
        }
        "/latest/user-data" => i
            .user_data
            .as_ref()
            .map(|d| super::answer(200, "application/octet-stream", d.clone())),
        "/latest/meta-data" | "/latest/meta-data/" => {
            let mut entries = vec![
                "ami-id",
                "hostname",
                "instance-id",
                "instance-type",
                "local-hostname",
                "local-ipv4",
                "placement/",
            ];
            if tags_on {
                entries.push("tags/");
            }
            if state.options.role.is_some() {
                entries.push("iam/");
            }
            let notices = state.notices.lock().unwrap();
            entries.push("events/");
            if notices.target_lifecycle_state.is_some() {
                entries.push("autoscaling/");
            }
            if notices.spot_instance_action.is_some() {
                entries.push("spot/");
            }
            ok(listing(entries))
        }
        "/latest/meta-data/iam/info" => state.options.role.as_ref().map(|r| {
            json(
                200,
                &serde_json::json!({
                    "Code": "Success",
                    "LastUpdated": "2024-01-01T00:00:00Z",
                    "InstanceProfileArn": format!("arn:aws:iam::123456789012:instance-profile/{}", r.name),
                    "InstanceProfileId": "AIPAEXAMPLEPROFILEID",
                }),
            )
        }),
        "/latest/meta-data/iam" | "/latest/meta-data/iam/" => state
            .options
            .role
            .as_ref()
            .map(|_| text(200, listing(["info", "security-credentials/"]))),
        "/latest/meta-data/iam/security-credentials" | "/latest/meta-data/iam/security-credentials/" => {
            state.options.role.as_ref().map(|r| text(200, r.name.clone()))
        }
        "/latest/meta-data/ami-id" => ok("ami-0abcdef1234567890".into()),
        "/latest/meta-data/instance-type" => ok("t3.small".into()),
        "/latest/meta-data/instance-id" => ok(i.id.clone()),
        "/latest/meta-data/local-ipv4" => ok(i.local_ipv4.clone()),
        "/latest/meta-data/hostname" | "/latest/meta-data/local-hostname" => ok(i.hostname.clone()),
        "/latest/meta-data/placement" | "/latest/meta-data/placement/" => {
            ok(listing(["availability-zone", "region"]))
        }
        "/latest/meta-data/placement/availability-zone" => ok(i.zone.clone()),
        "/latest/meta-data/placement/region" => ok(i.region.clone()),
        "/latest/meta-data/tags" | "/latest/meta-data/tags/" if tags_on => ok(listing(["instance/"])),
        "/latest/meta-data/tags/instance" | "/latest/meta-data/tags/instance/" if tags_on => {
            ok(listing(i.tags.keys().map(String::as_str)))
        }
        "/latest/dynamic" | "/latest/dynamic/" => ok(listing(["instance-identity/"])),
        "/latest/dynamic/instance-identity" | "/latest/dynamic/instance-identity/" => {
            ok(listing(["document", "pkcs7", "signature"]))
        }
        // Not real signatures: nothing here checks them.
        "/latest/dynamic/instance-identity/pkcs7" | "/latest/dynamic/instance-identity/signature" => ok(
            "TUlBR0NTcUdTSWIzRFFFSEFxQ0FNSUFDQVFFeEN6QUpCZ1VyRGdNQ0dnVUFNSUFHQ1NxR1NJYjNEUUVIQWFDQQ==".into(),
        ),
        "/latest/dynamic/instance-identity/document" => Some(json(
            200,
            &serde_json::json!({
                "accountId": "123456789012",
                "architecture": "x86_64",
                "availabilityZone": i.zone,
                "imageId": "ami-0abcdef1234567890",
                "instanceId": i.id,
                "instanceType": "t3.small",
                "pendingTime": "2024-01-01T00:00:00Z",
                "privateIp": i.local_ipv4,
                "region": i.region,
                "version": "2017-09-30",
            }),
        )),
        _ => {
            if let Some(name) = path.strip_prefix("/latest/meta-data/iam/security-credentials/") {
                let role = state.options.role.as_ref().filter(|r| r.name == name)?;
                // The document EC2 serves for an instance role.
                return Some(text(
                    200,
                    serde_json::json!({
                        "Code": "Success",
                        "LastUpdated": "2024-01-01T00:00:00Z",
                        "Type": "AWS-HMAC",
                        "AccessKeyId": role.access_key_id,
                        "SecretAccessKey": role.secret_access_key,
                        "Token": role.token,
                        "Expiration": role.expiration,
                    })
                    .to_string(),
                ));
            }
            let key = path
                .strip_prefix("/latest/meta-data/tags/instance/")
                .filter(|_| tags_on)?;
            i.tags.get(key).map(|v| text(200, v.clone()))
        }
    }
}

/// The notice paths: Some(answer) when `path` is one of them (None inside: 404).
fn notice(state: &State, path: &str) -> Option<Option<Answer>> {
    let notices = state.notices.lock().unwrap();
    let served = |body: &Option<String>| body.as_ref().map(|b| text(200, b.clone()));
    Some(match path.strip_prefix("/latest/meta-data/")? {
        "autoscaling/target-lifecycle-state" => served(&notices.target_lifecycle_state),
        "autoscaling" | "autoscaling/" => notices
            .target_lifecycle_state
            .as_ref()
            .map(|_| text(200, "target-lifecycle-state")),
        "spot/instance-action" => served(&notices.spot_instance_action),
        // The action's time, as EC2 also serves it on its own.
        "spot/termination-time" => notices.spot_instance_action.as_ref().map(|action| {
            let time = serde_json::from_str::<serde_json::Value>(action)
                .ok()
                .and_then(|a| a.get("time")?.as_str().map(str::to_string))
                .unwrap_or_default();
            text(200, time)
        }),
        "spot" | "spot/" => notices
            .spot_instance_action
            .as_ref()
            .map(|_| text(200, listing(["instance-action", "termination-time"]))),
        "events/recommendations/rebalance" => served(&notices.rebalance_recommendation),
        "events/maintenance/scheduled" => Some(text(200, notices.ec2_maintenance_document())),
        "events/maintenance/history" => Some(text(200, "[]")),
        "events" | "events/" => Some(text(
            200,
            match notices.rebalance_recommendation {
                Some(_) => listing(["maintenance/", "recommendations/"]),
                None => listing(["maintenance/"]),
            },
        )),
        "events/maintenance" | "events/maintenance/" => Some(text(200, listing(["history", "scheduled"]))),
        "events/recommendations" | "events/recommendations/" => notices
            .rebalance_recommendation
            .as_ref()
            .map(|_| text(200, "rebalance")),
        _ => return None,
    })
}
