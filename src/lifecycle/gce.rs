//! GCE's notices, long-polled: one hanging GET per value (`?wait_for_change=true` with the
//! `last_etag` of the previous answer and a `timeout_sec`), answered by the metadata server when
//! the value changes. Idle, kiln sends one request per value every [`HANG`].
//!
//! - `instance/preempted`: `TRUE` once the VM is being preempted (about 30 s before it stops),
//!   else `FALSE`.
//! - `instance/maintenance-event`: `NONE`, or `MIGRATE_ON_HOST_MAINTENANCE` /
//!   `TERMINATE_ON_HOST_MAINTENANCE` shortly before host maintenance.

use super::{Answer, Look, Notice, NoticeSource, Wanted};
use crate::metadata::watch::{GcePace, GceWatch};
use crate::state::NoticeKind;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const PREEMPTED: &str = "/computeMetadata/v1/instance/preempted";
const MAINTENANCE: &str = "/computeMetadata/v1/instance/maintenance-event";

/// `timeout_sec` of each hanging GET: the server answers after it even without a change.
const HANG: Duration = Duration::from_secs(300);
/// After a failed request, or without an ETag to wait on, the next one waits this long.
const RETRY: Duration = Duration::from_secs(5);

/// The latest answer for one path: its value (None: the path does not exist), or why not.
type Update = (&'static str, Result<Option<String>, String>);

pub(super) struct GceNotices {
    updates: mpsc::Receiver<Update>,
    preempted: Option<String>,
    maintenance: Option<String>,
    problems: Vec<(&'static str, String)>,
    tasks: Vec<JoinHandle<()>>,
}

impl GceNotices {
    /// Starts one long poll per wanted value.
    pub fn new(server: GceWatch, wanted: Wanted) -> GceNotices {
        let server = Arc::new(server);
        let (tx, updates) = mpsc::channel(16);
        let mut tasks = Vec::new();
        for (path, on) in [(PREEMPTED, wanted.preemption), (MAINTENANCE, wanted.maintenance)] {
            if on {
                tasks.push(tokio::spawn(long_poll(server.clone(), path, tx.clone())));
            }
        }
        GceNotices {
            updates,
            preempted: None,
            maintenance: None,
            problems: Vec::new(),
            tasks,
        }
    }

    fn apply(&mut self, (path, update): Update) {
        self.problems.retain(|(p, _)| *p != path);
        match update {
            Ok(value) => {
                if path == PREEMPTED {
                    self.preempted = value;
                } else {
                    self.maintenance = value;
                }
            }
            Err(problem) => self.problems.push((path, problem)),
        }
    }
}

impl Drop for GceNotices {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Asks for `path` now, then each time it changes, forever; every answer goes to `updates`.
async fn long_poll(server: Arc<GceWatch>, path: &'static str, updates: mpsc::Sender<Update>) {
    let mut etag: Option<String> = None;
    let mut pace = GcePace::new(path, HANG);
    loop {
        pace.ready().await;
        let update = match server.wait_for_change(path, etag.as_deref(), HANG).await {
            Ok(Some(value)) => {
                pace.answered(Some(&value.value));
                let waits = value.etag.is_some();
                etag = value.etag;
                if !waits {
                    tokio::time::sleep(RETRY).await;
                }
                Ok(Some(value.value))
            }
            Ok(None) => {
                pace.answered(None);
                etag = None;
                Ok(None)
            }
            Err(e) => Err(format!("cannot read {}: {e}", short(path))),
        };
        let failed = update.is_err() || matches!(update, Ok(None));
        if updates.send((path, update)).await.is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(RETRY).await;
        }
    }
}

fn short(path: &str) -> &str {
    path.trim_start_matches("/computeMetadata/v1/")
}

#[async_trait::async_trait]
impl NoticeSource for GceNotices {
    fn describe(&self) -> String {
        format!(
            "gce metadata server, wait_for_change (one request per value every {} when idle)",
            humantime::format_duration(HANG)
        )
    }

    async fn look(&mut self) -> Look {
        let Some(first) = self.updates.recv().await else {
            return std::future::pending().await;
        };
        self.apply(first);
        while let Ok(more) = self.updates.try_recv() {
            self.apply(more);
        }
        let mut look = Look {
            problems: self.problems.iter().map(|(_, p)| p.clone()).collect(),
            ..Look::default()
        };
        if let Some(value) = &self.preempted {
            match preempted(value) {
                Ok(notice) => look.notices.extend(notice),
                Err(e) => look.problems.push(e),
            }
        }
        if let Some(value) = &self.maintenance {
            match maintenance(value) {
                Ok(notice) => look.notices.extend(notice),
                Err(e) => look.problems.push(e),
            }
        }
        look
    }
}

fn preempted(value: &str) -> Result<Option<Notice>, String> {
    match value {
        "FALSE" => Ok(None),
        "TRUE" => Ok(Some(Notice {
            kind: NoticeKind::Preemption,
            id: "gce preempted".into(),
            detail: "the VM is being preempted (GCE stops it about 30s after the notice)".into(),
            due: None,
            answer: Answer::None,
        })),
        other => Err(format!(
            "instance/preempted: {:?} is neither TRUE nor FALSE; not acted on",
            crate::terminal::peer_word(other)
        )),
    }
}

fn maintenance(value: &str) -> Result<Option<Notice>, String> {
    let detail = match value {
        "NONE" => return Ok(None),
        "MIGRATE_ON_HOST_MAINTENANCE" => "host maintenance: the VM is about to be live-migrated",
        "TERMINATE_ON_HOST_MAINTENANCE" => "host maintenance: the VM is about to be stopped",
        other => {
            return Err(format!(
                "instance/maintenance-event: unknown value {:?}; not acted on",
                crate::terminal::peer_word(other)
            ));
        }
    };
    Ok(Some(Notice {
        kind: NoticeKind::Maintenance,
        id: format!("gce {value}"),
        detail: format!("{detail} ({value})"),
        due: None,
        answer: Answer::None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_documented() {
        assert_eq!(preempted("FALSE"), Ok(None));
        assert_eq!(preempted("TRUE").unwrap().unwrap().kind, NoticeKind::Preemption);
        assert!(preempted("maybe").is_err());
        assert_eq!(maintenance("NONE"), Ok(None));
        let n = maintenance("TERMINATE_ON_HOST_MAINTENANCE").unwrap().unwrap();
        assert_eq!(n.kind, NoticeKind::Maintenance);
        assert!(maintenance("REBOOT_ON_A_WHIM").is_err());
    }
}
