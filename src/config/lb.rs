//! `[lb]`: which load balancer to join once healthy, and how long to wait for it to let go.
//!
//! One flat table for every kind (as in the docs): the keys of the other kinds are errors, so a
//! typo or a half-changed config is caught by `kiln check` rather than ignored at boot.
//! Names and addresses are templates: `{instance_id}`, `{local_ipv4}`, `{region}`, `{hostname}`
//! come from the instance's metadata and are filled in by `lb::registrar`.

use super::HumanDuration;
use super::url::check_http_url as check_url;
use serde::{Deserialize, Serialize};

/// The placeholders a template may use.
pub const TEMPLATE_KEYS: [&str; 4] = ["instance_id", "local_ipv4", "region", "hostname"];

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LbConfig {
    /// Which load balancer: `haproxy`, `elbv2`, `consul` or `none` (the default: no registration).
    #[serde(default)]
    pub kind: LbKind,
    /// Longest wait on stop for in-flight requests to finish before services are stopped
    /// (default 30s). Consul cannot see requests, so with `kind = "consul"` the whole of it is
    /// waited: set it to the time your Consul consumers take to drop the instance plus your
    /// longest request.
    pub drain_timeout: Option<HumanDuration>,

    /// haproxy: the runtime API socket (`stats socket ... level admin`): a path, or `tcp:HOST:PORT`.
    pub socket: Option<String>,
    /// haproxy: the backend to join; it needs a dynamic algorithm (roundrobin, leastconn).
    pub backend: Option<String>,
    /// haproxy: this instance's server name; consul: its service ID. Template, default
    /// `{instance_id}`.
    pub server: Option<String>,
    /// haproxy and consul: where the load balancer sends requests, `HOST:PORT`.
    /// Template, e.g. `{local_ipv4}:8080`.
    pub address: Option<String>,
    /// haproxy: appended to `add server` as is, e.g. `check weight 100` or
    /// `check agent-check agent-port 9101 agent-inter 1s`. Checks named here are enabled after
    /// the server is added (HAProxy adds servers with checks off).
    pub options: Option<String>,

    /// elbv2: the target group to join. Its region is where the API is called.
    pub target_group_arn: Option<String>,
    /// elbv2: `instance` (register the instance id, the default) or `ip` (register the local
    /// IPv4) — as the target group's target type.
    pub target_type: Option<TargetType>,
    /// elbv2: the port to register; the target group's port when unset.
    pub port: Option<u16>,
    /// elbv2: the API endpoint (override for tests and private endpoints). Template, default
    /// `https://elasticloadbalancing.{region}.amazonaws.com`, `{region}` being the ARN's.
    pub endpoint: Option<String>,
    /// elbv2: the instance metadata service holding the instance role's credentials, used when
    /// `AWS_ACCESS_KEY_ID` is not in kiln's environment. Default: `[metadata] endpoint`, else
    /// [`crate::net::METADATA`].
    pub imds_endpoint: Option<String>,

    /// consul: the local agent's HTTP API (default `http://127.0.0.1:8500`).
    pub agent: Option<String>,
    /// consul: the service name to register under.
    pub service: Option<String>,
    /// consul: tags of the registered service.
    pub tags: Option<Vec<String>>,
    /// consul: the URL the agent polls for readiness. Template, default kiln's `/readyz` on
    /// `[health] listen` (127.0.0.1 when listening on every address: the agent is local).
    pub check_url: Option<String>,
    /// consul: how often the agent polls `check_url` (default 5s); also its timeout.
    pub check_interval: Option<HumanDuration>,
}

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
    pub fn name(self) -> &'static str {
        match self {
            LbKind::None => "none",
            LbKind::Haproxy => "haproxy",
            LbKind::Elbv2 => "elbv2",
            LbKind::Consul => "consul",
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

impl LbConfig {
    pub const DEFAULT_DRAIN_TIMEOUT: HumanDuration = HumanDuration::from_secs(30);

    pub fn drain_timeout(&self) -> std::time::Duration {
        self.drain_timeout.unwrap_or(Self::DEFAULT_DRAIN_TIMEOUT).get()
    }

    /// Every problem that can be seen before the instance's facts are known, each naming its key.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let kind = self.kind;
        let keys: [(&str, bool, &[LbKind]); 16] = [
            (
                "drain_timeout",
                self.drain_timeout.is_some(),
                &[LbKind::Haproxy, LbKind::Elbv2, LbKind::Consul],
            ),
            ("socket", self.socket.is_some(), &[LbKind::Haproxy]),
            ("backend", self.backend.is_some(), &[LbKind::Haproxy]),
            (
                "server",
                self.server.is_some(),
                &[LbKind::Haproxy, LbKind::Consul],
            ),
            (
                "address",
                self.address.is_some(),
                &[LbKind::Haproxy, LbKind::Consul],
            ),
            ("options", self.options.is_some(), &[LbKind::Haproxy]),
            (
                "target_group_arn",
                self.target_group_arn.is_some(),
                &[LbKind::Elbv2],
            ),
            ("target_type", self.target_type.is_some(), &[LbKind::Elbv2]),
            ("port", self.port.is_some(), &[LbKind::Elbv2]),
            ("endpoint", self.endpoint.is_some(), &[LbKind::Elbv2]),
            ("imds_endpoint", self.imds_endpoint.is_some(), &[LbKind::Elbv2]),
            ("agent", self.agent.is_some(), &[LbKind::Consul]),
            ("service", self.service.is_some(), &[LbKind::Consul]),
            ("tags", self.tags.is_some(), &[LbKind::Consul]),
            ("check_url", self.check_url.is_some(), &[LbKind::Consul]),
            ("check_interval", self.check_interval.is_some(), &[LbKind::Consul]),
        ];
        for (key, set, kinds) in keys {
            if set && !kinds.contains(&kind) {
                let owners: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                problems.push(format!(
                    "[lb] {key} is a key of kind = {}, but kind = {:?}",
                    owners.join(" or "),
                    kind.name()
                ));
            }
        }
        if let Some(d) = self.drain_timeout
            && (d.get().is_zero() || d.get() > std::time::Duration::from_secs(3600))
        {
            problems.push(format!(
                "[lb] drain_timeout = \"{d}\": must be between 1ms and 1h"
            ));
        }
        let templates = [
            ("server", &self.server),
            ("address", &self.address),
            ("endpoint", &self.endpoint),
            ("check_url", &self.check_url),
        ];
        for (key, value) in templates {
            if let Some(value) = value
                && let Err(e) = check_template(value)
            {
                problems.push(format!("[lb] {key} = {value:?}: {e}"));
            }
        }
        match kind {
            LbKind::None => {}
            LbKind::Haproxy => self.check_haproxy(&mut problems),
            LbKind::Elbv2 => self.check_elbv2(&mut problems),
            LbKind::Consul => self.check_consul(&mut problems),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn check_haproxy(&self, problems: &mut Vec<String>) {
        match require("socket", &self.socket) {
            Err(e) => problems.push(e),
            Ok(socket) if !(socket.starts_with('/') || socket.starts_with("tcp:")) => problems.push(format!(
                "[lb] socket = {socket:?}: give an absolute path or tcp:HOST:PORT"
            )),
            Ok(socket) => {
                if let Some(tcp) = socket.strip_prefix("tcp:")
                    && let Err(e) = split_host_port(tcp)
                {
                    problems.push(format!("[lb] socket = {socket:?}: {e}"));
                }
            }
        }
        match require("backend", &self.backend) {
            Err(e) => problems.push(e),
            Ok(backend) => {
                if let Err(e) = check_name(backend) {
                    problems.push(format!("[lb] backend = {backend:?}: {e}"));
                }
            }
        }
        self.check_address(problems);
        if let Some(options) = &self.options
            && let Some(bad) = options.chars().find(|c| matches!(c, ';' | '\n' | '\r'))
        {
            problems.push(format!(
                "[lb] options = {options:?}: {bad:?} would end the runtime API command"
            ));
        }
    }

    fn check_elbv2(&self, problems: &mut Vec<String>) {
        match require("target_group_arn", &self.target_group_arn) {
            Err(e) => problems.push(e),
            Ok(arn) => {
                if let Err(e) = arn_region(arn) {
                    problems.push(format!("[lb] target_group_arn = {arn:?}: {e}"));
                }
            }
        }
        for (key, url) in [
            ("endpoint", &self.endpoint),
            ("imds_endpoint", &self.imds_endpoint),
        ] {
            if let Some(url) = url
                && let Err(e) = check_url(url)
            {
                problems.push(format!("[lb] {key} = {url:?}: {e}"));
            }
        }
        if self.port == Some(0) {
            problems.push("[lb] port = 0: give the port the target listens on".into());
        }
    }

    fn check_consul(&self, problems: &mut Vec<String>) {
        match require("service", &self.service) {
            Err(e) => problems.push(e),
            Ok(service) => {
                if let Err(e) = check_name(service) {
                    problems.push(format!("[lb] service = {service:?}: {e}"));
                }
            }
        }
        self.check_address(problems);
        for (key, url) in [("agent", &self.agent), ("check_url", &self.check_url)] {
            if let Some(url) = url
                && let Err(e) = check_url(url)
            {
                problems.push(format!("[lb] {key} = {url:?}: {e}"));
            }
        }
        if let Some(i) = self.check_interval
            && i.get() < std::time::Duration::from_secs(1)
        {
            problems.push(format!("[lb] check_interval = \"{i}\": Consul needs at least 1s"));
        }
    }

    /// haproxy and consul: `address` is required and is `HOST:PORT`.
    fn check_address(&self, problems: &mut Vec<String>) {
        match require("address", &self.address) {
            Err(e) => problems.push(e),
            Ok(address) => {
                if let Err(e) = split_host_port(address) {
                    problems.push(format!("[lb] address = {address:?}: {e}"));
                }
            }
        }
    }
}

fn require<'a>(key: &str, value: &'a Option<String>) -> Result<&'a str, String> {
    match value.as_deref() {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(format!("[lb] {key} is required for this kind")),
    }
}

/// Only known `{placeholders}`, and braces that close.
fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('{') {
        if before.contains('}') {
            return Err("a '}' has no '{'".into());
        }
        let (key, tail) = after.split_once('}').ok_or("a '{' is not closed")?;
        if !TEMPLATE_KEYS.contains(&key) {
            return Err(format!(
                "unknown placeholder {{{key}}}; known: {}",
                TEMPLATE_KEYS.map(|k| format!("{{{k}}}")).join(", ")
            ));
        }
        rest = tail;
    }
    if rest.contains('}') {
        return Err("a '}' has no '{'".into());
    }
    Ok(())
}

/// A name the HAProxy runtime API and Consul take as one word.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err("use 1 to 128 letters, digits, '-', '_', '.' or ':'".into());
    }
    Ok(())
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

/// The region field of a target group ARN
/// (`arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID`), every field checked
/// against AWS's grammar by [`crate::aws::TargetGroupArn`] (the region picks the API's host).
pub fn arn_region(arn: &str) -> Result<&str, String> {
    crate::aws::TargetGroupArn::parse(arn)?;
    arn.split(':')
        .nth(3)
        .ok_or_else(|| "not a target group ARN".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LbConfig, String> {
        let c: LbConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check().map_err(|problems| problems.join("\n"))?;
        Ok(c)
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
        assert_eq!(c.kind, LbKind::Haproxy);
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
        assert_eq!(
            arn_region(
                "arn:aws:elasticloadbalancing:eu-west-3:123456789012:targetgroup/app/73e2d6bc24d8a067"
            )
            .unwrap(),
            "eu-west-3"
        );
    }
}
