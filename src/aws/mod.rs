//! The one AWS client of kiln: credentials, endpoints, SigV4, the JSON 1.1 and Query protocols,
//! AWS error answers and retries. The ELBv2 registrar, the SSM and Secrets Manager lookups (and
//! whatever else speaks to AWS) call through it, so each of those concerns lives here once.
//!
//! ```ignore
//! let aws = AwsClient::new(CredentialSource::from_env(identity)?)?;
//! let region = Region::parse("eu-west-1")?;                 // names are typed: see `aws_names`
//! let ssm = aws.api(&SSM, &region, None)?;                   // endpoint: config > env > default
//! let out: Out = ssm.json("GetParameters", &input, deadline).await?;     // JSON 1.1
//! let out: Resp = elbv2.query("RegisterTargets", &params, deadline).await?; // Query, XML answer
//! ```
//!
//! Every call is retried inside its deadline on connection errors, timeouts, 5xx, 429 and AWS's
//! throttling codes, with the same capped exponential backoff as metadata requests.

mod credentials;
mod endpoint;
mod error;
mod protocol;
mod sign;

pub use crate::aws_names::{Arn, Partition, Region, TargetGroupArn};
pub use credentials::CredentialSource;
pub use endpoint::{AUTOSCALING, ELBV2, Endpoint, Protocol, SECRETS_MANAGER, SSM, Service};
#[doc(hidden)]
pub use error::parse as parse_error_answer;
pub use error::{AwsError, CallError};
pub use protocol::Members;

use crate::http_client::{BodyError, root_cause};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// First pause between two attempts; it doubles up to [`BACKOFF_MAX`] (as metadata requests).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// One attempt's longest wait for an answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
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
        let http = crate::http_client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the AWS HTTP client: {}", root_cause(&e)))?;
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
        let mut backoff = BACKOFF_FIRST;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let last = match self.attempt(call, deadline).await {
                Ok(body) => return Ok(body),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => e,
            };
            let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
            if pause.is_zero() {
                return Err(last.gave_up(attempts));
            }
            tracing::info!(
                service = self.service.name,
                action = call.action,
                attempt = attempts,
                "AWS request failed ({last}); retrying in {}ms",
                pause.as_millis()
            );
            tokio::time::sleep(pause).await;
            // A pause that ran to the deadline leaves no time for another attempt: the last
            // answer is the reason, not "the deadline passed before the request was sent".
            if Instant::now() >= deadline {
                return Err(last.gave_up(attempts));
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One signed request and its answer.
    async fn attempt(&self, call: &Call<'_>, deadline: Instant) -> Result<bytes::Bytes, CallError> {
        let fail = |reason: String| self.failed(call.action, reason);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(fail("the deadline passed before the request was sent".into()));
        }
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
        .map_err(|e| fail(format!("cannot sign: {e}")).not_transient())?;
        let mut request = self
            .client
            .inner
            .http
            .post(url)
            .timeout(remaining.min(REQUEST_TIMEOUT))
            .body(call.body.clone());
        for (name, value) in headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            request = request.header(name, value);
        }
        self.client.inner.requests.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await.map_err(|e| fail(describe(&e)))?;
        let status = response.status();
        let body = read_limited(response).await.map_err(&fail)?;
        if status.is_success() {
            return Ok(body);
        }
        match error::parse(&body) {
            Some(error) => Err(CallError::Aws {
                service: self.service.name,
                action: call.action.to_string(),
                endpoint: self.endpoint.shown().to_string(),
                status: status.as_u16(),
                error,
                attempts: 1,
            }),
            None => Err(fail(format!("HTTP {status} without an AWS error code"))
                .transient_if(status.is_server_error() || status.as_u16() == 429)),
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

/// The body, refusing answers over [`BODY_LIMIT`].
async fn read_limited(mut response: reqwest::Response) -> Result<bytes::Bytes, String> {
    match crate::http_client::read_body(&mut response, BODY_LIMIT).await {
        Ok(body) => Ok(body.into()),
        Err(BodyError::TooLong(limit)) => Err(format!("answer is over the {limit} byte limit")),
        Err(BodyError::Read(e)) => Err(describe(&e)),
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        format!("cannot connect: {}", root_cause(e))
    } else {
        root_cause(e)
    }
}
