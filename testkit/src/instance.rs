//! One instance of a fleet, as a separate host would be: the example app rendered for a host
//! of its own on a [`Lan`], its app directory sealed for a release, and kiln as PID 1 of a PID
//! namespace of its own in the host's network namespace. SIGKILL to that kiln ends the PID
//! namespace and so every process of the instance at once, as a power loss would. The seal
//! carries the release label (`kiln seal --release`); the launch configuration may pin one.
//!
//! Every instance listens alike (nginx on `IP:8080`, kiln's health on `0.0.0.0:9100`) and takes
//! its instance id and address from its nocloud seed, so one `[lb]` table with templates serves
//! them all. Dropping an instance kills what is left of it and deletes its namespace and files.

use crate::example::Example;
use crate::netns::{Host, Lan};
use crate::notify::NotifySocket;
use crate::peers::{Kiln, children, die_with_test};
use crate::wait::{poll_until, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// nginx's port on every instance.
pub const HTTP_PORT: u16 = 8080;
/// kiln's `/readyz` port on every instance.
pub const HEALTH_PORT: u16 = 9100;

/// What to boot.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub kiln_bin: PathBuf,
    /// Instance id (nocloud `instance-id`), also the load balancer's name for it.
    pub id: String,
    /// The release the app directory is sealed as: its label, and written into `app/RELEASE`.
    pub release: String,
    /// The `[lb]` table.
    pub lb: toml::Table,
    /// The release the launch configuration pins (user-data `KILN_EXPECT_RELEASE`), if any.
    pub pin: Option<String>,
}

pub struct Instance {
    /// The `unshare` process holding the PID namespace; its child is kiln, PID 1 inside.
    kiln: Kiln,
    kiln_pid: i32,
    notify: NotifySocket,
    pub example: Example,
    pub id: String,
    pub release: String,
    /// The seal's root hash, as `kiln seal` printed it.
    pub root_hash: String,
    /// The first line of the page it serves: names the instance and its release.
    pub greeting: String,
    pub host: Host,
}

impl Instance {
    /// Renders, seals and starts the instance on a new host of `lan`; returns once kiln runs
    /// (not once it is ready: see [`Instance::wait_ready`]).
    pub fn boot(lan: &Lan, spec: &InstanceSpec) -> Instance {
        Self::boot_on(lan.add_host(), spec)
    }

    /// [`Instance::boot`] on a host added before (whose address the test needed first: an EC2
    /// instance created at that address).
    pub fn boot_on(host: Host, spec: &InstanceSpec) -> Instance {
        let http = SocketAddr::from((host.ip, HTTP_PORT));
        let example = Example::render_at(http, SocketAddr::from((Ipv4Addr::UNSPECIFIED, HEALTH_PORT)));
        let seed = format!(
            "instance-id: {}\nlocal-hostname: {}\nlocal-ipv4: {}\n",
            spec.id, spec.id, host.ip
        );
        std::fs::write(example.seed_dir.join("meta-data"), seed).expect("write meta-data");
        std::fs::write(example.app_dir.join("RELEASE"), format!("{}\n", spec.release))
            .expect("write RELEASE");
        if let Some(pin) = &spec.pin {
            let user_data = example.seed_dir.join("user-data");
            let text = std::fs::read_to_string(&user_data).expect("read user-data");
            std::fs::write(&user_data, format!("{text}KILN_EXPECT_RELEASE={pin}\n"))
                .expect("write user-data");
        }
        let greeting = format!("{} on {}", spec.id, spec.release);
        example.set_service_env("php-fpm", "GREETING", &greeting);
        let manifest = example.dir.path().join("seal");
        let app_dir = example.app_dir.display().to_string();
        example.edit_toml(|t| {
            t.insert("lb".into(), toml::Value::Table(spec.lb.clone()));
            let mut seal = toml::Table::new();
            seal.insert("paths".into(), vec![toml::Value::from(app_dir)].into());
            seal.insert("manifest".into(), manifest.display().to_string().into());
            seal.insert("on_drift".into(), "fail".into());
            t.insert("seal".into(), toml::Value::Table(seal));
        });
        let root_hash = seal(&spec.kiln_bin, &example.config_path, &spec.release);
        let notify = NotifySocket::bind();
        let mut cmd = host.netns.command("unshare");
        // Should the test process die without running its drops (killed by a timeout), unshare
        // dies, and with --kill-child so does kiln and its whole PID namespace.
        die_with_test(&mut cmd);
        cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"])
            .arg(&spec.kiln_bin)
            .arg("boot")
            .arg("--config")
            .arg(&example.config_path)
            .env(notify.env().0, notify.env().1);
        let kiln = Kiln::spawn(cmd);
        let unshare = kiln.pid();
        let kiln_pid = poll_until(Duration::from_secs(10), || {
            children(unshare).into_iter().map(|(pid, _)| pid).next()
        })
        .unwrap_or_else(|| panic!("{}: kiln did not start under unshare:\n{}", spec.id, kiln.log()));
        Instance {
            kiln,
            kiln_pid,
            notify,
            example,
            id: spec.id.clone(),
            release: spec.release.clone(),
            root_hash,
            greeting: format!("greeting: {greeting}"),
            host,
        }
    }

    /// `IP:9100`, where its kiln answers `/readyz`.
    pub fn health_addr(&self) -> SocketAddr {
        SocketAddr::from((self.host.ip, HEALTH_PORT))
    }

    /// `IP:8080`, where the load balancer sends its traffic.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.host.ip, HTTP_PORT))
    }

    /// When `READY=1` reached the notify socket, if it has.
    pub fn ready_at(&self) -> Option<Instant> {
        self.notify
            .timed_lines()
            .into_iter()
            .find(|(_, l)| l == "READY=1")
            .map(|(at, _)| at)
    }

    /// Waits for `READY=1`; panics with kiln's log after `deadline`.
    pub fn wait_ready(&self, deadline: Duration) -> Instant {
        match crate::wait::poll_until(deadline, || self.ready_at()) {
            Some(at) => at,
            None => panic!(
                "{}: no READY=1 within {deadline:?}; kiln's log:\n{}",
                self.id,
                self.kiln.log()
            ),
        }
    }

    /// kiln's `status` snapshot through its control socket, None while it does not answer.
    pub fn status(&self) -> Option<serde_json::Value> {
        crate::control::status(&self.example.socket())
    }

    /// SIGTERM to kiln: drain, leave the load balancer, stop.
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// SIGKILL to kiln, PID 1 of the instance: every process of the instance dies at once.
    /// Returns once kiln is dead (so nothing of it answers any more).
    pub fn kill(&self) {
        self.signal(Signal::SIGKILL);
        let dead = || {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.kiln_pid)).ok();
            let state = stat
                .as_deref()
                .and_then(|s| s.rsplit(") ").next()?.chars().next());
            matches!(state, None | Some('Z' | 'X')).then_some(())
        };
        wait_until(&format!("{}'s kiln dead", self.id), Duration::from_secs(10), dead);
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.kiln_pid), sig)
            .unwrap_or_else(|e| panic!("{}: {sig} to kiln (pid {}): {e}", self.id, self.kiln_pid));
    }

    /// Waits until the instance is gone (its PID namespace ended); its exit status.
    pub fn wait_gone(&mut self, deadline: Duration) -> ExitStatus {
        self.kiln.wait_exit(deadline)
    }

    /// Changes a sealed file behind kiln's back.
    pub fn tamper(&self) {
        let index = self.example.app_dir.join("public/index.php");
        let mut text = std::fs::read_to_string(&index).expect("read index.php");
        text.push_str("// changed on a running instance\n");
        std::fs::write(&index, text).expect("write index.php");
    }

    /// Everything kiln wrote so far.
    pub fn log(&self) -> String {
        self.kiln.log()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // The fast way out: kiln as PID 1 takes its namespace with it; the handle then sweeps.
        if self.kiln.try_exit().is_none() {
            let _ = kill(Pid::from_raw(self.kiln_pid), Signal::SIGKILL);
        }
    }
}

/// `kiln seal --config CONFIG --release RELEASE`; the root hash it printed.
fn seal(kiln_bin: &Path, config: &Path, release: &str) -> String {
    let out = Command::new(kiln_bin)
        .arg("seal")
        .arg("--config")
        .arg(config)
        .args(["--release", release])
        .output()
        .expect("run kiln seal");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kiln seal: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("root "))
        .unwrap_or_else(|| panic!("kiln seal printed no root hash: {stdout}"))
        .trim()
        .to_string()
}
