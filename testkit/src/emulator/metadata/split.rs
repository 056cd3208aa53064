//! Writing like Python's `http.server`: the response head and the body in two `write`s on a
//! socket with Nagle's algorithm on. The body then waits in the server's kernel until the head is
//! acknowledged, and a client on a reused connection acknowledges late (delayed ACK, ~40 ms on
//! Linux); on a fresh connection it acknowledges at once (quick-ack mode).
//!
//! hyper hands its head and body to a vectored write; this stream takes only the first buffer
//! of each, so hyper writes the rest in a second call.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub(super) struct SplitWrites(pub TcpStream);

impl AsyncRead for SplitWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SplitWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        Pin::new(&mut self.0).poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_vectored_write_sends_only_its_first_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let _server = listener.accept().await.unwrap();
        let mut split = SplitWrites(client);
        let (head, body) = (b"HTTP/1.1 200 OK\r\n\r\n", b"i-0123");
        let written = split
            .write_vectored(&[IoSlice::new(&[]), IoSlice::new(head), IoSlice::new(body)])
            .await
            .unwrap();
        assert_eq!(written, head.len());
    }
}
