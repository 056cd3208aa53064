//! Azure Key Vault: `GET https://VAULT.vault.azure.net/secrets/NAME[/VERSION]?api-version=7.4`
//! with the managed identity's token from IMDS; the value is `value`.

use super::reference::Target;
use super::{Failure, Reference, Stores, rest};
use futures_util::future::join_all;
use tokio::time::Instant;

/// The resource a Key Vault token is asked for.
pub(super) const RESOURCE: &str = "https://vault.azure.net";
const DEFAULT_ENDPOINT: &str = "https://{vault}.vault.azure.net";
const API_VERSION: &str = "7.4";

type Results = Vec<(Reference, Result<String, Failure>)>;

pub(super) async fn resolve(stores: &Stores, references: Vec<&Reference>, deadline: Instant) -> Results {
    let all = references
        .into_iter()
        .map(|r| async move { (r.clone(), get(stores, r, deadline).await) });
    join_all(all).await
}

async fn get(stores: &Stores, reference: &Reference, deadline: Instant) -> Result<String, Failure> {
    let Target::KeyVault(secret) = &reference.target else {
        return Err(Failure::new("not a keyvault reference"));
    };
    let token = stores.azure_token(deadline).await?;
    // The vault name is checked (letters, digits, '-'): one DNS label in the template's host.
    let base = stores
        .config
        .keyvault_endpoint
        .as_deref()
        .unwrap_or(DEFAULT_ENDPOINT)
        .replace("{vault}", &secret.vault);
    let mut segments = vec!["secrets", secret.name.as_str()];
    segments.extend(secret.version.as_deref());
    let path = format!("/{}", segments.join("/"));
    let mut url = rest::url(&base, &segments).map_err(|e| Failure::new(format!("keyvault_endpoint: {e}")))?;
    url.query_pairs_mut().append_pair("api-version", API_VERSION);
    let answer = rest::get(stores, "keyvault", url, token, deadline).await?;
    if answer.status != 200 {
        let (code, message) = rest::error(&answer, "code");
        let shown = code.clone().unwrap_or_else(|| format!("HTTP {}", answer.status));
        return Err(Failure {
            code,
            reason: format!(
                "keyvault {} GET {path}: {shown} (HTTP {}): {message}",
                secret.vault, answer.status
            ),
        });
    }
    serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|doc| doc.get("value")?.as_str().map(str::to_string))
        .ok_or_else(|| {
            Failure::new(format!(
                "keyvault {} GET {path}: the answer has no value",
                secret.vault
            ))
        })
}
