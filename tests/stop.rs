//! Stopping: reverse order, each service's own stop signal, nothing left behind; SIGHUP refused.

use nix::sys::signal::Signal;
use std::time::Duration;
use testkit::control;
use testkit::example::Example;
use testkit::peers::wait_no_tagged_processes;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

#[test]
fn sigterm_stops_in_reverse_order_with_each_stop_signal_and_leaves_nothing() {
    let ex = Example::render();
    let (mut kiln, notify) = ex.boot_ready(KILN);
    kiln.signal(Signal::SIGTERM);
    let status = kiln.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", kiln.log());

    let log = kiln.log();
    // nginx waits for php-fpm, so it stops first; php-fpm goes last.
    assert!(
        kiln.line_of("nginx: stopped") < kiln.line_of("php-fpm: stopping (SIGQUIT)"),
        "{log}"
    );
    kiln.line_of("nginx: stopping (SIGQUIT)");
    kiln.line_of("worker#1: stopping (SIGTERM)");
    // The processes saw their graceful signal: php-fpm finishes on SIGQUIT (SIGTERM would be
    // "Terminating"), the worker finishes its job on SIGTERM and exits 0.
    kiln.line_of("Finishing");
    kiln.line_of("SIGTERM received, stopping after");
    assert!(!log.contains("SIGKILL"), "{log}");
    assert!(notify.lines().iter().any(|l| l == "STOPPING=1"));
    wait_no_tagged_processes(kiln.tag(), Duration::from_secs(5));
}

#[test]
fn sighup_is_refused_and_nothing_restarts() {
    let ex = Example::render();
    let (kiln, _notify) = ex.boot_ready(KILN);
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
