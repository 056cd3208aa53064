//! Hostile clients of the health port, the agent-check port and the control socket (issue 10 §2):
//! more idle connections than kiln has descriptors, a wrk flood, slowloris. Through each attack
//! `/readyz` keeps answering fresh connections, `kiln status` answers, the supervisor restarts a
//! SIGKILLed php-fpm, and kiln's connections and descriptors stay bounded.

use crate::hostile_support::{
    Behaviour, Flood, Target, every_answer_is, fd_count, listener, php_fpm_comes_back_after_sigkill,
    raise_own_nofile,
};
use kiln::fd_budget::RESERVED;
use std::process::Command;
use std::time::Duration;
use testkit::control;
use testkit::example::{BOOT_DEADLINE, Example};
use testkit::peers::{Kiln, Process};
use testkit::wait::{http_get, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
/// The limit the attack ran kiln under.
const NOFILE: u64 = 1024;

/// The example under `prlimit --nofile=1024`, ready.
fn boot_under_prlimit(ex: &Example) -> Kiln {
    let limit = format!("--nofile={NOFILE}");
    let (kiln, notify) = ex.boot_notified(KILN, &["prlimit", &limit], &[]);
    notify.wait_for("READY=1", BOOT_DEADLINE, |l| l == "READY=1");
    kiln
}

/// kiln keeps the descriptors the supervisor needs whatever its listeners hold.
fn reserve_is_intact(kiln: &Kiln) {
    let fds = fd_count(kiln.pid());
    assert!(
        fds as u64 <= NOFILE - RESERVED,
        "kiln holds {fds} descriptors: the {RESERVED} reserved for the supervisor are not free"
    );
}

#[test]
fn more_idle_connections_than_descriptors_leave_readyz_status_and_restarts_working() {
    raise_own_nofile();
    let ex = Example::render();
    let kiln = boot_under_prlimit(&ex);

    let flood = Flood::start(Target::Tcp(ex.health_addr), 1100, Behaviour::Idle);
    every_answer_is(&ex.readyz_url(), 50, 200);
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "kiln status under the flood: {text}");
    let status = control::status(&ex.socket()).unwrap();
    let (open, cap, _) = listener(&status, "health");
    assert!(open <= cap, "{open} health connections open, cap {cap}");
    reserve_is_intact(&kiln);

    php_fpm_comes_back_after_sigkill(&ex);
    every_answer_is(&ex.readyz_url(), 10, 200);
    reserve_is_intact(&kiln);
    // Idle connections are closed by kiln (evicted or timed out), not held for ever.
    wait_until("kiln to close 1,100 idle connections", BOOT_DEADLINE, || {
        (flood.closed_by_server() >= 1100).then_some(())
    });
    drop(flood);
    assert!(!kiln.log().contains("Too many open files"), "{}", kiln.log());
}

#[test]
fn slowloris_connections_never_crowd_out_readyz_and_are_closed() {
    raise_own_nofile();
    let ex = Example::render();
    let kiln = boot_under_prlimit(&ex);

    let flood = Flood::start(Target::Tcp(ex.health_addr), 2000, Behaviour::Slowloris);
    every_answer_is(&ex.readyz_url(), 50, 200);
    let status = control::status(&ex.socket()).unwrap();
    let (open, cap, _) = listener(&status, "health");
    assert!(open <= cap, "{open} health connections open, cap {cap}");
    reserve_is_intact(&kiln);
    php_fpm_comes_back_after_sigkill(&ex);
    wait_until("kiln to close 4,000 slowloris connections", BOOT_DEADLINE, || {
        (flood.closed_by_server() >= 4000).then_some(())
    });
    drop(flood);
    // Once the flood is gone kiln holds none of its connections.
    wait_until("the health connections to be gone", BOOT_DEADLINE, || {
        let status = control::status(&ex.socket())?;
        (listener(&status, "health").0 == 0).then_some(())
    });
}

/// 5,000 connections, or fewer where `net.core.somaxconn` (the listen queue's bound) is lower
/// than its default 4096.
fn flood_kiln_keeps_up_with() -> u64 {
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("read net.core.somaxconn")
        .trim()
        .parse()
        .expect("a number");
    5000.min(somaxconn)
}

#[test]
fn a_wrk_flood_leaves_readyz_answering_and_connections_bounded() {
    raise_own_nofile();
    let ex = Example::render();
    let kiln = boot_under_prlimit(&ex);
    let before = fd_count(kiln.pid());

    // As many connections as one listener's queue holds (kiln holds its cap besides), should the
    // kernel hash every one of them to the same listener: what kiln promises to keep up with.
    let flood = flood_kiln_keeps_up_with().to_string();
    let mut wrk = Command::new("wrk");
    wrk.args(["-t", "1", "-c", &flood, "-d", "6s"])
        .arg(ex.readyz_url());
    let mut wrk = Process::spawn(wrk);
    wait_until("wrk's connections to reach kiln", BOOT_DEADLINE, || {
        (fd_count(kiln.pid()) > before + 50).then_some(())
    });
    every_answer_is(&ex.readyz_url(), 50, 200);
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "kiln status under the flood: {text}");
    let status = control::status(&ex.socket()).unwrap();
    let (open, cap, _) = listener(&status, "health");
    assert!(open <= cap, "{open} health connections open, cap {cap}");
    reserve_is_intact(&kiln);
    assert!(wrk.wait_exit(Duration::from_secs(30)).success(), "{}", wrk.log());

    wait_until(
        "kiln's descriptors back to where they were",
        BOOT_DEADLINE,
        || (fd_count(kiln.pid()) <= before + 4).then_some(()),
    );
    assert_eq!(http_get(&ex.readyz_url()).unwrap().0, 200);
}

#[test]
fn idle_clients_of_the_control_socket_and_agent_port_keep_nobody_out() {
    raise_own_nofile();
    let ex = Example::render();
    let agent = testkit::net::free_addr();
    ex.edit_toml(|t| {
        t["health"]
            .as_table_mut()
            .unwrap()
            .insert("agent_listen".into(), agent.to_string().into());
    });
    let kiln = boot_under_prlimit(&ex);

    let control_flood = Flood::start(Target::Unix(ex.socket()), 1100, Behaviour::Idle);
    let agent_flood = Flood::start(Target::Tcp(agent), 1100, Behaviour::Idle);
    for _ in 0..10 {
        let out = Command::new(KILN)
            .args(["status", "--socket", ex.socket().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "kiln status under the flood: {out:?}");
        let mut line = String::new();
        let mut stream = std::net::TcpStream::connect(agent).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        std::io::Read::read_to_string(&mut stream, &mut line).unwrap();
        assert_eq!(line, "up ready 100%\n");
    }
    // testkit's client does not retry as `kiln status` does: ask until one gets through.
    let status = wait_until("a status answer", BOOT_DEADLINE, || control::status(&ex.socket()));
    for name in ["control", "agent"] {
        let (open, cap, _) = listener(&status, name);
        assert!(open <= cap, "{name}: {open} connections open, cap {cap}");
    }
    reserve_is_intact(&kiln);
    every_answer_is(&ex.readyz_url(), 10, 200);
    php_fpm_comes_back_after_sigkill(&ex);
    wait_until(
        "kiln to close 1,100 idle control connections",
        BOOT_DEADLINE,
        || (control_flood.closed_by_server() >= 1100).then_some(()),
    );
    drop((control_flood, agent_flood));
}
