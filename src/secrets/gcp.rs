//! GCP Secret Manager: `GET /v1/projects/P/secrets/S/versions/V:access` with the default service
//! account's token from the metadata server; the value is `payload.data`, base64.

use super::reference::Target;
use super::{Failure, Reference, Stores, rest};
use base64::Engine;
use futures_util::future::join_all;
use tokio::time::Instant;

const DEFAULT_ENDPOINT: &str = "https://secretmanager.googleapis.com";

type Results = Vec<(Reference, Result<String, Failure>)>;

pub(super) async fn resolve(stores: &Stores, references: Vec<&Reference>, deadline: Instant) -> Results {
    let all = references
        .into_iter()
        .map(|r| async move { (r.clone(), access(stores, r, deadline).await) });
    join_all(all).await
}

async fn access(stores: &Stores, reference: &Reference, deadline: Instant) -> Result<String, Failure> {
    let Target::Gcp(secret) = &reference.target else {
        return Err(Failure::new("not a gcp reference"));
    };
    let token = stores.gce_token(deadline).await?;
    let name = format!(
        "projects/{}/secrets/{}/versions/{}",
        secret.project, secret.secret, secret.version
    );
    let endpoint = stores.config.gcp_endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let version = format!("{}:access", secret.version);
    let segments = [
        "v1",
        "projects",
        &secret.project,
        "secrets",
        &secret.secret,
        "versions",
        &version,
    ];
    let url = rest::url(endpoint, &segments).map_err(|e| Failure::new(format!("gcp_endpoint: {e}")))?;
    let answer = rest::get(stores, "gcp", url, token, deadline).await?;
    if answer.status != 200 {
        let (code, message) = rest::error(&answer, "status");
        let shown = code.clone().unwrap_or_else(|| format!("HTTP {}", answer.status));
        return Err(Failure {
            code,
            reason: format!(
                "gcp secretmanager {name}:access: {shown} (HTTP {}): {message}",
                answer.status
            ),
        });
    }
    let data = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|doc| doc.pointer("/payload/data")?.as_str().map(str::to_string))
        .ok_or_else(|| {
            Failure::new(format!(
                "gcp secretmanager {name}:access: the answer has no payload.data"
            ))
        })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| {
            Failure::new(format!(
                "gcp secretmanager {name}:access: payload.data is not base64"
            ))
        })?;
    String::from_utf8(bytes)
        .map_err(|_| Failure::new(format!("gcp secretmanager {name}: the secret is not UTF-8 text")))
}
