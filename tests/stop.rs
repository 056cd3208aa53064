//! Stopping: reverse order, each service's own stop signal, nothing left behind; SIGHUP refused.

use nix::sys::signal::Signal;
use std::time::Duration;
use testkit::control;
use testkit::example::Example;
use testkit::peers::wait_no_tagged_processes;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

#[test]
fn sigterm_stops_in_reverse_order_with_each_stop_signal_and_leaves_nothing() {
    let ex = Example::render();
    let (mut kiln, notify) = ex.boot_ready(KILN);
    kiln.signal(Signal::SIGTERM);
    let status = kiln.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", kiln.log());

    let log = kiln.log();
    // nginx waits for php-fpm, so it stops first; php-fpm goes last.
    assert!(
        kiln.line_of("nginx: stopped") < kiln.line_of("php-fpm: stopping (SIGQUIT)"),
        "{log}"
    );
    kiln.line_of("nginx: stopping (SIGQUIT)");
    kiln.line_of("worker#1: stopping (SIGTERM)");
    // The processes saw their graceful signal: php-fpm finishes on SIGQUIT (SIGTERM would be
    // "Terminating"), the worker finishes its job on SIGTERM and exits 0.
    kiln.line_of("Finishing");
    kiln.line_of("SIGTERM received, stopping after");
    // The stop signal went to nginx's master only (KillMode=mixed); its worker, had it been
    // signalled too, would log a second "signal 3 (SIGQUIT) received".
    let nginx_signalled = log
        .lines()
        .filter(|l| l.contains("nginx|") && l.contains("signal 3 (SIGQUIT) received"))
        .count();
    assert_eq!(nginx_signalled, 1, "{log}");
    assert!(!log.contains("SIGKILL"), "{log}");
    assert!(notify.lines().iter().any(|l| l == "STOPPING=1"));
    wait_no_tagged_processes(kiln.tag(), Duration::from_secs(5));
}

#[test]
fn sighup_is_refused_and_nothing_restarts() {
    let ex = Example::render();
    let (kiln, _notify) = ex.boot_ready(KILN);
    let before = control::status(&ex.socket()).unwrap();
    kiln.signal(Signal::SIGHUP);
    kiln.wait_log("SIGHUP refused", Duration::from_secs(5));
    let after = control::status(&ex.socket()).unwrap();
    assert_eq!(after["phase"], "ready");
    assert_eq!(after["refused_mutations"], 1);
    for unit in ["php-fpm", "nginx", "worker#1", "worker#2"] {
        let (b, a) = (control::unit(&before, unit), control::unit(&after, unit));
        assert_eq!(a["pid"], b["pid"], "{unit} was restarted");
        assert_eq!(a["restarts"], 0, "{unit}");
    }
}

/// The signal masks of `/proc/PID/status` (`SigIgn`, `SigBlk`) as bit sets.
fn signal_masks(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = |key: &str| {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    (mask("SigIgn:"), mask("SigBlk:"))
}

#[test]
fn services_start_with_a_clean_signal_state_whatever_kiln_inherited() {
    let ex = Example::render();
    // `sleep` leaves its signal state as it found it: what kiln handed on shows.
    ex.edit_config(|c| c + "\n[[service]]\nname = \"sleeper\"\ncommand = [\"sleep\", \"1000\"]\n");
    // As a shell's background job starts it (SIGINT and SIGQUIT ignored), and with kiln's own
    // stop signal blocked on top.
    let wrapper = ["env", "--ignore-signal=INT,QUIT", "--block-signal=TERM,USR1"];
    let (mut kiln, notify) = ex.boot_notified(KILN, &wrapper, &[]);
    notify.wait_for("READY=1", testkit::example::BOOT_DEADLINE, |l| l == "READY=1");
    let (ignored, blocked) = signal_masks(kiln.pid());
    assert_ne!(ignored, 0, "the wrapper did not ignore SIGINT/SIGQUIT in kiln");
    let sleeper = control::unit_pid(&ex.socket(), "sleeper").unwrap();
    assert_eq!(signal_masks(sleeper), (0, 0), "SigIgn and SigBlk of a service");
    assert_eq!(blocked, 0, "kiln kept its inherited mask");

    kiln.signal(Signal::SIGTERM);
    let status = kiln.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", kiln.log());
    kiln.line_of("nginx: stopped (exit 0)");
    assert!(!kiln.log().contains("SIGKILL"), "{}", kiln.log());
    wait_no_tagged_processes(kiln.tag(), Duration::from_secs(5));
}

/// The 30-stop test runs this many examples side by side, each stopped this many times.
const LANES: u64 = 4;
const STOPS_PER_LANE: u64 = 8;
/// Uptimes are drawn uniformly from this range (ms), counted from kiln's start.
const UPTIME_MS: (u64, u64) = (1_000, 15_000);
/// A stop of the example takes tens of milliseconds; a stop that needed SIGKILL takes
/// `stop_timeout` (10 s).
const STOP_BOUND: Duration = Duration::from_secs(2);

/// Starting a kiln and sweeping up after one must not interleave: testkit's sweep would take a
/// child forked by the test but not registered yet for an orphan of the tree it sweeps.
static SPAWN_OR_SWEEP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn spawn_or_sweep() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_OR_SWEEP.lock().unwrap_or_else(|e| e.into_inner())
}

/// xorshift64*: enough randomness for uptimes, and a seed that repeats a run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[derive(Debug)]
struct StopRecord {
    lane: u64,
    round: u64,
    signal: Signal,
    uptime: Duration,
    took: Duration,
    exit: Option<i32>,
    /// kiln's log when the stop was not clean.
    failure: Option<String>,
}

/// Boots the example, fetches the page, stops kiln after `uptime` with `signal`.
fn boot_and_stop(lane: u64, round: u64, uptime: Duration, signal: Signal) -> StopRecord {
    let ex = Example::render();
    let booted = std::time::Instant::now();
    let (mut kiln, notify) = {
        let _guard = spawn_or_sweep();
        ex.boot_notified(KILN, &[], &[])
    };
    notify.wait_for("READY=1", testkit::example::BOOT_DEADLINE, |l| l == "READY=1");
    let (code, page) = testkit::wait::http_get(&ex.page_url()).unwrap();
    assert!(code == 200 && page.contains("greeting:"), "{code} {page}");
    // The uptime is this test's input, drawn at random, not a wait for a condition.
    if let Some(rest) = uptime.checked_sub(booted.elapsed()) {
        std::thread::sleep(rest);
    }
    let uptime = booted.elapsed();
    let sent = std::time::Instant::now();
    kiln.signal(signal);
    let status = kiln.wait_exit(Duration::from_secs(30));
    let took = sent.elapsed();
    let log = kiln.log();
    let clean = status.code() == Some(0) && !log.contains("SIGKILL") && took <= STOP_BOUND;
    let tag = kiln.tag().to_string();
    {
        let _guard = spawn_or_sweep();
        drop(kiln);
    }
    wait_no_tagged_processes(&tag, Duration::from_secs(5));
    StopRecord {
        lane,
        round,
        signal,
        uptime,
        took,
        exit: status.code(),
        failure: (!clean).then_some(log),
    }
}

#[test]
fn thirty_stops_after_random_uptimes_never_need_sigkill() {
    let seed: u64 = std::env::var("KILN_STOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(1, |d| d.as_nanos() as u64) | 1
        });
    eprintln!("uptimes drawn with KILN_STOP_SEED={seed}");
    let lanes: Vec<_> = (0..LANES)
        .map(|lane| {
            std::thread::spawn(move || {
                let mut rng = Rng(seed.wrapping_add(lane.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
                (0..STOPS_PER_LANE)
                    .map(|round| {
                        let uptime = UPTIME_MS.0 + rng.below(UPTIME_MS.1 - UPTIME_MS.0 + 1);
                        let signal = [Signal::SIGTERM, Signal::SIGINT][((lane + round) % 2) as usize];
                        boot_and_stop(lane, round, Duration::from_millis(uptime), signal)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut records: Vec<StopRecord> = lanes
        .into_iter()
        .flat_map(|lane| lane.join().expect("a lane of stops panicked"))
        .collect();
    for r in &records {
        eprintln!(
            "lane {} stop {}: {} after {:.1}s up: stopped in {} ms (exit {:?})",
            r.lane,
            r.round,
            r.signal.as_str(),
            r.uptime.as_secs_f64(),
            r.took.as_millis(),
            r.exit
        );
    }
    records.sort_by_key(|r| r.took);
    let median = records[records.len() / 2].took;
    let max = records.last().unwrap().took;
    eprintln!(
        "{} stops: median {} ms, max {} ms",
        records.len(),
        median.as_millis(),
        max.as_millis()
    );
    let failed: Vec<&StopRecord> = records.iter().filter(|r| r.failure.is_some()).collect();
    if let Some(first) = failed.first() {
        panic!(
            "{} of {} stops were not clean (exit 0, no SIGKILL, within {STOP_BOUND:?}): {:?}\nkiln's log of the first:\n{}",
            failed.len(),
            records.len(),
            failed
                .iter()
                .map(|r| (r.lane, r.round, r.signal.as_str(), r.took, r.exit))
                .collect::<Vec<_>>(),
            first.failure.as_deref().unwrap_or_default()
        );
    }
    assert!(records.len() >= 30);
}
