//! A service's stdout and stderr, forwarded line by line into kiln's log with the unit's name, so
//! lines of different services never interleave mid-line. The last stderr lines are kept for
//! `kiln status` ("why did it crash?").

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

/// Longer lines are cut into pieces of this size: a process that never writes a newline must not
/// grow kiln's memory.
const MAX_LINE: usize = 8 * 1024;
/// Stderr lines kept for `kiln status`.
const TAIL_LINES: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The last lines a unit wrote to stderr, across restarts.
#[derive(Clone, Default, Debug)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: &str) {
        let mut tail = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    }

    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Spawns a task that logs every line read from `fd` until the writer closes it. The task ends
/// at end of file: await it to be sure a process's last words are in the log.
pub fn forward(unit: Arc<str>, stream: Stream, fd: OwnedFd, tail: StderrTail) -> JoinHandle<()> {
    tokio::spawn(async move {
        let receiver = match pipe::Receiver::from_owned_fd(fd) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{unit}: cannot read its {stream:?}: {e}");
                return;
            }
        };
        let mut reader = BufReader::with_capacity(MAX_LINE, receiver);
        let mut line: Vec<u8> = Vec::with_capacity(256);
        loop {
            let buf = match reader.fill_buf().await {
                Ok(buf) => buf,
                Err(e) => {
                    tracing::debug!("{unit}: {stream:?} read error: {e}");
                    break;
                }
            };
            if buf.is_empty() {
                break;
            }
            let (take, complete) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) if line.len() + i <= MAX_LINE => (i + 1, true),
                _ => {
                    let take = buf.len().min(MAX_LINE - line.len());
                    (take, line.len() + take >= MAX_LINE)
                }
            };
            line.extend_from_slice(&buf[..take]);
            reader.consume(take);
            if complete {
                emit(&unit, stream, &line, &tail);
                line.clear();
            }
        }
        if !line.is_empty() {
            emit(&unit, stream, &line, &tail);
        }
    })
}

fn emit(unit: &str, stream: Stream, raw: &[u8], tail: &StderrTail) {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\n', '\r']);
    match stream {
        Stream::Stdout => tracing::info!(service = unit, stream = "stdout", "{unit}| {text}"),
        Stream::Stderr => {
            tail.push(text);
            tracing::info!(service = unit, stream = "stderr", "{unit}| {text}");
        }
    }
}
