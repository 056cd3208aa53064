//! Which datasource a boot reads, and how kiln came to it (for `kiln status`): the provider
//! the config names, the cloud DMI tells for `auto`, or a config drive, which `openstack` and
//! `auto` prefer to any metadata service when one is attached and `endpoint` is not set (an
//! endpoint given names the service to ask).

use super::config_drive::{self, Drive};
use super::{MetadataError, detect};
use crate::config::{MetadataConfig, ProviderKind};

/// How kiln chose the datasource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Found {
    /// `[metadata] provider` names it.
    #[default]
    Config,
    /// `auto`: this DMI field had this value.
    Dmi { field: &'static str, value: String },
    /// `auto`: `/sys/hypervisor/uuid` starts with `ec2`.
    HypervisorUuid,
    /// A filesystem labelled `config-2`.
    ConfigDrive(Drive),
}

/// The provider to ask, how it was found, and the config drive when that is the source.
pub(super) struct Chosen {
    pub kind: ProviderKind,
    pub found: Found,
}

/// Looks for a config drive where it may be preferred, then tells the cloud for `auto`.
pub(super) fn choose(config: &MetadataConfig) -> Result<Chosen, MetadataError> {
    let looks_for_drive =
        matches!(config.provider, ProviderKind::Openstack | ProviderKind::Auto) && config.endpoint.is_none();
    if looks_for_drive {
        match config_drive::find() {
            Ok(Some(drive)) => {
                return Ok(Chosen {
                    kind: ProviderKind::Openstack,
                    found: Found::ConfigDrive(drive),
                });
            }
            Ok(None) => {}
            Err(reason) => {
                return Err(MetadataError {
                    provider: config.provider.to_string(),
                    endpoint: "config drive".into(),
                    step: "find the config drive (label config-2)".into(),
                    reason,
                });
            }
        }
    }
    if config.provider != ProviderKind::Auto {
        return Ok(Chosen {
            kind: config.provider,
            found: Found::Config,
        });
    }
    match detect::detect_by(&config.dmi_dir, &config.hypervisor_uuid) {
        Ok((kind, Some((field, value)))) => Ok(Chosen {
            kind,
            found: Found::Dmi { field, value },
        }),
        Ok((kind, None)) => Ok(Chosen {
            kind,
            found: Found::HypervisorUuid,
        }),
        Err(reason) => Err(MetadataError {
            provider: "auto".into(),
            endpoint: config.dmi_dir.display().to_string(),
            step: "detect the cloud".into(),
            reason: match looks_for_drive {
                true => format!("no config drive is labelled config-2, and {reason}"),
                false => reason,
            },
        }),
    }
}
