//! Hetzner Cloud server metadata: `/hetzner/v1/metadata` (a YAML document), its
//! `private-networks` (a YAML list) and `/hetzner/v1/userdata` (raw). No header.
//!
//! Only top-level `key: value` scalars are read (`instance-id`, `hostname`, `region`,
//! `availability-zone`) and the first private network's `ip`: a hand-written reader of that
//! much YAML rather than a YAML crate (serde_yaml is deprecated; the others cost binary size for
//! four keys). Hetzner labels are not in the metadata: no tags.

use super::client::{Http, Request, text};
use super::{InstanceFacts, MetadataProvider, Result};
use std::collections::BTreeMap;

pub(super) struct Hetzner {
    http: Http,
}

impl Hetzner {
    pub fn new(http: Http) -> Hetzner {
        Hetzner { http }
    }

    async fn yaml(&self, step: &str, path: &str) -> Result<Option<String>> {
        match self.http.get_optional(step, &Request::get(path)).await? {
            Some(body) => Ok(Some(text(&self.http, step, &body)?)),
            None => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl MetadataProvider for Hetzner {
    fn name(&self) -> &'static str {
        "hetzner"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let (doc, networks) = tokio::try_join!(
            self.yaml("metadata", "/hetzner/v1/metadata"),
            self.yaml("private-networks", "/hetzner/v1/metadata/private-networks"),
        )?;
        let doc = doc.ok_or_else(|| self.http.error("metadata", "answered 404 Not Found"))?;
        let mut facts = facts_from(&doc);
        facts.local_ipv4 = networks.as_deref().and_then(first_private_ip);
        Ok(facts)
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let request = Request::get("/hetzner/v1/userdata");
        let body = self.http.get_optional("userdata", &request).await?;
        // A server created without user data answers an empty body.
        Ok(body.filter(|b| !b.is_empty()).map(|b| b.to_vec()))
    }
}

/// The facts among the document's top-level scalars.
pub(super) fn facts_from(yaml: &str) -> InstanceFacts {
    let fields = top_level_scalars(yaml);
    let get = |key: &str| fields.get(key).cloned();
    InstanceFacts {
        provider: "hetzner".into(),
        instance_id: get("instance-id"),
        region: get("region"),
        zone: get("availability-zone"),
        local_ipv4: None,
        hostname: get("hostname"),
    }
}

/// `key: value` lines at column 0 with a plain or quoted scalar; nested blocks, lists and empty
/// values are skipped.
fn top_level_scalars(yaml: &str) -> BTreeMap<String, String> {
    yaml.lines()
        .filter(|line| !line.starts_with([' ', '\t', '-', '#']))
        .filter_map(|line| {
            line.split_once(": ")
                .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
        })
        .map(|(key, value)| (key.trim().to_string(), unquote(value.trim()).to_string()))
        .filter(|(_, value)| !value.is_empty() && !matches!(value.as_str(), "|" | ">" | "[]" | "{}"))
        .collect()
}

/// The `ip` of the first entry of the `private-networks` list (`- ip: 10.0.0.2`).
fn first_private_ip(yaml: &str) -> Option<String> {
    yaml.lines()
        .map(|line| line.trim_start_matches(['-', ' ']))
        .find_map(|line| line.strip_prefix("ip:"))
        .map(|ip| unquote(ip.trim()).to_string())
        .filter(|ip| !ip.is_empty())
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote).and_then(|v| v.strip_suffix(quote)) {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_shape() {
        let doc = "availability-zone: hel1-dc2\nhostname: my-server\ninstance-id: 42\n\
                   local-ipv4: ''\npublic-ipv4: 1.2.3.4\nregion: eu-central\npublic-keys: []\n\
                   vendor_data: |\n  #cloud-config\n  a: b\nnetwork-config:\n  config:\n  - name: eth0\n";
        let facts = facts_from(doc);
        assert_eq!(facts.instance_id.as_deref(), Some("42"));
        assert_eq!(facts.hostname.as_deref(), Some("my-server"));
        assert_eq!(facts.region.as_deref(), Some("eu-central"));
        assert_eq!(facts.zone.as_deref(), Some("hel1-dc2"));
        let networks = "- ip: 10.0.0.2\n  alias_ips: []\n  network_id: 1\n- ip: 10.128.0.2\n";
        assert_eq!(first_private_ip(networks).as_deref(), Some("10.0.0.2"));
        assert_eq!(first_private_ip("[]\n"), None);
    }
}
