//! One-shot tasks (`[[task]]`) on the example app: run to completion before the services that
//! name them in `after`, retried with backoff, bounded by their timeout, their output in kiln's
//! log and in `kiln status`; a task failing for good refuses the boot, naming it, its exit and
//! its last lines. Tasks show in the boot timeline and in `/metrics`.

use crate::metrics_support::{scrape, with_metrics};
use std::path::Path;
use std::time::Duration;
use testkit::control::{self, unit};
use testkit::example::Example;
use testkit::wait::wait_until;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const DEADLINE: Duration = Duration::from_secs(60);

/// The example with `task` (TOML keys of one `[[task]]`) named `migrate`, php-fpm after it.
fn with_task(ex: &Example, task: &str) {
    let mut task: toml::Table = task
        .parse()
        .unwrap_or_else(|e| panic!("task of the test is not TOML: {e}"));
    task.insert("name".into(), "migrate".into());
    ex.edit_toml(|t| {
        t.insert("task".into(), toml::Value::Array(vec![task.into()]));
    });
    ex.edit_service("php-fpm", |s| {
        let after = s.entry("after").or_insert(toml::Value::Array(vec![]));
        after.as_array_mut().unwrap().push("migrate".into());
    });
}

fn sh(script: &str) -> String {
    format!("command = [\"sh\", \"-c\", {}]\n", toml::Value::from(script))
}

#[test]
fn a_task_runs_to_completion_before_its_dependents_retried_with_backoff() {
    let ex = Example::render();
    let metrics = with_metrics(&ex);
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("attempts");
    // Fails its first attempt, succeeds the second; says so on stdout.
    let script = format!(
        "echo x >> {c}; if [ $(wc -l < {c}) -lt 2 ]; then echo 'first try fails' >&2; exit 1; fi; \
         echo 'migrated to 0007'",
        c = count.display()
    );
    with_task(
        &ex,
        &format!(
            "{}retries = 2\nretry_delay = \"200ms\"\ntimeout = \"30s\"\n",
            sh(&script)
        ),
    );
    let (kiln, _notify) = ex.boot_ready(KILN);
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "x\nx\n", "two attempts");

    let status = control::status(&ex.socket()).unwrap();
    let task = unit(&status, "migrate");
    assert_eq!(
        (task["kind"].as_str(), task["state"].as_str()),
        (Some("task"), Some("done")),
        "{task}"
    );
    assert_eq!(task["task"]["attempts"], 2, "{task}");
    assert_eq!(task["task"]["once"], "instance", "{task}");
    let phase = |name: &str| {
        status["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["phase"] == name)
            .unwrap_or_else(|| panic!("no phase {name:?}: {status}"))
            .clone()
    };
    let task_phase = phase("task migrate");
    assert!(
        task_phase["duration_us"].as_u64().unwrap() >= 200_000,
        "the backoff is in it: {task_phase}"
    );
    let log = kiln.log();
    assert!(
        log.contains("migrated to 0007"),
        "the task's stdout in the log:\n{log}"
    );
    assert!(
        log.contains("first try fails"),
        "the task's stderr in the log:\n{log}"
    );

    let body = scrape(metrics, None).body;
    for series in [
        "kiln_unit_state{service=\"migrate\",unit=\"migrate\",state=\"done\"} 1",
        "kiln_task_ran_here{task=\"migrate\"} 1",
        "kiln_boot_phase_duration_seconds{phase=\"task migrate\"}",
    ] {
        assert!(body.contains(series), "{series} not in /metrics:\n{body}");
    }
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("migrate"), "{text}");
}

#[test]
fn a_task_failing_for_good_refuses_the_boot_naming_its_exit_and_last_lines() {
    let ex = Example::render();
    with_task(
        &ex,
        &format!(
            "{}retries = 1\nretry_delay = \"100ms\"\n",
            sh("echo 'SQLSTATE[42P07]: relation exists' >&2; exit 4")
        ),
    );
    let (_kiln, _notify) = ex.boot_notified(KILN, &[], &[]);
    let status = wait_until("the boot refused", DEADLINE, || {
        let s = control::status(&ex.socket())?;
        (s["phase"] == "failed").then_some(s)
    });
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("task \"migrate\" failed"), "{reason}");
    assert!(
        reason.contains('4') && reason.contains("attempt 2 of 2"),
        "{reason}"
    );
    assert!(
        reason.contains("stderr| SQLSTATE[42P07]: relation exists"),
        "{reason}"
    );
    // Nothing after it started.
    for name in ["php-fpm", "nginx"] {
        let u = control::try_unit(&status, name);
        assert!(
            u.is_none_or(|u| u["pid"].is_null() && u["last_exit"].is_null()),
            "{name} ran: {status}"
        );
    }
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("migrate") && text.contains("relation exists"),
        "{text}"
    );
}

#[test]
fn a_task_past_its_timeout_is_stopped_and_refuses_the_boot() {
    let ex = Example::render();
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let script = format!("touch {}; exec sleep 600", started.display());
    with_task(
        &ex,
        &format!("{}timeout = \"1s\"\nstop_timeout = \"1s\"\n", sh(&script)),
    );
    let (_kiln, _notify) = ex.boot_notified(KILN, &[], &[]);
    let status = wait_until("the boot refused", DEADLINE, || {
        let s = control::status(&ex.socket())?;
        (s["phase"] == "failed").then_some(s)
    });
    assert!(Path::new(&started).exists());
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.contains("migrate") && reason.contains("timed out after 1s"),
        "{reason}"
    );
}

#[test]
fn a_refusal_carries_the_last_lines_of_a_task_that_wrote_a_lot_before_it_failed() {
    // One write of ~110 KiB: the shell exits with up to 64 KiB (some 2,500 lines) still in the
    // pipe, and its exit is reaped at once; the reason must wait for the lines.
    let ex = Example::render();
    let script = "s=$(seq 1 4500 | sed 's/^/migration step /'); \
                  printf '%s\\nthe very last line\\n' \"$s\" >&2; exit 4";
    with_task(&ex, &sh(script));
    let (_kiln, _notify) = ex.boot_notified(KILN, &[], &[]);
    let status = wait_until("the boot refused", DEADLINE, || {
        let s = control::status(&ex.socket())?;
        (s["phase"] == "failed").then_some(s)
    });
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.ends_with("stderr| the very last line"), "{reason}");
}
