//! A FastCGI client just big enough to ask php-fpm one page: one request (BEGIN_REQUEST, PARAMS,
//! empty STDIN), then STDOUT records until END_REQUEST. php-fpm answers its ping and its status
//! page only over FastCGI, so an HTTP probe through nginx would test nginx, not php-fpm. The
//! `fastcgi` probes ask `ping.path` here; `serve::phpfpm` asks the pool's status page.

use super::Outcome;
use crate::config::FastCgiSocket;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const VERSION: u8 = 1;
const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const RESPONDER: u16 = 1;
const REQUEST_ID: u16 = 1;
/// php-fpm's STDERR shown in a failed check's detail (`kiln status`), at most.
const DETAIL_CHARS: usize = 200;
/// A ping answer is a few bytes and a status page (without `full`) under 1 KiB; anything past
/// this is not kept.
const MAX_RESPONSE: usize = 64 * 1024;

/// What php-fpm answered a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Its `Status:` header's code; 200 when it sent none.
    pub status: u16,
    /// The body, after the headers, read as UTF-8 (lossily).
    pub body: String,
}

pub async fn check(socket: &FastCgiSocket, path: &str, expect: Option<&str>) -> Outcome {
    match get(socket, path, "").await {
        Err(detail) => Outcome::fail(detail),
        Ok(reply) => judge(&reply, expect),
    }
}

/// One request for `path?query` on `socket`, and php-fpm's reply. The reply is bounded in size,
/// not in time: the caller holds it within its own timeout (dropping the future closes the
/// connection).
pub async fn get(socket: &FastCgiSocket, path: &str, query: &str) -> Result<Reply, String> {
    let stdout = match socket {
        FastCgiSocket::Unix(p) => match tokio::net::UnixStream::connect(p).await {
            Ok(s) => request(s, path, query).await,
            Err(e) => Err(format!("connect {}: {e}", p.display())),
        },
        FastCgiSocket::Tcp(addr) => match tokio::net::TcpStream::connect(addr.as_str()).await {
            Ok(s) => request(s, path, query).await,
            Err(e) => Err(format!("connect {addr}: {e}")),
        },
    }?;
    Ok(reply(&stdout))
}

/// Sends one request for `path` and returns what php-fpm wrote to STDOUT (headers and body).
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    query: &str,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(512);
    let mut begin = [0u8; 8];
    begin[..2].copy_from_slice(&RESPONDER.to_be_bytes());
    record(&mut out, BEGIN_REQUEST, &begin);
    let mut params = Vec::with_capacity(256);
    for (name, value) in [
        ("SCRIPT_NAME", path),
        ("SCRIPT_FILENAME", path),
        ("REQUEST_URI", path),
        ("DOCUMENT_URI", path),
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", query),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "kiln"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ] {
        name_value(&mut params, name.as_bytes(), value.as_bytes());
    }
    record(&mut out, PARAMS, &params);
    record(&mut out, PARAMS, &[]);
    record(&mut out, STDIN, &[]);
    stream.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
    read_response(&mut stream).await
}

/// Reads records until END_REQUEST; returns STDOUT (headers and body), at most about
/// [`MAX_RESPONSE`] of it, or php-fpm's STDERR as the error when it wrote nothing else.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, String> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    loop {
        let mut header = [0u8; 8];
        stream
            .read_exact(&mut header)
            .await
            .map_err(|e| format!("read: {e} (connection closed early)"))?;
        let kind = header[1];
        let len = u16::from_be_bytes([header[4], header[5]]) as usize;
        let padding = header[6] as usize;
        let mut content = vec![0u8; len + padding];
        stream
            .read_exact(&mut content)
            .await
            .map_err(|e| format!("read: {e}"))?;
        content.truncate(len);
        match kind {
            STDOUT if stdout.len() < MAX_RESPONSE => stdout.extend_from_slice(&content),
            STDERR if stderr.len() < MAX_RESPONSE => stderr.extend_from_slice(&content),
            END_REQUEST => break,
            _ => {}
        }
    }
    if stdout.is_empty() && !stderr.is_empty() {
        let text = String::from_utf8_lossy(&stderr);
        let first: String = text.trim().chars().take(DETAIL_CHARS).collect();
        return Err(format!("php-fpm error: {first}"));
    }
    Ok(stdout)
}

/// For the fuzz targets (`fuzz/`): php-fpm's answer `bytes` read as kiln reads it, then judged.
/// Returns the STDOUT kept (or the error) and the probe's verdict on it.
#[doc(hidden)]
pub fn answer_of(bytes: &[u8], expect: Option<&str>) -> (Result<Vec<u8>, String>, super::Outcome) {
    let mut reader = bytes;
    let mut read = std::pin::pin!(read_response(&mut reader));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    // A byte slice is always ready: one poll reads to the end or to END_REQUEST.
    let response = match read.as_mut().poll(&mut context) {
        std::task::Poll::Ready(response) => response,
        std::task::Poll::Pending => Err("pending on a byte slice".into()),
    };
    let outcome = match &response {
        Ok(stdout) => judge(&reply(stdout), expect),
        Err(e) => super::Outcome::fail(e.clone()),
    };
    (response, outcome)
}

/// STDOUT split as CGI writes it: headers, a blank line, the body.
fn reply(stdout: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(stdout);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or(("", &text));
    let status = head
        .lines()
        .find_map(|l| l.strip_prefix("Status:").or_else(|| l.strip_prefix("status:")))
        .and_then(|s| s.trim().split(' ').next()?.parse::<u16>().ok())
        .unwrap_or(200);
    Reply {
        status,
        body: body.to_string(),
    }
}

/// Passes on a 2xx status whose body contains `expect`.
fn judge(reply: &Reply, expect: Option<&str>) -> Outcome {
    let body = reply.body.trim();
    let status = reply.status;
    // What php-fpm wrote, as status shows it: 60 characters, control characters as `?`.
    let short: String = body
        .chars()
        .take(60)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if !(200..300).contains(&status) {
        return Outcome::fail(format!("status {status}: {short}"));
    }
    match expect {
        Some(want) if !body.contains(want) => Outcome::fail(format!("body \"{short}\" lacks {want:?}")),
        _ => Outcome::pass(format!("{status} {short}")),
    }
}

fn record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    let padding = (8 - content.len() % 8) % 8;
    out.extend_from_slice(&[VERSION, kind]);
    out.extend_from_slice(&REQUEST_ID.to_be_bytes());
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.extend_from_slice(&[padding as u8, 0]);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, padding));
}

fn name_value(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 128 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_padded_to_eight_bytes() {
        let mut out = Vec::new();
        record(&mut out, PARAMS, b"abc");
        assert_eq!(out.len(), 8 + 8);
        assert_eq!(&out[..8], &[1, PARAMS, 0, 1, 0, 3, 5, 0]);
    }

    #[test]
    fn long_values_use_four_byte_lengths() {
        let mut out = Vec::new();
        name_value(&mut out, b"A", &[b'x'; 200]);
        assert_eq!(&out[..5], &[1, 0x80, 0, 0, 200]);
    }

    #[test]
    fn a_404_from_php_fpm_fails_with_its_body() {
        let o = judge(
            &reply(b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n"),
            None,
        );
        assert!(!o.ok);
        assert_eq!(o.detail, "status 404: File not found.");
    }

    #[test]
    fn pong_passes_and_expect_is_checked() {
        assert!(judge(&reply(b"Content-type: text/plain\r\n\r\npong"), Some("pong")).ok);
        assert!(!judge(&reply(b"Content-type: text/plain\r\n\r\npung"), Some("pong")).ok);
    }

    #[test]
    fn a_long_stderr_is_cut_in_the_detail() {
        let mut answer = Vec::new();
        record(&mut answer, STDERR, "x".repeat(5000).as_bytes());
        record(&mut answer, END_REQUEST, &[0; 8]);
        let (response, outcome) = answer_of(&answer, None);
        assert!(response.is_err());
        assert!(
            outcome.detail.chars().count() <= DETAIL_CHARS + 20,
            "{}",
            outcome.detail.len()
        );
    }
}
