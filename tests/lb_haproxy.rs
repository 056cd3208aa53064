//! The HAProxy registrar, the membership lifecycle and the agent-check responder against a real
//! HAProxy (Debian's 2.6) with an empty dynamic backend, and a tiny HTTP server as the target.

use kiln::config::LbTable;
use kiln::config::lb::{HaproxyPlan, LbName, LbPlan};
use kiln::lb::haproxy::HaproxyRegistrar;
use kiln::lb::{Membership, Registrar};
use kiln::metadata::InstanceFacts;
use kiln::state::{LbState, Phase, Shared};
use kiln::systemd::notify::Notifier;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::haproxy::{Haproxy, HaproxyConfig, Target};
use testkit::wait::{http_get, wait_until};

const SERVER: &str = "kiln-a";
const DEADLINE: Duration = Duration::from_secs(10);

fn facts() -> InstanceFacts {
    InstanceFacts {
        provider: "test".into(),
        instance_id: Some(SERVER.into()),
        local_ipv4: Some("127.0.0.1".into()),
        ..Default::default()
    }
}

fn lb_config(socket: &str, address: &str, options: &str) -> HaproxyPlan {
    let text = format!(
        "kind = \"haproxy\"\nsocket = {socket:?}\nbackend = \"app\"\nserver = \"{{instance_id}}\"\n\
         address = {address:?}\noptions = {options:?}\ndrain_timeout = \"10s\"\n"
    );
    let table: LbTable = toml::from_str(&text).unwrap();
    match table.check().unwrap().plan {
        Some(LbPlan::Haproxy(plan)) => plan,
        other => panic!("not an haproxy plan: {other:?}"),
    }
}

fn registrar(haproxy: &Haproxy, target: &Target, options: &str) -> HaproxyRegistrar {
    let socket = haproxy.config.socket.to_str().unwrap();
    HaproxyRegistrar::new(&lb_config(socket, &target.addr.to_string(), options), &facts()).unwrap()
}

fn start_haproxy(dir: &tempfile::TempDir) -> Haproxy {
    Haproxy::start(HaproxyConfig::new(dir.path()))
}

fn is_up(row: Option<&testkit::haproxy::ServerRow>) -> bool {
    row.is_some_and(|r| r.status == "UP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_serves_drains_an_in_flight_request_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let haproxy = start_haproxy(&dir);
    let target = Target::start("a");
    let lb = registrar(&haproxy, &target, "check inter 200ms rise 1 fall 1");
    assert_eq!(haproxy.server(SERVER), None);

    lb.register().await.unwrap();
    haproxy.wait_server("the server UP", SERVER, DEADLINE, is_up);
    let (status, body) = http_get(&haproxy.url("/")).unwrap();
    assert_eq!((status, body.trim()), (200, "a"));

    // A slow request is in flight when the drain starts.
    let slow_url = haproxy.url("/slow?ms=1500");
    let slow = std::thread::spawn(move || http_get(&slow_url));
    wait_until("the slow request at the target", DEADLINE, || {
        (target.in_flight() == 1).then_some(())
    });

    lb.deregister().await.unwrap();
    let drain_started = Instant::now();
    haproxy.wait_server("the server in DRAIN", SERVER, DEADLINE, |r| {
        r.is_some_and(|r| r.status.starts_with("DRAIN"))
    });
    // No new request reaches a draining server (it is the only one: HAProxy answers 503).
    let (status, _) = http_get(&haproxy.url("/")).unwrap();
    assert_eq!(status, 503);

    lb.wait_drained(Instant::now() + DEADLINE, &|_| {}).await.unwrap();
    assert_eq!(target.in_flight(), 0, "drained while a request was in flight");
    assert!(
        drain_started.elapsed() >= Duration::from_millis(1000),
        "the drain did not wait"
    );
    let (status, body) = slow.join().unwrap().unwrap();
    assert_eq!((status, body.trim()), (200, "a"), "the in-flight request failed");
    assert_eq!(target.arrivals_after(drain_started), 0);

    lb.remove().await.unwrap();
    assert_eq!(haproxy.server(SERVER), None, "the server is still in the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_over_the_server_an_earlier_run_left() {
    let dir = tempfile::tempdir().unwrap();
    let haproxy = start_haproxy(&dir);
    let target = Target::start("b");
    // An earlier kiln on this instance registered, then died without leaving (wrong port now).
    let old = haproxy.cmd(&format!("add server app/{SERVER} 127.0.0.1:1"));
    assert!(old.contains("New server registered"), "{old}");

    let lb = registrar(&haproxy, &target, "");
    lb.register().await.unwrap();
    let row = haproxy.wait_server("the server taken over", SERVER, DEADLINE, |r| {
        r.is_some_and(|r| r.is_up())
    });
    assert_eq!(row.unwrap().addr, target.addr.to_string());
    let (status, body) = http_get(&haproxy.url("/")).unwrap();
    assert_eq!((status, body.trim()), (200, "b"));

    // Registering again (kiln restarted once more) is a take-over as well, not an error.
    lb.register().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_over_a_tcp_runtime_api_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = HaproxyConfig::new(dir.path());
    let tcp = testkit::net::free_addr();
    config.tcp_socket = Some(tcp);
    let haproxy = Haproxy::start(config);
    let target = Target::start("c");
    let lb = HaproxyRegistrar::new(
        &lb_config(&format!("tcp:{tcp}"), &target.addr.to_string(), "weight 50"),
        &facts(),
    )
    .unwrap();
    lb.register().await.unwrap();
    let row = haproxy.wait_server("the server up", SERVER, DEADLINE, |r| {
        r.is_some_and(|r| r.is_up())
    });
    assert_eq!(row.unwrap().weight, 50);
    lb.deregister().await.unwrap();
    lb.wait_drained(Instant::now() + DEADLINE, &|_| {}).await.unwrap();
    lb.remove().await.unwrap();
    assert_eq!(haproxy.server(SERVER), None);
}

#[tokio::test]
async fn an_unreachable_socket_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-haproxy.sock");
    let lb = HaproxyRegistrar::new(
        &lb_config(socket.to_str().unwrap(), "127.0.0.1:8080", ""),
        &facts(),
    )
    .unwrap();
    let err = lb.register().await.unwrap_err().0;
    assert!(err.contains(socket.to_str().unwrap()), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("add server"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_backend_shows_haproxys_answer() {
    let dir = tempfile::tempdir().unwrap();
    let haproxy = start_haproxy(&dir);
    let socket = haproxy.config.socket.to_str().unwrap();
    let mut config = lb_config(socket, "127.0.0.1:8080", "");
    config.backend = LbName::parse("nosuch").unwrap();
    let err = HaproxyRegistrar::new(&config, &facts())
        .unwrap()
        .register()
        .await
        .unwrap_err()
        .0;
    assert!(err.contains("No such backend"), "{err}");
}

/// Membership: nothing before Ready; registered at Ready and said so; leave drains and removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_joins_at_ready_and_leaves_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let haproxy = start_haproxy(&dir);
    let target = Target::start("d");
    let shared = Shared::new();
    shared.update(|s| s.phase = Phase::Starting);
    let membership = Membership::start(
        Box::new(registrar(&haproxy, &target, "check inter 200ms")),
        shared.clone(),
        Arc::new(Notifier::disabled()),
        Duration::from_secs(10),
    );
    let lb = shared.snapshot().lb.clone().unwrap();
    assert_eq!(lb.state, LbState::Unregistered);
    assert_eq!(lb.kind, "haproxy");
    // Not ready: nothing is registered, however long we look.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(haproxy.server(SERVER), None);

    shared.update(|s| s.phase = Phase::Ready);
    wait_until("registered in status", DEADLINE, || {
        (shared.snapshot().lb.as_ref()?.state == LbState::Registered).then_some(())
    });
    assert!(
        haproxy.server(SERVER).is_some(),
        "status says registered, haproxy has no server"
    );
    haproxy.wait_server("the server UP", SERVER, DEADLINE, is_up);

    // A request in flight when the stop comes: status shows the drain waiting for it.
    let slow_url = haproxy.url("/slow?ms=1500");
    let slow = std::thread::spawn(move || http_get(&slow_url));
    wait_until("the slow request at the target", DEADLINE, || {
        (target.in_flight() == 1).then_some(())
    });
    shared.update(|s| s.phase = Phase::Stopping);
    let leaving = tokio::spawn(membership.leave());
    let progress = wait_until("drain progress in status", DEADLINE, || {
        let lb = shared.snapshot().lb.clone()?;
        (lb.state == LbState::Draining).then_some(())?;
        lb.drain.filter(|d| d.contains("1 sessions"))
    });
    assert!(progress.contains("of 10s"), "{progress}");
    leaving.await.unwrap();
    assert_eq!(slow.join().unwrap().unwrap().0, 200);
    let lb = shared.snapshot().lb.clone().unwrap();
    assert_eq!(lb.state, LbState::Deregistered, "{lb:?}");
    assert!(
        lb.drain.as_deref().unwrap_or("").starts_with("drained in"),
        "{lb:?}"
    );
    assert_eq!(haproxy.server(SERVER), None);
}

/// The load balancer is down at boot: kiln retries, says unregistered with the reason, and joins
/// once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_retries_until_haproxy_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = HaproxyConfig::new(dir.path());
    let target = Target::start("e");
    let lb = lb_config(config.socket.to_str().unwrap(), &target.addr.to_string(), "");
    let shared = Shared::new();
    shared.update(|s| s.phase = Phase::Ready);
    let membership = Membership::start(
        Box::new(HaproxyRegistrar::new(&lb, &facts()).unwrap()),
        shared.clone(),
        Arc::new(Notifier::disabled()),
        Duration::from_secs(5),
    );
    let reason = wait_until("an unregistered reason", DEADLINE, || {
        let lb = shared.snapshot().lb.clone()?;
        (lb.state == LbState::Unregistered).then_some(())?;
        lb.reason.filter(|r| r.contains("attempt 2"))
    });
    assert!(reason.contains("cannot connect"), "{reason}");

    let haproxy = Haproxy::start(config);
    wait_until("registered once haproxy is up", Duration::from_secs(20), || {
        (shared.snapshot().lb.as_ref()?.state == LbState::Registered).then_some(())
    });
    haproxy.wait_server("the server up", SERVER, DEADLINE, |r| {
        r.is_some_and(|r| r.is_up())
    });
    shared.update(|s| s.phase = Phase::Stopping);
    membership.leave().await;
    assert_eq!(haproxy.server(SERVER), None);
}

/// Stopped before ever being ready: nothing to leave, and status does not claim anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_stopped_before_ready_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let haproxy = start_haproxy(&dir);
    let target = Target::start("f");
    let shared = Shared::new();
    let membership = Membership::start(
        Box::new(registrar(&haproxy, &target, "")),
        shared.clone(),
        Arc::new(Notifier::disabled()),
        Duration::from_secs(5),
    );
    shared.update(|s| s.phase = Phase::Stopping);
    membership.leave().await;
    assert_eq!(
        shared.snapshot().lb.as_ref().unwrap().state,
        LbState::Unregistered
    );
    assert_eq!(haproxy.server(SERVER), None);
}

/// A failed instance (seal drift with policy fail) leaves the load balancer by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_leaves_when_the_instance_fails() {
    let dir = tempfile::tempdir().unwrap();
    let haproxy = start_haproxy(&dir);
    let target = Target::start("g");
    let shared = Shared::new();
    shared.update(|s| s.phase = Phase::Ready);
    let membership = Membership::start(
        Box::new(registrar(&haproxy, &target, "")),
        shared.clone(),
        Arc::new(Notifier::disabled()),
        Duration::from_secs(5),
    );
    haproxy.wait_server("the server up", SERVER, DEADLINE, |r| {
        r.is_some_and(|r| r.is_up())
    });
    // Degraded: stays registered (checks take it out and put it back).
    shared.update(|s| s.phase = Phase::Degraded);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(haproxy.server(SERVER).is_some());
    shared.update(|s| {
        s.phase = Phase::Failed;
        s.reason = Some("seal drift: /srv/app/index.php".into());
    });
    haproxy.wait_server("the server gone", SERVER, DEADLINE, |r| r.is_none());
    wait_until("deregistered in status", DEADLINE, || {
        (shared.snapshot().lb.as_ref()?.state == LbState::Deregistered).then_some(())
    });
    membership.leave().await;
    assert_eq!(
        shared.snapshot().lb.as_ref().unwrap().state,
        LbState::Deregistered
    );
}

/// HAProxy's agent-check against kiln's responder, the phase driven by hand: UP when ready,
/// DRAIN when stopping, DOWN (with the reason) when not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_follows_the_agent_check() {
    let dir = tempfile::tempdir().unwrap();
    let haproxy = start_haproxy(&dir);
    let target = Target::start("h");
    let shared = Shared::new();
    shared.update(|s| s.phase = Phase::Ready);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_port = listener.local_addr().unwrap().port();
    let agent = tokio::spawn(kiln::serve::agent::serve_agent(
        listener,
        shared.clone(),
        kiln::serve::slots::Slots::new(kiln::fd_budget::AGENT_MAX),
    ));

    let options = format!("check inter 200ms agent-check agent-port {agent_port} agent-inter 200ms");
    registrar(&haproxy, &target, &options).register().await.unwrap();
    haproxy.wait_server("UP by the agent", SERVER, DEADLINE, is_up);

    shared.update(|s| s.phase = Phase::Stopping);
    haproxy.wait_server("DRAIN by the agent", SERVER, DEADLINE, |r| {
        r.is_some_and(|r| r.status.starts_with("DRAIN"))
    });

    shared.update(|s| {
        s.phase = Phase::Degraded;
        s.reason = Some("php-fpm crash loop".into());
    });
    let row = haproxy
        .wait_server("DOWN by the agent", SERVER, DEADLINE, |r| {
            r.is_some_and(|r| r.status.starts_with("DOWN"))
        })
        .unwrap();
    assert!(row.last_agt.contains("php-fpm crash loop"), "{row:?}");

    shared.update(|s| {
        s.phase = Phase::Ready;
        s.reason = None;
    });
    haproxy.wait_server("UP again", SERVER, DEADLINE, is_up);
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_answers_one_line_per_connection() {
    use tokio::io::AsyncReadExt;
    let shared = Shared::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let agent = tokio::spawn(kiln::serve::agent::serve_agent(
        listener,
        shared.clone(),
        kiln::serve::slots::Slots::new(kiln::fd_budget::AGENT_MAX),
    ));
    let ask = || async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut line = String::new();
        s.read_to_string(&mut line).await.unwrap();
        line
    };
    shared.update(|s| s.reason = Some("booting: metadata".into()));
    assert_eq!(ask().await, "down #booting: metadata\n");
    shared.update(|s| {
        s.phase = Phase::Ready;
        s.reason = None;
    });
    assert_eq!(ask().await, "up ready 100%\n");
    shared.update(|s| s.phase = Phase::Stopping);
    assert_eq!(ask().await, "drain\n");
    agent.abort();
}
