//! An emulator of the Consul agent's HTTP API — the part a registering service uses — over real
//! HTTP, with the agent's behaviour where it matters to kiln:
//!
//! - `PUT /v1/agent/service/register[?replace-existing-checks=true]`: JSON as Consul documents it
//!   (`ID`, `Name`, `Address`, `Port`, `Tags`, `Meta`, `Check`/`Checks`); `Name` is required, an
//!   HTTP check needs an `Interval`; a check starts `critical` unless it gives `Status`. The agent
//!   then runs each HTTP check itself every `Interval` (2xx passing, 429 warning, else critical),
//!   as the real agent does against kiln's `/readyz`.
//! - `PUT /v1/agent/service/deregister/<id>`, `PUT /v1/agent/service/maintenance/<id>?enable=&reason=`
//!   (adds or removes the critical `_service_maintenance:<id>` check); unknown IDs are 404.
//! - `GET /v1/agent/services`, `GET /v1/agent/checks`, `GET /v1/agent/health/service/id/<id>`
//!   (200 passing, 429 warning, 503 critical or maintenance).
//! - The catalog as a one-node cluster: `GET /v1/catalog/service/<name>` (one flat entry per
//!   instance: `Node`, `Address`, `ServiceID`, `ServiceAddress`, `ServicePort`, ...) and
//!   `GET /v1/health/service/<name>[?passing]` (`Node`, `Service` and `Checks` per instance, the
//!   node's `serfHealth` check included; `passing` keeps instances whose checks all pass). An
//!   unknown service is an empty list, as in Consul.
//! - Sessions and the KV store, as `consul lock` uses them (`kv.rs`): `PUT /v1/session/create`
//!   (`TTL` from 10s to 24h, `Behavior` release or delete, `LockDelay`), `/renew/<id>` (404 for
//!   an unknown or expired session), `/destroy/<id>`, `GET /v1/session/info/<id>`; `GET` and
//!   `PUT /v1/kv/<key>` with `?acquire=`, `?release=` and `?cas=`, `DELETE`. A session that is
//!   not renewed within its TTL is invalidated: its locks are released (or its keys deleted)
//!   and each of those keys refuses any `acquire` for the session's `LockDelay`.
//!
//! Run in a test with [`ConsulAgent::start`], or standalone: `kiln-testkit consul --listen ADDR`.

mod kv;

use crate::server::Background;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub id: String,
    pub name: String,
    pub service_id: String,
    /// passing, warning or critical.
    pub status: String,
    pub output: String,
    pub notes: String,
    pub http: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Default)]
struct Agent {
    services: BTreeMap<String, Service>,
    checks: BTreeMap<String, Check>,
    /// `METHOD /path?query` of every request, in order.
    requests: Vec<String>,
    /// Bumped on every (re)registration so that old check loops stop.
    generation: u64,
    /// Sessions and the KV store.
    kv: kv::Store,
}

type State = Arc<Mutex<Agent>>;

/// The emulator running on its own thread. Dropping it stops it.
pub struct ConsulAgent {
    pub addr: SocketAddr,
    state: State,
    _server: Background,
}

impl ConsulAgent {
    /// Listens on a free loopback port.
    pub fn start() -> ConsulAgent {
        Self::start_on("127.0.0.1:0".parse().unwrap())
    }

    pub fn start_on(listen: SocketAddr) -> ConsulAgent {
        Self::spawn(listen, None)
    }

    /// Listens on `listen` inside the network namespace at `netns` (`/run/netns/NAME`); its
    /// HTTP checks run from there too. Only the emulator's own thread enters the namespace.
    pub fn start_in(netns: &std::path::Path, listen: SocketAddr) -> ConsulAgent {
        Self::spawn(listen, Some(netns.to_path_buf()))
    }

    fn spawn(listen: SocketAddr, netns: Option<std::path::PathBuf>) -> ConsulAgent {
        let state = State::default();
        let serving = state.clone();
        let bind = move || {
            if let Some(netns) = &netns {
                crate::netns::enter_path(netns)?;
            }
            std::net::TcpListener::bind(listen)
        };
        let (server, addr) =
            Background::spawn("consul-emulator", bind, move |listener| serve(listener, serving))
                .unwrap_or_else(|e| panic!("bind {listen}: {e}"));
        ConsulAgent {
            addr,
            state,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn services(&self) -> BTreeMap<String, Service> {
        self.state.lock().unwrap().services.clone()
    }

    pub fn checks(&self) -> BTreeMap<String, Check> {
        self.state.lock().unwrap().checks.clone()
    }

    /// Whether the service is in maintenance mode.
    pub fn in_maintenance(&self, id: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .checks
            .contains_key(&maintenance_check_id(id))
    }

    /// The service's aggregated health as `/v1/agent/health/service/id/<id>` gives it.
    pub fn aggregated_status(&self, id: &str) -> Option<String> {
        let agent = self.state.lock().unwrap();
        agent.services.contains_key(id).then(|| aggregate(&agent, id))
    }

    /// `METHOD /path?query` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The value of a KV key and the session holding its lock, as the store has them now.
    pub fn kv(&self, key: &str) -> Option<(Vec<u8>, Option<String>)> {
        self.state.lock().unwrap().kv.entry(key)
    }

    /// Keys of the KV store under `prefix`.
    pub fn kv_keys(&self, prefix: &str) -> Vec<String> {
        self.state.lock().unwrap().kv.keys(prefix)
    }
}

fn maintenance_check_id(id: &str) -> String {
    format!("_service_maintenance:{id}")
}

/// Worst status wins; maintenance is its own status.
fn aggregate(agent: &Agent, id: &str) -> String {
    if agent.checks.contains_key(&maintenance_check_id(id)) {
        return "maintenance".into();
    }
    let mut worst = "passing";
    for c in agent.checks.values().filter(|c| c.service_id == id) {
        worst = match (worst, c.status.as_str()) {
            (_, "critical") | ("critical", _) => "critical",
            (_, "warning") | ("warning", _) => "warning",
            _ => "passing",
        };
    }
    worst.into()
}

async fn serve(listener: tokio::net::TcpListener, state: State) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

pub(super) fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

pub(super) fn json_reply(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = reply(status, v.to_string());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

pub(super) fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.replace("%20", " ").replace('+', " "))
    })
}

async fn handle(req: Request<hyper::body::Incoming>, state: State) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    state.lock().unwrap().requests.push(if query.is_empty() {
        format!("{method} {path}")
    } else {
        format!("{method} {path}?{query}")
    });
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("Request decode failed: {e}")),
    };
    if let Some(answer) = kv::handle(&method, &path, &query, &body, &mut state.lock().unwrap().kv) {
        return answer;
    }
    let put_only = |m: &Method| m == Method::PUT;
    if let Some(id) = path.strip_prefix("/v1/agent/service/deregister/") {
        if !put_only(&method) {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        let mut agent = state.lock().unwrap();
        if agent.services.remove(id).is_none() {
            return reply(
                StatusCode::NOT_FOUND,
                format!(
                    "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
                ),
            );
        }
        agent.checks.retain(|_, c| c.service_id != id);
        agent.generation += 1;
        return reply(StatusCode::OK, "");
    }
    if let Some(id) = path.strip_prefix("/v1/agent/service/maintenance/") {
        if !put_only(&method) {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        let Some(enable) = query_param(&query, "enable") else {
            return reply(StatusCode::BAD_REQUEST, "Missing value for enable");
        };
        let enable = match enable.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid value for enable: {other:?}"),
                );
            }
        };
        let mut agent = state.lock().unwrap();
        if !agent.services.contains_key(id) {
            return reply(StatusCode::NOT_FOUND, format!("Unknown service ID {id:?}"));
        }
        let check_id = maintenance_check_id(id);
        if enable {
            let notes = query_param(&query, "reason")
                .unwrap_or_else(|| "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.".into());
            agent.checks.insert(
                check_id.clone(),
                Check {
                    id: check_id,
                    name: "Service Maintenance Mode".into(),
                    service_id: id.into(),
                    status: "critical".into(),
                    output: String::new(),
                    notes,
                    http: None,
                    interval: Duration::ZERO,
                    timeout: Duration::ZERO,
                },
            );
        } else {
            agent.checks.remove(&check_id);
        }
        return reply(StatusCode::OK, "");
    }
    if let Some(id) = path.strip_prefix("/v1/agent/health/service/id/") {
        let agent = state.lock().unwrap();
        let Some(service) = agent.services.get(id) else {
            return reply(StatusCode::NOT_FOUND, format!("ServiceId {id} not found"));
        };
        let status = aggregate(&agent, id);
        let code = match status.as_str() {
            "passing" => StatusCode::OK,
            "warning" => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let checks: Vec<Value> = agent
            .checks
            .values()
            .filter(|c| c.service_id == id)
            .map(check_json)
            .collect();
        return json_reply(
            code,
            &json!({"AggregatedStatus": status, "Service": service_json(service), "Checks": checks}),
        );
    }
    if let Some(name) = path.strip_prefix("/v1/health/service/") {
        if method != Method::GET {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        let passing_only = query
            .split('&')
            .any(|kv| kv == "passing" || kv.starts_with("passing="));
        return json_reply(
            StatusCode::OK,
            &health_of_service(&state.lock().unwrap(), name, passing_only),
        );
    }
    if let Some(name) = path.strip_prefix("/v1/catalog/service/") {
        if method != Method::GET {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        return json_reply(StatusCode::OK, &catalog_of_service(&state.lock().unwrap(), name));
    }
    match (method.clone(), path.as_str()) {
        (Method::PUT, "/v1/agent/service/register") => register(&body, &query, &state),
        (Method::GET, "/v1/agent/services") => {
            let agent = state.lock().unwrap();
            let map: serde_json::Map<String, Value> = agent
                .services
                .iter()
                .map(|(id, s)| (id.clone(), service_json(s)))
                .collect();
            json_reply(StatusCode::OK, &Value::Object(map))
        }
        (Method::GET, "/v1/agent/checks") => {
            let agent = state.lock().unwrap();
            let map: serde_json::Map<String, Value> = agent
                .checks
                .iter()
                .map(|(id, c)| (id.clone(), check_json(c)))
                .collect();
            json_reply(StatusCode::OK, &Value::Object(map))
        }
        (_, "/v1/agent/service/register" | "/v1/agent/services" | "/v1/agent/checks") => {
            reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => reply(StatusCode::NOT_FOUND, ""),
    }
}

/// The emulated cluster is this one agent's node.
const NODE: &str = "emulator";
const NODE_ADDRESS: &str = "127.0.0.1";

fn node_json() -> Value {
    json!({"ID": "00000000-0000-0000-0000-000000000001", "Node": NODE, "Address": NODE_ADDRESS,
           "Datacenter": "dc1", "TaggedAddresses": {"lan": NODE_ADDRESS, "wan": NODE_ADDRESS}, "Meta": {}})
}

/// The node's own check, passing while the agent runs (Serf membership in a real cluster).
fn serf_health_json() -> Value {
    json!({"Node": NODE, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
           "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "", "Type": ""})
}

fn instances<'a>(agent: &'a Agent, name: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
    agent.services.values().filter(move |s| s.name == name)
}

fn health_of_service(agent: &Agent, name: &str, passing_only: bool) -> Value {
    let entries: Vec<Value> = instances(agent, name)
        .filter(|s| !passing_only || aggregate(agent, &s.id) == "passing")
        .map(|s| {
            let mut checks = vec![serf_health_json()];
            checks.extend(agent.checks.values().filter(|c| c.service_id == s.id).map(|c| {
                let mut c = check_json(c);
                c["ServiceName"] = json!(s.name);
                c["ServiceTags"] = json!(s.tags);
                c
            }));
            json!({"Node": node_json(), "Service": service_json(s), "Checks": checks})
        })
        .collect();
    Value::Array(entries)
}

fn catalog_of_service(agent: &Agent, name: &str) -> Value {
    let node = node_json();
    let entries: Vec<Value> = instances(agent, name)
        .map(|s| {
            json!({"ID": node["ID"], "Node": NODE, "Address": NODE_ADDRESS, "Datacenter": "dc1",
                   "TaggedAddresses": node["TaggedAddresses"], "NodeMeta": {},
                   "ServiceKind": "", "ServiceID": s.id, "ServiceName": s.name, "ServiceTags": s.tags,
                   "ServiceAddress": s.address, "ServicePort": s.port, "ServiceMeta": s.meta})
        })
        .collect();
    Value::Array(entries)
}

fn service_json(s: &Service) -> Value {
    json!({"ID": s.id, "Service": s.name, "Address": s.address, "Port": s.port, "Tags": s.tags, "Meta": s.meta})
}

fn check_json(c: &Check) -> Value {
    json!({"Node": "emulator", "CheckID": c.id, "Name": c.name, "Status": c.status, "Notes": c.notes,
           "Output": c.output, "ServiceID": c.service_id, "Type": if c.http.is_some() { "http" } else { "" }})
}

/// Go-style durations as Consul takes them: `10s`, `500ms`, `1m30s`.
pub(super) fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(n * unit);
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn register(body: &[u8], query: &str, state: &State) -> Response<Full<Bytes>> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("Request decode failed: {e}")),
    };
    let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let name = text("Name");
    if name.is_empty() {
        return reply(StatusCode::BAD_REQUEST, "Missing service name");
    }
    let id = Some(text("ID"))
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| name.clone());
    let port = match v.get("Port") {
        None | Some(Value::Null) => 0,
        Some(p) => match p.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(p) => p,
            None => return reply(StatusCode::BAD_REQUEST, "Request decode failed: Port: invalid"),
        },
    };
    let service = Service {
        id: id.clone(),
        name,
        address: text("Address"),
        port,
        tags: v
            .get("Tags")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        meta: v
            .get("Meta")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut check_defs: Vec<Value> = Vec::new();
    if let Some(c) = v.get("Check").filter(|c| !c.is_null()) {
        check_defs.push(c.clone());
    }
    if let Some(cs) = v.get("Checks").and_then(Value::as_array) {
        check_defs.extend(cs.iter().cloned());
    }
    let mut checks = Vec::new();
    for (n, c) in check_defs.iter().enumerate() {
        let ctext = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let http = Some(ctext("HTTP")).filter(|h| !h.is_empty());
        let interval = parse_go_duration(&ctext("Interval"));
        if http.is_some() && interval.is_none_or(|i| i.is_zero()) {
            return reply(
                StatusCode::BAD_REQUEST,
                "Check is not valid: Interval must be > 0 for Script, HTTP, H2PING, or TCP checks",
            );
        }
        let check_id = Some(ctext("CheckID"))
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| {
                if check_defs.len() == 1 {
                    format!("service:{id}")
                } else {
                    format!("service:{id}:{}", n + 1)
                }
            });
        let status = Some(ctext("Status"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "critical".into());
        if !matches!(status.as_str(), "passing" | "warning" | "critical") {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("Invalid check status: {status:?}"),
            );
        }
        checks.push(Check {
            id: check_id,
            name: Some(ctext("Name"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("Service '{}' check", service.name)),
            service_id: id.clone(),
            status,
            output: String::new(),
            notes: ctext("Notes"),
            http,
            interval: interval.unwrap_or_default(),
            timeout: parse_go_duration(&ctext("Timeout")).unwrap_or(Duration::from_secs(10)),
        });
    }
    let replace = query_param(query, "replace-existing-checks").is_some_and(|v| v == "true" || v.is_empty());
    let generation = {
        let mut agent = state.lock().unwrap();
        if replace {
            agent
                .checks
                .retain(|cid, c| c.service_id != id || *cid == maintenance_check_id(&id));
        }
        for c in &checks {
            agent.checks.insert(c.id.clone(), c.clone());
        }
        agent.services.insert(id.clone(), service);
        agent.generation += 1;
        agent.generation
    };
    for c in checks.into_iter().filter(|c| c.http.is_some()) {
        tokio::spawn(run_http_check(state.clone(), c, generation));
    }
    reply(StatusCode::OK, "")
}

/// Polls the check's URL every interval until the service is registered again or removed.
async fn run_http_check(state: State, check: Check, generation: u64) {
    let url = check.http.clone().unwrap_or_default();
    loop {
        tokio::time::sleep(check.interval).await;
        let (status, output) = match tokio::time::timeout(check.timeout, http_get(&url)).await {
            Ok(Ok((code, body))) => {
                let status = match code {
                    200..=299 => "passing",
                    429 => "warning",
                    _ => "critical",
                };
                (status, format!("HTTP GET {url}: {code} Output: {}", body.trim()))
            }
            Ok(Err(e)) => ("critical", format!("Get {url:?}: {e}")),
            Err(_) => (
                "critical",
                format!("Get {url:?}: timeout after {:?}", check.timeout),
            ),
        };
        let mut agent = state.lock().unwrap();
        if agent.generation != generation {
            return;
        }
        match agent.checks.get_mut(&check.id) {
            Some(c) => {
                c.status = status.into();
                c.output = output;
            }
            None => return,
        }
    }
}

/// A minimal `GET` over plain HTTP/1.1 (the check targets are kiln's own `/readyz`).
async fn http_get(url: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// checks are emulated")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = tokio::net::TcpStream::connect(hostport)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: Consul Health Check\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                text.chars().take(40).collect::<String>()
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

const USAGE: &str = "usage: kiln-testkit consul --listen ADDR
  Serves an emulator of the Consul agent API (register, deregister, maintenance, services, checks,
  health) on ADDR, running registered HTTP checks like the real agent.";

/// Entry point of `kiln-testkit consul ...`.
pub fn main(args: &[String]) -> std::process::ExitCode {
    let listen = match args {
        [flag, addr] if flag == "--listen" => match addr.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("kiln-testkit consul: --listen {addr:?}: {e}\n{USAGE}");
                return std::process::ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let agent = ConsulAgent::start_on(listen);
    eprintln!("consul agent emulator listening on {}", agent.addr);
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("10"), None);
    }
}
