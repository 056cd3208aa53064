//! Consul through the local agent's HTTP API.
//!
//! Joining registers the service with an HTTP check on kiln's `/readyz` (passing from the start:
//! kiln only registers when ready), replacing what an earlier run left, and clears maintenance.
//! Leaving puts the service in maintenance (consumers drop it), waits the drain, then
//! deregisters. `CONSUL_HTTP_TOKEN` in kiln's environment is sent as the ACL token.
//!
//! [`ConsulApi`] is the one client of the agent's HTTP API: the registrar writes through it,
//! `kiln fleet` reads the service's health through it (`/v1/health/service/<name>`).

use super::{DrainProgress, LbError, Registrar, fill};
use crate::config::HealthConfig;
use crate::config::lb::{ConsulPlan, LbName, split_host_port};
use crate::metadata::InstanceFacts;
use crate::net::{read_body, root_cause};
use reqwest::Url;
use std::time::{Duration, Instant};

/// A health list of a large fleet is a few megabytes; more is not an answer to keep.
const HEALTH_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// Of an error answer, kiln shows one line.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A client of one Consul agent's HTTP API, sending `CONSUL_HTTP_TOKEN` as the ACL token.
pub struct ConsulApi {
    http: reqwest::Client,
    /// The agent's base URL (it may carry a path).
    base: Url,
    /// The same, as given, for messages.
    agent: String,
    token: Option<String>,
}

/// A route of the agent's API: fixed segments, then the name of a service or its ID if any
/// (an encoded path segment of its own), and a query.
struct Route<'a> {
    segments: &'a [&'a str],
    name: Option<&'a str>,
    query: &'a [(&'a str, &'a str)],
}

impl Route<'_> {
    /// `/v1/agent/service/maintenance/i-0abc`, for messages.
    fn path(&self) -> String {
        let name = self.name.map(|n| format!("/{n}")).unwrap_or_default();
        format!("/{}{name}", self.segments.join("/"))
    }
}

impl ConsulApi {
    /// `agent` is the base URL, e.g. `http://127.0.0.1:8500`.
    pub fn new(agent: &str) -> Result<ConsulApi, LbError> {
        let base = Url::parse(agent)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| LbError("consul: the agent is not an http(s) URL".into()))?;
        Ok(ConsulApi {
            http: crate::net::client::api().map_err(LbError)?,
            base,
            agent: agent.trim_end_matches('/').to_string(),
            token: std::env::var("CONSUL_HTTP_TOKEN").ok().filter(|t| !t.is_empty()),
        })
    }

    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The URL of `route`: the name percent-encoded as one segment, so it can neither add a
    /// segment nor leave the route; `.` and `..`, which URLs resolve away, are refused.
    fn url(&self, route: &Route<'_>) -> Result<Url, LbError> {
        if let Some(name) = route.name {
            path_name(name).map_err(|e| LbError(format!("consul: {e}")))?;
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| LbError("consul: the agent is not a base URL".into()))?
            .pop_if_empty()
            .extend(route.segments)
            .extend(route.name);
        if !route.query.is_empty() {
            url.query_pairs_mut().extend_pairs(route.query);
        }
        Ok(url)
    }

    /// A request to the agent, answered within [`crate::net::API_REQUEST_TIMEOUT`] (a hung agent
    /// is an error the membership retries, not a stuck boot or stop).
    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, url)
            .timeout(crate::net::API_REQUEST_TIMEOUT);
        match &self.token {
            Some(token) => request.header("X-Consul-Token", token),
            None => request,
        }
    }

    fn fail(&self, method: &str, route: &Route<'_>, why: String) -> LbError {
        LbError(format!(
            "consul agent at {}: {method} {}: {why}",
            self.agent,
            route.path()
        ))
    }

    /// `PUT` to the agent; Ok(true) on 2xx, Ok(false) on 404, else an error with the answer.
    async fn put(&self, route: &Route<'_>, body: Option<&serde_json::Value>) -> Result<bool, LbError> {
        let mut request = self.request(reqwest::Method::PUT, self.url(route)?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.fail("PUT", route, root_cause(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(true);
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        Err(self.fail("PUT", route, answer_line(status, response).await))
    }

    /// Any route of the agent's API (the KV store and sessions, for once-per-fleet tasks):
    /// `segments` each percent-encoded as one path segment (none may be empty, `.` or `..`), the
    /// answer's status and at most `limit` bytes of its body, within
    /// [`crate::net::API_REQUEST_TIMEOUT`]. An error is the agent unreachable or silent.
    pub async fn send(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<String>,
        limit: usize,
    ) -> Result<crate::net::Answer, LbError> {
        let route = Route {
            segments,
            name: None,
            query,
        };
        if let Some(bad) = segments.iter().find(|s| path_name(s).is_err()) {
            return Err(self.fail(
                method.as_str(),
                &route,
                format!("{bad:?} cannot be a path segment"),
            ));
        }
        let mut request = self.request(method.clone(), self.url(&route)?);
        if let Some(body) = body {
            request = request.body(body);
        }
        crate::net::exchange(request, crate::net::API_REQUEST_TIMEOUT, limit)
            .await
            .map_err(|why| self.fail(method.as_str(), &route, why))
    }

    /// Every instance of `service` in the catalog with its health, as
    /// `GET /v1/health/service/<service>` gives it (all of them, passing or not).
    pub async fn service_health(&self, service: &str) -> Result<Vec<ServiceHealth>, LbError> {
        let path = &Route {
            segments: &["v1", "health", "service"],
            name: Some(service),
            query: &[],
        };
        let response = self
            .request(reqwest::Method::GET, self.url(path)?)
            .send()
            .await
            .map_err(|e| self.fail("GET", path, root_cause(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.fail("GET", path, answer_line(status, response).await));
        }
        let mut response = response;
        let body = read_body(&mut response, HEALTH_BODY_LIMIT)
            .await
            .map_err(|e| self.fail("GET", path, e.to_string()))?;
        let entries: Vec<HealthEntry> = serde_json::from_slice(&body).map_err(|e| {
            let why = format!(
                "not a health list: {}",
                crate::terminal::peer_word(&e.to_string())
            );
            self.fail("GET", path, why)
        })?;
        Ok(entries.into_iter().map(ServiceHealth::from).collect())
    }
}

/// The status line and the first line of the body, for an error message, as a peer's text is
/// kept ([`crate::terminal::peer_text`]: bounded, control characters escaped).
async fn answer_line(status: reqwest::StatusCode, mut response: reqwest::Response) -> String {
    let body = read_body(&mut response, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let first = text.lines().next().unwrap_or("").trim();
    format!("{status}: {}", crate::terminal::peer_text(first))
}

/// One instance of a service and its aggregated health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    /// The service ID (kiln registers `[lb] server`, `{instance_id}` by default).
    pub id: String,
    /// The service's address, or its node's when the service has none (as Consul's DNS does).
    pub address: String,
    pub port: u16,
    /// `passing`, `warning`, `critical` or `maintenance` (the worst check wins).
    pub status: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    node: HealthNode,
    service: HealthService,
    #[serde(default)]
    checks: Vec<HealthCheck>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthNode {
    #[serde(default)]
    address: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthService {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthCheck {
    #[serde(rename = "CheckID")]
    check_id: String,
    status: String,
}

impl From<HealthEntry> for ServiceHealth {
    fn from(e: HealthEntry) -> ServiceHealth {
        let maintenance = e
            .checks
            .iter()
            .any(|c| c.check_id.starts_with("_service_maintenance:") || c.check_id == "_node_maintenance");
        let worst = |status: &str| e.checks.iter().any(|c| c.status == status);
        let status = if maintenance {
            "maintenance"
        } else if worst("critical") {
            "critical"
        } else if worst("warning") {
            "warning"
        } else {
            "passing"
        };
        ServiceHealth {
            id: e.service.id,
            address: if e.service.address.is_empty() {
                e.node.address
            } else {
                e.service.address
            },
            port: e.service.port,
            status: status.into(),
        }
    }
}

pub struct ConsulRegistrar {
    api: ConsulApi,
    id: String,
    registration: serde_json::Value,
}

impl ConsulRegistrar {
    /// The service instance `plan` describes, its ID, address and check URL filled from the
    /// instance's facts.
    pub fn new(
        plan: &ConsulPlan,
        health: &HealthConfig,
        facts: &InstanceFacts,
    ) -> Result<ConsulRegistrar, LbError> {
        let id = fill("server", &plan.server, facts)?;
        LbName::parse(&id)
            .and_then(|_| path_name(&id))
            .map_err(|e| LbError(format!("[lb] server = {id:?} (rendered): {e}")))?;
        let address = fill("address", plan.address.template(), facts)?;
        let (host, port) = split_host_port(&address)
            .map_err(|e| LbError(format!("[lb] address = {address:?} (rendered): {e}")))?;
        let check_url = match &plan.check_url {
            Some(t) => fill("check_url", t, facts)?,
            None => default_check_url(health.listen),
        };
        let interval = plan.check_interval;
        let interval = humantime::format_duration(interval).to_string().replace(' ', "");
        let registration = serde_json::json!({
            "ID": id,
            "Name": plan.service.as_str(),
            "Address": host.trim_start_matches('[').trim_end_matches(']'),
            "Port": port,
            "Tags": plan.tags,
            "Meta": { "registered_by": "kiln" },
            "Check": {
                "CheckID": format!("service:{id}"),
                "Name": "kiln /readyz",
                "HTTP": check_url,
                "Method": "GET",
                "Interval": interval,
                "Timeout": interval,
                "Status": "passing",
            },
        });
        Ok(ConsulRegistrar {
            api: ConsulApi::new(&plan.agent)?,
            id,
            registration,
        })
    }
}

impl ConsulRegistrar {
    /// `/v1/agent/service/maintenance/<id>?<query>`.
    fn maintenance<'a>(&'a self, query: &'a [(&'a str, &'a str)]) -> Route<'a> {
        Route {
            segments: &["v1", "agent", "service", "maintenance"],
            name: Some(&self.id),
            query,
        }
    }
}

/// A service name or ID as one path segment: `.` and `..` would be resolved away by the URL
/// (`/maintenance/..` is `/service/`), whatever the encoding.
fn path_name(name: &str) -> Result<(), String> {
    match name {
        "" | "." | ".." => Err("a service name or ID of \"\", \".\" or \"..\" cannot name a route".into()),
        _ => Ok(()),
    }
}

/// kiln's `/readyz` as the local agent reaches it.
fn default_check_url(listen: std::net::SocketAddr) -> String {
    let port = listen.port();
    match listen.ip() {
        ip if ip.is_unspecified() || ip.is_loopback() => format!("http://127.0.0.1:{port}/readyz"),
        ip => format!("http://{}/readyz", std::net::SocketAddr::new(ip, port)),
    }
}

#[async_trait::async_trait]
impl Registrar for ConsulRegistrar {
    fn kind(&self) -> &'static str {
        "consul"
    }

    fn describe(&self) -> String {
        let r = &self.registration;
        format!(
            "{}/{} ({}:{}) at {}",
            r["Name"].as_str().unwrap_or(""),
            self.id,
            r["Address"].as_str().unwrap_or(""),
            r["Port"],
            self.api.agent()
        )
    }

    async fn register(&self) -> Result<(), LbError> {
        let register = Route {
            segments: &["v1", "agent", "service", "register"],
            name: None,
            query: &[("replace-existing-checks", "true")],
        };
        let registered = self.api.put(&register, Some(&self.registration)).await?;
        if !registered {
            return Err(LbError(format!(
                "consul agent at {}: PUT /v1/agent/service/register: 404 (is this a Consul agent?)",
                self.api.agent()
            )));
        }
        // An earlier run may have left the service in maintenance.
        self.api
            .put(&self.maintenance(&[("enable", "false")]), None)
            .await?;
        Ok(())
    }

    async fn deregister(&self) -> Result<(), LbError> {
        let maintenance = self.maintenance(&[("enable", "true"), ("reason", "kiln draining")]);
        self.api.put(&maintenance, None).await.map(|_| ())
    }

    /// Consul cannot see requests: the drain is the whole of `drain_timeout`.
    async fn wait_drained(
        &self,
        deadline: Instant,
        progress: &(dyn Fn(DrainProgress) + Send + Sync),
    ) -> Result<(), LbError> {
        while Instant::now() < deadline {
            progress(String::from("in maintenance, waiting out drain_timeout").into());
            tokio::time::sleep(
                Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        Ok(())
    }

    async fn remove(&self) -> Result<(), LbError> {
        let deregister = Route {
            segments: &["v1", "agent", "service", "deregister"],
            name: Some(&self.id),
            query: &[],
        };
        self.api.put(&deregister, None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_check_wins_and_maintenance_beats_all() {
        let entries: Vec<HealthEntry> = serde_json::from_str(
            r#"[{"Node":{"Node":"n1","Address":"10.0.0.9"},
                 "Service":{"ID":"i-1","Service":"app","Address":"","Port":8080},
                 "Checks":[{"CheckID":"serfHealth","Status":"passing"},
                           {"CheckID":"service:i-1","Status":"warning"}]},
                {"Node":{"Node":"n2","Address":"10.0.0.8"},
                 "Service":{"ID":"i-2","Service":"app","Address":"10.0.0.2","Port":8080},
                 "Checks":[{"CheckID":"service:i-2","Status":"critical"},
                           {"CheckID":"_service_maintenance:i-2","Status":"critical"}]}]"#,
        )
        .unwrap();
        let health: Vec<ServiceHealth> = entries.into_iter().map(ServiceHealth::from).collect();
        assert_eq!(
            (health[0].address.as_str(), health[0].status.as_str()),
            ("10.0.0.9", "warning"),
            "no service address: the node's"
        );
        assert_eq!(
            (health[1].address.as_str(), health[1].status.as_str()),
            ("10.0.0.2", "maintenance")
        );
    }

    #[test]
    fn the_check_reaches_readyz_where_kiln_listens() {
        assert_eq!(
            default_check_url("0.0.0.0:9100".parse().unwrap()),
            "http://127.0.0.1:9100/readyz"
        );
        assert_eq!(
            default_check_url("10.0.0.5:9100".parse().unwrap()),
            "http://10.0.0.5:9100/readyz"
        );
    }

    #[test]
    fn names_are_one_encoded_segment_and_dot_segments_are_refused() {
        let api = ConsulApi::new("http://127.0.0.1:8500/prefix/").unwrap();
        let route = |name| Route {
            segments: &["v1", "agent", "service", "maintenance"],
            name: Some(name),
            query: &[("enable", "true"), ("reason", "kiln draining")],
        };
        assert_eq!(
            api.url(&route("i-0abc")).unwrap().as_str(),
            "http://127.0.0.1:8500/prefix/v1/agent/service/maintenance/i-0abc?enable=true&reason=kiln+draining"
        );
        assert_eq!(
            api.url(&route("a/../b?x#y")).unwrap().path(),
            "/prefix/v1/agent/service/maintenance/a%2F..%2Fb%3Fx%23y"
        );
        for dots in ["..", ".", ""] {
            assert!(api.url(&route(dots)).is_err(), "{dots:?}");
        }
        assert!(ConsulApi::new("127.0.0.1:8500").is_err());
    }
}
