//! `kiln wait` against a real boot of the example: each exit code of its contract (0 ready,
//! 1 failed, 2 still starting at `--timeout`, 3 unreachable), and `--json` printing what
//! `/readyz?verbose` answers.

use std::process::{Command, Output};
use std::time::{Duration, Instant};
use testkit::example::Example;
use testkit::wait::http_get_with;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// `kiln wait ARGS`, the whole run.
fn wait(args: &[&str]) -> Output {
    Command::new(KILN)
        .arg("wait")
        .args(args)
        .output()
        .expect("run kiln wait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn config_arg(ex: &Example) -> &str {
    ex.config_path.to_str().unwrap()
}

#[test]
fn waits_for_kiln_to_come_up_and_exits_0_once_ready() {
    let ex = Example::render();
    // Started before kiln: the socket is not there yet, and that is not the end of the wait.
    let waiting = Command::new(KILN)
        .args(["wait", "--timeout", "90s", "--config", config_arg(&ex)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _kiln = ex.boot(KILN);
    let out = waiting.wait_with_output().unwrap();
    // Ready when it says so: /readyz agrees at once.
    let readyz = http_get_with(&ex.readyz_url(), &[]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(readyz.status, 200, "{}", readyz.body);
    assert!(
        text(&out.stdout).starts_with("ready (waited "),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn json_is_the_report_of_readyz_verbose() {
    let ex = Example::render();
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let out = wait(&[
        "--json",
        "--timeout",
        "30s",
        "--socket",
        ex.socket().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let verbose = http_get_with(&format!("{}?verbose", ex.readyz_url()), &[]).unwrap();
    assert_eq!(verbose.status, 200);
    let mut readyz: serde_json::Value = serde_json::from_str(&verbose.body).unwrap();
    // The one field that moves between the two questions.
    for doc in [&mut printed, &mut readyz] {
        assert!(doc["uptime_ms"].as_u64().is_some(), "{doc}");
        doc.as_object_mut().unwrap().remove("uptime_ms");
    }
    assert_eq!(printed, readyz);
    assert_eq!(printed["ready"], true);
    assert_eq!(printed["units"].as_array().unwrap().len(), 4, "{printed}");
}

#[test]
fn a_refused_boot_is_exit_1_with_the_reason() {
    let ex = Example::render();
    std::fs::write(
        ex.seed_dir.join("user-data"),
        "#cloud-config\npackages: [nginx]\n",
    )
    .unwrap();
    let _kiln = ex.boot(KILN);
    let out = wait(&["--timeout", "60s", "--config", config_arg(&ex)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "kiln wait: the boot failed: environment (nocloud at {}), user-data: is a #cloud-config \
             document: kiln takes environment variables (dotenv, TOML [env] or JSON), not cloud-config; \
             set [metadata] user_data_foreign = \"ignore\" if kiln's variables come from elsewhere\n",
            ex.seed_dir.display()
        )
    );
    assert_eq!(text(&out.stdout), "");

    let json = wait(&["--json", "--timeout", "60s", "--config", config_arg(&ex)]);
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (&report["phase"], &report["ready"]),
        (&"failed".into(), &false.into())
    );
}

#[test]
fn a_config_kiln_boot_refuses_is_exit_1_at_once() {
    let ex = Example::render();
    ex.edit_config(|c| c.replacen("[health]", "[health]\nlisten_typo = 1", 1));
    let started = Instant::now();
    let out = wait(&["--timeout", "60s", "--config", config_arg(&ex)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let said = text(&out.stdout);
    assert!(
        said.starts_with("kiln is not running: kiln boot refuses its config"),
        "{said}"
    );
    assert!(said.contains("listen_typo"), "{said}");
}

#[test]
fn a_startup_probe_that_never_passes_is_exit_2_at_the_timeout() {
    let ex = Example::render();
    ex.edit_probe("php-fpm", "startup", |p| {
        p.insert("path".into(), "/never".into());
    });
    let _kiln = ex.boot(KILN);
    let started = Instant::now();
    let out = wait(&["--timeout", "3s", "--config", config_arg(&ex)]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(took >= Duration::from_secs(3), "gave up early: {took:?}");
    let said = text(&out.stderr);
    assert!(said.starts_with("kiln wait: not ready after 3s: "), "{said}");
    assert!(said.contains("php-fpm"), "{said}");
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn no_kiln_at_the_socket_is_exit_3_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let started = Instant::now();
    let out = wait(&["--timeout", "500ms", "--socket", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(
        text(&out.stderr),
        format!(
            "kiln wait: kiln is not reachable at {} after 500ms: No such file or directory (os error 2)\n",
            socket.display()
        )
    );
    // A stale socket that nobody answers on: the same.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(listener);
    let out = wait(&["--timeout", "200ms", "--socket", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Connection refused"),
        "{}",
        text(&out.stderr)
    );
}
