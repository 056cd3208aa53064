//! `sd_notify` by hand: one datagram of `KEY=VALUE` lines to `$NOTIFY_SOCKET`. Protocol-sized, so
//! no crate: a path socket, or an abstract one when the name starts with `@`.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The longest a notification may wait on a full systemd socket. The supervisor's thread sends
/// them, and it must never stall on its supervisor: past this the notification is lost (and said).
const SEND_TIMEOUT: Duration = Duration::from_millis(100);

/// A datagram socket whose sends give up after [`SEND_TIMEOUT`].
fn bounded_socket() -> std::io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    Ok(socket)
}

/// Sends notifications to systemd; does nothing when kiln was not started by a `Type=notify` unit.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (when `$WATCHDOG_PID` is unset or kiln's pid).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = path.as_encoded_bytes();
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name).ok()?,
                None => SocketAddr::from_pathname(&path).ok()?,
            };
            Some((bounded_socket().ok()?, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .map(|p| p.parse::<u32>().ok() == Some(std::process::id()))
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// A notifier that sends nothing (tests, `kiln env`).
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines). Errors are logged, never fatal:
    /// a lost notification must not take the instance down, and a full socket costs at most
    /// [`SEND_TIMEOUT`].
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!("sd_notify failed: {e}");
        }
    }

    /// `STATUS=` with the line made safe (one line).
    pub fn status(&self, line: &str) {
        self.notify(&format!("STATUS={}", line.replace('\n', " ")));
    }

    /// Asks systemd for more time (start or stop), e.g. while a drain runs.
    pub fn extend_timeout(&self, by: Duration) {
        self.notify(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()));
    }

    /// The interval at which `WATCHDOG=1` must be sent: half of `$WATCHDOG_USEC`.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_one_datagram_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some((
                bounded_socket().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: None,
        };
        notifier.notify("READY=1\nSTATUS=3/3 ready");
        let mut buf = [0u8; 128];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=3/3 ready");
    }

    #[test]
    fn a_socket_nobody_reads_never_blocks_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _server = UnixDatagram::bind(&path).unwrap();
        let addr = SocketAddr::from_pathname(&path).unwrap();
        // Fill the receiver's queue until a non-blocking send would block.
        let filler = UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        while filler.send_to_addr(b"WATCHDOG=1", &addr).is_ok() {}
        let notifier = Notifier {
            target: Some((bounded_socket().unwrap(), addr)),
            watchdog: None,
        };
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            notifier.notify("STATUS=stuck systemd");
            let _ = done.send(());
        });
        // Without the send timeout the thread blocks for as long as nobody reads.
        assert!(
            finished.recv_timeout(Duration::from_secs(10)).is_ok(),
            "notify blocked on a full socket"
        );
    }
}
