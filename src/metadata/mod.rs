//! Instance facts, tags and user-data from the datasource of the cloud the instance runs in.
//!
//! One file per provider behind [`MetadataProvider`]; `client` is their view of `crate::net`
//! (which retries, bounds and says when to give up), `detect` tells the cloud from DMI for `provider = "auto"`. [`fetch`] asks for facts,
//! user-data and tags concurrently, all within `[metadata] deadline`. Nothing is cached between
//! boots: every boot fetches afresh.

mod akamai;
mod alibaba;
mod azure;
mod client;
pub mod config_drive;
mod detect;
mod digitalocean;
mod ec2;
mod exoscale;
mod gce;
mod hetzner;
pub mod identity;
pub mod iso9660;
mod leaves;
mod nocloud;
mod openstack;
mod oracle;
mod scaleway;
mod source;
mod upcloud;
mod vultr;
pub mod watch;
pub mod wireserver;

pub use detect::detect;
pub use identity::{AccessToken, AwsRoleKeys, Identity};
pub use source::Found;
pub use watch::MetadataWatch;

use crate::config::{MetadataConfig, ProviderKind, UserDataFormat};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// Facts about the instance, the same on every provider. None where the provider has no answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceFacts {
    pub provider: String,
    pub instance_id: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub local_ipv4: Option<String>,
    pub hostname: Option<String>,
}

/// Everything one fetch returned. User-data and tags may hold secrets: never log them.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// The address that was asked (for error messages and status).
    pub endpoint: String,
    pub facts: InstanceFacts,
    /// Raw user-data as the endpoint gave it (maybe gzip); None when the instance has none or
    /// `user_data = "none"`.
    pub user_data: Option<Vec<u8>>,
    /// Tags / custom attributes whose name starts with `tags_prefix`, by full name (prefix
    /// included), and the tags that pin the image (`kiln-expect-*`, read whatever `tags_prefix`
    /// says; see [`PIN_TAG_PREFIX`]).
    pub tags: BTreeMap<String, String>,
    /// How kiln chose the datasource (for `kiln status`).
    pub found: Found,
}

/// A fetch that failed: which provider, which address, which step, and why (never a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata ({provider} at {endpoint}), {step}: {reason}")]
pub struct MetadataError {
    pub provider: String,
    pub endpoint: String,
    pub step: String,
    pub reason: String,
}

type Result<T> = std::result::Result<T, MetadataError>;

/// One cloud's datasource. Every method may be called concurrently with the others; a provider
/// that reads everything from one document fetches it once (see `tokio::sync::OnceCell`).
/// Something the instance does not have (404) is `None` or empty, not an error.
#[async_trait::async_trait]
pub trait MetadataProvider: Send + Sync {
    /// `ec2`, `gce`, ... as in `[metadata] provider`.
    fn name(&self) -> &'static str;

    /// The address asked, for messages.
    fn endpoint(&self) -> String;

    async fn facts(&self) -> Result<InstanceFacts>;

    /// Raw user-data; None when the instance has none.
    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Tags or custom attributes `wanted` names, by full name. Providers without key/value tags
    /// keep this default.
    async fn tags(&self, _wanted: &TagNames<'_>) -> Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }
}

/// The tag EC2 Auto Scaling puts on the instances of a group: its name, for the lifecycle hooks
/// when `[lifecycle] group` is not given. Read like the pin tags, whatever `tags_prefix` says.
pub const AUTOSCALING_GROUP_TAG: &str = "aws:autoscaling:groupName";

/// The tags that pin the image, read whatever `tags_prefix` says (`seal::pin` compares them
/// with the seal): letters, digits and `-` only, the one spelling every cloud accepts as a key
/// (GCE's metadata keys allow no `:` or `/`).
pub const PIN_TAG_PREFIX: &str = "kiln-expect-";
pub const PIN_RELEASE_TAG: &str = "kiln-expect-release";
pub const PIN_SEAL_TAG: &str = "kiln-expect-seal";

/// Which tags to read: those whose name starts with one of these prefixes (`tags_prefix`, the
/// pin's `kiln-expect-`, the Auto Scaling group's tag), asked for in one go.
pub struct TagNames<'a>(pub Vec<&'a str>);

impl TagNames<'_> {
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|prefix| name.starts_with(prefix))
    }
}

/// Fetches facts, tags and user-data within the configured deadline.
pub async fn fetch(config: &MetadataConfig) -> Result<Metadata> {
    fetch_by(config, Instant::now() + config.deadline.get()).await
}

/// [`fetch`] with the deadline given: the boot shares one deadline between the metadata and the
/// secrets it resolves afterwards.
pub async fn fetch_by(config: &MetadataConfig, deadline: Instant) -> Result<Metadata> {
    let (provider, found) = provider_for(config, deadline)?;
    let want_user_data = config.user_data != UserDataFormat::None;
    let work = async {
        tokio::try_join!(
            provider.facts(),
            async {
                match want_user_data {
                    true => provider.user_data().await,
                    false => Ok(None),
                }
            },
            async {
                let mut wanted = TagNames(vec![PIN_TAG_PREFIX, AUTOSCALING_GROUP_TAG]);
                wanted.0.extend(config.tags_prefix.as_deref());
                provider.tags(&wanted).await
            },
        )
    };
    // Every request is already bounded by the deadline; this is the backstop for anything that
    // is not (a provider's own waits), so a boot never hangs on the datasource.
    let backstop = deadline + std::time::Duration::from_millis(500);
    let (facts, user_data, tags) = match tokio::time::timeout_at(backstop, work).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(MetadataError {
                provider: provider.name().into(),
                endpoint: provider.endpoint(),
                step: "fetch".into(),
                reason: format!("not done within the deadline ({})", config.deadline),
            });
        }
    };
    check_facts(&facts).map_err(|reason| MetadataError {
        provider: provider.name().into(),
        endpoint: provider.endpoint(),
        step: "instance facts".into(),
        reason,
    })?;
    tracing::debug!(
        provider = provider.name(),
        user_data = user_data.is_some(),
        tags = tags.len(),
        "metadata fetched"
    );
    Ok(Metadata {
        endpoint: provider.endpoint(),
        facts,
        user_data,
        tags,
        found,
    })
}

/// For the fuzz targets (`fuzz/`): the facts a provider reads from a metadata document, checked
/// as a boot checks them. `body` is the provider's document (nocloud: its `meta-data`).
#[doc(hidden)]
pub fn facts_from_document(
    provider: ProviderKind,
    body: &[u8],
) -> std::result::Result<InstanceFacts, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let json = || serde_json::from_str::<serde_json::Value>(text).map_err(|e| e.to_string());
    let facts = match provider {
        ProviderKind::Ec2 => ec2::facts_from(&json()?, None),
        ProviderKind::Gce => gce::facts_from(&json()?),
        ProviderKind::Azure => azure::facts_from(&json()?),
        ProviderKind::Openstack => openstack::facts_from(&json()?, None),
        ProviderKind::Digitalocean => digitalocean::facts_from(&json()?),
        ProviderKind::Oracle => oracle::facts_from(&json()?, None),
        ProviderKind::Hetzner => hetzner::facts_from(text),
        ProviderKind::Scaleway => scaleway::facts_from(&json()?),
        ProviderKind::Vultr => vultr::facts_from(&json()?),
        ProviderKind::Akamai => akamai::facts_from(&json()?, &serde_json::Value::Null),
        ProviderKind::Upcloud => upcloud::facts_from(&json()?),
        ProviderKind::Alibaba | ProviderKind::Exoscale => {
            return Err(format!("{provider} has no single document: one request a fact"));
        }
        ProviderKind::Nocloud | ProviderKind::Auto => {
            let fields = nocloud::parse_meta_data(text)?;
            InstanceFacts {
                provider: "nocloud".into(),
                instance_id: fields.get("instance-id").cloned(),
                hostname: fields.get("local-hostname").cloned(),
                ..InstanceFacts::default()
            }
        }
    };
    check_facts(&facts)?;
    Ok(facts)
}

/// The longest fact kiln takes: host names stop at 253, ids and regions are far shorter.
const FACT_MAX_CHARS: usize = 255;

/// Facts go into the environment, `instance.json`, `kiln status` and load balancer names. One
/// holding control characters (a terminal escape, a line break) or of absurd length is refused
/// here, naming the fact, never showing it.
fn check_facts(facts: &InstanceFacts) -> std::result::Result<(), String> {
    let named = [
        ("instance_id", &facts.instance_id),
        ("region", &facts.region),
        ("zone", &facts.zone),
        ("local_ipv4", &facts.local_ipv4),
        ("hostname", &facts.hostname),
    ];
    let mut problems = Vec::new();
    for (name, value) in named {
        let Some(value) = value else { continue };
        if value.chars().any(char::is_control) {
            problems.push(format!(
                "{name} holds control characters (a terminal escape or a line break)"
            ));
        } else if value.chars().count() > FACT_MAX_CHARS {
            problems.push(format!("{name} is longer than {FACT_MAX_CHARS} characters"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: refused", problems.join(", ")))
    }
}

/// The provider the config names; for `auto`, the one DMI tells; a config drive before either
/// where `source` prefers it. With how it was found.
fn provider_for(config: &MetadataConfig, deadline: Instant) -> Result<(Box<dyn MetadataProvider>, Found)> {
    let source::Chosen { kind, found } = source::choose(config)?;
    if let Found::ConfigDrive(drive) = &found {
        return Ok((
            Box::new(config_drive::ConfigDrive::new(drive.clone(), config)),
            found,
        ));
    }
    let provider = provider_of(kind, config, deadline)?;
    Ok((provider, found))
}

fn provider_of(
    kind: ProviderKind,
    config: &MetadataConfig,
    deadline: Instant,
) -> Result<Box<dyn MetadataProvider>> {
    if kind == ProviderKind::Nocloud {
        return Ok(Box::new(nocloud::NoCloud::new(config)));
    }
    let base = config.endpoint_or(default_endpoint(kind));
    let client = crate::net::client::link_local().map_err(|reason| MetadataError {
        provider: kind.to_string(),
        endpoint: base.clone(),
        step: "start".into(),
        reason,
    })?;
    let http = |name: &'static str, transient: fn(reqwest::StatusCode) -> bool| {
        client::Http::new(
            client.clone(),
            name,
            base.clone(),
            deadline,
            config.request_timeout.get(),
            body_limit(config),
            transient,
        )
    };
    let standard = crate::net::transient_status;
    Ok(match kind {
        ProviderKind::Ec2 => Box::new(ec2::Ec2::new(http("ec2", standard), config.imdsv1)),
        ProviderKind::Gce => Box::new(gce::Gce::new(http("gce", standard))),
        ProviderKind::Azure => Box::new(azure::Azure::new(http("azure", azure::transient))),
        ProviderKind::Openstack => Box::new(openstack::OpenStack::new(http("openstack", standard))),
        ProviderKind::Digitalocean => {
            Box::new(digitalocean::DigitalOcean::new(http("digitalocean", standard)))
        }
        ProviderKind::Oracle => Box::new(oracle::Oracle::new(http("oracle", standard))),
        ProviderKind::Hetzner => Box::new(hetzner::Hetzner::new(http("hetzner", standard))),
        ProviderKind::Scaleway => Box::new(scaleway::Scaleway::new(
            http("scaleway", standard),
            config.request_timeout.get(),
            deadline,
            body_limit(config),
        )),
        ProviderKind::Vultr => Box::new(vultr::Vultr::new(http("vultr", standard))),
        ProviderKind::Akamai => Box::new(akamai::Akamai::new(http("akamai", standard))),
        ProviderKind::Alibaba => Box::new(alibaba::Alibaba::new(http("alibaba", standard))),
        ProviderKind::Exoscale => Box::new(exoscale::Exoscale::new(http("exoscale", standard))),
        ProviderKind::Upcloud => Box::new(upcloud::UpCloud::new(http("upcloud", standard))),
        ProviderKind::Nocloud | ProviderKind::Auto => unreachable!("handled above"),
    })
}

/// Where a cloud serves its metadata when `endpoint` is not set.
fn default_endpoint(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Scaleway => crate::net::METADATA_SCALEWAY,
        ProviderKind::Alibaba => crate::net::METADATA_ALIBABA,
        _ => crate::net::METADATA,
    }
}

/// Answers may carry user-data (raw, or base64 inside JSON) plus the rest of a document.
fn body_limit(config: &MetadataConfig) -> usize {
    (config.user_data_limit as usize).saturating_mul(2) + 1024 * 1024
}
