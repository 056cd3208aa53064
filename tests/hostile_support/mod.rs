//! Hostile clients for the tests of issue 10 §2: floods of connections that send nothing, or a
//! request head that never ends, kept up on a thread of their own until dropped.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use testkit::control;
use testkit::example::{BOOT_DEADLINE, Example};
use testkit::wait::{http_get_within, poll_until, wait_until};

/// Gives the test process as many descriptors as it may have: the floods hold thousands.
pub fn raise_own_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    assert!(
        hard >= 4096,
        "the floods need 4096 descriptors; the hard limit is {hard}"
    );
}

/// Descriptors a process holds now.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What kiln's status says about one of its listeners: (open, cap, shed).
pub fn listener(status: &serde_json::Value, name: &str) -> (u64, u64, u64) {
    let l = status["listeners"]
        .as_array()
        .and_then(|all| all.iter().find(|l| l["name"] == name))
        .unwrap_or_else(|| panic!("no listener {name:?} in status: {}", status["listeners"]));
    (
        l["open"].as_u64().unwrap(),
        l["cap"].as_u64().unwrap(),
        l["shed"].as_u64().unwrap(),
    )
}

/// Under Linux's first SYN retransmission timeout (1 s): a connection that takes this long had
/// its SYN dropped.
const SYN_RETRANSMISSION: Duration = Duration::from_millis(900);

/// How long a check may wait for its answer. Behind a flood a new connection waits for those
/// queued before it (up to `net.core.somaxconn` per listener), which a debug build on a busy
/// 2-core machine clears in seconds; a load balancer allows 2 s (HAProxy) to 5 s (ALB). A kiln
/// that stopped answering fails this all the same.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// `count` GETs of `url`, each on a fresh connection as a load balancer's check: every one must
/// be answered `expected`. Returns the answers' bodies.
///
/// Each check's connection must also be set up at once: the kernel answers a SYN itself unless the
/// listener's queue is full, and then drops it; the client's first retransmission comes a second
/// later, which is what times out a load balancer's check.
pub fn every_answer_is(url: &str, count: usize, expected: u16) {
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|authority| authority.parse().ok())
        .unwrap_or_else(|| panic!("{url}: not http://IP:PORT/..."));
    for n in 0..count {
        if let Err(e) = TcpStream::connect_timeout(&addr, SYN_RETRANSMISSION) {
            panic!(
                "check {n} of {count}: connect to {addr} within {SYN_RETRANSMISSION:?}: {e} (SYN dropped?)"
            );
        }
        match http_get_within(url, CHECK_TIMEOUT) {
            Ok((code, _)) if code == expected => {}
            other => panic!("check {n} of {count} of {url}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs php-fpm's master and waits until kiln has started a new one and the instance is
/// ready again: the supervisor is not starved.
pub fn php_fpm_comes_back_after_sigkill(ex: &Example) {
    let socket = ex.socket();
    let old = control::unit_pid(&socket, "php-fpm").expect("php-fpm runs");
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    wait_until("php-fpm restarted and ready", BOOT_DEADLINE, || {
        let s = control::status(&socket)?;
        let php = control::unit(&s, "php-fpm");
        let new = php["pid"].as_i64()? as i32;
        (new != old && php["ready"] == true && s["phase"] == "ready").then_some(())
    });
}

/// How a flood's connections behave once open.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Sends nothing.
    Idle,
    /// Sends a request line, then one header line every 500 ms, never the blank line.
    Slowloris,
}

/// Where a flood connects.
#[derive(Clone)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn open(target: &Target) -> Option<Conn> {
        let conn = match target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, Duration::from_millis(500)).ok()?;
                s.set_nonblocking(true).ok()?;
                Conn::Tcp(s)
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path).ok()?;
                s.set_nonblocking(true).ok()?;
                Conn::Unix(s)
            }
        };
        Some(conn)
    }

    /// Reads what the server sent; false once the server closed the connection.
    fn still_open(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        let read = match self {
            Conn::Tcp(s) => s.read(&mut buf),
            Conn::Unix(s) => s.read(&mut buf),
        };
        match read {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Err(_) => false,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let _ = match self {
            Conn::Tcp(s) => s.write(bytes),
            Conn::Unix(s) => s.write(bytes),
        };
    }
}

/// `size` hostile connections, kept up until dropped: every 100 ms the ones the server closed are
/// counted and opened again.
pub struct Flood {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    closed_by_server: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    pub fn start(target: Target, size: usize, behaviour: Behaviour) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let closed_by_server = Arc::new(AtomicUsize::new(0));
        let (s, n, c) = (stop.clone(), opened.clone(), closed_by_server.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<(Conn, usize)> = Vec::with_capacity(size);
            let mut round = 0usize;
            while !s.load(Ordering::Relaxed) {
                let before = conns.len();
                conns.retain_mut(|(conn, _)| conn.still_open());
                c.fetch_add(before - conns.len(), Ordering::Relaxed);
                while conns.len() < size && !s.load(Ordering::Relaxed) {
                    match Conn::open(&target) {
                        Some(conn) => {
                            conns.push((conn, 0));
                            n.fetch_add(1, Ordering::Relaxed);
                        }
                        None => break,
                    }
                }
                if behaviour == Behaviour::Slowloris && round.is_multiple_of(5) {
                    for (conn, lines) in &mut conns {
                        conn.send(if *lines == 0 {
                            b"GET /readyz HTTP/1.1\r\n"
                        } else {
                            b"X-Slow: yes\r\n"
                        });
                        *lines += 1;
                    }
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let flood = Flood {
            stop,
            opened,
            closed_by_server,
            thread: Some(thread),
        };
        // Counted as made rather than open: a server that closes them at once never lets `size`
        // be open together. A server that stops accepting (the attack worked) gets 10 s, then
        // the test goes on to show what that did.
        poll_until(Duration::from_secs(10), || {
            (flood.opened.load(Ordering::Relaxed) >= size).then_some(())
        });
        flood
    }

    /// Connections the server has closed so far.
    pub fn closed_by_server(&self) -> usize {
        self.closed_by_server.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
