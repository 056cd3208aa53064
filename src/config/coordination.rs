//! `[coordination]`: the store where a once-per-fleet task (`[[task]] once = "fleet"`) takes its
//! lease, one the fleet already trusts: a DynamoDB table, or the local Consul agent's KV store.
//!
//! Read as `[lb]` is: serde reads the table as written ([`CoordinationTable`]), then
//! [`CoordinationTable::check`] makes it a [`Coordination`] (the store as a typed variant, its
//! names checked), listing every problem at once; the keys of the other store are errors.

use super::HumanDuration;
use super::url::check_http_url;
use crate::aws_names::Region;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[coordination]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinationTable {
    /// `dynamodb` or `consul`.
    store: StoreKind,
    /// dynamodb: the table, with a string partition key `pk` (created by you, not by kiln).
    table: Option<String>,
    /// dynamodb: its region; default the instance's.
    region: Option<String>,
    /// dynamodb: the API endpoint (override); else `AWS_ENDPOINT_URL_DYNAMODB`,
    /// `AWS_ENDPOINT_URL`, then `https://dynamodb.{region}.amazonaws.com`.
    endpoint: Option<String>,
    /// consul: the local agent's HTTP API (default `http://127.0.0.1:8500`).
    agent: Option<String>,
    /// The first part of every lease's key (DynamoDB `pk`, Consul KV key): `kiln/tasks` by
    /// default; one per app when several share a table or a cluster.
    key_prefix: Option<String>,
    /// How long a lease lives without renewal: the holder renews it every third of it, and the
    /// others take over this long after the holder died.
    lease_ttl: Option<HumanDuration>,
    /// How often an instance waiting for the holder reads the lease's record.
    poll_interval: Option<HumanDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum StoreKind {
    Dynamodb,
    Consul,
}

/// `[coordination]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordination {
    pub store: Store,
    /// `/`-separated words of `A-Z a-z 0-9 . _ -`, no `.` or `..` alone.
    pub key_prefix: String,
    pub lease_ttl: Duration,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    DynamoDb {
        table: String,
        /// None: the instance's region.
        region: Option<Region>,
        /// May use `{region}`.
        endpoint: Option<String>,
    },
    Consul {
        agent: String,
    },
}

impl Coordination {
    pub const DEFAULT_KEY_PREFIX: &str = "kiln/tasks";
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_CONSUL_AGENT: &str = "http://127.0.0.1:8500";
    /// The shortest lease: a renewal every third of it must get through a slow network.
    pub const LEASE_TTL_MIN: Duration = Duration::from_secs(1);
    /// Consul refuses a session TTL outside 10s..24h.
    pub const CONSUL_TTL: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(86_400));
    pub const POLL_INTERVAL_MIN: Duration = Duration::from_millis(100);

    /// `dynamodb table kiln-tasks` or `consul agent http://127.0.0.1:8500`, for messages.
    pub fn describe(&self) -> String {
        match &self.store {
            Store::DynamoDb { table, .. } => format!("dynamodb table {table}"),
            Store::Consul { agent } => format!("consul agent {agent}"),
        }
    }
}

impl CoordinationTable {
    /// The store this table names, or every problem, each naming its key (`[coordination]` is
    /// put in front by the caller).
    pub fn check(&self) -> Result<Coordination, Vec<String>> {
        let mut problems = Vec::new();
        self.keys_of_the_other_store(&mut problems);
        let store = match self.store {
            StoreKind::Dynamodb => self.dynamodb(&mut problems),
            StoreKind::Consul => self.consul(&mut problems),
        };
        let key_prefix = self
            .key_prefix
            .clone()
            .unwrap_or_else(|| Coordination::DEFAULT_KEY_PREFIX.into());
        if let Err(e) = check_key_prefix(&key_prefix) {
            problems.push(format!("key_prefix = {key_prefix:?}: {e}"));
        }
        let (lease_ttl, poll_interval) = self.timings(&mut problems);
        match store {
            Some(store) if problems.is_empty() => Ok(Coordination {
                store,
                key_prefix,
                lease_ttl,
                poll_interval,
            }),
            _ => Err(problems),
        }
    }

    fn keys_of_the_other_store(&self, problems: &mut Vec<String>) {
        let (other, keys) = match self.store {
            StoreKind::Dynamodb => ("consul", vec![("agent", self.agent.is_some())]),
            StoreKind::Consul => (
                "dynamodb",
                vec![
                    ("table", self.table.is_some()),
                    ("region", self.region.is_some()),
                    ("endpoint", self.endpoint.is_some()),
                ],
            ),
        };
        for (key, _) in keys.iter().filter(|(_, set)| *set) {
            problems.push(format!("{key} is a key of store = \"{other}\""));
        }
    }

    fn dynamodb(&self, problems: &mut Vec<String>) -> Option<Store> {
        let table = match self.table.as_deref() {
            None => {
                problems.push("table is required with store = \"dynamodb\"".into());
                None
            }
            Some(t) => match check_table_name(t) {
                Ok(()) => Some(t.to_string()),
                Err(e) => {
                    problems.push(format!("table = {t:?}: {e}"));
                    None
                }
            },
        };
        let region = match self.region.as_deref().map(Region::parse) {
            Some(Err(e)) => {
                problems.push(format!("region: {e}"));
                return None;
            }
            Some(Ok(r)) => Some(r),
            None => None,
        };
        if let Some(endpoint) = &self.endpoint
            && let Err(e) = check_http_url(endpoint)
        {
            problems.push(format!("endpoint = {endpoint:?}: {e}"));
            return None;
        }
        Some(Store::DynamoDb {
            table: table?,
            region,
            endpoint: self.endpoint.clone(),
        })
    }

    fn consul(&self, problems: &mut Vec<String>) -> Option<Store> {
        let agent = self
            .agent
            .clone()
            .unwrap_or_else(|| Coordination::DEFAULT_CONSUL_AGENT.into());
        if agent.contains('{') {
            problems.push(format!("agent = {agent:?}: a fixed URL (no {{placeholders}})"));
            return None;
        }
        if let Err(e) = check_http_url(&agent) {
            problems.push(format!("agent = {agent:?}: {e}"));
            return None;
        }
        Some(Store::Consul { agent })
    }

    /// `lease_ttl` and `poll_interval`, defaults applied; Consul's bounds on a session's TTL.
    fn timings(&self, problems: &mut Vec<String>) -> (Duration, Duration) {
        let ttl = self
            .lease_ttl
            .map_or(Coordination::DEFAULT_LEASE_TTL, HumanDuration::get);
        let poll = self
            .poll_interval
            .map_or(Coordination::DEFAULT_POLL_INTERVAL, HumanDuration::get);
        let shown = |d: Duration| humantime::format_duration(d).to_string();
        let (least, most) = match self.store {
            StoreKind::Dynamodb => (Coordination::LEASE_TTL_MIN, Duration::from_secs(86_400)),
            StoreKind::Consul => Coordination::CONSUL_TTL,
        };
        if ttl < least || ttl > most {
            let why = match self.store {
                StoreKind::Consul => ": Consul takes a session TTL from 10s to 24h",
                StoreKind::Dynamodb => "",
            };
            problems.push(format!(
                "lease_ttl = \"{}\": from \"{}\" to \"{}\"{why}",
                shown(ttl),
                shown(least),
                shown(most)
            ));
        }
        if poll < Coordination::POLL_INTERVAL_MIN || poll >= ttl {
            problems.push(format!(
                "poll_interval = \"{}\": at least \"100ms\" and under lease_ttl (\"{}\")",
                shown(poll),
                shown(ttl)
            ));
        }
        (ttl, poll)
    }
}

/// DynamoDB's table names: 3 to 255 of `A-Z a-z 0-9 _ - .`.
fn check_table_name(name: &str) -> Result<(), String> {
    let ok = (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    match ok {
        true => Ok(()),
        false => Err("a DynamoDB table name is 3 to 255 letters, digits, '_', '-' or '.'".into()),
    }
}

/// Words of `A-Z a-z 0-9 . _ -` joined by single `/`: a Consul KV path kiln never has to
/// escape, and the same in a DynamoDB key.
fn check_key_prefix(prefix: &str) -> Result<(), String> {
    let word = |w: &str| {
        !w.is_empty()
            && !matches!(w, "." | "..")
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    match prefix.len() <= 128 && prefix.split('/').all(word) {
        true => Ok(()),
        false => {
            Err("use words of letters, digits, '.', '_' or '-' joined by '/' (at most 128 characters)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Coordination, Vec<String>> {
        toml::from_str::<CoordinationTable>(text).unwrap().check()
    }

    #[test]
    fn a_dynamodb_table_with_the_defaults() {
        let c = check("store = \"dynamodb\"\ntable = \"kiln-tasks\"\n").unwrap();
        assert_eq!(
            c,
            Coordination {
                store: Store::DynamoDb {
                    table: "kiln-tasks".into(),
                    region: None,
                    endpoint: None
                },
                key_prefix: "kiln/tasks".into(),
                lease_ttl: Duration::from_secs(30),
                poll_interval: Duration::from_secs(2),
            }
        );
        assert_eq!(c.describe(), "dynamodb table kiln-tasks");
    }

    #[test]
    fn a_consul_agent_with_short_timings() {
        let c = check(
            "store = \"consul\"\nagent = \"http://10.0.0.1:8500\"\nkey_prefix = \"shop/once\"\nlease_ttl = \"10s\"\npoll_interval = \"200ms\"\n",
        )
        .unwrap();
        assert_eq!(
            c.store,
            Store::Consul {
                agent: "http://10.0.0.1:8500".into()
            }
        );
        assert_eq!(
            (c.key_prefix.as_str(), c.lease_ttl, c.poll_interval),
            ("shop/once", Duration::from_secs(10), Duration::from_millis(200))
        );
    }

    #[test]
    fn every_problem_names_its_key() {
        assert_eq!(
            check("store = \"dynamodb\"\nagent = \"http://x\"\nregion = \"mars-1\"\n").unwrap_err(),
            [
                "agent is a key of store = \"consul\"",
                "table is required with store = \"dynamodb\"",
                "region: not an AWS region (e.g. eu-west-1)",
            ]
        );
        assert_eq!(
            check("store = \"consul\"\ntable = \"t\"\nlease_ttl = \"2s\"\nkey_prefix = \"a//b\"\n")
                .unwrap_err(),
            [
                "table is a key of store = \"dynamodb\"",
                "key_prefix = \"a//b\": use words of letters, digits, '.', '_' or '-' joined by '/' (at most 128 characters)",
                "lease_ttl = \"2s\": from \"10s\" to \"1day\": Consul takes a session TTL from 10s to 24h",
                "poll_interval = \"2s\": at least \"100ms\" and under lease_ttl (\"2s\")",
            ]
        );
        assert_eq!(
            check("store = \"dynamodb\"\ntable = \"ab\"\nlease_ttl = \"500ms\"\npoll_interval = \"10ms\"\n")
                .unwrap_err(),
            [
                "table = \"ab\": a DynamoDB table name is 3 to 255 letters, digits, '_', '-' or '.'",
                "lease_ttl = \"500ms\": from \"1s\" to \"1day\"",
                "poll_interval = \"10ms\": at least \"100ms\" and under lease_ttl (\"500ms\")",
            ]
        );
        for bad in ["/kiln", "kiln/", "a/../b", "a b", ""] {
            assert!(check_key_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
