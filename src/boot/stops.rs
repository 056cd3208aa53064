//! Requests to stop the instance, from signals or from kiln itself (seal drift with
//! `on_drift = "poweroff"`), counted so that a second request can kill what is left.
//! SIGHUP is refused here: an immutable instance never reloads.

use crate::serve::control;
use crate::state::Shared;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopRequests {
    pub count: u32,
    /// Power the machine off once stopped.
    pub poweroff: bool,
}

/// The sending side, shared by the signal task and the guards.
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<StopRequests>>);

impl Stopper {
    pub fn request(&self, poweroff: bool) {
        self.0.send_modify(|r| {
            r.count += 1;
            r.poweroff |= poweroff;
        });
    }
}

/// Installs the handlers; SIGTERM and SIGINT become stop requests.
pub fn watch_signals(shared: Arc<Shared>) -> std::io::Result<(Stopper, watch::Receiver<StopRequests>)> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = watch::channel(StopRequests::default());
    let stopper = Stopper(Arc::new(tx));
    let requests = stopper.clone();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    tracing::warn!("SIGHUP refused: kiln never reloads, nothing changed. {}", control::IMMUTABLE);
                    shared.update(|s| s.refused_mutations += 1);
                    shared.event("warn", "SIGHUP refused: nothing reloaded");
                    continue;
                }
            };
            tracing::info!("{name} received");
            requests.request(false);
        }
    });
    Ok((stopper, rx))
}

/// Resolves once at least `count` stop requests have arrived.
pub async fn requested(mut stops: watch::Receiver<StopRequests>, count: u32) -> StopRequests {
    match stops.wait_for(|r| r.count >= count).await {
        Ok(r) => *r,
        Err(_) => std::future::pending().await,
    }
}
