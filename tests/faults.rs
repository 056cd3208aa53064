//! Faults on the running example: a killed php-fpm, a frozen nginx, a crash-looping worker, and
//! orphans left by a service.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use testkit::control;
use testkit::example::Example;
use testkit::wait::{http_get, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const BOOT: Duration = Duration::from_secs(30);

/// Records every /readyz status code until dropped.
struct ReadyzWatch {
    codes: Arc<std::sync::Mutex<Vec<u16>>>,
    stop: Arc<AtomicBool>,
}

impl ReadyzWatch {
    fn start(url: String) -> ReadyzWatch {
        let codes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (codes.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok((code, _)) = http_get(&url) {
                    c.lock().unwrap().push(code);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        ReadyzWatch { codes, stop }
    }

    fn saw(&self, code: u16) -> bool {
        self.codes.lock().unwrap().contains(&code)
    }
}

impl Drop for ReadyzWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_killed_php_fpm_makes_the_instance_unready_until_it_is_back() {
    let ex = Example::render();
    // A wide window between the crash and the restart, so the 503 is there to be seen.
    ex.edit_service("php-fpm", |s| {
        s.insert("restart_delay".into(), "1s".into());
    });
    let (_kiln, notify) = ex.boot_ready(KILN);
    let socket = ex.socket();
    let old = control::unit_pid(&socket, "php-fpm").unwrap();
    let nginx = control::unit_pid(&socket, "nginx").unwrap();
    let watch = ReadyzWatch::start(ex.readyz_url());
    wait_until("the readyz watcher to see 200", BOOT, || {
        watch.saw(200).then_some(())
    });

    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    notify.wait_for("a degraded STATUS", BOOT, |l| {
        l.starts_with("STATUS=degraded: php-fpm restarting after killed by SIGKILL")
    });
    wait_until("php-fpm restarted and ready", BOOT, || {
        let s = control::status(&socket)?;
        let u = control::unit(&s, "php-fpm");
        (u["ready"] == true && u["pid"].as_i64()? as i32 != old && s["phase"] == "ready").then_some(())
    });
    assert!(
        watch.saw(503),
        "/readyz never answered 503 while php-fpm was down"
    );
    assert_eq!(http_get(&ex.readyz_url()).unwrap().0, 200);
    let status = control::status(&socket).unwrap();
    let php = control::unit(&status, "php-fpm");
    assert_eq!(php["restarts"], 1);
    assert_eq!(php["last_exit"], "killed by SIGKILL");
    assert_eq!(
        control::unit(&status, "nginx")["pid"],
        nginx,
        "nginx must not be restarted"
    );
    assert!(http_get(&ex.page_url()).unwrap().1.contains("greeting:"));
}

#[test]
fn a_frozen_nginx_fails_liveness_and_is_restarted() {
    let ex = Example::render();
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let socket = ex.socket();
    let old = control::unit_pid(&socket, "nginx").unwrap();
    killpg(Pid::from_raw(old), Signal::SIGSTOP).unwrap();

    let status = wait_until("nginx restarted by its liveness probe", BOOT, || {
        let s = control::status(&socket)?;
        let u = control::unit(&s, "nginx");
        (u["restarts"] == 1 && u["ready"] == true).then_some(s)
    });
    let nginx = control::unit(&status, "nginx");
    assert!(
        nginx["last_exit"]
            .as_str()
            .unwrap()
            .starts_with("liveness probe failed 3 times"),
        "{nginx}"
    );
    assert_ne!(nginx["pid"].as_i64().unwrap() as i32, old);
    // The frozen group was killed, not left behind stopped.
    wait_until("the old nginx group gone", Duration::from_secs(5), || {
        (kill(Pid::from_raw(old), None).is_err()).then_some(())
    });
    wait_until("ready again", BOOT, || {
        (http_get(&ex.readyz_url()).ok()?.0 == 200).then_some(())
    });
}

#[test]
fn a_worker_that_exits_at_once_backs_off_and_keeps_the_instance_unready() {
    let ex = Example::render();
    ex.set_service_env("worker", "WORKER_FAIL", "1");
    ex.edit_service("worker", |s| {
        s.insert("restart_delay".into(), "50ms".into());
        s.insert("restart_delay_max".into(), "800ms".into());
    });
    let (kiln, notify) = ex.boot_notified(KILN, &[], &[]);

    wait_until("six restarts of worker#1", BOOT, || {
        let s = control::status(&ex.socket())?;
        (control::try_unit(&s, "worker#1")?["restarts"].as_u64()? >= 6).then_some(())
    });
    // The delays announced for worker#1 double up to the cap. The log has its own writer
    // thread: the line of the sixth restart may reach the file just after status shows it.
    kiln.wait_log_count("worker#1: crash loop", 4, BOOT);
    let delays: Vec<String> = kiln
        .log()
        .lines()
        .filter(|l| l.contains("worker#1: crash loop"))
        .filter_map(|l| l.split("next start in ").nth(1).map(str::to_owned))
        .collect();
    assert_eq!(delays[..4], ["200ms", "400ms", "800ms", "800ms"], "{delays:?}");

    assert_eq!(http_get(&ex.readyz_url()).unwrap().0, 503);
    assert!(
        !notify.lines().iter().any(|l| l == "READY=1"),
        "a crash-looping instance announced READY=1"
    );
    let out = std::process::Command::new(KILN)
        .args(["status", "--socket", ex.socket().to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("why: worker#1 crash-looping: exit 1"), "{text}");
    assert!(
        text.contains("WORKER_FAIL=1, exiting with 1"),
        "the stderr tail is shown:\n{text}"
    );
}

#[test]
fn orphans_of_a_service_are_reaped() {
    let ex = Example::render();
    let pidfile = ex.dir.path().join("orphan.pid");
    // The subshell exits at once, orphaning `sleep 0.3`, which kiln (the subreaper) must reap.
    ex.edit_config(|c| {
        c + &format!(
            "\n[[service]]\nname = \"forker\"\ncommand = [\"sh\", \"-c\", \"(sleep 0.3 & echo $! > {}); exec sleep 1000\"]\n",
            pidfile.display()
        )
    });
    let (kiln, _notify) = ex.boot_ready(KILN);
    let orphan: i32 = wait_until("the orphan's pid", BOOT, || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    wait_until(
        "the orphan reaped, not a zombie",
        Duration::from_secs(10),
        || match std::fs::read_to_string(format!("/proc/{orphan}/stat")) {
            Err(_) => Some(()),
            Ok(stat) => {
                let ppid = stat.rsplit(") ").next()?.split(' ').nth(1)?;
                assert_eq!(
                    ppid,
                    kiln.pid().to_string(),
                    "the orphan was not reparented to kiln"
                );
                None
            }
        },
    );
}
