//! HAProxy agent-check responder on `[health] agent_listen`.
//!
//! HAProxy connects, reads one line, and applies it to the server: kiln answers from its live
//! phase, so HAProxy learns of a drain or an unready instance at its next agent poll rather than
//! after its health check's fall count. `up ready 100%` also lifts a drain or a zeroed weight left
//! by an earlier answer (HAProxy keeps `drain` until told `ready`).

use super::slots::Slots;
use crate::state::{Phase, Shared};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A peer that does not take its line within this time is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves agent-check answers until the task is dropped, holding at most `slots`' cap of
/// connections (a peer that does not read its line gives way to new ones).
pub async fn serve_agent(listener: tokio::net::TcpListener, shared: Arc<Shared>, slots: Arc<Slots>) {
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("agent-check: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut slot = slots.admit();
        let line = answer(&shared);
        tokio::spawn(async move {
            let write = tokio::time::timeout(WRITE_TIMEOUT, async {
                stream.write_all(line.as_bytes()).await?;
                stream.shutdown().await
            });
            tokio::select! {
                _ = write => {}
                _ = slot.evicted() => {}
            }
        });
        // The new connection gets its line before the next accept can evict it.
        tokio::task::yield_now().await;
    }
}

/// The agent line for the current state, newline included.
pub fn answer(shared: &Shared) -> String {
    let snapshot = shared.snapshot();
    match snapshot.phase {
        Phase::Ready => "up ready 100%\n".into(),
        Phase::Stopping => "drain\n".into(),
        phase => {
            let reason = snapshot
                .reason
                .clone()
                .unwrap_or_else(|| format!("{phase:?}").to_lowercase());
            format!("down #{}\n", one_line(&reason))
        }
    }
}

/// HAProxy reads one line and shows the text after `#` in its stats: keep it one short line.
fn one_line(reason: &str) -> String {
    let flat: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    flat.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_follows_the_phase() {
        let shared = Shared::new();
        shared.update(|s| {
            s.phase = Phase::Starting;
            s.reason = Some("php-fpm: starting\nsecond line".into());
        });
        assert_eq!(answer(&shared), "down #php-fpm: starting second line\n");
        shared.update(|s| {
            s.phase = Phase::Ready;
            s.reason = None;
        });
        assert_eq!(answer(&shared), "up ready 100%\n");
        shared.update(|s| s.phase = Phase::Stopping);
        assert_eq!(answer(&shared), "drain\n");
        shared.update(|s| {
            s.phase = Phase::Degraded;
            s.reason = None;
        });
        assert_eq!(answer(&shared), "down #degraded\n");
    }
}
