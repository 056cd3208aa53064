//! `GET /metrics` on `[metrics] listen`: both formats, what promtool says of them, what is refused,
//! that no value of the environment leaves by it, and that scrapers which stall or flood never
//! delay `/readyz` or a restart.

use crate::hostile_support::{Behaviour, Flood, Target, every_answer_is, php_fpm_comes_back_after_sigkill};
use crate::metrics_support::{PROMETHEUS_ACCEPT, scrape, value_of, with_metrics};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::Duration;
use testkit::control;
use testkit::example::{BOOT_DEADLINE, Example};
use testkit::prometheus::promtool_check_metrics;
use testkit::wait::{http_request, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const SECRET: &str = "hunter2-s3cr3t-metrics";

#[test]
fn both_formats_answer_from_the_snapshot_and_promtool_accepts_the_text() {
    let ex = Example::render();
    let addr = with_metrics(&ex);
    let (_kiln, _notify) = ex.boot_ready(KILN);

    let text = scrape(addr, None);
    assert_eq!(text.status, 200, "{}", text.body);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    promtool_check_metrics(&text.body).unwrap();
    for (series, value) in [
        ("kiln_phase{phase=\"ready\"}", 1.0),
        ("kiln_phase{phase=\"starting\"}", 0.0),
        ("kiln_unit_ready{service=\"php-fpm\",unit=\"php-fpm\"}", 1.0),
        ("kiln_unit_ready{service=\"worker\",unit=\"worker#2\"}", 1.0),
        (
            "kiln_unit_state{service=\"nginx\",unit=\"nginx\",state=\"running\"}",
            1.0,
        ),
        (
            "kiln_unit_restarts_total{service=\"php-fpm\",unit=\"php-fpm\"}",
            0.0,
        ),
        ("kiln_refused_mutations_total", 0.0),
    ] {
        assert_eq!(
            value_of(&text.body, series),
            Some(value),
            "{series} in:\n{}",
            text.body
        );
    }
    let info = text.body.lines().find(|l| l.starts_with("kiln_info{")).unwrap();
    assert!(
        info.contains("provider=\"nocloud\"") && info.contains("instance_id=\"iid-kiln-example-0001\""),
        "{info}"
    );
    let ready_at = value_of(&text.body, "kiln_boot_mark_seconds{mark=\"READY=1\"}").unwrap();
    let php_fpm_start = value_of(
        &text.body,
        "kiln_boot_phase_duration_seconds{phase=\"start php-fpm\"}",
    )
    .unwrap();
    assert!(
        0.0 < php_fpm_start && php_fpm_start < ready_at,
        "{php_fpm_start} {ready_at}"
    );
    let startup_checks = value_of(
        &text.body,
        "kiln_probe_duration_seconds_count{service=\"php-fpm\",unit=\"php-fpm\",probe=\"startup\"}",
    )
    .unwrap();
    assert!(
        startup_checks >= 1.0,
        "php-fpm's startup probe ran: {startup_checks}"
    );

    let open = scrape(addr, Some(PROMETHEUS_ACCEPT));
    assert_eq!(
        open.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        open.body.ends_with("# EOF\n"),
        "{}",
        &open.body[open.body.len() - 100..]
    );
    assert!(
        open.body.contains("# TYPE kiln info\nkiln_info{"),
        "{}",
        open.body
    );
    assert!(open.body.contains("# TYPE kiln_unit_restarts counter\n"));

    let url = format!("http://{addr}/metrics");
    let post = http_request("POST", &url, &[], b"x").unwrap();
    assert_eq!((post.status, post.body.as_str()), (405, "GET only\n"));
    let other = http_request("GET", &format!("http://{addr}/readyz"), &[], b"").unwrap();
    assert_eq!(
        (other.status, other.body.as_str()),
        (404, "not found: try /metrics\n")
    );
}

#[test]
fn no_value_of_the_environment_leaves_by_metrics() {
    let ex = Example::render();
    let addr = with_metrics(&ex);
    let user_data = ex.seed_dir.join("user-data");
    let seeded = std::fs::read_to_string(&user_data).unwrap();
    std::fs::write(&user_data, format!("{seeded}APP_TOKEN={SECRET}\n")).unwrap();
    ex.set_service_env("worker", "WORKER_SECRET", SECRET);
    let (kiln, _notify) = ex.boot_ready(KILN);
    // A refused verb naming the secret, and a restart whose exit is logged, must not carry it.
    let _ = control::ask(&ex.socket(), &format!("set {SECRET}"));
    php_fpm_comes_back_after_sigkill(&ex);
    for accept in [None, Some(PROMETHEUS_ACCEPT)] {
        let body = scrape(addr, accept).body;
        assert!(body.contains("kiln_unit_ready"), "{body}");
        for value in [SECRET, "example-secret-change-me", "mysql://app:example"] {
            assert!(!body.contains(value), "{value} in /metrics:\n{body}");
        }
    }
    assert!(!kiln.log().contains(SECRET), "{}", kiln.log());
}

/// A scraper that sends its request and never reads the answer, with a receive buffer so small
/// that the answer stays in flight.
fn stalled_scraper(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("{addr}")
    };
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    socket::setsockopt(&fd, sockopt::RcvBuf, &1024).unwrap();
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4)).unwrap();
    let mut stream = TcpStream::from(fd);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: kiln\r\n\r\n")
        .unwrap();
    stream
}

/// True once kiln closed the connection (end of file after whatever it had sent).
fn closed_by_kiln(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// The example with 100 more units (`sleep`, cheap): an answer of about 100 KB, forty times
/// the receive buffer of a stalled scraper.
fn with_many_units(ex: &Example) {
    ex.edit_toml(|t| {
        let idle: toml::Table = toml::from_str(
            "name = \"idle\"\ncommand = [\"sleep\", \"3600\"]\nreplicas = 100\nready_after = \"100ms\"",
        )
        .unwrap();
        t.get_mut("service")
            .unwrap()
            .as_array_mut()
            .unwrap()
            .push(idle.into());
    });
}

/// The metrics listener's (open, cap, shed) in kiln's status.
fn metrics_listener(ex: &Example) -> Option<(usize, usize, u64)> {
    let status = control::status(&ex.socket())?;
    let l = status["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == "metrics")?;
    Some((
        l["open"].as_u64()? as usize,
        l["cap"].as_u64()? as usize,
        l["shed"].as_u64()?,
    ))
}

#[test]
fn a_stalled_scraper_delays_neither_readyz_nor_a_restart_and_is_cut_off() {
    let ex = Example::render();
    let addr = with_metrics(&ex);
    with_many_units(&ex);
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let (_, cap, _) = wait_until("the metrics listener in status", BOOT_DEADLINE, || {
        metrics_listener(&ex)
    });
    let size = scrape(addr, None).body.len();
    assert!(
        size > 90 * 1024,
        "the answer ({size} bytes) is far larger than a stalled receive buffer"
    );

    // On loopback the kernel's send buffer grows to take the whole answer, so kiln may be done
    // with a stalled scraper's request before the scraper reads a byte; what must hold is that
    // none of them, done or not, delays anything below.
    let mut stalled: Vec<TcpStream> = (0..cap / 2).map(|_| stalled_scraper(addr)).collect();
    every_answer_is(&ex.readyz_url(), 50, 200);
    php_fpm_comes_back_after_sigkill(&ex);
    let fresh = scrape(addr, None);
    assert_eq!(
        value_of(
            &fresh.body,
            "kiln_unit_restarts_total{service=\"php-fpm\",unit=\"php-fpm\"}"
        ),
        Some(1.0),
        "a new scraper is answered beside the stalled ones:\n{}",
        fresh.body
    );
    // Each connection lives at most 10 s from its accept: kiln lets every stalled one go.
    wait_until(
        "kiln to close every stalled scraper",
        Duration::from_secs(40),
        || {
            stalled.retain_mut(|s| !closed_by_kiln(s));
            stalled.is_empty().then_some(())
        },
    );
    wait_until(
        "the metrics listener to hold nothing",
        Duration::from_secs(5),
        || (metrics_listener(&ex)?.0 == 0).then_some(()),
    );
}

#[test]
fn scrapers_beyond_the_cap_delay_neither_readyz_nor_a_restart() {
    let ex = Example::render();
    let addr = with_metrics(&ex);
    with_many_units(&ex);
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let (_, cap, _) = wait_until("the metrics listener in status", BOOT_DEADLINE, || {
        metrics_listener(&ex)
    });

    // Three times the cap of scrapers that stall mid-answer, and a slowloris flood beside them.
    let _stalled: Vec<TcpStream> = (0..3 * cap).map(|_| stalled_scraper(addr)).collect();
    let _slowloris = Flood::start(Target::Tcp(addr), 2 * cap, Behaviour::Slowloris);

    every_answer_is(&ex.readyz_url(), 50, 200);
    php_fpm_comes_back_after_sigkill(&ex);
    assert_eq!(
        scrape(addr, None).status,
        200,
        "a new scraper is answered at the cap"
    );
    let (open, _, shed) = metrics_listener(&ex).unwrap();
    assert!(open <= cap && shed > 0, "open {open}, cap {cap}, shed {shed}");
    every_answer_is(&ex.readyz_url(), 10, 200);
}

#[test]
fn a_metrics_port_of_another_listener_is_refused_and_a_taken_one_starts_nothing() {
    let ex = Example::render();
    let health = ex.health_addr;
    ex.edit_config(|c| format!("{c}\n[metrics]\nlisten = \"{health}\"\n"));
    ex.check_refuses(
        KILN,
        &[&format!(
            "[metrics] listen = \"{health}\": the same port as [health] listen; /metrics needs an address of its own"
        )],
    );

    let ex = Example::render();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    ex.edit_config(|c| format!("{c}\n[metrics]\nlisten = \"{addr}\"\n"));
    let mut kiln = testkit::peers::Kiln::boot(KILN, &ex.config_path);
    let status = kiln.wait_exit(BOOT_DEADLINE);
    let log = kiln.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("[metrics] listen {addr}: Address already in use"))
            && log.contains("nothing was started"),
        "{log}"
    );
    assert!(testkit::peers::tagged_processes(kiln.tag()).is_empty());
}
