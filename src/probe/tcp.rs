//! Passes when a TCP connection is accepted.

use super::Outcome;

pub async fn check(addr: &str) -> Outcome {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => Outcome::pass("connected".into()),
        Err(e) => Outcome::fail(format!("connect {addr}: {e}")),
    }
}
