//! The one bounded body reader: a peer decides how long its answer is, kiln decides how much of
//! it it holds.

use std::fmt;

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Over the bound: the peer's answer is not what kiln asked for. `declared` is the length the
    /// answer announced (refused before reading it), None when the bytes read passed the bound.
    TooLong { limit: usize, declared: Option<u64> },
    /// The answer was cut or could not be read.
    Read(reqwest::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLong {
                limit,
                declared: Some(len),
            } => write!(f, "answer of {len} bytes is over the {limit} byte limit"),
            BodyError::TooLong {
                limit,
                declared: None,
            } => {
                write!(f, "answer is over the {limit} byte limit")
            }
            BodyError::Read(e) => f.write_str(&super::describe(e)),
        }
    }
}

impl std::error::Error for BodyError {}

/// The body of `response`, refusing one over `limit` bytes: at once when its `Content-Length`
/// says so, else as soon as the bytes read pass it (nothing past the bound is held).
pub async fn read_body(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if let Some(len) = response.content_length()
        && len > limit as u64
    {
        return Err(BodyError::TooLong {
            limit,
            declared: Some(len),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLong {
                limit,
                declared: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// What the server writes after the head.
    enum Then {
        /// These bytes, then the connection is closed.
        Close(&'static str),
        /// Nothing more; the connection stays open until the client drops it.
        Hold,
        /// Chunks of this many bytes (chunked encoding): this many and the end, or, with None,
        /// for as long as the client reads.
        Chunks(usize, Option<usize>),
    }

    /// A server answering one request with `head` and what `then` says.
    async fn serve(head: &'static str, then: Then) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            stream.write_all(head.as_bytes()).await.unwrap();
            match then {
                Then::Close(bytes) => stream.write_all(bytes.as_bytes()).await.unwrap(),
                Then::Hold => {
                    let _ = stream.read(&mut request).await;
                }
                Then::Chunks(size, count) => {
                    let data = format!("{size:x}\r\n{}\r\n", "x".repeat(size));
                    let mut sent = 0;
                    while count.is_none_or(|n| sent < n) {
                        if stream.write_all(data.as_bytes()).await.is_err() {
                            return; // the client stopped reading, as a bounded reader does
                        }
                        sent += 1;
                    }
                    stream.write_all(b"0\r\n\r\n").await.unwrap();
                }
            }
        });
        url
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";

    async fn get(url: &str) -> reqwest::Response {
        crate::net::client::link_local()
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_within_the_bound_is_read_whole() {
        let url = serve(CHUNKED, Then::Chunks(100, Some(10))).await;
        let body = read_body(&mut get(&url).await, 1000).await.unwrap();
        assert_eq!(body.len(), 1000, "exactly the bound is within it");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_bound_is_refused_before_reading() {
        // Announces 10 MB and sends none of it: the refusal cannot have waited for the bytes.
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 10000000\r\n\r\n";
        let url = serve(head, Then::Hold).await;
        let err = read_body(&mut get(&url).await, 1024).await.unwrap_err();
        assert!(
            matches!(
                err,
                BodyError::TooLong {
                    limit: 1024,
                    declared: Some(10_000_000)
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "answer of 10000000 bytes is over the 1024 byte limit"
        );
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_bound() {
        // The server never ends the body: only a reader that stops at the bound returns.
        let url = serve(CHUNKED, Then::Chunks(4096, None)).await;
        let err = read_body(&mut get(&url).await, 64 * 1024).await.unwrap_err();
        assert!(
            matches!(
                err,
                BodyError::TooLong {
                    limit: 65536,
                    declared: None
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "answer is over the 65536 byte limit");
    }

    #[tokio::test]
    async fn a_cut_answer_is_a_read_error() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n";
        let url = serve(head, Then::Close("only this")).await;
        let err = read_body(&mut get(&url).await, 1024).await.unwrap_err();
        assert!(matches!(err, BodyError::Read(_)), "{err:?}");
    }
}
