//! Azure Instance Metadata Service.
//!
//! Requests need `Metadata: true` (else 400) and a supported `api-version` (else 400 with the
//! newest versions); `X-Forwarded-For` is refused (403). `/metadata/instance` answers the JSON
//! document; leaves below it (e.g. `compute/userData`, base64) need `format=text`.
//!
//! Scheduled Events (`/metadata/scheduledevents`, versions of their own): GET answers
//! `{"DocumentIncarnation", "Events": [...]}` from [`super::Notices`]; POST
//! `{"StartRequests": [{"EventId": ...}]}` starts those events (`EventStatus` `Started`, the
//! incarnation goes up) and records the acknowledgement; an unknown `EventId` or a body without
//! `StartRequests` is 400.

use super::{Answer, Req, State};
use base64::Engine;
use serde_json::{Value, json};

const VERSIONS: &[&str] = &[
    "2017-04-02",
    "2018-02-01",
    "2018-10-01",
    "2019-06-01",
    "2020-09-01",
    "2021-01-01",
    "2021-02-01",
    "2021-05-01",
    "2021-12-13",
    "2023-07-01",
];

fn error(status: u16, message: &str) -> Answer {
    super::json(status, &json!({ "error": message }))
}

fn version_error(message: &str) -> Answer {
    super::json(
        400,
        &json!({ "error": message, "newest-versions": ["2023-07-01", "2021-12-13", "2021-05-01"] }),
    )
}

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.header("metadata") != Some("true") {
        return error(400, "Bad request. Required metadata header not specified");
    }
    if req.headers.contains_key("x-forwarded-for") {
        return error(403, "Forbidden. Request contains X-Forwarded-For header");
    }
    if req.path == "/metadata/scheduledevents" {
        return scheduled_events(state, req);
    }
    if req.method != hyper::Method::GET {
        return error(405, "Method not allowed");
    }
    let Some(version) = req.query.get("api-version") else {
        return version_error(
            "Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds",
        );
    };
    if !VERSIONS.contains(&version.as_str()) {
        return version_error(
            "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds",
        );
    }
    if req.path == "/metadata/identity/oauth2/token" {
        return identity_token(state, req);
    }
    let Some(rest) = req.path.strip_prefix("/metadata/instance") else {
        return error(404, "Not found");
    };
    let document = document(state);
    let pointer = rest.trim_end_matches('/');
    let Some(node) = document.pointer(pointer) else {
        return error(404, "Not found");
    };
    let text = req.query.get("format").is_some_and(|f| f == "text");
    match node {
        Value::Object(_) | Value::Array(_) if text => error(
            400,
            "Bad request. Query parameter format=text is not supported for non-leaf nodes",
        ),
        Value::Object(_) | Value::Array(_) => super::json(200, node),
        _ if !text => error(
            400,
            "Bad request. Query parameter format=json is not supported for leaf nodes",
        ),
        Value::String(s) => super::answer(200, "text/plain; charset=utf-8", s.clone()),
        other => super::answer(200, "text/plain; charset=utf-8", other.to_string()),
    }
}

/// The api-versions of Scheduled Events (they have their own).
const SCHEDULED_EVENTS_VERSIONS: &[&str] = &[
    "2017-03-01",
    "2017-08-01",
    "2017-11-01",
    "2019-01-01",
    "2019-08-01",
    "2020-07-01",
];

fn scheduled_events(state: &State, req: &Req) -> Answer {
    let version = req.query.get("api-version").map(String::as_str);
    if !version.is_some_and(|v| SCHEDULED_EVENTS_VERSIONS.contains(&v)) {
        return version_error(
            "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds",
        );
    }
    match req.method {
        hyper::Method::GET => super::answer(
            200,
            "application/json; charset=utf-8",
            state.notices.lock().unwrap().azure_document(),
        ),
        hyper::Method::POST => match state.notices.lock().unwrap().azure_acknowledge(&req.body) {
            Ok(_) => super::answer(200, "application/json; charset=utf-8", ""),
            Err(why) => error(400, &format!("Bad request. {why}")),
        },
        _ => error(405, "Method not allowed"),
    }
}

/// A managed identity's token for `resource`, in the OAuth2 shape IMDS answers (numbers as
/// strings); errors are OAuth2's `{"error", "error_description"}`.
fn identity_token(state: &State, req: &Req) -> Answer {
    let oauth_error = |status: u16, error: &str, description: &str| {
        super::json(
            status,
            &json!({ "error": error, "error_description": description }),
        )
    };
    let Some(resource) = req.query.get("resource").filter(|r| !r.is_empty()) else {
        return oauth_error(
            400,
            "invalid_request",
            "Required audience parameter not specified",
        );
    };
    if !state.options.identity {
        return oauth_error(400, "invalid_request", "Identity not found");
    }
    let token = state.options.access_tokens.issue(resource);
    super::json(
        200,
        &json!({
            "access_token": token,
            "client_id": "5f4d3b56-6b9a-4d9b-a3c8-0cc17e1b4a0e",
            "expires_in": "86399",
            "expires_on": "4102444800",
            "ext_expires_in": "86399",
            "not_before": "1700000000",
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}

fn document(state: &State) -> Value {
    let i = &state.options.instance;
    let user_data = i
        .user_data
        .as_ref()
        .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
        .unwrap_or_default();
    let tags: Vec<Value> = i
        .tags
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    let tags_string: Vec<String> = i.tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    json!({
        "compute": {
            "azEnvironment": "AzurePublicCloud",
            "location": i.region,
            "name": i.hostname,
            "osProfile": { "adminUsername": "azureuser", "computerName": i.hostname },
            "osType": "Linux",
            "tags": tags_string.join(";"),
            "tagsList": tags,
            "userData": user_data,
            "vmId": i.id,
            "vmSize": "Standard_B2s",
            "zone": i.zone,
        },
        "network": {
            "interface": [{
                "ipv4": {
                    "ipAddress": [{ "privateIpAddress": i.local_ipv4, "publicIpAddress": "" }],
                    "subnet": [{ "address": "10.0.0.0", "prefix": "24" }],
                },
                "macAddress": "000D3AF806EC",
            }],
        },
    })
}
