//! `[metadata]`: where the instance's facts and user-data come from.
//!
//! Without a `[metadata]` section kiln reads the local seed directory `/var/lib/kiln/seed`
//! (provider `nocloud`); a missing seed directory is an error, never an empty environment.

use super::HumanDuration;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The most user-data kiln accepts, whatever `user_data_limit` says: a value bigger than this is
/// not an environment any more.
pub const USER_DATA_LIMIT_MAX: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// `ec2 | gce | azure | openstack | digitalocean | oracle | hetzner | scaleway | vultr |
    /// akamai | alibaba | exoscale | upcloud | nocloud | auto` (default `nocloud`).
    /// `auto` reads DMI (`dmi_dir`) and `hypervisor_uuid` to tell the cloud before any request.
    #[serde(default)]
    pub provider: ProviderKind,
    /// Override of the provider's address, `http://HOST[:PORT]` (default [`crate::net::METADATA`],
    /// Scaleway's [`crate::net::METADATA_SCALEWAY`], Alibaba's [`crate::net::METADATA_ALIBABA`]:
    /// no DNS lookup at boot). Plain HTTP only: metadata services do not speak TLS.
    pub endpoint: Option<String>,
    /// `nocloud` only: directory holding `meta-data` (`key: value` lines) and `user-data`
    /// (default `/var/lib/kiln/seed`). It must exist.
    #[serde(default = "default_seed")]
    pub seed: PathBuf,
    /// Total time budget of the fetch, retries included (default `60s`). Then the boot fails
    /// with the last reason.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
    /// Time budget of one request (default `2s`); a request that takes longer is retried.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// How to read user-data: `dotenv | toml | json | auto | none` (default `auto`).
    /// `none` ignores user-data (it is not even fetched).
    #[serde(default)]
    pub user_data: UserDataFormat,
    /// What to do with user-data that is cloud-init's alone (a `#cloud-config`, a script, a MIME
    /// multi-part without a `text/x-kiln-env` part): `refuse` (default: a user-data meant for
    /// kiln in the wrong shape stops the boot) or `ignore` (kiln's variables come from tags,
    /// secrets or defaults; cloud-init reads the user-data).
    #[serde(default)]
    pub user_data_foreign: ForeignUserData,
    /// Largest accepted user-data in bytes, after gzip decompression (default 65536).
    /// Decompression stops reading past it.
    #[serde(default = "default_user_data_limit")]
    pub user_data_limit: u64,
    /// Tags / custom attributes whose name starts with this prefix become variables, named by
    /// the rest (`env.APP_ENV` → `APP_ENV`). Unset: tags are not read.
    pub tags_prefix: Option<String>,
    /// `ec2` only: fall back to token-less IMDSv1 requests when the token request is not
    /// answered (default `false`: IMDSv2 only).
    #[serde(default)]
    pub imdsv1: bool,
    /// `auto` only: the DMI directory (default `/sys/class/dmi/id`).
    #[serde(default = "default_dmi_dir")]
    pub dmi_dir: PathBuf,
    /// `auto` only: the Xen hypervisor UUID file of older EC2 instances (default
    /// `/sys/hypervisor/uuid`).
    #[serde(default = "default_hypervisor_uuid")]
    pub hypervisor_uuid: PathBuf,
    /// Fetch user-data and tags again this often after boot and, if they changed, say in status
    /// and the log that the instance should be replaced. Never applied. Unset: no recheck.
    #[serde(default)]
    pub recheck: Option<HumanDuration>,
    /// Azure only (`azure`, or `auto` on Azure): report to the WireServer that the instance is
    /// provisioned (Ready), or why its boot was refused (NotReady), as a provisioning agent
    /// does (default `true`). Set `false` where the image keeps waagent, which reports itself.
    #[serde(default = "default_check_in")]
    pub check_in: bool,
    /// Azure only: the WireServer's address, `http://HOST[:PORT]` (default
    /// [`crate::net::WIRESERVER`]). For tests and emulators.
    pub wireserver: Option<String>,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            provider: ProviderKind::default(),
            endpoint: None,
            seed: default_seed(),
            deadline: default_deadline(),
            request_timeout: default_request_timeout(),
            user_data: UserDataFormat::default(),
            user_data_foreign: ForeignUserData::default(),
            user_data_limit: default_user_data_limit(),
            tags_prefix: None,
            imdsv1: false,
            dmi_dir: default_dmi_dir(),
            hypervisor_uuid: default_hypervisor_uuid(),
            recheck: None,
            check_in: default_check_in(),
            wireserver: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Ec2,
    Gce,
    Azure,
    Openstack,
    Digitalocean,
    Oracle,
    Hetzner,
    Scaleway,
    Vultr,
    Akamai,
    Alibaba,
    Exoscale,
    Upcloud,
    #[default]
    Nocloud,
    Auto,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Ec2 => "ec2",
            ProviderKind::Gce => "gce",
            ProviderKind::Azure => "azure",
            ProviderKind::Openstack => "openstack",
            ProviderKind::Digitalocean => "digitalocean",
            ProviderKind::Oracle => "oracle",
            ProviderKind::Hetzner => "hetzner",
            ProviderKind::Scaleway => "scaleway",
            ProviderKind::Vultr => "vultr",
            ProviderKind::Akamai => "akamai",
            ProviderKind::Alibaba => "alibaba",
            ProviderKind::Exoscale => "exoscale",
            ProviderKind::Upcloud => "upcloud",
            ProviderKind::Nocloud => "nocloud",
            ProviderKind::Auto => "auto",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserDataFormat {
    Dotenv,
    Toml,
    Json,
    #[default]
    Auto,
    None,
}

fn default_check_in() -> bool {
    true
}

/// `[metadata] user_data_foreign`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForeignUserData {
    #[default]
    Refuse,
    Ignore,
}

fn default_seed() -> PathBuf {
    PathBuf::from("/var/lib/kiln/seed")
}

fn default_deadline() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration::from_secs(2)
}

fn default_user_data_limit() -> u64 {
    64 * 1024
}

fn default_dmi_dir() -> PathBuf {
    PathBuf::from("/sys/class/dmi/id")
}

fn default_hypervisor_uuid() -> PathBuf {
    PathBuf::from("/sys/hypervisor/uuid")
}

impl MetadataConfig {
    /// Every problem serde cannot see, each naming its key.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Some(endpoint) = &self.endpoint
            && let Err(e) = check_endpoint(endpoint)
        {
            problems.push(format!("endpoint = {endpoint:?}: {e}"));
        }
        if let Some(wireserver) = &self.wireserver
            && let Err(e) = check_endpoint(wireserver)
        {
            problems.push(format!("wireserver = {wireserver:?}: {e}"));
        }
        if !self.seed.is_absolute() {
            problems.push(format!("seed = {:?}: must be an absolute path", self.seed));
        }
        if self.deadline.get().is_zero() {
            problems.push("deadline = \"0s\": give the fetch some time, like \"60s\"".into());
        }
        if let Some(recheck) = self.recheck
            && recheck.get() < std::time::Duration::from_secs(1)
        {
            problems.push(format!(
                "recheck = \"{recheck}\": at least \"1s\" (minutes are usual)"
            ));
        }
        if self.request_timeout.get().is_zero() {
            problems.push("request_timeout = \"0s\": give each request some time, like \"2s\"".into());
        }
        if self.user_data_limit == 0 || self.user_data_limit > USER_DATA_LIMIT_MAX {
            problems.push(format!(
                "user_data_limit = {}: must be between 1 and {USER_DATA_LIMIT_MAX} bytes",
                self.user_data_limit
            ));
        }
        if let Some(prefix) = &self.tags_prefix
            && (prefix.is_empty() || prefix.chars().any(|c| c.is_control() || c == '/'))
        {
            problems.push(format!(
                "tags_prefix = {prefix:?}: must be non-empty, without '/' or control characters"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The address a provider asks when `endpoint` is not set.
    pub fn endpoint_or(&self, default: &str) -> String {
        self.endpoint
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_string()
    }
}

/// `http://host[:port]`, nothing else: no TLS, no path, no credentials, no query.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or("must start with http:// (metadata services speak plain HTTP on a link-local address)")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() {
        return Err("no host".into());
    }
    if authority.contains(['/', '?', '#', '@']) || authority.chars().any(|c| c.is_whitespace()) {
        return Err("give only http://HOST[:PORT], without path, query or credentials".into());
    }
    super::url::check_http_url(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_must_be_plain_http_host() {
        // Every metadata address kiln names passes as an endpoint.
        for address in [
            crate::net::METADATA,
            crate::net::METADATA_EC2_IPV6,
            crate::net::METADATA_GCE_NAME,
            crate::net::METADATA_SCALEWAY,
            crate::net::METADATA_ALIBABA,
            crate::net::WIRESERVER,
        ] {
            assert!(check_endpoint(address).is_ok(), "{address}");
        }
        assert!(check_endpoint("http://127.0.0.1:8080/").is_ok());
        assert!(check_endpoint("https://169.254.169.254").is_err());
        assert!(check_endpoint("http://host/latest").is_err());
        assert!(check_endpoint("http://user:pw@host").is_err());
        assert!(check_endpoint("http://").is_err());
        assert_eq!(
            check_endpoint("http://[::1:80").unwrap_err(),
            "not a URL: invalid IPv6 address"
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c: MetadataConfig = toml::from_str("").unwrap();
        assert_eq!(c.provider, ProviderKind::Nocloud);
        assert_eq!(c.seed, PathBuf::from("/var/lib/kiln/seed"));
        assert_eq!(c.deadline, HumanDuration::from_secs(60));
        assert_eq!(c.user_data, UserDataFormat::Auto);
        assert_eq!(c.user_data_limit, 65536);
        assert!(!c.imdsv1);
        assert!(c.check_in);
        assert_eq!(c.wireserver, None);
        assert!(c.check().is_ok());
    }
}
