//! HAProxy through its runtime API (the `stats socket ... level admin`), unix or TCP.
//!
//! Joining: `add server` (servers start in maintenance) → `set server state ready` → `enable
//! health` / `enable agent` for the checks the options name (HAProxy adds them switched off).
//! Leaving: `state drain` → wait for the server's current sessions (`scur` and queue `qcur` in
//! `show stat`) to reach 0 → `state maint` → `del server`, which HAProxy 2.6 refuses while any
//! connection, even an idle one kept for reuse, is attached: so it is retried for a while.
//!
//! The protocol is one line in, the answer, then HAProxy closes the connection (non-interactive
//! mode). Answers are free text: each command lists the answers that mean success, and anything
//! else is shown as HAProxy's own words.

use super::{DrainProgress, LbError, Registrar, fill};
use crate::config::lb::{HaproxyPlan, LbName, RuntimeSocket, split_host_port};
use crate::metadata::InstanceFacts;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest wait for one runtime API answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the drain looks at the session count.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// How long `del server` is retried after the drain, for idle connections to be released.
const REMOVE_PATIENCE: Duration = Duration::from_secs(10);
/// HAProxy's answers are short; a longer one is not HAProxy.
const MAX_ANSWER: usize = 1 << 20;

/// A client of the runtime API: one connection per command.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    addr: RuntimeSocket,
}

impl RuntimeApi {
    pub fn new(addr: RuntimeSocket) -> RuntimeApi {
        RuntimeApi { addr }
    }

    /// Where it listens: a path or `tcp:HOST:PORT`.
    pub fn socket(&self) -> &RuntimeSocket {
        &self.addr
    }

    /// Sends one command and returns HAProxy's whole answer.
    pub async fn command(&self, command: &str) -> Result<String, LbError> {
        let verb = command.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let fail = |what: String| LbError(format!("haproxy runtime API at {}: {verb}: {what}", self.addr));
        let line = format!("{command}\n");
        let exchange = async {
            match &self.addr {
                RuntimeSocket::Unix(path) => {
                    exchange(
                        tokio::net::UnixStream::connect(path)
                            .await
                            .map_err(connect_error)?,
                        &line,
                    )
                    .await
                }
                RuntimeSocket::Tcp(hostport) => {
                    let stream = tokio::net::TcpStream::connect(hostport.as_str())
                        .await
                        .map_err(connect_error)?;
                    exchange(stream, &line).await
                }
            }
        };
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {COMMAND_TIMEOUT:?}")))?
            .map_err(fail)?;
        let answer = String::from_utf8_lossy(&answer).trim().to_string();
        if answer == "Permission denied" || answer.starts_with("Unknown command") {
            return Err(fail(format!(
                "{:?} (the socket needs `level admin` in haproxy's `stats socket` line)",
                crate::terminal::peer_word(&answer)
            )));
        }
        Ok(answer)
    }

    /// Runs `command` and accepts only an answer starting with one of `ok` ("" for silence):
    /// any other answer is an error quoting HAProxy.
    async fn command_accepting(&self, command: &str, ok: &[&str]) -> Result<String, LbError> {
        let answer = self.command(command).await?;
        if ok.iter().any(|o| {
            if o.is_empty() {
                answer.is_empty()
            } else {
                answer.starts_with(o)
            }
        }) {
            Ok(answer)
        } else {
            Err(LbError(format!(
                "haproxy runtime API at {}: `{command}`: {}",
                self.addr,
                one_line(&answer)
            )))
        }
    }

    /// The `show stat` row of one server, None when the backend has no such server.
    pub async fn server_stat(&self, backend: &str, server: &str) -> Result<Option<ServerStat>, LbError> {
        let answer = self.command(&format!("show stat {backend} 4 -1")).await?;
        if !answer.starts_with('#') {
            return Err(LbError(format!(
                "haproxy runtime API at {}: show stat {backend}: {}",
                self.addr,
                one_line(&answer)
            )));
        }
        Ok(ServerStat::find(&answer, backend, server))
    }

    /// Every server of `backend` as `show stat` lists it (read-only: `kiln fleet`).
    pub async fn servers(&self, backend: &str) -> Result<Vec<ServerStat>, LbError> {
        let answer = self.command(&format!("show stat {backend} 4 -1")).await?;
        if !answer.starts_with('#') {
            return Err(LbError(format!(
                "haproxy runtime API at {}: show stat {backend}: {}",
                self.addr,
                one_line(&answer)
            )));
        }
        Ok(ServerStat::all(&answer, backend))
    }
}

/// One command line out, the whole answer back (HAProxy closes the connection after it).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, line: &str) -> Result<Vec<u8>, String> {
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

fn connect_error(e: std::io::Error) -> String {
    format!("cannot connect: {e} (is haproxy running with a `stats socket ... level admin` there?)")
}

/// HAProxy's answer in an error: its lines joined, as a peer's text is kept
/// ([`crate::terminal::peer_text`]: bounded, control characters escaped).
fn one_line(s: &str) -> String {
    if s.is_empty() {
        "(no answer)".into()
    } else {
        let joined = s
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        crate::terminal::peer_text(&joined)
    }
}

/// The fields of a `show stat` server row that kiln reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStat {
    /// The server's name in its backend.
    pub name: String,
    /// UP, DOWN, MAINT, DRAIN, NOLB, `no check`, ... (with `UP 1/3`-style transitions).
    pub status: String,
    /// Current sessions.
    pub scur: u64,
    /// Requests queued for this server.
    pub qcur: u64,
    /// Total sessions so far.
    pub stot: u64,
    pub addr: String,
    pub weight: u64,
}

impl ServerStat {
    /// Finds `backend/server` in `show stat` CSV (the header line names the columns).
    pub fn find(csv: &str, backend: &str, server: &str) -> Option<ServerStat> {
        Self::all(csv, backend).into_iter().find(|s| s.name == server)
    }

    /// Every server row of `backend` in `show stat` CSV, in HAProxy's order.
    pub fn all(csv: &str, backend: &str) -> Vec<ServerStat> {
        let mut lines = csv.lines();
        let Some(header) = lines.next() else {
            return Vec::new();
        };
        let header: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv)) = (col("pxname"), col("svname")) else {
            return Vec::new();
        };
        lines
            .map(|line| line.split(',').collect::<Vec<&str>>())
            .filter(|fields| {
                fields.get(px) == Some(&backend)
                    && !matches!(fields.get(sv), None | Some(&"BACKEND") | Some(&"FRONTEND"))
            })
            .map(|fields| {
                let get = |name: &str| col(name).and_then(|i| fields.get(i)).copied().unwrap_or("");
                let num = |name: &str| get(name).parse().unwrap_or(0);
                ServerStat {
                    name: get("svname").to_string(),
                    status: get("status").to_string(),
                    scur: num("scur"),
                    qcur: num("qcur"),
                    stot: num("stot"),
                    addr: get("addr").to_string(),
                    weight: num("weight"),
                }
            })
            .collect()
    }
}

/// Joins one HAProxy backend as one server.
pub struct HaproxyRegistrar {
    api: RuntimeApi,
    backend: LbName,
    server: LbName,
    host: String,
    port: u16,
    options: String,
}

impl HaproxyRegistrar {
    /// The server `plan` describes, its name and address filled from the instance's facts.
    pub fn new(plan: &HaproxyPlan, facts: &InstanceFacts) -> Result<HaproxyRegistrar, LbError> {
        let server = fill("server", &plan.server, facts)?;
        let server = LbName::parse(&server)
            .map_err(|e| LbError(format!("[lb] server = {server:?} (rendered): {e}")))?;
        let address = fill("address", plan.address.template(), facts)?;
        let (host, port) = split_host_port(&address)
            .map_err(|e| LbError(format!("[lb] address = {address:?} (rendered): {e}")))?;
        Ok(HaproxyRegistrar {
            api: RuntimeApi::new(plan.socket.clone()),
            backend: plan.backend.clone(),
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port,
            server,
            options: plan.options.clone(),
        })
    }

    fn target(&self) -> String {
        format!("{}/{}", self.backend, self.server)
    }

    fn has_option(&self, word: &str) -> bool {
        self.options.split_whitespace().any(|w| w == word)
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Points a server left by a previous run at this run's address.
    async fn take_over(&self) -> Result<(), LbError> {
        tracing::info!(
            "haproxy: {} exists (left by an earlier run): taking it over",
            self.target()
        );
        self.api
            .command_accepting(
                &format!(
                    "set server {} addr {} port {}",
                    self.target(),
                    self.host,
                    self.port
                ),
                &["IP changed", "no need to change the addr", "Port changed"],
            )
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Registrar for HaproxyRegistrar {
    fn kind(&self) -> &'static str {
        "haproxy"
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.target(), self.address())
    }

    async fn register(&self) -> Result<(), LbError> {
        let add = format!("add server {} {} {}", self.target(), self.address(), self.options);
        let answer = self
            .api
            .command_accepting(
                add.trim_end(),
                &["New server registered", "Already exists a server"],
            )
            .await?;
        if answer.starts_with("Already exists") {
            self.take_over().await?;
        }
        self.api
            .command_accepting(&format!("set server {} state ready", self.target()), &[""])
            .await?;
        if self.has_option("check") {
            self.api
                .command_accepting(&format!("enable health {}", self.target()), &[""])
                .await?;
        }
        if self.has_option("agent-check") {
            self.api
                .command_accepting(&format!("enable agent {}", self.target()), &[""])
                .await?;
        }
        Ok(())
    }

    async fn deregister(&self) -> Result<(), LbError> {
        self.api
            .command_accepting(
                &format!("set server {} state drain", self.target()),
                &["", "No such server"],
            )
            .await
            .map(|_| ())
    }

    async fn wait_drained(
        &self,
        deadline: Instant,
        progress: &(dyn Fn(DrainProgress) + Send + Sync),
    ) -> Result<(), LbError> {
        let in_flight = || async {
            Ok(self
                .api
                .server_stat(self.backend.as_str(), self.server.as_str())
                .await?
                .and_then(|stat| {
                    let line = match (stat.scur, stat.qcur) {
                        (0, 0) => return None,
                        (scur, 0) => format!("{scur} sessions"),
                        (scur, qcur) => format!("{scur} sessions, {qcur} queued"),
                    };
                    let sessions = Some(stat.scur.saturating_add(stat.qcur));
                    Some(DrainProgress { line, sessions })
                }))
        };
        match super::poll_until_drained(deadline, DRAIN_POLL, progress, in_flight).await? {
            None => Ok(()),
            Some(line) => Err(LbError(format!(
                "haproxy {}: drain timed out with {line}",
                self.target()
            ))),
        }
    }

    fn counts_sessions(&self) -> bool {
        true
    }

    async fn remove(&self) -> Result<(), LbError> {
        let target = self.target();
        let maint = self
            .api
            .command_accepting(
                &format!("set server {target} state maint"),
                &["", "No such server"],
            )
            .await?;
        if maint.starts_with("No such server") {
            return Ok(());
        }
        // Sessions still there after the drain deadline would keep the server forever.
        self.api
            .command_accepting(&format!("shutdown sessions server {target}"), &[""])
            .await?;
        let give_up = Instant::now() + REMOVE_PATIENCE;
        loop {
            let answer = self
                .api
                .command_accepting(
                    &format!("del server {target}"),
                    &["Server deleted", "No such server", "Server still has connections"],
                )
                .await?;
            if !answer.starts_with("Server still has connections") {
                return Ok(());
            }
            if Instant::now() >= give_up {
                return Err(LbError(format!(
                    "haproxy {target}: left in maintenance, not deleted: {} after {REMOVE_PATIENCE:?}",
                    crate::terminal::peer_word(&answer)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_row_is_found_by_the_header_names() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,weight,addr,\n\
                   app,a,0,0,2,3,,7,UP,100,10.0.0.5:8080,\n\
                   app,b,1,0,0,0,,0,DRAIN,0,10.0.0.6:8080,\n";
        let a = ServerStat::find(csv, "app", "a").unwrap();
        assert_eq!((a.scur, a.qcur, a.stot, a.status.as_str()), (2, 0, 7, "UP"));
        let b = ServerStat::find(csv, "app", "b").unwrap();
        assert_eq!((b.qcur, b.weight, b.addr.as_str()), (1, 0, "10.0.0.6:8080"));
        assert_eq!(ServerStat::find(csv, "app", "c"), None);
        let names: Vec<String> = ServerStat::all(csv, "app").into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(ServerStat::all(csv, "other").is_empty());
    }
}
