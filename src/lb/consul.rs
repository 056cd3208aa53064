//! Consul through the local agent's HTTP API.
//!
//! Joining registers the service with an HTTP check on kiln's `/readyz` (passing from the start:
//! kiln only registers when ready), replacing what an earlier run left, and clears maintenance.
//! Leaving puts the service in maintenance (consumers drop it), waits the drain, then
//! deregisters. `CONSUL_HTTP_TOKEN` in kiln's environment is sent as the ACL token.
//!
//! [`ConsulApi`] is the one client of the agent's HTTP API: the registrar writes through it,
//! `kiln fleet` reads the service's health through it (`/v1/health/service/<name>`).

use super::{DrainProgress, LbError, Registrar, http_client, render, value_or};
use crate::config::{HealthConfig, LbConfig};
use crate::http_client::root_cause;
use crate::metadata::InstanceFacts;
use std::time::{Duration, Instant};

pub const DEFAULT_AGENT: &str = "http://127.0.0.1:8500";
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// A client of one Consul agent's HTTP API, sending `CONSUL_HTTP_TOKEN` as the ACL token.
pub struct ConsulApi {
    http: reqwest::Client,
    agent: String,
    token: Option<String>,
}

impl ConsulApi {
    /// `agent` is the base URL, e.g. `http://127.0.0.1:8500`.
    pub fn new(agent: &str) -> Result<ConsulApi, LbError> {
        Ok(ConsulApi {
            http: http_client()?,
            agent: agent.trim_end_matches('/').to_string(),
            token: std::env::var("CONSUL_HTTP_TOKEN").ok().filter(|t| !t.is_empty()),
        })
    }

    pub fn agent(&self) -> &str {
        &self.agent
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.agent));
        match &self.token {
            Some(token) => request.header("X-Consul-Token", token),
            None => request,
        }
    }

    fn fail(&self, method: &str, path: &str, why: String) -> LbError {
        let route = path.split('?').next().unwrap_or(path);
        LbError(format!("consul agent at {}: {method} {route}: {why}", self.agent))
    }

    /// `PUT` to the agent; Ok(true) on 2xx, Ok(false) on 404, else an error with the answer.
    async fn put(&self, path: &str, body: Option<&serde_json::Value>) -> Result<bool, LbError> {
        let mut request = self.request(reqwest::Method::PUT, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.fail("PUT", path, root_cause(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(true);
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        Err(self.fail("PUT", path, answer_line(status, response).await))
    }

    /// Every instance of `service` in the catalog with its health, as
    /// `GET /v1/health/service/<service>` gives it (all of them, passing or not).
    pub async fn service_health(&self, service: &str) -> Result<Vec<ServiceHealth>, LbError> {
        let path = format!("/v1/health/service/{service}");
        let response = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .map_err(|e| self.fail("GET", &path, root_cause(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.fail("GET", &path, answer_line(status, response).await));
        }
        let entries: Vec<HealthEntry> = response
            .json()
            .await
            .map_err(|e| self.fail("GET", &path, format!("not a health list: {}", root_cause(&e))))?;
        Ok(entries.into_iter().map(ServiceHealth::from).collect())
    }
}

/// The status line and the first line of the body, for an error message.
async fn answer_line(status: reqwest::StatusCode, response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let text = text
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(300)
        .collect::<String>();
    format!("{status}: {text}")
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
    pub fn new(
        lb: &LbConfig,
        health: &HealthConfig,
        facts: &InstanceFacts,
    ) -> Result<ConsulRegistrar, LbError> {
        let service = lb
            .service
            .clone()
            .ok_or_else(|| LbError("[lb] service is required".into()))?;
        let id = render("server", value_or(&lb.server, "{instance_id}"), facts)?;
        crate::config::lb::check_name(&id)
            .map_err(|e| LbError(format!("[lb] server = {id:?} (rendered): {e}")))?;
        let address = render("address", value_or(&lb.address, ""), facts)?;
        let (host, port) = crate::config::lb::split_host_port(&address)
            .map_err(|e| LbError(format!("[lb] address = {address:?} (rendered): {e}")))?;
        let check_url = match &lb.check_url {
            Some(t) => render("check_url", t, facts)?,
            None => default_check_url(health.listen),
        };
        let interval = lb
            .check_interval
            .map(|i| i.get())
            .unwrap_or(DEFAULT_CHECK_INTERVAL);
        let interval = humantime::format_duration(interval).to_string().replace(' ', "");
        let registration = serde_json::json!({
            "ID": id,
            "Name": service,
            "Address": host.trim_start_matches('[').trim_end_matches(']'),
            "Port": port,
            "Tags": lb.tags.clone().unwrap_or_default(),
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
            api: ConsulApi::new(value_or(&lb.agent, DEFAULT_AGENT))?,
            id,
            registration,
        })
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
        let registered = self
            .api
            .put(
                "/v1/agent/service/register?replace-existing-checks=true",
                Some(&self.registration),
            )
            .await?;
        if !registered {
            return Err(LbError(format!(
                "consul agent at {}: PUT /v1/agent/service/register: 404 (is this a Consul agent?)",
                self.api.agent()
            )));
        }
        // An earlier run may have left the service in maintenance.
        self.api
            .put(
                &format!("/v1/agent/service/maintenance/{}?enable=false", self.id),
                None,
            )
            .await?;
        Ok(())
    }

    async fn deregister(&self) -> Result<(), LbError> {
        let path = format!(
            "/v1/agent/service/maintenance/{}?enable=true&reason=kiln%20draining",
            self.id
        );
        self.api.put(&path, None).await.map(|_| ())
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
        self.api
            .put(&format!("/v1/agent/service/deregister/{}", self.id), None)
            .await
            .map(|_| ())
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
}
