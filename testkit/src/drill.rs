//! The zero-loss drill: two kiln instances of the example app behind one real HAProxy, a steady
//! load through HAProxy, SIGTERM to one kiln. Used by the end-to-end test (which asserts on the
//! [`DrillReport`]) and by `bench/zero_loss.sh` through `kiln-testkit zero-loss` (which prints it).
//!
//! HAProxy runs with `retries 0` and no redispatch, so a request sent to a server that is going
//! away fails instead of being retried elsewhere: a failure cannot hide.

use crate::example::Example;
use crate::haproxy::{Haproxy, HaproxyConfig};
use crate::load::{Load, Sample};
use crate::member::{Member, goes_on_serving, warm_up};
use crate::notify::NotifySocket;
use crate::peers::Kiln;
use crate::wait::wait_until;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub kiln_bin: PathBuf,
    /// Load threads (each: request, pause, request...).
    pub workers: usize,
    pub pause: Duration,
    /// `[lb] options` of both instances.
    pub server_options: String,
    /// `[lb] drain_timeout` of both instances.
    pub drain_timeout: Duration,
    /// Successful answers each instance must have given before the SIGTERM, and the survivor
    /// after the stopped one is gone.
    pub warm_requests: usize,
}

impl DrillOptions {
    pub fn new(kiln_bin: impl Into<PathBuf>) -> DrillOptions {
        DrillOptions {
            kiln_bin: kiln_bin.into(),
            workers: 4,
            pause: Duration::from_millis(5),
            server_options: "check inter 1s".into(),
            drain_timeout: Duration::from_secs(10),
            warm_requests: 50,
        }
    }
}

#[derive(Debug)]
pub struct DrillReport {
    pub sent: usize,
    pub failed: usize,
    /// The first failures, as `status or error`.
    pub failures: Vec<String>,
    /// Per instance: from `READY=1` reaching the notify socket to the server UP (taking traffic)
    /// in HAProxy.
    pub ready_to_up: Vec<Duration>,
    /// From the SIGTERM to the stopped instance's server being gone from the backend.
    pub drain: Duration,
    /// kiln's own last word on the drain (`kiln status` lb.drain), e.g. `drained in 0.1s`.
    pub kiln_drain: Option<String>,
    /// Requests answered by the stopped instance that started after HAProxy showed it draining.
    pub to_stopped_after_drain: usize,
    pub served_by_stopped: usize,
    pub served_by_survivor: usize,
    /// The stopped instance's server is absent from the backend at the end.
    pub server_gone: bool,
    pub survivor_up: bool,
    pub exit: ExitStatus,
}

impl std::fmt::Display for DrillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "requests sent:              {}", self.sent)?;
        writeln!(f, "requests failed:            {}", self.failed)?;
        for failure in &self.failures {
            writeln!(f, "  failure: {failure}")?;
        }
        writeln!(
            f,
            "served by stopped/survivor: {}/{}",
            self.served_by_stopped, self.served_by_survivor
        )?;
        writeln!(
            f,
            "new requests to stopped after drain began: {}",
            self.to_stopped_after_drain
        )?;
        writeln!(
            f,
            "drain (SIGTERM -> server gone): {:.3}s",
            self.drain.as_secs_f64()
        )?;
        writeln!(
            f,
            "kiln's drain report:        {}",
            self.kiln_drain.as_deref().unwrap_or("-")
        )?;
        for (i, d) in self.ready_to_up.iter().enumerate() {
            writeln!(f, "READY=1 -> UP, instance {}:  {:.3}s", i + 1, d.as_secs_f64())?;
        }
        writeln!(
            f,
            "stopped server gone: {}, survivor UP: {}",
            self.server_gone, self.survivor_up
        )?;
        write!(f, "stopped kiln exit: {}", self.exit)
    }
}

struct Instance {
    server: String,
    greeting: String,
    example: Example,
    kiln: Kiln,
    notify: NotifySocket,
}

/// Runs the drill; panics (with logs) when a step does not happen in time.
pub fn zero_loss(opts: &DrillOptions) -> DrillReport {
    let dir = tempfile::Builder::new().prefix("kiln-drill-").tempdir().unwrap();
    let haproxy = Haproxy::start(HaproxyConfig::new(dir.path()));
    let mut instances: Vec<Instance> = ["a", "b"]
        .into_iter()
        .map(|name| boot_instance(name, &haproxy, opts))
        .collect();
    let ready_to_up = time_ready_to_up(&instances, &haproxy);

    let load = Load::start(&haproxy.url("/"), opts.workers, opts.pause);
    let members = instances.iter().map(|i| (i.server.as_str(), i.greeting.as_str()));
    warm_up(&load, members, opts.warm_requests);

    let (stopped, survivor) = (&instances[0], &instances[1]);
    let sigterm = Instant::now();
    stopped.kiln.signal(Signal::SIGTERM);
    let mut drain_seen = None;
    let mut kiln_drain = None;
    let gone_deadline = opts.drain_timeout + Duration::from_secs(20);
    wait_until("the stopped server to leave the backend", gone_deadline, || {
        if let Some(lb) = crate::control::status(&stopped.example.socket())
            .and_then(|s| s["lb"]["drain"].as_str().map(String::from))
        {
            kiln_drain = Some(lb);
        }
        match haproxy.server(&stopped.server) {
            Some(row) => {
                if drain_seen.is_none()
                    && (row.status.starts_with("DRAIN") || row.status.starts_with("MAINT"))
                {
                    drain_seen = Some(Instant::now());
                }
                None
            }
            None => Some(()),
        }
    });
    let gone = Instant::now();
    let drain_seen = drain_seen.unwrap_or(gone);
    goes_on_serving(&load, &survivor.greeting, opts.warm_requests);
    let samples = load.stop();
    let exit = instances[0]
        .kiln
        .wait_exit(opts.drain_timeout + Duration::from_secs(30));
    // kiln's last word on the drain is its log line `lb: left ... (drained in 0.01s)`: a fast
    // stop can be over before `kiln status` is asked again.
    if let Some(summary) = left_summary(&instances[0].kiln.log()) {
        kiln_drain = Some(summary);
    }

    let stopped_greeting = &instances[0].greeting;
    let failures: Vec<&Sample> = samples.iter().filter(|s| !s.ok()).collect();
    let report = DrillReport {
        sent: samples.len(),
        failed: failures.len(),
        failures: failures
            .iter()
            .take(10)
            .map(|s| match &s.result {
                Ok(code) => format!(
                    "HTTP {code} at +{:.3}s",
                    s.start.saturating_duration_since(sigterm).as_secs_f64()
                ),
                Err(e) => e.clone(),
            })
            .collect(),
        ready_to_up,
        drain: gone - sigterm,
        kiln_drain,
        to_stopped_after_drain: samples
            .iter()
            .filter(|s| s.ok() && &s.first_line == stopped_greeting && s.start > drain_seen)
            .count(),
        served_by_stopped: samples
            .iter()
            .filter(|s| s.ok() && &s.first_line == stopped_greeting)
            .count(),
        served_by_survivor: samples
            .iter()
            .filter(|s| s.ok() && s.first_line == instances[1].greeting)
            .count(),
        server_gone: haproxy.server(&instances[0].server).is_none(),
        survivor_up: haproxy.server(&instances[1].server).is_some_and(|r| r.is_up()),
        exit,
    };
    instances.clear();
    report
}

fn boot_instance(name: &str, haproxy: &Haproxy, opts: &DrillOptions) -> Instance {
    let Member {
        server,
        greeting,
        example,
    } = Member::render(name, haproxy, &opts.server_options, opts.drain_timeout);
    let notify = NotifySocket::bind();
    let (key, value) = notify.env();
    let config = example.config_path.display().to_string();
    let kiln = Kiln::boot_with(
        opts.kiln_bin.to_str().unwrap(),
        &["boot", "--config", &config],
        &[(key, &value)],
    );
    Instance {
        server,
        greeting,
        example,
        kiln,
        notify,
    }
}

/// Polls the notify sockets and HAProxy together: per instance, READY=1 first seen → its server
/// first seen UP.
fn time_ready_to_up(instances: &[Instance], haproxy: &Haproxy) -> Vec<Duration> {
    let mut ready: Vec<Option<Instant>> = vec![None; instances.len()];
    let mut up: Vec<Option<Duration>> = vec![None; instances.len()];
    let deadline = Instant::now() + Duration::from_secs(60);
    while up.iter().any(Option::is_none) {
        for (i, instance) in instances.iter().enumerate() {
            if ready[i].is_none() && instance.notify.lines().iter().any(|l| l == "READY=1") {
                ready[i] = Some(Instant::now());
            }
            let is_up = haproxy.server(&instance.server).is_some_and(|r| r.is_up());
            if let (Some(r), true, None) = (ready[i], is_up, up[i]) {
                up[i] = Some(r.elapsed());
            }
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = instances.iter().map(|i| i.kiln.log()).collect();
            panic!(
                "READY=1 seen: {ready:?}, UP after: {up:?}; kiln logs:\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    up.into_iter().map(Option::unwrap).collect()
}

const USAGE: &str = "usage: kiln-testkit zero-loss --kiln PATH [--workers N] [--pause MS] [--drain-timeout MS] [--warm N] [--options STR]
  Runs the zero-loss drill (two kiln instances of the example behind one HAProxy, steady load,
  SIGTERM to one) and prints requests sent, failed, drain duration and READY=1 -> UP.
  Exits 1 when a request failed or the stopped instance's server was left behind.";

/// Entry point of `kiln-testkit zero-loss ...` (see `bench/zero_loss.sh`).
pub fn main(args: &[String]) -> std::process::ExitCode {
    let mut opts: Option<DrillOptions> = None;
    let mut rest = args.iter();
    let mut pending: Vec<(String, String)> = Vec::new();
    while let Some(flag) = rest.next() {
        let Some(value) = rest.next() else {
            eprintln!("kiln-testkit zero-loss: {flag} needs a value\n{USAGE}");
            return std::process::ExitCode::from(2);
        };
        if flag == "--kiln" {
            opts = Some(DrillOptions::new(value));
        } else {
            pending.push((flag.clone(), value.clone()));
        }
    }
    let Some(mut opts) = opts else {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    };
    for (flag, value) in pending {
        let number = || value.parse::<u64>().map_err(|e| format!("{flag} {value:?}: {e}"));
        let applied = match flag.as_str() {
            "--workers" => number().map(|n| opts.workers = n as usize),
            "--pause" => number().map(|n| opts.pause = Duration::from_millis(n)),
            "--drain-timeout" => number().map(|n| opts.drain_timeout = Duration::from_millis(n)),
            "--warm" => number().map(|n| opts.warm_requests = n as usize),
            "--options" => {
                opts.server_options = value.clone();
                Ok(())
            }
            _ => Err(format!("unknown flag {flag}")),
        };
        if let Err(e) = applied {
            eprintln!("kiln-testkit zero-loss: {e}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    }
    let report = zero_loss(&opts);
    println!("{report}");
    if report.failed == 0 && report.server_gone && report.to_stopped_after_drain == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// The summary in parentheses of kiln's `lb: left TARGET (SUMMARY)` log line.
fn left_summary(log: &str) -> Option<String> {
    let line = log.lines().rev().find(|l| l.contains("lb: left "))?;
    let inner = line.rsplit_once('(')?.1;
    Some(inner.trim_end().trim_end_matches(')').to_string())
}
