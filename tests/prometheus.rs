//! A real Prometheus (Debian's package) scrapes a running kiln; its HTTP API must then tell what
//! happened: which units are ready, a restart after php-fpm is SIGKILLed, a probe latency
//! quantile, and the answers of the queries docs/operations/monitoring.md prints.

use crate::hostile_support::php_fpm_comes_back_after_sigkill;
use crate::metrics_support::{scrape, value_of, with_metrics};
use std::time::Duration;
use testkit::control;
use testkit::example::Example;
use testkit::prometheus::Prometheus;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Scrapes often, so that a change shows in Prometheus within a second.
const SCRAPE_EVERY: Duration = Duration::from_millis(250);

/// How long a change may take to reach Prometheus: a few scrapes, on a busy 2-core machine.
const SEEN_WITHIN: Duration = Duration::from_secs(30);

/// The queries of docs/operations/monitoring.md, run here as they are printed there.
const FLEET_ON_ONE_IMAGE: &str = "count(count by (release, seal_root_hash) (kiln_info))";
const RESTARTING_PHP_FPM: &str =
    "sum by (instance) (increase(kiln_unit_restarts_total{service=\"php-fpm\"}[15m])) > 0";
const BOOT_BY_PHASE: &str = "avg by (phase) (kiln_boot_phase_duration_seconds)";
const PROBE_P90: &str = "histogram_quantile(0.9, sum by (le, unit) (rate(kiln_probe_duration_seconds_bucket{probe=\"ready\"}[1m])))";

#[test]
fn prometheus_sees_what_kiln_did() {
    let ex = Example::render();
    let addr = with_metrics(&ex);
    seal(&ex, "v7");
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let prometheus = Prometheus::start(addr, SCRAPE_EVERY);

    prometheus.wait_for_value("up{job=\"kiln\"}", SEEN_WITHIN, |v| v == 1.0);
    let (health, error) = prometheus.target_health().unwrap();
    assert_eq!((health.as_str(), error.as_str()), ("up", ""));

    // Every unit kiln runs is ready, and Prometheus counts the same units.
    let status = control::status(&ex.socket()).unwrap();
    let units = status["services"].as_array().unwrap().len();
    assert!(units >= 4, "{status}");
    prometheus.wait_for_value("count(kiln_unit_ready == 1)", SEEN_WITHIN, |v| v == units as f64);
    prometheus.wait_for_value("kiln_phase{phase=\"ready\"}", SEEN_WITHIN, |v| v == 1.0);
    prometheus.wait_for_value(FLEET_ON_ONE_IMAGE, SEEN_WITHIN, |v| v == 1.0);
    let info = prometheus.query("kiln_info").unwrap();
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(
        info[0].labels.get("instance_id").map(String::as_str),
        Some("iid-kiln-example-0001"),
        "{info:?}"
    );
    let root_hash = status["seal"]["root_hash"].as_str().expect("a sealed image");
    assert_eq!(
        info[0].labels.get("seal_root_hash").map(String::as_str),
        Some(root_hash)
    );
    assert_eq!(info[0].labels.get("release").map(String::as_str), Some("v7"));

    // The boot's phases are gauges fixed after the boot: Prometheus has kiln's own figures.
    let exposition = scrape(addr, None).body;
    let phases = prometheus.query(BOOT_BY_PHASE).unwrap();
    for phase in ["metadata", "env", "start php-fpm", "start nginx"] {
        let kiln_says = value_of(
            &exposition,
            &format!("kiln_boot_phase_duration_seconds{{phase=\"{phase}\"}}"),
        )
        .unwrap_or_else(|| panic!("{phase} in:\n{exposition}"));
        let seen = phases
            .iter()
            .find(|s| s.labels.get("phase").map(String::as_str) == Some(phase));
        assert_eq!(seen.map(|s| s.value), Some(kiln_says), "{phase}: {phases:?}");
    }

    // No restart yet; then one, seen as a restart of php-fpm on this instance.
    prometheus.wait_for_value("kiln_unit_restarts_total{unit=\"php-fpm\"}", SEEN_WITHIN, |v| {
        v == 0.0
    });
    assert_eq!(prometheus.query(RESTARTING_PHP_FPM).unwrap(), vec![]);
    php_fpm_comes_back_after_sigkill(&ex);
    prometheus.wait_for_value("kiln_unit_restarts_total{unit=\"php-fpm\"}", SEEN_WITHIN, |v| {
        v == 1.0
    });
    prometheus.wait_for_value("kiln_unit_last_exit_code{unit=\"php-fpm\"}", SEEN_WITHIN, |v| {
        v == 128.0 + 9.0
    });
    let restarting = prometheus.wait_for_value(RESTARTING_PHP_FPM, SEEN_WITHIN, |v| v > 0.0);
    assert!(restarting >= 1.0, "{restarting}");
    let who = prometheus.query(RESTARTING_PHP_FPM).unwrap();
    assert_eq!(who[0].labels["instance"], addr.to_string(), "{who:?}");
    prometheus.wait_for_value("count(kiln_unit_ready == 1)", SEEN_WITHIN, |v| v == units as f64);

    // php-fpm's readiness probe is a FastCGI ping on this machine: its p90 is a real latency,
    // above zero and well inside the probe's 1 s timeout.
    let p90 = prometheus.wait_for_value(
        &PROBE_P90.replace("probe=\"ready\"", "probe=\"ready\",unit=\"php-fpm\""),
        SEEN_WITHIN,
        |v| v.is_finite(),
    );
    assert!(
        0.0 < p90 && p90 < 1.0,
        "p90 of php-fpm's readiness checks: {p90} s"
    );
    let all = prometheus.query(PROBE_P90).unwrap();
    assert!(all.iter().any(|s| s.labels["unit"] == "nginx"), "{all:?}");
    let checks = prometheus.wait_for_value(
        "kiln_probe_duration_seconds_count{unit=\"php-fpm\",probe=\"ready\"}",
        SEEN_WITHIN,
        |v| v >= 2.0,
    );
    let failures = prometheus
        .query("kiln_probe_failures_total{unit=\"php-fpm\",probe=\"ready\"}")
        .unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].value < checks, "{failures:?} of {checks}");
}

/// Seals the example's app as release `release` (the drift watch off: nothing changes here).
fn seal(ex: &Example, release: &str) {
    let manifest = ex.dir.path().join("seal");
    ex.edit_config(|c| {
        c + &format!(
            "\n[seal]\npaths = [\"{}\"]\nmanifest = \"{}\"\nreadonly = false\n",
            ex.app_dir.display(),
            manifest.display()
        )
    });
    let config = ex.config_path.to_str().unwrap();
    let sealed = std::process::Command::new(KILN)
        .args(["seal", "--config", config, "--release", release])
        .output()
        .unwrap();
    assert!(
        sealed.status.success(),
        "kiln seal: {}",
        String::from_utf8_lossy(&sealed.stderr)
    );
}

#[test]
fn the_docs_print_the_queries_this_test_runs() {
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations/monitoring.md");
    let text = std::fs::read_to_string(page).unwrap();
    for query in [FLEET_ON_ONE_IMAGE, RESTARTING_PHP_FPM, BOOT_BY_PHASE, PROBE_P90] {
        assert!(text.contains(query), "{page} lacks `{query}`");
    }
}
