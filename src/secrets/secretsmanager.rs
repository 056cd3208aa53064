//! AWS Secrets Manager: `GetSecretValue` once per distinct secret and version, all at once; a
//! reference with a JSON key takes one field of a JSON secret (RDS-style secrets hold
//! `{"username": .., "password": ..}`).

use super::reference::{SecretsManagerSecret, Target};
use super::{Failure, Reference, Stores};
use crate::aws::SECRETS_MANAGER;
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
    secret_string: Option<String>,
    /// Base64 in JSON 1.1.
    secret_binary: Option<String>,
}

type Results = Vec<(Reference, Result<String, Failure>)>;

/// One GetSecretValue (in a region, by ARN or the default) and the references it serves.
type Calls<'a> =
    BTreeMap<(Option<&'a str>, GetSecretValue<'a>), Vec<(&'a Reference, &'a SecretsManagerSecret)>>;

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
            calls
                .entry((s.region.as_deref(), input))
                .or_default()
                .push((r, s));
        }
    }
    let answers = join_all(calls.iter().map(|((region, input), _)| async move {
        let api = stores.aws(&SECRETS_MANAGER, *region)?;
        let answer: SecretValueAnswer = api.json("GetSecretValue", input, deadline).await?;
        secret_text(answer)
    }))
    .await;
    calls
        .into_values()
        .zip(answers)
        .flat_map(|(refs, answer)| {
            refs.into_iter()
                .map(move |(r, s)| (r.clone(), answer.clone().and_then(|text| pick_key(&text, s))))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn secret_text(answer: SecretValueAnswer) -> Result<String, Failure> {
    match (answer.secret_string, answer.secret_binary) {
        (Some(text), _) => Ok(text),
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
