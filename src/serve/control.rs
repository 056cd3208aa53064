//! The control socket: one question per connection, one JSON answer. It answers questions only.
//! Anything that would change the instance is refused — an immutable server is replaced, not
//! modified — and every refusal is logged and counted in status.
//!
//! Protocol: the client sends one line `VERB\n`; kiln answers with one JSON document and closes.
//! Verbs: `status` (the whole snapshot), `health` (phase, ready, reason), `ready` (the readiness
//! report of `/readyz?verbose`, which `kiln wait` polls), `env` (variable names and sources,
//! never values), `events` (recent events). Errors are `{"error": "..."}`.
//!
//! No question is held open until something changes: `kiln wait` asks `ready` again every
//! 100 ms instead. An answer takes microseconds and the connection is closed with it, so a
//! waiter never holds one of the socket's few connections (`fd_budget`: 2 to 16) and never
//! stands as the stalest connection that the cap closes (`slots`) in front of `kiln status`.

use super::Listeners;
use super::phpfpm::Pools;
use super::slots::Slots;
use crate::state::Shared;
use serde_json::json;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

pub const VERBS: &[&str] = &["status", "health", "ready", "env", "events"];
pub const IMMUTABLE: &str = "this instance is immutable: bake a new image and replace the instance";
/// A request line longer than this is not a question kiln knows.
const MAX_REQUEST: u64 = 1024;
/// `kiln status` sends its line at once and reads its answer at once: a client slower than this
/// for either is dropped (and one that holds its connection gives way to new ones at the cap).
/// In between, `status` reads php-fpm's status pages, each within its timeout (3 s at most).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds the socket with mode 0600. Refuses to take over a socket another kiln still answers on.
pub fn bind(path: &Path) -> io::Result<StdUnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another kiln answers on {}", path.display()),
        ));
    }
    let _ = std::fs::remove_file(path);
    // Created 0600 from the start, not chmod'ed afterwards: no window where others may connect.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = StdUnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Answers questions until the task is dropped, holding at most `listeners.control`'s cap of
/// connections: a client that connects and sends nothing never keeps `kiln status` out.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, listeners: Listeners, pools: Pools) {
    let slots: Arc<Slots> = listeners.control.clone();
    let asked = Arc::new((listeners, pools));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let mut slot = slots.admit();
                let (shared, asked) = (shared.clone(), asked.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        result = answer(stream, &shared, &asked.0, &asked.1) => {
                            if let Err(e) = result {
                                tracing::debug!("control socket: {e}");
                            }
                        }
                        _ = slot.evicted() => {}
                    }
                });
                // The new client's question is read before the next accept can evict it.
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::warn!("control socket: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(stream: UnixStream, shared: &Shared, listeners: &Listeners, pools: &Pools) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    tokio::time::timeout(EXCHANGE_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request line"))??;
    let mut reply = respond(line.trim(), shared, listeners, pools).await.to_string();
    reply.push('\n');
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        write.write_all(reply.as_bytes()).await?;
        write.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the answer was not read"))?
}

async fn respond(request: &str, shared: &Shared, listeners: &Listeners, pools: &Pools) -> serde_json::Value {
    let verb = request.split_whitespace().next().unwrap_or("");
    match verb {
        "status" => serde_json::to_value(super::full_snapshot(shared, listeners, pools).await)
            .unwrap_or_else(|e| json!({ "error": e.to_string() })),
        "health" => {
            let s = shared.snapshot();
            json!({ "phase": s.phase, "ready": shared.is_ready(), "reason": s.reason })
        }
        "ready" => super::readiness::report(shared, shared.phase()),
        "env" => json!({ "env": shared.snapshot().env }),
        "events" => json!({ "events": shared.snapshot().events }),
        _ => {
            let shown: String = verb.chars().take(40).filter(|c| !c.is_control()).collect();
            let message = format!(
                "refused {shown:?}: {IMMUTABLE}. This socket answers questions only: {}",
                VERBS.join(", ")
            );
            tracing::warn!("control socket: {message}");
            shared.update(|s| s.refused_mutations += 1);
            shared.event("warn", format!("refused control verb {shown:?}"));
            json!({ "error": message })
        }
    }
}
