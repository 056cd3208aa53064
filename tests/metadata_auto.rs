//! `provider = "auto"`: the cloud is told from a fake DMI directory (and the Xen hypervisor
//! UUID file), then asked at the emulator's address.

use kiln::config::Config;
use kiln::metadata::{Found, fetch};
use std::path::Path;
use std::process::Command;
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options};

fn dmi(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in files {
        std::fs::write(dir.path().join(name), format!("{value}\n")).unwrap();
    }
    dir
}

fn auto_config(endpoint: &str, dmi_dir: &Path, hypervisor_uuid: &Path) -> String {
    format!(
        "[metadata]\nprovider = \"auto\"\nendpoint = \"{endpoint}\"\ndmi_dir = {dmi_dir:?}\nhypervisor_uuid = {hypervisor_uuid:?}\ndeadline = \"10s\"\n"
    )
}

#[tokio::test]
async fn each_cloud_is_told_from_dmi() {
    let none = Path::new("/nonexistent/hypervisor/uuid");
    let cases: [(Cloud, &[(&str, &str)]); 5] = [
        (
            Cloud::Ec2,
            &[
                ("sys_vendor", "Amazon EC2"),
                ("product_uuid", "ec2e1916-9099-7caf-fd21-012345abcdef"),
            ],
        ),
        (
            Cloud::Gce,
            &[
                ("sys_vendor", "Google"),
                ("product_name", "Google Compute Engine"),
            ],
        ),
        (
            Cloud::Azure,
            &[
                ("sys_vendor", "Microsoft Corporation"),
                ("chassis_asset_tag", "7783-7084-3265-9085-8269-3286-77"),
            ],
        ),
        (
            Cloud::OpenStack,
            &[
                ("sys_vendor", "OpenStack Foundation"),
                ("product_name", "OpenStack Nova"),
            ],
        ),
        (
            Cloud::DigitalOcean,
            &[("sys_vendor", "DigitalOcean"), ("product_name", "Droplet")],
        ),
    ];
    for (cloud, files) in cases {
        let emulator = MetadataEmulator::start(Options::new(cloud).user_data("A=1\n"));
        let dir = dmi(files);
        let config = Config::parse(&auto_config(&emulator.url(), dir.path(), none)).unwrap();
        let metadata = fetch(&config.metadata).await.expect("fetch");
        assert_eq!(metadata.facts.provider, cloud.name());
        assert_eq!(metadata.user_data.as_deref(), Some(&b"A=1\n"[..]), "{cloud:?}");
        // What told the cloud, for kiln status: one of the DMI files given, with its value.
        let Found::Dmi { field, value } = &metadata.found else {
            panic!("{cloud:?}: found {:?}", metadata.found);
        };
        assert!(
            files.contains(&(*field, value.as_str())),
            "{cloud:?}: {field} {value:?}"
        );
    }
}

/// The clouds added for issue 22, each told by what it stamps in DMI (afterburn's and
/// cloud-init's checks), then asked at the emulator.
#[tokio::test]
async fn the_other_clouds_are_told_from_dmi() {
    let none = Path::new("/nonexistent/hypervisor/uuid");
    let cases: [(Cloud, &[(&str, &str)]); 9] = [
        (
            Cloud::Oracle,
            &[("sys_vendor", "QEMU"), ("chassis_asset_tag", "OracleCloud.com")],
        ),
        (
            Cloud::Hetzner,
            &[("sys_vendor", "Hetzner"), ("product_name", "vServer")],
        ),
        (
            Cloud::Scaleway,
            &[("sys_vendor", "Scaleway"), ("product_name", "SCW-DEV1-S")],
        ),
        (Cloud::Vultr, &[("sys_vendor", "Vultr"), ("product_name", "VC2")]),
        (
            Cloud::Akamai,
            &[("sys_vendor", "Linode"), ("product_name", "Compute Instance")],
        ),
        (
            Cloud::Akamai,
            &[("sys_vendor", "Akamai"), ("product_name", "Compute Instance")],
        ),
        (
            Cloud::Alibaba,
            &[
                ("sys_vendor", "Alibaba Cloud"),
                ("product_name", "Alibaba Cloud ECS"),
            ],
        ),
        (
            Cloud::Exoscale,
            &[
                ("sys_vendor", "QEMU"),
                ("product_name", "Exoscale Compute Platform"),
            ],
        ),
        (
            Cloud::UpCloud,
            &[("sys_vendor", "UpCloud"), ("product_name", "Cloud Server")],
        ),
    ];
    for (cloud, files) in cases {
        let emulator = MetadataEmulator::start(Options::new(cloud).user_data("A=1\n"));
        let dir = dmi(files);
        let config = Config::parse(&auto_config(&emulator.url(), dir.path(), none)).unwrap();
        let metadata = fetch(&config.metadata).await.expect("fetch");
        assert_eq!(metadata.facts.provider, cloud.name());
        assert_eq!(metadata.user_data.as_deref(), Some(&b"A=1\n"[..]), "{cloud:?}");
    }
}

#[tokio::test]
async fn old_xen_ec2_is_told_from_the_hypervisor_uuid() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let dir = dmi(&[("sys_vendor", "Xen"), ("product_name", "HVM domU")]);
    let hypervisor = dmi(&[("uuid", "ec2a1b2c-3d4e-5f60-7182-93a4b5c6d7e8")]);
    let config = Config::parse(&auto_config(
        &emulator.url(),
        dir.path(),
        &hypervisor.path().join("uuid"),
    ))
    .unwrap();
    let metadata = fetch(&config.metadata).await.expect("fetch");
    assert_eq!(metadata.facts.provider, "ec2");
    assert_eq!(metadata.found, Found::HypervisorUuid);
}

#[test]
fn an_unknown_machine_is_a_clear_error_before_any_request() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let dir = dmi(&[
        ("sys_vendor", "QEMU"),
        ("product_name", "Standard PC (Q35 + ICH9, 2009)"),
    ]);
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        auto_config(&emulator.url(), dir.path(), Path::new("/nonexistent")),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["env", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "kiln env: metadata (auto at {}), detect the cloud: no known cloud in DMI (sys_vendor \"QEMU\", product_name \"Standard PC (Q35 + ICH9, 2009)\"): set [metadata] provider\n",
            dir.path().display()
        )
    );
    assert!(emulator.log().is_empty(), "no request before the cloud is known");
}

#[test]
fn auto_through_the_whole_process() {
    let emulator = MetadataEmulator::start(
        Options::new(Cloud::Gce)
            .user_data("APP_SECRET=s3cr3t\n")
            .tag("env.APP_ENV", "staging"),
    );
    let dir = dmi(&[("product_name", "Google Compute Engine")]);
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        auto_config(&emulator.url(), dir.path(), Path::new("/nonexistent")) + "tags_prefix = \"env.\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["env", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(&format!(
            "gce at {} (instance 4520031799277581759, region europe-west1, zone europe-west1-b, fetched in ",
            emulator.url()
        )),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["APP_ENV", "tag"])),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["APP_SECRET", "user-data"])),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cr3t") && !stdout.contains("staging"));
}
