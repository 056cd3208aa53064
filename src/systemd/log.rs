//! Logs go to journald when systemd gave kiln a journal stream, to stderr otherwise.
//! `KILN_LOG` (an `EnvFilter` directive such as `debug` or `kiln=debug`) picks the level.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

pub fn init() {
    let filter = EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let _ = registry
            .with(journald.with_syslog_identifier("kiln".into()))
            .try_init();
        return;
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
        .fmt_fields(fields);
    let _ = registry.with(fmt).try_init();
}
