//! Requests to stop the instance, from signals or from kiln itself (seal drift with
//! `on_drift = "poweroff"`), counted so that a second request can kill what is left, and
//! requests to leave (a platform notice, `crate::lifecycle`), which take the same stop path and
//! then wait for the power-off. A leave is not counted: the SIGTERM of the power-off that
//! follows it is a first stop request, not a second one.
//! SIGHUP is refused here: an immutable instance never reloads.

use crate::lifecycle::LeaveRequest;
use crate::serve::control;
use crate::state::Shared;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopRequests {
    /// Signals and kiln's own stop requests.
    pub count: u32,
    /// Power the machine off once stopped.
    pub poweroff: bool,
    /// The first leave asked for by a notice.
    pub leave: Option<LeaveRequest>,
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

    /// Leave for a notice; later leave requests change nothing.
    pub fn leave(&self, request: LeaveRequest) {
        self.0.send_modify(|r| {
            r.leave.get_or_insert(request);
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

/// Resolves once at least `count` stop requests have arrived (leaves not counted).
pub async fn requested(mut stops: watch::Receiver<StopRequests>, count: u32) -> StopRequests {
    match stops.wait_for(|r| r.count >= count).await {
        Ok(r) => r.clone(),
        Err(_) => std::future::pending().await,
    }
}

/// Resolves at the first stop or leave request.
pub async fn stop_or_leave(mut stops: watch::Receiver<StopRequests>) -> StopRequests {
    match stops.wait_for(|r| r.count >= 1 || r.leave.is_some()).await {
        Ok(r) => r.clone(),
        Err(_) => std::future::pending().await,
    }
}
