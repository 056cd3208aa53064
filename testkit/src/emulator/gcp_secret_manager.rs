//! GCP Secret Manager's `versions.access`, emulated over real HTTP.
//!
//! `GET /v1/projects/{project}/secrets/{secret}/versions/{version}:access` with
//! `Authorization: Bearer TOKEN` (a token the GCE metadata emulator issued) answers
//! `{"name": "projects/NUMBER/secrets/S/versions/N", "payload": {"data": BASE64, "dataCrc32c": ..}}`;
//! `latest` is the newest enabled version. Errors are Google's
//! `{"error": {"code", "message", "status"}}`: 401 UNAUTHENTICATED (no or unknown token), 403
//! PERMISSION_DENIED (a secret the service account may not read, as `deny` sets), 404 NOT_FOUND.
//! The project may be given by id or number; names in answers use the number, as GCP does.

use super::metadata::AccessTokens;
use crate::server::Background;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const PROJECT_ID: &str = "kiln-test";
pub const PROJECT_NUMBER: &str = "123456789012";

#[derive(Default)]
struct Store {
    /// Versions of each secret, oldest first (version N is index N-1).
    secrets: BTreeMap<String, Vec<String>>,
    denied: BTreeSet<String>,
    /// `(path, status)` of every request.
    log: Vec<(String, u16)>,
}

pub struct GcpSecretManager {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    _server: Background,
}

impl GcpSecretManager {
    /// Listens on 127.0.0.1; accepts the bearer tokens in `tokens`.
    pub fn start(tokens: AccessTokens) -> GcpSecretManager {
        let store = Arc::new(Mutex::new(Store::default()));
        let serving = store.clone();
        let (server, addr) = Background::spawn(
            "gcp-secret-manager",
            || std::net::TcpListener::bind("127.0.0.1:0"),
            move |listener| serve(listener, serving, tokens),
        )
        .expect("bind 127.0.0.1:0");
        GcpSecretManager {
            addr,
            store,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT`, for `[secrets] gcp_endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a version to `secret` (creating it); returns the version number.
    pub fn add_version(&self, secret: &str, value: &str) -> usize {
        let mut store = self.store.lock().unwrap();
        let versions = store.secrets.entry(secret.into()).or_default();
        versions.push(value.into());
        versions.len()
    }

    /// The service account may not read `secret` (403 PERMISSION_DENIED).
    pub fn deny(&self, secret: &str) {
        self.store.lock().unwrap().denied.insert(secret.into());
    }

    /// `(path, status)` of every request so far.
    pub fn log(&self) -> Vec<(String, u16)> {
        self.store.lock().unwrap().log.clone()
    }
}

async fn serve(listener: tokio::net::TcpListener, store: Arc<Mutex<Store>>, tokens: AccessTokens) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (store, tokens) = (store.clone(), tokens.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = handle(&req, &store, &tokens);
                store
                    .lock()
                    .unwrap()
                    .log
                    .push((req.uri().path().to_string(), answer.status().as_u16()));
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn error(code: u16, status: &str, message: String) -> Response<Full<Bytes>> {
    reply(
        code,
        json!({ "error": { "code": code, "message": message, "status": status } }),
    )
}

fn handle(
    req: &Request<hyper::body::Incoming>,
    store: &Mutex<Store>,
    tokens: &AccessTokens,
) -> Response<Full<Bytes>> {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.and_then(|t| tokens.audience(t)).as_deref() != Some("gce") {
        return error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.".into(),
        );
    }
    if req.method() != hyper::Method::GET {
        return error(405, "METHOD_NOT_ALLOWED", "Method not allowed.".into());
    }
    let path = req.uri().path();
    let parts: Option<(&str, &str, &str)> = path
        .strip_prefix("/v1/projects/")
        .and_then(|r| r.strip_suffix(":access"))
        .and_then(|r| {
            let p: Vec<&str> = r.split('/').collect();
            match p.as_slice() {
                [project, "secrets", secret, "versions", version] => Some((*project, *secret, *version)),
                _ => None,
            }
        });
    let Some((project, secret, version)) = parts else {
        return error(
            404,
            "NOT_FOUND",
            format!("The requested URL {path} was not found on this server."),
        );
    };
    let store = store.lock().unwrap();
    let resource = format!("projects/{PROJECT_NUMBER}/secrets/{secret}/versions/{version}");
    let known_project = project == PROJECT_ID || project == PROJECT_NUMBER;
    if !known_project || store.denied.contains(secret) {
        return error(
            403,
            "PERMISSION_DENIED",
            format!(
                "Permission 'secretmanager.versions.access' denied for resource '{resource}' (or it may not exist)."
            ),
        );
    }
    let Some(versions) = store.secrets.get(secret) else {
        return error(
            404,
            "NOT_FOUND",
            format!("Secret [projects/{PROJECT_NUMBER}/secrets/{secret}] not found or has no versions."),
        );
    };
    let number = match version {
        "latest" => versions.len(),
        n => n.parse().unwrap_or(0),
    };
    let Some(value) = number.checked_sub(1).and_then(|i| versions.get(i)) else {
        return error(
            404,
            "NOT_FOUND",
            format!("Secret Version [{resource}] not found."),
        );
    };
    reply(
        200,
        json!({
            "name": format!("projects/{PROJECT_NUMBER}/secrets/{secret}/versions/{number}"),
            "payload": {
                "data": base64::engine::general_purpose::STANDARD.encode(value),
                "dataCrc32c": "0",
            },
        }),
    )
}
