//! One Azure Key Vault's secrets API, emulated over real HTTP.
//!
//! `GET /secrets/{name}[/{version}]?api-version=7.4` with `Authorization: Bearer TOKEN` (a token
//! the Azure metadata emulator issued for `https://vault.azure.net`) answers
//! `{"value", "id": "https://VAULT.vault.azure.net/secrets/NAME/VERSION", "attributes"}`.
//! Errors are Key Vault's `{"error": {"code", "message"}}`: 400 BadParameter (no api-version),
//! 401 Unauthorized (with `WWW-Authenticate: Bearer authorization=..., resource=...`), 403
//! Forbidden (ForbiddenByRbac, as `deny` sets), 404 SecretNotFound.

use super::metadata::AccessTokens;
use crate::server::Background;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const RESOURCE: &str = "https://vault.azure.net";

#[derive(Default)]
struct Vault {
    /// Versions of each secret as (version id, value), oldest first; the last is current.
    secrets: BTreeMap<String, Vec<(String, String)>>,
    denied: BTreeSet<String>,
    log: Vec<(String, u16)>,
}

pub struct KeyVault {
    name: String,
    addr: SocketAddr,
    vault: Arc<Mutex<Vault>>,
    _server: Background,
}

impl KeyVault {
    /// The vault `name` on 127.0.0.1; accepts the bearer tokens in `tokens` issued for Key Vault.
    pub fn start(name: &str, tokens: AccessTokens) -> KeyVault {
        let vault = Arc::new(Mutex::new(Vault::default()));
        let serving = vault.clone();
        let vault_name = name.to_string();
        let (server, addr) = Background::spawn(
            "key-vault",
            || std::net::TcpListener::bind("127.0.0.1:0"),
            move |listener| serve(listener, serving, tokens, vault_name),
        )
        .expect("bind 127.0.0.1:0");
        KeyVault {
            name: name.into(),
            addr,
            vault,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT`, for `[secrets] keyvault_endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets a new current version of `secret`; returns its version id (32 hex digits).
    pub fn set(&self, secret: &str, value: &str) -> String {
        let mut vault = self.vault.lock().unwrap();
        let versions = vault.secrets.entry(secret.into()).or_default();
        let id = format!("{:032x}", (versions.len() as u128 + 1) * 0x9e37_79b9_7f4a_7c15);
        versions.push((id.clone(), value.into()));
        id
    }

    /// The caller may not read `secret` (403 Forbidden).
    pub fn deny(&self, secret: &str) {
        self.vault.lock().unwrap().denied.insert(secret.into());
    }

    pub fn log(&self) -> Vec<(String, u16)> {
        self.vault.lock().unwrap().log.clone()
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    vault: Arc<Mutex<Vault>>,
    tokens: AccessTokens,
    name: String,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (vault, tokens, name) = (vault.clone(), tokens.clone(), name.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = handle(&req, &vault, &tokens, &name);
                vault
                    .lock()
                    .unwrap()
                    .log
                    .push((req.uri().to_string(), answer.status().as_u16()));
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn error(status: u16, code: &str, message: String) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8");
    if status == 401 {
        builder = builder.header(
            "www-authenticate",
            format!(
                "Bearer authorization=\"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"{RESOURCE}\""
            ),
        );
    }
    let mut body = json!({ "error": { "code": code, "message": message } });
    if status == 403 {
        body["error"]["innererror"] = json!({ "code": "ForbiddenByRbac" });
    }
    builder.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

fn handle(
    req: &Request<hyper::body::Incoming>,
    vault: &Mutex<Vault>,
    tokens: &AccessTokens,
    name: &str,
) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or("");
    let api_version = query
        .split('&')
        .find_map(|p| p.strip_prefix("api-version="))
        .filter(|v| !v.is_empty());
    if api_version.is_none() {
        return error(
            400,
            "BadParameter",
            "The request URI contains an invalid or missing api-version.".into(),
        );
    }
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer else {
        return error(
            401,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.".into(),
        );
    };
    match tokens.audience(token) {
        Some(audience) if audience.trim_end_matches('/') == RESOURCE => {}
        Some(audience) => {
            return error(
                401,
                "Unauthorized",
                format!("AKV10022: Invalid audience. Expected {RESOURCE}, found: {audience}."),
            );
        }
        None => return error(401, "Unauthorized", "AKV10032: Invalid issuer.".into()),
    }
    let path = req.uri().path();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (secret, version) = match parts.as_slice() {
        ["secrets", secret] => (*secret, None),
        ["secrets", secret, version] => (*secret, Some(*version)),
        _ => return error(404, "NotFound", format!("{path} was not found.")),
    };
    let vault = vault.lock().unwrap();
    if vault.denied.contains(secret) {
        return error(
            403,
            "Forbidden",
            format!(
                "Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action' Resource: '/secrets/{secret}' Assignment: (not found) VaultName: {name}"
            ),
        );
    }
    let not_found = || {
        error(
            404,
            "SecretNotFound",
            format!("A secret with (name/id) {secret} was not found in this key vault."),
        )
    };
    let Some(versions) = vault.secrets.get(secret) else {
        return not_found();
    };
    let found = match version {
        None | Some("") => versions.last(),
        Some(v) => versions.iter().find(|(id, _)| id == v),
    };
    let Some((id, value)) = found else {
        return not_found();
    };
    let body = json!({
        "value": value,
        "id": format!("https://{name}.vault.azure.net/secrets/{secret}/{id}"),
        "attributes": { "enabled": true, "created": 1700000000, "updated": 1700000000,
                        "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90 },
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
