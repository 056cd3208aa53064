//! A local seed directory, like cloud-init's NoCloud: `meta-data` and `user-data` files.
//!
//! The default datasource (for development, the README example and images that carry their own
//! seed). The directory must exist: a missing seed is a failed boot, not an empty environment.
//! Both files are optional. `meta-data` is read as flat `key: value` lines (the subset of YAML
//! cloud-init seeds use for these keys) or as a JSON object: `instance-id`, `local-hostname`
//! (or `hostname`), `region`, `availability-zone`, `local-ipv4`; other keys are ignored.

use super::{InstanceFacts, MetadataError, MetadataProvider, Result};
use crate::config::MetadataConfig;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

pub(super) struct NoCloud {
    seed: PathBuf,
    /// Read at most this many bytes of user-data: one past the limit is enough to refuse it.
    read_cap: u64,
}

impl NoCloud {
    pub fn new(config: &MetadataConfig) -> NoCloud {
        NoCloud {
            seed: config.seed.clone(),
            read_cap: config.user_data_limit.saturating_add(1),
        }
    }

    fn error(&self, step: &str, reason: impl Into<String>) -> MetadataError {
        MetadataError {
            provider: "nocloud".into(),
            endpoint: self.seed.display().to_string(),
            step: step.into(),
            reason: reason.into(),
        }
    }

    /// The seed directory must be there; a file in it may be absent (None).
    fn read(&self, name: &str, cap: u64) -> Result<Option<Vec<u8>>> {
        match std::fs::metadata(&self.seed) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(self.error("seed directory", "is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.error(
                    "seed directory",
                    "does not exist (create it with meta-data and user-data files, or set [metadata] provider)",
                ));
            }
            Err(e) => return Err(self.error("seed directory", format!("cannot read: {e}"))),
        }
        let path = self.seed.join(name);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(name, format!("cannot read {}: {e}", path.display()))),
        };
        let mut bytes = Vec::new();
        file.take(cap)
            .read_to_end(&mut bytes)
            .map_err(|e| self.error(name, format!("cannot read {}: {e}", path.display())))?;
        Ok(Some(bytes))
    }
}

#[async_trait::async_trait]
impl MetadataProvider for NoCloud {
    fn name(&self) -> &'static str {
        "nocloud"
    }

    fn endpoint(&self) -> String {
        self.seed.display().to_string()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let step = "meta-data";
        let mut facts = InstanceFacts {
            provider: "nocloud".into(),
            ..Default::default()
        };
        let Some(bytes) = self.read(step, 1024 * 1024)? else {
            return Ok(facts);
        };
        let text = String::from_utf8(bytes).map_err(|_| self.error(step, "is not UTF-8 text"))?;
        let mut fields = parse_meta_data(&text).map_err(|e| self.error(step, e))?;
        facts.instance_id = fields.remove("instance-id");
        facts.hostname = fields
            .remove("local-hostname")
            .or_else(|| fields.remove("hostname"));
        facts.region = fields.remove("region");
        facts.zone = fields.remove("availability-zone");
        facts.local_ipv4 = fields.remove("local-ipv4");
        Ok(facts)
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        self.read("user-data", self.read_cap)
    }
}

/// Flat `key: value` lines or a JSON object; empty values are dropped.
pub(super) fn parse_meta_data(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    if text.trim_start().starts_with('{') {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let object = doc.as_object().ok_or("a JSON meta-data must be an object")?;
        return Ok(object
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .filter(|(_, v)| !v.is_empty())
            .collect());
    }
    let mut fields = BTreeMap::new();
    let mut in_block = false;
    for (n, line) in text.lines().enumerate() {
        // Indented lines belong to a nested value (`network-interfaces: |`); not ours.
        if line.starts_with([' ', '\t']) && in_block {
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
            continue;
        }
        let (key, value) = trimmed
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected `key: value`", n + 1))?;
        let value = value.trim();
        in_block = value.is_empty() || value == "|" || value == ">";
        let value = unquote(value);
        if !value.is_empty() && !in_block {
            fields.insert(key.trim().to_string(), value.to_string());
        }
    }
    Ok(fields)
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cloud_init_style_meta_data() {
        let text = "instance-id: iid-local01\nlocal-hostname: 'web-1'\nnetwork-interfaces: |\n  auto eth0\n  iface eth0 inet dhcp\nregion: \"eu-1\"\n";
        let f = parse_meta_data(text).unwrap();
        assert_eq!(f["instance-id"], "iid-local01");
        assert_eq!(f["local-hostname"], "web-1");
        assert_eq!(f["region"], "eu-1");
        assert!(!f.contains_key("network-interfaces"));
        assert_eq!(
            parse_meta_data("oops\n").unwrap_err(),
            "line 1: expected `key: value`"
        );
        let f = parse_meta_data(r#"{"instance-id": "i-1", "n": 3}"#).unwrap();
        assert_eq!(f.len(), 1);
    }
}
