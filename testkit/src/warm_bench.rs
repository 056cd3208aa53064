//! The warm-up bench (`bench/warm.sh`, `kiln-testkit warm-bench`): a new instance of the Symfony
//! example joins a real HAProxy under a steady load, with and without `[warm]`; the latency of
//! its first requests, and what the warm-up adds to its time to READY=1.
//!
//! One instance ("steady") serves the load from the start; per round a fresh kiln boots the other
//! ("joiner-N", its own render) which joins the backend when ready. HAProxy alternates between the
//! two, so the joiner's requests are the samples whose page greets as the joiner. Both run with
//! OPcache on and `validate_timestamps=0`, as the example does; the rounds alternate with and
//! without warm-up, so the machine's drift weighs on both.
//!
//! The Messenger workers and Redis are left out of both instances: the page does not use them, and
//! on a small machine they would only add noise.

use crate::haproxy::{Haproxy, HaproxyConfig};
use crate::load::{Load, Sample};
use crate::notify::NotifySocket;
use crate::peers::Kiln;
use crate::symfony::SymfonyExample;
use crate::wait::wait_until;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long a joiner may take to answer its first requests (a busy 2-core machine).
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct WarmBenchOptions {
    pub kiln_bin: PathBuf,
    /// Rounds with warm-up, and as many without.
    pub rounds: usize,
    /// The joiner's requests measured per round.
    pub first: usize,
    /// Load threads, each pausing `pause` after every request.
    pub workers: usize,
    pub pause: Duration,
}

/// One round: the joiner's first requests' latencies, and its boot.
#[derive(Debug)]
struct Round {
    warm: bool,
    /// Sorted, in microseconds.
    latencies_us: Vec<u64>,
    failed: usize,
    /// kiln's timeline: READY=1 since kiln started, and the warm-up phase.
    ready_us: u64,
    warm_us: u64,
}

impl Round {
    fn quantile(&self, q: f64) -> f64 {
        let n = self.latencies_us.len();
        let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// The Symfony example greeting as `name`, without Redis and the workers, behind `haproxy`.
fn member(name: &str, haproxy: &Haproxy, warm: bool) -> SymfonyExample {
    let ex = SymfonyExample::render();
    ex.set_user_data("GREETING", &format!("hello from {name}"));
    let lb = haproxy.lb_table(
        ex.http_addr,
        Some(&format!("kiln-{name}")),
        Some("check inter 1s"),
        None,
    );
    ex.edit_toml(|t| {
        t.insert("lb".into(), toml::Value::Table(lb));
        let services = t["service"].as_array_mut().expect("[[service]]");
        services.retain(|s| !matches!(s["name"].as_str(), Some("redis" | "worker")));
        if !warm {
            t.remove("warm");
        }
    });
    ex
}

fn boot(ex: &SymfonyExample, kiln_bin: &str) -> (Kiln, NotifySocket) {
    let notify = NotifySocket::bind();
    let (key, value) = notify.env();
    let config = ex.config_path.display().to_string();
    let kiln = Kiln::boot_with(kiln_bin, &["boot", "--config", &config], &[(key, &value)]);
    (kiln, notify)
}

/// A phase's start or duration in kiln's timeline, in microseconds.
fn timeline(status: &serde_json::Value, phase: &str, field: &str) -> u64 {
    status["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|p| p["phase"] == phase))
        .and_then(|p| p[field].as_u64())
        .unwrap_or(0)
}

/// One round: a fresh joiner boots under the load, answers `first` requests, stops.
fn round(opts: &WarmBenchOptions, haproxy: &Haproxy, load: &Load, i: usize) -> Round {
    let warm = i % 2 == 1;
    // A name of its own: its samples are told apart from the earlier joiners'.
    let name = format!("joiner-{i}");
    let ex = member(&name, haproxy, warm);
    let kiln_bin = opts.kiln_bin.to_str().expect("a UTF-8 path");
    let (mut kiln, notify) = boot(&ex, kiln_bin);
    let greeting = format!("greeting: hello from {name}");
    wait_until("READY=1 from the joiner", DEADLINE, || {
        notify.lines().iter().any(|l| l == "READY=1").then_some(())
    });
    let status = crate::control::status(&ex.socket()).expect("the joiner's status");
    wait_until("the joiner's first requests", DEADLINE, || {
        (load.served_by(&greeting) >= opts.first).then_some(())
    });
    let mut mine: Vec<Sample> = load
        .samples()
        .into_iter()
        .filter(|s| s.first_line == greeting)
        .collect();
    mine.sort_by_key(|s| s.start);
    mine.truncate(opts.first);
    let mut latencies_us: Vec<u64> = mine
        .iter()
        .map(|s| (s.end - s.start).as_micros() as u64)
        .collect();
    latencies_us.sort_unstable();
    kiln.signal(nix::sys::signal::Signal::SIGTERM);
    kiln.wait_exit(DEADLINE);
    // The joiner's server leaves the backend with its kiln: the next round's joins afresh.
    Round {
        warm,
        failed: mine.iter().filter(|s| !s.ok()).count(),
        latencies_us,
        ready_us: timeline(&status, "READY=1", "start_us"),
        warm_us: timeline(&status, "warm-up", "duration_us"),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the bench and prints one line per round and the medians.
pub fn run(opts: &WarmBenchOptions) -> usize {
    let dir = tempfile::Builder::new()
        .prefix("kiln-warm-bench-")
        .tempdir()
        .unwrap();
    let haproxy = Haproxy::start(HaproxyConfig::new(dir.path()));
    let steady = member("steady", &haproxy, true);
    let (_steady_kiln, _steady_notify) = boot(&steady, opts.kiln_bin.to_str().unwrap());
    wait_until("the steady instance UP", DEADLINE, || {
        haproxy.server("kiln-steady").filter(|r| r.is_up())
    });
    let load = Load::start(&haproxy.url("/"), opts.workers, opts.pause);
    println!(
        "joiner's first {} requests through HAProxy ({} load threads, {} ms pause); ms",
        opts.first,
        opts.workers,
        opts.pause.as_millis()
    );
    println!("round  warm-up   p50      p99      max      failed  READY=1 after start  warm-up phase");
    let mut rounds = Vec::new();
    for i in 0..opts.rounds * 2 {
        // Alternate, starting without: the machine's drift weighs on both.
        let r = round(opts, &haproxy, &load, i);
        println!(
            "{:5}  {:8}  {:7.2}  {:7.2}  {:7.2}  {:6}  {:16.0} ms  {:10.0} ms",
            i + 1,
            if r.warm { "yes" } else { "no" },
            r.quantile(0.5),
            r.quantile(0.99),
            r.quantile(1.0),
            r.failed,
            r.ready_us as f64 / 1000.0,
            r.warm_us as f64 / 1000.0
        );
        rounds.push(r);
    }
    drop(load);
    println!("medians over the rounds:");
    for warm in [false, true] {
        let of =
            |f: &dyn Fn(&Round) -> f64| median(rounds.iter().filter(|r| r.warm == warm).map(f).collect());
        println!(
            "  warm-up {:3}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, READY=1 after {:.0} ms (warm-up {:.0} ms)",
            if warm { "yes" } else { "no" },
            of(&|r| r.quantile(0.5)),
            of(&|r| r.quantile(0.99)),
            of(&|r| r.quantile(1.0)),
            of(&|r| r.ready_us as f64 / 1000.0),
            of(&|r| r.warm_us as f64 / 1000.0),
        );
    }
    rounds.iter().map(|r| r.failed).sum()
}

const USAGE: &str =
    "usage: kiln-testkit warm-bench --kiln PATH [--rounds N] [--first N] [--workers N] [--pause MS]
  A new instance of the Symfony example joins a real HAProxy under a steady load, N rounds with
  [warm] and N without (default 3, alternating): p50/p99/max of its first requests (default 200)
  and its READY=1 after start. Exits 1 when a request failed.";

/// Entry point of `kiln-testkit warm-bench ...` (see `bench/warm.sh`).
pub fn main(args: &[String]) -> ExitCode {
    let mut opts = WarmBenchOptions {
        kiln_bin: PathBuf::new(),
        rounds: 3,
        first: 200,
        workers: 4,
        pause: Duration::from_millis(5),
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let Some(value) = rest.next() else {
            eprintln!("kiln-testkit warm-bench: {flag} needs a value\n{USAGE}");
            return ExitCode::from(2);
        };
        let number = || value.parse::<u64>().map_err(|e| format!("{flag} {value:?}: {e}"));
        let applied = match flag.as_str() {
            "--kiln" => {
                opts.kiln_bin = PathBuf::from(value);
                Ok(())
            }
            "--rounds" => number().map(|n| opts.rounds = n as usize),
            "--first" => number().map(|n| opts.first = n as usize),
            "--workers" => number().map(|n| opts.workers = n as usize),
            "--pause" => number().map(|n| opts.pause = Duration::from_millis(n)),
            _ => Err(format!("unknown flag {flag}")),
        };
        if let Err(e) = applied {
            eprintln!("kiln-testkit warm-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    if opts.kiln_bin.as_os_str().is_empty() || opts.rounds == 0 || opts.first == 0 {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    match run(&opts) {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
