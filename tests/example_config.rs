//! The example's rendered kiln.toml is a valid config for this kiln, also after the harness edits it,
//! and the harness cleans up after the real kiln.

use testkit::example::Example;

fn kiln_check(example: &Example) -> String {
    let out = example.check(env!("CARGO_BIN_EXE_kiln"), &[]);
    assert_eq!(
        out.code,
        Some(0),
        "kiln check failed: {}{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

#[test]
fn kiln_check_accepts_the_rendered_example() {
    let example = Example::render();
    let stdout = kiln_check(&example);
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
    let stdout = kiln_check(&example);
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

/// The harness against the real kiln: whatever state kiln is left in, dropping it leaves no process
/// of the example behind, even services orphaned by a SIGKILLed kiln (nginx and php-fpm overwrite
/// their environment, so the tag alone cannot find them).
#[test]
fn dropping_a_killed_kiln_leaves_no_service_behind() {
    use nix::sys::signal::Signal;
    use std::time::Duration;
    use testkit::peers::{Kiln, tagged_processes};
    use testkit::wait::{http_get, wait_until};

    let example = Example::render();
    let greeting = format!("harness test {}", std::process::id());
    // The page's greeting comes from the instance's user-data (it overrides kiln's own env).
    std::fs::write(
        example.seed_dir.join("user-data"),
        format!("GREETING={greeting}\n"),
    )
    .unwrap();
    let config = example.config_path.to_str().unwrap();
    let mut kiln = Kiln::boot_with(env!("CARGO_BIN_EXE_kiln"), &["boot", "--config", config], &[]);
    wait_until("/readyz 200", Duration::from_secs(20), || {
        (http_get(&example.readyz_url()).ok()?.0 == 200).then_some(())
    });
    let (_, page) = http_get(&example.page_url()).unwrap();
    assert!(page.contains(&format!("greeting: {greeting}\n")), "{page}");
    let running = kiln.processes();
    let count = |comm: &str| running.iter().filter(|(_, c)| c == comm).count();
    assert_eq!(count("php-fpm8.2"), 3, "master and 2 pool workers: {running:?}");
    assert_eq!(count("nginx"), 2, "master and worker: {running:?}");
    assert_eq!(count("php"), 2, "2 worker replicas: {running:?}");

    kiln.signal(Signal::SIGKILL);
    kiln.wait_exit(Duration::from_secs(5));
    let orphans = tagged_processes(kiln.tag());
    assert!(
        orphans.iter().any(|(_, comm)| comm == "nginx"),
        "the services outlive a SIGKILLed kiln, the case this test covers: {orphans:?}"
    );
    let tag = kiln.tag().to_string();
    drop(kiln);
    for (pid, comm) in &running {
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_err(),
            "{comm} (pid {pid}) survived; orphans after the SIGKILL were {orphans:?}"
        );
    }
    assert_eq!(tagged_processes(&tag), Vec::new());
}
