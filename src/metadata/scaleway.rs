//! Scaleway instance metadata at `http://169.254.42.42`: `/conf?format=json` (one JSON
//! document) and the user-data key `cloud-init` at `/user_data/cloud-init`, which Scaleway
//! serves only to a request from a privileged source port (below 1024; any other gets 403), so
//! that an unprivileged process on the instance cannot read it.
//!
//! reqwest cannot choose a source port (`local_address` takes an address only), so that one
//! request is made by hand: a socket bound to a free port below 1024 (root, or
//! `CAP_NET_BIND_SERVICE`), one HTTP/1.1 exchange on hyper's client connection, bounded like
//! every other by the request timeout, the deadline and the body limit. Scaleway tags are plain
//! labels: no tags for the environment.

use super::client::{Answer, Http, Request, Tried, json_string, parse_json};
use super::{InstanceFacts, MetadataProvider, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use reqwest::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// The ports tried for the user-data request, from a random one on: below 1024, above the
/// well-known services.
const PRIVILEGED_PORTS: std::ops::Range<u16> = 600..1024;

pub(super) struct Scaleway {
    http: Http,
    request_timeout: Duration,
    deadline: Instant,
    body_limit: usize,
}

impl Scaleway {
    pub fn new(http: Http, request_timeout: Duration, deadline: Instant, body_limit: usize) -> Scaleway {
        Scaleway {
            http,
            request_timeout,
            deadline,
            body_limit,
        }
    }

    /// One GET from a privileged source port, within the request timeout. No such port to be had
    /// (not root) ends the fetch at once: waiting does not grant a capability.
    async fn privileged_get(&self, step: &str, path: &str) -> Tried {
        let timeout = self
            .request_timeout
            .min(self.deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(timeout, self.exchange(path)).await {
            Ok(Err(Failed::Final(reason))) => Err(self.http.error(step, reason)),
            Ok(Err(Failed::Retry(reason))) => Ok(Err(reason)),
            Ok(Ok(answer)) => Ok(Ok(answer)),
            Err(_) => Ok(Err(format!("no answer within {}", crate::net::millis(timeout)))),
        }
    }

    async fn exchange(&self, path: &str) -> std::result::Result<Answer, Failed> {
        let authority = self.http.base.trim_start_matches("http://");
        let target = match authority.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => authority.to_string(),
            _ => format!("{authority}:80"),
        };
        let peer = tokio::net::lookup_host(&target)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| Failed::Retry(format!("cannot resolve {authority}")))?;
        let stream = connect_from_privileged_port(peer).await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| Failed::Retry(crate::net::root_cause(&e)))?;
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(
                hyper::header::USER_AGENT,
                concat!("kiln/", env!("CARGO_PKG_VERSION")),
            )
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| Failed::Final(e.to_string()))?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| crate::net::root_cause(&e))?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, self.body_limit)
                .collect()
                .await
                .map_err(|e| format!("answer cut or over the {} byte limit: {e}", self.body_limit))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::select! {
            answer = exchange => answer.map_err(Failed::Retry),
            ended = connection => Err(Failed::Retry(match ended {
                Ok(()) => "connection closed before an answer".to_string(),
                Err(e) => crate::net::root_cause(&e),
            })),
        }
    }
}

/// Why one privileged request failed: worth another attempt, or not.
enum Failed {
    Retry(String),
    Final(String),
}

/// A connection to `peer` from a free local port below 1024, tried from a random one on.
async fn connect_from_privileged_port(
    peer: SocketAddr,
) -> std::result::Result<tokio::net::TcpStream, Failed> {
    let ports = PRIVILEGED_PORTS.len() as u16;
    let start = fastrand::u16(0..ports);
    for offset in 0..ports {
        let port = PRIVILEGED_PORTS.start + (start + offset) % ports;
        let socket = match peer {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(|e| Failed::Retry(e.to_string()))?;
        let local = SocketAddr::new(
            match peer {
                SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            },
            port,
        );
        match socket.bind(local) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => {
                return Err(Failed::Final(format!(
                    "cannot bind a source port below 1024 ({e}): Scaleway serves user-data only to \
                     one; run kiln as root or with CAP_NET_BIND_SERVICE"
                )));
            }
        }
        match socket.connect(peer).await {
            Ok(stream) => return Ok(stream),
            // The same four-tuple still in TIME_WAIT from an earlier attempt: the next port.
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => continue,
            Err(e) => return Err(Failed::Retry(format!("cannot connect: {e}"))),
        }
    }
    Err(Failed::Retry("no free source port below 1024".into()))
}

#[async_trait::async_trait]
impl MetadataProvider for Scaleway {
    fn name(&self) -> &'static str {
        "scaleway"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let step = "conf";
        let body = self
            .http
            .get_required(step, &Request::get("/conf?format=json"))
            .await?;
        Ok(facts_from(&parse_json(&self.http, step, &body)?))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let step = "user_data/cloud-init";
        let attempt = || self.privileged_get(step, "/user_data/cloud-init");
        let answer = self
            .http
            .send_with(step, attempt, |a| self.http.by_status(a.status))
            .await?;
        match answer.status {
            StatusCode::OK => Ok(Some(answer.body.to_vec()).filter(|b| !b.is_empty())),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::FORBIDDEN => Err(self.http.error(
                step,
                "answered 403 Forbidden: the request did not come from a port below 1024",
            )),
            status => Err(self
                .http
                .error(step, format!("answered {}", super::client::status_text(status)))),
        }
    }
}

/// The facts in `conf?format=json`: the zone (`fr-par-1`) names its region (`fr-par`).
pub(super) fn facts_from(doc: &Value) -> InstanceFacts {
    let zone = json_string(doc, "/zone").or_else(|| json_string(doc, "/location/zone_id"));
    let region = zone
        .as_deref()
        .and_then(|z| z.rsplit_once('-'))
        .filter(|(_, n)| n.parse::<u8>().is_ok())
        .map(|(region, _)| region.to_string());
    InstanceFacts {
        provider: "scaleway".into(),
        instance_id: json_string(doc, "/id"),
        region,
        zone,
        local_ipv4: json_string(doc, "/private_ip"),
        hostname: json_string(doc, "/hostname"),
    }
}
