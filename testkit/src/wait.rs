//! Waiting on conditions with a deadline (never sleep-and-hope), and a tiny HTTP client to ask.
//!
//! The client is deliberately small: HTTP/1.1 over a plain `TcpStream`, one request per connection,
//! no proxy (tests talk to loopback and must not be routed through `$http_proxy`).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(10);

/// Timeout of each [`http_get`] (connect, send, and read the whole answer).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Polls `f` about every 10 ms until it returns `Some`, and returns that value.
///
/// Panics with "timed out after X waiting for WHAT" when `deadline` passes first.
pub fn wait_until<T>(what: &str, deadline: Duration, f: impl FnMut() -> Option<T>) -> T {
    match poll_until(deadline, f) {
        Some(value) => value,
        None => panic!("timed out after {deadline:?} waiting for {what}"),
    }
}

/// Like [`wait_until`], but returns `None` on timeout instead of panicking.
pub fn poll_until<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if start.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names as sent; look them up with [`Response::header`].
    pub headers: Vec<(String, String)>,
    /// The body (chunked encoding undone), lossily decoded as UTF-8.
    pub body: String,
}

impl Response {
    /// The first header with this name, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET url` → (status, body). Errors are strings naming the URL and what failed.
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    http_request("GET", url, &[], b"").map(|r| (r.status, r.body))
}

/// `GET url` with extra request headers (e.g. `("Accept", "application/json")`).
pub fn http_get_with(url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    http_request("GET", url, headers, b"")
}

/// `GET url` → (status, body), answered within `timeout` (instead of [`HTTP_TIMEOUT`]).
pub fn http_get_within(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    http_request_within("GET", url, &[], b"", timeout).map(|r| (r.status, r.body))
}

/// One HTTP/1.1 request with `Connection: close` and a 2 s overall timeout.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    http_request_within(method, url, headers, body, HTTP_TIMEOUT)
}

/// One HTTP/1.1 request with `Connection: close`, answered within `timeout` overall.
pub fn http_request_within(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let fail = |what: String| format!("{method} {url}: {what}");
    let started = Instant::now();
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("only http:// URLs are supported".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| fail(format!("bad address {authority:?}: {e}")))?
        .next()
        .ok_or_else(|| fail(format!("{authority:?} resolves to nothing")))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail(format!("connect: {e}")))?;

    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: kiln-testkit\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let remaining = |started: Instant| timeout.checked_sub(started.elapsed()).filter(|d| !d.is_zero());
    let timeout = remaining(started).ok_or_else(|| fail("timed out".into()))?;
    stream.set_write_timeout(Some(timeout)).ok();
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| fail(format!("send: {e}")))?;

    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(response) = parse_complete(&buf, method == "HEAD", false).map_err(&fail)? {
            return Ok(response);
        }
        let timeout = remaining(started)
            .ok_or_else(|| fail(format!("timed out after {timeout:?} ({} bytes read)", buf.len())))?;
        stream.set_read_timeout(Some(timeout)).ok();
        match stream.read(&mut chunk) {
            Ok(0) => {
                return parse_complete(&buf, method == "HEAD", true)
                    .map_err(&fail)?
                    .ok_or_else(|| fail(format!("connection closed mid-answer ({} bytes read)", buf.len())));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(format!("read: {e} ({} bytes read)", buf.len()))),
        }
    }
}

/// The response in `buf` if it is complete; `eof` says the peer closed the connection.
fn parse_complete(buf: &[u8], head_only: bool, eof: bool) -> Result<Option<Response>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let response = |body: &[u8]| Response {
        status,
        headers: headers.clone(),
        body: String::from_utf8_lossy(body).into_owned(),
    };
    let rest = &buf[head_end + 4..];
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Some(response(b"")));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if header("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Ok(dechunk(rest)?.map(|body| response(&body)));
    }
    if let Some(len) = header("Content-Length") {
        let len: usize = len.parse().map_err(|_| format!("bad Content-Length {len:?}"))?;
        return Ok((rest.len() >= len).then(|| response(&rest[..len])));
    }
    Ok(eof.then(|| response(rest)))
}

/// Undoes chunked transfer encoding; `None` until the last chunk has arrived.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n";
        let r = parse_complete(raw, false, false).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello, world"));
        assert_eq!(
            parse_complete(&raw[..raw.len() - 5], false, false)
                .unwrap()
                .map(|r| r.status),
            None
        );
    }

    #[test]
    fn content_length_bounds_the_body() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 3\r\n\r\nno\n";
        let r = parse_complete(raw, false, false).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_str()), (503, "no\n"));
        assert_eq!(r.header("Content-Length"), Some("3"));
        assert!(
            parse_complete(&raw[..raw.len() - 1], false, false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn without_length_the_body_ends_at_eof() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert!(parse_complete(raw, false, false).unwrap().is_none());
        assert_eq!(
            parse_complete(raw, false, true).unwrap().unwrap().body,
            "all of it"
        );
    }

    #[test]
    fn a_refused_connection_is_an_error_naming_the_url() {
        let addr = crate::net::free_addr();
        let err = http_get(&format!("http://{addr}/readyz")).unwrap_err();
        assert!(
            err.starts_with(&format!("GET http://{addr}/readyz: connect:")),
            "{err}"
        );
    }
}
