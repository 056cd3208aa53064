//! The lifecycle drill: the zero-loss drill's setup (two kiln instances of the example behind one
//! real HAProxy with `retries 0`, a steady load through it), each instance with a metadata
//! emulator of its own and `[lifecycle]`; then the platform announces that one instance goes
//! away (an EC2 spot interruption, an Azure `Preempt`, a GCE preemption) and kiln must leave by
//! itself: no failed request, its queue workers' jobs finished, out of the backend, services
//! stopped, the platform answered (Azure's event acknowledged after the stop).
//!
//! Used by `tests/lifecycle_drill.rs` (which asserts on the [`LifecycleReport`]) and by
//! `bench/lifecycle.sh` through `kiln-testkit lifecycle-bench` (which times it, several runs per
//! cloud, and counts the metadata requests of an idle kiln).

use crate::control::LeaveStep;
use crate::emulator::metadata::{Cloud, Instance, MetadataEmulator, Options};
use crate::example::Example;
use crate::haproxy::{Haproxy, HaproxyConfig};
use crate::load::{Load, Sample};
use crate::member::{Member, goes_on_serving, warm_up};
use crate::peers::Kiln;
use crate::wait::wait_until;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct LifecycleDrillOptions {
    pub kiln_bin: PathBuf,
    pub cloud: Cloud,
    /// `[lifecycle] poll_interval` (EC2 and Azure; GCE long-polls).
    pub poll_interval: Duration,
    pub workers: usize,
    pub pause: Duration,
    pub server_options: String,
    pub drain_timeout: Duration,
    pub warm_requests: usize,
    /// How long each queue-worker job takes (`WORKER_JOB_SECONDS`): a job is in hand when the
    /// notice comes.
    pub worker_job: Duration,
    /// Announce at a random moment of kiln's poll period (the benchmark: a poll-driven figure
    /// is then a fair sample, not the same phase every run).
    pub random_phase: bool,
}

impl LifecycleDrillOptions {
    pub fn new(kiln_bin: impl Into<PathBuf>, cloud: Cloud) -> LifecycleDrillOptions {
        LifecycleDrillOptions {
            kiln_bin: kiln_bin.into(),
            cloud,
            poll_interval: Duration::from_secs(5),
            workers: 4,
            pause: Duration::from_millis(5),
            server_options: "check inter 1s".into(),
            drain_timeout: Duration::from_secs(10),
            warm_requests: 50,
            worker_job: Duration::from_secs(1),
            random_phase: false,
        }
    }
}

#[derive(Debug)]
pub struct LifecycleReport {
    pub cloud: Cloud,
    pub sent: usize,
    pub failed: usize,
    pub failures: Vec<String>,
    /// From the notice appearing in the metadata service to the leaving server gone from the
    /// backend, as seen from outside (HAProxy's runtime API, polled every 2 ms).
    pub notice_to_out: Duration,
    /// From the notice appearing to kiln reporting every service stopped.
    pub notice_to_stopped: Duration,
    /// kiln's own figures, from the moment it saw the notice.
    pub kiln_out: Option<Duration>,
    pub kiln_stopped: Option<Duration>,
    /// Queue-worker jobs started and finished by the leaving instance.
    pub jobs_started: usize,
    pub jobs_finished: usize,
    /// Each worker stopped with exit 0 (none killed).
    pub workers_clean: bool,
    /// Azure: the event ids acknowledged, and whether that came after the services stopped.
    pub acknowledged: Vec<String>,
    pub acknowledged_after_stop: bool,
    pub served_by_leaving: usize,
    pub served_by_survivor: usize,
    /// Requests answered by the leaving instance that started after it was out of the backend.
    pub to_leaving_after_out: usize,
    pub server_gone: bool,
    pub survivor_up: bool,
    /// The leaving kiln still runs, waiting for the power-off.
    pub waiting_for_power_off: bool,
}

impl std::fmt::Display for LifecycleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let kiln = |d: Option<Duration>| d.map_or("-".to_string(), ms);
        writeln!(f, "cloud:                        {}", self.cloud.name())?;
        writeln!(f, "requests sent / failed:       {} / {}", self.sent, self.failed)?;
        for failure in &self.failures {
            writeln!(f, "  failure: {failure}")?;
        }
        writeln!(
            f,
            "served by leaving / survivor: {} / {}",
            self.served_by_leaving, self.served_by_survivor
        )?;
        writeln!(
            f,
            "notice -> out of the LB:      {} (kiln's own, from seeing it: {})",
            ms(self.notice_to_out),
            kiln(self.kiln_out)
        )?;
        writeln!(
            f,
            "notice -> all stopped:        {} (kiln's own: {})",
            ms(self.notice_to_stopped),
            kiln(self.kiln_stopped)
        )?;
        writeln!(
            f,
            "worker jobs started/finished: {}/{}, workers exit 0: {}",
            self.jobs_started, self.jobs_finished, self.workers_clean
        )?;
        if self.cloud == Cloud::Azure {
            writeln!(
                f,
                "acknowledged: {:?} (after the stop: {})",
                self.acknowledged, self.acknowledged_after_stop
            )?;
        }
        write!(
            f,
            "server gone: {}, survivor UP: {}, waiting for the power-off: {}",
            self.server_gone, self.survivor_up, self.waiting_for_power_off
        )
    }
}

impl LifecycleReport {
    /// What the drill must show: no failure, jobs finished, out, answered, still explaining.
    pub fn passed(&self) -> bool {
        self.failed == 0
            && self.jobs_started == self.jobs_finished
            && self.workers_clean
            && self.server_gone
            && self.survivor_up
            && self.to_leaving_after_out == 0
            && self.waiting_for_power_off
            && (self.cloud != Cloud::Azure || (self.acknowledged.len() == 1 && self.acknowledged_after_stop))
    }
}

struct DrillInstance {
    server: String,
    greeting: String,
    emulator: MetadataEmulator,
    example: Example,
    kiln: Kiln,
}

/// Runs the drill once; panics (with logs) when a step does not happen in time.
pub fn drill(opts: &LifecycleDrillOptions) -> LifecycleReport {
    let dir = tempfile::Builder::new()
        .prefix("kiln-lifecycle-")
        .tempdir()
        .unwrap();
    let haproxy = Haproxy::start(HaproxyConfig::new(dir.path()));
    let instances: Vec<DrillInstance> = ["a", "b"]
        .into_iter()
        .map(|name| boot_instance(name, &haproxy, opts))
        .collect();
    for i in &instances {
        haproxy.wait_server(
            &format!("{} UP", i.server),
            &i.server,
            Duration::from_secs(60),
            |row| row.is_some_and(|r| r.is_up()),
        );
    }
    let load = Load::start(&haproxy.url("/"), opts.workers, opts.pause);
    let members = instances.iter().map(|i| (i.server.as_str(), i.greeting.as_str()));
    warm_up(&load, members, opts.warm_requests);
    let (leaving, survivor) = (&instances[0], &instances[1]);
    if opts.random_phase {
        // The drill's input, drawn at random: where in the poll period the notice lands.
        std::thread::sleep(opts.poll_interval.mul_f64(random_fraction()));
    }
    let noticed = Instant::now();
    announce(leaving, opts.cloud);
    let timeout = opts.drain_timeout + opts.poll_interval + Duration::from_secs(60);
    let (mut out, mut stopped) = (None, None);
    wait_until(
        "the leaving instance out of the backend and stopped",
        timeout,
        || {
            if out.is_none() && haproxy.server(&leaving.server).is_none() {
                out = Some(noticed.elapsed());
            }
            if stopped.is_none() && all_stopped(&leaving.example) {
                stopped = Some(noticed.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
            (out.is_some() && stopped.is_some()).then_some(())
        },
    );
    let (notice_to_out, notice_to_stopped) = (out.unwrap(), stopped.unwrap());
    let acknowledged = match opts.cloud {
        Cloud::Azure => wait_until("the event acknowledged", Duration::from_secs(30), || {
            let acks = leaving.emulator.notices_now().acknowledged;
            (!acks.is_empty()).then_some(acks)
        }),
        _ => Vec::new(),
    };
    goes_on_serving(&load, &survivor.greeting, opts.warm_requests);
    let samples = load.stop();
    let timing = Timing {
        noticed,
        notice_to_out,
        notice_to_stopped,
    };
    report(opts.cloud, &instances, &haproxy, &samples, timing, acknowledged)
}

/// When the notice came, and what was seen from outside.
struct Timing {
    noticed: Instant,
    notice_to_out: Duration,
    notice_to_stopped: Duration,
}

/// What the run showed: the load's samples, kiln's status and log, HAProxy's backend.
fn report(
    cloud: Cloud,
    instances: &[DrillInstance],
    haproxy: &Haproxy,
    samples: &[Sample],
    timing: Timing,
    acknowledged: Vec<String>,
) -> LifecycleReport {
    let (leaving, survivor) = (&instances[0], &instances[1]);
    let out_at = timing.noticed + timing.notice_to_out;
    let status = crate::control::status(&leaving.example.socket()).unwrap_or(serde_json::Value::Null);
    let steps = &status["lifecycle"]["leave"]["steps"];
    let step_index = |name: &str| {
        steps.as_array().and_then(|s| {
            s.iter()
                .position(|x| x["step"].as_str().is_some_and(|t| t.starts_with(name)))
        })
    };
    let acknowledged_after_stop = matches!(
        (step_index(LeaveStep::AllServicesStopped.words()), step_index("event ")),
        (Some(stop), Some(ack)) if stop < ack
    );
    let log = leaving.kiln.log();
    let served = |greeting: &str| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| s.ok() && s.first_line == greeting)
            .collect()
    };
    let failures: Vec<&Sample> = samples.iter().filter(|s| !s.ok()).collect();
    LifecycleReport {
        cloud,
        sent: samples.len(),
        failed: failures.len(),
        failures: failures
            .iter()
            .take(10)
            .map(|s| match &s.result {
                Ok(code) => format!(
                    "HTTP {code} at +{:.3}s",
                    s.start.saturating_duration_since(timing.noticed).as_secs_f64()
                ),
                Err(e) => e.clone(),
            })
            .collect(),
        notice_to_out: timing.notice_to_out,
        notice_to_stopped: timing.notice_to_stopped,
        kiln_out: kiln_step(&status, LeaveStep::OutOfTheLoadBalancer),
        kiln_stopped: kiln_step(&status, LeaveStep::AllServicesStopped),
        jobs_started: log.matches(": started job ").count(),
        jobs_finished: log.matches(": finished job ").count(),
        workers_clean: log.contains("worker#1: stopped (exit 0)")
            && log.contains("worker#2: stopped (exit 0)")
            && !log.contains("SIGKILL"),
        acknowledged,
        acknowledged_after_stop,
        served_by_leaving: served(&leaving.greeting).len(),
        served_by_survivor: served(&survivor.greeting).len(),
        to_leaving_after_out: served(&leaving.greeting)
            .iter()
            .filter(|s| s.start > out_at)
            .count(),
        server_gone: haproxy.server(&leaving.server).is_none(),
        survivor_up: haproxy.server(&survivor.server).is_some_and(|r| r.is_up()),
        waiting_for_power_off: status["phase"] == "stopped"
            && status["reason"]
                .as_str()
                .is_some_and(|r| r.ends_with("waiting for the power-off")),
    }
}

/// The platform announces that `instance` goes away.
fn announce(instance: &DrillInstance, cloud: Cloud) {
    let soon = SystemTime::now() + Duration::from_secs(120);
    match cloud {
        Cloud::Ec2 => instance
            .emulator
            .notices(|n| n.spot_interruption("terminate", soon)),
        Cloud::Gce => instance.emulator.notices(|n| n.preempted = true),
        Cloud::Azure => {
            let vm = Instance::example(Cloud::Azure).hostname;
            instance
                .emulator
                .notices(|n| n.azure_event("Preempt", &[&vm], SystemTime::now() + Duration::from_secs(30)));
        }
        other => panic!("no lifecycle notices on {other:?}"),
    }
}

/// A uniform draw from [0, 1).
fn random_fraction() -> f64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// kiln says every service is stopped after its leave.
fn all_stopped(example: &Example) -> bool {
    crate::control::status(&example.socket())
        .is_some_and(|s| crate::control::leave_step(&s, LeaveStep::AllServicesStopped).is_some())
}

/// kiln's own time from its notice to `step`.
fn kiln_step(status: &serde_json::Value, step: LeaveStep) -> Option<Duration> {
    let noticed = status["lifecycle"]["leave"]["noticed_ms"].as_u64()?;
    let at = crate::control::leave_step(status, step)?["at_ms"].as_u64()?;
    Some(Duration::from_millis(at.saturating_sub(noticed)))
}

fn boot_instance(name: &str, haproxy: &Haproxy, opts: &LifecycleDrillOptions) -> DrillInstance {
    let emulator = MetadataEmulator::start(Options::new(opts.cloud));
    let Member {
        server,
        greeting,
        example,
    } = Member::render(name, haproxy, &opts.server_options, opts.drain_timeout);
    example.set_service_env(
        "worker",
        "WORKER_JOB_SECONDS",
        &format!("{}", opts.worker_job.as_secs_f64()),
    );
    example.set_service_env("worker", "WORKER_INTERVAL", "0.05");
    let (cloud, url) = (opts.cloud.name(), emulator.url());
    example.edit_toml(|t| {
        let mut metadata = toml::Table::new();
        metadata.insert("provider".into(), cloud.into());
        metadata.insert("endpoint".into(), url.into());
        t.insert("metadata".into(), metadata.into());
        let mut lifecycle = toml::Table::new();
        lifecycle.insert(
            "poll_interval".into(),
            format!("{}ms", opts.poll_interval.as_millis()).into(),
        );
        t.insert("lifecycle".into(), lifecycle.into());
    });
    let config = example.config_path.display().to_string();
    let kiln = Kiln::boot_with(
        opts.kiln_bin.to_str().unwrap(),
        &["boot", "--config", &config],
        &[],
    );
    DrillInstance {
        server,
        greeting,
        emulator,
        example,
        kiln,
    }
}

/// An idle kiln with `[lifecycle]` on `cloud`: how many requests it sends the metadata service
/// in `window`, counted from when it is ready (the boot's own fetch excluded), and its resident
/// memory at the end (KiB).
pub fn idle_requests(
    kiln_bin: &str,
    cloud: Cloud,
    poll_interval: Duration,
    window: Duration,
) -> (usize, u64) {
    let emulator = MetadataEmulator::start(Options::new(cloud));
    let example = Example::render();
    let url = emulator.url();
    example.edit_toml(|t| {
        let mut metadata = toml::Table::new();
        metadata.insert("provider".into(), cloud.name().into());
        metadata.insert("endpoint".into(), url.into());
        t.insert("metadata".into(), metadata.into());
        let mut lifecycle = toml::Table::new();
        lifecycle.insert(
            "poll_interval".into(),
            format!("{}ms", poll_interval.as_millis()).into(),
        );
        t.insert("lifecycle".into(), lifecycle.into());
    });
    let (kiln, _notify) = example.boot_ready(kiln_bin);
    // The watch starts right after the metadata: let its first look pass, then count.
    wait_until("the first look at the notices", Duration::from_secs(30), || {
        crate::control::status(&example.socket())
            .filter(|s| s["lifecycle"]["source"].is_string())
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(1));
    let before = emulator.log().len();
    std::thread::sleep(window);
    let requests = emulator.log().len() - before;
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", kiln.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    (requests, rss_kib)
}

const USAGE: &str = "usage: kiln-testkit lifecycle-bench --kiln PATH [--runs N] [--poll-interval MS] [--idle-seconds N] [--clouds ec2,azure,gce]
  Runs the lifecycle drill N times per cloud (two instances behind one HAProxy under load, the
  platform announces one goes away) and prints, per cloud, median and max from the notice
  appearing to the instance out of the load balancer and to all services stopped, and the
  metadata requests a minute of an idle kiln. Exits 1 when a run failed a request.";

/// Entry point of `kiln-testkit lifecycle-bench ...` (see `bench/lifecycle.sh`).
pub fn main(args: &[String]) -> std::process::ExitCode {
    match run(args) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kiln-testkit lifecycle-bench: {e}\n{USAGE}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<bool, String> {
    let mut kiln = None;
    let (mut runs, mut poll_ms, mut idle_seconds) = (5u64, 5000u64, 60u64);
    let mut clouds = vec![Cloud::Ec2, Cloud::Azure, Cloud::Gce];
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag} {value:?}: {e}"));
        match flag.as_str() {
            "--kiln" => kiln = Some(value.clone()),
            "--runs" => runs = number()?.max(1),
            "--poll-interval" => poll_ms = number()?,
            "--idle-seconds" => idle_seconds = number()?,
            "--clouds" => {
                clouds = value
                    .split(',')
                    .map(|c| Cloud::parse(c).ok_or(format!("unknown cloud {c:?}")))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let kiln = kiln.ok_or("--kiln is required")?;
    let poll = Duration::from_millis(poll_ms);
    let mut all_passed = true;
    println!(
        "lifecycle drill: {runs} runs per cloud, poll_interval {} (EC2, Azure; GCE long-polls)",
        humantime::format_duration(poll)
    );
    for cloud in clouds {
        let mut opts = LifecycleDrillOptions::new(&kiln, cloud);
        opts.poll_interval = poll;
        opts.random_phase = true;
        let (mut out, mut stopped, mut sent, mut failed) = (Vec::new(), Vec::new(), 0, 0);
        for _ in 0..runs {
            let report = drill(&opts);
            all_passed &= report.passed();
            if !report.passed() {
                eprintln!("{report}");
            }
            out.push(report.notice_to_out);
            stopped.push(report.notice_to_stopped);
            sent += report.sent;
            failed += report.failed;
        }
        let (idle, rss_kib) = idle_requests(&kiln, cloud, poll, Duration::from_secs(idle_seconds));
        println!(
            "{:<6} notice -> out of LB: median {}, max {}; notice -> all stopped: median {}, max {}; {sent} requests, {failed} failed; idle: {:.1} metadata requests/min, kiln RSS {:.1} MiB",
            cloud.name(),
            ms(median(&out)),
            ms(max(&out)),
            ms(median(&stopped)),
            ms(max(&stopped)),
            idle as f64 * 60.0 / idle_seconds as f64,
            rss_kib as f64 / 1024.0,
        );
    }
    Ok(all_passed)
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn max(values: &[Duration]) -> Duration {
    values.iter().copied().max().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
