//! php-fpm's pool (`[service.phpfpm_status]`): the example's real php-fpm answers its status
//! page over FastCGI; a real Prometheus scraping kiln sees the pool's figures move under load,
//! and `kiln status` shows them. A page that cannot be read shows as `kiln_phpfpm_up 0` with its
//! reason, and a bad table is refused by `kiln check`, naming the key.

use crate::metrics_support::{scrape, value_of, with_metrics};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::time::Duration;
use testkit::control;
use testkit::example::Example;
use testkit::load::Load;
use testkit::prometheus::Prometheus;
use testkit::wait::wait_until;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Scrapes often, so that a change shows in Prometheus within a second.
const SCRAPE_EVERY: Duration = Duration::from_millis(250);

/// How long a change may take to reach Prometheus: a few scrapes, on a busy 2-core machine.
const SEEN_WITHIN: Duration = Duration::from_secs(30);

/// The example's pool (`examples/php-app/php-fpm.conf`): `[app]`, `pm = static`, 2 children.
const POOL: &str = "{service=\"php-fpm\",unit=\"php-fpm\",pool=\"app\"}";

/// Points `[service.phpfpm_status]` of the example's php-fpm at its pool socket and `path`.
fn with_status_page(ex: &Example, path: &str) {
    let socket = format!("unix:{}", ex.php_fpm_socket().display());
    ex.edit_service("php-fpm", |service| {
        let mut page = toml::Table::new();
        page.insert("fastcgi".into(), socket.into());
        page.insert("path".into(), path.into());
        service.insert("phpfpm_status".into(), page.into());
    });
}

/// A process group stopped with SIGSTOP, continued when dropped (also when the test fails, so
/// that kiln can stop it).
struct Frozen(Pid);

impl Frozen {
    fn group(leader: i32) -> Frozen {
        let group = Pid::from_raw(leader);
        killpg(group, Signal::SIGSTOP).expect("SIGSTOP the group");
        Frozen(group)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = killpg(self.0, Signal::SIGCONT);
    }
}

#[test]
fn prometheus_sees_the_pool_move_under_load() {
    let ex = Example::render();
    let addr = with_metrics(&ex);
    with_status_page(&ex, "/status");
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let prometheus = Prometheus::start(addr, SCRAPE_EVERY);

    prometheus.wait_for_value("kiln_phpfpm_up{service=\"php-fpm\"}", SEEN_WITHIN, |v| v == 1.0);
    let info = prometheus.query("kiln_phpfpm_pool_info").unwrap();
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].labels["pool"], "app", "{info:?}");
    assert_eq!(info[0].labels["process_manager"], "static", "{info:?}");
    // A static pool always has its 2 children: busy or idle, never more, never fewer.
    let total = format!("sum(kiln_phpfpm_processes{POOL})");
    prometheus.wait_for_value(&total, SEEN_WITHIN, |v| v == 2.0);

    let accepted = format!("kiln_phpfpm_accepted_connections_total{POOL}");
    let before = prometheus.wait_for_value(&accepted, SEEN_WITHIN, |v| v >= 1.0);
    let load = Load::start(&ex.page_url(), 6, Duration::ZERO);
    // Requests through nginx reach the pool: Prometheus sees them counted, and both children
    // busy at once (php-fpm's own high-water mark, so no instant has to be caught).
    prometheus.wait_for_value(&accepted, SEEN_WITHIN, |v| v >= before + 100.0);
    prometheus.wait_for_value(&format!("rate({accepted}[5s])"), SEEN_WITHIN, |v| v > 0.0);
    prometheus.wait_for_value(
        &format!("kiln_phpfpm_active_processes_max{POOL}"),
        SEEN_WITHIN,
        |v| v == 2.0,
    );
    let samples = load.stop();
    assert!(
        samples.iter().any(|s| s.ok()),
        "no request of the load was served"
    );
    // Pages read, in order, at each scrape: the count only grows. A static pool never asks for
    // another child.
    prometheus.wait_for_value(
        &format!("resets(kiln_phpfpm_accepted_connections_total{POOL}[1m])"),
        SEEN_WITHIN,
        |v| v == 0.0,
    );
    prometheus.wait_for_value(
        &format!("kiln_phpfpm_max_children_reached_total{POOL}"),
        SEEN_WITHIN,
        |v| v == 0.0,
    );
    prometheus.wait_for_value(&total, SEEN_WITHIN, |v| v == 2.0);

    // kiln status shows the same pool under its unit, in its words and in JSON.
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("php-fpm pool app (static, up "))
        .unwrap_or_else(|| panic!("no pool line in:\n{text}"));
    assert!(line.contains(" active (max 2), "), "{line}");
    assert!(line.contains("max children reached 0"), "{line}");
    let status = control::status(&ex.socket()).unwrap();
    let pool = &status["php_fpm"][0];
    assert_eq!(pool["service"], "php-fpm", "{status}");
    assert_eq!(pool["pool"]["total_processes"], 2, "{status}");
    assert!(
        pool["pool"]["accepted_conn"].as_u64().unwrap() > before as u64 + 100,
        "{pool}"
    );
}

/// A page that does not answer as php-fpm's status page: kiln says why, and every other figure
/// is served as usual.
#[test]
fn a_page_that_cannot_be_read_shows_as_down_with_its_reason() {
    let ex = Example::render();
    let addr = with_metrics(&ex);
    with_status_page(&ex, "/not-the-status-page");
    let (_kiln, _notify) = ex.boot_ready(KILN);

    let exposition = scrape(addr, None).body;
    assert_eq!(
        value_of(
            &exposition,
            "kiln_phpfpm_up{service=\"php-fpm\",unit=\"php-fpm\"}"
        ),
        Some(0.0),
        "{exposition}"
    );
    assert!(!exposition.contains("kiln_phpfpm_processes"), "{exposition}");
    assert_eq!(
        value_of(
            &exposition,
            "kiln_unit_ready{service=\"php-fpm\",unit=\"php-fpm\"}"
        ),
        Some(1.0),
        "{exposition}"
    );
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{text}");
    let reason = format!(
        "php-fpm pool: status page not read: /not-the-status-page on unix:{}: status 404",
        ex.php_fpm_socket().display()
    );
    assert!(text.contains(&reason), "expected {reason:?} in:\n{text}");
}

#[test]
fn a_bad_status_page_table_is_refused_naming_its_keys() {
    let ex = Example::render();
    ex.edit_service("php-fpm", |service| {
        let mut page = toml::Table::new();
        page.insert("fastcgi".into(), "unix:run/php.sock".into());
        page.insert("timeout".into(), "1m".into());
        service.insert("phpfpm_status".into(), page.into());
    });
    ex.check_refuses(
        KILN,
        &[
            "[[service]] #1 \"php-fpm\": [service.phpfpm_status] fastcgi = \"unix:run/php.sock\": the socket path must be absolute",
            "[[service]] #1 \"php-fpm\": [service.phpfpm_status] timeout = \"1m\": between \"10ms\" and \"3s\"",
        ],
    );
}

/// Every php-fpm process stopped: the kernel still accepts on the pool's socket, but nobody
/// answers. The scrape is answered anyway, the pool down with "no answer within" its timeout,
/// and the pool is back once php-fpm runs again.
#[test]
fn a_frozen_pool_is_down_saying_so_and_the_scrape_is_answered() {
    let ex = Example::render();
    let addr = with_metrics(&ex);
    with_status_page(&ex, "/status");
    ex.edit_service("php-fpm", |service| {
        // Nothing restarts the frozen php-fpm behind the test's back.
        service.remove("live");
        let page = service["phpfpm_status"].as_table_mut().unwrap();
        page.insert("timeout".into(), "200ms".into());
    });
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let up = "kiln_phpfpm_up{service=\"php-fpm\",unit=\"php-fpm\"}";
    assert_eq!(value_of(&scrape(addr, None).body, up), Some(1.0));

    let master = control::unit_pid(&ex.socket(), "php-fpm").unwrap();
    let frozen = Frozen::group(master);
    let exposition = scrape(addr, None).body;
    assert_eq!(value_of(&exposition, up), Some(0.0), "{exposition}");
    assert!(exposition.contains("kiln_unit_ready{"), "{exposition}");
    let (_, text) = ex.status_cli(KILN, &[]);
    let reason = format!(
        "php-fpm pool: status page not read: /status on unix:{}: no answer within 200ms",
        ex.php_fpm_socket().display()
    );
    assert!(text.contains(&reason), "expected {reason:?} in:\n{text}");

    drop(frozen);
    wait_until("the pool read again", SEEN_WITHIN, || {
        (value_of(&scrape(addr, None).body, up) == Some(1.0)).then_some(())
    });
}
