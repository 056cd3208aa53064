//! Asking every member's kiln for its verbose `/readyz`, all at once, each with a short timeout:
//! a member that does not answer is reported, it never holds up the others.

use super::words::Image;
use crate::net::BodyError;
use crate::state::Phase;
use crate::terminal::peer_text;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Members asked at the same time; more wait for a free slot.
const CONCURRENCY: usize = 64;
/// A verbose `/readyz` is a few hundred bytes; a long answer is not kiln's.
const MAX_BODY: usize = 64 * 1024;

/// What one kiln says about itself in its verbose `/readyz`. Every field but the phase is
/// optional: kilns of other versions answer with what they know.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KilnView {
    /// None when the phase is one this kiln does not know (a newer kiln).
    #[serde(skip)]
    pub phase: Option<Phase>,
    #[serde(rename = "phase")]
    pub phase_word: String,
    pub reason: Option<String>,
    pub instance_id: Option<String>,
    pub release: Option<String>,
    pub root_hash: Option<String>,
    /// The image the launch configuration pins, when it pins one.
    pub expected: Option<Pin>,
    pub uptime_ms: Option<u64>,
    /// kiln's own view of its registration (`registered`, `draining`...).
    pub lb_state: Option<String>,
}

/// What the launch configuration says must run: a release label, a root hash, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub root_hash: Option<String>,
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let image = Image {
            release: self.release.clone(),
            root_hash: self.root_hash.clone(),
        };
        match (&self.release, &self.root_hash) {
            (Some(r), None) => write!(f, "{r}"),
            _ => write!(f, "{image}"),
        }
    }
}

impl KilnView {
    pub fn image(&self) -> Image {
        Image {
            release: self.release.clone(),
            root_hash: self.root_hash.clone(),
        }
    }

    /// The sentence saying that the instance does not run the pinned image, if it does not.
    /// (kiln refuses such a boot; this catches a kiln that reports both and runs anyway.)
    pub fn pin_mismatch(&self) -> Option<String> {
        let pin = self.expected.as_ref()?;
        let release_ok = pin.release.is_none() || pin.release == self.release;
        let hash_ok = pin.root_hash.is_none() || pin.root_hash == self.root_hash;
        (!(release_ok && hash_ok))
            .then(|| format!("runs {} but the launch configuration pins {pin}", self.image()))
    }
}

/// The verbose `/readyz` body; unknown fields are ignored so that any kiln version can answer.
#[derive(Deserialize)]
struct ReadyzBody {
    phase: String,
    #[serde(default)]
    reason: Option<String>,
    /// The seal's root hash.
    #[serde(default)]
    seal: Option<String>,
    #[serde(default)]
    release: Option<String>,
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    uptime_ms: Option<u64>,
    #[serde(default)]
    lb: Option<String>,
    #[serde(default)]
    expected: Option<Pin>,
}

/// Parses a verbose `/readyz` answer. Every text in it is the member's word, kept as
/// [`peer_text`] (bounded, control characters escaped): the report prints it, and a member
/// must not be able to drive the operator's terminal or forge a line of it.
pub fn parse(body: &[u8]) -> Result<KilnView, String> {
    let b: ReadyzBody = serde_json::from_slice(body).map_err(|e| peer_text(&e.to_string()))?;
    let text = |t: Option<String>| t.as_deref().map(peer_text);
    Ok(KilnView {
        phase: serde_json::from_value(serde_json::Value::String(b.phase.clone())).ok(),
        phase_word: peer_text(&b.phase),
        reason: text(b.reason),
        instance_id: text(b.instance_id),
        release: text(b.release),
        root_hash: text(b.seal),
        expected: b.expected.map(|pin| Pin {
            release: text(pin.release),
            root_hash: text(pin.root_hash),
        }),
        uptime_ms: b.uptime_ms,
        lb_state: text(b.lb),
    })
}

/// Asks each health address (`HOST:PORT`) in `health`, concurrently; answers in the same order.
pub async fn ask_all(health: &[String], timeout: Duration) -> Vec<Result<KilnView, String>> {
    let client = match crate::net::client::peers(timeout) {
        Ok(client) => client,
        Err(why) => return health.iter().map(|_| Err(why.clone())).collect(),
    };
    futures_util::stream::iter(
        health
            .iter()
            .map(|h| async { ask(&client, h, timeout).await.map_err(|e| peer_text(&e)) }),
    )
    .buffered(CONCURRENCY)
    .collect()
    .await
}

async fn ask(client: &reqwest::Client, health: &str, timeout: Duration) -> Result<KilnView, String> {
    let describe = |e: reqwest::Error| {
        if e.is_timeout() {
            format!("no answer within {}", humantime::format_duration(timeout))
        } else {
            crate::net::root_cause(&e)
        }
    };
    let url = super::source::health_url(health).ok_or("not HOST:PORT: not asked")?;
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(describe)?;
    let status = response.status();
    let body = match crate::net::read_body(&mut response, MAX_BODY).await {
        Ok(body) => body,
        Err(BodyError::TooLong { limit, .. }) => {
            return Err(format!(
                "HTTP {status}: an answer longer than {limit} bytes is not kiln's /readyz"
            ));
        }
        Err(BodyError::Read(e)) => return Err(describe(e)),
    };
    parse(&body).map_err(|e| format!("HTTP {status}: not kiln's verbose /readyz ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn todays_readyz_answer_is_read_and_extra_fields_are_ignored() {
        let v = parse(
            br#"{"ready":false,"phase":"failed","reason":"seal drift: x","units":[],"seal":"abc","future":1}"#,
        )
        .unwrap();
        assert_eq!(v.phase, Some(Phase::Failed));
        assert_eq!(v.root_hash.as_deref(), Some("abc"));
        assert_eq!(v.reason.as_deref(), Some("seal drift: x"));
        assert_eq!(v.release, None);
        assert!(parse(b"ready\n").is_err());
    }

    #[test]
    fn a_pin_is_what_it_names_release_or_root_hash() {
        let v = KilnView {
            release: Some("v42".into()),
            root_hash: Some("2cd48efa9c7643f8".into()),
            ..KilnView::default()
        };
        let pinned = |release: Option<&str>, root_hash: Option<&str>| KilnView {
            expected: Some(Pin {
                release: release.map(String::from),
                root_hash: root_hash.map(String::from),
            }),
            ..v.clone()
        };
        assert_eq!(pinned(Some("v42"), None).pin_mismatch(), None);
        assert_eq!(pinned(None, Some("2cd48efa9c7643f8")).pin_mismatch(), None);
        assert_eq!(
            pinned(Some("v41"), None).pin_mismatch().unwrap(),
            "runs v42 (2cd48efa9c76) but the launch configuration pins v41"
        );
        assert!(pinned(Some("v42"), Some("ffff")).pin_mismatch().is_some());
        assert_eq!(v.pin_mismatch(), None, "no pin, nothing to compare");
        let parsed = parse(br#"{"phase":"ready","expected":{"release":"v42","root_hash":null}}"#).unwrap();
        assert_eq!(parsed.expected.unwrap().to_string(), "v42");
    }
}
