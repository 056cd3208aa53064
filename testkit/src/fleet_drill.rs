//! The fleet drill: a fleet of kiln instances (each a host of its own, see [`crate::instance`])
//! behind one real HAProxy under a steady load, replaced, rolled back, tampered with, killed
//! and scaled out while it serves, with `kiln fleet` asked at every step. Run by
//! `tests/fleet_drill.rs` (small setting, asserts on the report) and by `bench/fleet.sh`
//! through `kiln-testkit fleet-drill` (larger setting, prints the report).
//!
//! HAProxy runs in the LAN's hub with `retries 0` and no redispatch, so a request sent to an
//! instance that is going away fails instead of being retried elsewhere: a failure cannot hide.
//! During the hard kill only, two more frontends and backends with the same servers carry a
//! load each, so that one kill shows three settings: `retries 0`; `retries 3` + `option
//! redispatch` (a refused connection goes to another server); and the same with `retry-on
//! conn-failure empty-response` (also the request in flight when the instance died, which a
//! client sees as an empty answer: safe to resend for idempotent requests only).
//!
//! Steps: (1) roll forward: replace each v1 instance by a v2 one (start new, wait UP in HAProxy,
//! SIGTERM an old one, wait until it is gone); (2) roll back to v1 the same way; (3) change a
//! sealed file on one instance (`on_drift = "fail"`): it leaves by itself, and is replaced;
//! (4) SIGKILL one instance whole; (5) add instances under load.

use crate::control::BootStep;
use crate::fleet_look::FleetLook;
use crate::haproxy::{Haproxy, HaproxyConfig};
use crate::instance::{Instance, InstanceSpec};
use crate::load::{Load, Sample};
use crate::netns::Lan;
use crate::wait::{poll_until, wait_until};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The backend kiln joins: `retries 0`, no redispatch.
const BACKEND: &str = "app";
/// The backends of the hard kill's comparison, each behind a frontend of its own, with the
/// same servers as [`BACKEND`]: (backend, its retry settings).
const COMPARED: [(&str, &str); 2] = [
    ("app_redispatch", "retries 3\n    option redispatch"),
    (
        "app_retry_on",
        "retries 3\n    option redispatch\n    retry-on conn-failure empty-response",
    ),
];
/// Longest wait for any one step (a boot, a server UP, a drain).
const STEP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct FleetDrillOptions {
    pub kiln_bin: PathBuf,
    /// Instances in the fleet; the rolls replace each of them.
    pub instances: usize,
    /// Instances added under load at the end.
    pub scale_out: usize,
    /// Load threads (each: request, pause, request...).
    pub workers: usize,
    pub pause: Duration,
    /// HAProxy's health check period, and the failed checks in a row that mark a server DOWN.
    pub check_inter: Duration,
    pub fall: u32,
    /// `[lb] drain_timeout` of every instance.
    pub drain_timeout: Duration,
    /// Successful answers each instance gives before the drill goes on.
    pub warm_requests: usize,
}

impl FleetDrillOptions {
    /// The small setting of the test: two instances, light load.
    pub fn new(kiln_bin: impl Into<PathBuf>) -> FleetDrillOptions {
        FleetDrillOptions {
            kiln_bin: kiln_bin.into(),
            instances: 2,
            scale_out: 2,
            workers: 2,
            pause: Duration::from_millis(10),
            check_inter: Duration::from_millis(500),
            fall: 2,
            drain_timeout: Duration::from_secs(10),
            warm_requests: 20,
        }
    }

    fn server_options(&self) -> String {
        format!(
            "check inter {}ms fall {} rise 1",
            self.check_inter.as_millis(),
            self.fall
        )
    }
}

/// One `kiln fleet` run of the drill and what the drill expected of it.
#[derive(Debug, Clone)]
pub struct Look {
    pub step: String,
    pub expected: String,
    pub got: String,
    pub ok: bool,
    pub wall: Duration,
}

/// A roll from one release to another, one instance at a time.
#[derive(Debug, Clone, Default)]
pub struct Roll {
    pub to: String,
    pub total: Duration,
    /// Per replacement: start of the new instance → the old one gone.
    pub replacements: Vec<Duration>,
    pub window: Window,
    /// The same load just before the roll.
    pub before: Window,
}

/// What the load saw in a stretch of time.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub sent: usize,
    pub failed: usize,
    /// The first failures: status or error, and when.
    pub failures: Vec<String>,
    pub slowest: Duration,
    /// Who answered the slowest request and when it started, e.g. `i-0005 on v2 at +1.620s`.
    pub slowest_was: String,
    pub p99: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Tamper {
    pub instance: String,
    /// The change → the server gone from HAProxy.
    pub left_after: Duration,
    pub window: Window,
}

#[derive(Debug, Clone, Default)]
pub struct HardKill {
    pub instance: String,
    /// `check inter 500ms fall 2 rise 1`: how fast HAProxy can notice.
    pub check: String,
    /// SIGKILL → the server DOWN in HAProxy.
    pub down_after: Duration,
    /// Through the `retries 0` frontend.
    pub no_retries: Window,
    /// Through the `retries 3` + `option redispatch` frontend.
    pub redispatch: Window,
    /// Through the frontend that also retries on an empty response.
    pub retry_on: Window,
}

/// One instance added under load.
#[derive(Debug, Clone, Default)]
pub struct Join {
    pub instance: String,
    /// HAProxy listed it before kiln had sent READY=1 (by kiln's clock, ms).
    pub listed_before_ready: bool,
    /// READY=1 → the first request it served.
    pub ready_to_first_served: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct FleetDrillReport {
    pub instances: usize,
    pub workers: usize,
    pub pause: Duration,
    pub roll_forward: Roll,
    pub roll_back: Roll,
    pub tamper: Tamper,
    pub hard_kill: HardKill,
    pub joins: Vec<Join>,
    pub scale_out: Window,
    pub looks: Vec<Look>,
}

impl FleetDrillReport {
    /// Every expectation the drill did not meet, in words; empty when all held.
    pub fn unmet(&self) -> Vec<String> {
        let mut unmet = Vec::new();
        let mut zero = |what: &str, w: &Window| {
            if w.failed > 0 {
                unmet.push(format!(
                    "{what}: {} of {} requests failed: {:?}",
                    w.failed, w.sent, w.failures
                ));
            }
        };
        zero("roll forward", &self.roll_forward.window);
        zero("roll back", &self.roll_back.window);
        zero("tampered instance", &self.tamper.window);
        zero(
            "hard kill with redispatch and retry-on empty-response",
            &self.hard_kill.retry_on,
        );
        zero("scale out", &self.scale_out);
        for look in self.looks.iter().filter(|l| !l.ok) {
            unmet.push(format!(
                "kiln fleet at {}: expected {}, got {}",
                look.step, look.expected, look.got
            ));
        }
        for join in self.joins.iter().filter(|j| j.listed_before_ready) {
            unmet.push(format!("{} was in HAProxy before READY=1", join.instance));
        }
        unmet
    }
}

/// Runs the drill; panics (with logs) when a step does not happen in time.
pub fn fleet_drill(opts: &FleetDrillOptions) -> FleetDrillReport {
    let mut drill = Drill::start(opts);
    let mut report = FleetDrillReport {
        instances: opts.instances,
        workers: opts.workers,
        pause: opts.pause,
        ..FleetDrillReport::default()
    };
    report.roll_forward = drill.roll("v2");
    report.roll_back = drill.roll("v1");
    report.tamper = drill.tamper();
    report.hard_kill = drill.hard_kill();
    (report.joins, report.scale_out) = drill.scale_out();
    report.looks = std::mem::take(&mut drill.looks);
    report
}

struct Drill<'a> {
    opts: &'a FleetDrillOptions,
    /// The running fleet, oldest first.
    instances: Vec<Instance>,
    load: Option<Load>,
    haproxy: Haproxy,
    lan: Lan,
    /// A copy of the image's kiln.toml, as an operator has it: what `kiln fleet` reads.
    fleet_config: PathBuf,
    looks: Vec<Look>,
    next_id: usize,
    _dir: tempfile::TempDir,
}

impl<'a> Drill<'a> {
    /// HAProxy in a fresh LAN's hub, the v1 fleet UP and warm under load.
    fn start(opts: &'a FleetDrillOptions) -> Drill<'a> {
        let dir = tempfile::Builder::new()
            .prefix("kiln-fleet-drill-")
            .tempdir()
            .unwrap();
        let lan = Lan::create();
        let mut config = HaproxyConfig::new(dir.path());
        config.backend = BACKEND.into();
        for (n, (backend, retries)) in COMPARED.iter().enumerate() {
            let port = config.frontend.port() + 1 + n as u16;
            config
                .extra_sections
                .push(compared_sections(port, backend, retries));
        }
        let haproxy = Haproxy::start_in(config, lan.hub());
        let mut drill = Drill {
            opts,
            instances: Vec::new(),
            load: None,
            haproxy,
            lan,
            fleet_config: dir.path().join("fleet.toml"),
            looks: Vec::new(),
            next_id: 1,
            _dir: dir,
        };
        let fleet = drill.boot_all("v1", opts.instances);
        std::fs::copy(&fleet[0].example.config_path, &drill.fleet_config).expect("copy kiln.toml");
        drill.instances = fleet;
        let url = drill.haproxy.url("/");
        drill.load = Some(Load::start_in(
            Some(&drill.lan.hub().path()),
            &url,
            opts.workers,
            opts.pause,
        ));
        drill.warm(&drill.instances.iter().collect::<Vec<_>>(), drill.load());
        drill.look_inventory("start");
        drill
    }

    fn load(&self) -> &Load {
        self.load.as_ref().expect("the load runs")
    }

    fn spec(&mut self, release: &str) -> InstanceSpec {
        let id = format!("i-{:04}", self.next_id);
        self.next_id += 1;
        let socket = self.haproxy.config.socket.display().to_string();
        let lb = toml::toml! {
            kind = "haproxy"
            backend = BACKEND
            server = "{instance_id}"
            address = "{local_ipv4}:8080"
        };
        let mut lb = lb;
        lb.insert("socket".into(), socket.into());
        lb.insert("options".into(), self.opts.server_options().into());
        lb.insert(
            "drain_timeout".into(),
            format!("{}ms", self.opts.drain_timeout.as_millis()).into(),
        );
        InstanceSpec {
            kiln_bin: self.opts.kiln_bin.clone(),
            id,
            release: release.into(),
            lb,
            pin: None,
        }
    }

    /// Starts `n` instances of `release` at once and waits until HAProxy has each UP.
    fn boot_all(&mut self, release: &str, n: usize) -> Vec<Instance> {
        let fleet: Vec<Instance> = (0..n)
            .map(|_| {
                let spec = self.spec(release);
                Instance::boot(&self.lan, &spec)
            })
            .collect();
        for i in &fleet {
            self.wait_up(BACKEND, i);
        }
        fleet
    }

    fn wait_up(&self, backend: &str, i: &Instance) {
        let up = poll_until(STEP, || {
            self.haproxy
                .server_in(backend, &i.id)
                .filter(|r| r.status == "UP")
        });
        if up.is_none() {
            panic!(
                "{} not UP in {backend} within {STEP:?}; HAProxy: {:?}\nkiln's log:\n{}",
                i.id,
                self.haproxy.server_in(backend, &i.id),
                i.log()
            );
        }
    }

    /// Waits until each of `fleet` has answered `warm_requests` more requests of `load`.
    fn warm(&self, fleet: &[&Instance], load: &Load) {
        let before: Vec<usize> = fleet.iter().map(|i| load.served_by(&i.greeting)).collect();
        for (i, before) in fleet.iter().zip(before) {
            wait_until(&format!("{} to serve", i.id), STEP, || {
                (load.served_by(&i.greeting) >= before + self.opts.warm_requests).then_some(())
            });
        }
    }

    /// SIGTERM, then waits until the server left HAProxy and the instance is gone.
    fn retire(&self, mut old: Instance) {
        old.terminate();
        let gone = poll_until(STEP, || self.haproxy.server(&old.id).is_none().then_some(()));
        assert!(
            gone.is_some(),
            "{} still in HAProxy; kiln's log:\n{}",
            old.id,
            old.log()
        );
        old.wait_gone(STEP);
    }

    /// Replaces every instance, oldest first, by one of `release`, after a stretch of steady
    /// load on the settled fleet to compare with.
    fn roll(&mut self, release: &str) -> Roll {
        let settled = Instant::now();
        self.warm(&self.instances.iter().collect::<Vec<_>>(), self.load());
        let started = Instant::now();
        let mut replacements = Vec::new();
        for _ in 0..self.instances.len() {
            let t0 = Instant::now();
            let new = self.boot_all(release, 1).remove(0);
            self.instances.push(new);
            self.look_inventory(&format!(
                "roll to {release}, {} UP",
                self.instances.last().unwrap().id
            ));
            let old = self.instances.remove(0);
            self.retire(old);
            replacements.push(t0.elapsed());
        }
        let total = started.elapsed();
        self.look_inventory(&format!("roll to {release} done"));
        let samples = self.load().samples();
        Roll {
            to: release.into(),
            total,
            replacements,
            window: window(&samples, started, Instant::now()),
            before: window(&samples, settled, started),
        }
    }

    /// Changes a sealed file on the oldest instance: it must leave by itself; then replaces it.
    fn tamper(&mut self) -> Tamper {
        let started = Instant::now();
        let victim = self.instances.remove(0);
        victim.tamper();
        let left = poll_until(STEP, || self.haproxy.server(&victim.id).is_none().then_some(()));
        assert!(
            left.is_some(),
            "{} did not leave; kiln's log:\n{}",
            victim.id,
            victim.log()
        );
        let left_after = started.elapsed();
        let extra = [victim.health_addr().to_string()];
        self.look_drift("tampered instance", &victim, "failed: seal drift", &extra);
        let release = victim.release.clone();
        let replacement = self.boot_all(&release, 1).remove(0);
        self.instances.push(replacement);
        let mut victim = victim;
        victim.terminate();
        victim.wait_gone(STEP);
        Tamper {
            instance: victim.id.clone(),
            left_after,
            window: window(&self.load().samples(), started, Instant::now()),
        }
    }

    /// SIGKILL to the oldest instance, with a load through each compared frontend too.
    fn hard_kill(&mut self) -> HardKill {
        let started = Instant::now();
        let fleet: Vec<&Instance> = self.instances.iter().collect();
        let loads: Vec<Load> = (0..COMPARED.len())
            .map(|n| {
                fleet.iter().for_each(|i| self.mirror(n, i));
                let url = format!(
                    "http://127.0.0.1:{}/",
                    self.haproxy.config.frontend.port() + 1 + n as u16
                );
                Load::start_in(
                    Some(&self.lan.hub().path()),
                    &url,
                    self.opts.workers,
                    self.opts.pause,
                )
            })
            .collect();
        loads.iter().for_each(|l| self.warm(&fleet, l));
        let mut victim = self.instances.remove(0);
        let killed = Instant::now();
        victim.kill();
        self.look_drift("hard kill", &victim, "but kiln does not answer", &[]);
        let down_after = self.wait_down(&victim.id, killed);
        let survivors: Vec<&Instance> = self.instances.iter().collect();
        loads
            .iter()
            .chain([self.load()])
            .for_each(|l| self.warm(&survivors, l));
        let now = Instant::now();
        let compared: Vec<Window> = loads
            .into_iter()
            .map(|l| window(&l.stop(), started, now))
            .collect();
        let mut compared = compared.into_iter();
        victim.wait_gone(STEP);
        for backend in std::iter::once(BACKEND).chain(COMPARED.map(|(b, _)| b)) {
            self.haproxy
                .cmd(&format!("set server {backend}/{} state maint", victim.id));
            self.haproxy.cmd(&format!("del server {backend}/{}", victim.id));
        }
        HardKill {
            instance: victim.id.clone(),
            check: self.opts.server_options(),
            down_after,
            no_retries: window(&self.load().samples(), started, now),
            redispatch: compared.next().unwrap_or_default(),
            retry_on: compared.next().unwrap_or_default(),
        }
    }

    /// The same server in the `n`th compared backend, UP.
    fn mirror(&self, n: usize, i: &Instance) {
        let backend = COMPARED[n].0;
        let target = format!("{backend}/{}", i.id);
        let add = self.haproxy.cmd(&format!(
            "add server {target} {} {}",
            i.http_addr(),
            self.opts.server_options()
        ));
        assert!(add.contains("New server registered"), "{add}");
        self.haproxy.cmd(&format!("set server {target} state ready"));
        self.haproxy.cmd(&format!("enable health {target}"));
        self.wait_up(backend, i);
    }

    /// Waits until every backend marks `id` DOWN; from `since` to DOWN in the main backend.
    fn wait_down(&self, id: &str, since: Instant) -> Duration {
        let mut down_after = None;
        wait_until(&format!("{id} DOWN in HAProxy"), STEP, || {
            let down = |b: &str| {
                self.haproxy
                    .server_in(b, id)
                    .is_some_and(|r| r.status.starts_with("DOWN"))
            };
            if down_after.is_none() && down(BACKEND) {
                down_after = Some(since.elapsed());
            }
            (down_after.is_some() && COMPARED.iter().all(|(b, _)| down(b))).then_some(())
        });
        down_after.unwrap_or_default()
    }

    /// Adds `scale_out` instances under load, watching HAProxy from their start.
    fn scale_out(&mut self) -> (Vec<Join>, Window) {
        let started = Instant::now();
        let release = self.instances[0].release.clone();
        let fresh: Vec<Instance> = (0..self.opts.scale_out)
            .map(|_| {
                let spec = self.spec(&release);
                Instance::boot(&self.lan, &spec)
            })
            .collect();
        let mut listed: Vec<Option<u64>> = vec![None; fresh.len()];
        wait_until("the new instances UP", STEP, || {
            let mut all_up = true;
            for (i, seen) in fresh.iter().zip(listed.iter_mut()) {
                let row = self.haproxy.server(&i.id);
                if seen.is_none() && row.is_some() {
                    *seen = Some(wall_ms());
                }
                all_up &= row.is_some_and(|r| r.status == "UP");
            }
            all_up.then_some(())
        });
        self.warm(&fresh.iter().collect::<Vec<_>>(), self.load());
        let samples = self.load().samples();
        let joins = fresh
            .iter()
            .zip(listed)
            .map(|(i, seen)| join(i, seen, &samples))
            .collect();
        self.instances.extend(fresh);
        self.look_inventory("scaled out");
        (joins, window(&samples, started, Instant::now()))
    }

    /// `kiln fleet` from the hub, with the image's config and every live instance named.
    fn fleet(&self, extra: &[String]) -> FleetLook {
        let config = self.fleet_config.display().to_string();
        let mut args = vec!["--config".to_string(), config];
        for i in &self.instances {
            args.extend(["--instance".to_string(), i.health_addr().ip().to_string()]);
        }
        for e in extra {
            args.extend(["--instance".to_string(), e.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        FleetLook::run(self.lan.hub(), &self.opts.kiln_bin, &args)
    }

    /// Expects what the drill's own inventory says: one release uniform, two rolling, with
    /// the count of each (by release label and root hash).
    fn look_inventory(&mut self, step: &str) {
        let mut want: BTreeMap<(String, String), usize> = BTreeMap::new();
        for i in &self.instances {
            *want.entry((i.release.clone(), i.root_hash.clone())).or_default() += 1;
        }
        let verdict = if want.len() == 1 { "uniform" } else { "rolling" };
        let look = self.fleet(&[]);
        let got: BTreeMap<(String, String), usize> = look
            .images()
            .into_iter()
            .map(|(release, hash, n)| ((release, hash), n))
            .collect();
        let ok = look.verdict() == verdict && got == want;
        let expected = format!("{verdict} {}", counts(&want));
        let got = format!("{} {}", look.verdict(), counts(&got));
        let got = if ok {
            got
        } else {
            format!("{got}: {}", look.shown())
        };
        self.record(step, expected, got, ok, &look);
    }

    /// Expects drift naming the instance (by id, or by address where kiln does not say its id)
    /// with a problem containing `says`.
    fn look_drift(&mut self, step: &str, who: &Instance, says: &str, extra: &[String]) {
        let look = self.fleet(extra);
        let names = |p: &str| {
            p.contains(&format!("({})", who.id))
                || p.starts_with(&format!("{}:", who.health_addr()))
                || p.starts_with(&format!("{} ", who.http_addr()))
        };
        let named = look.problems().iter().any(|p| names(p) && p.contains(says));
        let ok = look.verdict() == "drift" && look.exit == 1 && named;
        let expected = format!("drift naming {}: {says:?}", who.id);
        let got = format!("{} {:?}", look.verdict(), look.problems());
        self.record(step, expected, got, ok, &look);
    }

    fn record(&mut self, step: &str, expected: String, got: String, ok: bool, look: &FleetLook) {
        self.looks.push(Look {
            step: step.into(),
            expected,
            got,
            ok,
            wall: look.wall,
        });
    }
}

impl Drop for Drill<'_> {
    fn drop(&mut self) {
        // Clients first, then the instances (each takes its PID and network namespace along),
        // then HAProxy and the hub.
        if let Some(load) = self.load.take() {
            drop(load.stop());
        }
        self.instances.clear();
    }
}

/// `v1 0ee5474bb94f: 3, v2 9696d5500e7b: 1`: members per image, by release label and root hash.
fn counts(images: &BTreeMap<(String, String), usize>) -> String {
    let parts: Vec<String> = images
        .iter()
        .map(|((release, hash), n)| format!("{release} {}: {n}", &hash[..hash.len().min(12)]))
        .collect();
    parts.join(", ")
}

/// A frontend on `port` for `backend`, whose retry settings are `retries`.
fn compared_sections(port: u16, backend: &str, retries: &str) -> String {
    format!(
        "frontend fe_{backend}\n    bind 127.0.0.1:{port}\n    default_backend {backend}\n\
         backend {backend}\n    balance roundrobin\n    {retries}\n"
    )
}

/// How one new instance joined: listed in HAProxy only after READY=1, and its first request.
fn join(i: &Instance, listed_ms: Option<u64>, samples: &[Sample]) -> Join {
    let status = i.status().unwrap_or_default();
    let ready_ms = crate::control::timeline_entry(&status, BootStep::Ready)
        .and_then(|e| Some(status["started_at_ms"].as_u64()? + e["start_us"].as_u64()? / 1000));
    let ready_at = i.ready_at().expect("READY=1 before UP");
    let first = samples
        .iter()
        .filter(|s| s.first_line == i.greeting)
        .min_by_key(|s| s.start)
        .expect("the new instance served");
    Join {
        instance: i.id.clone(),
        // kiln stamps READY=1 in whole milliseconds: one of slack for the rounding.
        listed_before_ready: match (listed_ms, ready_ms) {
            (Some(listed), Some(ready)) => listed + 1 < ready,
            _ => true,
        },
        ready_to_first_served: first.start.saturating_duration_since(ready_at),
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The samples that started in `[from, to)`.
fn window(samples: &[Sample], from: Instant, to: Instant) -> Window {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start >= from && s.start < to)
        .collect();
    let mut latencies: Vec<Duration> = inside.iter().map(|s| s.end - s.start).collect();
    latencies.sort();
    let failed: Vec<&&Sample> = inside.iter().filter(|s| !s.ok()).collect();
    let at = |s: &Sample| s.start.saturating_duration_since(from).as_secs_f64();
    let slowest_was = inside
        .iter()
        .max_by_key(|s| s.end - s.start)
        .map(|s| {
            let who = s.first_line.strip_prefix("greeting: ").unwrap_or("(failed)");
            format!("{who} at +{:.3}s", at(s))
        })
        .unwrap_or_default();
    Window {
        slowest_was,
        sent: inside.len(),
        failed: failed.len(),
        failures: failed
            .iter()
            .take(5)
            .map(|s| {
                let what = match &s.result {
                    Ok(code) => format!("HTTP {code}"),
                    Err(e) => e.clone(),
                };
                format!("{what} at +{:.3}s", at(s))
            })
            .collect(),
        slowest: latencies.last().copied().unwrap_or_default(),
        p99: latencies
            .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

type Out<'a, 'b> = &'a mut std::fmt::Formatter<'b>;

impl std::fmt::Display for FleetDrillReport {
    fn fmt(&self, f: Out) -> std::fmt::Result {
        writeln!(
            f,
            "fleet of {} instances, load {} workers, {} pause; HAProxy retries 0, no redispatch",
            self.instances,
            self.workers,
            ms(self.pause)
        )?;
        for roll in [&self.roll_forward, &self.roll_back] {
            roll.show(f)?;
        }
        let t = &self.tamper;
        writeln!(
            f,
            "\ntampered instance {}: left HAProxy {} after the change; requests sent {}, failed {}",
            t.instance,
            secs(t.left_after),
            t.window.sent,
            t.window.failed
        )?;
        self.hard_kill.show(f)?;
        writeln!(
            f,
            "\nscale out: sent {}, failed {}",
            self.scale_out.sent, self.scale_out.failed
        )?;
        for j in &self.joins {
            writeln!(
                f,
                "  {}: in HAProxy only after READY=1: {}; READY=1 -> first request served {}",
                j.instance,
                !j.listed_before_ready,
                ms(j.ready_to_first_served)
            )?;
        }
        show_looks(&self.looks, f)
    }
}

impl Roll {
    fn show(&self, f: Out) -> std::fmt::Result {
        let per: Vec<String> = self.replacements.iter().map(|d| secs(*d)).collect();
        writeln!(
            f,
            "\nroll to {}: {} total, per replacement {}",
            self.to,
            secs(self.total),
            per.join(" ")
        )?;
        writeln!(
            f,
            "  requests sent {}, failed {}",
            self.window.sent, self.window.failed
        )?;
        show_failures(&self.window, f)?;
        writeln!(
            f,
            "  slowest request: {} ({}) during the roll (p99 {}) vs {} before (p99 {}, {} requests)",
            ms(self.window.slowest),
            self.window.slowest_was,
            ms(self.window.p99),
            ms(self.before.slowest),
            ms(self.before.p99),
            self.before.sent
        )
    }
}

impl HardKill {
    fn show(&self, f: Out) -> std::fmt::Result {
        writeln!(
            f,
            "\nhard kill of {} (SIGKILL to its PID 1), HAProxy `{}`",
            self.instance, self.check
        )?;
        writeln!(f, "  DOWN in HAProxy {} after the kill", secs(self.down_after))?;
        for (name, w) in [
            ("retries 0", &self.no_retries),
            ("retries 3 + redispatch", &self.redispatch),
            ("retries 3 + redispatch + retry-on empty-response", &self.retry_on),
        ] {
            writeln!(
                f,
                "  {name}: sent {}, failed {}, slowest {}",
                w.sent,
                w.failed,
                ms(w.slowest)
            )?;
            show_failures(w, f)?;
        }
        Ok(())
    }
}

fn show_failures(w: &Window, f: Out) -> std::fmt::Result {
    w.failures
        .iter()
        .try_for_each(|failure| writeln!(f, "    failure: {failure}"))
}

fn show_looks(looks: &[Look], f: Out) -> std::fmt::Result {
    writeln!(f, "\nkiln fleet")?;
    for l in looks {
        let mark = if l.ok { "ok" } else { "UNEXPECTED" };
        writeln!(f, "  {:<28} {:>8}  {mark}: {}", l.step, ms(l.wall), l.got)?;
    }
    let mut walls: Vec<Duration> = looks.iter().map(|l| l.wall).collect();
    walls.sort();
    if let (Some(first), Some(last)) = (walls.first(), walls.last()) {
        let median = walls[walls.len() / 2];
        writeln!(
            f,
            "  wall time: median {}, min {}, max {}",
            ms(median),
            ms(*first),
            ms(*last)
        )?;
    }
    Ok(())
}

const USAGE: &str =
    "usage: kiln-testkit fleet-drill --kiln PATH [--instances N] [--scale-out N] [--workers N]
       [--pause MS] [--check-inter MS] [--fall N] [--drain-timeout MS] [--warm N]
  Runs the fleet drill (N kiln instances, each in its own network and PID namespace, behind one
  HAProxy under load: roll forward, roll back, tampered instance, hard kill, scale out, with
  kiln fleet at every step) and prints its report. Needs root.
  Exits 1 when an expectation did not hold (a failed request where none may fail, an unexpected
  kiln fleet verdict), 2 on bad arguments.";

/// Entry point of `kiln-testkit fleet-drill ...` (see `bench/fleet.sh`).
pub fn main(args: &[String]) -> std::process::ExitCode {
    let opts = match parse_args(args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("kiln-testkit fleet-drill: {e}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let report = fleet_drill(&opts);
    println!("{report}");
    let unmet = report.unmet();
    for u in &unmet {
        println!("UNMET: {u}");
    }
    if unmet.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn parse_args(args: &[String]) -> Result<FleetDrillOptions, String> {
    let mut pairs = args.chunks(2);
    let mut opts: Option<FleetDrillOptions> = None;
    let mut rest = Vec::new();
    for pair in pairs.by_ref() {
        match pair {
            [flag, value] if flag == "--kiln" => opts = Some(FleetDrillOptions::new(value)),
            [flag, value] => rest.push((flag.clone(), value.clone())),
            [flag] => return Err(format!("{flag} needs a value")),
            _ => {}
        }
    }
    let mut opts = opts.ok_or("--kiln is required")?;
    for (flag, value) in rest {
        let n = value
            .parse::<u64>()
            .map_err(|e| format!("{flag} {value:?}: {e}"))?;
        match flag.as_str() {
            "--instances" if n >= 2 => opts.instances = n as usize,
            "--instances" => {
                return Err("--instances: at least 2 (one is killed while the others serve)".into());
            }
            "--scale-out" => opts.scale_out = n as usize,
            "--workers" if n >= 1 => opts.workers = n as usize,
            "--pause" => opts.pause = Duration::from_millis(n),
            "--check-inter" if n >= 100 => opts.check_inter = Duration::from_millis(n),
            "--fall" if n >= 1 => opts.fall = n as u32,
            "--drain-timeout" if n >= 1 => opts.drain_timeout = Duration::from_millis(n),
            "--warm" if n >= 1 => opts.warm_requests = n as usize,
            _ => return Err(format!("{flag} {value}: unknown flag or value out of range")),
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let opts = parse_args(&args(&["--instances", "4", "--kiln", "/k", "--workers", "6"])).unwrap();
        assert_eq!((opts.instances, opts.workers), (4, 6));
        assert!(parse_args(&args(&["--instances", "4"])).is_err());
        assert!(parse_args(&args(&["--kiln", "/k", "--instances", "1"])).is_err());
        assert!(parse_args(&args(&["--kiln", "/k", "--bogus", "1"])).is_err());
        assert!(parse_args(&args(&["--kiln"])).is_err());
    }
}
