//! kiln as PID 1 of a fresh PID namespace (the container case): it reaps orphans it never
//! started, and SIGTERM stops everything with exit 0.

use nix::sys::signal::Signal;
use std::time::Duration;
use testkit::example::Example;
use testkit::peers::wait_no_tagged_processes;
use testkit::wait::wait_until;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Host pids of live processes whose command line is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.split(' ').nth(1)?.parse().ok()
}

#[test]
fn as_pid_1_kiln_reaps_orphans_and_stops_cleanly() {
    let ex = Example::render();
    ex.edit_config(|c| {
        c + "\n[[service]]\nname = \"forker\"\ncommand = [\"sh\", \"-c\", \"(sleep 2.71 &); exec sleep 1000\"]\n"
    });
    let config = ex.config_path.to_str().unwrap();
    let (mut unshare, notify) = ex.boot_notified(KILN, &["unshare", "--pid", "--fork", "--mount-proc"], &[]);
    notify.wait_for("READY=1", Duration::from_secs(30), |l| l == "READY=1");

    let kiln = wait_until("kiln inside the namespace", Duration::from_secs(5), || {
        pids_running(&[KILN, "boot", "--config", config]).first().copied()
    });
    assert_eq!(ppid(kiln), Some(unshare.pid()));
    let orphan = wait_until("the orphan", Duration::from_secs(5), || {
        pids_running(&["sleep", "2.71"]).first().copied()
    });
    assert_eq!(
        ppid(orphan),
        Some(kiln),
        "the orphan belongs to PID 1 of the namespace: kiln"
    );
    wait_until(
        "the orphan reaped (gone, not a zombie)",
        Duration::from_secs(15),
        || ppid(orphan).is_none().then_some(()),
    );

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(kiln), Signal::SIGTERM).unwrap();
    let status = unshare.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", unshare.log());
    assert!(unshare.log().contains("all services stopped"));
    wait_no_tagged_processes(unshare.tag(), Duration::from_secs(5));
}
