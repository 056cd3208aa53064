//! The harness leaves nothing behind: not on drop, not when a test panics, not when a process
//! escapes into its own session, and not when it is orphaned and has overwritten its environment
//! (nginx, php-fpm).

use nix::sys::signal::Signal;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::example::Example;
use testkit::peers::{Kiln, Process, TAG_VAR, tagged_processes};
use testkit::wait::{http_get, wait_until};

const START: Duration = Duration::from_secs(10);

/// Pids whose environment holds `KILN_TEST_TAG=tag`, read straight from /proc (not via testkit).
fn pids_with_tag_in_environ(tag: &str) -> Vec<i32> {
    let needle = format!("{TAG_VAR}={tag}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|e| e == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok()
}

#[test]
fn a_process_dropped_while_its_test_panics_leaves_nothing_behind() {
    let seen: Arc<Mutex<(String, Vec<i32>)>> = Arc::default();
    let inside = seen.clone();
    let result = std::panic::catch_unwind(move || {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "setsid sleep 1000 & sleep 1000"]);
        let process = Process::spawn(cmd);
        let sleeps = wait_until("two sleeps", START, || {
            let sleeps: Vec<i32> = tagged_processes(process.tag())
                .into_iter()
                .filter(|(_, comm)| comm == "sleep")
                .map(|(pid, _)| pid)
                .collect();
            (sleeps.len() == 2).then_some(sleeps)
        });
        *inside.lock().unwrap() = (process.tag().to_string(), [vec![process.pid()], sleeps].concat());
        panic!("the test fails while the process runs");
    });
    assert!(result.is_err());
    let (tag, pids) = seen.lock().unwrap().clone();
    assert_eq!(pids.len(), 3);
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} survived (or is a zombie)");
    }
    assert_eq!(pids_with_tag_in_environ(&tag), Vec::<i32>::new());
}

#[test]
fn an_orphaned_nginx_whose_environment_is_overwritten_is_still_found_and_killed() {
    let example = Example::render();
    let nginx = example.service_command("nginx");
    let quoted: Vec<String> = nginx.iter().map(|a| format!("'{a}'")).collect();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("setsid {} & exec sleep 1000", quoted.join(" "))]);
    let mut parent = Process::spawn(cmd);
    let tag = parent.tag().to_string();
    wait_until("nginx's /healthz", START, || {
        (http_get(&example.healthz_url()).ok()? == (200, "ok\n".into())).then_some(())
    });
    let nginx_pids: Vec<i32> = tagged_processes(&tag)
        .into_iter()
        .filter(|(_, comm)| comm == "nginx")
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(
        nginx_pids.len(),
        2,
        "master and worker: {:?}",
        tagged_processes(&tag)
    );
    assert!(
        nginx_pids
            .iter()
            .all(|pid| !pids_with_tag_in_environ(&tag).contains(pid)),
        "nginx overwrites its environment with its title: the tag is not visible there"
    );

    // The parent dies: nginx's master is re-parented to the test process (a subreaper).
    parent.signal(Signal::SIGKILL);
    parent.wait_exit(START);
    let me = std::process::id() as i32;
    let master_parent = std::fs::read_to_string(format!("/proc/{}/stat", nginx_pids[0])).unwrap();
    assert!(master_parent.contains(&format!(") S {me} ")), "{master_parent}");
    let mut still: Vec<i32> = tagged_processes(&tag).into_iter().map(|(pid, _)| pid).collect();
    still.sort();
    let mut expected = nginx_pids.clone();
    expected.sort();
    assert_eq!(still, expected, "the orphans still belong to the tree");

    drop(parent);
    for pid in nginx_pids {
        assert!(!alive(pid), "nginx pid {pid} survived the drop");
    }
    assert!(http_get(&example.healthz_url()).is_err());
}

#[test]
fn kiln_is_stopped_gracefully_then_its_escaped_children_are_killed() {
    let marks = tempfile::tempdir().unwrap();
    let got_term = marks.path().join("got-term");
    let script = format!(
        "trap 'echo > {}; exit 0' TERM; setsid sleep 1000 & echo started; while :; do sleep 0.05; done",
        got_term.display()
    );
    let kiln = Kiln::boot_with("sh", &["-c", &script], &[]);
    kiln.wait_log("started", START);
    let escaped = wait_until("the escaped sleep", START, || {
        tagged_processes(kiln.tag())
            .into_iter()
            .find(|(pid, comm)| comm == "sleep" && is_session_leader(*pid))
            .map(|(pid, _)| pid)
    });
    let log_path = kiln.log_path().to_path_buf();
    drop(kiln);
    assert!(got_term.exists(), "kiln got SIGTERM first");
    assert!(!alive(escaped), "the escaped sleep survived");
    assert!(!log_path.exists(), "the log file is removed with the handle");
}

#[test]
fn kiln_wait_exit_returns_the_status_and_log_holds_stdout_and_stderr() {
    let mut kiln = Kiln::boot_with("sh", &["-c", "echo out; echo err >&2; exit 3"], &[]);
    let status = kiln.wait_exit(START);
    assert_eq!(status.code(), Some(3));
    assert_eq!(kiln.log(), "out\nerr\n");
}

#[test]
fn notify_and_journal_variables_are_not_inherited_unless_set() {
    // SAFETY: set before any thread of this test process reads the environment (nextest runs
    // each test in a process of its own).
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", "/nonexistent/notify");
        std::env::set_var("JOURNAL_STREAM", "8:1234");
    }
    let script =
        "echo notify=${NOTIFY_SOCKET:-unset} journal=${JOURNAL_STREAM:-unset} tag=${KILN_TEST_TAG:+set}";
    let mut kiln = Kiln::boot_with("sh", &["-c", script], &[]);
    kiln.wait_exit(START);
    assert_eq!(kiln.log(), "notify=unset journal=unset tag=set\n");
    let mut kiln = Kiln::boot_with("sh", &["-c", script], &[("NOTIFY_SOCKET", "/tmp/x.sock")]);
    kiln.wait_exit(START);
    assert_eq!(kiln.log(), "notify=/tmp/x.sock journal=unset tag=set\n");
}

fn is_session_leader(pid: i32) -> bool {
    nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid))).map(|s| s.as_raw()) == Ok(pid)
}
