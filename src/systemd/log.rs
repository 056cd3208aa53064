//! Logs go to journald when systemd gave kiln a journal stream, to stderr otherwise.
//! `KILN_LOG` (an `EnvFilter` directive such as `debug` or `kiln=debug`) picks the level.
//!
//! The thread that logs never writes to the sink: a stderr pipe nobody reads or a journal that
//! does not keep up must not stall the supervisor. Each event is captured where it happens (its
//! callsite, the moment, its fields as text), put on a bounded queue, and one writer thread
//! replays it into the sink's layer (`tracing-journald`, or the fmt layer on stderr), so journald
//! still gets every field (`SERVICE=`, `STREAM=`, the code location). When the queue is full the
//! event is dropped and counted; `kiln status` shows the count.
//!
//! tracing-appender's non-blocking writer does this for a `Write` sink, but journald's layer owns
//! its socket and writes to it itself, so the queue has to carry events rather than bytes.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;

/// Events waiting for the writer; past this, new ones are dropped.
const QUEUE_EVENTS: usize = 1024;
/// Bytes of text waiting for the writer; past this, new events are dropped. With forwarded lines
/// of up to 8 KiB, the event count alone would let the queue hold megabytes.
const QUEUE_BYTES: usize = 256 * 1024;
/// How long the last lines get to reach the sink when kiln exits; a stuck sink does not hold
/// kiln's exit longer than this.
const FLUSH_WAIT: Duration = Duration::from_millis(250);

/// Where the log goes and what it lost, for `kiln status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStatus {
    /// `stderr` or `journald`; empty before logging starts.
    pub sink: String,
    /// Events dropped because the sink did not take them fast enough.
    pub dropped_lines: u64,
}

/// The process's one log queue, once [`init`] ran.
static LOG: OnceLock<Log> = OnceLock::new();

struct Log {
    sink: &'static str,
    queue: SyncSender<Message>,
    queued_bytes: Arc<AtomicUsize>,
    dropped: AtomicU64,
}

enum Message {
    Event(Captured),
    /// Answered once everything queued before it was written.
    Flush(SyncSender<()>),
}

/// Flushes what is queued (for at most [`FLUSH_WAIT`]) when dropped: hold it until kiln exits.
#[must_use = "the log is flushed when this is dropped"]
pub struct FlushOnDrop;

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        flush(FLUSH_WAIT);
    }
}

/// Starts the writer thread and installs the global subscriber. Call once, first thing.
pub fn init() -> FlushOnDrop {
    let filter = EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (sink, dispatch) = sink();
    let (queue, receiver) = sync_channel(QUEUE_EVENTS);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let writer_bytes = queued_bytes.clone();
    let started = std::thread::Builder::new()
        .name("kiln-log".into())
        .spawn(move || write_all(&receiver, &dispatch, &writer_bytes));
    if let Err(e) = started {
        eprintln!("kiln: cannot start the log writer: {e}");
        return FlushOnDrop;
    }
    let log = Log {
        sink,
        queue,
        queued_bytes,
        dropped: AtomicU64::new(0),
    };
    if LOG.set(log).is_ok() {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(Capture)
            .try_init();
    }
    FlushOnDrop
}

/// The sink's name and a dispatcher that writes to it, used only by the writer thread.
fn sink() -> (&'static str, Dispatch) {
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        // No `F_` prefix: forwarded lines carry `SERVICE=` and `STREAM=`, as the README says.
        // Priorities as systemd gives a service's own lines: info is 6, not tracing-journald's
        // default 5 (notice), so that `journalctl -p notice` shows only what stands out.
        let layer = journald
            .with_syslog_identifier("kiln".into())
            .with_field_prefix(None)
            .with_priority_mappings(tracing_journald::PriorityMappings {
                info: tracing_journald::Priority::Informational,
                debug: tracing_journald::Priority::Debug,
                ..tracing_journald::PriorityMappings::new()
            });
        return (
            "journald",
            Dispatch::new(tracing_subscriber::registry().with(layer)),
        );
    }
    // On a terminal or a plain stderr the service name already leads each forwarded line, so the
    // structured `service`/`stream` fields (kept for journald) are not repeated.
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| match field.name() {
        "message" => write!(w, "{value:?}"),
        "service" | "stream" => Ok(()),
        name => write!(w, " {name}={value:?}"),
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_timer(CapturedAt)
        .fmt_fields(fields);
    ("stderr", Dispatch::new(tracing_subscriber::registry().with(fmt)))
}

/// What `kiln status` shows about the log.
pub fn status() -> LogStatus {
    LOG.get()
        .map(|log| LogStatus {
            sink: log.sink.into(),
            dropped_lines: log.dropped.load(Ordering::Relaxed),
        })
        .unwrap_or_default()
}

/// Waits until what was logged so far is written, at most `wait`.
pub fn flush(wait: Duration) {
    let Some(log) = LOG.get() else { return };
    let (done, flushed) = sync_channel(1);
    if log.queue.try_send(Message::Flush(done)).is_ok() {
        let _ = flushed.recv_timeout(wait);
    }
}

/// The writer thread: replays each event into the sink until every sender is gone.
fn write_all(receiver: &Receiver<Message>, dispatch: &Dispatch, queued_bytes: &AtomicUsize) {
    for message in receiver {
        match message {
            Message::Event(captured) => {
                queued_bytes.fetch_sub(captured.bytes, Ordering::Relaxed);
                captured.replay(dispatch);
            }
            Message::Flush(done) => {
                let _ = done.try_send(());
            }
        }
    }
}

/// The layer on the logging threads: captures each enabled event and queues it.
struct Capture;

impl<S: Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(log) = LOG.get() else { return };
        let captured = Captured::of(event);
        let bytes = captured.bytes;
        if log.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > QUEUE_BYTES {
            log.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            log.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match log.queue.try_send(Message::Event(captured)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                log.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                log.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// An event taken off the logging thread: its callsite, when it happened, its values as text.
struct Captured {
    metadata: &'static Metadata<'static>,
    at: SystemTime,
    /// One entry per field of the callsite, in the callsite's order.
    values: Vec<Option<Text>>,
    /// Roughly what the event holds, for the queue's byte budget.
    bytes: usize,
}

/// A field's value: text recorded as a string stays a string (journald and fmt show `&str`
/// values and `Debug` values differently), anything else keeps its `Debug` rendering.
enum Text {
    Str(String),
    Debug(String),
}

impl Captured {
    fn of(event: &Event<'_>) -> Captured {
        let metadata = event.metadata();
        let mut values: Vec<Option<Text>> = (0..metadata.fields().len()).map(|_| None).collect();
        event.record(&mut Recorder(&mut values));
        let bytes = 64
            + values
                .iter()
                .flatten()
                .map(|t| match t {
                    Text::Str(s) | Text::Debug(s) => s.len(),
                })
                .sum::<usize>();
        Captured {
            metadata,
            at: SystemTime::now(),
            values,
            bytes,
        }
    }

    /// Builds the event again on the writer thread and hands it to the sink.
    fn replay(&self, dispatch: &Dispatch) {
        let displayed: Vec<Option<tracing::field::DisplayValue<&String>>> = self
            .values
            .iter()
            .map(|v| match v {
                Some(Text::Debug(s)) => Some(tracing::field::display(s)),
                _ => None,
            })
            .collect();
        let values: Vec<Option<&dyn tracing::Value>> = self
            .values
            .iter()
            .zip(&displayed)
            .map(|(text, shown)| match (text, shown) {
                (Some(Text::Str(s)), _) => Some(s as &dyn tracing::Value),
                (_, Some(shown)) => Some(shown as &dyn tracing::Value),
                _ => None,
            })
            .collect();
        let fields = self.metadata.fields();
        let value_set = fields.value_set_all(&values);
        CAPTURED_AT.with(|at| at.set(Some(self.at)));
        dispatch.event(&Event::new(self.metadata, &value_set));
    }
}

/// Records every field of an event as text, at the field's index in its callsite.
struct Recorder<'a>(&'a mut Vec<Option<Text>>);

impl Visit for Recorder<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(slot) = self.0.get_mut(field.index()) {
            *slot = Some(Text::Str(value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(slot) = self.0.get_mut(field.index()) {
            *slot = Some(Text::Debug(format!("{value:?}")));
        }
    }
}

thread_local! {
    /// When the event being replayed on this thread happened.
    static CAPTURED_AT: Cell<Option<SystemTime>> = const { Cell::new(None) };
}

/// Stamps a replayed line with the moment it was logged, not the moment it was written.
struct CapturedAt;

impl FormatTime for CapturedAt {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let at = CAPTURED_AT.with(Cell::get).unwrap_or_else(SystemTime::now);
        write!(w, "{}", humantime::format_rfc3339_micros(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_replayed_event_keeps_its_fields_and_its_moment() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let dispatch = Dispatch::new(
            tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .with_ansi(false)
                    .with_timer(CapturedAt),
            ),
        );
        let captured = Arc::new(Mutex::new(None));
        let sink = captured.clone();
        let capture = tracing_subscriber::registry().with(OnEvent(move |event: &Event<'_>| {
            *sink.lock().unwrap() = Some(Captured::of(event))
        }));
        tracing::subscriber::with_default(capture, || {
            tracing::info!(service = "php-fpm", attempt = 3u32, "php-fpm| {}", "pong");
        });
        let mut event = captured.lock().unwrap().take().expect("an event was captured");
        event.at = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
        event.replay(&dispatch);
        let line = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            line,
            "1970-01-02T00:00:00.000000Z  INFO kiln::systemd::log::tests: php-fpm| pong service=\"php-fpm\" attempt=3\n"
        );
    }

    /// A layer that hands every event to a closure.
    struct OnEvent<F>(F);

    impl<S: Subscriber, F: Fn(&Event<'_>) + 'static> tracing_subscriber::Layer<S> for OnEvent<F> {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            (self.0)(event)
        }
    }
}
