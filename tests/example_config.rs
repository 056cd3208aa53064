//! The example's rendered kiln.toml is a valid config for this kiln.

use std::process::Command;
use testkit::example::Example;

#[test]
fn kiln_check_accepts_the_rendered_example() {
    let example = Example::render();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", "--config"])
        .arg(&example.config_path)
        .output()
        .expect("run kiln check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kiln check failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (3 services, 4 processes)"), "{stdout}");
}
