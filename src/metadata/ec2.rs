//! Amazon EC2 instance metadata (IMDS), version 2 by default.
//!
//! A session token comes from `PUT /latest/api/token` (TTL header) and goes on every GET as
//! `X-aws-ec2-metadata-token`. A 401 means the token expired: get a new one and ask again. A 403
//! on the token request means the endpoint is disabled for this instance. Token-less IMDSv1 is
//! used only when `imdsv1 = true` and the endpoint has no token API (404/405 on the PUT).
//! The token is a credential: it is never logged or put in an error.
//!
//! At the default address, EC2 also serves IMDS on IPv6 (`[fd00:ec2::254]`, Nitro instances with
//! `HttpProtocolIpv6=enabled`; the only way in from an IPv6-only subnet). The token request goes
//! to IPv4 first and to IPv6 as soon as IPv4 fails (no route: at once), or after a head start of
//! [`IPV6_HEAD_START`] while IPv4 has not answered (a route that leads nowhere), whichever comes
//! first; the first address to answer serves the session, token and GETs alike. IPv4 first
//! because every instance has it but few have IPv6 IMDS: a dual-stack instance sends one token
//! request, as before, and an IPv6-only one loses nothing (its IPv4 attempt fails before it
//! leaves the host). The instance role's keys
//! (`meta-data/iam/security-credentials/ROLE`) come through here too, for the AWS client
//! (`metadata::Identity`).

use super::client::{Answer, Http, Request, Tried, json_string, parse_json, status_text, text};
use super::{InstanceFacts, MetadataError, MetadataProvider, Result, TagNames};
use crate::net::Verdict;
use futures_util::future::try_join_all;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Mutex;

/// Seconds a token lives. A boot needs it for a few seconds; a short life limits what a leaked
/// token is worth.
const TOKEN_TTL_SECONDS: &str = "300";

/// How many fresh tokens one GET may ask for before the 401s count as a refusal.
const TOKEN_RENEWALS: u32 = 3;

/// How long the IPv4 address has to answer the token request before IPv6 is asked too: RFC 8305's
/// connection attempt delay, long enough for a link-local answer on a busy instance.
pub(super) const IPV6_HEAD_START: std::time::Duration = std::time::Duration::from_millis(250);

pub(super) struct Ec2 {
    /// The configured address (IPv4 unless `endpoint` says otherwise).
    http: Http,
    /// `[fd00:ec2::254]`, asked beside the default IPv4 address; None when `endpoint` is set.
    ipv6: Option<Http>,
    /// The IPv6 address answered the last token request: the session's requests go there.
    on_ipv6: AtomicBool,
    imdsv1: bool,
    session: Mutex<Session>,
}

#[derive(Clone)]
enum Session {
    /// No token yet (or the last one expired).
    None,
    /// A token, and which one it is (to renew it once when several GETs see it expire).
    Token(HeaderValue, u64),
    /// The endpoint has no token API and `imdsv1 = true`.
    V1,
}

/// Which of the two addresses answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Ec2 {
    pub fn new(http: Http, imdsv1: bool) -> Ec2 {
        let ipv6 = (http.base == crate::net::METADATA).then(|| http.at(crate::net::METADATA_EC2_IPV6));
        Ec2 {
            http,
            ipv6,
            on_ipv6: AtomicBool::new(false),
            imdsv1,
            session: Mutex::new(Session::None),
        }
    }

    /// The address the session talks to (errors name it).
    fn http(&self) -> &Http {
        match (&self.ipv6, self.on_ipv6.load(Ordering::Relaxed)) {
            (Some(ipv6), true) => ipv6,
            _ => &self.http,
        }
    }

    /// The current session, asking for a token if there is none. Holding the lock while asking
    /// makes concurrent GETs share one token request.
    async fn session(&self) -> Result<Session> {
        let mut session = self.session.lock().await;
        if let Session::None = *session {
            *session = self.request_token().await?;
        }
        Ok(session.clone())
    }

    async fn request_token(&self) -> Result<Session> {
        let step = "session token";
        let put = Request::put("/latest/api/token").header(
            "x-aws-ec2-metadata-token-ttl-seconds",
            HeaderValue::from_static(TOKEN_TTL_SECONDS),
        );
        let answer = self.token_answer(step, &put).await?;
        match answer.status {
            StatusCode::OK => {
                let token = HeaderValue::from_bytes(answer.body.trim_ascii())
                    .ok()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| self.http().error(step, "the answer is not a usable token"))?;
                static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(Session::Token(token, generation))
            }
            StatusCode::FORBIDDEN => Err(self.http().error(
                step,
                "IMDS token request refused (403): metadata endpoint disabled",
            )),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED if self.imdsv1 => {
                tracing::warn!("ec2: the metadata endpoint has no IMDSv2 token API; using IMDSv1 (imdsv1 = true)");
                Ok(Session::V1)
            }
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Err(self.http().error(
                step,
                format!(
                    "IMDS token request refused ({}): the endpoint has no IMDSv2; set imdsv1 = true to allow token-less requests",
                    answer.status.as_u16()
                ),
            )),
            status => Err(self.http().error(
                step,
                format!("IMDS token request refused ({})", status_text(status)),
            )),
        }
    }

    /// The token request's answer: from the configured address, or from whichever of the IPv4
    /// and IPv6 addresses answers first (see the module's doc), which then serves the session.
    async fn token_answer(&self, step: &str, put: &Request) -> Result<Answer> {
        let Some(ipv6) = &self.ipv6 else {
            return self.http.send(step, put).await;
        };
        let answered_v6 = AtomicBool::new(false);
        let classify = |answer: &Answer| self.http.by_status(answer.status);
        let attempt = || async {
            let tried = either_family(&self.http, ipv6, put).await;
            Ok(tried.map(|(answer, family)| {
                answered_v6.store(family == Family::V6, Ordering::Relaxed);
                answer
            }))
        };
        let answer = self
            .http
            .send_with(step, attempt, classify)
            .await
            .map_err(|e| MetadataError {
                endpoint: format!("{} or {}", self.http.base, ipv6.base),
                ..e
            })?;
        let v6 = answered_v6.load(Ordering::Relaxed);
        if self.on_ipv6.swap(v6, Ordering::Relaxed) != v6 && v6 {
            tracing::info!(endpoint = %ipv6.base, "ec2: IMDS answers on IPv6, not on IPv4");
        }
        Ok(answer)
    }

    /// Forgets `generation` if it is still the current token, so the next GET asks for a new one.
    async fn expire(&self, generation: u64) {
        let mut session = self.session.lock().await;
        if matches!(*session, Session::Token(_, g) if g == generation) {
            *session = Session::None;
        }
    }

    /// Later requests give up at `deadline`; the session (token) is kept.
    pub(super) fn set_deadline(&mut self, deadline: tokio::time::Instant) {
        self.http.set_deadline(deadline);
        if let Some(ipv6) = &mut self.ipv6 {
            ipv6.set_deadline(deadline);
        }
    }

    /// GET under the session; 404 is None. A 401 means the token expired: the attempt drops it
    /// and the classifier sends the request again at once, with a fresh token, up to
    /// [`TOKEN_RENEWALS`] times; the rest is retried as every request is.
    pub(super) async fn get(&self, step: &str, path: &str) -> Result<Option<bytes::Bytes>> {
        let mut expired = 0u32;
        let classify = |answer: &Answer| match answer.status {
            StatusCode::UNAUTHORIZED if expired < TOKEN_RENEWALS => {
                expired += 1;
                tracing::info!(step, "ec2: IMDS token expired (401); asking for a new one");
                Verdict::Again("IMDS token expired (401)".into())
            }
            status => self.http().by_status(status),
        };
        let answer = self
            .http()
            .send_with(step, || self.attempt(step, path), classify)
            .await?;
        match answer.status {
            StatusCode::OK => Ok(Some(answer.body)),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::UNAUTHORIZED => Err(self.http().error(
                step,
                format!("refused (401) even with {TOKEN_RENEWALS} fresh tokens"),
            )),
            StatusCode::FORBIDDEN => Err(self
                .http()
                .error(step, "refused (403): metadata endpoint disabled")),
            status => Err(self
                .http()
                .error(step, format!("answered {}", status_text(status)))),
        }
    }

    /// One GET under the current session (asking for a token if there is none). A 401 drops
    /// the token it was sent with; without a token (IMDSv1) it is a refusal.
    async fn attempt(&self, step: &str, path: &str) -> Tried {
        let session = self.session().await?;
        let mut request = Request::get(path);
        if let Session::Token(token, _) = &session {
            request = request.header("x-aws-ec2-metadata-token", token.clone());
        }
        let tried = self.http().once(&request).await;
        if let Ok(answer) = &tried
            && answer.status == StatusCode::UNAUTHORIZED
        {
            match session {
                Session::Token(_, generation) => self.expire(generation).await,
                _ => {
                    return Err(self.http().error(
                        step,
                        "IMDSv1 request refused (401): the endpoint requires IMDSv2 tokens",
                    ));
                }
            }
        }
        Ok(tried)
    }
}

/// The keys document at `meta-data/iam/security-credentials/ROLE`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleKeysDocument {
    code: Option<String>,
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
    expiration: Option<String>,
}

impl Ec2 {
    /// The role's name from the listing, then its keys. 404 on the listing: no role attached.
    pub(super) async fn role_keys(&self) -> Result<super::AwsRoleKeys> {
        const LISTING: &str = "/latest/meta-data/iam/security-credentials/";
        let step = "instance role";
        let listing = self.get(step, LISTING).await?.ok_or_else(|| {
            self.http().error(
                step,
                "no instance role attached (404); attach one or give kiln AWS_ACCESS_KEY_ID",
            )
        })?;
        let listing = text(self.http(), step, &listing)?;
        let role = listing.lines().next().unwrap_or("").trim().to_string();
        if role.is_empty() {
            return Err(self.http().error(step, "no instance role attached (empty list)"));
        }
        let step = format!("keys of instance role {role:?}");
        let path = format!("{LISTING}{}", encode_segment(&role));
        let body = self
            .get(&step, &path)
            .await?
            .ok_or_else(|| self.http().error(&step, "answered 404 Not Found"))?;
        let keys: RoleKeysDocument = serde_json::from_slice(&body)
            .map_err(|e| self.http().error(&step, format!("unexpected answer ({e})")))?;
        if let Some(code) = keys.code.as_deref().filter(|c| *c != "Success") {
            return Err(self.http().error(&step, format!("Code {code}")));
        }
        let expiry = match keys.expiration.as_deref() {
            Some(e) => Some(
                humantime::parse_rfc3339_weak(e.trim_end_matches('Z'))
                    .map_err(|err| self.http().error(&step, format!("Expiration {e:?}: {err}")))?,
            ),
            None => None,
        };
        Ok(super::AwsRoleKeys {
            role,
            access_key_id: keys.access_key_id,
            secret_access_key: keys.secret_access_key,
            token: keys.token,
            expiry,
        })
    }
}

#[async_trait::async_trait]
impl MetadataProvider for Ec2 {
    fn name(&self) -> &'static str {
        "ec2"
    }

    fn endpoint(&self) -> String {
        self.http().base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let step = "instance identity document";
        let (document, hostname) = tokio::try_join!(
            self.get(step, "/latest/dynamic/instance-identity/document"),
            self.get("local-hostname", "/latest/meta-data/local-hostname"),
        )?;
        let document = document.ok_or_else(|| self.http().error(step, "answered 404 Not Found"))?;
        let doc = parse_json(self.http(), step, &document)?;
        let hostname = match hostname {
            Some(body) => Some(text(self.http(), "local-hostname", &body)?).filter(|h| !h.is_empty()),
            None => None,
        };
        Ok(facts_from(&doc, hostname))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get("user-data", "/latest/user-data")
            .await?
            .map(|b| b.to_vec()))
    }

    /// Instance tags, when "allow tags in instance metadata" is on (else the listing is 404).
    async fn tags(&self, wanted: &TagNames<'_>) -> Result<BTreeMap<String, String>> {
        let step = "instance tags";
        let Some(listing) = self.get(step, "/latest/meta-data/tags/instance").await? else {
            return Ok(BTreeMap::new());
        };
        let listing = text(self.http(), step, &listing)?;
        let keys: Vec<&str> = listing
            .lines()
            .map(str::trim)
            .filter(|k| wanted.matches(k))
            .collect();
        let values = try_join_all(keys.iter().map(|key| async move {
            let path = format!("/latest/meta-data/tags/instance/{}", encode_segment(key));
            let step = format!("instance tag {key}");
            match self.get(&step, &path).await? {
                Some(body) => std::str::from_utf8(&body)
                    .map(|v| Some(v.to_string()))
                    .map_err(|_| self.http().error(&step, "value is not UTF-8")),
                None => Ok(None),
            }
        }))
        .await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect())
    }
}

/// One token request to IPv4, and to IPv6 once IPv4 has failed or had [`IPV6_HEAD_START`]
/// (see the module's doc): the first answer, whatever its status, and which address gave it.
/// Both failing is one failed attempt, naming both reasons.
async fn either_family(
    v4: &Http,
    v6: &Http,
    request: &Request,
) -> std::result::Result<(Answer, Family), String> {
    let both_failed = |e4: String, e6: String| format!("IPv4: {e4}; IPv6 ({}): {e6}", v6.base);
    let ipv4 = v4.once(request);
    tokio::pin!(ipv4);
    tokio::select! {
        biased;
        first = &mut ipv4 => match first {
            Ok(answer) => Ok((answer, Family::V4)),
            Err(e4) => v6.once(request).await.map(|a| (a, Family::V6)).map_err(|e6| both_failed(e4, e6)),
        },
        () = tokio::time::sleep(IPV6_HEAD_START) => {
            let ipv6 = v6.once(request);
            tokio::pin!(ipv6);
            tokio::select! {
                biased;
                first = &mut ipv4 => match first {
                    Ok(answer) => Ok((answer, Family::V4)),
                    Err(e4) => ipv6.await.map(|a| (a, Family::V6)).map_err(|e6| both_failed(e4, e6)),
                },
                first = &mut ipv6 => match first {
                    Ok(answer) => Ok((answer, Family::V6)),
                    Err(e6) => ipv4.await.map(|a| (a, Family::V4)).map_err(|e4| both_failed(e4, e6)),
                },
            }
        }
    }
}

/// Percent-encodes one path segment (tag keys may hold spaces and `+ - = . _ : @`).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The facts in the instance identity document, with the `local-hostname` answer.
pub(super) fn facts_from(doc: &serde_json::Value, hostname: Option<String>) -> InstanceFacts {
    InstanceFacts {
        provider: "ec2".into(),
        instance_id: json_string(doc, "/instanceId"),
        region: json_string(doc, "/region"),
        zone: json_string(doc, "/availabilityZone"),
        local_ipv4: json_string(doc, "/privateIp"),
        hostname,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_tag_keys() {
        assert_eq!(super::encode_segment("env.APP_ENV"), "env.APP_ENV");
        assert_eq!(super::encode_segment("a b/c"), "a%20b%2Fc");
    }
}
