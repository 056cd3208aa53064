//! Every unit in a cgroup of its own: a service that double-forks and calls `setsid()` cannot
//! outlive a restart or a stop, a `kill -9` of kiln leaves nothing a new kiln would run beside,
//! status shows each unit's CPU (and memory where the controller is), limits kiln cannot apply
//! are refused, and without a cgroup kiln falls back to process groups and says so.
//!
//! These run on the CI layout: the test process at the root of cgroup2 mounted without
//! controllers at `/sys/fs/cgroup/unified` (hybrid). The unified layout with controllers, and
//! limits applied, are checked in the VM (`packaging/image/e2e.sh`).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::cgroups;
use testkit::control;
use testkit::example::{BOOT_DEADLINE, Example};
use testkit::peers::{Kiln, tagged_processes, wait_no_tagged_processes};
use testkit::wait::wait_until;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const DEADLINE: Duration = Duration::from_secs(30);

/// Host pids of live (not zombie) processes whose command line is exactly `argv`.
fn running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|pid| alive(*pid))
        .collect()
}

/// The process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(") ").next()?.chars().next())
        .is_some_and(|state| !matches!(state, 'Z' | 'X'))
}

/// A daemon's argv unique to this test process (`sleep 7001.<pid>`): what the service leaves
/// running after it double-forks and calls `setsid()`.
fn daemon_argv(n: u32) -> [String; 2] {
    ["sleep".into(), format!("{n}.{}", std::process::id())]
}

fn daemons(n: u32) -> Vec<i32> {
    let argv = daemon_argv(n);
    running(&[argv[0].as_str(), argv[1].as_str()])
}

/// A service whose main process starts a daemon that leaves its process group: a subshell
/// backgrounds `setsid sleep …` and exits, so the sleep is re-parented and in a session of its
/// own, as a daemonising script or PHP's `exec('… &')` does.
fn forker(n: u32, extra: &str) -> String {
    let [_, secs] = daemon_argv(n);
    format!(
        "[[service]]\nname = \"forker\"\ncommand = [\"sh\", \"-c\", \"{extra}(setsid sleep {secs} &); exec sleep 1000\"]\nrestart_delay = \"100ms\"\nready_after = \"100ms\"\n"
    )
}

/// The example's config with its services replaced by `services` (kiln, health, the nocloud
/// seed stay).
fn with_services(services: &str) -> Example {
    let ex = Example::render();
    ex.edit_toml(|t| {
        t.remove("service");
    });
    ex.edit_config(|c| format!("{c}\n{services}"));
    ex
}

fn unit_cgroup(status: &serde_json::Value, unit: &str) -> PathBuf {
    PathBuf::from(
        control::unit(status, unit)["cgroup"]
            .as_str()
            .unwrap_or_else(|| panic!("{unit} has no cgroup: {status}")),
    )
}

fn procs_of(cgroup: &Path) -> Vec<i32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

#[test]
fn sigkill_of_the_leader_three_times_leaves_exactly_one_daemon() {
    let ex = with_services(&forker(7001, ""));
    let (kiln, _notify) = ex.boot_ready(KILN);
    let socket = ex.socket();
    let mut daemon = wait_until("the daemon", DEADLINE, || daemons(7001).first().copied());
    let status = control::status(&socket).unwrap();
    let cgroup = unit_cgroup(&status, "forker");
    assert!(
        procs_of(&cgroup).contains(&daemon),
        "the daemon left the unit's cgroup"
    );
    for round in 1..=3 {
        let leader = control::unit_pid(&socket, "forker").unwrap();
        kill(Pid::from_raw(leader), Signal::SIGKILL).unwrap();
        let new_leader = wait_until("the restarted leader", DEADLINE, || {
            let status = control::status(&socket)?;
            let unit = control::unit(&status, "forker");
            let pid = unit["pid"].as_i64()? as i32;
            (pid != leader && unit["restarts"] == round).then_some(pid)
        });
        // kiln starts the unit again only once its cgroup is empty: the old daemon is gone
        // before the new leader exists, not some time later.
        assert!(
            !alive(daemon),
            "round {round}: the daemon {daemon} outlived its leader {leader}; the new leader {new_leader} runs beside it"
        );
        daemon = wait_until("the new leader's daemon", DEADLINE, || {
            daemons(7001).into_iter().find(|d| *d != daemon)
        });
        assert_eq!(daemons(7001), [daemon], "round {round}: copies of the daemon");
    }
    kiln.wait_log_count("forker: exited (killed by SIGKILL)", 3, DEADLINE);
}

#[test]
fn a_liveness_kill_takes_the_daemon_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("unhealthy");
    let flag_text = flag.to_str().unwrap();
    // The liveness probe fails while the flag exists; a new run removes it.
    let service = forker(7002, &format!("rm -f {flag_text}; "))
        + &format!(
            "[service.live]\nexec = [\"test\", \"!\", \"-e\", \"{flag_text}\"]\nperiod = \"100ms\"\nfailure_threshold = 1\n"
        );
    let ex = with_services(&service);
    let (kiln, _notify) = ex.boot_ready(KILN);
    let socket = ex.socket();
    let daemon = wait_until("the daemon", DEADLINE, || daemons(7002).first().copied());
    let leader = control::unit_pid(&socket, "forker").unwrap();

    std::fs::write(&flag, "").unwrap();
    kiln.wait_log("forker: liveness probe failed", DEADLINE);
    wait_until("the unit restarted after the liveness kill", DEADLINE, || {
        let status = control::status(&socket)?;
        let pid = control::unit(&status, "forker")["pid"].as_i64()? as i32;
        (pid != leader).then_some(())
    });
    assert!(!alive(daemon), "the daemon {daemon} outlived the liveness kill");
    let new = wait_until("the new run's daemon", DEADLINE, || {
        daemons(7002).into_iter().find(|d| *d != daemon)
    });
    assert_eq!(daemons(7002), [new]);
}

#[test]
fn a_stop_leaves_no_daemon_and_no_cgroup() {
    let ex = with_services(&forker(7003, ""));
    let (mut kiln, _notify) = ex.boot_ready(KILN);
    let daemon = wait_until("the daemon", DEADLINE, || daemons(7003).first().copied());
    let tree = cgroups::kiln_dir(&ex.state_dir()).unwrap();
    assert!(
        tree.join("services/forker").is_dir(),
        "{} has no unit cgroup",
        tree.display()
    );

    kiln.signal(Signal::SIGTERM);
    let exit = kiln.wait_exit(DEADLINE);
    assert_eq!(exit.code(), Some(0), "{}", kiln.log());
    // Checked at once: kiln exits only after every unit's cgroup is empty.
    assert!(!alive(daemon), "the daemon {daemon} outlived kiln's stop");
    assert!(!tree.exists(), "kiln left its cgroups behind: {}", tree.display());
    assert_eq!(daemons(7003), Vec::<i32>::new());
}

/// The `kill -9` of kiln: its services run on under the test (kiln's parent, a subreaper), as
/// they would under PID 1. A new kiln with the same config kills them before it starts
/// anything, and becomes ready against its own php-fpm.
#[test]
fn a_new_kiln_clears_what_a_killed_kiln_left_and_runs_one_set_of_services() {
    let ex = Example::render();
    let (mut first, _notify) = ex.boot_ready(KILN);
    let old: Vec<(i32, String)> = first
        .processes()
        .into_iter()
        .filter(|(pid, _)| *pid != first.pid())
        .collect();
    let old_master = control::unit_pid(&ex.socket(), "php-fpm").unwrap();
    first.signal(Signal::SIGKILL);
    first.wait_exit(DEADLINE);
    assert!(
        alive(old_master),
        "the orphaned php-fpm this test is about is not there"
    );

    let (second, _notify) = ex.boot_ready(KILN);
    for (pid, comm) in &old {
        assert!(!alive(*pid), "{comm} ({pid}) of the killed kiln still runs");
    }
    let cleared = second.line_of("cgroup php-fpm: killed 3 processes an earlier kiln left");
    assert!(
        cleared < second.line_of("php-fpm: started"),
        "the leftovers were cleared after php-fpm started:\n{}",
        second.log()
    );
    for unit in ["php-fpm", "nginx", "worker#1", "worker#2"] {
        second.line_of(&format!("cgroup {unit}: killed"));
    }
    let status = control::status(&ex.socket()).unwrap();
    assert!(
        status["events"]
            .to_string()
            .contains("killed what an earlier kiln left running"),
        "{status}"
    );
    // Exactly one set: the new kiln's, each in its unit's cgroup, and nothing of the old one.
    let running = second.processes();
    let count = |comm: &str| running.iter().filter(|(_, c)| c == comm).count();
    assert_eq!(
        (count("php-fpm8.2"), count("nginx"), count("php")),
        (3, 2, 2),
        "{running:?}"
    );
    assert_eq!(tagged_processes(first.tag()), Vec::new(), "the old kiln's tree");
    let master = control::unit_pid(&ex.socket(), "php-fpm").unwrap();
    assert_ne!(master, old_master);
    assert!(procs_of(&unit_cgroup(&status, "php-fpm")).contains(&master));
    assert_eq!(testkit::wait::http_get(&ex.readyz_url()).unwrap().0, 200);
    assert!(!second.log().contains("Another FPM instance"), "{}", second.log());
    assert!(
        !second.log().contains("Address already in use"),
        "{}",
        second.log()
    );
}

#[test]
fn status_shows_each_units_cgroup_and_cpu() {
    // Burns some CPU before it settles, so its cgroup has used a measurable amount.
    let burner = "[[service]]\nname = \"burner\"\ncommand = [\"sh\", \"-c\", \"i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 1000\"]\nready_after = \"100ms\"\n";
    let ex = with_services(burner);
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let tree = cgroups::kiln_dir(&ex.state_dir()).unwrap();
    let status = wait_until("the burner to have used CPU", DEADLINE, || {
        let status = control::status(&ex.socket())?;
        (control::unit(&status, "burner")["cpu_usec"].as_u64()? >= 10_000).then_some(status)
    });
    assert_eq!(status["containment"]["kind"], "cgroups", "{status}");
    assert_eq!(
        status["containment"]["cgroup"],
        tree.join("services").to_str().unwrap(),
        "kiln and testkit disagree on where kiln's cgroups are"
    );
    assert_eq!(unit_cgroup(&status, "burner"), tree.join("services/burner"));
    let pid = control::unit_pid(&ex.socket(), "burner").unwrap();
    assert_eq!(procs_of(&tree.join("services/burner")), [pid]);
    // No memory controller in cgroup v2 here (the hybrid layout keeps it in cgroup v1).
    assert_eq!(
        control::unit(&status, "burner")["memory_bytes"],
        serde_json::Value::Null
    );

    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{text}");
    let line = format!(
        "  services: a cgroup each under {} (no controllers: no memory figures, no limits)",
        tree.join("services").display()
    );
    assert!(text.lines().any(|l| l == line), "{text}");
    let header = text.lines().find(|l| l.starts_with("UNIT")).unwrap();
    assert!(header.contains("RESTARTS  MEM  CPU"), "{text}");
    let row = text.lines().find(|l| l.starts_with("burner")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    // UNIT STATE READY PID UPTIME RESTARTS MEM CPU ...
    assert_eq!(cells[6], "-", "{row}");
    assert!(cells[7].ends_with("ms") || cells[7].ends_with('s'), "{row}");
}

#[test]
fn the_instance_cgroup_is_named_as_systemd_escape_names_the_state_dir() {
    for dir in [
        "/run/kiln",
        "/tmp/kiln-example-Ab_c.x/run/kiln",
        "/srv/my app/.state",
    ] {
        let name = format!("kiln@{}", cgroups::escape_path(dir));
        assert_eq!(kiln::cgroup::instance_name(Path::new(dir)).unwrap(), name);
    }
}

/// A memory limit where cgroup v2 has no memory controller (this hybrid layout) would do
/// nothing: the boot is refused naming the service, the key and the controller, and nothing
/// starts.
#[test]
fn a_limit_kiln_cannot_apply_refuses_the_boot() {
    let ex = with_services(&(forker(7004, "") + "memory_max = \"256M\"\n"));
    let mut kiln = ex.boot(KILN);
    let status = wait_until("the refused boot", DEADLINE, || {
        let s = control::status(&ex.socket())?;
        (s["phase"] == "failed").then_some(s)
    });
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason
            .starts_with("service \"forker\": memory_max needs the memory controller, which kiln's cgroup ")
            && reason.ends_with("a limit kiln cannot apply is refused, not ignored"),
        "{reason}"
    );
    assert_eq!(daemons(7004), Vec::<i32>::new(), "the service started");
    assert!(!kiln.log().contains("forker: started"), "{}", kiln.log());
    kiln.signal(Signal::SIGTERM);
    assert_eq!(kiln.wait_exit(DEADLINE).code(), Some(1));
    assert!(!cgroups::kiln_dir(&ex.state_dir()).unwrap().exists());
}

/// `kiln boot --config CONFIG` in a mount namespace of its own where `prepare` (a shell
/// command) ran first, e.g. to take cgroup2 away from kiln.
fn boot_in_mount_namespace(prepare: &str, config: &Path) -> (Kiln, testkit::notify::NotifySocket) {
    let script = format!("{prepare} && exec \"$0\" boot --config \"$1\"");
    let config = config.to_str().unwrap();
    let args = [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        KILN,
        config,
    ];
    let notify = testkit::notify::NotifySocket::bind();
    let (key, value) = notify.env();
    let kiln = Kiln::boot_with("unshare", &args, &[(key, value.as_str())]);
    (kiln, notify)
}

/// Boots `ex` with `prepare` run first; asserts that the units get process groups for `why`, in
/// `--json` and in the one line of `kiln status`; stops kiln.
fn assert_process_groups(ex: &Example, prepare: &str, why: &str) {
    let (mut kiln, notify) = boot_in_mount_namespace(prepare, &ex.config_path);
    notify.wait_for("READY=1", BOOT_DEADLINE, |l| l == "READY=1");
    let status = control::status(&ex.socket()).unwrap();
    assert_eq!(status["containment"]["kind"], "process_groups", "{status}");
    assert_eq!(status["containment"]["why"], why);
    assert_eq!(
        control::unit(&status, "forker")["cgroup"],
        serde_json::Value::Null
    );
    let (_, text) = ex.status_cli(KILN, &[]);
    let line = format!(
        "  services: process groups only ({why}): a process that leaves its group outlives its service's stop"
    );
    assert!(text.lines().any(|l| l == line), "{text}");
    assert!(!cgroups::kiln_dir(&ex.state_dir()).unwrap().exists());
    kiln.signal(Signal::SIGTERM);
    assert_eq!(kiln.wait_exit(DEADLINE).code(), Some(0), "{}", kiln.log());
    let tag = kiln.tag().to_string();
    drop(kiln);
    wait_no_tagged_processes(&tag, DEADLINE);
}

/// Where cgroup2 is mounted read-only (Docker's default) or not at all, services get process
/// groups, as before cgroups, and status says why; a limit then refuses the boot.
#[test]
fn without_a_writable_cgroup_services_get_process_groups_and_status_says_so() {
    let ex = with_services(&forker(7005, ""));
    let unified = cgroups::own_dir().unwrap();
    let readonly = format!("mount -o remount,bind,ro {}", unified.display());
    let why = format!("cgroup2 at {} is mounted read-only", unified.display());
    assert_process_groups(&ex, &readonly, &why);
    let unmounted = format!("umount -l {}", unified.display());
    assert_process_groups(
        &ex,
        &unmounted,
        "no cgroup2 file system mounted that shows kiln's cgroup /",
    );

    ex.edit_config(|c| c + "tasks_max = 64\n");
    let (mut kiln, _notify) = boot_in_mount_namespace(&readonly, &ex.config_path);
    let status = wait_until("the refused boot", DEADLINE, || {
        let s = control::status(&ex.socket())?;
        (s["phase"] == "failed").then_some(s)
    });
    assert_eq!(
        status["reason"],
        format!(
            "service \"forker\": tasks_max needs a cgroup, and kiln holds services in process groups only ({why}); a limit kiln cannot apply is refused, not ignored"
        )
        .as_str()
    );
    assert_eq!(daemons(7005), Vec::<i32>::new(), "the service started");
    kiln.signal(Signal::SIGTERM);
    assert_eq!(kiln.wait_exit(DEADLINE).code(), Some(1));
}

/// kiln as PID 1 of a container whose cgroup is writable but not the root: kiln owns it, moves
/// itself into the leaf `kiln/` and puts the units in `services/`.
#[test]
fn as_a_containers_pid_1_kiln_takes_its_own_cgroup() {
    let scratch = cgroups::Scratch::new("pid1");
    let ex = with_services(&forker(7006, ""));
    let config = ex.config_path.to_str().unwrap().to_string();
    // Into the container's cgroup first (`0` is the writer itself), then exec kiln as PID 1.
    let script = format!(
        "echo 0 > {}/cgroup.procs && exec \"$0\" boot --config \"$1\"",
        scratch.dir.display()
    );
    let wrapper = [
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        &script,
        KILN,
        &config,
    ];
    let notify = testkit::notify::NotifySocket::bind();
    let (key, value) = notify.env();
    let mut unshare = Kiln::boot_with("unshare", &wrapper, &[(key, value.as_str())]);
    notify.wait_for("READY=1", BOOT_DEADLINE, |l| l == "READY=1");

    let status = control::status(&ex.socket()).unwrap();
    let services = scratch.dir.join("services");
    assert_eq!(
        status["containment"]["cgroup"],
        services.to_str().unwrap(),
        "{status}"
    );
    let in_kiln_leaf = procs_of(&scratch.dir.join("kiln"));
    assert_eq!(in_kiln_leaf.len(), 1, "kiln alone in its leaf: {in_kiln_leaf:?}");
    assert_eq!(
        procs_of(&scratch.dir),
        Vec::<i32>::new(),
        "a process in an inner cgroup"
    );
    let daemon = wait_until("the daemon", DEADLINE, || daemons(7006).first().copied());
    assert!(procs_of(&services.join("forker")).contains(&daemon));

    kill(Pid::from_raw(in_kiln_leaf[0]), Signal::SIGTERM).unwrap();
    assert_eq!(unshare.wait_exit(DEADLINE).code(), Some(0), "{}", unshare.log());
    assert!(!alive(daemon));
    assert!(!services.exists(), "kiln left services/ behind");
}
