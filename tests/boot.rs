//! `kiln boot` on the PHP example: order, readiness, the page, `kiln status` and the control socket.

use std::process::Command;
use std::time::Duration;
use testkit::control;
use testkit::example::Example;
use testkit::wait::{http_get, http_get_with, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const BOOT: Duration = Duration::from_secs(30);

/// A service that is ready only once the test creates a file: the instance must wait for it.
fn add_gate(ex: &Example) -> std::path::PathBuf {
    let gate = ex.dir.path().join("gate");
    ex.edit_config(|c| {
        c + &format!(
            "\n[[service]]\nname = \"gate\"\ncommand = [\"sleep\", \"1000\"]\n\
             [service.ready]\nexec = [\"test\", \"-e\", \"{}\"]\nperiod = \"100ms\"\n",
            gate.display()
        )
    });
    gate
}

#[test]
fn nginx_starts_after_php_fpm_is_ready_and_readyz_waits_for_every_service() {
    let ex = Example::render();
    ex.set_service_env("php-fpm", "GREETING", "hello from kiln");
    let gate = add_gate(&ex);
    let (kiln, notify) = ex.boot_notified(KILN, &[], &[]);

    wait_until("nginx and the workers ready", BOOT, || {
        let s = control::status(&ex.socket())?;
        ["php-fpm", "nginx", "worker#1", "worker#2"]
            .iter()
            .all(|u| control::try_unit(&s, u).is_some_and(|u| u["ready"] == true))
            .then_some(())
    });
    assert_eq!(
        http_get(&ex.readyz_url()).unwrap(),
        (503, "starting\n".to_string())
    );
    assert!(
        !notify.lines().iter().any(|l| l == "READY=1"),
        "READY=1 before the gate opened"
    );
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 2, "status while starting:\n{text}");
    assert!(text.contains("gate not ready"), "{text}");

    std::fs::write(&gate, "").unwrap();
    notify.wait_for("READY=1", BOOT, |l| l == "READY=1");
    assert_eq!(http_get(&ex.readyz_url()).unwrap(), (200, "ready\n".to_string()));

    assert!(
        kiln.line_of("php-fpm: ready") < kiln.line_of("nginx: started"),
        "nginx started before php-fpm's FastCGI ping passed:\n{}",
        kiln.log()
    );
    let (code, page) = http_get(&ex.page_url()).unwrap();
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("greeting: hello from kiln"), "{page}");
}

#[test]
fn status_shows_every_unit_and_answers_json_and_exit_codes() {
    let ex = Example::render();
    let (_kiln, _notify) = ex.boot_ready(KILN);

    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.lines().next().unwrap().ends_with(": READY"), "{text}");
    for unit in ["php-fpm", "nginx", "worker#1", "worker#2"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(unit))
            .unwrap_or_else(|| panic!("no {unit} row:\n{text}"));
        assert!(row.contains("running") && row.contains("yes"), "{row}");
    }
    assert!(text.contains("fastcgi ok"), "{text}");
    assert!(
        text.contains("BOOT TIMELINE") && text.contains("READY=1"),
        "{text}"
    );

    let (code, json) = ex.status_cli(KILN, &["--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&json).expect("status --json is JSON");
    assert_eq!(json["phase"], "ready");
    assert!(control::unit(&json, "php-fpm")["pid"].as_i64().unwrap() > 1);

    let (verbose_code, verbose) = {
        let r = http_get_with(&ex.readyz_url(), &[("Accept", "application/json")]).unwrap();
        (r.status, r.body)
    };
    assert_eq!(verbose_code, 200);
    let verbose: serde_json::Value = serde_json::from_str(&verbose).unwrap();
    assert_eq!(verbose["units"].as_array().unwrap().len(), 4, "{verbose}");
    assert_eq!(http_get(&ex.livez_url()).unwrap(), (200, "alive\n".to_string()));

    let missing = ex.dir.path().join("no-such.sock");
    let out = Command::new(KILN)
        .args(["status", "--socket", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not reachable"));
}

#[test]
fn the_control_socket_refuses_what_it_does_not_answer() {
    let ex = Example::render();
    let (kiln, notify) = ex.boot_notified(KILN, &[], &[]);
    notify.wait_for("READY=1", BOOT, |l| l == "READY=1");
    let pid_before = control::unit_pid(&ex.socket(), "php-fpm");

    for verb in ["restart php-fpm", "reload", "frobnicate"] {
        let answer: serde_json::Value =
            serde_json::from_str(&control::ask(&ex.socket(), verb).unwrap()).unwrap();
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{verb}: {answer}"));
        assert!(error.contains("this instance is immutable"), "{error}");
        assert!(error.contains("status, health, ready, env, events"), "{error}");
    }
    let status = control::status(&ex.socket()).unwrap();
    assert_eq!(status["refused_mutations"], 3);
    assert_eq!(control::unit(&status, "php-fpm")["restarts"], 0);
    assert_eq!(control::unit_pid(&ex.socket(), "php-fpm"), pid_before);
    kiln.wait_log("refused \"frobnicate\"", Duration::from_secs(5));

    let mode = std::fs::metadata(ex.socket()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn the_watchdog_is_fed_at_half_its_interval() {
    let ex = Example::render();
    let (_kiln, notify) = ex.boot_notified(KILN, &[], &[("WATCHDOG_USEC", "400000")]);
    notify.wait_for("READY=1", BOOT, |l| l == "READY=1");
    let pings = || -> Vec<_> {
        notify
            .timed_lines()
            .into_iter()
            .filter(|(_, l)| l == "WATCHDOG=1")
            .map(|(at, _)| at)
            .collect()
    };
    wait_until("seven WATCHDOG=1", Duration::from_secs(10), || {
        (pings().len() >= 7).then_some(())
    });
    let mut gaps: Vec<Duration> = pings().windows(2).map(|p| p[1] - p[0]).collect();
    gaps.sort();
    // Half of 400 ms: a kiln that pinged at the whole interval would be killed by systemd when
    // one ping came late. The median, not every gap: on a loaded 2-core machine one ping (or
    // this test's reading of it) may be late without kiln being at fault.
    let median = gaps[gaps.len() / 2];
    assert!(median < Duration::from_millis(300), "WATCHDOG=1 gaps {gaps:?}");
}

/// A service's stderr is shown under its row while it is not ready. Terminal escapes in it
/// (a window title, a screen clear, a bell) reached the terminal of whoever ran `kiln status`;
/// they are printed as text now.
#[test]
fn status_prints_escapes_from_a_service_as_text() {
    let ex = Example::render();
    ex.edit_config(|c| {
        c + "\n[[service]]\nname = \"noisy\"\ncommand = [\"sh\", \"-c\", \
             \"printf 'boom \\\\033]0;pwned\\\\007\\\\033[2J\\\\r\\\\n' >&2; exit 1\"]\n"
    });
    let _kiln = ex.boot(KILN);
    wait_until("noisy's stderr in status", BOOT, || {
        let s = control::status(&ex.socket())?;
        let tail = control::try_unit(&s, "noisy")?["stderr_tail"].as_array()?.clone();
        tail.iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("\u{1b}]0;pwned")))
            .then_some(())
    });
    let (_, text) = ex.status_cli(KILN, &[]);
    assert!(
        !text.contains(['\u{1b}', '\u{7}', '\r']),
        "raw control characters in status:\n{text:?}"
    );
    assert!(
        text.contains("stderr| boom \\u{1b}]0;pwned\\u{7}\\u{1b}[2J"),
        "{text}"
    );
}
