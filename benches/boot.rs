//! The supervisor's figures on the PHP example (release build): `cargo bench --bench boot`.
//!
//! - overhead: kiln exec → READY=1, minus the services' own exec → ready along the dependency
//!   chain kiln must follow (php-fpm, then nginx), each measured alone with a 1 ms poll;
//! - crash detection: SIGKILL of the php-fpm master → first 503 from /readyz (a client polling
//!   over one keep-alive connection), and → kiln's `STATUS=degraded` notification;
//! - kiln's steady RSS once ready;
//! - /readyz requests per second (wrk) against nginx answering `return 200;`, as a ratio.
//!
//! It prints numbers; it asserts nothing. The examples run from /dev/shm, so that kiln's
//! state_dir is on a tmpfs as `/run` is on a real instance.

use kiln::config::ProbeConfig;
use kiln::probe::{Probe, Role};
use kiln::process::Reaper;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::control;
use testkit::example::Example;
use testkit::peers::Process;
use testkit::wait::{http_get, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const RUNS: usize = 15;
/// php-fpm kills; from the third in a row it counts as crash-looping and needs 10 s to settle.
const KILLS: usize = 6;
/// wrk rounds per server for the throughput ratio.
const ROUNDS: usize = 5;
const DEADLINE: Duration = Duration::from_secs(30);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench --list`
    }
    // The examples (and so kiln's state_dir) live on a tmpfs, as /run does in production: the
    // env file's fsyncs cost nothing there and ~20 ms on this machine's disk.
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("TMPDIR", "/dev/shm") };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut kiln_ready = Vec::new();
    let mut web_ready = Vec::new();
    let mut php_alone = Vec::new();
    let mut nginx_alone = Vec::new();
    for _ in 0..RUNS {
        kiln_ready.push(boot_to_ready(&example()));
        web_ready.push(boot_to_ready(&web_only()));
        let (php, nginx) = services_alone(&runtime);
        php_alone.push(php);
        nginx_alone.push(nginx);
    }
    let (kiln_ready, web_ready) = (median(kiln_ready), median(web_ready));
    let (php, nginx) = (median(php_alone), median(nginx_alone));
    let chain = php + nginx;
    println!("boot ({RUNS} runs, medians)");
    println!("  kiln exec -> READY=1, whole example  {}", ms(kiln_ready));
    println!("  kiln exec -> READY=1, php-fpm+nginx  {}", ms(web_ready));
    println!("  php-fpm alone exec -> ping pong      {}", ms(php));
    println!("  nginx alone exec -> /healthz 200     {}", ms(nginx));
    println!(
        "  kiln overhead (php-fpm+nginx under kiln - the same chain alone) {}",
        signed_ms(web_ready.as_secs_f64() - chain.as_secs_f64())
    );
    println!(
        "  whole example - the chain alone (workers' PHP start-up competes for the CPUs) {}",
        signed_ms(kiln_ready.as_secs_f64() - chain.as_secs_f64())
    );

    let (readyz_503, degraded, rss_kib) = crash_detection_and_rss();
    println!("crash detection ({} kills, median / max)", readyz_503.len());
    println!(
        "  SIGKILL php-fpm -> /readyz 503       {} / {}",
        ms(median(readyz_503.clone())),
        ms(max(&readyz_503))
    );
    println!(
        "  SIGKILL php-fpm -> STATUS=degraded   {} / {}",
        ms(median(degraded.clone())),
        ms(max(&degraded))
    );
    println!(
        "steady RSS of kiln                     {:.1} MiB",
        rss_kib as f64 / 1024.0
    );

    let (kiln_rps, nginx_rps) = readyz_throughput();
    println!("/readyz throughput (wrk -t2 -c32 -d3s, {ROUNDS} alternating rounds, medians)");
    println!("  kiln /readyz                         {kiln_rps:.0} req/s");
    println!("  nginx return 200                     {nginx_rps:.0} req/s");
    println!(
        "  ratio kiln / nginx                   {:.2}",
        kiln_rps / nginx_rps
    );
}

/// The example with workers ready at once, so the web chain is what READY=1 waits for.
fn example() -> Example {
    let ex = Example::render();
    ex.edit_service("worker", |s| {
        s.insert("ready_after".into(), "0s".into());
    });
    ex
}

/// Only the chain kiln must order (php-fpm, then nginx): what is left is kiln's own cost.
fn web_only() -> Example {
    let ex = example();
    ex.edit_toml(|t| {
        if let Some(toml::Value::Array(services)) = t.get_mut("service") {
            services.retain(|s| s.get("name").and_then(|n| n.as_str()) != Some("worker"));
        }
    });
    ex
}

fn boot_to_ready(ex: &Example) -> Duration {
    let started = Instant::now();
    let (_kiln, notify) = ex.boot_notified(KILN, &[], &[]);
    notify.wait_for("READY=1", DEADLINE, |l| l == "READY=1");
    let (at, _) = notify
        .timed_lines()
        .into_iter()
        .find(|(_, l)| l == "READY=1")
        .unwrap();
    at - started
}

/// php-fpm alone until its ping answers, then nginx alone (php-fpm still up) until /healthz.
fn services_alone(runtime: &tokio::runtime::Runtime) -> (Duration, Duration) {
    let ex = example();
    let ping: ProbeConfig = toml::from_str(&format!(
        "fastcgi = \"unix:{}\"\npath = \"/ping\"\nexpect = \"pong\"",
        ex.php_fpm_socket().display()
    ))
    .unwrap();
    let probe = Probe::new(Role::Ready, &ping, Vec::new()).unwrap();
    let reaper = Reaper::default();
    let started = Instant::now();
    let _php = ex.spawn_service("php-fpm", &[]);
    while !runtime.block_on(probe.check(&reaper)).0.ok {
        assert!(started.elapsed() < DEADLINE, "php-fpm never answered its ping");
        std::thread::sleep(Duration::from_millis(1));
    }
    let php = started.elapsed();
    let started = Instant::now();
    let _nginx = ex.spawn_service("nginx", &[]);
    while http_get(&ex.healthz_url()).map(|r| r.0) != Ok(200) {
        assert!(started.elapsed() < DEADLINE, "nginx never answered /healthz");
        std::thread::sleep(Duration::from_millis(1));
    }
    (php, started.elapsed())
}

fn crash_detection_and_rss() -> (Vec<Duration>, Vec<Duration>, u64) {
    let ex = example();
    let (kiln, notify) = ex.boot_ready(KILN);
    std::thread::sleep(Duration::from_secs(3));
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", kiln.pid()))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix(" kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap();

    let (mut to_503, mut to_status) = (Vec::new(), Vec::new());
    for _ in 0..KILLS {
        wait_until("ready", DEADLINE, || {
            (http_get(&ex.readyz_url()).ok()?.0 == 200).then_some(())
        });
        let seen_before = notify.timed_lines().len();
        let pid = control::unit_pid(&ex.socket(), "php-fpm").unwrap();
        let mut poller = KeepAlive::connect(&ex.readyz_url());
        assert_eq!(poller.get(), 200);
        let killed = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        while poller.get() != 503 {
            assert!(killed.elapsed() < DEADLINE, "/readyz never turned 503");
        }
        to_503.push(killed.elapsed());
        let degraded_at = wait_until("STATUS=degraded", DEADLINE, || {
            notify.timed_lines()[seen_before..]
                .iter()
                .find(|(_, l)| l.starts_with("STATUS=degraded"))
                .map(|(at, _)| *at)
        });
        to_status.push(degraded_at - killed);
    }
    (to_503, to_status, rss_kib)
}

fn readyz_throughput() -> (f64, f64) {
    let ex = example();
    let (_kiln, _notify) = ex.boot_ready(KILN);

    let dir = tempfile::tempdir().unwrap();
    let addr = testkit::net::free_addr();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\npid {d}/nginx.pid;\nerror_log stderr error;\nevents {{}}\nhttp {{\n  \
             access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n  fastcgi_temp_path {d};\n  \
             uwsgi_temp_path {d};\n  scgi_temp_path {d};\n  server {{\n    listen {addr};\n    \
             location / {{ return 200 \"ready\\n\"; }}\n  }}\n}}\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("nginx");
    cmd.args([
        "-p",
        dir.path().to_str().unwrap(),
        "-e",
        "stderr",
        "-c",
        conf.to_str().unwrap(),
    ])
    .args(["-g", "daemon off;"]);
    let _nginx = Process::spawn(cmd);
    let url = format!("http://{addr}/readyz");
    wait_until("nginx up", DEADLINE, || {
        (http_get(&url).ok()?.0 == 200).then_some(())
    });
    // Alternate the two so that a burst of load elsewhere on the machine hits both alike.
    let (mut kiln_rps, mut nginx_rps) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        kiln_rps.push(wrk(&ex.readyz_url()));
        nginx_rps.push(wrk(&url));
    }
    (median_f64(kiln_rps), median_f64(nginx_rps))
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn wrk(url: &str) -> f64 {
    let out = Command::new("wrk")
        .args(["-t2", "-c32", "-d3s", url])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

/// HTTP/1.1 GETs over one kept-alive connection: no connect time in the measurement.
struct KeepAlive {
    stream: TcpStream,
    request: Vec<u8>,
}

impl KeepAlive {
    fn connect(url: &str) -> KeepAlive {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let stream = TcpStream::connect(host).unwrap();
        stream.set_nodelay(true).unwrap();
        KeepAlive {
            stream,
            request: format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
        }
    }

    fn get(&mut self) -> u16 {
        self.stream.write_all(&self.request).unwrap();
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        loop {
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")?
                            .trim()
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return head[9..12].parse().unwrap();
                }
            }
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn max(v: &[Duration]) -> Duration {
    v.iter().copied().max().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn signed_ms(secs: f64) -> String {
    format!("{:+.1} ms", secs * 1e3)
}
