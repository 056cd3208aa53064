//! An emulator of Azure's WireServer (168.63.129.16), the part an instance without a
//! provisioning agent talks to, over real HTTP, checking requests as the Azure agents
//! (WALinuxAgent, cloud-init, afterburn) send them:
//!
//! - every request needs `x-ms-version` with a version the WireServer supports (else 400);
//! - `GET /?comp=versions`: the supported versions (XML);
//! - `GET /machine/?comp=goalstate` (also `/machine?comp=goalstate`): the goal state XML
//!   (`Incarnation`, `Container/ContainerId`, `Container/RoleInstanceList/RoleInstance/InstanceId`);
//! - `POST /machine/?comp=health` (also `/machine?comp=health`), `Content-Type: text/xml` (else
//!   415): a `Health` document (`GoalStateIncarnation`, `Container/ContainerId`,
//!   `Container/RoleInstanceList/Role/InstanceId`, `Role/Health/State` `Ready` or `NotReady`,
//!   a `NotReady` with `Details/SubStatus` and `Details/Description`). Malformed or naming
//!   another container or instance: 400. An incarnation other than the current one: 410 Gone (the
//!   goal state moved on; the agents fetch it again). Taken: 200, and recorded ([`Reported`]).
//!
//! Knobs: the first N requests answered a status (503, 403 throttling, 400...), the goal state's
//! incarnation bumped right after the first goal state is served (the next report gets 410).

use crate::server::Background;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The versions a WireServer advertises; kiln and the agents speak 2012-11-30.
const VERSIONS: &[&str] = &[
    "2015-04-05",
    "2012-11-30",
    "2012-09-15",
    "2012-05-15",
    "2011-12-31",
];

/// Request bodies over this are refused (413).
const BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Options {
    pub container_id: String,
    pub instance_id: String,
    pub incarnation: u64,
    /// The first this many requests are answered `fail_status` (u32::MAX: every one).
    pub fail_first: u32,
    pub fail_status: u16,
    /// Bump the incarnation right after the first goal state is served.
    pub bump_incarnation_once: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            container_id: "c6d5526c-5ac2-4200-b6e2-56f2b70c5ab2".into(),
            instance_id: "7d2fd5e4-f13d-4a1c-9a5a-8f6b5c7e0c3a.web-1".into(),
            incarnation: 1,
            fail_first: 0,
            fail_status: 503,
            bump_incarnation_once: false,
        }
    }
}

/// A health report the WireServer took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub incarnation: u64,
    /// `Ready` or `NotReady`.
    pub state: String,
    pub substatus: Option<String>,
    pub description: Option<String>,
}

/// One request and its answer's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub status: u16,
}

struct Wire {
    options: Options,
    incarnation: u64,
    goal_states_served: u32,
    requests: u32,
    reports: Vec<Reported>,
    log: Vec<Logged>,
}

type State = Arc<Mutex<Wire>>;

/// The emulator on a thread of its own; dropping it stops it.
pub struct WireServer {
    pub addr: SocketAddr,
    state: State,
    _server: Background,
}

impl WireServer {
    pub fn start(options: Options) -> WireServer {
        let incarnation = options.incarnation;
        let state = Arc::new(Mutex::new(Wire {
            options,
            incarnation,
            goal_states_served: 0,
            requests: 0,
            reports: Vec::new(),
            log: Vec::new(),
        }));
        let serving = state.clone();
        let bind = || std::net::TcpListener::bind("127.0.0.1:0");
        let (server, addr) = Background::spawn("wireserver-emulator", bind, move |l| serve(l, serving))
            .expect("bind 127.0.0.1:0");
        WireServer {
            addr,
            state,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT`, for `[metadata] wireserver`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The health reports taken, in order.
    pub fn reports(&self) -> Vec<Reported> {
        self.state.lock().unwrap().reports.clone()
    }

    /// Every request so far, in order.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn incarnation(&self) -> u64 {
        self.state.lock().unwrap().incarnation
    }
}

async fn serve(listener: tokio::net::TcpListener, state: State) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
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

fn xml(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "text/xml; charset=utf-8".parse().unwrap());
    r
}

fn error(status: u16, message: &str) -> Response<Full<Bytes>> {
    xml(
        status,
        format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Message>{message}</Message></Error>"),
    )
}

async fn handle(req: Request<hyper::body::Incoming>, state: State) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut wire = state.lock().unwrap();
    let answer = match body.len() > BODY_LIMIT {
        true => error(413, "The request body is too large."),
        false => answer(&mut wire, &method, &path, &query, &headers, &body),
    };
    let status = answer.status().as_u16();
    wire.log.push(Logged {
        method: method.to_string(),
        path: match query.is_empty() {
            true => path,
            false => format!("{path}?{query}"),
        },
        status,
    });
    answer
}

fn answer(
    wire: &mut Wire,
    method: &Method,
    path: &str,
    query: &str,
    headers: &hyper::HeaderMap,
    body: &Bytes,
) -> Response<Full<Bytes>> {
    wire.requests += 1;
    if wire.requests <= wire.options.fail_first {
        return error(wire.options.fail_status, "injected failure");
    }
    let version = headers.get("x-ms-version").and_then(|v| v.to_str().ok());
    match version {
        None => return error(400, "The x-ms-version header is required."),
        Some(v) if !VERSIONS.contains(&v) => return error(400, "The x-ms-version is not supported."),
        Some(_) => {}
    }
    let machine = path == "/machine/" || path == "/machine";
    match (method, path, query) {
        (&Method::GET, "/", "comp=versions") => versions(),
        (&Method::GET, _, "comp=goalstate") if machine => goal_state(wire),
        (&Method::POST, _, "comp=health") if machine => {
            let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
            if !content_type.is_some_and(|t| t.starts_with("text/xml")) {
                return error(415, "Content-Type must be text/xml.");
            }
            health(wire, body)
        }
        (&Method::GET | &Method::POST, _, _) => error(404, "Not found."),
        _ => error(405, "Method not allowed."),
    }
}

fn versions() -> Response<Full<Bytes>> {
    let supported: String = VERSIONS
        .iter()
        .map(|v| format!("<Version>{v}</Version>"))
        .collect();
    xml(
        200,
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Versions><Preferred><Version>2012-11-30</Version></Preferred><Supported>{supported}</Supported></Versions>"
        ),
    )
}

fn goal_state(wire: &mut Wire) -> Response<Full<Bytes>> {
    let o = &wire.options;
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="goalstate10.xsd">
  <Version>2012-11-30</Version>
  <Incarnation>{incarnation}</Incarnation>
  <Machine>
    <ExpectedState>Started</ExpectedState>
    <StopRolesDeadlineHint>300000</StopRolesDeadlineHint>
    <LBProbePorts><Port>16001</Port></LBProbePorts>
    <ExpectHealthReport>FALSE</ExpectHealthReport>
  </Machine>
  <Container>
    <ContainerId>{container}</ContainerId>
    <RoleInstanceList>
      <RoleInstance>
        <InstanceId>{instance}</InstanceId>
        <State>Started</State>
        <Configuration>
          <HostingEnvironmentConfig>http://168.63.129.16:80/machine/{container}/{instance}?comp=config&amp;type=hostingEnvironmentConfig&amp;incarnation={incarnation}</HostingEnvironmentConfig>
          <SharedConfig>http://168.63.129.16:80/machine/{container}/{instance}?comp=config&amp;type=sharedConfig&amp;incarnation={incarnation}</SharedConfig>
          <ConfigName>{instance}.{incarnation}.xml</ConfigName>
        </Configuration>
      </RoleInstance>
    </RoleInstanceList>
  </Container>
</GoalState>"#,
        incarnation = wire.incarnation,
        container = o.container_id,
        instance = o.instance_id,
    );
    wire.goal_states_served += 1;
    if wire.options.bump_incarnation_once && wire.goal_states_served == 1 {
        wire.incarnation += 1;
    }
    xml(200, body)
}

#[derive(Deserialize)]
struct HealthXml {
    #[serde(rename = "GoalStateIncarnation")]
    incarnation: String,
    #[serde(rename = "Container")]
    container: ContainerXml,
}

#[derive(Deserialize)]
struct ContainerXml {
    #[serde(rename = "ContainerId")]
    container_id: String,
    #[serde(rename = "RoleInstanceList")]
    roles: RolesXml,
}

#[derive(Deserialize)]
struct RolesXml {
    #[serde(rename = "Role")]
    role: Vec<RoleXml>,
}

#[derive(Deserialize)]
struct RoleXml {
    #[serde(rename = "InstanceId")]
    instance_id: String,
    #[serde(rename = "Health")]
    health: RoleHealthXml,
}

#[derive(Deserialize)]
struct RoleHealthXml {
    #[serde(rename = "State")]
    state: String,
    #[serde(rename = "Details")]
    details: Option<DetailsXml>,
}

#[derive(Deserialize)]
struct DetailsXml {
    #[serde(rename = "SubStatus")]
    substatus: String,
    #[serde(rename = "Description")]
    description: String,
}

fn health(wire: &mut Wire, body: &Bytes) -> Response<Full<Bytes>> {
    let Ok(text) = std::str::from_utf8(body) else {
        return error(400, "The health report is not UTF-8.");
    };
    if !text.starts_with("<?xml") || !text.contains("<Health") {
        return error(400, "The body is not a Health document.");
    }
    let report: HealthXml = match quick_xml::de::from_str(text) {
        Ok(r) => r,
        Err(e) => return error(400, &format!("Malformed Health document: {e}")),
    };
    let Ok(incarnation) = report.incarnation.trim().parse::<u64>() else {
        return error(400, "GoalStateIncarnation is not a number.");
    };
    if report.container.container_id != wire.options.container_id {
        return error(400, "Unknown ContainerId.");
    }
    let [role] = report.container.roles.role.as_slice() else {
        return error(400, "One Role is expected in RoleInstanceList.");
    };
    if role.instance_id != wire.options.instance_id {
        return error(400, "Unknown InstanceId.");
    }
    if incarnation != wire.incarnation {
        return error(410, "The goal state incarnation has changed.");
    }
    let details = role.health.details.as_ref();
    match (role.health.state.as_str(), details) {
        ("Ready", _) => {}
        ("NotReady", Some(d)) if !d.substatus.is_empty() && !d.description.is_empty() => {}
        ("NotReady", _) => return error(400, "NotReady needs Details with SubStatus and Description."),
        _ => return error(400, "State must be Ready or NotReady."),
    }
    wire.reports.push(Reported {
        incarnation,
        state: role.health.state.clone(),
        substatus: details.map(|d| d.substatus.clone()),
        description: details.map(|d| d.description.clone()),
    });
    let mut answer = Response::new(Full::new(Bytes::new()));
    answer.headers_mut().insert(
        "x-ms-latest-goal-state-incarnation-number",
        wire.incarnation.into(),
    );
    answer
}
