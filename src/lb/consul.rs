//! Consul through the local agent's HTTP API.
//!
//! Joining registers the service with an HTTP check on kiln's `/readyz` (passing from the start:
//! kiln only registers when ready), replacing what an earlier run left, and clears maintenance.
//! Leaving puts the service in maintenance (consumers drop it), waits the drain, then
//! deregisters. `CONSUL_HTTP_TOKEN` in kiln's environment is sent as the ACL token.

use super::{LbError, Registrar, http_client, render, value_or};
use crate::config::{HealthConfig, LbConfig};
use crate::http_client::root_cause;
use crate::metadata::InstanceFacts;
use std::time::{Duration, Instant};

const DEFAULT_AGENT: &str = "http://127.0.0.1:8500";
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

pub struct ConsulRegistrar {
    http: reqwest::Client,
    agent: String,
    token: Option<String>,
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
            http: http_client()?,
            agent: value_or(&lb.agent, DEFAULT_AGENT)
                .trim_end_matches('/')
                .to_string(),
            token: std::env::var("CONSUL_HTTP_TOKEN").ok().filter(|t| !t.is_empty()),
            id,
            registration,
        })
    }

    /// `PUT` to the agent; Ok(true) on 2xx, Ok(false) on 404, else an error with the answer.
    async fn put(&self, path: &str, body: Option<&serde_json::Value>) -> Result<bool, LbError> {
        let route = path.split('?').next().unwrap_or(path);
        let mut request = self.http.put(format!("{}{path}", self.agent));
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let fail = |why: String| LbError(format!("consul agent at {}: PUT {route}: {why}", self.agent));
        let response = request.send().await.map_err(|e| fail(root_cause(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(true);
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let text = response.text().await.unwrap_or_default();
        let text = text
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .chars()
            .take(300)
            .collect::<String>();
        Err(fail(format!("{status}: {text}")))
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
            self.agent
        )
    }

    async fn register(&self) -> Result<(), LbError> {
        let registered = self
            .put(
                "/v1/agent/service/register?replace-existing-checks=true",
                Some(&self.registration),
            )
            .await?;
        if !registered {
            return Err(LbError(format!(
                "consul agent at {}: PUT /v1/agent/service/register: 404 (is this a Consul agent?)",
                self.agent
            )));
        }
        // An earlier run may have left the service in maintenance.
        self.put(
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
        self.put(&path, None).await.map(|_| ())
    }

    /// Consul cannot see requests: the drain is the whole of `drain_timeout`.
    async fn wait_drained(
        &self,
        deadline: Instant,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), LbError> {
        while Instant::now() < deadline {
            progress("in maintenance, waiting out drain_timeout".into());
            tokio::time::sleep(
                Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        Ok(())
    }

    async fn remove(&self) -> Result<(), LbError> {
        self.put(&format!("/v1/agent/service/deregister/{}", self.id), None)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
