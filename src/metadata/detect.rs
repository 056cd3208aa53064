//! `provider = "auto"`: tell the cloud from firmware facts before touching the network.
//!
//! Each cloud stamps its DMI tables (`/sys/class/dmi/id`); older Xen-based EC2 instances are
//! told by `/sys/hypervisor/uuid` instead. Reading files costs microseconds, where probing
//! endpoints one after the other would cost a timeout per wrong guess.

use crate::config::ProviderKind;
use std::path::Path;

/// Azure's chassis asset tag, the same on every Azure VM.
const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

/// Oracle Cloud's chassis asset tag, the same on every OCI instance.
const ORACLE_ASSET_TAG: &str = "OracleCloud.com";

/// The cloud DMI names, or why none could be told (the DMI values read, which are not secret).
pub fn detect(dmi_dir: &Path, hypervisor_uuid: &Path) -> Result<ProviderKind, String> {
    detect_by(dmi_dir, hypervisor_uuid).map(|(kind, _)| kind)
}

/// What told the cloud: a DMI field and the value it had, or `None` for the hypervisor UUID.
pub type ToldBy = Option<(&'static str, String)>;

/// [`detect`], with what told the cloud, for `kiln status`.
pub fn detect_by(dmi_dir: &Path, hypervisor_uuid: &Path) -> Result<(ProviderKind, ToldBy), String> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let dmi = |name: &str| read(&dmi_dir.join(name));
    let (vendor, product, uuid, asset_tag) = (
        dmi("sys_vendor"),
        dmi("product_name"),
        dmi("product_uuid"),
        dmi("chassis_asset_tag"),
    );
    let starts_ec2 = |s: &str| s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ec2"));
    let by = |kind, field: &'static str, value: &str| Ok((kind, Some((field, value.to_string()))));
    if vendor == "Amazon EC2" {
        return by(ProviderKind::Ec2, "sys_vendor", &vendor);
    }
    if starts_ec2(&uuid) {
        return by(ProviderKind::Ec2, "product_uuid", &uuid);
    }
    if starts_ec2(&read(hypervisor_uuid)) {
        return Ok((ProviderKind::Ec2, None));
    }
    if product == "Google Compute Engine" {
        return by(ProviderKind::Gce, "product_name", &product);
    }
    if vendor == "Google" {
        return by(ProviderKind::Gce, "sys_vendor", &vendor);
    }
    if asset_tag == AZURE_ASSET_TAG {
        return by(ProviderKind::Azure, "chassis_asset_tag", &asset_tag);
    }
    if vendor == "DigitalOcean" {
        return by(ProviderKind::Digitalocean, "sys_vendor", &vendor);
    }
    if let Some((kind, field, value)) = by_vendor(&vendor, &product, &asset_tag) {
        return by(kind, field, value);
    }
    if product == "OpenStack Nova" || product == "OpenStack Compute" {
        return by(ProviderKind::Openstack, "product_name", &product);
    }
    if asset_tag == "OpenStack Nova" {
        return by(ProviderKind::Openstack, "chassis_asset_tag", &asset_tag);
    }
    if !dmi_dir.is_dir() {
        return Err(format!(
            "{} does not exist, so the cloud cannot be told: set [metadata] provider",
            dmi_dir.display()
        ));
    }
    Err(format!(
        "no known cloud in DMI (sys_vendor {vendor:?}, product_name {product:?}): set [metadata] provider"
    ))
}

/// The clouds that stamp their own name in DMI (as afterburn and cloud-init tell them), with
/// the field that told.
fn by_vendor<'a>(
    vendor: &'a str,
    product: &'a str,
    asset_tag: &'a str,
) -> Option<(ProviderKind, &'static str, &'a str)> {
    let by_vendor = match vendor {
        "Hetzner" => Some(ProviderKind::Hetzner),
        "Scaleway" => Some(ProviderKind::Scaleway),
        "Vultr" => Some(ProviderKind::Vultr),
        "Linode" | "Akamai" => Some(ProviderKind::Akamai),
        "Alibaba Cloud" => Some(ProviderKind::Alibaba),
        "UpCloud" => Some(ProviderKind::Upcloud),
        _ => None,
    };
    if asset_tag == ORACLE_ASSET_TAG {
        Some((ProviderKind::Oracle, "chassis_asset_tag", asset_tag))
    } else if let Some(kind) = by_vendor {
        Some((kind, "sys_vendor", vendor))
    } else if product == "Alibaba Cloud ECS" {
        Some((ProviderKind::Alibaba, "product_name", product))
    } else if product.starts_with("Exoscale") {
        Some((ProviderKind::Exoscale, "product_name", product))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dmi(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in files {
            std::fs::write(dir.path().join(name), format!("{value}\n")).unwrap();
        }
        dir
    }

    #[test]
    fn tells_each_cloud() {
        let none = Path::new("/nonexistent/hypervisor/uuid");
        let cases: &[(&[(&str, &str)], ProviderKind)] = &[
            (
                &[("product_uuid", "EC2E1916-9099-7CAF-FD21-012345ABCDEF")],
                ProviderKind::Ec2,
            ),
            (&[("sys_vendor", "Amazon EC2")], ProviderKind::Ec2),
            (&[("product_name", "Google Compute Engine")], ProviderKind::Gce),
            (&[("chassis_asset_tag", AZURE_ASSET_TAG)], ProviderKind::Azure),
            (&[("sys_vendor", "DigitalOcean")], ProviderKind::Digitalocean),
            (&[("product_name", "OpenStack Compute")], ProviderKind::Openstack),
            (&[("chassis_asset_tag", ORACLE_ASSET_TAG)], ProviderKind::Oracle),
            (&[("sys_vendor", "Hetzner")], ProviderKind::Hetzner),
            (&[("sys_vendor", "Scaleway")], ProviderKind::Scaleway),
            (&[("sys_vendor", "Vultr")], ProviderKind::Vultr),
            (&[("sys_vendor", "Linode")], ProviderKind::Akamai),
            (&[("sys_vendor", "Akamai")], ProviderKind::Akamai),
            (&[("product_name", "Alibaba Cloud ECS")], ProviderKind::Alibaba),
            (
                &[("product_name", "Exoscale Compute Platform")],
                ProviderKind::Exoscale,
            ),
            (&[("sys_vendor", "UpCloud")], ProviderKind::Upcloud),
        ];
        for (files, want) in cases {
            let dir = dmi(files);
            assert_eq!(detect(dir.path(), none), Ok(*want), "{files:?}");
        }
        let dir = dmi(&[("sys_vendor", "QEMU"), ("product_name", "Standard PC")]);
        let err = detect(dir.path(), none).unwrap_err();
        assert!(err.contains("sys_vendor \"QEMU\""), "{err}");
        let xen = dmi(&[("uuid", "ec2a1b2c-0000-0000-0000-000000000000")]);
        assert_eq!(
            detect(dir.path(), &xen.path().join("uuid")),
            Ok(ProviderKind::Ec2)
        );
    }
}
