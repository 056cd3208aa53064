//! Each probe kind against a real peer: pass and fail, with the detail a person would read.

use kiln::config::ProbeConfig;
use kiln::probe::{Probe, Role};
use kiln::process::Reaper;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use testkit::example::Example;
use testkit::wait::wait_until;

fn probe(toml_text: &str) -> Probe {
    let config: ProbeConfig = toml::from_str(toml_text).unwrap();
    Probe::new(
        Role::Ready,
        &config,
        vec![("PATH".into(), "/usr/bin:/bin".into())],
    )
    .unwrap()
}

/// Runs one check on a runtime of its own, with a started reaper (exec probes need it).
fn check(probe: &Probe) -> (bool, String, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let reaper = Reaper::start().unwrap();
        let (outcome, latency) = probe.check(&reaper).await;
        (outcome.ok, outcome.detail, latency)
    })
}

/// A one-connection-at-a-time HTTP server answering `status` and `body` to every request.
fn http_server(status: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLocation: /elsewhere\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/health")
}

#[test]
fn http_passes_on_2xx_and_3xx_and_checks_the_body() {
    assert!(check(&probe(&format!("http = {:?}", http_server("200 OK", "fine")))).0);
    assert!(
        check(&probe(&format!("http = {:?}", http_server("302 Found", "")))).0,
        "3xx passes, not followed"
    );
    let (ok, detail, _) = check(&probe(&format!("http = {:?}", http_server("500 Oops", "x"))));
    assert_eq!((ok, detail.as_str()), (false, "status 500"));
    let url = http_server("200 OK", "degraded");
    let (ok, detail, _) = check(&probe(&format!("http = {url:?}\nexpect = \"fine\"")));
    assert!(!ok);
    assert_eq!(detail, "status 200 but the body lacks \"fine\"");
}

#[test]
fn tcp_passes_when_a_connection_is_accepted() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(check(&probe(&format!("tcp = \"{addr}\""))).0);
    drop(listener);
    let (ok, detail, _) = check(&probe(&format!("tcp = \"{addr}\"")));
    assert!(!ok);
    assert!(detail.contains("Connection refused"), "{detail}");
}

#[test]
fn exec_passes_on_exit_0_and_kills_its_group_on_timeout() {
    assert!(check(&probe("exec = [\"true\"]")).0);
    let (ok, detail, _) = check(&probe("exec = [\"sh\", \"-c\", \"exit 3\"]"));
    assert_eq!((ok, detail.as_str()), (false, "exit 3"));

    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let slow = probe(&format!(
        "exec = [\"sh\", \"-c\", \"sleep 30 & echo $! > {}; wait\"]\ntimeout = \"300ms\"",
        pidfile.display()
    ));
    let started = Instant::now();
    let (ok, detail, _) = check(&slow);
    assert_eq!((ok, detail.as_str()), (false, "timed out after 300ms"));
    assert!(started.elapsed() < Duration::from_secs(10));
    let sleeper: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    wait_until(
        "the probe's background sleep killed with its group",
        Duration::from_secs(5),
        || {
            std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
                .map_or(true, |stat| stat.contains(") Z "))
                .then_some(())
        },
    );
}

#[test]
fn fastcgi_pings_a_real_php_fpm() {
    let ex = Example::render();
    let _php = ex.spawn_service("php-fpm", &[]);
    let socket = ex.php_fpm_socket();
    let ping = probe(&format!(
        "fastcgi = \"unix:{}\"\npath = \"/ping\"\nexpect = \"pong\"",
        socket.display()
    ));
    let detail = wait_until("php-fpm answers its ping", Duration::from_secs(10), || {
        let (ok, detail, _) = check(&ping);
        ok.then_some(detail)
    });
    assert_eq!(detail, "200 pong");
    let (ok, detail, _) = check(&probe(&format!(
        "fastcgi = \"unix:{}\"\npath = \"/nope\"",
        socket.display()
    )));
    assert!(!ok);
    assert!(detail.starts_with("status 404"), "{detail}");
    let missing = ex.dir.path().join("no.sock");
    let (ok, detail, _) = check(&probe(&format!("fastcgi = \"unix:{}\"", missing.display())));
    assert!(!ok && detail.starts_with("connect "), "{detail}");
}
