//! How a service's process is made: born in its unit's cgroup by `clone3(CLONE_INTO_CGROUP)`
//! (or, where the kernel refuses that, forked and moved in through `cgroup.procs` before exec:
//! `KILN_TEST_SPAWN=procs` forces that path here), so that the service and everything it forks
//! are in the cgroup from their first instruction, at boot and at every restart; `kiln status`
//! says which path is used. Then what the new process is given (identity, directory,
//! environment, open files limit, stdin) and what a start that fails before its exec reports.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::cgroups;
use testkit::control;
use testkit::example::{BOOT_DEADLINE, Example};
use testkit::peers::Kiln;
use testkit::wait::wait_until;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const DEADLINE: Duration = Duration::from_secs(30);

/// The example's config with its services replaced by `services`.
fn with_services(services: &str) -> Example {
    let ex = Example::render();
    ex.edit_toml(|t| {
        t.remove("service");
    });
    ex.edit_config(|c| format!("{c}\n{services}"));
    ex
}

/// A directory anyone may write to (a service may run as `nobody`), removed when dropped.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// A service whose main process, a shell, reads its own cgroup v2 line as its first action
/// (builtins only: no process of its own before it) and appends it to `out/main`; then a child
/// and a daemon that leaves its session (`setsid` in a backgrounded subshell) append theirs to
/// `out/child` and `out/daemon`.
fn witness(out: &Path) -> String {
    let out = out.display();
    let own = r#"while read -r l; do case $l in 0::*) printf '%s\n' "$l";; esac; done < /proc/self/cgroup"#;
    let script = format!(
        "{own} >> {out}/main; grep ^0:: /proc/self/cgroup >> {out}/child; (setsid sh -c 'grep ^0:: /proc/self/cgroup >> {out}/daemon; exec sleep 1000' &); exec sleep 1000"
    );
    format!(
        "[[service]]\nname = \"witness\"\ncommand = [\"sh\", \"-c\", {script:?}]\nrestart_delay = \"100ms\"\nready_after = \"100ms\"\n"
    )
}

/// `0::/…/services/witness`: the line of /proc/PID/cgroup of a process in the unit's cgroup.
fn expected_line(ex: &Example) -> String {
    let unit = cgroups::kiln_dir(&ex.state_dir())
        .unwrap()
        .join("services/witness");
    let mount = cgroups::own_dir().unwrap();
    format!("0::/{}", unit.strip_prefix(&mount).unwrap().display())
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Boots the witness with `envs` for kiln, checks that it, its child and its daemon were in the
/// unit's cgroup from their first instruction, kills it and checks its restart the same way.
/// Returns kiln and the status JSON.
fn boot_and_check_containment(envs: &[(&str, &str)]) -> (Example, Kiln, serde_json::Value) {
    let out = open_dir();
    let ex = with_services(&witness(out.path()));
    let (kiln, notify) = ex.boot_notified(KILN, &[], envs);
    notify.wait_for("READY=1", BOOT_DEADLINE, |l| l == "READY=1");
    let expected = expected_line(&ex);
    let socket = ex.socket();
    for name in ["main", "child", "daemon"] {
        let path = out.path().join(name);
        let seen = wait_until(name, DEADLINE, || Some(lines(&path)).filter(|l| !l.is_empty()));
        assert_eq!(seen, [expected.as_str()], "{name}");
    }
    let first = control::unit_pid(&socket, "witness").unwrap();
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    for name in ["main", "child", "daemon"] {
        let path = out.path().join(name);
        let seen = wait_until(name, DEADLINE, || Some(lines(&path)).filter(|l| l.len() >= 2));
        assert_eq!(
            seen,
            [expected.as_str(), expected.as_str()],
            "{name} after the restart"
        );
    }
    let status = wait_until("the witness ready again", DEADLINE, || {
        let status = control::status(&socket)?;
        (status["phase"] == "ready").then_some(status)
    });
    assert_eq!(control::unit(&status, "witness")["restarts"], 1, "{status}");
    (ex, kiln, status)
}

#[test]
fn services_are_born_in_their_cgroup_and_so_are_their_restarts() {
    let (ex, _kiln, status) = boot_and_check_containment(&[]);
    assert_eq!(
        status["containment"]["spawn"],
        serde_json::json!({"path": "clone3", "why": null}),
        "{status}"
    );
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.lines()
            .any(|l| l == "  spawn: clone3 into each unit's cgroup (nothing migrates)"),
        "{text}"
    );
}

/// The fallback, forced: forked in kiln's cgroup, the process writes itself into its unit's
/// `cgroup.procs` before anything else, so it holds everything just the same; status says so.
#[test]
fn the_cgroup_procs_fallback_contains_everything_too_and_status_says_it_is_used() {
    let (ex, kiln, status) = boot_and_check_containment(&[("KILN_TEST_SPAWN", "procs")]);
    assert_eq!(
        status["containment"]["spawn"],
        serde_json::json!({"path": "cgroup_procs", "why": "forced by KILN_TEST_SPAWN=procs"}),
        "{status}"
    );
    let (_, text) = ex.status_cli(KILN, &[]);
    let line = "  spawn: fork, then cgroup.procs (forced by KILN_TEST_SPAWN=procs): a start can wait ~10 ms on the kernel's cgroup lock";
    assert!(text.lines().any(|l| l == line), "{text}");
    kiln.wait_log(
        "services: forked, then moved into their cgroups by cgroup.procs (forced by KILN_TEST_SPAWN=procs)",
        DEADLINE,
    );
}

/// Fields of `out` written by the service below: `uid gid cwd`, the open files limits, stdin,
/// then its environment's names.
fn identity_service(out: &Path, work: &Path) -> String {
    let out = out.display();
    let script = format!(
        "echo $(id -u) $(id -g) $(pwd) > {out}/id.tmp; ulimit -Sn >> {out}/id.tmp; ulimit -Hn >> {out}/id.tmp; readlink /proc/self/fd/0 >> {out}/id.tmp; nice >> {out}/id.tmp; grep Cpus_allowed_list /proc/self/status | cut -f2 >> {out}/id.tmp; env | cut -d= -f1 | sort >> {out}/id.tmp; mv {out}/id.tmp {out}/id; exec sleep 1000"
    );
    format!(
        "[[service]]\nname = \"who\"\ncommand = [\"sh\", \"-c\", {script:?}]\nuser = \"nobody\"\nworking_dir = \"{}\"\nenv = {{ OWN = \"1\" }}\nenv_allow = [\"NOTHING_*\"]\nready_after = \"100ms\"\n",
        work.display()
    )
}

/// The user's uid and groups, the working directory, only the environment kiln gives (nothing
/// of kiln's own: the test's `KILN_TEST_TAG` stays out), the soft open files limit, the nice
/// level and the CPUs kiln was started with (kiln raises its own limit to the hard one and its
/// priority by 5 levels, and pins itself to one CPU while it starts a process), and /dev/null as
/// stdin.
#[test]
fn a_service_gets_its_user_directory_environment_limit_and_null_stdin() {
    let out = open_dir();
    let work = tempfile::tempdir().unwrap();
    let ex = with_services(&identity_service(out.path(), work.path()));
    let wrapper = ["prlimit", "--nofile=1000:4000", "nice", "-n", "3"];
    let (kiln, notify) = ex.boot_notified(KILN, &wrapper, &[]);
    notify.wait_for("READY=1", BOOT_DEADLINE, |l| l == "READY=1");
    let seen = wait_until("the service's report", DEADLINE, || {
        Some(lines(&out.path().join("id"))).filter(|l| !l.is_empty())
    });
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(
        seen[0],
        format!("{} {} {}", nobody.uid, nobody.gid, work.path().display())
    );
    let cpus = std::fs::read_to_string("/proc/self/status").unwrap();
    let cpus = cpus
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    assert_eq!(seen[1..6], ["1000", "4000", "/dev/null", "3", cpus]);
    assert_eq!(
        nice_of(kiln.pid()),
        -2,
        "kiln runs 5 levels above where it was started"
    );
    let mut names: Vec<&str> = seen[6..].iter().map(String::as_str).collect();
    // What the shell sets by itself.
    names.retain(|n| !matches!(*n, "PWD" | "OLDPWD" | "SHLVL" | "_"));
    assert_eq!(
        names,
        [
            "HOME",
            "KILN_REPLICA",
            "KILN_SERVICE",
            "LOGNAME",
            "OWN",
            "PATH",
            "USER"
        ],
        "{seen:?}"
    );
}

/// A service's `nice` is the level of its processes, above or below kiln's, whatever its user;
/// the others' is kiln's start level.
#[test]
fn a_service_runs_at_its_nice_level() {
    let services = "[[service]]\nname = \"low\"\ncommand = [\"sleep\", \"1000\"]\nnice = 7\nready_after = \"100ms\"\n\
        [[service]]\nname = \"high\"\ncommand = [\"sleep\", \"1000\"]\nnice = -3\nuser = \"nobody\"\nready_after = \"100ms\"\n\
        [[service]]\nname = \"plain\"\ncommand = [\"sleep\", \"1000\"]\nready_after = \"100ms\"\n";
    let ex = with_services(services);
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let pid = |name| control::unit_pid(&ex.socket(), name).unwrap();
    let own = nice_of(std::process::id() as i32);
    // A level below kiln's needs root: it is set before the switch to `user`.
    assert_eq!([pid("low"), pid("high"), pid("plain")].map(nice_of), [7, -3, own]);
}

/// The nice level of a process, from `/proc/PID/stat` (field 19, after the command's parentheses).
fn nice_of(pid: i32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.split(' ').nth(16).unwrap().parse().unwrap()
}

/// A start that fails in the new process, before its exec, is an error that says which step
/// failed (or exec's own), and the service is tried again: a program gone, then a working
/// directory gone.
#[test]
fn a_start_that_fails_before_its_exec_says_which_step_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let program: PathBuf = dir.path().join("serve");
    std::fs::write(&program, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let service = format!(
        "[[service]]\nname = \"gone\"\ncommand = [\"{}\"]\nworking_dir = \"{}\"\nrestart_delay = \"100ms\"\nready_after = \"100ms\"\n",
        program.display(),
        work.display()
    );
    let ex = with_services(&service);
    let (kiln, _notify) = ex.boot_ready(KILN);
    let pid = control::unit_pid(&ex.socket(), "gone").unwrap();

    std::fs::remove_file(&program).unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    kiln.wait_log(
        &format!(
            "gone: cannot start {:?}: No such file or directory (os error 2)",
            program.display().to_string()
        ),
        DEADLINE,
    );
    std::fs::remove_dir(&work).unwrap();
    kiln.wait_log(
        &format!(
            "gone: cannot start {:?}: changing to working_dir: No such file or directory (os error 2)",
            program.display().to_string()
        ),
        DEADLINE,
    );
    // Back as it was: the next try starts it.
    std::fs::create_dir(&work).unwrap();
    std::fs::write(&program, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    wait_until("the service running again", DEADLINE, || {
        let status = control::status(&ex.socket())?;
        (control::unit(&status, "gone")["state"] == "running").then_some(())
    });
}
