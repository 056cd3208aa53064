//! What kiln says to systemd: readiness and status (`sd_notify`), watchdog pings, and where logs go.

pub mod log;
pub mod notify;

pub use notify::Notifier;
