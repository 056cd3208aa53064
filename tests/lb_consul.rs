//! The Consul registrar against the agent API emulator, whose HTTP check polls kiln's real
//! `/readyz` (the health server driven by a hand-set phase).

use kiln::config::lb::{ConsulPlan, LbPlan};
use kiln::config::{HealthConfig, LbTable};
use kiln::lb::consul::ConsulRegistrar;
use kiln::lb::{Membership, Registrar};
use kiln::metadata::InstanceFacts;
use kiln::state::{LbState, Phase, Shared};
use kiln::systemd::notify::Notifier;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::emulator::consul::ConsulAgent;
use testkit::wait::wait_until;

const ID: &str = "i-0abc";
const DEADLINE: Duration = Duration::from_secs(10);

fn facts() -> InstanceFacts {
    InstanceFacts {
        provider: "test".into(),
        instance_id: Some(ID.into()),
        local_ipv4: Some("10.0.0.5".into()),
        ..Default::default()
    }
}

fn lb_config(agent: &str) -> ConsulPlan {
    let text = format!(
        "kind = \"consul\"\nagent = {agent:?}\nservice = \"app\"\naddress = \"{{local_ipv4}}:8080\"\n\
         tags = [\"php\", \"v1\"]\ncheck_interval = \"1s\"\ndrain_timeout = \"1s\"\n"
    );
    let table: LbTable = toml::from_str(&text).unwrap();
    match table.check().unwrap().plan {
        Some(LbPlan::Consul(plan)) => plan,
        other => panic!("not a consul plan: {other:?}"),
    }
}

/// kiln's health server on a free port, answering from `shared` (on threads of its own, which
/// end with the test process).
fn readyz(shared: &Arc<Shared>) -> HealthConfig {
    let listen: SocketAddr = testkit::net::free_addr();
    kiln::serve::health::start(listen, shared.clone(), kiln::fd_budget::HEALTH_MAX).unwrap();
    HealthConfig {
        listen,
        agent_listen: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_a_readyz_check_the_agent_runs() {
    let agent = ConsulAgent::start();
    let shared = Shared::new();
    shared.update(|s| s.phase = Phase::Ready);
    let health = readyz(&shared);
    let lb = ConsulRegistrar::new(&lb_config(&agent.url()), &health, &facts()).unwrap();

    lb.register().await.unwrap();
    let service = agent.services().get(ID).cloned().expect("service registered");
    assert_eq!(service.name, "app");
    assert_eq!((service.address.as_str(), service.port), ("10.0.0.5", 8080));
    assert_eq!(service.tags, ["php", "v1"]);
    let check = agent.checks().get(&format!("service:{ID}")).cloned().unwrap();
    assert_eq!(
        check.http.as_deref(),
        Some(format!("http://127.0.0.1:{}/readyz", health.listen.port()).as_str())
    );
    assert_eq!(agent.aggregated_status(ID).as_deref(), Some("passing"));

    // The agent's own check sees kiln's /readyz go 503, and come back.
    shared.update(|s| s.phase = Phase::Degraded);
    wait_until("the check critical", DEADLINE, || {
        (agent.aggregated_status(ID)? == "critical").then_some(())
    });
    shared.update(|s| s.phase = Phase::Ready);
    wait_until("the check passing", DEADLINE, || {
        (agent.aggregated_status(ID)? == "passing").then_some(())
    });

    lb.deregister().await.unwrap();
    assert!(agent.in_maintenance(ID));
    assert_eq!(agent.aggregated_status(ID).as_deref(), Some("maintenance"));
    let start = Instant::now();
    lb.wait_drained(start + Duration::from_millis(500), &|_| {})
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "the drain was not waited out"
    );
    lb.remove().await.unwrap();
    assert!(agent.services().is_empty());
    assert!(agent.checks().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_kiln_takes_over_its_service_and_clears_maintenance() {
    let agent = ConsulAgent::start();
    let shared = Shared::new();
    let health = readyz(&shared);
    let lb = ConsulRegistrar::new(&lb_config(&agent.url()), &health, &facts()).unwrap();
    lb.register().await.unwrap();
    lb.deregister().await.unwrap();
    assert!(agent.in_maintenance(ID));
    // The earlier run died in its drain; this run registers again.
    lb.register().await.unwrap();
    assert!(!agent.in_maintenance(ID));
    assert_eq!(agent.services().len(), 1);
    assert_eq!(agent.checks().len(), 1);
}

#[tokio::test]
async fn an_unreachable_agent_is_a_clear_error() {
    let agent = format!("http://{}", testkit::net::free_addr());
    let health = HealthConfig::default();
    let lb = ConsulRegistrar::new(&lb_config(&agent), &health, &facts()).unwrap();
    let err = lb.register().await.unwrap_err().0;
    assert!(err.contains(&agent), "{err}");
    assert!(err.contains("PUT /v1/agent/service/register"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_goes_through_maintenance_before_deregistering() {
    let agent = ConsulAgent::start();
    let shared = Shared::new();
    let health = readyz(&shared);
    let membership = Membership::start(
        Box::new(ConsulRegistrar::new(&lb_config(&agent.url()), &health, &facts()).unwrap()),
        shared.clone(),
        Arc::new(Notifier::disabled()),
        Duration::from_secs(1),
    );
    shared.update(|s| s.phase = Phase::Ready);
    wait_until("registered", DEADLINE, || {
        (shared.snapshot().lb.as_ref()?.state == LbState::Registered).then_some(())
    });
    assert!(agent.services().contains_key(ID));
    shared.update(|s| s.phase = Phase::Stopping);
    membership.leave().await;
    assert!(agent.services().is_empty());
    let calls: Vec<String> = agent
        .requests()
        .into_iter()
        .map(|r| r.split('?').next().unwrap().to_string())
        .collect();
    let path = |p: &str| format!("PUT /v1/agent/service/{p}");
    assert_eq!(
        calls,
        [
            path("register"),
            path(&format!("maintenance/{ID}")),
            path(&format!("maintenance/{ID}")),
            path(&format!("deregister/{ID}")),
        ]
    );
    assert!(agent.requests()[2].contains("enable=true"));
}
