//! `units/kiln.service` as systemd reads it, and the numbers in it against the configs it runs.
//!
//! `systemd-analyze verify` runs offline against a throwaway root holding the host's systemd units,
//! the unit and a kiln binary at /usr/bin/kiln: this machine's systemd is not PID 1, and verify
//! otherwise checks /usr/bin/kiln on the host. (The image bake verifies it again against the
//! image's own systemd, and the e2e once more with the guest's systemd running as PID 1.)

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const UNIT: &str = include_str!("../units/kiln.service");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A root for `systemd-analyze verify --root`: the host's unit directory, `unit_text` as
/// kiln.service, and (when `with_binary`) kiln at /usr/bin/kiln.
fn verify_root(unit_text: &str, with_binary: bool) -> tempfile::TempDir {
    let host_units = Path::new("/usr/lib/systemd/system");
    assert!(
        host_units.join("multi-user.target").exists(),
        "systemd's units are missing from {}: install systemd (packaging/dev-setup.sh --tests)",
        host_units.display()
    );
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.path().join("usr/lib/systemd")).unwrap();
    std::fs::create_dir_all(root.path().join("etc/systemd/system")).unwrap();
    std::os::unix::fs::symlink("usr/lib", root.path().join("lib")).unwrap();
    let copied = Command::new("cp")
        .args(["-a", "--"])
        .arg(host_units)
        .arg(root.path().join("usr/lib/systemd"))
        .status()
        .unwrap();
    assert!(copied.success(), "copy {}", host_units.display());
    std::fs::write(units.join("kiln.service"), unit_text).unwrap();
    if with_binary {
        std::fs::copy(KILN, root.path().join("usr/bin/kiln")).unwrap();
    }
    root
}

/// `systemd-analyze verify`'s exit status and everything it printed. It exits 0 on some problems
/// (an unknown value is "ignoring"), so a clean unit is exit 0 *and* silence.
fn verify(root: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg("kiln.service")
        .output()
        .expect("run systemd-analyze (package systemd)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn kiln_service_verifies_clean() {
    let root = verify_root(UNIT, true);
    let (ok, text) = verify(root.path());
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify kiln.service:\n{text}"
    );
}

#[test]
fn verify_catches_a_bad_value_and_a_missing_binary() {
    let root = verify_root(&UNIT.replace("Type=notify", "Type=notifyy"), true);
    let (_, text) = verify(root.path());
    assert!(text.contains("notifyy"), "a bad Type= went unnoticed:\n{text}");

    let root = verify_root(UNIT, false);
    let (ok, text) = verify(root.path());
    assert!(
        !ok && text.contains("/usr/bin/kiln"),
        "a missing binary went unnoticed:\n{text}"
    );
}

/// The unit's `[Service]` settings (the last value of each key: as systemd, for these keys).
fn service_settings() -> BTreeMap<String, String> {
    let mut section = "";
    let mut settings = BTreeMap::new();
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]"
            && !line.starts_with('#')
            && let Some((key, value)) = line.split_once('=')
        {
            settings.insert(key.to_string(), value.to_string());
        }
    }
    settings
}

#[test]
fn the_unit_lets_kiln_drive_its_own_start_and_stop() {
    let s = service_settings();
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("KillMode", "mixed"),
        ("ExecStart", "/usr/bin/kiln boot"),
        ("Restart", "on-failure"),
        ("OOMPolicy", "continue"),
        // No core file of kiln (its resolved secrets) or of a service (its environment).
        ("LimitCORE", "0"),
    ] {
        assert_eq!(s.get(key).map(String::as_str), Some(want), "{key}=");
    }
    // A broken config cannot be fixed by a restart: its exit code must be the one kiln uses.
    assert_eq!(
        s.get("RestartPreventExitStatus"),
        Some(&kiln::EXIT_CONFIG.to_string()),
        "RestartPreventExitStatus= must be kiln's EX_CONFIG exit code"
    );
    let watchdog = humantime::parse_duration(&s["WatchdogSec"]).unwrap();
    assert!(
        watchdog >= Duration::from_secs(10),
        "WatchdogSec={watchdog:?}: too tight for a loaded VM"
    );
    // Nothing that gives the unit a private mount namespace (the seal's read-only remount must be
    // seen machine-wide) and nothing the services would inherit to their harm.
    for key in [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ReadOnlyPaths",
        "NoNewPrivileges",
        "MemoryDenyWriteExecute",
        "CapabilityBoundingSet",
        "User",
    ] {
        assert!(
            !s.contains_key(key),
            "{key}= set: see the comment in the unit for why not"
        );
    }
}

/// Only what the stop arithmetic needs from a kiln.toml.
#[derive(Deserialize)]
struct StopConfig {
    #[serde(default)]
    lb: Option<StopLb>,
    #[serde(default, rename = "service")]
    services: Vec<StopService>,
}
#[derive(Deserialize)]
struct StopLb {
    drain_timeout: Option<String>,
}
#[derive(Deserialize)]
struct StopService {
    name: String,
    #[serde(default)]
    after: Vec<String>,
    stop_timeout: Option<String>,
}

/// The longest orderly stop of `config`: the load balancer drain, then services in reverse
/// dependency order, each taking up to its stop_timeout once everything waiting for it is gone.
fn longest_stop(config: &Path) -> Duration {
    let text = std::fs::read_to_string(config).unwrap();
    let c: StopConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let parse = |d: &Option<String>, default: u64| {
        d.as_deref()
            .map(|d| humantime::parse_duration(d).unwrap())
            .unwrap_or(Duration::from_secs(default))
    };
    // kiln's defaults: drain_timeout 30s, stop_timeout 10s.
    let drain = parse(&c.lb.as_ref().and_then(|l| l.drain_timeout.clone()), 30);
    fn done(c: &StopConfig, name: &str, parse: &dyn Fn(&Option<String>, u64) -> Duration) -> Duration {
        let s = c.services.iter().find(|s| s.name == name).unwrap();
        let dependents = c.services.iter().filter(|d| d.after.iter().any(|a| a == name));
        parse(&s.stop_timeout, 10)
            + dependents
                .map(|d| done(c, &d.name, parse))
                .max()
                .unwrap_or_default()
    }
    let chain = c
        .services
        .iter()
        .map(|s| done(&c, &s.name, &parse))
        .max()
        .unwrap_or_default();
    drain + chain
}

#[test]
fn timeout_stop_sec_covers_drain_and_stop_chain() {
    let stop = humantime::parse_duration(&service_settings()["TimeoutStopSec"]).unwrap();
    for config in [
        "packaging/image/files/final/etc/kiln/kiln.toml",
        "packaging/debian/kiln.toml",
    ] {
        let longest = longest_stop(&repo().join(config));
        assert!(
            stop > longest,
            "TimeoutStopSec={stop:?} does not cover {config}'s longest orderly stop ({longest:?})"
        );
    }
}
