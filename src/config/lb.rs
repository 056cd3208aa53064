//! `[lb]`: which load balancer to join once healthy, and how long to wait for it to let go.
//!
//! Read in two steps, as the rest of the config (`read.rs`): serde reads the table as written
//! ([`LbTable`]: one flat table for every kind, as in the docs), then [`LbTable::check`] makes it
//! a plan ([`LbConfig`]: one [`LbPlan`] variant per load balancer, its names and addresses parsed
//! into [`Template`]s, its target group ARN typed), listing every problem at once. The keys of
//! the other kinds are errors, so a typo or a half-changed config is caught by `kiln check`
//! rather than ignored at boot. Registration (`lb`), `kiln fleet` and `kiln check` read the plan
//! only: nothing after this file looks at a key again.
//!
//! Templates name the instance's facts (`{instance_id}`, `{local_ipv4}`, `{region}`,
//! `{hostname}`); `lb::registrar` fills them in at boot.

use super::HumanDuration;
use super::template::{Fact, Template};
use super::url::check_http_url as check_url;
use crate::aws_names::TargetGroupArn;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::time::Duration;

/// `[lb]` as written. Only [`LbTable::check`] reads its keys: the rest of kiln reads the
/// [`LbConfig`] it makes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LbTable {
    /// Which load balancer: `haproxy`, `elbv2`, `consul` or `none` (the default: no registration).
    #[serde(default)]
    kind: LbKind,
    /// Longest wait on stop for in-flight requests to finish before services are stopped
    /// (default 30s). Consul cannot see requests, so with `kind = "consul"` the whole of it is
    /// waited: set it to the time your Consul consumers take to drop the instance plus your
    /// longest request.
    drain_timeout: Option<HumanDuration>,

    /// haproxy: the runtime API socket (`stats socket ... level admin`): a path, or `tcp:HOST:PORT`.
    socket: Option<String>,
    /// haproxy: the backend to join; it needs a dynamic algorithm (roundrobin, leastconn).
    backend: Option<String>,
    /// haproxy: this instance's server name; consul: its service ID. Template, default
    /// `{instance_id}`.
    server: Option<String>,
    /// haproxy and consul: where the load balancer sends requests, `HOST:PORT`.
    /// Template, e.g. `{local_ipv4}:8080`.
    address: Option<String>,
    /// haproxy: appended to `add server` as is, e.g. `check weight 100` or
    /// `check agent-check agent-port 9101 agent-inter 1s`. Checks named here are enabled after
    /// the server is added (HAProxy adds servers with checks off).
    options: Option<String>,

    /// elbv2: the target group to join. Its region is where the API is called.
    target_group_arn: Option<String>,
    /// elbv2: `instance` (register the instance id, the default) or `ip` (register the local
    /// IPv4) — as the target group's target type.
    target_type: Option<TargetType>,
    /// elbv2: the port to register; the target group's port when unset.
    port: Option<u16>,
    /// elbv2: the API endpoint (override for tests and private endpoints). Template, default
    /// `https://elasticloadbalancing.{region}.amazonaws.com`, `{region}` being the ARN's.
    endpoint: Option<String>,
    /// elbv2: the instance metadata service holding the instance role's credentials, used when
    /// `AWS_ACCESS_KEY_ID` is not in kiln's environment. Default: `[metadata] endpoint`, else
    /// `http://169.254.169.254`.
    imds_endpoint: Option<String>,

    /// consul: the local agent's HTTP API (default `http://127.0.0.1:8500`).
    agent: Option<String>,
    /// consul: the service name to register under.
    service: Option<String>,
    /// consul: tags of the registered service.
    tags: Option<Vec<String>>,
    /// consul: the URL the agent polls for readiness. Template, default kiln's `/readyz` on
    /// `[health] listen` (127.0.0.1 when listening on every address: the agent is local).
    check_url: Option<String>,
    /// consul: how often the agent polls `check_url` (default 5s); also its timeout.
    check_interval: Option<HumanDuration>,
}

/// The word of `[lb] kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LbKind {
    #[default]
    None,
    Haproxy,
    Elbv2,
    Consul,
}

impl LbKind {
    /// The load balancers, in the order messages list them.
    const REGISTRARS: [LbKind; 3] = [LbKind::Haproxy, LbKind::Elbv2, LbKind::Consul];

    pub fn name(self) -> &'static str {
        match self {
            LbKind::None => "none",
            LbKind::Haproxy => "haproxy",
            LbKind::Elbv2 => "elbv2",
            LbKind::Consul => "consul",
        }
    }

    /// The keys of `[lb]` this kind reads, besides `kind`: any other key set is an error.
    fn keys(self) -> &'static [&'static str] {
        match self {
            LbKind::None => &[],
            LbKind::Haproxy => &[
                "drain_timeout",
                "socket",
                "backend",
                "server",
                "address",
                "options",
            ],
            LbKind::Elbv2 => &[
                "drain_timeout",
                "target_group_arn",
                "target_type",
                "port",
                "endpoint",
                "imds_endpoint",
            ],
            LbKind::Consul => &[
                "drain_timeout",
                "server",
                "address",
                "agent",
                "service",
                "tags",
                "check_url",
                "check_interval",
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    #[default]
    Instance,
    Ip,
}

impl TargetType {
    /// The fact registered as the target's id.
    pub fn fact(self) -> Fact {
        match self {
            TargetType::Instance => Fact::InstanceId,
            TargetType::Ip => Fact::LocalIpv4,
        }
    }
}

/// `[lb]`, checked: the load balancer to join, if any, and how long a drain may take.
#[derive(Debug, Clone)]
pub struct LbConfig {
    /// None: `kind = "none"`, no registration.
    pub plan: Option<LbPlan>,
    drain_timeout: Duration,
}

impl Default for LbConfig {
    fn default() -> LbConfig {
        LbConfig {
            plan: None,
            drain_timeout: LbConfig::DEFAULT_DRAIN_TIMEOUT.get(),
        }
    }
}

impl LbConfig {
    pub const DEFAULT_DRAIN_TIMEOUT: HumanDuration = HumanDuration::from_secs(30);

    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    pub fn kind(&self) -> LbKind {
        self.plan.as_ref().map_or(LbKind::None, LbPlan::kind)
    }
}

/// One load balancer to join, with what joining it takes. A new load balancer is a new variant:
/// the compiler then lists every place that must learn it.
#[derive(Debug, Clone)]
pub enum LbPlan {
    Haproxy(HaproxyPlan),
    Elbv2(Elbv2Plan),
    Consul(ConsulPlan),
}

impl LbPlan {
    pub fn kind(&self) -> LbKind {
        match self {
            LbPlan::Haproxy(_) => LbKind::Haproxy,
            LbPlan::Elbv2(_) => LbKind::Elbv2,
            LbPlan::Consul(_) => LbKind::Consul,
        }
    }
}

/// One server in an HAProxy backend, through the runtime API.
#[derive(Debug, Clone)]
pub struct HaproxyPlan {
    pub socket: RuntimeSocket,
    pub backend: LbName,
    /// The server's name (default `{instance_id}`).
    pub server: Template,
    pub address: Address,
    /// Appended to `add server` as is (no `;` or line break: checked).
    pub options: String,
}

/// One target in an ELBv2 target group.
#[derive(Debug, Clone)]
pub struct Elbv2Plan {
    pub target_group_arn: TargetGroupArn,
    pub target_type: TargetType,
    /// None: the target group's port.
    pub port: Option<NonZeroU16>,
    /// The API's URL; `{region}` is the ARN's region. None: AWS's default for that region.
    pub endpoint: Option<Template>,
    /// Where the instance role's credentials are; None: `[metadata]`'s service.
    pub imds_endpoint: Option<String>,
}

/// One service instance registered with the local Consul agent.
#[derive(Debug, Clone)]
pub struct ConsulPlan {
    /// The agent's HTTP API (default [`ConsulPlan::DEFAULT_AGENT`]).
    pub agent: String,
    pub service: LbName,
    /// The service ID (default `{instance_id}`).
    pub server: Template,
    pub address: Address,
    pub tags: Vec<String>,
    /// None: kiln's `/readyz` where `[health] listen` is.
    pub check_url: Option<Template>,
    pub check_interval: Duration,
}

impl ConsulPlan {
    pub const DEFAULT_AGENT: &str = "http://127.0.0.1:8500";
    pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
}

/// Where HAProxy's runtime API listens: a unix socket's path, or `tcp:HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSocket {
    Unix(PathBuf),
    Tcp(String),
}

impl RuntimeSocket {
    /// `/path/to/admin.sock` or `tcp:...` (`[lb]` also checks the `HOST:PORT` after `tcp:`).
    pub fn parse(spec: &str) -> Result<RuntimeSocket, String> {
        match spec.strip_prefix("tcp:") {
            Some(hostport) => Ok(RuntimeSocket::Tcp(hostport.to_string())),
            None if spec.starts_with('/') => Ok(RuntimeSocket::Unix(PathBuf::from(spec))),
            None => Err(format!(
                "[lb] socket = {spec:?}: give an absolute path or tcp:HOST:PORT"
            )),
        }
    }
}

impl std::fmt::Display for RuntimeSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeSocket::Unix(p) => write!(f, "{}", p.display()),
            RuntimeSocket::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// A name the HAProxy runtime API and Consul take as one word (a backend, a service, a server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbName(String);

impl LbName {
    /// 1 to 128 letters, digits, `-`, `_`, `.` or `:`.
    pub fn parse(name: &str) -> Result<LbName, String> {
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err("use 1 to 128 letters, digits, '-', '_', '.' or ':'".into());
        }
        Ok(LbName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LbName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `HOST:PORT` whose host may name facts (`{local_ipv4}:8080`), checked as such; the filled-in
/// value is split with [`split_host_port`].
#[derive(Debug, Clone)]
pub struct Address(Template);

impl Address {
    pub fn template(&self) -> &Template {
        &self.0
    }
}

/// A template of the table: not set, parsed, or refused (and listed).
type Slot = Result<Option<Template>, Refused>;

/// A value already listed as a problem.
#[derive(Debug, Clone, Copy)]
struct Refused;

/// The table's templates, parsed before the kind's own checks (a bad template is listed even
/// under a key of another kind).
struct Templates {
    server: Slot,
    address: Slot,
    endpoint: Slot,
    check_url: Slot,
}

impl LbTable {
    /// The plan this table asks for, or every problem that can be seen before the instance's
    /// facts are known, each naming its key: keys of another kind, `drain_timeout`, the
    /// templates, then the kind's own keys.
    pub fn check(&self) -> Result<LbConfig, Vec<String>> {
        let mut problems = Vec::new();
        self.keys_of_other_kinds(&mut problems);
        let drain_timeout = self.drain_timeout(&mut problems);
        let templates = self.templates(&mut problems);
        // None: no load balancer; Some(None): refused, and the problems say why.
        let plan = match self.kind {
            LbKind::None => None,
            LbKind::Haproxy => Some(self.haproxy(templates, &mut problems).map(LbPlan::Haproxy)),
            LbKind::Elbv2 => Some(self.elbv2(templates, &mut problems).map(LbPlan::Elbv2)),
            LbKind::Consul => Some(self.consul(templates, &mut problems).map(LbPlan::Consul)),
        };
        match (plan, problems.is_empty()) {
            (None, true) => Ok(LbConfig {
                plan: None,
                drain_timeout,
            }),
            (Some(Some(plan)), true) => Ok(LbConfig {
                plan: Some(plan),
                drain_timeout,
            }),
            _ => Err(problems),
        }
    }

    /// Each key and whether it is set, in the table's order. Every field is named here, so a
    /// new key cannot be left out of the keys-of-another-kind check.
    fn given(&self) -> [(&'static str, bool); 16] {
        let LbTable {
            kind: _,
            drain_timeout,
            socket,
            backend,
            server,
            address,
            options,
            target_group_arn,
            target_type,
            port,
            endpoint,
            imds_endpoint,
            agent,
            service,
            tags,
            check_url,
            check_interval,
        } = self;
        [
            ("drain_timeout", drain_timeout.is_some()),
            ("socket", socket.is_some()),
            ("backend", backend.is_some()),
            ("server", server.is_some()),
            ("address", address.is_some()),
            ("options", options.is_some()),
            ("target_group_arn", target_group_arn.is_some()),
            ("target_type", target_type.is_some()),
            ("port", port.is_some()),
            ("endpoint", endpoint.is_some()),
            ("imds_endpoint", imds_endpoint.is_some()),
            ("agent", agent.is_some()),
            ("service", service.is_some()),
            ("tags", tags.is_some()),
            ("check_url", check_url.is_some()),
            ("check_interval", check_interval.is_some()),
        ]
    }

    /// A key set that `kind` does not read, with the kinds that do.
    fn keys_of_other_kinds(&self, problems: &mut Vec<String>) {
        for (key, set) in self.given() {
            if set && !self.kind.keys().contains(&key) {
                let owners: Vec<&str> = LbKind::REGISTRARS
                    .into_iter()
                    .filter(|k| k.keys().contains(&key))
                    .map(LbKind::name)
                    .collect();
                problems.push(format!(
                    "[lb] {key} is a key of kind = {}, but kind = {:?}",
                    owners.join(" or "),
                    self.kind.name()
                ));
            }
        }
    }

    fn drain_timeout(&self, problems: &mut Vec<String>) -> Duration {
        match self.drain_timeout {
            Some(d) if d.get().is_zero() || d.get() > Duration::from_secs(3600) => {
                problems.push(format!(
                    "[lb] drain_timeout = \"{d}\": must be between 1ms and 1h"
                ));
                LbConfig::DEFAULT_DRAIN_TIMEOUT.get()
            }
            Some(d) => d.get(),
            None => LbConfig::DEFAULT_DRAIN_TIMEOUT.get(),
        }
    }

    fn templates(&self, problems: &mut Vec<String>) -> Templates {
        let mut parse = |key: &str, value: &Option<String>| -> Slot {
            let Some(value) = value else { return Ok(None) };
            Template::parse(value).map(Some).map_err(|e| {
                problems.push(format!("[lb] {key} = {value:?}: {e}"));
                Refused
            })
        };
        Templates {
            server: parse("server", &self.server),
            address: parse("address", &self.address),
            endpoint: parse("endpoint", &self.endpoint),
            check_url: parse("check_url", &self.check_url),
        }
    }

    fn haproxy(&self, templates: Templates, problems: &mut Vec<String>) -> Option<HaproxyPlan> {
        let socket = self.socket(problems);
        let backend = name("backend", &self.backend, problems);
        let address = address(&self.address, templates.address, problems);
        let options = self.options.clone().unwrap_or_default();
        if let Some(bad) = options.chars().find(|c| matches!(c, ';' | '\n' | '\r')) {
            problems.push(format!(
                "[lb] options = {options:?}: {bad:?} would end the runtime API command"
            ));
            return None;
        }
        Some(HaproxyPlan {
            socket: socket?,
            backend: backend?,
            server: server(templates.server)?,
            address: address?,
            options,
        })
    }

    /// haproxy: a path, or `tcp:HOST:PORT`.
    fn socket(&self, problems: &mut Vec<String>) -> Option<RuntimeSocket> {
        let spec = required("socket", &self.socket, problems)?;
        let socket = RuntimeSocket::parse(spec).map_err(|e| problems.push(e)).ok()?;
        if let RuntimeSocket::Tcp(hostport) = &socket
            && let Err(e) = split_host_port(hostport)
        {
            problems.push(format!("[lb] socket = {spec:?}: {e}"));
            return None;
        }
        Some(socket)
    }

    fn elbv2(&self, templates: Templates, problems: &mut Vec<String>) -> Option<Elbv2Plan> {
        let arn = required("target_group_arn", &self.target_group_arn, problems).and_then(|arn| {
            TargetGroupArn::parse(arn)
                .map_err(|e| problems.push(format!("[lb] target_group_arn = {arn:?}: {e}")))
                .ok()
        });
        let endpoint = url("endpoint", &self.endpoint, problems).and(templates.endpoint);
        let imds_endpoint = url("imds_endpoint", &self.imds_endpoint, problems);
        let port = match self.port {
            None => None,
            Some(port) => Some(NonZeroU16::new(port).or_else(|| {
                problems.push("[lb] port = 0: give the port the target listens on".into());
                None
            })?),
        };
        Some(Elbv2Plan {
            target_group_arn: arn?,
            target_type: self.target_type.unwrap_or_default(),
            port,
            endpoint: endpoint.ok()?,
            imds_endpoint: imds_endpoint.ok()?.cloned(),
        })
    }

    fn consul(&self, templates: Templates, problems: &mut Vec<String>) -> Option<ConsulPlan> {
        let service = name("service", &self.service, problems);
        let address = address(&self.address, templates.address, problems);
        let agent = url("agent", &self.agent, problems);
        let check_url = url("check_url", &self.check_url, problems).and(templates.check_url);
        let check_interval = match self.check_interval {
            Some(i) if i.get() < Duration::from_secs(1) => {
                problems.push(format!("[lb] check_interval = \"{i}\": Consul needs at least 1s"));
                return None;
            }
            Some(i) => i.get(),
            None => ConsulPlan::DEFAULT_CHECK_INTERVAL,
        };
        Some(ConsulPlan {
            agent: agent
                .ok()?
                .map_or(ConsulPlan::DEFAULT_AGENT, String::as_str)
                .to_string(),
            service: service?,
            server: server(templates.server)?,
            address: address?,
            tags: self.tags.clone().unwrap_or_default(),
            check_url: check_url.ok()?,
            check_interval,
        })
    }
}

/// The value of a key this kind needs: set, and not blank.
fn required<'a>(key: &str, value: &'a Option<String>, problems: &mut Vec<String>) -> Option<&'a str> {
    match value.as_deref() {
        Some(v) if !v.trim().is_empty() => Some(v),
        _ => {
            problems.push(format!("[lb] {key} is required for this kind"));
            None
        }
    }
}

/// A required [`LbName`].
fn name(key: &str, value: &Option<String>, problems: &mut Vec<String>) -> Option<LbName> {
    let value = required(key, value, problems)?;
    LbName::parse(value)
        .map_err(|e| problems.push(format!("[lb] {key} = {value:?}: {e}")))
        .ok()
}

/// haproxy and consul: `address` is required and is `HOST:PORT`.
fn address(value: &Option<String>, template: Slot, problems: &mut Vec<String>) -> Option<Address> {
    let value = required("address", value, problems)?;
    if let Err(e) = split_host_port(value) {
        problems.push(format!("[lb] address = {value:?}: {e}"));
        return None;
    }
    Some(Address(template.ok()??))
}

/// The server name or service ID: `{instance_id}` unless set.
fn server(template: Slot) -> Option<Template> {
    match template {
        Ok(Some(template)) => Some(template),
        Ok(None) => Some(Template::fact(Fact::InstanceId)),
        Err(Refused) => None,
    }
}

/// An optional URL key, checked when set.
fn url<'a>(
    key: &str,
    value: &'a Option<String>,
    problems: &mut Vec<String>,
) -> Result<Option<&'a String>, Refused> {
    match value {
        Some(url) => check_url(url).map(|()| Some(url)).map_err(|e| {
            problems.push(format!("[lb] {key} = {url:?}: {e}"));
            Refused
        }),
        None => Ok(None),
    }
}

/// `HOST:PORT` (IPv6 in brackets). Templates are allowed in the host only.
pub fn split_host_port(s: &str) -> Result<(&str, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or("give HOST:PORT, e.g. {local_ipv4}:8080")?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {port:?} is not a port number"))?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == ';') {
        return Err(format!("host {host:?} is not a host"));
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LbConfig, String> {
        let table: LbTable = toml::from_str(text).map_err(|e| e.to_string())?;
        table.check().map_err(|problems| problems.join("\n"))
    }

    #[test]
    fn the_documented_haproxy_table_is_accepted() {
        let c = parse(
            r#"kind = "haproxy"
               drain_timeout = "30s"
               socket = "/run/haproxy/admin.sock"
               backend = "app"
               server = "{instance_id}"
               address = "{local_ipv4}:8080"
               options = "check weight 100""#,
        )
        .unwrap();
        assert_eq!(c.kind(), LbKind::Haproxy);
        assert_eq!(c.drain_timeout(), std::time::Duration::from_secs(30));
    }

    #[test]
    fn a_key_of_another_kind_is_named() {
        let err = parse(
            r#"kind = "haproxy"
               socket = "tcp:127.0.0.1:9999"
               backend = "app"
               address = "10.0.0.1:80"
               target_group_arn = "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/a/b""#,
        )
        .unwrap_err();
        assert!(
            err.contains("[lb] target_group_arn is a key of kind = elbv2"),
            "{err}"
        );
    }

    #[test]
    fn missing_and_malformed_keys_are_named() {
        let err = parse(r#"kind = "haproxy""#).unwrap_err();
        assert!(err.contains("[lb] socket is required"), "{err}");
        let err = parse(
            r#"kind = "haproxy"
               socket = "/s"
               backend = "app"
               address = "{local_ipv4}""#,
        )
        .unwrap_err();
        assert!(err.contains("[lb] address"), "{err}");
        let err = parse(
            r#"kind = "haproxy"
               socket = "/s"
               backend = "app"
               address = "{ip}:80""#,
        )
        .unwrap_err();
        assert!(err.contains("unknown placeholder {ip}"), "{err}");
        let err = parse(
            r#"kind = "haproxy"
               socket = "/s"
               backend = "app"
               address = "1.2.3.4:80"
               options = "check; shutdown sessions""#,
        )
        .unwrap_err();
        assert!(err.contains("[lb] options"), "{err}");
        let err = parse(
            r#"kind = "elbv2"
               target_group_arn = "arn:aws:s3:::bucket""#,
        )
        .unwrap_err();
        assert!(err.contains("[lb] target_group_arn"), "{err}");
        let err = parse(r#"kind = "lvs""#).unwrap_err();
        assert!(err.contains("lvs"), "{err}");
    }

    #[test]
    fn every_problem_is_listed() {
        let err = parse(
            r#"kind = "haproxy"
               backend = "a b"
               address = "{ip}"
               check_interval = "5s""#,
        )
        .unwrap_err();
        let problems: Vec<&str> = err.lines().collect();
        assert_eq!(problems.len(), 5, "{err}");
        assert!(
            problems[0].starts_with("[lb] check_interval is a key of kind = consul"),
            "{err}"
        );
        assert!(
            problems[1].starts_with("[lb] address = \"{ip}\": unknown placeholder"),
            "{err}"
        );
        assert_eq!(problems[2], "[lb] socket is required for this kind");
        assert!(problems[3].starts_with("[lb] backend = \"a b\""), "{err}");
        assert!(
            problems[4].starts_with("[lb] address = \"{ip}\": give HOST:PORT"),
            "{err}"
        );
    }

    #[test]
    fn the_region_comes_from_the_arn() {
        let c = parse(
            r#"kind = "elbv2"
               target_group_arn = "arn:aws:elasticloadbalancing:eu-west-3:123456789012:targetgroup/app/73e2d6bc24d8a067""#,
        )
        .unwrap();
        let Some(LbPlan::Elbv2(plan)) = &c.plan else {
            panic!("{c:?}")
        };
        assert_eq!(plan.target_group_arn.region().as_str(), "eu-west-3");
    }

    #[test]
    fn every_key_is_a_key_of_some_kind_and_each_kind_takes_all_of_its_own() {
        for (key, _) in LbTable::default().given() {
            assert!(
                LbKind::REGISTRARS.iter().any(|k| k.keys().contains(&key)),
                "{key} belongs to no kind"
            );
        }
        let elbv2 = parse(
            r#"kind = "elbv2"
               drain_timeout = "10s"
               target_group_arn = "arn:aws:elasticloadbalancing:eu-west-3:123456789012:targetgroup/app/73e2d6bc24d8a067"
               target_type = "ip"
               port = 8080
               endpoint = "http://127.0.0.1:5000/{region}"
               imds_endpoint = "http://127.0.0.1:1338""#,
        )
        .unwrap();
        let Some(LbPlan::Elbv2(plan)) = &elbv2.plan else {
            panic!("{elbv2:?}")
        };
        assert_eq!(plan.target_type.fact(), Fact::LocalIpv4);
        assert_eq!(plan.port.map(NonZeroU16::get), Some(8080));
        let consul = parse(
            r#"kind = "consul"
               drain_timeout = "10s"
               server = "web-{instance_id}"
               address = "{local_ipv4}:8080"
               agent = "http://127.0.0.1:8500"
               service = "app"
               tags = ["php"]
               check_url = "http://{local_ipv4}:9100/readyz"
               check_interval = "2s""#,
        )
        .unwrap();
        let Some(LbPlan::Consul(plan)) = &consul.plan else {
            panic!("{consul:?}")
        };
        assert_eq!(plan.server.as_str(), "web-{instance_id}");
        assert_eq!(plan.check_interval, Duration::from_secs(2));
        let none = parse("").unwrap();
        assert!(none.plan.is_none());
        assert_eq!(none.drain_timeout(), Duration::from_secs(30));
    }

    #[test]
    fn the_defaults_of_a_short_consul_table() {
        let c = parse(
            r#"kind = "consul"
               service = "app"
               address = "{local_ipv4}:8080""#,
        )
        .unwrap();
        let Some(LbPlan::Consul(plan)) = &c.plan else {
            panic!("{c:?}")
        };
        assert_eq!(plan.agent, ConsulPlan::DEFAULT_AGENT);
        assert_eq!(plan.server.as_str(), "{instance_id}");
        assert_eq!(plan.check_url, None);
        assert_eq!(plan.check_interval, ConsulPlan::DEFAULT_CHECK_INTERVAL);
    }

    #[test]
    fn the_socket_spec_is_a_path_or_tcp() {
        assert!(matches!(
            RuntimeSocket::parse("/run/haproxy/admin.sock"),
            Ok(RuntimeSocket::Unix(_))
        ));
        assert!(matches!(
            RuntimeSocket::parse("tcp:10.0.0.5:9999"),
            Ok(RuntimeSocket::Tcp(_))
        ));
        assert!(RuntimeSocket::parse("admin.sock").is_err());
        let err = parse(
            r#"kind = "haproxy"
               socket = "tcp:nowhere"
               backend = "app"
               address = "10.0.0.1:80""#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "[lb] socket = \"tcp:nowhere\": give HOST:PORT, e.g. {local_ipv4}:8080"
        );
    }
}
