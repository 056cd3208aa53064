//! What kiln says to systemd: readiness and status (`sd_notify`), watchdog pings, and where logs go;
//! and what systemd gives kiln (`unit`: the installed unit's stop timeout, for `kiln check`).

pub mod log;
pub mod notify;
pub mod unit;

pub use notify::Notifier;
