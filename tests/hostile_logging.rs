//! A log sink that does not take kiln's lines (issue 10 §3): kiln's stderr on a pipe that nobody
//! reads, already full. kiln must still boot the example to READY, answer `kiln status` (which
//! counts the dropped lines) and stop promptly on SIGTERM.

use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::control;
use testkit::example::{BOOT_DEADLINE, Example};
use testkit::wait::{http_get, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// A FIFO filled to the brim whose read end stays open and is never read: the first write kiln
/// makes to it would block for ever. The returned file is that read end; keep it alive.
fn full_pipe(path: &Path) -> std::fs::File {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open the FIFO's read end");
    let mut writer = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open the FIFO's write end");
    let block = [b'x'; 4096];
    loop {
        match writer.write(&block) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("fill the FIFO: {e}"),
        }
    }
    reader
}

#[test]
fn a_stderr_nobody_reads_does_not_stall_boot_status_or_stop() {
    let ex = Example::render();
    // Chatty workers: a line every 10 ms each, so kiln's log queue overflows and drops lines.
    ex.set_service_env("worker", "WORKER_INTERVAL", "0.01");
    let fifo = ex.dir.path().join("stderr.fifo");
    let _never_read = full_pipe(&fifo);
    let redirect = format!("exec \"$@\" 2>'{}'", fifo.display());
    let (mut kiln, notify) = ex.boot_notified(KILN, &["sh", "-c", &redirect, "sh"], &[]);

    notify.wait_for("READY=1", BOOT_DEADLINE, |l| l == "READY=1");
    assert_eq!(http_get(&ex.readyz_url()).unwrap(), (200, "ready\n".into()));
    assert_eq!(http_get(&ex.livez_url()).unwrap().0, 200);
    let dropped = wait_until("status to count dropped log lines", BOOT_DEADLINE, || {
        let status = control::status(&ex.socket())?;
        let dropped = status["log"]["dropped_lines"].as_u64()?;
        (dropped > 0).then_some(dropped)
    });
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("lines dropped (stderr did not keep up)"), "{text}");
    assert!(dropped > 0);

    let asked = Instant::now();
    kiln.signal(Signal::SIGTERM);
    let status = kiln.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "kiln exited with {status}");
    eprintln!("stopped {:?} after SIGTERM", asked.elapsed());
}

/// journald's native protocol (systemd's "journal export format" over a datagram): `NAME=value\n`,
/// or `NAME\n` + 64-bit little-endian length + value + `\n` for any value.
fn journal_fields(datagram: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = datagram;
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let line = &rest[..end];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            fields.push((text(&line[..eq]), text(&line[eq + 1..])));
            rest = &rest[end + 1..];
            continue;
        }
        let name = String::from_utf8_lossy(line).into_owned();
        let after = &rest[end + 1..];
        let len = u64::from_le_bytes(after[..8].try_into().unwrap()) as usize;
        fields.push((name, String::from_utf8_lossy(&after[8..8 + len]).into_owned()));
        rest = &after[8 + len + 1..];
    }
    fields
}

#[test]
fn a_journal_that_stops_reading_does_not_stall_kiln_and_fields_reach_it() {
    let ex = Example::render();
    ex.set_service_env("worker", "WORKER_INTERVAL", "0.01");
    // A journal socket of our own, seen by kiln (in a mount namespace of its own) at journald's
    // path: it takes datagrams until it has seen a forwarded line, then never reads again.
    let journal_dir = ex.dir.path().join("journal");
    std::fs::create_dir(&journal_dir).unwrap();
    let journal = std::os::unix::net::UnixDatagram::bind(journal_dir.join("socket")).unwrap();
    let reader = journal.try_clone().unwrap();
    reader.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let forwarded = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < BOOT_DEADLINE,
                "no forwarded line reached the journal"
            );
            let Ok(n) = reader.recv(&mut buf) else { continue };
            let fields = journal_fields(&buf[..n]);
            if fields.iter().any(|(name, _)| name == "SERVICE") {
                return fields;
            }
        }
    });
    let script = format!(
        "mount -t tmpfs kiln-test /run && mkdir -p /run/systemd/journal \
         && mount --bind '{}' /run/systemd/journal && exec \"$@\"",
        journal_dir.display()
    );
    let wrapper = ["unshare", "--mount", "sh", "-c", &script, "sh"];
    let (mut kiln, notify) = ex.boot_notified(KILN, &wrapper, &[("JOURNAL_STREAM", "8:1")]);

    let fields = forwarded.join().unwrap();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
    };
    assert_eq!(field("SYSLOG_IDENTIFIER"), "kiln");
    assert_eq!(
        field("PRIORITY"),
        "6",
        "a service's lines at info, as systemd logs them"
    );
    assert!(["stdout", "stderr"].contains(&field("STREAM")), "{fields:?}");
    let service = field("SERVICE");
    assert!(
        ["php-fpm", "nginx", "worker#1", "worker#2"].contains(&service),
        "{fields:?}"
    );
    assert!(
        field("MESSAGE").starts_with(&format!("{service}| ")),
        "{fields:?}"
    );

    notify.wait_for("READY=1", BOOT_DEADLINE, |l| l == "READY=1");
    assert_eq!(http_get(&ex.readyz_url()).unwrap(), (200, "ready\n".into()));
    wait_until("status to count dropped log lines", BOOT_DEADLINE, || {
        let status = control::status(&ex.socket())?;
        (status["log"]["sink"] == "journald" && status["log"]["dropped_lines"].as_u64()? > 0).then_some(())
    });
    kiln.signal(Signal::SIGTERM);
    let status = kiln.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "kiln exited with {status}");
    drop(journal);
}
