//! A stand-in for systemd's notify socket: receives kiln's `sd_notify` datagrams so a test can
//! wait for `READY=1` or a `STATUS=` line, and see them in the order kiln sent them.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct NotifySocket {
    pub path: PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    /// Binds a datagram socket in a fresh temp dir and collects what arrives on a thread.
    pub fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("temp dir for the notify socket");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::downgrade(&messages);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let received = socket.recv(&mut buf);
                let Some(sink) = sink.upgrade() else { return };
                if let Ok(n) = received {
                    let at = Instant::now();
                    let text = String::from_utf8_lossy(&buf[..n]);
                    sink.lock()
                        .unwrap()
                        .extend(text.lines().map(|l| (at, l.to_owned())));
                }
            }
        });
        NotifySocket {
            path,
            messages,
            _dir: dir,
        }
    }

    /// The `NOTIFY_SOCKET` value for kiln.
    pub fn env(&self) -> (&'static str, String) {
        ("NOTIFY_SOCKET", self.path.display().to_string())
    }

    /// Every line received so far (`READY=1`, `STATUS=...`), in order.
    pub fn lines(&self) -> Vec<String> {
        self.timed_lines().into_iter().map(|(_, l)| l).collect()
    }

    /// Every line received so far with the moment its datagram arrived.
    pub fn timed_lines(&self) -> Vec<(Instant, String)> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until a received line satisfies `f`; returns it.
    pub fn wait_for(&self, what: &str, deadline: Duration, f: impl Fn(&str) -> bool) -> String {
        crate::wait::wait_until(what, deadline, || self.lines().into_iter().find(|l| f(l)))
    }
}
