//! Every unit in a cgroup of its own: a daemon that left its process group with setsid() dies
//! with its service, a new kiln clears what a SIGKILLed one left, and kiln says how it holds its
//! services. This machine's layout is hybrid (cgroup2 without controllers); the VM e2e checks the
//! unified layout with controllers and a limit.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::control;
use testkit::example::Example;
use testkit::wait::{http_get, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const BOOT: Duration = Duration::from_secs(30);

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit(") ").next().map(|rest| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn pids_in(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A service whose every start leaves a daemon in a session of its own (`setsid -f`), writing
/// the daemon's pid into `pidfile`.
fn add_daemonising_service(ex: &Example, pidfile: &Path) {
    ex.edit_config(|c| {
        c + &format!(
            "\n[[service]]\nname = \"forker\"\nrestart_delay = \"10ms\"\ncommand = [\"sh\", \"-c\", \"setsid -f sh -c 'echo $$ >> {}; exec sleep 1000'; exec sleep 1000\"]\n",
            pidfile.display()
        )
    });
}

fn unit_cgroup(socket: &Path, unit: &str) -> PathBuf {
    let status = control::status(socket).expect("kiln answers");
    let path = control::unit(&status, unit)["cgroup"]
        .as_str()
        .unwrap_or_else(|| panic!("{unit} has no cgroup: {status}"));
    PathBuf::from(path)
}

#[test]
fn a_daemon_that_left_its_group_is_gone_after_each_restart_and_after_the_stop() {
    let ex = Example::render();
    let pidfile = ex.dir.path().join("daemons");
    add_daemonising_service(&ex, &pidfile);
    let (mut kiln, _notify) = ex.boot_ready(KILN);
    let socket = ex.socket();
    wait_until("the first daemon", BOOT, || {
        (pids_in(&pidfile).len() == 1).then_some(())
    });

    for round in 1..=3 {
        let main = control::unit_pid(&socket, "forker").expect("forker runs");
        kill(Pid::from_raw(main), Signal::SIGKILL).unwrap();
        wait_until("forker restarted with a new daemon", BOOT, || {
            let restarted = control::unit_pid(&socket, "forker").is_some_and(|p| p != main);
            (restarted && pids_in(&pidfile).len() == round + 1).then_some(())
        });
        let running: Vec<i32> = pids_in(&pidfile).into_iter().filter(|&p| alive(p)).collect();
        assert_eq!(
            running.len(),
            1,
            "after restart {round}, daemons running side by side: {running:?}"
        );
    }

    let procs = unit_cgroup(&socket, "forker").join("cgroup.procs");
    let daemon = *pids_in(&pidfile).last().unwrap();
    assert!(
        pids_in(&procs).contains(&daemon),
        "the daemon is not in the unit's cgroup {}",
        procs.display()
    );
    kiln.signal(Signal::SIGTERM);
    assert!(kiln.wait_exit(BOOT).success(), "{}", kiln.log());
    let running: Vec<i32> = pids_in(&pidfile).into_iter().filter(|&p| alive(p)).collect();
    assert!(running.is_empty(), "daemons outlived kiln's stop: {running:?}");
    assert!(
        !procs.exists(),
        "the unit's cgroup is left after the stop: {}",
        procs.display()
    );
}

#[test]
fn a_new_kiln_clears_what_a_killed_kiln_left_and_runs_one_set_of_services() {
    let ex = Example::render();
    let socket = ex.socket();
    let (mut killed, _notify) = ex.boot_ready(KILN);
    let status = control::status(&socket).unwrap();
    // Every process of every unit: its cgroup's, or at least its main process.
    let old: Vec<i32> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| match u["cgroup"].as_str() {
            Some(cgroup) => pids_in(&Path::new(cgroup).join("cgroup.procs")),
            None => u["pid"].as_i64().map(|p| p as i32).into_iter().collect(),
        })
        .collect();
    assert!(!old.is_empty());

    kill(Pid::from_raw(killed.pid()), Signal::SIGKILL).unwrap();
    killed.wait_exit(BOOT);
    assert!(
        old.iter().any(|&p| alive(p)),
        "nothing outlived kill -9 of kiln: the test shows nothing"
    );

    // Dropped before `killed`, whose clean-up would otherwise count the new kiln as its own.
    let (_new, _notify) = ex.boot_ready(KILN);
    let left: Vec<i32> = old.iter().copied().filter(|&p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "processes of the killed kiln still run: {left:?}"
    );
    let status = control::status(&socket).unwrap();
    let events = status["events"].to_string();
    assert!(
        events.contains("left by a previous kiln"),
        "the new kiln did not say what it cleared: {events}"
    );
    let now = pids_in(&unit_cgroup(&socket, "php-fpm").join("cgroup.procs"));
    assert!(
        !now.is_empty() && now.iter().all(|p| !old.contains(p)),
        "php-fpm's cgroup holds {now:?}, the killed kiln's were {old:?}"
    );
    let (code, body) = http_get(&ex.page_url()).unwrap();
    assert_eq!(code, 200, "{body}");
}

#[test]
fn status_shows_the_cgroups_and_what_each_unit_used() {
    let ex = Example::render();
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let status = control::status(&ex.socket()).unwrap();
    let containment = status["containment"].as_str().unwrap_or_default();
    assert!(containment.starts_with("cgroup v2 "), "{status}");
    let php = control::unit(&status, "php-fpm");
    assert!(
        php["cpu_usec"].as_u64().is_some_and(|us| us > 0),
        "no CPU time for php-fpm: {php}"
    );
    let (_, text) = ex.status_cli(KILN, &[]);
    assert!(text.contains("services held in: cgroup v2"), "{text}");
    assert!(text.contains("MEM") && text.contains("CPU"), "{text}");
}

/// Where cgroup2 is mounted on this machine.
fn cgroup2_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .find_map(|l| {
            let (mount, fs) = l.split_once(" - ")?;
            let point = mount.split_whitespace().nth(4)?;
            (fs.split_whitespace().next() == Some("cgroup2")).then(|| PathBuf::from(point))
        })
        .expect("cgroup2 is mounted")
}

#[test]
fn without_cgroup2_services_run_in_process_groups_and_status_says_so() {
    let ex = Example::render();
    let mount = cgroup2_mount();
    let config = ex.config_path.to_str().unwrap().to_string();
    let script = format!(
        "umount -l {} && exec {KILN} boot --config {config}",
        mount.display()
    );
    let notify = testkit::notify::NotifySocket::bind();
    let (key, value) = notify.env();
    let _kiln = testkit::peers::Kiln::boot_with(
        "unshare",
        &["-m", "--propagation", "private", "sh", "-c", &script],
        &[(key, value.as_str())],
    );
    notify.wait_for("READY=1", BOOT, |l| l == "READY=1");
    let status = control::status(&ex.socket()).unwrap();
    let containment = status["containment"].as_str().unwrap_or_default();
    assert!(
        containment.starts_with("process groups only: no cgroup2"),
        "{containment}"
    );
    assert!(control::unit(&status, "php-fpm")["cgroup"].is_null());
}

#[test]
fn a_limit_is_applied_or_the_boot_refused_never_silently_dropped() {
    let ex = Example::render();
    ex.edit_service("php-fpm", |s| {
        s.insert("memory_max".into(), "256M".into());
    });
    let memory_delegated = std::fs::read_to_string(cgroup2_mount().join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .any(|c| c == "memory");
    let (mut kiln, notify) = ex.boot_notified(KILN, &[], &[]);
    if memory_delegated {
        notify.wait_for("READY=1", BOOT, |l| l == "READY=1");
        let max = std::fs::read_to_string(unit_cgroup(&ex.socket(), "php-fpm").join("memory.max")).unwrap();
        assert_eq!(max.trim(), (256u64 << 20).to_string());
    } else {
        let line = notify.wait_for("the refusal", BOOT, |l| l.starts_with("STATUS=boot refused"));
        assert!(
            line.contains("service \"php-fpm\": memory_max needs the memory controller"),
            "{line}"
        );
        let status = control::status(&ex.socket()).unwrap();
        assert_eq!(status["phase"], "failed");
        assert!(
            status["services"].as_array().is_none_or(|s| s.is_empty()),
            "{status}"
        );
        kiln.signal(Signal::SIGTERM);
        kiln.wait_exit(BOOT);
    }
}
