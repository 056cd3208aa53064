//! A real HAProxy (Debian's 2.6) for the load balancer tests, and a tiny HTTP server to put
//! behind it.
//!
//! [`Haproxy::start`] writes a config with one HTTP frontend on a free loopback port, one backend
//! with a dynamic algorithm and no servers (kiln adds itself), and an admin runtime API socket; it
//! runs `haproxy -db -f CONFIG` as a [`Process`] and waits until the runtime API answers.
//! [`Target`] is an HTTP/1.1 keep-alive server that counts what it serves, with `/slow?ms=N`
//! for a request that is in flight while a drain starts.

use crate::peers::Process;
use crate::server::Background;
use crate::wait::wait_until;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run HAProxy with.
#[derive(Debug, Clone)]
pub struct HaproxyConfig {
    /// Where the config file and the admin socket go.
    pub dir: PathBuf,
    /// The runtime API socket (`level admin`).
    pub socket: PathBuf,
    /// Also expose the runtime API on TCP here.
    pub tcp_socket: Option<SocketAddr>,
    /// The HTTP frontend.
    pub frontend: SocketAddr,
    /// The backend kiln joins.
    pub backend: String,
    /// Extra lines for the backend section (e.g. `default-server inter 500ms`).
    pub backend_lines: Vec<String>,
    /// Whole sections after the backend (another frontend and backend), as written.
    pub extra_sections: Vec<String>,
}

impl HaproxyConfig {
    /// Free loopback port for the frontend, socket `DIR/admin.sock`, backend `app`.
    pub fn new(dir: &Path) -> HaproxyConfig {
        HaproxyConfig {
            dir: dir.to_path_buf(),
            socket: dir.join("admin.sock"),
            tcp_socket: None,
            frontend: crate::net::free_addr(),
            backend: "app".into(),
            backend_lines: Vec::new(),
            extra_sections: Vec::new(),
        }
    }

    pub fn render(&self) -> String {
        let mut text = format!(
            "global\n\
             \x20   stats socket {} level admin\n",
            self.socket.display()
        );
        if let Some(tcp) = self.tcp_socket {
            text.push_str(&format!("    stats socket ipv4@{tcp} level admin\n"));
        }
        text.push_str(&format!(
            "defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 2s\n\
             \x20   timeout client 30s\n\
             \x20   timeout server 30s\n\
             \x20   retries 0\n\
             frontend fe\n\
             \x20   bind {}\n\
             \x20   default_backend {}\n\
             backend {}\n\
             \x20   balance roundrobin\n",
            self.frontend, self.backend, self.backend
        ));
        for line in &self.backend_lines {
            text.push_str(&format!("    {line}\n"));
        }
        for section in &self.extra_sections {
            text.push_str(section.trim_end());
            text.push('\n');
        }
        text
    }
}

/// A running HAProxy. Dropping it stops it.
pub struct Haproxy {
    pub process: Process,
    pub config: HaproxyConfig,
}

impl Haproxy {
    /// The `[lb]` table that makes kiln register `address` in this HAProxy's backend (as
    /// `server`, with `options` and `drain_timeout`, when given).
    pub fn lb_table(
        &self,
        address: SocketAddr,
        server: Option<&str>,
        options: Option<&str>,
        drain_timeout: Option<Duration>,
    ) -> toml::Table {
        let mut lb = toml::Table::new();
        lb.insert("kind".into(), "haproxy".into());
        lb.insert("socket".into(), self.config.socket.display().to_string().into());
        lb.insert("backend".into(), self.config.backend.clone().into());
        lb.insert("address".into(), address.to_string().into());
        if let Some(server) = server {
            lb.insert("server".into(), server.into());
        }
        if let Some(options) = options {
            lb.insert("options".into(), options.into());
        }
        if let Some(drain) = drain_timeout {
            lb.insert("drain_timeout".into(), format!("{}ms", drain.as_millis()).into());
        }
        lb
    }

    pub fn start(config: HaproxyConfig) -> Haproxy {
        Self::start_with(config, Command::new("haproxy"))
    }

    /// HAProxy inside a network namespace: its frontends and checks are that namespace's; the
    /// runtime API socket is a file, reached from anywhere. It dies with the test's thread.
    pub fn start_in(config: HaproxyConfig, netns: &crate::netns::Netns) -> Haproxy {
        let mut cmd = netns.command("haproxy");
        crate::peers::die_with_test(&mut cmd);
        Self::start_with(config, cmd)
    }

    /// `cmd` runs the `haproxy` program; the config's arguments are added.
    fn start_with(config: HaproxyConfig, mut cmd: Command) -> Haproxy {
        let path = config.dir.join("haproxy.cfg");
        std::fs::write(&path, config.render()).expect("write haproxy.cfg");
        cmd.args(["-db", "-f"]).arg(&path);
        let process = Process::spawn(cmd);
        let haproxy = Haproxy { process, config };
        wait_until("haproxy's runtime API", Duration::from_secs(10), || {
            command(&haproxy.config.socket, "show info").ok()
        });
        haproxy
    }

    /// `http://FRONTEND` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.config.frontend)
    }

    /// One runtime API command; panics when the socket does not answer.
    pub fn cmd(&self, line: &str) -> String {
        command(&self.config.socket, line).unwrap_or_else(|e| panic!("haproxy `{line}`: {e}"))
    }

    /// The backend's row for `server` in `show stat`, None when there is no such server.
    pub fn server(&self, server: &str) -> Option<ServerRow> {
        self.server_in(&self.config.backend, server)
    }

    /// The row for `server` of `backend`, None when there is no such server.
    pub fn server_in(&self, backend: &str, server: &str) -> Option<ServerRow> {
        let csv = self.cmd(&format!("show stat {backend} 4 -1"));
        ServerRow::find(&csv, backend, server)
    }

    /// Waits until `server`'s status satisfies `f` (None: the server is absent); returns it.
    pub fn wait_server(
        &self,
        what: &str,
        server: &str,
        deadline: Duration,
        f: impl Fn(Option<&ServerRow>) -> bool,
    ) -> Option<ServerRow> {
        let mut last = None;
        let found = crate::wait::poll_until(deadline, || {
            let row = self.server(server);
            let ok = f(row.as_ref());
            last = Some(row.clone());
            ok.then_some(row)
        });
        match found {
            Some(row) => row,
            None => panic!(
                "timed out after {deadline:?} waiting for {what}; last row of {server}: {last:?}\nhaproxy log:\n{}",
                self.process.log()
            ),
        }
    }
}

/// One runtime API exchange over the unix socket.
pub fn command(socket: &Path, line: &str) -> Result<String, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The fields of a `show stat` server row the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRow {
    /// `UP`, `DOWN`, `MAINT`, `DRAIN`, `no check`, `UP 1/3`, ...
    pub status: String,
    pub scur: u64,
    pub stot: u64,
    pub weight: u64,
    pub addr: String,
    /// The agent check's description, e.g. `Layer7 wrong status`.
    pub agent_desc: String,
    /// What the agent said last (its text after `#` included, e.g. a down reason).
    pub last_agt: String,
    pub check_desc: String,
}

impl ServerRow {
    pub fn find(csv: &str, backend: &str, server: &str) -> Option<ServerRow> {
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            let get = |name: &str| col(name).and_then(|i| fields.get(i)).copied().unwrap_or("");
            if get("pxname") == backend && get("svname") == server {
                return Some(ServerRow {
                    status: get("status").to_string(),
                    scur: get("scur").parse().unwrap_or(0),
                    stot: get("stot").parse().unwrap_or(0),
                    weight: get("weight").parse().unwrap_or(0),
                    addr: get("addr").to_string(),
                    agent_desc: get("agent_desc").to_string(),
                    last_agt: get("last_agt").to_string(),
                    check_desc: get("check_desc").to_string(),
                });
            }
        }
        None
    }

    /// Taking traffic: `UP`, `UP 1/3` (up, a check transition under way) or `no check`.
    pub fn is_up(&self) -> bool {
        self.status.starts_with("UP") || self.status == "no check"
    }
}

/// A tiny keep-alive HTTP/1.1 server to stand behind HAProxy. Answers every path with
/// `200 <name>`; `/slow?ms=N` answers after N ms. Runs on its own thread until dropped.
pub struct Target {
    pub addr: SocketAddr,
    pub name: String,
    stats: Arc<TargetStats>,
    _server: Background,
}

#[derive(Default)]
struct TargetStats {
    served: AtomicU64,
    in_flight: AtomicU64,
    /// When each request arrived.
    arrivals: Mutex<Vec<Instant>>,
}

impl Target {
    pub fn start(name: &str) -> Target {
        let stats = Arc::new(TargetStats::default());
        let (name_t, stats_t) = (name.to_string(), stats.clone());
        let serve = move |listener: tokio::net::TcpListener| async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (name, stats) = (name_t.clone(), stats_t.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (name, stats) = (name.clone(), stats.clone());
                        async move { Ok::<_, std::convert::Infallible>(answer(req, &name, &stats).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        };
        let (server, addr) = Background::spawn(
            "haproxy-target",
            || std::net::TcpListener::bind("127.0.0.1:0"),
            serve,
        )
        .expect("bind a target port");
        Target {
            addr,
            name: name.to_string(),
            stats,
            _server: server,
        }
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.stats.served.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> u64 {
        self.stats.in_flight.load(Ordering::SeqCst)
    }

    /// Requests that arrived after `t`.
    pub fn arrivals_after(&self, t: Instant) -> usize {
        self.stats
            .arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|a| **a > t)
            .count()
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    name: &str,
    stats: &TargetStats,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    stats.arrivals.lock().unwrap().push(Instant::now());
    stats.in_flight.fetch_add(1, Ordering::SeqCst);
    if req.uri().path() == "/slow" {
        let ms = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    stats.served.fetch_add(1, Ordering::SeqCst);
    hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(format!("{name}\n"))))
}
