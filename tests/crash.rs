//! What kiln's memory shows when it crashes or is looked at: no core file, `/proc/<kiln>/environ`
//! and `mem` closed to the processes of its own user, while the services it starts stay as
//! dumpable as any program; and a `kill -SEGV` kills it as a crash would.

use nix::sys::signal::Signal;
use nix::unistd::{Uid, chown};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::control;
use testkit::example::{BOOT_DEADLINE, Example};
use testkit::peers::Kiln;
use testkit::wait::wait_until;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const DEADLINE: Duration = Duration::from_secs(30);
/// In kiln's own environment, as its credentials are under systemd.
const SECRET: &str = "SECRET-crash-test-7f3a";
/// `nobody` on Debian.
const NOBODY: u32 = 65534;
const AS_NOBODY: [&str; 4] = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

/// The example with one service, `sleep`, as `user` (kiln's own when None).
fn sleeper(user: Option<&str>) -> Example {
    let ex = Example::render();
    ex.edit_toml(|t| {
        t.remove("service");
    });
    let user = user.map(|u| format!("user = {u:?}\n")).unwrap_or_default();
    ex.edit_config(|c| {
        format!("{c}\n[[service]]\nname = \"sleeper\"\ncommand = [\"sleep\", \"1000\"]\n{user}")
    });
    ex
}

/// `kiln boot` under `wrapper`, with the secret in its environment and `dir` as its working
/// directory (where a core file would go), once its service runs; and the service's pid.
fn boot(ex: &Example, wrapper: &[&str], dir: &Path) -> (Kiln, i32) {
    let config = ex.config_path.to_str().unwrap();
    let mut argv = wrapper.to_vec();
    argv.extend([KILN, "boot", "--config", config]);
    // The wrappers exec kiln: its pid is theirs.
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .current_dir(dir);
    let kiln = Kiln::spawn(cmd);
    let service = wait_until("the service, ready", BOOT_DEADLINE, || {
        let status = control::status(&ex.socket())?;
        (status["phase"] == "ready").then_some(())?;
        control::try_unit(&status, "sleeper")?["pid"].as_i64()
    });
    (kiln, service as i32)
}

/// `cat PATH` as nobody: what it read, or what it said when it could not.
fn cat_as_nobody(path: &str) -> Result<String, String> {
    let out = Command::new("setpriv")
        .args(AS_NOBODY)
        .args(["cat", path])
        .output()
        .unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).replace('\0', "\n")),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// A process of kiln's user can neither read kiln's environment nor open its memory: nothing
/// but `CAP_SYS_PTRACE` may. kiln runs as nobody here (a service of kiln's user is nobody too),
/// as a process of the same user could read both from a dumpable process. The service kiln
/// started is dumpable again (exec reset it): its own files are its user's, as for any program.
#[test]
fn a_process_of_kilns_own_user_cannot_read_its_environ_or_mem() {
    let ex = sleeper(None);
    chown(&ex.run_dir, Some(Uid::from_raw(NOBODY)), None).unwrap();
    let mut wrapper = vec!["setpriv"];
    wrapper.extend(AS_NOBODY);
    let (kiln, service) = boot(&ex, &wrapper, ex.dir.path());
    let pid = kiln.pid();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
        "kiln\n"
    );

    let environ = cat_as_nobody(&format!("/proc/{pid}/environ"));
    assert!(
        environ.as_ref().is_err_and(|e| e.contains("Permission denied")),
        "kiln's environment, read by its own user: {environ:?}"
    );
    // A readable /proc/PID/mem opens and then fails at offset 0 (Input/output error).
    let mem = cat_as_nobody(&format!("/proc/{pid}/mem"));
    assert!(
        mem.as_ref().is_err_and(|e| e.contains("Permission denied")),
        "kiln's memory, opened by its own user: {mem:?}"
    );
    let service_env = cat_as_nobody(&format!("/proc/{service}/environ"))
        .unwrap_or_else(|e| panic!("the service is not dumpable: {e}"));
    assert!(service_env.contains("KILN_SERVICE=sleeper"), "{service_env}");
    assert!(!kiln.log().contains(SECRET), "{}", kiln.log());
}

/// The watchdog's SIGABRT (or any crash) with cores allowed: kiln dies and no core holds its
/// memory; its service, run as another user, stays dumpable (its /proc files are its user's).
#[test]
fn sigabrt_leaves_no_core_file() {
    let ex = sleeper(Some("nobody"));
    let cwd = tempfile::tempdir().unwrap();
    let (mut kiln, service) = boot(&ex, &["prlimit", "--core=unlimited"], cwd.path());
    let limit = std::fs::read_to_string(format!("/proc/{}/limits", kiln.pid())).unwrap();
    assert!(
        limit
            .lines()
            .any(|l| l.starts_with("Max core file size") && l.contains("unlimited")),
        "{limit}"
    );
    let service_env = cat_as_nobody(&format!("/proc/{service}/environ"))
        .unwrap_or_else(|e| panic!("the service is not dumpable: {e}"));
    assert!(service_env.contains("USER=nobody"), "{service_env}");

    kiln.signal(Signal::SIGABRT);
    let status = kiln.wait_exit(DEADLINE);
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
    assert!(!status.core_dumped(), "kiln dumped a core ({status})");
    let left: Vec<_> = std::fs::read_dir(cwd.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files in kiln's working directory: {left:?}");
}

/// `kill -SEGV` kills kiln by SIGSEGV, as a real fault would: systemd records the crash and
/// restarts the unit. The standard library's stack overflow handler once swallowed it.
#[test]
fn a_sent_sigsegv_kills_kiln_by_sigsegv() {
    let ex = sleeper(None);
    let (mut kiln, _service) = boot(&ex, &[], ex.dir.path());
    kiln.signal(Signal::SIGSEGV);
    let status = kiln.wait_exit(DEADLINE);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status}");
    assert!(!status.core_dumped(), "kiln dumped a core ({status})");
    assert!(!kiln.log().contains("overflowed its stack"), "{}", kiln.log());
}
