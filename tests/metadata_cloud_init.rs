//! kiln beside real cloud-init (Debian 12's 22.4, in a chroot: `testkit::cloud_init`): one MIME
//! multi-part user-data from the EC2 emulator, a `#cloud-config` part that cloud-init applies
//! (an SSH key for the default user) and kiln's `text/x-kiln-env` part. cloud-init runs its four
//! first-boot stages, then kiln reads its variables from the same user-data. Needs root; builds
//! the cached chroot when it is missing (minutes, once).

use base64::Engine;
use std::process::Command;
use testkit::cloud_init::CloudInit;
use testkit::emulator::metadata::{Cloud, Options};

const SECRET: &str = "kiln-secret-value-7f3a9c";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFv8hbQ0c0lTn2YpX2E3d0J3bWZkS2lsblRlc3RLZXkx ops@kiln-test";

/// What cloud-init's `make-mime` and Terraform's `cloudinit_config` write: a multipart/mixed
/// document, kiln's part base64 and starting with a comment line.
fn shared_user_data() -> String {
    let kiln_part = format!("# kiln environment, not for cloud-init\nAPP_SECRET={SECRET}\nAPP_ENV=prod\n");
    let kiln_part = base64::engine::general_purpose::STANDARD.encode(kiln_part);
    format!(
        "Content-Type: multipart/mixed; boundary=\"===============4242==\"\n\
         MIME-Version: 1.0\n\
         \n\
         --===============4242==\n\
         Content-Type: text/cloud-config; charset=\"us-ascii\"\n\
         MIME-Version: 1.0\n\
         Content-Transfer-Encoding: 7bit\n\
         Content-Disposition: attachment; filename=\"cloud.yaml\"\n\
         \n\
         #cloud-config\n\
         ssh_authorized_keys:\n  - {KEY}\n\
         \n\
         --===============4242==\n\
         Content-Type: text/x-kiln-env; charset=\"utf-8\"\n\
         MIME-Version: 1.0\n\
         Content-Transfer-Encoding: base64\n\
         Content-Disposition: attachment; filename=\"kiln.env\"\n\
         \n\
         {kiln_part}\n\
         --===============4242==--\n"
    )
}

#[test]
fn cloud_init_and_kiln_share_one_user_data() {
    let ci = CloudInit::start(Options::new(Cloud::Ec2).user_data(shared_user_data()));
    ci.first_boot();

    // cloud-init applied its part: the default user's key.
    let keys = ci
        .file("/home/debian/.ssh/authorized_keys")
        .unwrap_or_else(|| panic!("no authorized_keys for debian; cloud-init's log:\n{}", ci.log()));
    assert!(
        String::from_utf8_lossy(&keys).contains(KEY),
        "{}",
        String::from_utf8_lossy(&keys)
    );
    // It left kiln's part alone, saying so, with no value in its log or on the console: 22.4
    // logs the first 24 bytes of a base64 part (as Python bytes), all of them kiln's comment.
    let log = ci.log();
    assert!(
        log.contains(
            "Unhandled unknown content-type (text/x-kiln-env) userdata: 'b'# kiln environment, not '...'"
        ),
        "{log}"
    );
    assert!(!log.contains(SECRET), "a value is in cloud-init's log");

    // kiln reads its part from the same user-data, on the same instance.
    ci.network_up();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        "[metadata]\nprovider = \"ec2\"\ndeadline = \"10s\"\n[env]\nrequired = [\"APP_SECRET\", \"APP_ENV\"]\n",
    )
    .unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", ci.instance.name()])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(["env", "--config"])
        .arg(&config)
        .arg("--write-to")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["APP_SECRET", "user-data"])),
        "{stdout}"
    );
    let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
    assert!(
        env.lines()
            .any(|l| l == format!("APP_SECRET={SECRET}") || l == format!("APP_SECRET=\"{SECRET}\"")),
        "the env file lacks APP_SECRET"
    );
    // Both read the user-data from the emulator: cloud-init (dated API version) and kiln.
    let user_data_reads = ci
        .emulator
        .log()
        .iter()
        .filter(|l| l.path.ends_with("/user-data"))
        .count();
    assert!(user_data_reads >= 2, "{:#?}", ci.emulator.log());
}
