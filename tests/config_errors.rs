//! A broken config is a clear error naming the place, from `kiln check` and from `kiln boot`, and
//! `kiln boot` starts nothing. Every problem after parsing is listed at once.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use testkit::example::Example;
use testkit::peers::{Kiln, tagged_processes};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Breaks the example with `edit`, then checks both commands refuse it with `message`.
fn refused(edit: impl FnOnce(String) -> String, message: &str) {
    refused_with(edit, &[message]);
}

/// Breaks the example with `edit`, then checks both commands refuse it naming every one of
/// `messages`, and that `kiln status` explains the refusal.
fn refused_with(edit: impl FnOnce(String) -> String, messages: &[&str]) {
    let ex = Example::render();
    ex.edit_config(|c| {
        let edited = edit(c.clone());
        assert_ne!(edited, c, "the edit changed nothing");
        edited
    });
    let config = ex.config_path.to_str().unwrap();

    let check = Command::new(KILN)
        .args(["check", "--config", config])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(78), "kiln check: {stderr}");
    for message in messages {
        assert!(
            stderr.contains(message),
            "kiln check said:\n{stderr}\nexpected: {message}"
        );
    }
    assert!(stderr.contains(config), "the error names the file: {stderr}");
    if messages.len() > 1 {
        let count = format!("{config}: {} errors:", messages.len());
        assert!(
            stderr.contains(&count),
            "kiln check said:\n{stderr}\nexpected: {count}"
        );
    }

    let mut kiln = Kiln::boot(KILN, &ex.config_path);
    let status = kiln.wait_exit(Duration::from_secs(10));
    let log = kiln.log();
    assert_eq!(status.code(), Some(78), "kiln boot: {log}");
    for message in messages {
        assert!(
            log.contains(message),
            "kiln boot said:\n{log}\nexpected: {message}"
        );
    }
    assert!(log.contains(config), "the error names the file: {log}");
    assert!(log.contains("nothing was started"), "{log}");
    assert!(tagged_processes(kiln.tag()).is_empty(), "boot started something");
    assert!(
        !ex.socket().exists() && !ex.php_fpm_socket().exists(),
        "boot left runtime files"
    );

    let status = Command::new(KILN)
        .args(["status", "--config", config])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "kiln status: {stdout}");
    assert!(stdout.contains("kiln boot refuses its config"), "{stdout}");
    for message in messages {
        assert!(
            stdout.contains(message),
            "kiln status said:\n{stdout}\nexpected: {message}"
        );
    }
}

#[test]
fn an_unknown_key() {
    refused(
        |c| c.replace("replicas = 2", "replicas = 2\ncolour = \"red\""),
        "unknown field `colour`",
    );
}

#[test]
fn a_dependency_cycle() {
    refused(
        |c| c.replacen("name = \"php-fpm\"", "name = \"php-fpm\"\nafter = [\"nginx\"]", 1),
        "dependency cycle in `after`: php-fpm -> nginx -> php-fpm",
    );
}

#[test]
fn an_unknown_after_name() {
    refused(
        |c| c.replace("after = [\"php-fpm\"]", "after = [\"php\"]"),
        "[[service]] #2 \"nginx\": after: unknown service \"php\"",
    );
}

#[test]
fn a_missing_executable() {
    refused(
        |c| c.replace("command = [\"php\",", "command = [\"no-such-php\","),
        "[[service]] #3 \"worker\": command: \"no-such-php\" not found in PATH",
    );
}

#[test]
fn a_bad_duration() {
    refused(
        |c| c.replacen("stop_timeout = \"10s\"", "stop_timeout = \"10 parsecs\"", 1),
        "invalid duration \"10 parsecs\"",
    );
}

#[test]
fn every_problem_at_once() {
    refused_with(
        |c| {
            c.replace("after = [\"php-fpm\"]", "after = [\"php\"]")
                .replace("command = [\"php\",", "command = [\"no-such-php\",")
                .replace("working_dir = \"", "working_dir = \"/nonexistent")
                .replace("restart_delay = \"200ms\"", "restart_delay = \"1h\"")
        },
        &[
            "[[service]] #2 \"nginx\": after: unknown service \"php\"",
            "[[service]] #3 \"worker\": command: \"no-such-php\" not found in PATH",
            "[[service]] #3 \"worker\": working_dir = \"/nonexistent",
            "[[service]] #3 \"worker\": restart_delay = \"1h\": must be above zero and at most restart_delay_max",
        ],
    );
}

#[test]
fn a_working_dir_that_does_not_exist() {
    refused(
        |c| c.replace("working_dir = \"", "working_dir = \"/nonexistent"),
        "\": does not exist",
    );
}

/// The reproduction: this passed `kiln check`, then `kiln boot` panicked on the
/// overflowing startup budget with a service left running.
#[test]
fn a_probe_period_of_500_billion_years() {
    refused(
        |c| c.replacen("period = \"100ms\"", "period = \"500000000000y\"", 1),
        "invalid duration \"500000000000y\": at most \"10y\"",
    );
}

#[test]
fn a_probe_whose_startup_budget_is_over_ten_years() {
    refused(
        |c| c.replacen("period = \"100ms\"", "period = \"1y\"", 1),
        "[[service]] #1 \"php-fpm\": [service.startup] period (\"1year\") × failure_threshold (100) is over \"10y\"",
    );
}

#[test]
fn a_good_config_checks_clean() {
    let ex = Example::render();
    let out = Command::new(KILN)
        .args(["check", "--config", ex.config_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (3 services, 4 processes)"));
}

/// `kiln check --config FILE` with its address space bounded to 1 GiB (a kiln that reads
/// `/dev/zero` whole must fail here, not take the machine's memory), killed after 20 s (a kiln
/// that blocks on a FIFO).
fn check_bounded(config: &Path) -> Output {
    Command::new("prlimit")
        .args([
            "--as=1073741824",
            "--",
            "timeout",
            "-s",
            "KILL",
            "20",
            KILN,
            "check",
            "--config",
        ])
        .arg(config)
        .output()
        .unwrap()
}

/// `--config` that is not a small regular file: `/dev/zero` was read until memory ran out, a
/// FIFO blocked the read, a large file was read whole. Each is refused at once, naming why.
#[test]
fn a_config_that_is_not_a_small_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("kiln.toml.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat((1 << 20) + 1)).unwrap();
    for (path, why) in [
        (Path::new("/dev/zero"), "not a regular file (a character device)"),
        (&fifo, "not a regular file (a FIFO)"),
        (dir.path(), "not a regular file (a directory)"),
        (&big, "over 1 MiB: a kiln.toml is a few KiB; is this the config?"),
    ] {
        let out = check_bounded(path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{}: {stderr}", path.display());
        assert_eq!(stderr, format!("kiln check: {}: {why}\n", path.display()));
    }
}
