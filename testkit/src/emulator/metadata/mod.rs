//! Cloud metadata services, emulated over real HTTP: EC2 IMDS (v2 tokens, TTL, expiry, v2-only,
//! v1-allowed, disabled), GCE (`Metadata-Flavor`), Azure IMDS (`Metadata: true`, api-version),
//! OpenStack, DigitalOcean, Oracle (OCI IMDS v2), Hetzner, Scaleway (privileged user-data),
//! Vultr, Akamai (Linode), Alibaba (hardened mode), Exoscale and UpCloud. One file per cloud holds its paths, headers and status codes.
//!
//! Knobs for the unhappy paths: latency before every answer, the first N answers 5xx, the first
//! N connections dropped without an answer, the first token's TTL, a GCE server that never holds
//! a hanging GET, and answers written like Python's `http.server` writes them (head and body in
//! two segments, Nagle on: see [`split`]).
//!
//! In a test: `MetadataEmulator::start(Options::new(Cloud::Ec2))` listens on 127.0.0.1:0 on a
//! thread of its own, `url()` gives its address, and it stops when dropped. As a program:
//! `kiln-testkit metadata --provider ec2 --listen 169.254.169.254:80 --user-data FILE --tag env.X=Y`
//! (see [`main`]).

mod akamai;
mod alibaba;
mod azure;
mod digitalocean;
mod ec2;
mod exoscale;
mod gce;
mod hetzner;
mod notices;
mod openstack;
mod oracle;
mod scaleway;
mod session;
mod split;
mod upcloud;
mod vultr;

pub use notices::{Notices, ec2_date, http_date, rfc3339};

use crate::server::Background;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Ec2,
    Gce,
    Azure,
    OpenStack,
    DigitalOcean,
    Oracle,
    Hetzner,
    Scaleway,
    Vultr,
    Akamai,
    Alibaba,
    Exoscale,
    UpCloud,
}

/// Every cloud the emulator knows, in the order of the docs' table.
pub const CLOUDS: [Cloud; 13] = [
    Cloud::Ec2,
    Cloud::Gce,
    Cloud::Azure,
    Cloud::OpenStack,
    Cloud::DigitalOcean,
    Cloud::Oracle,
    Cloud::Hetzner,
    Cloud::Scaleway,
    Cloud::Vultr,
    Cloud::Akamai,
    Cloud::Alibaba,
    Cloud::Exoscale,
    Cloud::UpCloud,
];

impl Cloud {
    pub fn parse(name: &str) -> Option<Cloud> {
        Some(match name {
            "ec2" => Cloud::Ec2,
            "gce" => Cloud::Gce,
            "azure" => Cloud::Azure,
            "openstack" => Cloud::OpenStack,
            "digitalocean" => Cloud::DigitalOcean,
            _ => return CLOUDS.into_iter().find(|c| c.name() == name),
        })
    }

    /// The name kiln's `[metadata] provider` uses.
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Ec2 => "ec2",
            Cloud::Gce => "gce",
            Cloud::Azure => "azure",
            Cloud::OpenStack => "openstack",
            Cloud::DigitalOcean => "digitalocean",
            Cloud::Oracle => "oracle",
            Cloud::Hetzner => "hetzner",
            Cloud::Scaleway => "scaleway",
            Cloud::Vultr => "vultr",
            Cloud::Akamai => "akamai",
            Cloud::Alibaba => "alibaba",
            Cloud::Exoscale => "exoscale",
            Cloud::UpCloud => "upcloud",
        }
    }
}

/// What the instance is; every cloud shows it in its own shape.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub region: String,
    pub zone: String,
    pub local_ipv4: String,
    pub hostname: String,
    pub user_data: Option<Vec<u8>>,
    /// EC2 instance tags, GCE instance attributes, Azure tags, OpenStack `meta`.
    pub tags: BTreeMap<String, String>,
    /// GCE project attributes (instance attributes override them).
    pub project_attributes: BTreeMap<String, String>,
}

impl Instance {
    /// Plausible facts in the shape of `cloud` (an EC2 instance id looks like `i-0...`).
    pub fn example(cloud: Cloud) -> Instance {
        let (id, region, zone, hostname) = match cloud {
            Cloud::Ec2 => (
                "i-0123456789abcdef0",
                "eu-west-1",
                "eu-west-1b",
                "ip-10-0-0-5.eu-west-1.compute.internal",
            ),
            Cloud::Gce => (
                "4520031799277581759",
                "europe-west1",
                "europe-west1-b",
                "web-1.c.kiln-test.internal",
            ),
            Cloud::Azure => ("02aab8a4-74ef-476e-8182-f6d2ba4166a6", "westeurope", "1", "web-1"),
            Cloud::OpenStack => (
                "d8e02d56-2648-49a3-bf97-6be8f1204f38",
                "",
                "nova",
                "web-1.novalocal",
            ),
            Cloud::DigitalOcean => ("2756294", "ams3", "", "web-1"),
            Cloud::Oracle => (
                "ocid1.instance.oc1.eu-frankfurt-1.antheljtkiln",
                "eu-frankfurt-1",
                "Uocm:EU-FRANKFURT-1-AD-1",
                "web-1",
            ),
            Cloud::Hetzner => ("42", "eu-central", "hel1-dc2", "web-1"),
            Cloud::Scaleway => (
                "0e6a4c3b-7d21-4f5e-9a8b-3c2d1e0f9a8b",
                "fr-par",
                "fr-par-1",
                "web-1",
            ),
            Cloud::Vultr => ("bd7b2a5b-0f1e-4c7a-9e33-5a1c3f0d2e11", "ams", "", "web-1"),
            Cloud::Akamai => ("61234567", "us-ord", "", "web-1"),
            Cloud::Alibaba => (
                "i-bp1kiln0example0001",
                "cn-hangzhou",
                "cn-hangzhou-i",
                "iZbp1kiln0example0001Z",
            ),
            Cloud::Exoscale => (
                "8f2c1d3e-4b5a-4c6d-9e8f-0a1b2c3d4e5f",
                "ch-gva-2",
                "ch-gva-2",
                "web-1",
            ),
            Cloud::UpCloud => ("00b3e5d2-8c1a-4f6e-9d7b-2a4c6e8f0a1b", "fi-hel2", "", "web-1"),
        };
        Instance {
            id: id.into(),
            region: region.into(),
            zone: zone.into(),
            local_ipv4: "10.0.0.5".into(),
            hostname: hostname.into(),
            user_data: None,
            tags: BTreeMap::new(),
            project_attributes: BTreeMap::new(),
        }
    }
}

/// EC2's instance metadata options (`HttpTokens`, `HttpEndpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imds {
    /// `HttpTokens=required`: a GET without a valid token is 401.
    V2Only,
    /// `HttpTokens=optional`: token-less GETs work; a GET with a bad token is still 401.
    V1Allowed,
    /// No token API at all (an IMDSv1-only implementation, e.g. OpenStack's EC2-compatible
    /// API): the token PUT is 404.
    V1Only,
    /// `HttpEndpoint=disabled`: everything is 403.
    Disabled,
}

/// EC2: the instance role whose keys IMDS serves at `meta-data/iam/security-credentials/NAME`.
#[derive(Debug, Clone)]
pub struct RoleKeys {
    pub name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
    /// RFC 3339, e.g. `2030-01-01T00:00:00Z`.
    pub expiration: String,
}

/// The OAuth2 access tokens a metadata emulator issued (GCE service account, Azure managed
/// identity), with their audience: a secret store emulator given this handle accepts exactly
/// these bearer tokens. Clones share the set.
#[derive(Debug, Clone, Default)]
pub struct AccessTokens(Arc<Mutex<HashMap<String, String>>>);

impl AccessTokens {
    /// A new token for `audience`.
    pub fn issue(&self, audience: &str) -> String {
        let token = random_token();
        self.0.lock().unwrap().insert(token.clone(), audience.to_string());
        token
    }

    /// The audience `token` was issued for; None when it was never issued.
    pub fn audience(&self, token: &str) -> Option<String> {
        self.0.lock().unwrap().get(token).cloned()
    }

    pub fn issued(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub cloud: Cloud,
    pub instance: Instance,
    /// Slept before every answer.
    pub latency: Duration,
    /// The first this many requests are answered `fail_status`.
    pub fail_first: u32,
    pub fail_status: u16,
    /// The first this many requests get their connection closed without an answer (after any
    /// `fail_first`).
    pub drop_first: u32,
    pub imds: Imds,
    /// EC2: the first token issued lives this long, whatever TTL was asked (tokens expiring
    /// in the middle of a fetch). Later tokens live the TTL asked.
    pub first_token_ttl: Option<Duration>,
    /// EC2: "allow tags in instance metadata"; off, `meta-data/tags/` is 404.
    pub instance_tags: bool,
    /// Write each answer's head and body in two segments with Nagle's algorithm on, as Python's
    /// `http.server` does, instead of one segment with `TCP_NODELAY`.
    pub split_segments: bool,
    /// EC2: the attached instance role; None: `meta-data/iam/` is 404.
    pub role: Option<RoleKeys>,
    /// GCE: a default service account; Azure: a managed identity. Off: their token endpoints
    /// answer as on an instance without one.
    pub identity: bool,
    /// Where GCE and Azure tokens are recorded (shared with secret store emulators).
    pub access_tokens: AccessTokens,
    /// GCE: `?wait_for_change=true` is answered at once with the current value and its
    /// unchanged ETag, as by a server (or a proxy) that ignores the hanging GET.
    pub gce_never_waits: bool,
}

impl Options {
    pub fn new(cloud: Cloud) -> Options {
        Options {
            cloud,
            instance: Instance::example(cloud),
            latency: Duration::ZERO,
            fail_first: 0,
            fail_status: 503,
            drop_first: 0,
            imds: Imds::V2Only,
            first_token_ttl: None,
            instance_tags: true,
            split_segments: false,
            role: None,
            identity: true,
            access_tokens: AccessTokens::default(),
            gce_never_waits: false,
        }
    }

    /// Records issued tokens in `tokens` (shared with another emulator's).
    pub fn with_access_tokens(mut self, tokens: AccessTokens) -> Options {
        self.access_tokens = tokens;
        self
    }

    pub fn role(mut self, role: RoleKeys) -> Options {
        self.role = Some(role);
        self
    }

    pub fn user_data(mut self, data: impl Into<Vec<u8>>) -> Options {
        self.instance.user_data = Some(data.into());
        self
    }

    pub fn tag(mut self, key: &str, value: &str) -> Options {
        self.instance.tags.insert(key.into(), value.into());
        self
    }
}

/// One request the emulator answered (or dropped: status 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Who asked.
    pub peer: SocketAddr,
    /// Which connection carried the request: connections are numbered from 0 as accepted.
    pub connection: u64,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub status: u16,
    /// When the request's head had arrived, and when its answer was ready (before it was
    /// written): two requests whose spans overlap were in flight together.
    pub arrived: Instant,
    pub answered: Instant,
}

/// What every cloud's handler sees.
pub(crate) struct State {
    pub options: Options,
    requests: AtomicU32,
    connections: AtomicU64,
    pub tokens: Mutex<HashMap<String, Instant>>,
    pub tokens_issued: AtomicU32,
    log: Mutex<Vec<Logged>>,
    /// What the platform announces now (see [`Notices`]).
    pub notices: Mutex<Notices>,
    /// Bumped on every change of `notices`: GCE's hanging GETs wait on it.
    pub changes: tokio::sync::watch::Sender<u64>,
    /// GCE: hanging GETs waiting for a change now.
    pub waiting: AtomicU32,
}

/// The parts of a request a handler needs.
pub(crate) struct Req {
    pub peer: SocketAddr,
    /// When hyper handed the request over.
    pub arrived: Instant,
    pub connection: u64,
    pub method: hyper::Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: hyper::HeaderMap,
    /// The request body (POSTs: Azure's acknowledgements), at most [`BODY_LIMIT`].
    pub body: Bytes,
}

/// Request bodies over this are refused (413): an acknowledgement is a few hundred bytes.
const BODY_LIMIT: usize = 64 * 1024;

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) type Answer = Response<Full<Bytes>>;

pub(crate) fn answer(status: u16, content_type: &str, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

pub(crate) fn text(status: u16, body: impl Into<Bytes>) -> Answer {
    answer(status, "text/plain", body)
}

pub(crate) fn json(status: u16, value: &serde_json::Value) -> Answer {
    answer(status, "application/json; charset=utf-8", value.to_string())
}

/// A running emulator. Stops (and its thread ends) when dropped.
pub struct MetadataEmulator {
    addr: SocketAddr,
    state: Arc<State>,
    _server: Background,
}

impl MetadataEmulator {
    /// Listens on 127.0.0.1 on a free port.
    pub fn start(options: Options) -> MetadataEmulator {
        Self::start_on("127.0.0.1:0".parse().unwrap(), options).expect("bind 127.0.0.1:0")
    }

    /// Listens on `addr`.
    pub fn start_on(addr: SocketAddr, options: Options) -> std::io::Result<MetadataEmulator> {
        Self::spawn(options, move || std::net::TcpListener::bind(addr))
    }

    /// Listens on `addr` inside the network namespace at `netns` (e.g. `/run/netns/NAME`), such
    /// as 169.254.169.254:80 in a namespace that holds that address. Only the emulator's own
    /// thread enters the namespace.
    pub fn start_in_netns(
        netns: &std::path::Path,
        addr: SocketAddr,
        options: Options,
    ) -> std::io::Result<MetadataEmulator> {
        let netns = netns.to_path_buf();
        Self::spawn(options, move || {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(&netns)?;
            // SAFETY: setns on a valid namespace fd; it changes only the calling thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::net::TcpListener::bind(addr)
        })
    }

    /// Binds on the emulator's own thread (so a namespace entered there holds the socket),
    /// then serves there until dropped.
    fn spawn(
        options: Options,
        bind: impl FnOnce() -> std::io::Result<std::net::TcpListener> + Send + 'static,
    ) -> std::io::Result<MetadataEmulator> {
        let state = Arc::new(State::new(options));
        let serving = state.clone();
        let (server, addr) = Background::spawn("metadata-emulator", bind, move |listener| {
            serve(listener, serving)
        })?;
        Ok(MetadataEmulator {
            addr,
            state,
            _server: server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `[metadata] endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn cloud(&self) -> Cloud {
        self.state.options.cloud
    }

    /// A `[metadata]` section of kiln.toml pointing at this emulator; `extra` lines go inside it
    /// (e.g. `tags_prefix = "env."`).
    pub fn config_section(&self, extra: &str) -> String {
        format!(
            "[metadata]\nprovider = \"{}\"\nendpoint = \"{}\"\n{extra}\n",
            self.cloud().name(),
            self.url()
        )
    }

    /// Every request so far, in the order answered.
    pub fn log(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// How many requests got an answer with `status` (0: dropped).
    pub fn count(&self, status: u16) -> usize {
        self.log().iter().filter(|l| l.status == status).count()
    }

    /// The most requests any one connection carried (1: no connection was reused).
    pub fn max_requests_per_connection(&self) -> usize {
        let mut per_connection = HashMap::new();
        for logged in self.log() {
            *per_connection.entry(logged.connection).or_insert(0) += 1;
        }
        per_connection.into_values().max().unwrap_or(0)
    }

    /// The round trips a client made one after another: the longest chain of requests each of
    /// which arrived after the one before it was answered. Requests sent together overlap and
    /// count once; give the emulator some `latency` so that they surely do. 0 when none came.
    pub fn sequential_depth(&self) -> usize {
        sequential_depth(&self.log())
    }

    /// The requests for `path` (path and query, as logged).
    pub fn requests_for(&self, path: &str) -> usize {
        self.log().iter().filter(|l| l.path == path).count()
    }

    /// GCE and Azure: the access tokens issued, for a secret store emulator to check.
    pub fn access_tokens(&self) -> AccessTokens {
        self.state.options.access_tokens.clone()
    }

    /// EC2: how many tokens were issued.
    pub fn tokens_issued(&self) -> u32 {
        self.state.tokens_issued.load(Ordering::SeqCst)
    }

    /// Changes what the platform announces (spot interruption, preemption, scheduled events...),
    /// waking GCE's hanging GETs. Returns what `change` returns (e.g. an event id).
    pub fn notices<R>(&self, change: impl FnOnce(&mut Notices) -> R) -> R {
        let result = change(&mut self.state.notices.lock().unwrap());
        self.state.changes.send_modify(|n| *n += 1);
        result
    }

    /// GCE: how many hanging GETs (`wait_for_change`) are waiting for a change now.
    pub fn waiting(&self) -> u32 {
        self.state.waiting.load(Ordering::SeqCst)
    }

    /// What the platform announces now, acknowledgements included.
    pub fn notices_now(&self) -> Notices {
        self.state.notices.lock().unwrap().clone()
    }
}

impl State {
    fn new(options: Options) -> State {
        State {
            options,
            requests: AtomicU32::new(0),
            connections: AtomicU64::new(0),
            tokens: Mutex::new(HashMap::new()),
            tokens_issued: AtomicU32::new(0),
            log: Mutex::new(Vec::new()),
            notices: Mutex::new(Notices::default()),
            changes: tokio::sync::watch::Sender::new(0),
            waiting: AtomicU32::new(0),
        }
    }

    fn record(&self, req: &Req, status: u16) {
        let path = match req.query.is_empty() {
            true => req.path.clone(),
            false => {
                let q: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}?{}", req.path, q.join("&"))
            }
        };
        self.log.lock().unwrap().push(Logged {
            peer: req.peer,
            connection: req.connection,
            method: req.method.to_string(),
            path,
            status,
            arrived: req.arrived,
            answered: Instant::now(),
        });
    }
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let connection = state.connections.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        tokio::spawn(async move {
            let split = state.options.split_segments;
            let service =
                hyper::service::service_fn(move |request| handle(state.clone(), peer, connection, request));
            let mut http = hyper::server::conn::http1::Builder::new();
            if split {
                let io = TokioIo::new(split::SplitWrites(stream));
                let _ = http.writev(true).serve_connection(io, service).await;
            } else {
                let _ = stream.set_nodelay(true);
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
            }
        });
    }
}

/// A dropped connection: hyper closes it without writing anything when the service fails.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the emulator")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    connection: u64,
    request: Request<Incoming>,
) -> Result<Answer, Dropped> {
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(text(413, "Request Entity Too Large")),
    };
    let req = Req {
        peer,
        arrived,
        connection,
        method: parts.method.clone(),
        path: percent_decode(parts.uri.path()),
        query: parts.uri.query().map(parse_query).unwrap_or_default(),
        headers: parts.headers.clone(),
        body,
    };
    let options = &state.options;
    if !options.latency.is_zero() {
        tokio::time::sleep(options.latency).await;
    }
    let n = state.requests.fetch_add(1, Ordering::SeqCst);
    if n < options.fail_first {
        state.record(&req, options.fail_status);
        return Ok(text(options.fail_status, "Service Unavailable"));
    }
    if n < options.fail_first + options.drop_first {
        state.record(&req, 0);
        return Err(Dropped);
    }
    let response = match options.cloud {
        Cloud::Ec2 => ec2::handle(&state, &req),
        Cloud::Gce if gce::waits(&req) && !options.gce_never_waits => {
            gce::wait_for_change(&state, &req).await
        }
        Cloud::Gce => gce::handle(&state, &req),
        Cloud::Azure => azure::handle(&state, &req),
        Cloud::OpenStack => openstack::handle(&state, &req),
        Cloud::DigitalOcean => digitalocean::handle(&state, &req),
        Cloud::Oracle => oracle::handle(&state, &req),
        Cloud::Hetzner => hetzner::handle(&state, &req),
        Cloud::Scaleway => scaleway::handle(&state, &req),
        Cloud::Vultr => vultr::handle(&state, &req),
        Cloud::Akamai => akamai::handle(&state, &req),
        Cloud::Alibaba => alibaba::handle(&state, &req),
        Cloud::Exoscale => exoscale::handle(&state, &req),
        Cloud::UpCloud => upcloud::handle(&state, &req),
    };
    state.record(&req, response.status().as_u16());
    Ok(response)
}

/// The longest chain of requests, each arriving after the one before was answered.
pub fn sequential_depth(log: &[Logged]) -> usize {
    let mut by_end: Vec<&Logged> = log.iter().collect();
    by_end.sort_by_key(|l| l.answered);
    // depth[i]: the longest chain ending with by_end[i].
    let mut depth: Vec<usize> = Vec::with_capacity(by_end.len());
    for (i, request) in by_end.iter().enumerate() {
        let before = (0..i)
            .filter(|&j| by_end[j].answered <= request.arrived)
            .map(|j| depth[j])
            .max()
            .unwrap_or(0);
        depth.push(before + 1);
    }
    depth.into_iter().max().unwrap_or(0)
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lines of a directory listing (`key` or `dir/`), as IMDS-style services answer a directory.
pub(crate) fn listing<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> String {
    let entries: Vec<S> = entries.into_iter().collect();
    let entries: Vec<&str> = entries.iter().map(AsRef::as_ref).collect();
    entries.join("\n")
}

/// A random token, base64 like EC2's.
pub(crate) fn random_token() -> String {
    use base64::Engine;
    use std::io::Read;
    let mut bytes = [0u8; 42];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

const USAGE: &str = "usage: kiln-testkit metadata --provider ec2|gce|azure|openstack|digitalocean|oracle|hetzner|scaleway|vultr|akamai|alibaba|exoscale|upcloud
    [--listen ADDR (127.0.0.1:0)] [--user-data FILE] [--tag KEY=VALUE ...] [--project-attribute KEY=VALUE ...]
    [--instance-id ID] [--region R] [--zone Z] [--local-ipv4 IP] [--hostname H]
    [--imds v2-only|v1-allowed|v1-only|disabled] [--no-instance-tags] [--first-token-ttl-ms N]
    [--latency-ms N] [--fail-first N] [--fail-status CODE] [--drop-first N] [--split-segments]
    [--gce-never-waits]
Prints `listening on http://ADDR` once it accepts connections; stops on SIGINT or SIGTERM.";

/// Entry point of `kiln-testkit metadata ...`.
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-testkit metadata: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let mut args = args.iter();
    let mut cloud = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut settings: Vec<(String, String)> = Vec::new();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            return Ok(());
        }
        if ["--no-instance-tags", "--split-segments", "--gce-never-waits"].contains(&flag.as_str()) {
            settings.push((flag.clone(), String::new()));
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?.clone();
        match flag.as_str() {
            "--provider" => cloud = Some(Cloud::parse(&value).ok_or(format!("unknown provider {value:?}"))?),
            "--listen" => listen = value.parse().map_err(|e| format!("--listen {value:?}: {e}"))?,
            _ => settings.push((flag.clone(), value)),
        }
    }
    let cloud = cloud.ok_or("--provider is required")?;
    let mut options = Options::new(cloud);
    let number = |flag: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("{flag}: {v:?} is not a number"))
    };
    let pair = |flag: &str, v: &str| {
        v.split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .ok_or(format!("{flag}: expected KEY=VALUE"))
    };
    for (flag, value) in settings {
        let i = &mut options.instance;
        match flag.as_str() {
            "--user-data" => {
                i.user_data = Some(std::fs::read(&value).map_err(|e| format!("--user-data {value}: {e}"))?)
            }
            "--tag" => {
                let (k, v) = pair(&flag, &value)?;
                i.tags.insert(k, v);
            }
            "--project-attribute" => {
                let (k, v) = pair(&flag, &value)?;
                i.project_attributes.insert(k, v);
            }
            "--instance-id" => i.id = value,
            "--region" => i.region = value,
            "--zone" => i.zone = value,
            "--local-ipv4" => i.local_ipv4 = value,
            "--hostname" => i.hostname = value,
            "--imds" => {
                options.imds = match value.as_str() {
                    "v2-only" => Imds::V2Only,
                    "v1-allowed" => Imds::V1Allowed,
                    "v1-only" => Imds::V1Only,
                    "disabled" => Imds::Disabled,
                    _ => {
                        return Err(format!(
                            "--imds {value:?}: v2-only, v1-allowed, v1-only or disabled"
                        ));
                    }
                }
            }
            "--no-instance-tags" => options.instance_tags = false,
            "--split-segments" => options.split_segments = true,
            "--gce-never-waits" => options.gce_never_waits = true,
            "--first-token-ttl-ms" => {
                options.first_token_ttl = Some(Duration::from_millis(number(&flag, &value)?))
            }
            "--latency-ms" => options.latency = Duration::from_millis(number(&flag, &value)?),
            "--fail-first" => options.fail_first = number(&flag, &value)? as u32,
            "--fail-status" => options.fail_status = number(&flag, &value)? as u16,
            "--drop-first" => options.drop_first = number(&flag, &value)? as u32,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on http://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = serve(listener, Arc::new(State::new(options))) => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logged request spanning `from..to` milliseconds after `t0`.
    fn span(t0: Instant, from: u64, to: u64) -> Logged {
        Logged {
            peer: "127.0.0.1:1".parse().unwrap(),
            connection: 0,
            method: "GET".into(),
            path: "/".into(),
            status: 200,
            arrived: t0 + Duration::from_millis(from),
            answered: t0 + Duration::from_millis(to),
        }
    }

    #[test]
    fn depth_is_the_longest_chain_of_waits() {
        let t0 = Instant::now();
        assert_eq!(sequential_depth(&[]), 0);
        // A token, four requests together, two after the slowest of those... and one after
        // the first of them only: still depth 3.
        let log = [
            span(t0, 0, 10),
            span(t0, 11, 20),
            span(t0, 11, 22),
            span(t0, 12, 40),
            span(t0, 12, 21),
            span(t0, 23, 30),
            span(t0, 23, 31),
            span(t0, 21, 39),
        ];
        assert_eq!(sequential_depth(&log), 3);
        // Overlapping by a hair is together; starting exactly at the end is after.
        assert_eq!(sequential_depth(&[span(t0, 0, 10), span(t0, 9, 20)]), 1);
        assert_eq!(sequential_depth(&[span(t0, 0, 10), span(t0, 10, 20)]), 2);
    }
}
