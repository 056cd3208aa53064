//! The example's rendered kiln.toml is a valid config for this kiln, also after the harness edits it.

use std::path::Path;
use std::process::Command;
use testkit::example::Example;

fn kiln_check(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run kiln check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kiln check failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn kiln_check_accepts_the_rendered_example() {
    let example = Example::render();
    let stdout = kiln_check(&example.config_path);
    assert!(stdout.contains("ok (3 services, 4 processes)"), "{stdout}");
}

#[test]
fn the_example_edited_as_toml_is_still_a_valid_config() {
    let example = Example::render();
    example.set_service_env("worker", "WORKER_FAIL", "1");
    example.edit_probe("nginx", "live", |probe| {
        probe.insert("period".into(), "200ms".into());
    });
    example.edit_service("worker", |service| {
        service.insert("replicas".into(), 3.into());
    });
    let stdout = kiln_check(&example.config_path);
    assert!(stdout.contains("ok (3 services, 5 processes)"), "{stdout}");
    assert_eq!(
        example
            .service_env("worker")
            .get("WORKER_FAIL")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        example.service_env("worker").get("APP_ENV").map(String::as_str),
        Some("prod")
    );
    let config = example.config_table();
    let nginx = &config["service"].as_array().unwrap()[1];
    assert_eq!(nginx["live"]["period"].as_str(), Some("200ms"));
    assert_eq!(nginx["live"]["failure_threshold"].as_integer(), Some(3));
}
