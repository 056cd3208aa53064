//! `[metrics]`: `GET /metrics` for Prometheus on an address of its own. Without the section kiln
//! opens no metrics port.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` is served: not the health port's address (`serve::metrics` says why).
    pub listen: SocketAddr,
}

impl MetricsConfig {
    /// Every problem, each naming its key; `health` and `agent` are the other listeners.
    pub fn check(&self, health: SocketAddr, agent: Option<SocketAddr>) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (key, other) in [
            ("[health] listen", Some(health)),
            ("[health] agent_listen", agent),
        ] {
            if other.is_some_and(|other| same_port(other, self.listen)) {
                problems.push(format!(
                    "listen = \"{}\": the same port as {key}; /metrics needs an address of its own",
                    self.listen
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Two listeners on the same port clash when either takes every address (`0.0.0.0`, `::`) or
/// both take the same one. Port 0 is any free port: never a clash.
pub(super) fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> MetricsConfig {
        MetricsConfig {
            listen: listen.parse().unwrap(),
        }
    }

    #[test]
    fn the_port_of_another_listener_is_refused_naming_both_keys() {
        let health: SocketAddr = "0.0.0.0:9100".parse().unwrap();
        let agent: SocketAddr = "127.0.0.1:9101".parse().unwrap();
        assert_eq!(config("127.0.0.1:9102").check(health, Some(agent)), Ok(()));
        assert_eq!(config("10.0.0.5:9101").check(health, Some(agent)), Ok(()));
        assert_eq!(
            config("127.0.0.1:9100").check(health, Some(agent)),
            Err(vec![
                "listen = \"127.0.0.1:9100\": the same port as [health] listen; /metrics needs an address of its own".to_string()
            ])
        );
        assert!(config("0.0.0.0:9101").check(health, Some(agent)).is_err());
    }
}
