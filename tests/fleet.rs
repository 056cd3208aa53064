//! `kiln fleet` against real fleets: kiln instances of the example app, each a host of its own
//! (network namespace, own address, kiln as PID 1 of its own PID namespace), behind a real
//! HAProxy or registered in the Consul emulator, asked from the hub where the load balancer runs.
//! Needs root.

use std::time::Duration;
use testkit::emulator::consul::ConsulAgent;
use testkit::fleet_look::FleetLook;
use testkit::haproxy::{Haproxy, HaproxyConfig};
use testkit::instance::{Instance, InstanceSpec};
use testkit::netns::Lan;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const DEADLINE: Duration = Duration::from_secs(30);

fn haproxy_lb(haproxy: &Haproxy) -> toml::Table {
    toml::toml! {
        kind = "haproxy"
        server = "{instance_id}"
        address = "{local_ipv4}:8080"
        options = "check inter 500ms fall 2 rise 1"
        drain_timeout = "5s"
    }
    .into_iter()
    .chain([
        (
            "socket".to_string(),
            haproxy.config.socket.display().to_string().into(),
        ),
        ("backend".to_string(), haproxy.config.backend.clone().into()),
    ])
    .collect()
}

fn spec(id: &str, release: &str, lb: &toml::Table) -> InstanceSpec {
    InstanceSpec {
        kiln_bin: KILN.into(),
        id: id.into(),
        release: release.into(),
        lb: lb.clone(),
        pin: None,
    }
}

fn wait_up(haproxy: &Haproxy, i: &Instance) {
    haproxy.wait_server(&format!("{} UP", i.id), &i.id, DEADLINE, |r| {
        r.is_some_and(|r| r.status == "UP")
    });
}

#[test]
fn haproxy_fleet_uniform_rolling_and_members_that_do_not_answer() {
    let lan = Lan::create();
    let dir = tempfile::tempdir().unwrap();
    let haproxy = Haproxy::start_in(HaproxyConfig::new(dir.path()), lan.hub());
    let lb = haproxy_lb(&haproxy);
    let v1: Vec<Instance> = ["i-a", "i-b"]
        .map(|id| Instance::boot(&lan, &spec(id, "v1", &lb)))
        .into_iter()
        .collect();
    v1.iter().for_each(|i| wait_up(&haproxy, i));
    let config = v1[0].example.config_path.to_str().unwrap().to_string();

    let look = FleetLook::run(lan.hub(), KILN.as_ref(), &["--config", &config]);
    assert_eq!((look.verdict(), look.exit), ("uniform", 0), "{}", look.shown());
    assert_eq!(
        look.images(),
        [("v1".to_string(), v1[0].root_hash.clone(), 2)],
        "{}",
        look.shown()
    );
    let a = look.member("i-a").unwrap();
    assert_eq!(a["address"], v1[0].http_addr().to_string());
    assert_eq!(a["health"], v1[0].health_addr().to_string());
    assert_eq!(
        (a["lb"].as_str(), a["kiln"]["phase"].as_str()),
        (Some("in_service"), Some("ready"))
    );

    // The table a person reads: the verdict first, one row per member.
    let out = lan
        .hub()
        .command(KILN)
        .args(["fleet", "--config", &config])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with(&format!("UNIFORM: 2 ready on v1 ({})\n", &v1[0].root_hash[..12])),
        "{table}"
    );
    assert!(table.contains("\nADDRESS "), "{table}");
    assert_eq!(table.matches(":8080  UP ").count(), 2, "{table}");

    let v2 = Instance::boot(&lan, &spec("i-c", "v2", &lb));
    wait_up(&haproxy, &v2);
    let look = FleetLook::run(lan.hub(), KILN.as_ref(), &["--config", &config]);
    assert_eq!((look.verdict(), look.exit), ("rolling", 2), "{}", look.shown());
    assert_eq!(
        (look.count_of(&v1[0].root_hash), look.count_of(&v2.root_hash)),
        (2, 1),
        "{}",
        look.shown()
    );

    // A member at an address where no host answers at all: reported after the timeout, the
    // others are still asked and shown.
    haproxy.cmd("add server app/i-ghost 10.77.0.250:8080");
    haproxy.cmd("set server app/i-ghost state ready");
    let look = FleetLook::run(
        lan.hub(),
        KILN.as_ref(),
        &["--config", &config, "--timeout", "300ms"],
    );
    assert_eq!((look.verdict(), look.exit), ("drift", 1), "{}", look.shown());
    let ghost = look.member("i-ghost").unwrap();
    assert_eq!(ghost["state"], "unreachable");
    assert_eq!(ghost["error"], "no answer within 300ms", "{}", look.shown());
    assert_eq!(look.count_of(&v2.root_hash), 1, "{}", look.shown());

    // Killed as a whole: HAProxy still lists it, kiln does not answer.
    haproxy.cmd("set server app/i-ghost state maint");
    haproxy.cmd("del server app/i-ghost");
    v2.kill();
    let look = FleetLook::run(lan.hub(), KILN.as_ref(), &["--config", &config]);
    assert_eq!((look.verdict(), look.exit), ("drift", 1), "{}", look.shown());
    let problems = look.problems();
    assert_eq!(problems.len(), 1, "{}", look.shown());
    assert!(
        problems[0].starts_with(&format!("{} (i-c): the load balancer lists it (", v2.http_addr()))
            && problems[0].contains("but kiln does not answer at"),
        "{problems:?}"
    );
}

#[test]
fn consul_fleet_from_the_config_or_from_flags() {
    let lan = Lan::create();
    let agent = ConsulAgent::start_in(&lan.hub().path(), (lan.hub_ip(), 8500).into());
    let mut lb = toml::toml! {
        kind = "consul"
        service = "app"
        server = "{instance_id}"
        address = "{local_ipv4}:8080"
        check_url = "http://{local_ipv4}:9100/readyz"
        check_interval = "1s"
        drain_timeout = "1s"
    };
    lb.insert("agent".into(), format!("http://{}", agent.addr).into());
    let mut fleet: Vec<Instance> = ["i-a", "i-b"]
        .map(|id| Instance::boot(&lan, &spec(id, "v1", &lb)))
        .into_iter()
        .collect();
    for i in &fleet {
        testkit::wait::wait_until(&format!("{} passing", i.id), DEADLINE, || {
            (agent.aggregated_status(&i.id)? == "passing").then_some(())
        });
    }
    let config = fleet[0].example.config_path.to_str().unwrap().to_string();
    let look = FleetLook::run(lan.hub(), KILN.as_ref(), &["--config", &config]);
    assert_eq!((look.verdict(), look.exit), ("uniform", 0), "{}", look.shown());
    assert_eq!(look.member("i-b").unwrap()["lb_word"], "passing");

    // From a laptop without the image's config: flags only.
    fleet[1].terminate();
    fleet[1].wait_gone(DEADLINE);
    let agent_url = format!("http://{}", agent.addr);
    let look = FleetLook::run(
        lan.hub(),
        KILN.as_ref(),
        &["--agent", &agent_url, "--service", "app", "--health-port", "9100"],
    );
    assert_eq!((look.verdict(), look.exit), ("uniform", 0), "{}", look.shown());
    assert_eq!(look.members(), 1, "{}", look.shown());
    fleet.clear();
}

#[test]
fn a_pinned_fleet_shows_what_is_expected_and_names_an_instance_on_the_wrong_image() {
    let lan = Lan::create();
    let dir = tempfile::tempdir().unwrap();
    let haproxy = Haproxy::start_in(HaproxyConfig::new(dir.path()), lan.hub());
    let lb = haproxy_lb(&haproxy);
    let pinned = |id: &str, release: &str| InstanceSpec {
        pin: Some("v1".into()),
        ..spec(id, release, &lb)
    };
    let right = Instance::boot(&lan, &pinned("i-right", "v1"));
    let wrong = Instance::boot(&lan, &pinned("i-wrong", "v2"));
    wait_up(&haproxy, &right);
    testkit::wait::wait_until("i-wrong refused", DEADLINE, || {
        (wrong.status()?["phase"] == "failed").then_some(())
    });
    let config = right.example.config_path.to_str().unwrap().to_string();
    let wrong_ip = wrong.health_addr().ip().to_string();
    let look = FleetLook::run(
        lan.hub(),
        KILN.as_ref(),
        &["--config", &config, "--instance", &wrong_ip],
    );
    assert_eq!((look.verdict(), look.exit), ("drift", 1), "{}", look.shown());
    let r = look.member("i-right").unwrap();
    assert_eq!(r["kiln"]["expected"]["release"], "v1", "{}", look.shown());
    assert_eq!(r["state"], "ready");
    // Never registered (the boot was refused), named by the instance list and its own id.
    let w = look
        .member("i-wrong")
        .unwrap_or_else(|| panic!("{}", look.shown()));
    assert_eq!(
        (w["lb"].as_str(), w["state"].as_str()),
        (Some("not_listed"), Some("failed"))
    );
    let problem = w["problem"].as_str().unwrap();
    assert!(
        problem.starts_with("runs v2 (") && problem.ends_with("but the launch configuration pins v1"),
        "{problem}"
    );

    let out = lan
        .hub()
        .command(KILN)
        .args(["fleet", "--config", &config, "--instance", &wrong_ip])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.contains("i-right")).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[2..7],
        ["ready", "i-right", "v1", &right.root_hash[..12], "v1"],
        "{table}"
    );
}
