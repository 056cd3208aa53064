//! Separate hosts on one machine: network namespaces on a private LAN. Needs root.
//!
//! A [`Lan`] is a hub namespace holding a bridge (`10.77.0.1/24`); each [`Host`] is a namespace
//! of its own with one address on that bridge (`10.77.0.N`), joined by a veth pair. Nothing is
//! added to the machine's own namespace and no namespace has a default route: the hosts reach
//! each other and the hub, nothing else. Each LAN has its own hub, so two LANs (two tests at
//! once) use the same addresses without meeting.
//!
//! A process or thread joins a namespace with [`Netns::command`] (setns before exec) or
//! [`Netns::enter`] (the calling thread only). Dropping a namespace deletes it; namespaces left by
//! a test process that was killed are deleted by the next [`Lan::create`] (their names carry the
//! pid of the process that made them).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

/// Names of namespaces made here start with this, then the pid of the test process.
const PREFIX: &str = "ktlan-";
/// The LAN's /24; the hub is .1, hosts from .10.
const SUBNET: [u8; 3] = [10, 77, 0];
const FIRST_HOST: u8 = 10;

/// Runs `ip ARGS`; panics with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// One named network namespace (`/run/netns/NAME`), deleted on drop.
pub struct Netns {
    name: String,
    /// Held open: the namespace's handle for setns.
    file: File,
}

impl Netns {
    /// `ip netns add NAME`, with its loopback up.
    pub fn add(name: &str) -> Netns {
        assert!(nix::unistd::geteuid().is_root(), "network namespaces need root");
        ip(&["netns", "add", name]);
        let file = File::open(Path::new("/run/netns").join(name))
            .unwrap_or_else(|e| panic!("open /run/netns/{name}: {e}"));
        let ns = Netns {
            name: name.to_string(),
            file,
        };
        ip(&["-n", name, "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Moves the calling thread into this namespace (other threads stay where they are).
    pub fn enter(&self) -> std::io::Result<()> {
        enter_fd(&self.file)
    }

    /// `program`, to be started inside this namespace. Keep `self` alive until it is spawned.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.file.as_raw_fd();
        // SAFETY: between fork and exec, only the setns system call runs (async-signal-safe).
        unsafe {
            cmd.pre_exec(move || match libc::setns(fd, libc::CLONE_NEWNET) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
        cmd
    }
}

/// `program`, to be started inside the network namespace at `path` (`/run/netns/NAME`).
pub fn command_at(path: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let ns = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut cmd = Command::new(program);
    // SAFETY: between fork and exec, only the setns system call runs (async-signal-safe); the
    // closure owns the namespace's file, so its fd lives as long as the command.
    unsafe {
        cmd.pre_exec(move || match libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    cmd
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth pair, and so the other end.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A private LAN: a hub namespace with a bridge, and hosts added on demand.
pub struct Lan {
    hub: Netns,
    id: String,
    next_host: AtomicU8,
}

impl Lan {
    /// A new hub (`10.77.0.1/24` on bridge `br0`), after deleting the namespaces of test
    /// processes that are gone.
    pub fn create() -> Lan {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        sweep_stale();
        let id = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let hub = Netns::add(&format!("{id}-hub"));
        let hub_ip = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 1);
        // A bridge takes the lowest MAC address of its ports unless it has one of its own: each
        // host joining or leaving would change it, and packets the hosts still send to the old
        // one would be dropped (a 200 ms TCP retransmission on a request in flight).
        let mac = "02:00:0a:4d:00:01";
        ip(&[
            "-n",
            hub.name(),
            "link",
            "add",
            "br0",
            "address",
            mac,
            "type",
            "bridge",
        ]);
        ip(&[
            "-n",
            hub.name(),
            "addr",
            "add",
            &format!("{hub_ip}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", hub.name(), "link", "set", "br0", "up"]);
        Lan {
            hub,
            id,
            next_host: AtomicU8::new(FIRST_HOST),
        }
    }

    /// The hub: where the load balancer and the clients run.
    pub fn hub(&self) -> &Netns {
        &self.hub
    }

    /// The hub's address on the LAN.
    pub fn hub_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 1)
    }

    /// A new host with the next free address, reachable from the hub and the other hosts.
    pub fn add_host(&self) -> Host {
        let n = self.next_host.fetch_add(1, Ordering::Relaxed);
        assert!(n < 250, "a LAN holds 240 hosts");
        let netns = Netns::add(&format!("{}-h{n}", self.id));
        let ip_addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], n);
        let hub_end = format!("h{n}");
        let hub = self.hub.name();
        ip(&[
            "-n",
            hub,
            "link",
            "add",
            &hub_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns.name(),
        ]);
        ip(&["-n", hub, "link", "set", &hub_end, "master", "br0", "up"]);
        ip(&[
            "-n",
            netns.name(),
            "addr",
            "add",
            &format!("{ip_addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", netns.name(), "link", "set", "eth0", "up"]);
        Host { netns, ip: ip_addr }
    }
}

/// One host on a [`Lan`]: a namespace with one address.
pub struct Host {
    pub netns: Netns,
    pub ip: Ipv4Addr,
}

/// Moves the calling thread into the network namespace at `path` (`/run/netns/NAME`).
pub fn enter_path(path: &Path) -> std::io::Result<()> {
    enter_fd(&File::open(path)?)
}

fn enter_fd(ns: &File) -> std::io::Result<()> {
    // SAFETY: setns on an open namespace fd; it changes the calling thread only.
    match unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Deletes `ktlan-PID-...` namespaces whose process is gone (a test killed before its drops ran).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}
