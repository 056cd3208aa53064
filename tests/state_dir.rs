//! `state_dir` and the control socket's directory: a directory another user owns or can write,
//! one in a world-writable directory, or a symlink planted where it goes is refused by
//! `kiln check` and `kiln boot`, and the boot starts nothing. A missing one is created 0700.
//! One kiln per state dir: a second one refuses and touches nothing. What a kiln killed during
//! its leave left running is cleared by the next kiln before it refuses to rejoin.

use nix::sys::signal::Signal;
use nix::unistd::{Uid, chown};
use std::fs::{self, DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};
use testkit::control;
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options};
use testkit::example::{BOOT_DEADLINE, Example};
use testkit::peers::{Kiln, tagged_processes};
use testkit::wait::wait_until;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
/// `nobody` on Debian: a user that is neither root nor kiln's.
const ANOTHER_USER: u32 = 65534;

fn mkdir(path: &Path, mode: u32) {
    DirBuilder::new().mode(mode).create(path).unwrap();
    fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

/// `kiln check` exits 78 and `kiln boot` exits 1 naming `message`; the boot starts nothing and
/// writes nothing.
fn refused(ex: &Example, message: &str) {
    ex.check_refuses(KILN, &[message]);

    let mut kiln = Kiln::boot(KILN, &ex.config_path);
    let status = kiln.wait_exit(Duration::from_secs(10));
    let log = kiln.log();
    assert_eq!(status.code(), Some(1), "kiln boot: {log}");
    assert!(
        log.contains(message),
        "kiln boot said:\n{log}\nexpected: {message}"
    );
    assert!(log.contains("nothing was started"), "{log}");
    assert!(tagged_processes(kiln.tag()).is_empty(), "boot started something");
    assert!(!ex.php_fpm_socket().exists(), "php-fpm ran");
}

fn state_dir_of(ex: &Example) -> String {
    ex.state_dir().display().to_string()
}

#[test]
fn a_state_dir_owned_by_another_user_is_refused() {
    let ex = Example::render();
    mkdir(&ex.state_dir(), 0o700);
    chown(&ex.state_dir(), Some(Uid::from_raw(ANOTHER_USER)), None).unwrap();
    refused(
        &ex,
        &format!(
            "[control] state_dir {}: is owned by uid {ANOTHER_USER}, not by kiln's user (uid {})",
            state_dir_of(&ex),
            Uid::effective()
        ),
    );
    assert!(!ex.socket().exists() && !ex.state_dir().join("env").exists());
}

#[test]
fn a_state_dir_writable_by_everyone_is_refused() {
    let ex = Example::render();
    mkdir(&ex.state_dir(), 0o777);
    refused(
        &ex,
        &format!(
            "[control] state_dir {}: is writable by other users (mode 777)",
            state_dir_of(&ex)
        ),
    );
    assert!(!ex.socket().exists() && !ex.state_dir().join("env").exists());
}

/// The README example once kept its state under /tmp: anyone could create the directory first.
#[test]
fn a_state_dir_in_a_world_writable_directory_is_refused() {
    let ex = Example::render();
    fs::set_permissions(&ex.run_dir, Permissions::from_mode(0o1777)).unwrap();
    refused(
        &ex,
        &format!(
            "[control] state_dir {}: its parent {} is writable by every user",
            state_dir_of(&ex),
            ex.run_dir.display()
        ),
    );
    assert!(!ex.state_dir().exists(), "the boot created the state dir");
}

#[test]
fn a_symlink_planted_as_state_dir_is_not_followed() {
    let ex = Example::render();
    let elsewhere = ex.dir.path().join("elsewhere");
    mkdir(&elsewhere, 0o700);
    std::os::unix::fs::symlink(&elsewhere, ex.state_dir()).unwrap();
    refused(
        &ex,
        &format!("[control] state_dir {}: is a symlink", state_dir_of(&ex)),
    );
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "kiln wrote behind the link"
    );
}

#[test]
fn a_control_socket_in_a_directory_others_can_write_is_refused() {
    let ex = Example::render();
    let shared = ex.dir.path().join("shared");
    mkdir(&shared, 0o1777);
    let socket = shared.join("control.sock");
    ex.edit_config(|c| {
        let line = format!("socket = {:?}", ex.socket().display().to_string());
        assert!(c.contains(&line), "{c}");
        c.replace(&line, &format!("socket = {:?}", socket.display().to_string()))
    });
    refused(
        &ex,
        &format!(
            "[control] socket's directory {}: is writable by other users (mode 1777)",
            shared.display()
        ),
    );
    assert!(!socket.exists());
}

#[test]
fn a_missing_state_dir_is_created_private() {
    let ex = Example::render();
    assert!(!ex.state_dir().exists());
    let check = ex.check(KILN, &[]);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    let _kiln = Kiln::boot(KILN, &ex.config_path);
    wait_until("the control socket", BOOT_DEADLINE, || {
        ex.socket().exists().then_some(())
    });
    let mode = fs::symlink_metadata(ex.state_dir()).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o700);
}

/// The process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(") ").next()?.chars().next())
        .is_some_and(|state| !matches!(state, 'Z' | 'X'))
}

/// Unit name → pid of every unit in a status snapshot.
fn unit_pids(status: &serde_json::Value) -> Vec<(String, i64)> {
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["unit"].as_str().unwrap().to_string(),
                u["pid"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A second kiln on a live kiln's state dir (another config with another socket and health
/// address, or a `kiln boot` run by hand) once took the live kiln's services for what a killed
/// kiln left and killed them; the live kiln then failed to start them again for good. It exits
/// at once, naming the live kiln's pid, and touches nothing: no cgroup, no socket, no port.
#[test]
fn a_second_kiln_on_the_same_state_dir_refuses_and_touches_nothing() {
    let ex = Example::render();
    let (first, _notify) = ex.boot_ready(KILN);
    let before = control::status(&ex.socket()).unwrap();

    let socket = ex.run_dir.join("second.sock");
    let health = testkit::net::free_addr();
    let mut config = ex.config_table();
    config["control"]["socket"] = socket.to_str().unwrap().into();
    config["health"]["listen"] = health.to_string().into();
    let second_config = ex.dir.path().join("second.toml");
    fs::write(&second_config, toml::to_string(&config).unwrap()).unwrap();
    let mut second = Kiln::boot(KILN, &second_config);
    let status = second.wait_exit(BOOT_DEADLINE);
    let log = second.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let lock = ex.state_dir().join("lock");
    assert!(
        log.contains(&format!(
            "[control] state_dir {}: is in use by another kiln (pid {}, {} is locked)",
            state_dir_of(&ex),
            first.pid(),
            lock.display()
        )),
        "{log}"
    );
    assert!(log.contains("nothing was started"), "{log}");
    assert!(!log.contains("killed"), "{log}");
    assert!(!socket.exists(), "the second kiln made its socket");
    assert!(
        !testkit::net::is_listening(health),
        "the second kiln serves health"
    );

    let after = control::status(&ex.socket()).unwrap();
    assert_eq!(after["phase"], "ready", "{after}");
    assert_eq!(unit_pids(&after), unit_pids(&before), "services were replaced");
    for (unit, pid) in unit_pids(&after) {
        assert!(alive(pid as i32), "{unit} ({pid}) is gone");
        assert_eq!(control::unit(&after, &unit)["restarts"], 0, "{unit}");
    }
    assert!(!first.log().contains("killed"), "{}", first.log());
}

/// kiln SIGKILLed while its leave stops the services: the next kiln finds the `left` marker
/// and refuses, but first clears what the killed one left running, as every boot does; the
/// worker that was stopping once ran on unsupervised for good.
#[test]
fn a_kiln_killed_during_its_leave_leaves_nothing_running_after_the_next_boot() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let ex = crate::lifecycle_support::example_on(&emulator, "poll_interval = \"1s\"");
    // Ignores SIGTERM: the leave waits out its stop_timeout, and the kill comes meanwhile.
    ex.edit_config(|c| {
        c + "\n[[service]]\nname = \"stubborn\"\ncommand = [\"sh\", \"-c\", \"trap '' TERM; exec sleep 1000\"]\nstop_timeout = \"120s\"\n"
    });
    let (mut first, _notify) = ex.boot_ready(KILN);
    let stubborn = control::unit_pid(&ex.socket(), "stubborn").unwrap();
    emulator.notices(|n| n.spot_interruption("terminate", SystemTime::now() + Duration::from_secs(120)));
    first.wait_log("stubborn: stopping (SIGTERM)", crate::lifecycle_support::LEAVE);
    assert!(ex.state_dir().join("left").exists());
    first.signal(Signal::SIGKILL);
    first.wait_exit(BOOT_DEADLINE);
    assert!(alive(stubborn), "the leftover this test is about is not there");

    let (mut second, notify) = ex.boot_notified(KILN, &[], &[]);
    notify.wait_for("READY=1", BOOT_DEADLINE, |l| l.starts_with("READY=1"));
    assert!(
        !alive(stubborn),
        "the stubborn worker ({stubborn}) of the killed kiln still runs"
    );
    let cleared = second.line_of("cgroup stubborn: killed 1 processes an earlier kiln left");
    assert!(
        cleared < second.line_of("boot refused: this instance left (spot interruption"),
        "{}",
        second.log()
    );
    let status = control::status(&ex.socket()).unwrap();
    assert_eq!(status["phase"], "failed", "{status}");
    assert!(status["services"].as_array().unwrap().is_empty(), "{status}");
    second.signal(Signal::SIGTERM);
    assert_eq!(
        second.wait_exit(BOOT_DEADLINE).code(),
        Some(1),
        "{}",
        second.log()
    );
}
