//! `[warm]` at boot, on the Symfony example (OPcache on, `validate_timestamps=0`): the first
//! request after READY=1 finds the app's scripts already compiled in OPcache, because kiln asked
//! for them through nginx before saying ready; without `[warm]` the same request finds them cold
//! (the control that shows the first test can fail). A failing warm-up is a warning, not a
//! refusal.

use testkit::control;
use testkit::symfony::SymfonyExample;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// OPcache as a pool worker sees it: whether it is on, and every script it holds, one a line.
const OPCACHE_PROBE: &str = r#"<?php
header('Content-Type: text/plain');
$status = opcache_get_status(true);
echo 'enabled: ', ($status && $status['opcache_enabled']) ? 'yes' : 'no', "\n";
foreach (array_keys($status['scripts'] ?? []) as $script) {
    echo 'script: ', $script, "\n";
}
"#;

/// Scripts only a request through the app compiles: its controller and its compiled container.
const APP_SCRIPTS: [&str; 2] = [
    "/src/Controller/PageController.php",
    "/var/cache/prod/App_KernelProdContainer.php",
];

/// The scripts OPcache holds, by the probe (the first request kiln has not sent itself).
fn cached_scripts(ex: &SymfonyExample) -> Vec<String> {
    let seen = ex.probe("opcache-probe.php");
    assert!(seen.starts_with("enabled: yes\n"), "OPcache is off: {seen}");
    seen.lines()
        .filter_map(|l| l.strip_prefix("script: "))
        .map(str::to_owned)
        .collect()
}

fn holds(scripts: &[String], suffix: &str) -> bool {
    scripts.iter().any(|s| s.ends_with(suffix))
}

#[test]
fn the_first_request_after_ready_finds_the_app_in_opcache() {
    let ex = SymfonyExample::render();
    ex.install_probe("opcache-probe.php", OPCACHE_PROBE);
    let (kiln, _notify) = ex.boot_ready(KILN);

    // READY=1 was sent: the warm-up is over and said how it went.
    let status = control::status(&ex.socket()).unwrap();
    let warm = &status["warm"];
    assert_eq!(warm["state"], "done", "{warm}");
    assert_eq!(warm["requests"], 20, "{warm}");
    assert_eq!(warm["answered"], 20, "{warm}");
    assert_eq!(warm["failed"], 0, "{warm}");
    let log = kiln.log();
    assert!(
        log.contains("warm-up: 20 requests to 1 path, 2 at a time"),
        "{log}"
    );

    let scripts = cached_scripts(&ex);
    for script in APP_SCRIPTS {
        assert!(holds(&scripts, script), "{script} not in OPcache: {scripts:#?}");
    }
}

#[test]
fn without_warm_up_the_first_request_finds_opcache_cold() {
    let ex = SymfonyExample::render();
    ex.edit_toml(|table| {
        table.remove("warm").expect("the example has [warm]");
    });
    ex.install_probe("opcache-probe.php", OPCACHE_PROBE);
    let (_kiln, _notify) = ex.boot_ready(KILN);

    let status = control::status(&ex.socket()).unwrap();
    assert!(status["warm"].is_null(), "{}", status["warm"]);
    let scripts = cached_scripts(&ex);
    for script in APP_SCRIPTS {
        assert!(
            !holds(&scripts, script),
            "{script} already in OPcache: {scripts:#?}"
        );
    }
    // The page compiles them: the probe sees what the app's first request leaves.
    let (code, page) = ex.page();
    assert_eq!(code, 200, "{page}");
    let scripts = cached_scripts(&ex);
    for script in APP_SCRIPTS {
        assert!(holds(&scripts, script), "{script} not in OPcache: {scripts:#?}");
    }
}

#[test]
fn a_warm_up_whose_requests_fail_is_a_warning_and_the_instance_becomes_ready() {
    let ex = SymfonyExample::render();
    ex.edit_toml(|table| {
        let warm = table["warm"].as_table_mut().unwrap();
        warm.insert("paths".into(), toml::Value::Array(vec!["/no-such-page".into()]));
        warm.insert("requests".into(), 4.into());
    });
    let (kiln, _notify) = ex.boot_ready(KILN);
    let status = control::status(&ex.socket()).unwrap();
    let warm = &status["warm"];
    assert_eq!(warm["state"], "done", "{warm}");
    assert_eq!(warm["failed"], 4, "{warm}");
    assert_eq!(warm["first_failure"], "GET /no-such-page: status 404", "{warm}");
    assert_eq!(status["phase"], "ready", "{status}");
    let (code, said) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("4 failed (first: GET /no-such-page: status 404)"),
        "{said}"
    );
    assert!(kiln.log().contains("/no-such-page"), "{}", kiln.log());
}
