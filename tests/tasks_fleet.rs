//! Once per fleet on real fleets: kiln instances of the example app, each a host of its own
//! (network namespace, kiln as PID 1 of its own PID namespace), booting at once with a task
//! `once = "fleet"` that php-fpm starts after. The lease lives in moto's DynamoDB (signed calls,
//! the table created by the test) or in the Consul emulator's KV store, both in the LAN's hub.
//! The task appends to a marker file in a directory every instance shares: what it holds says
//! how many runs there were. Needs root.

use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::control::{try_unit, unit};
use testkit::emulator::consul::ConsulAgent;
use testkit::haproxy::{Haproxy, HaproxyConfig};
use testkit::instance::{Instance, InstanceSpec};
use testkit::moto::Moto;
use testkit::netns::Lan;
use testkit::wait::wait_until;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
/// Four instances booting at once on a busy 2-core machine, a lease to expire on top.
const DEADLINE: Duration = Duration::from_secs(120);
const TABLE: &str = "kiln-tasks";
/// What the failing task says on stderr, and so what every instance's refusal repeats.
const FAILURE: &str = "migration 0007 failed: relation exists";

/// The task: one `run` line, a hang when the test left a `hang` file (removed first, so the next
/// holder does not hang), a failure when it left a `fail` file, then `done`.
fn script(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "echo run >> {d}/marker; \
         if [ -e {d}/fail ]; then echo '{FAILURE}' >&2; exit 3; fi; \
         if [ -e {d}/hang ]; then rm -f {d}/hang; sleep 600; fi; \
         sleep 1; echo done >> {d}/marker"
    )
}

fn haproxy_lb(haproxy: &Haproxy) -> toml::Table {
    let mut lb = toml::toml! {
        kind = "haproxy"
        server = "{instance_id}"
        address = "{local_ipv4}:8080"
        options = "check inter 500ms fall 2 rise 1"
        drain_timeout = "2s"
    };
    lb.insert(
        "socket".into(),
        haproxy.config.socket.display().to_string().into(),
    );
    lb.insert("backend".into(), haproxy.config.backend.clone().into());
    lb
}

/// One store and the fleet booting against it.
struct Fleet {
    lan: Lan,
    haproxy: Haproxy,
    /// The shared directory the task writes its marker in.
    shared: tempfile::TempDir,
    coordination: toml::Table,
    kiln_env: Vec<(String, String)>,
    _haproxy_dir: tempfile::TempDir,
}

impl Fleet {
    fn new(lan: Lan, coordination: toml::Table, kiln_env: Vec<(String, String)>) -> Fleet {
        let haproxy_dir = tempfile::tempdir().unwrap();
        let haproxy = Haproxy::start_in(HaproxyConfig::new(haproxy_dir.path()), lan.hub());
        Fleet {
            lan,
            haproxy,
            shared: tempfile::tempdir().unwrap(),
            coordination,
            kiln_env,
            _haproxy_dir: haproxy_dir,
        }
    }

    fn dir(&self) -> PathBuf {
        self.shared.path().to_path_buf()
    }

    /// `ids` on `release`, all started before any is waited for.
    fn boot(&self, release: &str, ids: &[&str]) -> Vec<Instance> {
        let lb = haproxy_lb(&self.haproxy);
        let env: Vec<(&str, &str)> = self
            .kiln_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ids.iter()
            .map(|id| {
                let spec = InstanceSpec {
                    kiln_bin: KILN.into(),
                    id: id.to_string(),
                    release: release.into(),
                    lb: lb.clone(),
                    pin: None,
                };
                Instance::boot_with(&self.lan, &spec, |t| self.add_task(t), &env)
            })
            .collect()
    }

    /// `[coordination]`, the task, and php-fpm after it.
    fn add_task(&self, t: &mut toml::Table) {
        t.insert("coordination".into(), self.coordination.clone().into());
        let mut task = toml::Table::new();
        task.insert("name".into(), "migrate".into());
        task.insert(
            "command".into(),
            vec!["sh".to_string(), "-c".into(), script(&self.dir())].into(),
        );
        task.insert("once".into(), "fleet".into());
        task.insert("timeout".into(), "15m".into());
        t.insert("task".into(), toml::Value::Array(vec![task.into()]));
        let services = t.get_mut("service").and_then(toml::Value::as_array_mut).unwrap();
        let php_fpm = services
            .iter_mut()
            .filter_map(toml::Value::as_table_mut)
            .find(|s| s["name"].as_str() == Some("php-fpm"))
            .unwrap();
        let after = php_fpm.entry("after").or_insert(toml::Value::Array(vec![]));
        after.as_array_mut().unwrap().push("migrate".into());
    }

    fn marker(&self) -> String {
        std::fs::read_to_string(self.dir().join("marker")).unwrap_or_default()
    }

    fn reset(&self, hang: bool, fail: bool) {
        let _ = std::fs::remove_file(self.dir().join("marker"));
        for (file, on) in [("hang", hang), ("fail", fail)] {
            match on {
                true => std::fs::write(self.dir().join(file), "").unwrap(),
                false => {
                    let _ = std::fs::remove_file(self.dir().join(file));
                }
            }
        }
    }
}

/// Ready, with the task done: run here by exactly one of `fleet`, the others naming that one.
fn all_ready_run_by_one(fleet: &[&Instance]) -> String {
    for i in fleet {
        i.wait_ready(DEADLINE);
    }
    let tasks: Vec<serde_json::Value> = fleet
        .iter()
        .map(|i| unit(&i.status().expect("status"), "migrate").clone())
        .collect();
    let ran: Vec<&str> = fleet
        .iter()
        .zip(&tasks)
        .filter(|(_, t)| t["task"]["ran_here"] == true)
        .map(|(i, _)| i.id.as_str())
        .collect();
    assert_eq!(ran.len(), 1, "ran here on {ran:?}: {tasks:?}");
    for t in &tasks {
        assert_eq!(t["state"], "done", "{t}");
        if t["task"]["ran_here"] == false {
            assert_eq!(t["task"]["by"], ran[0], "the others name who ran it: {t}");
        }
    }
    ran[0].to_string()
}

/// Every instance refused the boot naming the task and the winner's stderr. (READY=1 is sent
/// on a refusal too, with its STATUS=, so that systemd does not restart into the same failure.)
fn all_refuse(fleet: &[Instance]) {
    for i in fleet {
        let status = wait_until(&format!("{} refused", i.id), DEADLINE, || {
            let s = i.status()?;
            (s["phase"] == "failed").then_some(s)
        });
        let reason = status["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("migrate") && reason.contains(FAILURE),
            "{}: {reason}",
            i.id
        );
        assert_eq!(unit(&status, "migrate")["state"], "failed", "{status}");
    }
}

/// The drill on one store: four at once run it once; the holder killed mid-run is taken over
/// on the next release; a failure refuses every instance with its reason.
fn drill(fleet: &Fleet) {
    fleet.reset(false, false);
    let v1 = fleet.boot("v1", &["i-a", "i-b", "i-c", "i-d"]);
    all_ready_run_by_one(&v1.iter().collect::<Vec<_>>());
    assert_eq!(fleet.marker(), "run\ndone\n", "four instances at once: one run");
    drop(v1);

    // A new release runs it again; its holder dies mid-run and another takes over.
    fleet.reset(true, false);
    let v2 = fleet.boot("v2", &["i-e", "i-f", "i-g"]);
    let holder = wait_until("a holder running the task", DEADLINE, || {
        v2.iter().find(|i| {
            let runs =
                |s: serde_json::Value| try_unit(&s, "migrate").is_some_and(|t| t["state"] == "running");
            i.status().is_some_and(runs) && fleet.marker() == "run\n"
        })
    });
    holder.kill();
    let rest: Vec<&Instance> = v2.iter().filter(|i| i.id != holder.id).collect();
    let taken = all_ready_run_by_one(&rest);
    assert_ne!(taken, holder.id);
    assert_eq!(
        fleet.marker(),
        "run\nrun\ndone\n",
        "the killed run, then the one that took over"
    );
    drop(v2);

    fleet.reset(false, true);
    let v3 = fleet.boot("v3", &["i-h", "i-i", "i-j"]);
    all_refuse(&v3);
    assert_eq!(
        fleet.marker(),
        "run\n",
        "a failure is final for the release: one run"
    );
}

#[test]
fn dynamodb_fleet_runs_the_task_once_per_release_takes_over_and_refuses_alike() {
    let lan = Lan::create();
    let moto = Moto::start_in(Some(&lan.hub().path()), lan.hub_ip());
    moto.boto3(&format!(
        r#"client("dynamodb").create_table(TableName="{TABLE}",
    KeySchema=[{{"AttributeName": "pk", "KeyType": "HASH"}}],
    AttributeDefinitions=[{{"AttributeName": "pk", "AttributeType": "S"}}],
    BillingMode="PAY_PER_REQUEST")"#
    ));
    let mut coordination = toml::toml! {
        store = "dynamodb"
        region = "us-east-1"
        lease_ttl = "3s"
        poll_interval = "200ms"
    };
    coordination.insert("table".into(), TABLE.into());
    coordination.insert("endpoint".into(), moto.endpoint().into());
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), moto.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            moto.secret_access_key.clone(),
        ),
    ];
    let fleet = Fleet::new(lan, coordination, env);
    drill(&fleet);
    // One item per release, each with its outcome; the key names the task and the release.
    let items = moto.boto3(&format!(
        r#"items = client("dynamodb").scan(TableName="{TABLE}")["Items"]
print(json.dumps(sorted([[i["pk"]["S"], i["state"]["S"]] for i in items])))"#
    ));
    let items: Vec<(String, String)> = serde_json::from_str(items.trim()).unwrap();
    let states: Vec<&str> = items.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(states, ["done", "done", "failed"], "{items:?}");
    for ((key, _), release) in items.iter().zip(["v1", "v2", "v3"]) {
        assert!(
            key.starts_with(&format!("kiln/tasks/migrate/{release}/")),
            "{key}"
        );
    }
}

#[test]
fn consul_fleet_runs_the_task_once_per_release_takes_over_and_refuses_alike() {
    let lan = Lan::create();
    let agent = ConsulAgent::start_in(&lan.hub().path(), (lan.hub_ip(), 0).into());
    let mut coordination = toml::toml! {
        store = "consul"
        lease_ttl = "10s"
        poll_interval = "200ms"
    };
    coordination.insert("agent".into(), agent.url().into());
    let fleet = Fleet::new(lan, coordination, vec![]);
    drill(&fleet);
    let keys = agent.kv_keys("kiln/tasks/migrate/");
    for release in ["v1", "v2", "v3"] {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("kiln/tasks/migrate/{release}/"))),
            "{release}: {keys:?}"
        );
    }
}
