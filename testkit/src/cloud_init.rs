//! Real cloud-init beside kiln: Debian 12's cloud-init 22.4 in a chroot, inside a network
//! namespace whose 169.254.169.254 is the EC2 metadata emulator, as on a first boot on EC2.
//!
//! The root is built once by `testkit/cloud-init-root.sh` (cached under /var/cache/kiln-test)
//! and never written: each [`CloudInit`] lays an overlay on it (its own upper directory), so what
//! cloud-init writes (`/var/lib/cloud`, the default user's `authorized_keys`, its log) is the
//! test's alone and goes with it. Two namespaces joined by a veth pair: `server` holds
//! 169.254.169.254 and 10.77.200.1/24 with the emulator and dnsmasq (from the root, for the DHCP
//! answer `init --local` asks for); `instance` holds `eth0`, without an address until cloud-init
//! asks for one. The chroot sees the instance's network devices and an EC2 hypervisor UUID
//! (cloud-init's Ec2Local runs only on AWS), on a `/sys` of its own. Needs root.

use crate::emulator::metadata::{MetadataEmulator, Options};
use crate::netns::{Netns, ip};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The cached root, built if missing (minutes, once; see the script).
pub fn root() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cloud-init-root.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run testkit/cloud-init-root.sh");
    assert!(
        out.status.success(),
        "testkit/cloud-init-root.sh failed (its log is above)"
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
}

/// cloud-init's configuration for these boots: an image built for EC2 names its datasource; the
/// root has no network renderer (ifupdown, netplan), and the network is not what is tested; it
/// has no `locales` package either, so `cc_locale` (which runs `update-locale`) is turned off.
const CLOUD_CFG: &str = "datasource_list: [ Ec2, None ]\nnetwork: {config: disabled}\nlocale: false\n";

/// What `/sys/hypervisor/uuid` says on an EC2 Xen or Nitro instance: starts with `ec2`.
const EC2_UUID: &str = "ec2e1916-9099-7caf-fd21-012345abcdef";

/// One instance: the namespaces, the emulator, dnsmasq and the overlay's directories.
pub struct CloudInit {
    pub server: Netns,
    pub instance: Netns,
    pub emulator: MetadataEmulator,
    root: PathBuf,
    dir: tempfile::TempDir,
    dnsmasq: Child,
}

impl CloudInit {
    /// Namespaces, the EC2 emulator (with `options`) at 169.254.169.254:80 and dnsmasq.
    pub fn start(options: Options) -> CloudInit {
        let root = root();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let server = Netns::add(&format!("kci-s-{id}"));
        let instance = Netns::add(&format!("kci-i-{id}"));
        let link = format!("kci{}", id.replace('-', ""));
        let link = &link[..link.len().min(15)];
        ip(&[
            "-n",
            server.name(),
            "link",
            "add",
            link,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            instance.name(),
        ]);
        ip(&["-n", server.name(), "addr", "add", "10.77.200.1/24", "dev", link]);
        ip(&[
            "-n",
            server.name(),
            "addr",
            "add",
            "169.254.169.254/16",
            "dev",
            link,
        ]);
        ip(&["-n", server.name(), "link", "set", link, "up"]);
        ip(&["-n", instance.name(), "link", "set", "eth0", "up"]);
        let emulator =
            MetadataEmulator::start_in_netns(&server.path(), "169.254.169.254:80".parse().unwrap(), options)
                .expect("the emulator at 169.254.169.254:80");
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["upper/etc/cloud/cloud.cfg.d", "work", "run"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(
            dir.path().join("upper/etc/cloud/cloud.cfg.d/90_kiln_test.cfg"),
            CLOUD_CFG,
        )
        .unwrap();
        let dnsmasq = dnsmasq(&root, &server, link, dir.path());
        CloudInit {
            server,
            instance,
            emulator,
            root,
            dir,
            dnsmasq,
        }
    }

    /// `cloud-init ARGS` in the chroot, in the instance's namespace.
    pub fn cloud_init(&self, args: &[&str]) -> Output {
        let mut command = self.in_chroot();
        command.arg("cloud-init").args(args);
        command.output().expect("run cloud-init")
    }

    /// `init --local`, `init`, `modules --mode config`, `modules --mode final`: a first boot.
    /// Panics with cloud-init's output when a stage fails.
    pub fn first_boot(&self) {
        for stage in [
            &["init", "--local"][..],
            &["init"],
            &["modules", "--mode", "config"],
            &["modules", "--mode", "final"],
        ] {
            let out = self.cloud_init(stage);
            assert!(
                out.status.success(),
                "cloud-init {}: {}\n{}\nits log:\n{}",
                stage.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
    }

    /// A file as cloud-init left it in the instance (the overlay's upper directory), if written.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.path().join("upper").join(path.trim_start_matches('/'))).ok()
    }

    /// `/var/log/cloud-init.log` and `cloud-init-output.log`.
    pub fn log(&self) -> String {
        let mut log = String::new();
        for path in ["var/log/cloud-init.log", "var/log/cloud-init-output.log"] {
            if let Some(text) = self.file(path) {
                log.push_str(&String::from_utf8_lossy(&text));
            }
        }
        log
    }

    /// Gives the instance the link-local address a booted instance reaches IMDS from (cloud-init's
    /// DHCP lease was ephemeral, and its teardown set `eth0` down): for kiln, after cloud-init.
    pub fn network_up(&self) {
        ip(&["-n", self.instance.name(), "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            self.instance.name(),
            "addr",
            "add",
            "169.254.10.10/16",
            "dev",
            "eth0",
        ]);
    }

    /// A command run in the chroot (overlay, /proc, /dev, a /run kept between stages, a /sys with
    /// the instance's network devices and an EC2 hypervisor UUID), in the instance's namespace.
    fn in_chroot(&self) -> Command {
        let setup = r#"
            lower=$1 dir=$2; shift 2
            root=$dir/root
            mkdir -p "$root"
            mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$root"
            mount -t proc proc "$root/proc"
            mount --rbind /dev "$root/dev"
            mount --bind "$dir/run" "$root/run"
            mount -t tmpfs -o mode=0755 tmpfs "$root/sys"
            mkdir -p "$root/sys/class/net" "$root/sys/devices" "$root/sys/hypervisor"
            mount --rbind /sys/devices "$root/sys/devices"
            mount --bind /sys/class/net "$root/sys/class/net"
            echo "$EC2_UUID" > "$root/sys/hypervisor/uuid"
            exec chroot "$root" env -i LC_ALL=C.UTF-8 HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
        "#;
        // `ip netns exec` mounts the namespace's own /sys (its network devices) in a mount
        // namespace of its own; unshare makes another for the chroot's mounts, gone at exit.
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                self.instance.name(),
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-eu", "-c", setup, "in_chroot"])
            .arg(&self.root)
            .arg(self.dir.path())
            .env("EC2_UUID", EC2_UUID);
        command
    }
}

/// dnsmasq from the root, DHCP only, answering on `link` in the server namespace.
fn dnsmasq(root: &Path, server: &Netns, link: &str, dir: &Path) -> Child {
    let libs = format!(
        "{0}/lib/x86_64-linux-gnu:{0}/usr/lib/x86_64-linux-gnu",
        root.display()
    );
    server
        .command(root.join("lib64/ld-linux-x86-64.so.2"))
        .arg("--library-path")
        .arg(libs)
        .arg(root.join("usr/sbin/dnsmasq"))
        .args([
            "--keep-in-foreground",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--leasefile-ro",
            "--user=root",
            "--bind-interfaces",
            &format!("--interface={link}"),
            "--dhcp-range=10.77.200.10,10.77.200.20,255.255.255.0,1h",
            "--dhcp-option=option:router,10.77.200.1",
        ])
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq")
}

impl Drop for CloudInit {
    fn drop(&mut self) {
        let _ = self.dnsmasq.kill();
        let _ = self.dnsmasq.wait();
    }
}
