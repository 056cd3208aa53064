//! The real address: the emulator listens on 169.254.169.254:80 in one network namespace, kiln
//! runs in another with no `endpoint` override and reaches it as on a real instance. The two
//! namespaces are joined by a veth pair on 169.254.0.0/16 and have no default route. EC2 over
//! IPv6 the same way: `[fd00:ec2::254]:80`, with the instance's IPv4 path absent or leading
//! nowhere. Needs root (`ip netns`). The guard deletes both namespaces, even when the test fails.

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
    /// The veth ends: in `server`, in `instance`.
    links: (String, String),
}

/// The instance's IPv6 address beside IMDS's `fd00:ec2::254`.
const INSTANCE_IPV6: &str = "fd00:ec2::10";

impl Namespaces {
    fn new() -> Namespaces {
        let ns = Namespaces::linked();
        let (a, b) = (&ns.links.0, &ns.links.1);
        ip(&["-n", &ns.server, "addr", "add", "169.254.169.254/16", "dev", a]);
        ip(&["-n", &ns.server, "addr", "add", "169.254.42.42/16", "dev", a]);
        ip(&["-n", &ns.server, "addr", "add", "100.100.100.200/32", "dev", a]);
        ip(&["-n", &ns.instance, "addr", "add", "169.254.10.10/16", "dev", b]);
        ip(&["-n", &ns.instance, "route", "add", "100.100.100.200/32", "dev", b]);
        ns
    }

    /// IMDS on IPv6 only: `server` holds `fd00:ec2::254`, `instance` [`INSTANCE_IPV6`] (no
    /// duplicate address detection, so both are usable at once). With `ipv4_to_nowhere`, the
    /// instance also has 169.254.10.10/16, but nothing answers 169.254.169.254 there: its
    /// connection attempts hang (no ARP answer) instead of failing at once.
    fn ipv6_only(ipv4_to_nowhere: bool) -> Namespaces {
        let ns = Namespaces::linked();
        let (a, b) = (&ns.links.0, &ns.links.1);
        ip(&[
            "-n",
            &ns.server,
            "addr",
            "add",
            "fd00:ec2::254/64",
            "dev",
            a,
            "nodad",
        ]);
        ip(&[
            "-n",
            &ns.instance,
            "addr",
            "add",
            &format!("{INSTANCE_IPV6}/64"),
            "dev",
            b,
            "nodad",
        ]);
        if ipv4_to_nowhere {
            ip(&["-n", &ns.instance, "addr", "add", "169.254.10.10/16", "dev", b]);
        }
        ns
    }

    /// Both namespaces and the veth pair between them, up, without addresses.
    fn linked() -> Namespaces {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (network namespaces)"
        );
        let id = format!("{}{}", std::process::id(), rand_suffix());
        let (a, b) = (format!("kmd{id}a"), format!("kmd{id}b"));
        let ns = Namespaces {
            server: format!("kmd-s-{id}"),
            instance: format!("kmd-i-{id}"),
            links: (a[..a.len().min(15)].to_string(), b[..b.len().min(15)].to_string()),
        };
        // The guard exists before anything is created, so a failure below still cleans up.
        ip(&["netns", "add", &ns.server]);
        ip(&["netns", "add", &ns.instance]);
        let (a, b) = (ns.links.0.as_str(), ns.links.1.as_str());
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
        for (netns, dev) in [(&ns.server, a), (&ns.instance, b)] {
            ip(&["-n", netns, "link", "set", dev, "up"]);
            ip(&["-n", netns, "link", "set", "lo", "up"]);
        }
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

/// `kiln env` in the instance namespace with `config`: its exit status, stdout and stderr.
fn kiln_env_in(ns: &Namespaces, config: &Path) -> (bool, String, String) {
    let output = Command::new("ip")
        .args(["netns", "exec", &ns.instance])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(["env", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const EC2_CONFIG: &str = "[metadata]\nprovider = \"ec2\"\ndeadline = \"10s\"\ntags_prefix = \"env.\"\n[env]\nrequired = [\"APP_SECRET\", \"APP_ENV\"]\n";

fn ec2_on(ns: &Namespaces, addr: &str) -> MetadataEmulator {
    let options = Options::new(Cloud::Ec2)
        .user_data("APP_SECRET=s3cr3t\n")
        .tag("env.APP_ENV", "staging");
    MetadataEmulator::start_in_netns(&Namespaces::path(&ns.server), addr.parse().unwrap(), options)
        .expect("emulator in the server namespace")
}

/// Every request came from the instance's IPv6 address, the token among them.
fn assert_all_over_ipv6(emulator: &MetadataEmulator) {
    let log = emulator.log();
    assert!(
        log.iter()
            .any(|l| l.method == "PUT" && l.path == "/latest/api/token"),
        "{log:#?}"
    );
    assert!(
        log.iter().all(|l| l.peer.ip().to_string() == INSTANCE_IPV6),
        "{log:#?}"
    );
    assert_eq!(emulator.tokens_issued(), 1, "{log:#?}");
}

#[test]
fn ec2_on_an_ipv6_only_instance_uses_fd00_ec2_254() {
    let ns = Namespaces::ipv6_only(false);
    let emulator = ec2_on(&ns, "[fd00:ec2::254]:80");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln.toml");
    std::fs::write(&config, EC2_CONFIG).unwrap();
    let (ok, stdout, stderr) = kiln_env_in(&ns, &config);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("ec2 at http://[fd00:ec2::254] ("), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["APP_ENV", "tag"])),
        "{stdout}"
    );
    assert_all_over_ipv6(&emulator);
}

#[test]
fn ec2_whose_ipv4_path_leads_nowhere_uses_ipv6_within_the_deadline() {
    let ns = Namespaces::ipv6_only(true);
    let emulator = ec2_on(&ns, "[fd00:ec2::254]:80");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln.toml");
    std::fs::write(&config, EC2_CONFIG).unwrap();
    let (ok, stdout, stderr) = kiln_env_in(&ns, &config);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("ec2 at http://[fd00:ec2::254] ("), "{stdout}");
    assert_all_over_ipv6(&emulator);
}

#[test]
fn ec2_with_both_addresses_keeps_to_ipv4() {
    let ns = Namespaces::new();
    let (a, b) = (&ns.links.0, &ns.links.1);
    ip(&[
        "-n",
        &ns.server,
        "addr",
        "add",
        "fd00:ec2::254/64",
        "dev",
        a,
        "nodad",
    ]);
    ip(&[
        "-n",
        &ns.instance,
        "addr",
        "add",
        &format!("{INSTANCE_IPV6}/64"),
        "dev",
        b,
        "nodad",
    ]);
    let ipv4 = ec2_on(&ns, "169.254.169.254:80");
    let ipv6 = ec2_on(&ns, "[fd00:ec2::254]:80");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln.toml");
    std::fs::write(&config, EC2_CONFIG).unwrap();
    let (ok, stdout, stderr) = kiln_env_in(&ns, &config);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("ec2 at http://169.254.169.254 ("), "{stdout}");
    assert_eq!(ipv4.tokens_issued(), 1);
    assert!(ipv4.log().iter().any(|l| l.method == "GET"), "{:#?}", ipv4.log());
    // IPv6 is asked only if IPv4 has not answered within the head start (a very busy machine):
    // even then, the session stays where the answer came from.
    assert!(ipv6.log().iter().all(|l| l.method == "PUT"), "{:#?}", ipv6.log());
}

#[test]
fn ec2_unreachable_on_both_names_both_in_the_error() {
    let ns = Namespaces::ipv6_only(false);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln.toml");
    std::fs::write(&config, EC2_CONFIG.replace("\"10s\"", "\"1s\"")).unwrap();
    // Nothing listens on port 80: IPv4 has no route, IPv6 is refused.
    let (ok, _, stderr) = kiln_env_in(&ns, &config);
    assert!(!ok);
    assert!(
        stderr.contains(
            "metadata (ec2 at http://169.254.169.254 or http://[fd00:ec2::254]), session token: gave up after"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("IPv4: cannot connect")
            && stderr.contains("IPv6 (http://[fd00:ec2::254]): cannot connect"),
        "{stderr}"
    );
}
