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

/// What a one-connection server saw: the request head, and whether the client closed the
/// connection (EOF) within the deadline after the server's answer, if any.
struct Saw {
    request: String,
    client_closed: bool,
}

/// Accepts one connection, reads a request head, sends `answer` (if any) and keeps the connection
/// open from its side, waiting up to `CLOSE_DEADLINE` for the client to close it.
fn one_connection_server(answer: Option<&'static str>) -> (String, std::sync::mpsc::Receiver<Saw>) {
    const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        if let Some(answer) = answer {
            stream.write_all(answer.as_bytes()).unwrap();
        }
        let client_closed = loop {
            match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        };
        let request = String::from_utf8_lossy(&head).into_owned();
        let _ = tx.send(Saw {
            request,
            client_closed,
        });
    });
    (url, rx)
}

const KEEP_ALIVE_ANSWER: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Runs `probe` once, then waits for the server's verdict while the runtime (and so anything the
/// check may have left running on it) is still alive.
fn check_then_wait(probe: &Probe, saw: std::sync::mpsc::Receiver<Saw>) -> ((bool, String), Saw) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let reaper = Reaper::start().unwrap();
        let (outcome, _) = probe.check(&reaper).await;
        let saw = tokio::task::spawn_blocking(move || saw.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("the test server reports");
        ((outcome.ok, outcome.detail), saw)
    })
}

#[test]
fn an_http_check_closes_its_connection_even_when_the_server_would_keep_it() {
    let (url, saw) = one_connection_server(Some(KEEP_ALIVE_ANSWER));
    let probe = probe(&format!("http = {url:?}\nexpect = \"ok\""));
    let ((ok, detail), saw) = check_then_wait(&probe, saw);
    assert!(ok, "{detail}");
    assert!(
        saw.client_closed,
        "the probe kept its connection open after the check"
    );
    assert!(
        saw.request.to_ascii_lowercase().contains("connection: close"),
        "{}",
        saw.request
    );
}

#[test]
fn an_http_check_that_times_out_closes_its_connection() {
    let (url, saw) = one_connection_server(None);
    let probe = probe(&format!("http = {url:?}\ntimeout = \"200ms\""));
    let ((ok, detail), saw) = check_then_wait(&probe, saw);
    assert_eq!((ok, detail.as_str()), (false, "timed out after 200ms"));
    assert!(saw.client_closed, "the timed-out check left its connection open");
}

#[test]
fn aborting_a_probe_task_closes_its_connection() {
    let (url, saw) = one_connection_server(None);
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/health")
        .to_string();
    let probe = probe(&format!("http = {url:?}\ntimeout = \"60s\""));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let saw = runtime.block_on(async {
        let reaper = Reaper::start().unwrap();
        let task = tokio::spawn(async move { probe.check(&reaper).await });
        // Once the check has connected, abort it as the supervisor does when a unit stops.
        wait_until_async(|| established_to(&addr)).await;
        task.abort();
        let _ = task.await;
        tokio::task::spawn_blocking(move || saw.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("the test server reports")
    });
    assert!(saw.client_closed, "the aborted check left its connection open");
}

/// True when this process has an established TCP connection to `addr` (`127.0.0.1:port`).
fn established_to(addr: &str) -> bool {
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/self/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(2) == Some(&want.as_str()) && f.get(3) == Some(&"01")
        })
}

async fn wait_until_async(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the probe to connect"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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

/// An exec probe runs with its service's environment: under `env_allow`, the variables the
/// service may see and no others.
#[test]
fn an_exec_probe_sees_only_what_env_allow_gives_its_service() {
    let ex = Example::render();
    let user_data = ex.seed_dir.join("user-data");
    let seeded = std::fs::read_to_string(&user_data).unwrap();
    std::fs::write(
        &user_data,
        format!("{seeded}APP_TOKEN=tok-allowed-1\nOTHER_SECRET=other-hidden-2\n"),
    )
    .unwrap();
    let seen = ex.dir.path().join("probe-env");
    ex.edit_toml(|t| {
        let service: toml::Table = toml::from_str(&format!(
            "name = \"limited\"\ncommand = [\"sleep\", \"100000\"]\nenv_allow = [\"APP_*\"]\n\
             [ready]\nexec = [\"sh\", \"-c\", \"env > {0}.tmp && mv {0}.tmp {0}\"]\nperiod = \"100ms\"\n",
            seen.display()
        ))
        .unwrap();
        t.get_mut("service")
            .unwrap()
            .as_array_mut()
            .unwrap()
            .push(service.into());
    });
    let (_kiln, _notify) = ex.boot_ready(env!("CARGO_BIN_EXE_kiln"));
    // The probe runs every 100 ms; it writes elsewhere and renames, so this reads a whole file.
    let env = std::fs::read_to_string(&seen).unwrap();
    assert!(env.lines().any(|l| l == "APP_TOKEN=tok-allowed-1"), "{env}");
    assert!(
        !env.contains("other-hidden-2"),
        "the probe saw a variable its service may not:\n{env}"
    );
}
