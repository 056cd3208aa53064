//! Pinning the image from outside, through `kiln boot` on the PHP example against the EC2
//! metadata emulator: the instance tag `kiln-expect-release` and the user-data key
//! `KILN_EXPECT_SEAL` name what must run. A matching pin boots; a wrong release, a wrong root hash
//! or a pin on an unsealed instance refuses the boot before anything starts; no pin boots as
//! before.

use nix::sys::signal::Signal;
use std::process::Command;
use std::time::Duration;
use testkit::control;
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options};
use testkit::example::Example;
use testkit::peers::{Kiln, tagged_processes};
use testkit::wait::{http_get, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const BOOT: Duration = Duration::from_secs(30);

/// The example, sealed as release v42 when `sealed` (with its root hash).
fn example(sealed: bool) -> (Example, Option<String>) {
    let ex = Example::render();
    ex.edit_config(|c| match sealed {
        true => {
            c + &format!(
                "\n[seal]\npaths = [\"{}\"]\nmanifest = \"{}\"\nreadonly = false\nrescan = \"1h\"\n",
                ex.app_dir.display(),
                ex.dir.path().join("seal").display()
            )
        }
        false => c,
    });
    if !sealed {
        return (ex, None);
    }
    let out = Command::new(KILN)
        .args([
            "seal",
            "--release",
            "v42",
            "--config",
            ex.config_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let root = stdout
        .lines()
        .find_map(|l| l.strip_prefix("root "))
        .expect("kiln seal prints the root hash")
        .to_string();
    (ex, Some(root))
}

/// Points the example's `[metadata]` at the emulator; tags named `env.X` are variables.
fn use_emulator(ex: &Example, emulator: &MetadataEmulator) {
    let url = emulator.url();
    ex.edit_config(|c| {
        c.replace(
            &format!("provider = \"nocloud\"\nseed = \"{}\"", ex.seed_dir.display()),
            &format!("provider = \"ec2\"\nendpoint = \"{url}\"\ndeadline = \"10s\"\ntags_prefix = \"env.\""),
        )
    });
    assert!(ex.config().contains(&url), "{}", ex.config());
}

/// Boots and waits for the refusal; checks that nothing started and nothing was written.
fn refused(ex: &Example) -> (serde_json::Value, String) {
    let mut kiln = Kiln::boot(KILN, &ex.config_path);
    let status = wait_until("the refused boot in status", BOOT, || {
        control::status(&ex.socket()).filter(|s| s["phase"] == "failed")
    });
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(http_get(&ex.readyz_url()).unwrap(), (503, "failed\n".to_string()));
    let started: Vec<_> = tagged_processes(kiln.tag())
        .into_iter()
        .filter(|(pid, _)| *pid != kiln.pid())
        .collect();
    assert!(started.is_empty(), "a refused boot started {started:?}");
    assert!(!ex.state_dir().join("env").exists(), "the env file was written");
    kiln.signal(Signal::SIGTERM);
    assert_eq!(kiln.wait_exit(BOOT).code(), Some(1));
    (status, text)
}

#[test]
fn a_matching_pin_boots_and_stays_out_of_the_environment() {
    let (ex, root) = example(true);
    let root = root.unwrap();
    let emulator = MetadataEmulator::start(
        Options::new(Cloud::Ec2)
            .tag("kiln-expect-release", "v42")
            .tag("env.APP_COLOR", "blue")
            .user_data(format!("GREETING=pinned\nKILN_EXPECT_SEAL={root}\n")),
    );
    use_emulator(&ex, &emulator);
    let (_kiln, _notify) = ex.boot_ready(KILN);

    let status = control::status(&ex.socket()).unwrap();
    assert_eq!(status["seal"]["expected"]["release"], "v42", "{status}");
    assert_eq!(status["seal"]["expected"]["root_hash"], root.as_str(), "{status}");
    let names: Vec<&str> = status["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"GREETING") && names.contains(&"APP_COLOR"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("KILN_EXPECT")), "{names:?}");
    let env_file = std::fs::read_to_string(ex.state_dir().join("env")).unwrap();
    assert!(!env_file.contains("KILN_EXPECT"), "{env_file}");
    let (_, text) = ex.status_cli(KILN, &[]);
    assert!(
        text.contains(&format!(
            "expected: release v42 (matches), seal {} (matches)",
            &root[..16]
        )),
        "{text}"
    );
    assert!(http_get(&ex.page_url()).unwrap().1.contains("greeting: pinned"));
}

#[test]
fn a_wrong_release_refuses_the_boot() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2).tag("kiln-expect-release", "v43"));
    let (ex, _) = example(true);
    use_emulator(&ex, &emulator);
    let (status, text) = refused(&ex);
    assert_eq!(
        status["reason"],
        "pin: the launch configuration expects release v43 (tag kiln-expect-release), this image is release v42"
    );
    assert_eq!(status["seal"]["expected"]["release"], "v43");
    assert_eq!(status["seal"]["release"], "v42");
    assert!(text.contains("expected: release v43 (running v42)"), "{text}");
}

#[test]
fn a_wrong_seal_refuses_the_boot() {
    let other = "0f".repeat(32);
    let emulator =
        MetadataEmulator::start(Options::new(Cloud::Ec2).user_data(format!("KILN_EXPECT_SEAL={other}\n")));
    let (ex, root) = example(true);
    use_emulator(&ex, &emulator);
    let (status, _) = refused(&ex);
    assert_eq!(
        status["reason"],
        format!(
            "pin: the launch configuration expects seal {other} (user-data KILN_EXPECT_SEAL), \
             this image's seal is {}",
            root.unwrap()
        )
    );
}

#[test]
fn a_pin_on_an_unsealed_instance_refuses_the_boot() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2).tag("kiln-expect-release", "v42"));
    let (ex, _) = example(false);
    use_emulator(&ex, &emulator);
    let (status, _) = refused(&ex);
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("pin: the launch configuration pins release v42 (tag kiln-expect-release), but this instance is not sealed"),
        "{reason}"
    );
}

#[test]
fn without_a_pin_the_boot_is_as_before() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2).tag("Name", "web-1"));
    let (ex, _) = example(true);
    use_emulator(&ex, &emulator);
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let status = control::status(&ex.socket()).unwrap();
    assert_eq!(status["seal"]["expected"], serde_json::Value::Null);
    assert_eq!(status["seal"]["release"], "v42");
    let phases: Vec<&str> = status["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    assert!(!phases.contains(&"pin"), "{phases:?}");
}
