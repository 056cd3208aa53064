//! A service's stdout and stderr, forwarded line by line into kiln's log with the unit's name, so
//! lines of different services never interleave mid-line. The last stderr lines are kept for
//! `kiln status` ("why did it crash?").
//!
//! A flood (a service running `yes`, a debug loop) must stay cheap. Each unit may log [`BURST`]
//! lines at once and [`RATE`] a second after that, stdout and stderr together; the lines over it
//! are dropped and counted (`kiln status` shows the count), and the stderr tail keeps the last
//! ones all the same. Dropped lines are not split one by one: the rest of what was read is
//! counted in bulk. While a unit is over its rate, a read that fills the buffer is followed by a
//! pause of [`FLOOD_PAUSE`], so kiln reads at most about 8 MiB a second of it and a faster writer
//! waits on its full pipe.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

/// Longer lines are cut into pieces of this size: a process that never writes a newline must not
/// grow kiln's memory. Also the read buffer's size.
const MAX_LINE: usize = 8 * 1024;
/// Stderr lines kept for `kiln status`.
const TAIL_LINES: usize = 10;
/// Lines a unit may log a second, once its burst is spent.
pub const RATE: u32 = 1_000;
/// Lines a unit may log at once (a stack trace, a start-up banner).
pub const BURST: u32 = 5_000;
/// While a unit is over its rate, the pause after a read that filled the buffer.
const FLOOD_PAUSE: Duration = Duration::from_millis(1);
/// A flood is over once this long has passed without a dropped line.
const CALM: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What kiln keeps of a unit's output across restarts: its last stderr lines, its rate limit and
/// the count of lines dropped.
#[derive(Clone, Debug)]
pub struct UnitOutput(Arc<Mutex<Kept>>);

#[derive(Debug)]
struct Kept {
    tail: VecDeque<String>,
    /// Lines the unit may log now (a token bucket refilled at [`RATE`]).
    allowance: f64,
    refilled: Instant,
    dropped: u64,
    /// Dropped in the flood under way (0: none is).
    dropped_in_flood: u64,
    last_dropped: Option<Instant>,
}

/// What becomes of the next line.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Log,
    /// Logged, and the flood before it (this many lines dropped) is over.
    LogAfterFlood(u64),
    /// Over the rate; `first` for the first line dropped in a flood.
    Drop {
        first: bool,
    },
}

impl Default for UnitOutput {
    fn default() -> UnitOutput {
        UnitOutput(Arc::new(Mutex::new(Kept {
            tail: VecDeque::with_capacity(TAIL_LINES),
            allowance: f64::from(BURST),
            refilled: Instant::now(),
            dropped: 0,
            dropped_in_flood: 0,
            last_dropped: None,
        })))
    }
}

impl UnitOutput {
    /// The last lines the unit wrote to stderr, logged or dropped.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.lock().tail.iter().cloned().collect()
    }

    /// Lines dropped because the unit wrote more than [`RATE`] a second.
    pub fn dropped_lines(&self) -> u64 {
        self.lock().dropped
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn judge(&self, now: Instant) -> Verdict {
        let mut kept = self.lock();
        let earned = now.saturating_duration_since(kept.refilled).as_secs_f64() * f64::from(RATE);
        kept.allowance = (kept.allowance + earned).min(f64::from(BURST));
        kept.refilled = now;
        if kept.allowance < 1.0 {
            return Verdict::Drop {
                first: kept.dropped_in_flood == 0,
            };
        }
        kept.allowance -= 1.0;
        let calm = kept
            .last_dropped
            .is_none_or(|at| now.saturating_duration_since(at) >= CALM);
        match kept.dropped_in_flood {
            n if n > 0 && calm => {
                kept.dropped_in_flood = 0;
                Verdict::LogAfterFlood(n)
            }
            _ => Verdict::Log,
        }
    }

    fn count_dropped(&self, lines: u64, now: Instant) {
        let mut kept = self.lock();
        kept.dropped += lines;
        kept.dropped_in_flood += lines;
        kept.last_dropped = Some(now);
    }

    fn push_tail(&self, line: &str) {
        let mut kept = self.lock();
        if kept.tail.len() == TAIL_LINES {
            kept.tail.pop_front();
        }
        kept.tail.push_back(line.to_string());
    }
}

/// Spawns a task that logs every line read from `fd` until the writer closes it. The task ends
/// at end of file: await it to be sure a process's last words are in the log.
pub fn forward(unit: Arc<str>, stream: Stream, fd: OwnedFd, output: UnitOutput) -> JoinHandle<()> {
    tokio::spawn(async move {
        let receiver = match pipe::Receiver::from_owned_fd(fd) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{unit}: cannot read its {stream:?}: {e}");
                return;
            }
        };
        let mut reader = BufReader::with_capacity(MAX_LINE, receiver);
        let mut lines = Lines {
            unit,
            stream,
            output,
            partial: Vec::with_capacity(256),
        };
        loop {
            let chunk = match reader.fill_buf().await {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::debug!("{}: {stream:?} read error: {e}", lines.unit);
                    break;
                }
            };
            if chunk.is_empty() {
                break;
            }
            let (read, full) = (chunk.len(), chunk.len() == MAX_LINE);
            let flooding = lines.feed(chunk);
            reader.consume(read);
            if flooding && full {
                tokio::time::sleep(FLOOD_PAUSE).await;
            }
        }
        lines.finish();
    })
}

/// Cuts one stream into lines and hands each to the log or to the dropped count.
struct Lines {
    unit: Arc<str>,
    stream: Stream,
    output: UnitOutput,
    /// The start of a line whose end has not been read yet.
    partial: Vec<u8>,
}

impl Lines {
    /// Takes what was read; true when lines were dropped.
    fn feed(&mut self, mut chunk: &[u8]) -> bool {
        let mut dropped = false;
        while !chunk.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let window = &chunk[..chunk.len().min(room)];
            let end = match window.iter().position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if window.len() == room => room,
                None => {
                    self.partial.extend_from_slice(chunk);
                    break;
                }
            };
            match self.output.judge(Instant::now()) {
                Verdict::Log => {}
                Verdict::LogAfterFlood(n) => {
                    tracing::info!("{}: output calm again; {n} lines were dropped", self.unit)
                }
                Verdict::Drop { first } => {
                    if first {
                        tracing::warn!(
                            "{}: writes more than {RATE} lines a second; lines are dropped until it calms down (kiln status counts them)",
                            self.unit
                        );
                    }
                    chunk = self.drop_complete_lines(chunk, end);
                    dropped = true;
                    continue;
                }
            }
            self.partial.extend_from_slice(&chunk[..end]);
            self.emit();
            chunk = &chunk[end..];
        }
        dropped
    }

    /// Drops the line ending at `first_end` and every complete line after it in `chunk`, at
    /// once; returns what is left (the start of a line).
    fn drop_complete_lines<'c>(&mut self, chunk: &'c [u8], first_end: usize) -> &'c [u8] {
        let last_end = chunk
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(first_end, |i| (i + 1).max(first_end));
        let later = chunk[first_end..last_end].iter().filter(|b| **b == b'\n').count();
        self.output.count_dropped(1 + later as u64, Instant::now());
        if self.stream == Stream::Stderr {
            if later == 0 {
                self.partial.extend_from_slice(&chunk[..first_end]);
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.output.push_tail(trim(&line));
            } else {
                let block = &chunk[first_end..last_end];
                let block = block.strip_suffix(b"\n").unwrap_or(block);
                let last: Vec<&[u8]> = block.rsplit(|b| *b == b'\n').take(TAIL_LINES).collect();
                for line in last.into_iter().rev() {
                    self.output.push_tail(trim(&String::from_utf8_lossy(line)));
                }
            }
        }
        self.partial.clear();
        &chunk[last_end..]
    }

    /// Logs the line in `partial` (and keeps it in the tail when it is stderr's).
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.partial);
        let text = trim(&text);
        let unit = &*self.unit;
        match self.stream {
            Stream::Stdout => tracing::info!(service = unit, stream = "stdout", "{unit}| {text}"),
            Stream::Stderr => {
                self.output.push_tail(text);
                tracing::info!(service = unit, stream = "stderr", "{unit}| {text}");
            }
        }
        self.partial.clear();
    }

    /// At end of file: a last line without a newline is still a line.
    fn finish(&mut self) {
        if !self.partial.is_empty() {
            match self.output.judge(Instant::now()) {
                Verdict::Drop { .. } => self.output.count_dropped(1, Instant::now()),
                _ => self.emit(),
            }
        }
    }
}

fn trim(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(stream: Stream) -> Lines {
        Lines {
            unit: "flood".into(),
            stream,
            output: UnitOutput::default(),
            partial: Vec::new(),
        }
    }

    #[test]
    fn past_the_burst_lines_are_counted_not_logged_and_the_tail_keeps_up() {
        let mut l = lines(Stream::Stderr);
        let chunk: Vec<u8> = (0..BURST + 3000)
            .flat_map(|n| format!("line {n}\n").into_bytes())
            .collect();
        assert!(l.feed(&chunk));
        // The refill while feeding may let a handful more through.
        let dropped = l.output.dropped_lines();
        assert!((2_900..=3_000).contains(&dropped), "{dropped}");
        let tail = l.output.stderr_tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), &format!("line {}", BURST + 2999));
    }

    #[test]
    fn a_flood_is_announced_once_and_over_after_a_calm_second() {
        let output = UnitOutput::default();
        let start = Instant::now();
        for _ in 0..BURST {
            assert_eq!(output.judge(start), Verdict::Log);
        }
        assert_eq!(output.judge(start), Verdict::Drop { first: true });
        output.count_dropped(100, start);
        assert_eq!(output.judge(start), Verdict::Drop { first: false });
        // A line earned a millisecond later, in the middle of the flood, is logged quietly.
        let soon = start + Duration::from_millis(1);
        assert_eq!(output.judge(soon), Verdict::Log);
        output.count_dropped(50, soon);
        let later = soon + CALM;
        assert_eq!(output.judge(later), Verdict::LogAfterFlood(150));
        assert_eq!(output.judge(later), Verdict::Log);
        assert_eq!(output.dropped_lines(), 150);
    }

    #[test]
    fn a_line_split_across_reads_is_one_line_and_a_newline_less_end_counts() {
        let mut l = lines(Stream::Stderr);
        assert!(!l.feed(b"hel"));
        assert!(!l.feed(b"lo\nwor"));
        assert_eq!(l.output.stderr_tail(), ["hello"]);
        l.finish();
        assert_eq!(l.output.stderr_tail(), ["hello", "wor"]);
        assert_eq!(l.output.dropped_lines(), 0);
    }

    #[test]
    fn a_line_without_newline_is_cut_at_max_line() {
        let mut l = lines(Stream::Stderr);
        let long = vec![b'x'; MAX_LINE + 10];
        l.feed(&long);
        assert_eq!(
            l.output.stderr_tail(),
            [String::from_utf8(vec![b'x'; MAX_LINE]).unwrap()]
        );
        assert_eq!(l.partial.len(), 10);
    }
}
