//! The one AWS client of kiln: credentials, endpoints, SigV4, the JSON 1.1 and Query protocols,
//! AWS error answers and retries. The ELBv2 registrar, the Auto Scaling hooks, the SSM and Secrets
//! Manager lookups, `kiln fleet`'s EC2 look-up of instance addresses (and whatever else speaks to
//! AWS) call through it, so each of those concerns lives here once.
//!
//! ```ignore
//! let aws = AwsClient::new(CredentialSource::from_env(identity)?)?;
//! let region = Region::parse("eu-west-1")?;                 // names are typed: see `aws_names`
//! let ssm = aws.api(&SSM, &region, None)?;                   // endpoint: config > env > default
//! let out: Out = ssm.json("GetParameters", &input, deadline).await?;     // JSON 1.1
//! let out: Resp = elbv2.query("RegisterTargets", &params, deadline).await?; // Query, XML answer
//! ```
//!
//! Every call is retried inside its deadline by `crate::net::retry` on what `net` retries (no
//! connection, no answer, 429, 5xx) and AWS's throttling codes ([`CallError::is_transient`]).

mod credentials;
mod endpoint;
mod error;
mod protocol;
mod sign;

pub use crate::aws_names::{Arn, Partition, Region, TargetGroupArn};
pub use credentials::CredentialSource;
pub use endpoint::{AUTOSCALING, EC2, ELBV2, Endpoint, Protocol, SECRETS_MANAGER, SSM, Service};
#[doc(hidden)]
pub use error::parse as parse_error_answer;
pub use error::{AwsError, CallError};
pub use protocol::{Items, Members};

use crate::net::retry::{self, Backoff, GaveUp, Outcome, Verdict};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

/// Largest answer read (a page of 10 parameters of 8 KiB, a 64 KiB secret, with room to spare).
const BODY_LIMIT: usize = 1024 * 1024;

/// The client: one HTTP connection pool, one credential source, one request counter. Cheap to
/// clone; clones share all three.
#[derive(Clone)]
pub struct AwsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    credentials: CredentialSource,
    /// HTTP requests sent to AWS APIs (every attempt), for `kiln status` and benchmarks.
    requests: AtomicU64,
}

impl AwsClient {
    pub fn new(credentials: CredentialSource) -> Result<AwsClient, String> {
        let http = crate::net::client::api()?;
        Ok(AwsClient {
            inner: Arc::new(Inner {
                http,
                credentials,
                requests: AtomicU64::new(0),
            }),
        })
    }

    /// One service in one region. `configured`: the config's endpoint override, if any. An
    /// error says which endpoint is not a URL.
    pub fn api(
        &self,
        service: &'static Service,
        region: &Region,
        configured: Option<&str>,
    ) -> Result<Api, String> {
        Ok(Api {
            client: self.clone(),
            service,
            endpoint: service.endpoint(region, configured)?,
        })
    }

    /// Where the credentials come from, for messages (`instance role via http://...`).
    pub fn credentials(&self) -> &CredentialSource {
        &self.inner.credentials
    }

    /// HTTP requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }
}

/// One AWS service at one endpoint, in one region.
#[derive(Clone)]
pub struct Api {
    client: AwsClient,
    service: &'static Service,
    endpoint: Endpoint,
}

/// A request ready to sign: everything but the signature and the time.
struct Call<'a> {
    action: &'a str,
    content_type: &'static str,
    /// `X-Amz-Target` (JSON 1.1 only).
    target: Option<String>,
    body: String,
}

impl Api {
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn service(&self) -> &'static Service {
        self.service
    }

    pub fn client(&self) -> &AwsClient {
        &self.client
    }

    /// Sends `call` until it gets a final answer or `deadline` passes; Ok is the answer body.
    async fn send(&self, call: &Call<'_>, deadline: Instant) -> Result<bytes::Bytes, CallError> {
        let classify = |result: &Result<bytes::Bytes, CallError>| match result {
            Err(e) if e.is_transient() => Verdict::Retry(e.to_string()),
            _ => Verdict::Final,
        };
        let log = |r: &retry::Retrying<'_>| {
            tracing::info!(
                service = self.service.name,
                action = call.action,
                attempt = r.attempt,
                "AWS request failed ({}); retrying in {}",
                r.reason,
                crate::net::millis(r.pause)
            );
        };
        let attempt = || self.attempt(call, deadline);
        match retry::until(deadline, Backoff::REQUEST, attempt, classify, log).await {
            Outcome::Final(result) => result,
            Outcome::GaveUp(GaveUp {
                last: Some((Err(e), _)),
                attempts,
                ..
            }) => Err(e.gave_up(attempts)),
            Outcome::GaveUp(_) => Err(self
                .failed(
                    call.action,
                    "the deadline passed before the request was sent".into(),
                )
                .not_transient()),
        }
    }

    /// One signed request and its answer.
    async fn attempt(&self, call: &Call<'_>, deadline: Instant) -> Result<bytes::Bytes, CallError> {
        let request = self.signed(call, deadline).await?;
        let timeout = crate::net::API_REQUEST_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        if timeout.is_zero() {
            return Err(self.failed(
                call.action,
                "the deadline passed before the request was sent".into(),
            ));
        }
        self.client.inner.requests.fetch_add(1, Ordering::Relaxed);
        let answer = crate::net::exchange(request, timeout, BODY_LIMIT)
            .await
            .map_err(|reason| self.failed(call.action, reason))?;
        self.answered(call.action, answer)
    }

    /// The request of `call`, signed with the credentials of now (fetched by `deadline`).
    async fn signed(&self, call: &Call<'_>, deadline: Instant) -> Result<reqwest::RequestBuilder, CallError> {
        let credentials = self
            .client
            .inner
            .credentials
            .get(deadline)
            .await
            .map_err(|e| self.failed(call.action, e).not_transient())?;
        let mut headers = vec![("content-type", call.content_type.to_string())];
        if let Some(target) = &call.target {
            headers.push(("x-amz-target", target.clone()));
        }
        let url = self.endpoint.request_url();
        let signed = sign::sign(
            &credentials,
            self.endpoint.region.as_str(),
            self.service.signing_name,
            url.as_str(),
            &headers,
            call.body.as_bytes(),
        )
        .map_err(|e| {
            self.failed(call.action, format!("cannot sign: {e}"))
                .not_transient()
        })?;
        let mut request = self.client.inner.http.post(url).body(call.body.clone());
        for (name, value) in headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            request = request.header(name, value);
        }
        Ok(request)
    }

    /// The body of a 2xx answer; else AWS's error, or what kiln could tell of the answer.
    fn answered(&self, action: &str, answer: crate::net::Answer) -> Result<bytes::Bytes, CallError> {
        let status = answer.status;
        if status.is_success() {
            return Ok(answer.body);
        }
        match error::parse(&answer.body) {
            Some(error) => Err(CallError::Aws {
                service: self.service.name,
                action: action.to_string(),
                endpoint: self.endpoint.shown().to_string(),
                status: status.as_u16(),
                error,
                attempts: 1,
            }),
            None => Err(self
                .failed(action, format!("HTTP {status} without an AWS error code"))
                .transient_if(crate::net::transient_status(status))),
        }
    }

    fn failed(&self, action: &str, reason: String) -> CallError {
        CallError::Failed {
            service: self.service.name,
            action: action.to_string(),
            endpoint: self.endpoint.shown().to_string(),
            reason,
            transient: true,
        }
    }
}
