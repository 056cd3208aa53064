//! The lease's record, the same in every store, and what an instance does on reading it: a pure
//! decision ([`decide`]) the edge cases are tested on.

use serde::{Deserialize, Serialize};

/// Of a record's `reason` (another instance's words), at most this many lines are repeated.
const REASON_LINES: usize = 4;

/// Where a task stands for one release, as the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// An instance holds the lease and runs the task (or did, until its lease expired).
    Running,
    Done,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    pub fn parse(word: &str) -> Option<State> {
        [State::Running, State::Done, State::Failed]
            .into_iter()
            .find(|s| s.as_str() == word)
    }
}

/// The record of one task for one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub state: State,
    /// The instance that holds (or held) the lease, by its id.
    pub instance: String,
    /// Why it failed (`state = failed`): the exit and the last lines of stderr.
    #[serde(default)]
    pub reason: Option<String>,
    /// When it was last written, wall clock ms since the Unix epoch.
    #[serde(default)]
    pub at_ms: u64,
}

/// A record as read, and whether a live holder still holds its lease (DynamoDB: it has not
/// expired; Consul: a session holds the lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub record: Record,
    pub live: bool,
}

/// What an instance does after reading the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// No record, or a holder that died: take the lease.
    Take,
    /// `holder` runs it now: read again later.
    Wait {
        holder: String,
    },
    Done {
        by: String,
    },
    Failed {
        by: String,
        reason: String,
    },
}

/// The decision on a record: an outcome is final whatever its lease; a running record is the
/// holder's while its lease lives, anyone's once it has died.
pub fn decide(found: Option<&Found>) -> Next {
    let Some(Found { record, live }) = found else {
        return Next::Take;
    };
    let by = crate::terminal::peer_word(&record.instance);
    match record.state {
        State::Done => Next::Done { by },
        State::Failed => Next::Failed {
            by,
            reason: shown_reason(record.reason.as_deref()),
        },
        State::Running if *live => Next::Wait { holder: by },
        State::Running => Next::Take,
    }
}

/// Another instance's reason as this one repeats it: a few lines, each bounded and escaped.
fn shown_reason(reason: Option<&str>) -> String {
    let reason = reason.unwrap_or("no reason recorded");
    let lines: Vec<String> = reason
        .lines()
        .take(REASON_LINES)
        .map(crate::terminal::peer_text)
        .collect();
    match lines.is_empty() {
        true => "no reason recorded".into(),
        false => lines.join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(state: State, live: bool) -> Found {
        Found {
            record: Record {
                state,
                instance: "i-0002".into(),
                reason: Some("exit 1\nstderr| SQLSTATE[42S01]: table exists".into()),
                at_ms: 1,
            },
            live,
        }
    }

    #[test]
    fn no_record_or_a_dead_holder_is_taken_a_live_one_is_waited_for() {
        assert_eq!(decide(None), Next::Take);
        assert_eq!(decide(Some(&found(State::Running, false))), Next::Take);
        assert_eq!(
            decide(Some(&found(State::Running, true))),
            Next::Wait {
                holder: "i-0002".into()
            }
        );
    }

    #[test]
    fn an_outcome_is_final_whatever_its_lease() {
        for live in [true, false] {
            assert_eq!(
                decide(Some(&found(State::Done, live))),
                Next::Done { by: "i-0002".into() }
            );
            assert_eq!(
                decide(Some(&found(State::Failed, live))),
                Next::Failed {
                    by: "i-0002".into(),
                    reason: "exit 1\nstderr| SQLSTATE[42S01]: table exists".into()
                }
            );
        }
    }

    #[test]
    fn another_instances_words_are_bounded_and_escaped() {
        let mut hostile = found(State::Failed, false);
        hostile.record.instance = format!("i-\u{1b}[2J{}", "x".repeat(500));
        hostile.record.reason = Some(format!("a\u{7}\nb\nc\nd\ne\n{}", "y".repeat(5000)));
        let Next::Failed { by, reason } = decide(Some(&hostile)) else {
            panic!("not failed")
        };
        assert!(!by.contains('\u{1b}') && by.chars().count() <= 65, "{by}");
        assert_eq!(reason.lines().count(), 4, "{reason}");
        assert!(!reason.contains('\u{7}'), "{reason}");
        hostile.record.reason = None;
        let Next::Failed { reason, .. } = decide(Some(&hostile)) else {
            panic!("not failed")
        };
        assert_eq!(reason, "no reason recorded");
    }

    #[test]
    fn states_read_back_as_they_are_written() {
        for state in [State::Running, State::Done, State::Failed] {
            assert_eq!(State::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!(State::parse("paused"), None);
    }
}
