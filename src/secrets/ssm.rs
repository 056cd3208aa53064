//! SSM Parameter Store: references through `GetParameters` (10 names a call, decrypted), and
//! chamber-style paths through `GetParametersByPath` (pages of 10, `NextToken`).
//!
//! A batch holds each parameter name at most once, so every answer matches its request by
//! name even when two references ask for different versions of one parameter. A batch refused
//! as a whole (AccessDenied on one name) is asked again name by name, so the error lands on the
//! variable whose parameter is denied and not on its neighbours.

use super::reference::{SsmParameter, Target};
use super::{Failure, Reference, Stores, variable_name};
use crate::aws::{Api, Region, SSM};
use crate::env::{ExecLimits, SecretValue};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// GetParameters' and GetParametersByPath's page size.
const BATCH: usize = 10;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetParameters<'a> {
    names: Vec<&'a str>,
    with_decryption: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersAnswer {
    #[serde(default)]
    parameters: Vec<Parameter>,
    #[serde(default)]
    invalid_parameters: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersByPath<'a> {
    path: &'a str,
    recursive: bool,
    with_decryption: bool,
    max_results: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersByPathAnswer {
    #[serde(default)]
    parameters: Vec<Parameter>,
    next_token: Option<String>,
}

/// One parameter of an answer (no `Debug`: it holds the value).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Parameter {
    name: String,
    value: String,
    #[serde(rename = "ARN")]
    arn: Option<String>,
}

type Results = Vec<(Reference, Result<String, Failure>)>;

/// Every SSM reference, batched per region, batches concurrently.
pub(super) async fn resolve(stores: &Stores, references: Vec<&Reference>, deadline: Instant) -> Results {
    let mut by_region: BTreeMap<Option<&Region>, Vec<(&Reference, &SsmParameter)>> = BTreeMap::new();
    for r in &references {
        if let Target::Ssm(p) = &r.target {
            by_region
                .entry(stores.region(p.region.as_ref()))
                .or_default()
                .push((r, p));
        }
    }
    let mut calls = Vec::new();
    for (region, parameters) in by_region {
        let api = match stores.aws(&SSM, region) {
            Ok(api) => api,
            Err(failure) => {
                calls.push(Box::pin(async move {
                    parameters
                        .iter()
                        .map(|(r, _)| ((*r).clone(), Err(failure.clone())))
                        .collect()
                })
                    as std::pin::Pin<
                        Box<dyn std::future::Future<Output = Results> + Send + '_>,
                    >);
                continue;
            }
        };
        for batch in batches(parameters) {
            let api = api.clone();
            calls.push(Box::pin(async move { get_batch(&api, &batch, deadline).await }));
        }
    }
    join_all(calls).await.into_iter().flatten().collect()
}

/// Batches of at most [`BATCH`], each parameter name at most once per batch.
fn batches<'a>(
    parameters: Vec<(&'a Reference, &'a SsmParameter)>,
) -> Vec<Vec<(&'a Reference, &'a SsmParameter)>> {
    let mut batches: Vec<Vec<(&Reference, &SsmParameter)>> = Vec::new();
    for item in parameters {
        let fits = batches
            .iter_mut()
            .find(|b| b.len() < BATCH && b.iter().all(|(_, p)| p.name != item.1.name));
        match fits {
            Some(batch) => batch.push(item),
            None => batches.push(vec![item]),
        }
    }
    batches
}

async fn get_batch(api: &Api, batch: &[(&Reference, &SsmParameter)], deadline: Instant) -> Results {
    let input = GetParameters {
        names: batch.iter().map(|(_, p)| p.request.as_str()).collect(),
        with_decryption: true,
    };
    let answer: GetParametersAnswer = match api.json("GetParameters", &input, deadline).await {
        Ok(answer) => answer,
        Err(e) if batch.len() > 1 && e.code().is_some() => {
            // Refused as a whole: ask name by name to tell which reference it is.
            let single = batch
                .iter()
                .map(|item| get_batch(api, std::slice::from_ref(item), deadline));
            return join_all(single).await.into_iter().flatten().collect();
        }
        Err(e) => {
            let failure = Failure::from(e);
            return batch
                .iter()
                .map(|(r, _)| ((*r).clone(), Err(failure.clone())))
                .collect();
        }
    };
    batch
        .iter()
        .map(|(r, p)| ((*r).clone(), pick(&answer, p)))
        .collect()
}

/// The answer's parameter for `wanted`, or why there is none.
fn pick(answer: &GetParametersAnswer, wanted: &SsmParameter) -> Result<String, Failure> {
    if answer.invalid_parameters.contains(&wanted.request) {
        return Err(Failure {
            code: Some("ParameterNotFound".into()),
            reason: format!(
                "ssm GetParameters: ParameterNotFound: no parameter {} (or not that version or label)",
                wanted.request
            ),
        });
    }
    let arn = wanted
        .request
        .rsplit_once(':')
        .map(|(a, _)| a)
        .filter(|_| wanted.region.is_some());
    answer
        .parameters
        .iter()
        .find(|p| {
            p.name == wanted.name
                || p.name == wanted.request
                || (arn.is_some() && (p.arn.as_deref() == arn || Some(p.name.as_str()) == arn))
                || (wanted.region.is_some() && p.arn.as_deref() == Some(wanted.request.as_str()))
        })
        .map(|p| p.value.clone())
        .ok_or_else(|| {
            Failure::new(format!(
                "ssm GetParameters: {} is missing from the answer",
                wanted.request
            ))
        })
}

/// The most pages of one `ssm_paths` path (10 parameters each: SSM's own quota of standard
/// parameters per region is 10 000). A store that always has another page is refused here, or
/// sooner by the size bound, not paged until the deadline.
const MAX_PAGES: usize = 1000;

/// Every parameter directly under `path`, as variables (chamber's naming), page by page, while
/// they fit what a service's exec can carry ([`ExecLimits`]) and within [`MAX_PAGES`].
pub(super) async fn load_path(
    stores: &Stores,
    path: &str,
    deadline: Instant,
) -> Result<Vec<(String, SecretValue)>, Failure> {
    let api = stores.aws(&SSM, None)?;
    let limit = ExecLimits::of_this_machine().total;
    let refused = |why: String| Failure::new(format!("ssm GetParametersByPath: {why}: refused"));
    let (mut loaded, mut bytes, mut pages) = (Vec::new(), 0u64, 0usize);
    let mut next_token: Option<String> = None;
    loop {
        let input = GetParametersByPath {
            path,
            recursive: false,
            with_decryption: true,
            max_results: BATCH,
            next_token: next_token.clone(),
        };
        let page: GetParametersByPathAnswer = api.json("GetParametersByPath", &input, deadline).await?;
        pages += 1;
        for p in page.parameters {
            let name = variable_name(&p.name);
            // As the environment counts it: NAME=value, its NUL, and a pointer.
            bytes = bytes.saturating_add(u64::try_from(name.len() + p.value.len() + 10).unwrap_or(u64::MAX));
            if bytes > limit {
                return Err(refused(format!(
                    "the parameters under it are over {limit} bytes, more than a service's exec can carry \
                     (a quarter of the stack limit), after {pages} pages"
                )));
            }
            let reference = format!("ssm:{}", p.name);
            loaded.push((
                name,
                SecretValue {
                    value: p.value,
                    reference,
                },
            ));
        }
        match page.next_token.filter(|t| !t.is_empty()) {
            None => return Ok(loaded),
            Some(token) if next_token.as_ref() == Some(&token) => {
                return Err(refused("the store gave the same NextToken twice".into()));
            }
            Some(_) if pages >= MAX_PAGES => {
                return Err(refused(format!(
                    "more than {MAX_PAGES} pages ({} parameters) and still a NextToken",
                    MAX_PAGES * BATCH
                )));
            }
            Some(token) => next_token = Some(token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Reference {
        let config: crate::config::SecretsConfig = toml::from_str("").unwrap();
        Reference::parse(text, &config).unwrap().unwrap()
    }

    #[test]
    fn batches_hold_ten_distinct_names() {
        let refs: Vec<Reference> = (0..23)
            .map(|i| reference(&format!("ssm:/app/p{i}")))
            .chain([reference("ssm:/app/p0:1"), reference("ssm:/app/p0:2")])
            .collect();
        let items: Vec<(&Reference, &SsmParameter)> = refs
            .iter()
            .map(|r| match &r.target {
                Target::Ssm(p) => (r, p),
                _ => unreachable!(),
            })
            .collect();
        let b = batches(items);
        assert!(b.iter().all(|b| b.len() <= BATCH));
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 25);
        for batch in &b {
            let mut names: Vec<&str> = batch.iter().map(|(_, p)| p.name.as_str()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), batch.len(), "a name twice in one batch");
        }
        assert_eq!(b.len(), 4, "p0 three times needs a third and a fourth batch here");
    }
}
