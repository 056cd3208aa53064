//! AWS Secrets Manager. Secrets read at their current version go 20 to a `BatchGetSecretValue`
//! call per region; a secret asked by version stage or id, and any the batch cannot answer (a
//! policy that grants `GetSecretValue` but not `BatchGetSecretValue` refuses the whole batch),
//! get one `GetSecretValue` each, all at once. A secret is asked once however many keys are read
//! from it; a reference with a JSON key takes one field of a JSON secret (RDS-style secrets hold
//! `{"username": .., "password": ..}`).

use super::reference::{SecretsManagerSecret, Target};
use super::{Failure, Reference, Stores};
use crate::aws::{Region, SECRETS_MANAGER};
use base64::Engine;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::time::Instant;

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
#[serde(rename_all = "PascalCase")]
struct GetSecretValue<'a> {
    secret_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_stage: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_id: Option<&'a str>,
}

/// No `Debug`: it holds the secret.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretValueAnswer {
    #[serde(rename = "ARN")]
    arn: Option<String>,
    name: Option<String>,
    secret_string: Option<String>,
    /// Base64 in JSON 1.1.
    secret_binary: Option<String>,
}

/// BatchGetSecretValue's limit.
const BATCH: usize = 20;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchGetSecretValue<'a> {
    secret_id_list: Vec<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchAnswer {
    #[serde(default)]
    secret_values: Vec<SecretValueAnswer>,
    #[serde(default)]
    errors: Vec<BatchError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchError {
    secret_id: Option<String>,
    error_code: Option<String>,
    message: Option<String>,
}

impl SecretValueAnswer {
    /// This answer is for `id` (a name, an ARN, or an ARN without its random suffix).
    fn is_for(&self, id: &str) -> bool {
        self.name.as_deref() == Some(id)
            || self.arn.as_deref() == Some(id)
            || self.arn.as_deref().is_some_and(|arn| {
                arn.strip_prefix(id)
                    .is_some_and(|suffix| suffix.len() == 7 && suffix.starts_with('-'))
            })
    }
}

type Results = Vec<(Reference, Result<String, Failure>)>;

/// A secret at a version, in a region (the ARN's, or None for the default).
type Call<'a> = (Option<&'a Region>, GetSecretValue<'a>);

/// Each secret to read and the references it serves.
type Calls<'a> = BTreeMap<Call<'a>, Vec<(&'a Reference, &'a SecretsManagerSecret)>>;

type Texts<'a> = BTreeMap<Call<'a>, Result<String, Failure>>;

pub(super) async fn resolve(stores: &Stores, references: Vec<&Reference>, deadline: Instant) -> Results {
    // One call per distinct (secret, version): several keys of one secret cost one request.
    let mut calls: Calls = BTreeMap::new();
    for r in &references {
        if let Target::SecretsManager(s) = &r.target {
            let input = GetSecretValue {
                secret_id: &s.id,
                version_stage: s.version_stage.as_deref(),
                version_id: s.version_id.as_deref(),
            };
            calls.entry((s.region.as_ref(), input)).or_default().push((r, s));
        }
    }
    let texts = fetch(stores, calls.keys().cloned().collect(), deadline).await;
    calls
        .into_iter()
        .flat_map(|(call, refs)| {
            let text = texts
                .get(&call)
                .cloned()
                .unwrap_or_else(|| Err(Failure::new("not fetched (internal error)")));
            refs.into_iter()
                .map(move |(r, s)| (r.clone(), text.clone().and_then(|text| pick_key(&text, s))))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every secret's text: current versions in batches, the rest (and what a batch could not
/// answer) one call each.
async fn fetch<'a>(stores: &Stores, calls: Vec<Call<'a>>, deadline: Instant) -> Texts<'a> {
    let (current, versioned): (Vec<Call>, Vec<Call>) = calls
        .into_iter()
        .partition(|(_, input)| input.version_stage.is_none() && input.version_id.is_none());
    let mut by_region: BTreeMap<Option<&Region>, Vec<Call>> = BTreeMap::new();
    for call in current {
        by_region.entry(stores.region(call.0)).or_default().push(call);
    }
    let chunks: Vec<Vec<Call>> = by_region
        .into_values()
        .flat_map(|calls| calls.chunks(BATCH).map(<[Call]>::to_vec).collect::<Vec<_>>())
        .collect();
    let batches = join_all(chunks.into_iter().map(|chunk| batch(stores, chunk, deadline))).await;
    let mut texts = Texts::new();
    let mut alone = versioned;
    for (answered, unanswered) in batches {
        texts.extend(answered);
        alone.extend(unanswered);
    }
    let singles = join_all(alone.iter().map(|call| one(stores, call, deadline))).await;
    texts.extend(alone.into_iter().zip(singles));
    texts
}

/// One BatchGetSecretValue: the secrets it answered (a value or its per-secret error), and the
/// calls to make alone (all of them when the batch itself was refused).
async fn batch<'a>(stores: &Stores, chunk: Vec<Call<'a>>, deadline: Instant) -> (Texts<'a>, Vec<Call<'a>>) {
    let region = chunk.first().and_then(|(region, _)| *region);
    let input = BatchGetSecretValue {
        secret_id_list: chunk.iter().map(|(_, input)| input.secret_id).collect(),
    };
    let api = match stores.aws(&SECRETS_MANAGER, region) {
        Ok(api) => api,
        Err(failure) => {
            return (
                chunk.into_iter().map(|c| (c, Err(failure.clone()))).collect(),
                Vec::new(),
            );
        }
    };
    let answer: BatchAnswer = match api.json("BatchGetSecretValue", &input, deadline).await {
        Ok(answer) => answer,
        // AWS refused the batch itself (no permission for it, an endpoint without it): one by one.
        Err(e) if e.code().is_some() => return (Texts::new(), chunk),
        Err(e) => {
            let failure = Failure::from(e);
            return (
                chunk.into_iter().map(|c| (c, Err(failure.clone()))).collect(),
                Vec::new(),
            );
        }
    };
    let mut answered = Texts::new();
    let mut unanswered = Vec::new();
    for call in chunk {
        let id = call.1.secret_id;
        if let Some(value) = answer.secret_values.iter().find(|v| v.is_for(id)) {
            answered.insert(call, secret_text(value));
        } else if let Some(error) = answer.errors.iter().find(|e| e.secret_id.as_deref() == Some(id)) {
            let code = error.error_code.clone().unwrap_or_else(|| "Error".into());
            let reason = format!(
                "secretsmanager BatchGetSecretValue: {code}: {}",
                error.message.as_deref().unwrap_or("")
            );
            answered.insert(
                call,
                Err(Failure {
                    code: Some(code),
                    reason,
                }),
            );
        } else {
            unanswered.push(call);
        }
    }
    (answered, unanswered)
}

async fn one(stores: &Stores, (region, input): &Call<'_>, deadline: Instant) -> Result<String, Failure> {
    let api = stores.aws(&SECRETS_MANAGER, *region)?;
    let answer: SecretValueAnswer = api.json("GetSecretValue", input, deadline).await?;
    secret_text(&answer)
}

fn secret_text(answer: &SecretValueAnswer) -> Result<String, Failure> {
    match (&answer.secret_string, &answer.secret_binary) {
        (Some(text), _) => Ok(text.clone()),
        (None, Some(binary)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(binary)
                .map_err(|_| Failure::new("secretsmanager GetSecretValue: SecretBinary is not base64"))?;
            String::from_utf8(bytes).map_err(|_| {
                Failure::new("secretsmanager GetSecretValue: the binary secret is not UTF-8 text")
            })
        }
        (None, None) => Err(Failure::new(
            "secretsmanager GetSecretValue: the answer holds no secret",
        )),
    }
}

/// The whole secret, or the string (or number, or boolean) under its JSON key. Errors never
/// quote the secret, nor the other keys' names.
fn pick_key(text: &str, secret: &SecretsManagerSecret) -> Result<String, Failure> {
    let Some(key) = &secret.json_key else {
        return Ok(text.to_string());
    };
    let failure = |reason: String| Failure {
        code: Some("JsonKey".into()),
        reason,
    };
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|_| {
        failure(format!(
            "the secret is not a JSON object, so it has no key {key:?}"
        ))
    })?;
    let object = doc.as_object().ok_or_else(|| {
        failure(format!(
            "the secret is not a JSON object, so it has no key {key:?}"
        ))
    })?;
    match object.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => Ok(v.to_string()),
        Some(_) => Err(failure(format!(
            "the secret's key {key:?} is not a string, number or boolean"
        ))),
        None => Err(failure(format!("the secret has no key {key:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(key: Option<&str>) -> SecretsManagerSecret {
        SecretsManagerSecret {
            id: "app/rds".into(),
            json_key: key.map(String::from),
            version_stage: None,
            version_id: None,
            region: None,
        }
    }

    #[test]
    fn json_keys() {
        let text = r#"{"username":"app","password":"s3cr3t-value","port":5432}"#;
        assert_eq!(pick_key(text, &secret(Some("password"))).unwrap(), "s3cr3t-value");
        assert_eq!(pick_key(text, &secret(Some("port"))).unwrap(), "5432");
        assert_eq!(pick_key(text, &secret(None)).unwrap(), text);
        let missing = pick_key(text, &secret(Some("passwd"))).unwrap_err();
        assert_eq!(missing.code.as_deref(), Some("JsonKey"));
        assert!(!missing.reason.contains("s3cr3t"), "{missing:?}");
        let not_json = pick_key("s3cr3t-value", &secret(Some("password"))).unwrap_err();
        assert!(!not_json.reason.contains("s3cr3t"), "{not_json:?}");
    }
}
