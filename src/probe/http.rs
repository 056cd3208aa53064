//! Passes on a 2xx or 3xx answer (redirects are not followed), and on `expect` in the body.
//!
//! Every check opens its own connection, asks once with `Connection: close` and drops the socket
//! when it returns, on a timeout, or when the probe task is aborted: nothing outlives the check.
//! A shared client's pool would keep connections between checks, and could park one that never
//! sent a request; nginx's graceful stop waits for such a connection (up to
//! `client_header_timeout`), which turned a 20 ms stop into a SIGKILL after `stop_timeout`.
//! Kubernetes' HTTP prober disables keep-alive for the same reason.

use super::Outcome;
use crate::config::HttpTarget as Target;
use crate::net::root_cause;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// At most this much of the body is read to look for `expect`.
const MAX_BODY: usize = 64 * 1024;

pub async fn check(target: &Target, expect: Option<&str>) -> Outcome {
    let stream = match TcpStream::connect((target.host.as_str(), target.port)).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(format!("connect {}: {e}", target.authority)),
    };
    let _ = stream.set_nodelay(true);
    match ask(stream, target, expect).await {
        Ok(outcome) => outcome,
        Err(detail) => Outcome::fail(detail),
    }
}

/// One request on `stream`. The connection is driven here, not in a task of its own, so that it
/// ends with this future.
async fn ask(stream: TcpStream, target: &Target, expect: Option<&str>) -> Result<Outcome, String> {
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| root_cause(&e))?;
    let request = Request::get(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .header(CONNECTION, "close")
        .header(USER_AGENT, concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(|e| root_cause(&e))?;
        let status = response.status();
        if !(status.is_success() || status.is_redirection()) {
            return Ok(Outcome::fail(format!("status {}", status.as_u16())));
        }
        let passed = format!("status {}", status.as_u16());
        let Some(want) = expect else {
            return Ok(Outcome::pass(passed));
        };
        if body_contains(response.into_body(), want.as_bytes()).await? {
            Ok(Outcome::pass(passed))
        } else {
            Ok(Outcome::fail(format!("{passed} but the body lacks {want:?}")))
        }
    };
    let mut exchange = std::pin::pin!(exchange);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        outcome = &mut exchange => return outcome,
        done = &mut connection => done.map_err(|e| root_cause(&e))?,
    }
    // The connection finished cleanly first; the answer is complete in the exchange's hands.
    exchange.await
}

/// Reads the body until `want` shows up, the body ends, or [`MAX_BODY`] bytes were read.
async fn body_contains(mut body: hyper::body::Incoming, want: &[u8]) -> Result<bool, String> {
    let mut seen: Vec<u8> = Vec::new();
    while seen.len() < MAX_BODY {
        let Some(frame) = body.frame().await else { break };
        let frame = frame.map_err(|e| root_cause(&e))?;
        if let Ok(data) = frame.into_data() {
            let room = MAX_BODY - seen.len();
            seen.extend_from_slice(&data[..data.len().min(room)]);
            if contains(&seen, want) {
                return Ok(true);
            }
        }
    }
    Ok(contains(&seen, want))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_is_a_byte_substring() {
        assert!(contains(b"all is fine", b"fine"));
        assert!(!contains(b"all is fin", b"fine"));
        assert!(contains(b"", b""));
    }
}
