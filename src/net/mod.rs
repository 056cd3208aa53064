//! Outbound HTTP, in one room: the clients kiln builds ([`client`]), the one loop that retries
//! until a deadline ([`retry`]), the one bounded body reader ([`body`]), one attempt
//! ([`exchange`]) and where the metadata services are ([`METADATA`]). Every room that talks to
//! the network (metadata, aws, secrets, lifecycle, lb, fleet) goes through here; what an answer
//! *means* stays with the caller, which says so by the classifier it passes to [`retry::until`].
//!
//! # When kiln gives up on the network
//!
//! Every request kiln sends has a deadline, and nothing is retried past it. The same text is the
//! README's "When kiln gives up on the network": change both together.
//!
//! **One attempt** is bounded three ways: the connection (3 s to a cloud API or the Consul agent;
//! within the request timeout for a metadata service), the request timeout for the answer and its
//! whole body (`[metadata] request_timeout`, 2 s by default, for metadata services; 10 s for cloud
//! APIs and the Consul agent; `--timeout` for `kiln fleet`), and the body's size (an answer over its
//! bound is refused, naming the bound: `answer of 10000000 bytes is over the 1048576 byte limit`).
//!
//! **What is retried**: no connection, no answer within the request timeout, an answer cut short or
//! over its bound, 429 and every 5xx; and what a protocol documents besides: Azure IMDS's 404 and
//! 410, AWS's throttling codes, and an expired IMDSv2 token (401: kiln asks for a new token and sends
//! the request again at once, with up to 3 fresh tokens), the WireServer's 403 (its throttling) and
//! 410 (the goal state changed: kiln asks for the new one). Every other answer is final at once: a 403,
//! a 404 that means "absent", a signature error.
//!
//! **The pause** after a retried attempt is capped exponential with jitter: 100 ms, doubling to 2 s
//! at most, each pause drawn between half and all of that. The jitter is for the instances of a group
//! that boot in the same second and talk to the same regional API (SSM, ELBv2 and Auto Scaling
//! throttle per account): they must not retry in step. The floor of half keeps a dead endpoint from
//! being asked in a tight loop.
//!
//! **The deadline**: no attempt starts after it and no pause runs past it. kiln gives up *at* the
//! deadline, not before, with the last attempt's reason and how many attempts it made:
//! `metadata (ec2 at http://169.254.169.254), session token: gave up after 1m 2ms and 41 attempts
//! (deadline): cannot connect: Connection refused (os error 111)`.
//!
//! | who | deadline | then |
//! | --- | --- | --- |
//! | the boot: metadata, then secrets | `[metadata] deadline` (60 s), one for both | the boot is refused; `kiln status` names the step |
//! | `[metadata] recheck` | `[metadata] deadline` a round | the round reports, the next one comes |
//! | instance credentials (IMDS role keys, GCE and Azure tokens) | the deadline of the call that needs them | that call fails |
//! | an ELBv2 call | 10 s | the membership tries again (below) |
//! | a Consul agent request | one attempt, 10 s | the membership tries again |
//! | joining the load balancer | never: 0.5 s doubling to 10 s (the same rule), until kiln stops | `kiln status`: `unregistered: <reason>` |
//! | `CompleteLifecycleAction` | 10 s calls, paused 1 s doubling to 30 s, until the hook's `heartbeat_timeout` | the hook shows `GAVE UP` |
//! | `CompleteLifecycleAction` when kiln stops | 1 s more for the answer being sent (`lifecycle::STOP_GRACE`) | the hook shows `GAVE UP`; the hook's timeout decides |
//! | a lifecycle heartbeat | 10 s (or `heartbeat_interval` if shorter) | the next heartbeat |
//! | the Azure check-in (WireServer: goal state, then the health report) | 20 min; 10 s an attempt, paused 200 ms doubling to 5 s | `kiln status`: `azure check-in: FAILED`; the boot goes on |
//! | a notice poll (EC2, Azure) | `poll_interval`, at least 2 s (Azure's first: 150 s) | a `problem:` in status, the next poll |
//! | a GCE hanging GET | `timeout_sec` + 10 s | asked again after 5 s |
//! | `kiln fleet` listing an ELBv2 target group | 10 s | the verdict is `unreachable` |
//! | `kiln fleet` placing ELBv2 instance targets (EC2 `DescribeInstances`) | 10 s for the whole look-up, every batch within it | each member it could not place says why |
//! | `kiln check --online` reading the target group's deregistration delay | 5 s, credentials included (`lb::warnings::ONLINE_BUDGET`) | a `note:` line; the check still passes |
//! | `kiln fleet` asking a member | `--timeout`, one attempt | the member is reported as not answering |
//! | a `[warm]` request to the app | `[warm] request_timeout` (10 s), one attempt | counted as failed |
//! | the whole `[warm]` warm-up | `[warm] timeout` (30 s) | a warning; kiln goes on to `READY=1` |

pub mod body;
pub mod client;
pub mod retry;

pub use body::{BodyError, read_body};
pub use retry::{Backoff, Outcome, Verdict, transient_status};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use std::time::Duration;

/// Where every cloud kiln knows serves its instance metadata: the link-local address, so that a
/// boot needs no DNS. The default of `[metadata] endpoint` and `[lb] imds_endpoint`.
pub const METADATA: &str = "http://169.254.169.254";

/// EC2's instance metadata on IPv6 (Nitro instances in IPv6 subnets). Not a default: give it as
/// `[metadata] endpoint` where the instance has no IPv4 path to [`METADATA`].
pub const METADATA_EC2_IPV6: &str = "http://[fd00:ec2::254]";

/// GCE's name for its metadata server, the same server as [`METADATA`]. kiln asks the address:
/// a name needs DNS, which may not be up yet at boot.
pub const METADATA_GCE_NAME: &str = "http://metadata.google.internal";

/// Scaleway's metadata service: its own link-local address, not [`METADATA`].
pub const METADATA_SCALEWAY: &str = "http://169.254.42.42";

/// Alibaba Cloud ECS's metadata service: an address of its own, not [`METADATA`].
pub const METADATA_ALIBABA: &str = "http://100.100.100.200";

/// Azure's WireServer, where an instance without a provisioning agent reports that it is
/// provisioned (`metadata::wireserver`). The same address in every Azure region; it is not
/// link-local, so no other network may hold it. The default of `[metadata] wireserver`.
pub const WIRESERVER: &str = "http://168.63.129.16";

/// Connecting to a cloud API or the Consul agent takes at most this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One request to a cloud API or the Consul agent: the answer and its body within this.
pub const API_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One API call, retries included, where nothing else bounds it (an ELBv2 call, a series of a
/// lifecycle hook's answer).
pub const API_CALL_BUDGET: Duration = Duration::from_secs(10);

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// One attempt: `request` sent, answered and its body read within `timeout`, the body at most
/// `limit` bytes. The error is a reason fit for a message: no URL, no body.
pub async fn exchange(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    limit: usize,
) -> Result<Answer, String> {
    let once = async {
        let mut response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let body = read_body(&mut response, limit).await.map_err(|e| e.to_string())?;
        Ok(Answer {
            status,
            headers,
            body: Bytes::from(body),
        })
    };
    match tokio::time::timeout(timeout, once).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {}", millis(timeout))),
    }
}

/// What went wrong with a request, as a person needs to read it (no URL: reqwest puts one first).
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() {
        format!("cannot connect: {}", root_cause(e))
    } else if e.is_timeout() {
        "timed out".to_string()
    } else {
        root_cause(e)
    }
}

/// reqwest's errors nest their cause; the innermost one is what a person needs to read.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut source = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}

/// A duration to the millisecond, as people read it (`1s 500ms`).
pub fn millis(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    ))
}
