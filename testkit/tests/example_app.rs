//! The example app works on its own: Debian's php-fpm and nginx started straight from the commands
//! in the rendered kiln.toml (no kiln), and the PHP worker's run, stop and fail modes.

use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use testkit::example::Example;
use testkit::peers::{tagged_processes, wait_no_tagged_processes};
use testkit::wait::{http_get, wait_until};

const START: Duration = Duration::from_secs(10);

#[test]
fn the_page_shows_the_greeting_php_fpm_got_from_its_environment() {
    let example = Example::render();
    let greeting = format!("Hello from test {}", std::process::id());
    let mut php_fpm = example.spawn_service("php-fpm", &[("GREETING", &greeting)]);
    wait_until("php-fpm's socket", START, || {
        example.php_fpm_socket().exists().then_some(())
    });
    let mut nginx = example.spawn_service("nginx", &[]);

    let page = wait_until("the page through nginx", START, || {
        match http_get(&example.page_url()) {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    });
    assert!(page.contains(&format!("greeting: {greeting}\n")), "{page}");
    assert!(
        page.contains("app_env: prod\n"),
        "the service env of kiln.toml: {page}"
    );
    assert!(
        !page.contains("instance_id"),
        "no instance facts without metadata: {page}"
    );
    assert_eq!(http_get(&example.healthz_url()), Ok((200, "ok\n".to_string())));

    if nix::unistd::geteuid().is_root() {
        let php_pid: i32 = page
            .lines()
            .find_map(|l| l.strip_prefix("php_pid: "))
            .and_then(|p| p.parse().ok())
            .expect("php_pid line");
        assert_eq!(
            uid_of(php_pid),
            www_data_uid(),
            "the pool runs as www-data under root"
        );
    }

    assert_eq!(fastcgi_get(&example.php_fpm_socket(), "/ping"), "pong");
    assert!(fastcgi_get(&example.php_fpm_socket(), "/status").contains("pool:"));

    assert!(nginx.stop(Signal::SIGQUIT, START).success(), "{}", nginx.log());
    assert!(
        php_fpm.stop(Signal::SIGQUIT, START).success(),
        "{}",
        php_fpm.log()
    );
    assert!(
        nginx.log().contains("gracefully shutting down"),
        "{}",
        nginx.log()
    );
    wait_no_tagged_processes(nginx.tag(), START);
    wait_no_tagged_processes(php_fpm.tag(), START);
}

#[test]
fn the_worker_processes_jobs_and_exits_0_on_sigterm() {
    let example = Example::render();
    let mut worker = example.spawn_service("worker", &[("WORKER_INTERVAL", "0.1")]);
    worker.wait_log("processed job 2\n", START);
    let status = worker.stop(Signal::SIGTERM, START);
    assert_eq!(status.code(), Some(0), "{}", worker.log());
    assert!(
        worker.log().contains("SIGTERM received, stopping after"),
        "{}",
        worker.log()
    );
    assert!(tagged_processes(worker.tag()).is_empty());
}

#[test]
fn the_worker_in_fail_mode_exits_1_at_once() {
    let example = Example::render();
    let mut worker = example.spawn_service("worker", &[("WORKER_FAIL", "1")]);
    let status = worker.wait_exit(START);
    assert_eq!(status.code(), Some(1), "{}", worker.log());
    assert!(!worker.log().contains("processed job"), "{}", worker.log());
}

fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .expect("Uid line")
}

fn www_data_uid() -> u32 {
    nix::unistd::User::from_name("www-data")
        .ok()
        .flatten()
        .expect("user www-data")
        .uid
        .as_raw()
}

/// One FastCGI GET over a unix socket (the way php-fpm's ping and status are reached), returning
/// the body after the CGI headers. A test helper only: kiln has its own FastCGI probe.
fn fastcgi_get(socket: &Path, path: &str) -> String {
    fn record(kind: u8, content: &[u8]) -> Vec<u8> {
        let len = u16::try_from(content.len()).expect("small record");
        let mut r = vec![1, kind, 0, 1, (len >> 8) as u8, len as u8, 0, 0];
        r.extend_from_slice(content);
        r
    }
    let mut params = Vec::new();
    for (name, value) in [
        ("SCRIPT_NAME", path),
        ("SCRIPT_FILENAME", path),
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", ""),
    ] {
        params.extend_from_slice(&[name.len() as u8, value.len() as u8]);
        params.extend_from_slice(name.as_bytes());
        params.extend_from_slice(value.as_bytes());
    }
    let mut request = record(1, &[0, 1, 0, 0, 0, 0, 0, 0]); // BEGIN_REQUEST, role responder
    request.extend(record(4, &params));
    request.extend(record(4, &[]));
    request.extend(record(5, &[])); // empty STDIN
    let mut stream = UnixStream::connect(socket).expect("connect to php-fpm");
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    stream.write_all(&request).expect("send the FastCGI request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the FastCGI answer");
    let mut stdout = Vec::new();
    let mut rest = &answer[..];
    while rest.len() >= 8 {
        let (kind, len, pad) = (
            rest[1],
            u16::from_be_bytes([rest[4], rest[5]]) as usize,
            rest[6] as usize,
        );
        if kind == 6 {
            stdout.extend_from_slice(&rest[8..8 + len]);
        }
        rest = &rest[8 + len + pad..];
    }
    let text = String::from_utf8_lossy(&stdout).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(text)
}
