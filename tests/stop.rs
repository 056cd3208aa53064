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

/// The signal masks of `/proc/PID/status` (`SigIgn`, `SigBlk`) as bit sets.
fn signal_masks(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = |key: &str| {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    (mask("SigIgn:"), mask("SigBlk:"))
}

#[test]
fn services_start_with_a_clean_signal_state_whatever_kiln_inherited() {
    let ex = Example::render();
    // `sleep` leaves its signal state as it found it: what kiln handed on shows.
    ex.edit_config(|c| c + "\n[[service]]\nname = \"sleeper\"\ncommand = [\"sleep\", \"1000\"]\n");
    // As a shell's background job starts it (SIGINT and SIGQUIT ignored), and with kiln's own
    // stop signal blocked on top.
    let wrapper = ["env", "--ignore-signal=INT,QUIT", "--block-signal=TERM,USR1"];
    let (mut kiln, notify) = ex.boot_notified(KILN, &wrapper, &[]);
    notify.wait_for("READY=1", testkit::example::BOOT_DEADLINE, |l| l == "READY=1");
    let (ignored, blocked) = signal_masks(kiln.pid());
    assert_ne!(ignored, 0, "the wrapper did not ignore SIGINT/SIGQUIT in kiln");
    let sleeper = control::unit_pid(&ex.socket(), "sleeper").unwrap();
    assert_eq!(signal_masks(sleeper), (0, 0), "SigIgn and SigBlk of a service");
    assert_eq!(blocked, 0, "kiln kept its inherited mask");

    kiln.signal(Signal::SIGTERM);
    let status = kiln.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", kiln.log());
    kiln.line_of("nginx: stopped (exit 0)");
    assert!(!kiln.log().contains("SIGKILL"), "{}", kiln.log());
    wait_no_tagged_processes(kiln.tag(), Duration::from_secs(5));
}
