//! The real address: the emulator listens on 169.254.169.254:80 in one network namespace, kiln
//! runs in another with no `endpoint` override and reaches it as on a real instance. The two
//! namespaces are joined by a veth pair on 169.254.0.0/16 and have no default route.
//! Needs root (`ip netns`). The guard deletes both namespaces, even when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::emulator::metadata::{CLOUDS, Cloud, MetadataEmulator, Options};

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Two namespaces: `server` holds 169.254.169.254 (and Scaleway's 169.254.42.42, Alibaba's
/// 100.100.100.200, reached on-link), `instance` holds 169.254.10.10.
struct Namespaces {
    server: String,
    instance: String,
}

impl Namespaces {
    fn new() -> Namespaces {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (network namespaces)"
        );
        let id = format!("{}{}", std::process::id(), rand_suffix());
        let ns = Namespaces {
            server: format!("kmd-s-{id}"),
            instance: format!("kmd-i-{id}"),
        };
        // The guard exists before anything is created, so a failure below still cleans up.
        ip(&["netns", "add", &ns.server]);
        ip(&["netns", "add", &ns.instance]);
        let (a, b) = (format!("kmd{id}a"), format!("kmd{id}b"));
        let (a, b) = (&a[..a.len().min(15)], &b[..b.len().min(15)]);
        ip(&[
            "-n",
            &ns.server,
            "link",
            "add",
            a,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "netns",
            &ns.instance,
        ]);
        ip(&["-n", &ns.server, "addr", "add", "169.254.169.254/16", "dev", a]);
        ip(&["-n", &ns.server, "addr", "add", "169.254.42.42/16", "dev", a]);
        ip(&["-n", &ns.server, "addr", "add", "100.100.100.200/32", "dev", a]);
        ip(&["-n", &ns.instance, "addr", "add", "169.254.10.10/16", "dev", b]);
        for (netns, dev) in [(&ns.server, a), (&ns.instance, b)] {
            ip(&["-n", netns, "link", "set", dev, "up"]);
            ip(&["-n", netns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", &ns.instance, "route", "add", "100.100.100.200/32", "dev", b]);
        ns
    }

    fn path(name: &str) -> PathBuf {
        Path::new("/run/netns").join(name)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        for name in [&self.server, &self.instance] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:03}", nanos % 1000)
}

#[test]
fn every_provider_at_its_own_address_without_an_endpoint_override() {
    let ns = Namespaces::new();
    let dir = tempfile::tempdir().unwrap();
    for cloud in CLOUDS {
        let options = Options::new(cloud)
            .user_data("APP_SECRET=s3cr3t\n")
            .tag("env.APP_ENV", "staging");
        // Each cloud's own address, as kiln defaults to it.
        let address = match cloud {
            Cloud::Scaleway => "169.254.42.42",
            Cloud::Alibaba => "100.100.100.200",
            _ => "169.254.169.254",
        };
        let emulator = MetadataEmulator::start_in_netns(
            &Namespaces::path(&ns.server),
            format!("{address}:80").parse().unwrap(),
            options,
        )
        .expect("emulator in the server namespace");
        let config = dir.path().join(format!("{}.toml", cloud.name()));
        std::fs::write(
            &config,
            format!(
                "[metadata]\nprovider = \"{}\"\ndeadline = \"10s\"\n[env]\nrequired = [\"APP_SECRET\"]\n",
                cloud.name()
            ),
        )
        .unwrap();
        let output = Command::new("ip")
            .args(["netns", "exec", &ns.instance])
            .arg(env!("CARGO_BIN_EXE_kiln"))
            .args(["env", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{cloud:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.starts_with(&format!("{} at http://{address} (", cloud.name())),
            "{stdout}"
        );
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().eq(["APP_SECRET", "user-data"])),
            "{stdout}"
        );
        // The emulator saw kiln's own address: the requests really crossed namespaces.
        let log = emulator.log();
        assert!(!log.is_empty());
        assert!(
            log.iter().all(|l| l.peer.ip().to_string() == "169.254.10.10"),
            "{log:?}"
        );
    }
}

#[test]
fn the_instance_namespace_has_no_default_route() {
    let ns = Namespaces::new();
    let output = Command::new("ip")
        .args(["-n", &ns.instance, "route", "show", "default"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
