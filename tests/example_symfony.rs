//! The Symfony example (`examples/symfony/`): a Symfony 5.4 app from Debian's packages, booted by
//! kiln with Redis, php-fpm, nginx and two Messenger workers. The page, the baked prod cache, the
//! queue, `app:migrate` and the stop, against the real programs.

use nix::sys::signal::Signal;
use std::process::Command;
use std::time::Duration;
use testkit::control;
use testkit::peers::{Process, wait_no_tagged_processes};
use testkit::symfony::{SymfonyExample, sha256_prefix};
use testkit::wait::wait_until;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const WAIT: Duration = Duration::from_secs(20);
/// The instance's APP_SECRET in these tests: it must never show.
const SECRET: &str = "SECRET-symfony-5f1c";

/// The example with `APP_SECRET` = [`SECRET`] in its user-data.
fn render() -> SymfonyExample {
    SymfonyExample::render_with_secret(SECRET)
}

#[test]
fn kiln_check_accepts_the_rendered_example_without_a_warning() {
    let ex = render();
    let out = ex.check(KILN, &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("ok (4 services, 5 processes)"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn boots_to_ready_and_the_page_shows_the_instance_environment() {
    let ex = render();
    let (kiln, _notify) = ex.boot_ready(KILN);
    let status = control::status(&ex.socket()).unwrap();
    for unit in ["redis", "php-fpm", "nginx", "worker#1", "worker#2"] {
        assert_eq!(control::unit(&status, unit)["ready"], true, "{unit}: {status}");
    }

    let (code, page) = ex.page();
    assert_eq!(code, 200, "{page}");
    for line in [
        "greeting: Hello from the kiln Symfony example".to_string(),
        "app_env: prod".to_string(),
        "instance_id: iid-kiln-symfony-0001".to_string(),
        format!("app_secret_sha256: {}", sha256_prefix(SECRET)),
    ] {
        assert!(
            page.lines().any(|l| l == line),
            "{line:?} not on the page:\n{page}"
        );
    }
    assert!(!page.contains(SECRET), "{page}");
    assert!(!kiln.log().contains(SECRET), "{}", kiln.log());
}

#[test]
fn the_prod_cache_is_baked_and_serving_never_writes_to_the_release() {
    let ex = render();
    // Baked at render time, before any environment exists: the compiled container and routes.
    for file in ["App_KernelProdContainer.php", "url_matching_routes.php"] {
        assert!(
            ex.prod_cache().join(file).is_file(),
            "no {file} in {}",
            ex.prod_cache().display()
        );
    }
    let baked = ex.var_snapshot();

    let (kiln, _notify) = ex.boot_ready(KILN);
    for _ in 0..3 {
        let (code, page) = ex.page();
        assert_eq!(code, 200, "{page}");
    }
    // A worker boots the kernel too: from the same cache.
    let id = ex.queue_task("cache-check", 0.0);
    kiln.wait_log(&format!("handled task {id}"), WAIT);

    let after = ex.var_snapshot();
    let changed: Vec<_> = after
        .iter()
        .filter(|(path, meta)| baked.get(*path) != Some(meta))
        .map(|(path, _)| path)
        .collect();
    assert!(changed.is_empty(), "serving wrote to the release: {changed:?}");
    assert_eq!(baked.len(), after.len(), "files went missing from var/");
}

#[test]
fn a_queued_task_is_handled_once_by_a_worker_with_a_consumer_name_of_its_own() {
    let ex = render();
    let (kiln, _notify) = ex.boot_ready(KILN);
    let id = ex.queue_task("hello queue", 0.0);
    let handled = format!("handled task {id}: hello queue");
    kiln.wait_log(&handled, WAIT);
    let log = kiln.log();
    let lines: Vec<_> = log.lines().filter(|l| l.contains(&handled)).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("worker#1|") || lines[0].contains("worker#2|"),
        "{log}"
    );

    // Each worker reads the stream as INSTANCE-REPLICA: no two take each other's messages.
    let socket = ex.run_dir.join("redis.sock");
    let consumers = wait_until("both workers in the consumer group", WAIT, || {
        let out = Command::new("redis-cli")
            .args([
                "-s",
                socket.to_str().unwrap(),
                "XINFO",
                "CONSUMERS",
                "messages",
                "symfony",
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains("iid-kiln-symfony-0001-1") && text.contains("iid-kiln-symfony-0001-2")).then_some(text)
    });
    assert!(!consumers.contains("\nconsumer\n"), "{consumers}");
}

#[test]
fn app_migrate_applies_its_migrations_once_and_then_nothing() {
    let ex = render();
    let env = ex.freeze_env(KILN);
    let database_url = format!("sqlite:///{}/data/app.sqlite", ex.run_dir.display());

    let first = ex.console(&env, &["app:migrate"]);
    assert_eq!(first.code, Some(0), "{first:?}");
    assert!(
        first
            .stdout
            .contains("app:migrate: applied 2: 0001_create_greetings, 0002_seed_greetings"),
        "{first:?}"
    );
    let marked = ex.migrations_applied();
    assert_eq!(marked.len(), 1, "{marked:?}");
    assert!(
        marked[0].contains("applied 0001_create_greetings,0002_seed_greetings"),
        "{marked:?}"
    );

    let second = ex.console(&env, &["app:migrate"]);
    assert_eq!(second.code, Some(0), "{second:?}");
    assert!(
        second
            .stdout
            .contains("app:migrate: nothing to apply (2 migrations, all applied)"),
        "{second:?}"
    );
    assert_eq!(
        ex.migrations_applied(),
        marked,
        "a run that applied nothing marked something"
    );
    for out in [&first, &second] {
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(!text.contains(SECRET) && !text.contains(&database_url), "{text}");
    }
}

#[test]
fn two_app_migrate_at_once_apply_the_migrations_once() {
    let ex = render();
    let env = ex.freeze_env(KILN);
    let mut runs: Vec<Process> = (0..2)
        .map(|_| Process::spawn(ex.console_command(&env, &["app:migrate"])))
        .collect();
    for run in &mut runs {
        let status = run.wait_exit(WAIT);
        assert_eq!(status.code(), Some(0), "{}", run.log());
    }
    let logs: Vec<String> = runs.iter().map(Process::log).collect();
    let applied = logs
        .iter()
        .filter(|l| l.contains("app:migrate: applied 2"))
        .count();
    let nothing = logs
        .iter()
        .filter(|l| l.contains("app:migrate: nothing to apply"))
        .count();
    assert_eq!((applied, nothing), (1, 1), "{logs:?}");
    assert_eq!(ex.migrations_applied().len(), 1, "{:?}", ex.migrations_applied());
}

#[test]
fn sigterm_lets_a_worker_finish_the_task_in_hand_then_stops_everything_cleanly() {
    let ex = render();
    let (mut kiln, notify) = ex.boot_ready(KILN);
    let id = ex.queue_task("slow one", 2.0);
    kiln.wait_log(&format!("started task {id}"), WAIT);
    let log = kiln.log();
    let worker = log
        .lines()
        .find(|l| l.contains(&format!("started task {id}")))
        .and_then(|l| l.split("| ").next()?.rsplit(' ').next().map(str::to_owned))
        .unwrap_or_else(|| panic!("which worker started {id}?\n{log}"));

    kiln.signal(Signal::SIGTERM);
    let status = kiln.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", kiln.log());
    let log = kiln.log();
    assert!(
        kiln.line_of(&format!("{worker}: stopping (SIGTERM)"))
            < kiln.line_of(&format!("handled task {id}: slow one")),
        "{log}"
    );
    assert!(
        kiln.line_of(&format!("handled task {id}")) < kiln.line_of(&format!("{worker}: stopped (exit 0)")),
        "{log}"
    );
    // Reverse order: the workers leave before Redis, nginx before php-fpm.
    for unit in ["worker#1", "worker#2"] {
        assert!(
            kiln.line_of(&format!("{unit}: stopped (exit 0)")) < kiln.line_of("redis: stopping"),
            "{log}"
        );
    }
    assert!(
        kiln.line_of("nginx: stopped") < kiln.line_of("php-fpm: stopping (SIGQUIT)"),
        "{log}"
    );
    kiln.line_of("redis: stopped (exit 0)");
    kiln.line_of("php-fpm: stopped (exit 0)");
    assert!(!log.contains("SIGKILL"), "{log}");
    assert!(notify.lines().iter().any(|l| l == "STOPPING=1"));
    wait_no_tagged_processes(kiln.tag(), Duration::from_secs(5));
}

#[test]
fn a_worker_past_its_time_limit_exits_0_and_kiln_starts_it_again() {
    let ex = render();
    ex.edit_service("worker", |w| {
        w.insert("replicas".into(), 1.into());
        let argv = w["command"].as_array_mut().unwrap();
        for arg in argv.iter_mut() {
            if arg.as_str() == Some("--time-limit=3600") {
                *arg = "--time-limit=1".into();
            }
        }
    });
    let (kiln, _notify) = ex.boot_ready(KILN);
    // One replica: the unit is "worker", not "worker#1".
    kiln.wait_log("worker: exited (exit 0)", WAIT);
    kiln.wait_log_count("worker: started", 2, WAIT);
    let id = ex.queue_task("after the restart", 0.0);
    kiln.wait_log(&format!("handled task {id}: after the restart"), WAIT);
}
