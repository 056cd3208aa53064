//! `kiln fleet` against peers that lie: a load balancer (a HAProxy runtime API over TCP) and
//! member kilns whose answers carry terminal escapes, forged lines, huge texts and addresses that
//! are not addresses. What `kiln fleet` prints can neither drive the terminal nor forge a line,
//! stays small, and it asks no place but the members' health ports.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Escapes that retitle the terminal, clear it, and a line break that forges a member.
const ESC: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\r\nUNIFORM: 9 ready";

/// Answers every connection with `answer(request's first line)`, counting connections; runs
/// until the test ends.
fn peer(addr: &str, answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(addr).unwrap();
    let local = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(&stream);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            // An HTTP request: read its headers to the blank line.
            let mut line = String::new();
            while first.starts_with("GET") && reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = (&stream).write_all(&answer(&first));
        }
    });
    (local, count)
}

/// A HAProxy runtime API whose `show stat` lists `rows` (`svname`, `status`, `addr`).
fn haproxy(rows: Vec<(String, String, String)>) -> SocketAddr {
    let (addr, _) = peer("127.0.0.1:0", move |_| {
        let mut csv = String::from("# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,weight,addr,\n");
        for (name, status, addr) in &rows {
            csv.push_str(&format!("app,{name},0,0,0,0,,0,{status},1,{addr},\n"));
        }
        csv.into_bytes()
    });
    addr
}

/// A member kiln whose verbose `/readyz` says `body`.
fn member(body: serde_json::Value) -> SocketAddr {
    let (addr, _) = peer("127.0.0.1:0", move |_| {
        let body = body.to_string();
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    addr
}

fn fleet(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(KILN).arg("fleet").args(args).output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    (
        code,
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every byte a terminal could act on but the line break: C0, DEL, and C1 as UTF-8.
fn drives_the_terminal(out: &[u8]) -> bool {
    String::from_utf8_lossy(out)
        .chars()
        .any(|c| c.is_control() && c != '\n')
}

#[test]
fn escapes_from_the_load_balancer_and_the_members_are_shown_as_text() {
    let kiln = member(serde_json::json!({
        "phase": "failed",
        "reason": format!("seal drift{ESC}"),
        "instance_id": format!("i-1{ESC}"),
        "release": format!("v1{ESC}"),
        // Multi-byte characters where the table cuts a root hash to 12.
        "seal": format!("a{}{ESC}", "é".repeat(10)),
        "lb": format!("registered{ESC}"),
    }));
    let lb = haproxy(vec![(
        format!("srv{ESC}").replace(['\r', '\n'], ""),
        format!("UP{ESC}").replace(['\r', '\n'], ""),
        "127.0.0.1:8080".into(),
    )]);
    let socket = format!("tcp:{lb}");
    let port = kiln.port().to_string();
    for json in [false, true] {
        let mut args = vec![
            "--socket",
            socket.as_str(),
            "--backend",
            "app",
            "--health-port",
            &port,
        ];
        if json {
            args.push("--json");
        }
        let (code, out, err) = fleet(&args);
        let shown = String::from_utf8_lossy(&out);
        assert_eq!(code, 1, "{shown}{err}");
        assert!(!drives_the_terminal(&out), "json {json}: {shown:?}");
        assert!(!drives_the_terminal(err.as_bytes()), "json {json}: {err:?}");
        assert!(
            !shown.lines().any(|l| l.trim_start().starts_with("UNIFORM")),
            "a forged verdict line: {shown}"
        );
        if !json {
            assert!(shown.starts_with("DRIFT: "), "{shown}");
            assert!(shown.contains(r"seal drift\u{1b}]0;pwned\u{7}"), "{shown}");
            assert!(shown.contains(r"i-1\u{1b}]0;pwned"), "{shown}");
            assert!(shown.contains(r"v1\u{1b}]0;pwned"), "{shown}");
            assert!(shown.contains(r"UP\u{1b}]0;pwned"), "{shown}");
        }
    }
}

#[test]
fn huge_answers_are_bounded_and_addresses_that_are_not_addresses_are_not_asked() {
    let huge = "A".repeat(15 * 1024);
    let kiln = member(serde_json::json!({
        "phase": "degraded", "reason": huge, "instance_id": huge, "release": huge, "seal": huge,
    }));
    // A listener on port 80 of a loopback address of its own: an address such as
    // `127.0.0.77/?:8080` would turn into `http://127.0.0.77/?:9100/readyz`, port 80.
    let (decoy, asked) = peer("127.0.0.77:80", |_| {
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec()
    });
    let lb = haproxy(vec![
        ("i-1".into(), "UP".into(), "127.0.0.1:8080".into()),
        ("i-2".into(), "UP".into(), format!("{}/?:8080", decoy.ip())),
        ("i-3".into(), "UP".into(), format!("user@{}:8080", decoy.ip())),
    ]);
    let socket = format!("tcp:{lb}");
    let port = kiln.port().to_string();
    let (code, out, err) = fleet(&["--socket", &socket, "--backend", "app", "--health-port", &port]);
    let shown = String::from_utf8_lossy(&out);
    assert_eq!(code, 1, "{shown}{err}");
    assert!(out.len() < 8 * 1024, "{} bytes: {:.400}", out.len(), shown);
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "kiln fleet asked the decoy: {shown}"
    );
    assert!(
        shown.contains("the load balancer gives an address that is not HOST:PORT"),
        "{shown}"
    );

    // A load balancer whose error is a page of text.
    let (lb, _) = peer("127.0.0.1:0", |_| {
        let mut page = format!("Unknown backend{ESC}").into_bytes();
        page.extend(std::iter::repeat_n(b'x', 200 * 1024));
        page
    });
    let socket = format!("tcp:{lb}");
    let (code, out, err) = fleet(&["--socket", &socket, "--backend", "app", "--health-port", &port]);
    assert_eq!(code, 1, "{err}");
    assert!(out.len() < 4 * 1024, "{} bytes", out.len());
    assert!(!drives_the_terminal(&out), "{:?}", String::from_utf8_lossy(&out));
}
