//! Stopping: reverse order, each service's own stop signal, nothing left behind; SIGHUP refused.

use nix::sys::signal::Signal;
use std::time::Duration;
use testkit::control;
use testkit::example::Example;
use testkit::notify::NotifySocket;
use testkit::peers::{Kiln, wait_no_tagged_processes};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const BOOT: Duration = Duration::from_secs(30);

fn boot_ready(ex: &Example) -> (Kiln, NotifySocket) {
    let notify = NotifySocket::bind();
    let (key, value) = notify.env();
    let kiln = Kiln::boot_with(
        KILN,
        &["boot", "--config", ex.config_path.to_str().unwrap()],
        &[(key, &value)],
    );
    notify.wait_for("READY=1", BOOT, |l| l == "READY=1");
    (kiln, notify)
}

fn line_of(log: &str, needle: &str) -> usize {
    log.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in kiln's log:\n{log}"))
}

#[test]
fn sigterm_stops_in_reverse_order_with_each_stop_signal_and_leaves_nothing() {
    let ex = Example::render();
    let (mut kiln, notify) = boot_ready(&ex);
    kiln.signal(Signal::SIGTERM);
    let status = kiln.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", kiln.log());

    let log = kiln.log();
    // nginx waits for php-fpm, so it stops first; php-fpm goes last.
    assert!(
        line_of(&log, "nginx: stopped") < line_of(&log, "php-fpm: stopping (SIGQUIT)"),
        "{log}"
    );
    line_of(&log, "nginx: stopping (SIGQUIT)");
    line_of(&log, "worker#1: stopping (SIGTERM)");
    // The processes saw their graceful signal: php-fpm finishes on SIGQUIT (SIGTERM would be
    // "Terminating"), the worker finishes its job on SIGTERM and exits 0.
    line_of(&log, "Finishing");
    line_of(&log, "SIGTERM received, stopping after");
    assert!(!log.contains("SIGKILL"), "{log}");
    assert!(notify.lines().iter().any(|l| l == "STOPPING=1"));
    wait_no_tagged_processes(kiln.tag(), Duration::from_secs(5));
}

#[test]
fn sighup_is_refused_and_nothing_restarts() {
    let ex = Example::render();
    let (kiln, _notify) = boot_ready(&ex);
    let before = control::status(&ex.socket()).unwrap();
    kiln.signal(Signal::SIGHUP);
    kiln.wait_log("SIGHUP refused", Duration::from_secs(5));
    let after = control::status(&ex.socket()).unwrap();
    assert_eq!(after["phase"], "ready");
    assert_eq!(after["refused_mutations"], 1);
    for unit in ["php-fpm", "nginx", "worker#1", "worker#2"] {
        let (b, a) = (control::unit(&before, unit), control::unit(&after, unit));
        assert_eq!(a["pid"], b["pid"], "{unit} was restarted");
        assert_eq!(a["restarts"], 0, "{unit}");
    }
}
