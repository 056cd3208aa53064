//! The read-only "who is in it" questions `kiln fleet` asks: a real HAProxy's backend through the
//! runtime API, and the Consul emulator's `/v1/health/service/<name>` and
//! `/v1/catalog/service/<name>` after kiln's own registrar registered there.

use kiln::config::lb::{LbPlan, RuntimeSocket};
use kiln::config::{HealthConfig, LbTable};
use kiln::lb::Registrar;
use kiln::lb::consul::{ConsulApi, ConsulRegistrar};
use kiln::lb::haproxy::RuntimeApi;
use kiln::metadata::InstanceFacts;
use testkit::emulator::consul::ConsulAgent;
use testkit::haproxy::{Haproxy, HaproxyConfig};
use testkit::wait::http_get;

fn facts(id: &str, ip: &str) -> InstanceFacts {
    InstanceFacts {
        provider: "test".into(),
        instance_id: Some(id.into()),
        local_ipv4: Some(ip.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_backend_lists_every_server_with_its_state_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let haproxy = Haproxy::start(HaproxyConfig::new(dir.path()));
    let api = RuntimeApi::new(RuntimeSocket::parse(haproxy.config.socket.to_str().unwrap()).unwrap());
    assert!(api.servers("app").await.unwrap().is_empty());

    for line in [
        "add server app/i-1 10.0.0.1:8080",
        "add server app/i-2 10.0.0.2:8080",
        "set server app/i-1 state ready",
        "set server app/i-2 state drain",
    ] {
        haproxy.cmd(line);
    }
    let servers = api.servers("app").await.unwrap();
    let seen: Vec<(&str, &str, &str)> = servers
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str(), s.addr.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("i-1", "no check", "10.0.0.1:8080"),
            ("i-2", "DRAIN", "10.0.0.2:8080")
        ]
    );

    let err = api.servers("nosuch").await.unwrap_err().0;
    assert!(
        err.contains("show stat nosuch") && err.contains("No such proxy"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consul_service_lists_its_instances_with_their_health() {
    let agent = ConsulAgent::start();
    let lb = |id: &str, ip: &str| {
        let text = format!(
            "kind = \"consul\"\nagent = {:?}\nservice = \"app\"\naddress = \"{{local_ipv4}}:8080\"\n\
             check_url = \"{}/v1/agent/services\"\ncheck_interval = \"1s\"\n",
            agent.url(),
            agent.url()
        );
        let table: LbTable = toml::from_str(&text).unwrap();
        let Some(LbPlan::Consul(plan)) = table.check().unwrap().plan else {
            panic!("not a consul plan")
        };
        ConsulRegistrar::new(&plan, &HealthConfig::default(), &facts(id, ip)).unwrap()
    };
    let (one, two) = (lb("i-1", "10.0.0.1"), lb("i-2", "10.0.0.2"));
    one.register().await.unwrap();
    two.register().await.unwrap();
    two.deregister().await.unwrap(); // maintenance: still listed, not passing

    let api = ConsulApi::new(&agent.url()).unwrap();
    let mut health = api.service_health("app").await.unwrap();
    health.sort_by(|a, b| a.id.cmp(&b.id));
    let seen: Vec<(&str, &str, u16, &str)> = health
        .iter()
        .map(|h| (h.id.as_str(), h.address.as_str(), h.port, h.status.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("i-1", "10.0.0.1", 8080, "passing"),
            ("i-2", "10.0.0.2", 8080, "maintenance")
        ]
    );
    assert!(api.service_health("other").await.unwrap().is_empty());

    // The emulator's catalog and ?passing answer as Consul's do.
    let catalog = http_get(&format!("{}/v1/catalog/service/app", agent.url())).unwrap();
    let catalog: serde_json::Value = serde_json::from_str(&catalog.1).unwrap();
    let ids: Vec<&str> = catalog
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ServiceID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["i-1", "i-2"]);
    assert_eq!(catalog[0]["ServiceAddress"], "10.0.0.1");
    let (_, passing) = http_get(&format!("{}/v1/health/service/app?passing", agent.url())).unwrap();
    let passing: serde_json::Value = serde_json::from_str(&passing).unwrap();
    assert_eq!(passing.as_array().unwrap().len(), 1, "{passing}");
    assert_eq!(passing[0]["Service"]["ID"], "i-1");
    let err = ConsulApi::new("http://127.0.0.1:1")
        .unwrap()
        .service_health("app")
        .await
        .unwrap_err()
        .0;
    assert!(
        err.starts_with("consul agent at http://127.0.0.1:1: GET /v1/health/service/app:"),
        "{err}"
    );
}
