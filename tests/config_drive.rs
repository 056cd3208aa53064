//! The OpenStack config drive: real images made by Debian's `genisoimage` (Nova's flags) and
//! `mkfs.vfat`, attached as read-only loop devices, found by label and read from the device;
//! preferred to the metadata service by `provider = "openstack"` and `"auto"`, unless an
//! endpoint is given. The tests of this file run one at a time (`.config/nextest.toml`): a
//! second drive labelled `config-2` would be, rightly, refused.

use kiln::config::Config;
use kiln::metadata::config_drive::{Drive, Filesystem};
use kiln::metadata::{Found, fetch};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options};
use testkit::example::Example;
use testkit::peers::Kiln;
use testkit::wait::{http_get, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const BOOT: Duration = Duration::from_secs(30);
const SECRET: &str = "hunter2-s3cr3t";
const UUID: &str = "83679162-1378-4288-a2d4-70e13ec132aa";

/// An image attached to a read-only loop device, detached when dropped (also when a test fails).
struct LoopDrive {
    device: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDrive {
    fn attach(image: &Path, dir: tempfile::TempDir) -> LoopDrive {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(image)
            .output()
            .expect("run losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        LoopDrive { device, _dir: dir }
    }

    /// An ISO 9660 image as Nova writes its config drives (`genisoimage` with Joliet and Rock
    /// Ridge, lowercase long names), plus `extra` arguments.
    fn iso(files: &[(&str, &[u8])], extra: &[&str]) -> LoopDrive {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for (path, bytes) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let image = dir.path().join("config.iso");
        let out = Command::new("genisoimage")
            .args(["-o"])
            .arg(&image)
            .args([
                "-ldots",
                "-allow-lowercase",
                "-allow-multidot",
                "-l",
                "-quiet",
                "-V",
                "config-2",
            ])
            .args(extra)
            .arg(&root)
            .output()
            .expect("run genisoimage (Debian package genisoimage)");
        assert!(
            out.status.success(),
            "genisoimage: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LoopDrive::attach(&image, dir)
    }

    /// A FAT image made by `mkfs.vfat -n config-2`, its files written with the fatfs crate (the
    /// kernel here has no vfat to mount it with).
    fn vfat(files: &[(&str, &[u8])]) -> LoopDrive {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("config.img");
        let out = Command::new("mkfs.vfat")
            .args(["-C", "-n", "config-2"])
            .arg(&image)
            .arg("2048")
            .output()
            .expect("run mkfs.vfat (Debian package dosfstools)");
        assert!(
            out.status.success(),
            "mkfs.vfat: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&image)
                .unwrap();
            let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
            for (path, bytes) in files {
                let parts: Vec<&str> = path.split('/').collect();
                let mut dir = fs.root_dir();
                for part in &parts[..parts.len() - 1] {
                    dir = dir.create_dir(part).unwrap();
                }
                let mut file = dir.create_file(parts[parts.len() - 1]).unwrap();
                file.write_all(bytes).unwrap();
            }
        }
        LoopDrive::attach(&image, dir)
    }
}

impl Drop for LoopDrive {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

fn meta_data() -> Vec<u8> {
    serde_json::json!({
        "uuid": UUID,
        "hostname": "web-1.novalocal",
        "name": "web-1",
        "availability_zone": "nova",
        "meta": {"env.APP_COLOR": "blue", "role": "web"},
        "launch_index": 0,
    })
    .to_string()
    .into_bytes()
}

fn network_data() -> Vec<u8> {
    serde_json::json!({
        "links": [{"id": "tap1", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
        "networks": [
            {"id": "n0", "type": "ipv6_dhcp", "link": "tap1"},
            {"id": "n1", "type": "ipv4", "link": "tap1", "ip_address": "10.0.0.42", "netmask": "255.255.255.0"}
        ],
        "services": []
    })
    .to_string()
    .into_bytes()
}

fn drive_files(user_data: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("openstack/latest/meta_data.json", meta_data()),
        ("openstack/latest/user_data", user_data.as_bytes().to_vec()),
        ("openstack/latest/network_data.json", network_data()),
        ("openstack/2012-08-10/meta_data.json", meta_data()),
    ]
}

fn borrowed<'a>(files: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    files.iter().map(|(p, b)| (*p, b.as_slice())).collect()
}

fn metadata_config(text: &str) -> kiln::config::MetadataConfig {
    Config::parse(text).expect("config").metadata
}

#[test]
fn a_drive_made_by_genisoimage_boots_the_example() {
    let files = drive_files(&format!("GREETING=hello from the drive\nAPP_SECRET={SECRET}\n"));
    let drive = LoopDrive::iso(&borrowed(&files), &["-J", "-r"]);
    let ex = Example::render();
    ex.edit_config(|c| {
        c.replace(
            &format!("provider = \"nocloud\"\nseed = \"{}\"", ex.seed_dir.display()),
            "provider = \"openstack\"\ndeadline = \"10s\"\ntags_prefix = \"env.\"",
        )
    });
    let kiln = Kiln::boot(KILN, &ex.config_path);
    wait_until("/readyz 200", BOOT, || {
        (http_get(&ex.readyz_url()).ok()?.0 == 200).then_some(())
    });
    let (_, page) = http_get(&ex.page_url()).unwrap();
    assert!(page.contains("greeting: hello from the drive\n"), "{page}");
    assert!(page.contains(&format!("instance_id: {UUID}\n")), "{page}");
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "  provider: openstack, from the config drive {} (iso9660, label config-2)\n",
            drive.device.display()
        )),
        "{text}"
    );
    assert!(text.contains(", ip 10.0.0.42, host web-1.novalocal"), "{text}");
    assert!(!text.contains("azure check-in"), "{text}");
    for output in [&text, &kiln.log()] {
        assert!(!output.contains(SECRET), "a value leaked:\n{output}");
    }
}

#[tokio::test]
async fn auto_prefers_the_drive_to_what_dmi_tells() {
    let files = drive_files("A=1\n");
    let drive = LoopDrive::iso(&borrowed(&files), &["-J", "-r"]);
    let dmi = tempfile::tempdir().unwrap();
    std::fs::write(dmi.path().join("sys_vendor"), "Amazon EC2\n").unwrap();
    let config = metadata_config(&format!(
        "[metadata]\nprovider = \"auto\"\ndmi_dir = {:?}\ndeadline = \"5s\"\ntags_prefix = \"env.\"\n",
        dmi.path()
    ));
    let metadata = fetch(&config).await.expect("fetch");
    assert_eq!(metadata.facts.provider, "openstack");
    assert_eq!(metadata.facts.instance_id.as_deref(), Some(UUID));
    assert_eq!(metadata.facts.zone.as_deref(), Some("nova"));
    assert_eq!(metadata.facts.local_ipv4.as_deref(), Some("10.0.0.42"));
    assert_eq!(metadata.user_data.as_deref(), Some(&b"A=1\n"[..]));
    assert_eq!(
        metadata.tags.get("env.APP_COLOR").map(String::as_str),
        Some("blue")
    );
    assert_eq!(
        metadata.endpoint,
        format!("config drive {}", drive.device.display())
    );
    assert_eq!(
        metadata.found,
        Found::ConfigDrive(Drive {
            device: drive.device.clone(),
            filesystem: Filesystem::Iso9660
        })
    );
}

#[tokio::test]
async fn a_vfat_drive_reads_the_same() {
    let files = drive_files("B=2\n");
    let drive = LoopDrive::vfat(&borrowed(&files));
    let config = metadata_config("[metadata]\nprovider = \"openstack\"\ndeadline = \"5s\"\n");
    let metadata = fetch(&config).await.expect("fetch");
    assert_eq!(metadata.facts.instance_id.as_deref(), Some(UUID));
    assert_eq!(metadata.user_data.as_deref(), Some(&b"B=2\n"[..]));
    assert_eq!(
        metadata.found,
        Found::ConfigDrive(Drive {
            device: drive.device.clone(),
            filesystem: Filesystem::Vfat
        })
    );
}

/// Without Joliet, names come from the primary tree (`meta_data.json;1`).
#[tokio::test]
async fn an_image_without_joliet_is_read_by_its_primary_names() {
    let files = drive_files("C=3\n");
    let _drive = LoopDrive::iso(&borrowed(&files), &[]);
    let config = metadata_config("[metadata]\nprovider = \"openstack\"\ndeadline = \"5s\"\n");
    let metadata = fetch(&config).await.expect("fetch");
    assert_eq!(metadata.facts.instance_id.as_deref(), Some(UUID));
    assert_eq!(metadata.user_data.as_deref(), Some(&b"C=3\n"[..]));
}

#[tokio::test]
async fn a_drive_without_its_document_or_with_a_broken_one_is_a_clear_error() {
    let empty = LoopDrive::iso(&[("openstack/latest/user_data", b"A=1\n")], &["-J", "-r"]);
    let config = metadata_config("[metadata]\nprovider = \"openstack\"\ndeadline = \"5s\"\n");
    let err = fetch(&config).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "metadata (openstack at config drive {}), read the config drive: openstack/latest/meta_data.json is not on the drive",
            empty.device.display()
        )
    );
    drop(empty);
    let broken = LoopDrive::iso(
        &[("openstack/latest/meta_data.json", b"{\"uuid\": ")],
        &["-J", "-r"],
    );
    let err = fetch(&config).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "metadata (openstack at config drive {}), read the config drive: openstack/latest/meta_data.json: not the expected JSON: EOF while parsing",
            broken.device.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn two_drives_labelled_config_2_are_refused_naming_both() {
    let files = drive_files("A=1\n");
    let one = LoopDrive::iso(&borrowed(&files), &["-J", "-r"]);
    let two = LoopDrive::vfat(&borrowed(&files));
    let config = metadata_config("[metadata]\nprovider = \"openstack\"\ndeadline = \"5s\"\n");
    let err = fetch(&config).await.unwrap_err().to_string();
    let (first, second) = match one.device < two.device {
        true => (&one.device, &two.device),
        false => (&two.device, &one.device),
    };
    assert_eq!(
        err,
        format!(
            "metadata (openstack at config drive), find the config drive (label config-2): 2 devices are labelled config-2 ({}, {}): kiln reads none of them",
            first.display(),
            second.display()
        )
    );
}

#[tokio::test]
async fn an_endpoint_given_is_asked_even_with_a_drive_attached() {
    let files = drive_files("FROM=drive\n");
    let _drive = LoopDrive::iso(&borrowed(&files), &["-J", "-r"]);
    let emulator = MetadataEmulator::start(Options::new(Cloud::OpenStack).user_data("FROM=service\n"));
    let config = metadata_config(&emulator.config_section("deadline = \"5s\""));
    let metadata = fetch(&config).await.expect("fetch");
    assert_eq!(metadata.user_data.as_deref(), Some(&b"FROM=service\n"[..]));
    assert_eq!(metadata.found, Found::Config);
}
