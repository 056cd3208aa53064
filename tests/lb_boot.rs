//! End to end: `kiln boot` of the example PHP app (Debian's php-fpm and nginx) joining a real
//! HAProxy, leaving it on SIGTERM without failing a request, and answering HAProxy's agent-check.

use nix::sys::signal::Signal;
use std::time::Duration;
use testkit::control;
use testkit::drill::{DrillOptions, zero_loss};
use testkit::example::Example;
use testkit::haproxy::{Haproxy, HaproxyConfig, ServerRow};
use testkit::moto::Moto;
use testkit::peers::Kiln;
use testkit::wait::{http_get, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const BOOT: Duration = Duration::from_secs(60);
/// kiln's exit after SIGTERM: it may wait out the default 30 s `drain_timeout` against a slow
/// peer (moto on a loaded machine), so the bound is above it.
const DEADLINE: Duration = Duration::from_secs(45);

/// Adds `[lb]` (haproxy) to the example's config.
fn join_haproxy(example: &Example, socket: &str, server: &str, options: &str) {
    let address = example.http_addr.to_string();
    example.edit_toml(|t| {
        let lb: toml::Table = toml::from_str(&format!(
            "kind = \"haproxy\"\nsocket = {socket:?}\nbackend = \"app\"\nserver = {server:?}\n\
             address = {address:?}\noptions = {options:?}\ndrain_timeout = \"10s\"\n"
        ))
        .unwrap();
        t.insert("lb".into(), toml::Value::Table(lb));
    });
}

/// Rewrites the nocloud seed: the instance's id and local IPv4 as the metadata step will see them.
fn set_instance(example: &Example, instance_id: &str, local_ipv4: &str) {
    std::fs::write(
        example.seed_dir.join("meta-data"),
        format!("instance-id: {instance_id}\nlocal-hostname: kiln-test\nlocal-ipv4: {local_ipv4}\n"),
    )
    .unwrap();
}

fn lb_status(example: &Example) -> Option<serde_json::Value> {
    control::status(&example.socket()).map(|s| s["lb"].clone())
}

fn up(row: Option<&ServerRow>) -> bool {
    row.is_some_and(|r| r.status == "UP")
}

#[test]
fn the_booted_example_joins_haproxy_serves_the_page_and_leaves_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let haproxy = Haproxy::start(HaproxyConfig::new(dir.path()));
    let example = Example::render();
    // Server name and address come from the instance's metadata (the nocloud seed).
    set_instance(&example, "i-0e2e000000000000a", "127.0.0.1");
    let port = example.http_addr.port();
    join_haproxy(
        &example,
        haproxy.config.socket.to_str().unwrap(),
        "{instance_id}",
        "check inter 500ms",
    );
    example.edit_toml(|t| {
        t["lb"]["address"] = format!("{{local_ipv4}}:{port}").into();
    });
    let notify = testkit::notify::NotifySocket::bind();
    let (key, value) = notify.env();
    let config = example.config_path.to_str().unwrap();
    let mut kiln = Kiln::boot_with(KILN, &["boot", "--config", config], &[(key, &value)]);

    haproxy.wait_server("the instance UP", "i-0e2e000000000000a", BOOT, up);
    let lb = lb_status(&example).unwrap();
    assert_eq!(lb["state"], "registered", "{lb}");
    assert_eq!(lb["kind"], "haproxy");
    assert!(
        lb["target"].as_str().unwrap().contains("app/i-0e2e000000000000a"),
        "{lb}"
    );
    let (status, body) = http_get(&haproxy.url("/")).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("app_env: prod"), "not the PHP page: {body}");
    assert!(body.contains("php_pid: "), "not the PHP page: {body}");

    kiln.signal(Signal::SIGTERM);
    let exit = kiln.wait_exit(DEADLINE);
    assert!(exit.success(), "{exit}\n{}", kiln.log());
    assert_eq!(
        haproxy.server("i-0e2e000000000000a"),
        None,
        "the server is still in the backend"
    );
    // systemd was asked for time while the drain ran, after STOPPING=1.
    let lines = notify.lines();
    let stopping = lines
        .iter()
        .position(|l| l == "STOPPING=1")
        .expect("STOPPING=1 sent");
    let extend = lines
        .iter()
        .position(|l| l.starts_with("EXTEND_TIMEOUT_USEC="))
        .unwrap_or_else(|| panic!("no EXTEND_TIMEOUT_USEC: {lines:?}"));
    assert!(stopping < extend, "{lines:?}");
    let log = kiln.log();
    assert!(log.contains("lb: left"), "{log}");
    // The drain came before the services stopped.
    let left = log.find("lb: left").unwrap();
    let nginx_stop = log.find("nginx: stopping").expect("nginx was stopped");
    assert!(left < nginx_stop, "services stopped before the drain:\n{log}");
}

#[test]
fn zero_loss_when_one_of_two_instances_is_stopped_under_load() {
    let report = zero_loss(&DrillOptions::new(KILN));
    eprintln!("{report}");
    assert_eq!(report.failed, 0, "{report}");
    assert!(
        report.served_by_stopped > 0 && report.served_by_survivor > 0,
        "{report}"
    );
    assert_eq!(report.to_stopped_after_drain, 0, "{report}");
    assert!(report.server_gone, "{report}");
    assert!(report.survivor_up, "{report}");
    assert!(report.exit.success(), "{report}");
    assert!(
        report
            .kiln_drain
            .as_deref()
            .is_some_and(|d| d.starts_with("drained in")),
        "{report}"
    );
}

/// HAProxy (a static server with `agent-check` on kiln's agent port; kiln registers nothing)
/// sees the instance UP, DOWN while a service crash-loops, UP again, then DRAIN on SIGTERM.
#[test]
fn haproxy_agent_check_sees_up_down_on_a_crash_loop_and_drain_on_sigterm() {
    let example = Example::render();
    let agent = testkit::net::free_addr();
    let flag = example.dir.path().join("crash");
    let flag_str = flag.to_str().unwrap().to_string();
    example.edit_toml(|t| {
        t["health"]
            .as_table_mut()
            .unwrap()
            .insert("agent_listen".into(), agent.to_string().into());
        let services = t["service"].as_array_mut().unwrap();
        // Exits at once while the flag file exists: a crash loop on demand.
        services.push(toml::Value::Table(
            toml::from_str(&format!(
                "name = \"flaky\"\ncommand = [\"sh\", \"-c\", \"test -e {flag_str} && exit 1; exec sleep 100000\"]\n\
                 ready_after = \"200ms\"\nrestart_delay = \"100ms\"\nrestart_delay_max = \"500ms\"\n"
            ))
            .unwrap(),
        ));
        // Stops first (it runs after nginx) and slowly: nginx keeps serving meanwhile, so what
        // HAProxy shows during the stop is the agent's drain, not a failed health check.
        services.push(toml::Value::Table(
            toml::from_str(
                "name = \"linger\"\nafter = [\"nginx\"]\n\
                 command = [\"sh\", \"-c\", \"trap '' TERM; while true; do sleep 0.1; done\"]\n\
                 stop_timeout = \"3s\"\nready_after = \"100ms\"\n",
            )
            .unwrap(),
        ));
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config = HaproxyConfig::new(dir.path());
    config.backend_lines.push(format!(
        "server kiln {} check inter 200ms agent-check agent-port {} agent-inter 200ms",
        example.http_addr,
        agent.port()
    ));
    let haproxy = Haproxy::start(config);
    let mut kiln = example.boot(KILN);

    haproxy.wait_server("UP", "kiln", BOOT, up);

    std::fs::write(&flag, "").unwrap();
    let pid = wait_until("flaky's pid", DEADLINE, || {
        control::unit_pid(&example.socket(), "flaky")
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let row = haproxy
        .wait_server("DOWN by the agent", "kiln", DEADLINE, |r| {
            r.is_some_and(|r| r.status.starts_with("DOWN"))
        })
        .unwrap();
    assert!(row.last_agt.contains("flaky"), "{row:?}");
    // nginx itself is fine: the agent took the server down, not the health check.
    assert!(row.check_desc.contains("passed"), "{row:?}");

    std::fs::remove_file(&flag).unwrap();
    haproxy.wait_server("UP again", "kiln", DEADLINE, up);

    kiln.signal(Signal::SIGTERM);
    haproxy.wait_server("DRAIN by the agent", "kiln", DEADLINE, |r| {
        r.is_some_and(|r| r.status.starts_with("DRAIN"))
    });
    let exit = kiln.wait_exit(DEADLINE);
    assert!(exit.success(), "{exit}");
}

/// HAProxy is down when the instance becomes ready: kiln keeps retrying, `kiln status` says
/// unregistered and why, and the instance joins once HAProxy is up.
#[test]
fn haproxy_down_at_boot_retries_and_joins_when_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = HaproxyConfig::new(dir.path());
    let example = Example::render();
    join_haproxy(
        &example,
        config.socket.to_str().unwrap(),
        "kiln-a",
        "check inter 500ms",
    );
    let mut kiln: Kiln = example.boot(KILN);

    let reason = wait_until("status: unregistered with a reason", BOOT, || {
        let lb = lb_status(&example)?;
        (lb["state"] == "unregistered").then_some(())?;
        lb["reason"]
            .as_str()
            .filter(|r| r.contains("attempt 2"))
            .map(String::from)
    });
    assert!(reason.contains("cannot connect"), "{reason}");
    assert!(reason.contains(config.socket.to_str().unwrap()), "{reason}");
    let status = control::status(&example.socket()).unwrap();
    assert_eq!(
        status["phase"], "ready",
        "services are ready, only the LB is missing"
    );

    let haproxy = Haproxy::start(config);
    haproxy.wait_server("the instance UP", "kiln-a", DEADLINE, up);
    wait_until("status: registered", DEADLINE, || {
        (lb_status(&example)?["state"] == "registered").then_some(())
    });
    kiln.signal(Signal::SIGTERM);
    assert!(kiln.wait_exit(DEADLINE).success());
    assert_eq!(haproxy.server("kiln-a"), None);
}

/// ELBv2 through `kiln boot`: credentials from kiln's environment, the instance id from the
/// metadata, moto_server checking every signature. The target is registered once the services
/// are ready and gone after the stop; a wrong secret is shown as SignatureDoesNotMatch and the
/// instance never claims to be registered.
#[test]
fn elbv2_registration_through_kiln_boot() {
    let moto = Moto::start();
    let instance = "i-0e2e00000000000b1";
    let boot = |secret: &str| {
        let example = Example::render();
        set_instance(&example, instance, "127.0.0.1");
        let (arn, endpoint) = (moto.target_group_arn.clone(), moto.endpoint());
        example.edit_toml(|t| {
            let lb: toml::Table = toml::from_str(&format!(
                "kind = \"elbv2\"\ntarget_group_arn = {arn:?}\nport = 8080\nendpoint = {endpoint:?}\n\
                 drain_timeout = \"10s\"\n"
            ))
            .unwrap();
            t.insert("lb".into(), toml::Value::Table(lb));
        });
        let config = example.config_path.to_str().unwrap().to_string();
        let kiln = Kiln::boot_with(
            KILN,
            &["boot", "--config", &config],
            &[
                ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
                ("AWS_SECRET_ACCESS_KEY", secret),
            ],
        );
        (example, kiln)
    };

    let (example, mut kiln) = boot(&moto.secret_access_key);
    wait_until("status: registered", BOOT, || {
        (lb_status(&example)?["state"] == "registered").then_some(())
    });
    assert_eq!(
        moto.targets(),
        vec![(instance.to_string(), 8080, "healthy".to_string())]
    );
    kiln.signal(Signal::SIGTERM);
    assert!(kiln.wait_exit(DEADLINE).success(), "{}", kiln.log());
    assert!(moto.targets().is_empty(), "{:?}", moto.targets());
    assert!(
        !kiln.log().contains(&moto.secret_access_key),
        "the secret is in kiln's log"
    );

    let (example, mut kiln) = boot("not-the-secret");
    let reason = wait_until("status: unregistered, attempt 2", BOOT, || {
        let lb = lb_status(&example)?;
        assert_ne!(lb["state"], "registered", "{lb}");
        lb["reason"]
            .as_str()
            .filter(|r| r.contains("attempt 2"))
            .map(String::from)
    });
    assert!(reason.contains("SignatureDoesNotMatch"), "{reason}");
    assert!(moto.targets().is_empty());
    kiln.signal(Signal::SIGTERM);
    assert!(kiln.wait_exit(DEADLINE).success(), "{}", kiln.log());
    assert!(
        !kiln.log().contains("not-the-secret"),
        "the secret is in kiln's log"
    );
}

/// A template naming a fact the instance does not have refuses the boot: nothing starts, and
/// status names the key and the missing fact.
#[test]
fn a_template_without_its_fact_refuses_the_boot() {
    let example = Example::render();
    set_instance(&example, "i-0e2e00000000000c1", "127.0.0.1");
    join_haproxy(&example, "/run/no-haproxy.sock", "web-{region}", "");
    let mut kiln = example.boot(KILN);
    let status = wait_until("a refused boot", BOOT, || {
        control::status(&example.socket()).filter(|s| s["phase"] == "failed")
    });
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("[lb] server"), "{reason}");
    assert!(reason.contains("no region"), "{reason}");
    let running: Vec<_> = status["services"]
        .as_array()
        .map(|units| units.iter().filter(|u| u["pid"].is_number()).collect())
        .unwrap_or_default();
    assert!(running.is_empty(), "services were started: {running:?}");
    kiln.signal(Signal::SIGTERM);
    kiln.wait_exit(DEADLINE);
}

/// Seal drift with `on_drift = "fail"` after registration: the instance fails for good, so it
/// leaves the load balancer by itself (the fleet replaces it), and status says so.
#[test]
fn seal_drift_with_the_fail_policy_takes_the_instance_out_of_haproxy() {
    let dir = tempfile::tempdir().unwrap();
    let haproxy = Haproxy::start(HaproxyConfig::new(dir.path()));
    let example = Example::render();
    join_haproxy(
        &example,
        haproxy.config.socket.to_str().unwrap(),
        "kiln-a",
        "check inter 500ms",
    );
    let manifest = example.dir.path().join("seal");
    example.edit_config(|c| {
        c + &format!(
            "\n[seal]\npaths = [\"{}\"]\nmanifest = \"{}\"\non_drift = \"fail\"\nrescan = \"1h\"\nreadonly = false\n",
            example.app_dir.display(),
            manifest.display()
        )
    });
    let sealed = std::process::Command::new(KILN)
        .args(["seal", "--config", example.config_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        sealed.status.success(),
        "kiln seal: {}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    let mut kiln = example.boot(KILN);
    haproxy.wait_server("the instance UP", "kiln-a", BOOT, up);

    let page = example.app_dir.join("public/index.php");
    let text = std::fs::read_to_string(&page).unwrap() + "\necho 'live fix';\n";
    std::fs::write(&page, text).unwrap();

    haproxy.wait_server("the server gone", "kiln-a", DEADLINE, |r| r.is_none());
    let lb = wait_until("status: deregistered", DEADLINE, || {
        lb_status(&example).filter(|lb| lb["state"] == "deregistered")
    });
    assert!(
        lb["drain"].as_str().unwrap_or("").starts_with("drained in"),
        "{lb}"
    );
    let status = control::status(&example.socket()).unwrap();
    assert_eq!(status["phase"], "failed", "{status}");
    kiln.signal(Signal::SIGTERM);
    assert!(kiln.wait_exit(DEADLINE).success(), "{}", kiln.log());
}
