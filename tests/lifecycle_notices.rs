//! Notices through `kiln boot` on the example, against the metadata emulators: what leaves,
//! what is only reported, what is refused, and that a leave is final.

use crate::lifecycle_support::*;
use nix::sys::signal::Signal;
use std::time::{Duration, SystemTime};
use testkit::control;
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options};
use testkit::wait::{http_get, wait_until};

#[test]
fn a_spot_interruption_makes_kiln_leave_then_wait_for_the_power_off() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let ex = example_on(&emulator, "poll_interval = \"1s\"");
    let (mut kiln, notify) = ex.boot_ready(KILN);
    emulator.notices(|n| n.spot_interruption("terminate", SystemTime::now() + Duration::from_secs(120)));

    let status = wait_step(&ex, "all services stopped", LEAVE);
    assert_eq!(
        steps(&status),
        [
            "notice seen",
            "readiness off (/readyz 503, agent drain)",
            "all services stopped"
        ],
        "{status}"
    );
    assert_eq!(status["phase"], "stopped", "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("left (spot interruption: terminate at ")
            && reason.ends_with("); waiting for the power-off"),
        "{reason}"
    );
    // kiln stays up, not ready, explaining; every service is stopped.
    assert_eq!(http_get(&ex.readyz_url()).unwrap().0, 503);
    assert_eq!(http_get(&ex.livez_url()).unwrap().0, 200);
    for unit in status["services"].as_array().unwrap() {
        assert_eq!(unit["state"], "stopped", "{unit}");
    }
    assert!(
        kiln.try_exit().is_none(),
        "kiln exited after the leave: {}",
        kiln.log()
    );
    let lines = notify.lines();
    assert!(!lines.iter().any(|l| l == "STOPPING=1"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("STATUS=left (spot interruption")),
        "{lines:?}"
    );
    assert!(ex.state_dir().join("left").exists());
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("notice: spot interruption: terminate at "),
        "{text}"
    );
    assert!(text.contains("left: spot interruption: terminate at "), "{text}");

    // The power-off's SIGTERM: kiln has nothing left to stop.
    kiln.signal(Signal::SIGTERM);
    let exit = kiln.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "{}", kiln.log());
}

/// Waits until kiln shows a notice of `kind`; returns it.
fn wait_notice(ex: &testkit::example::Example, kind: &str) -> serde_json::Value {
    wait_until(&format!("a {kind} notice in status"), LEAVE, || {
        let notices = lifecycle(ex)["notices"].as_array()?.clone();
        notices.into_iter().find(|n| n["kind"] == kind)
    })
}

fn assert_still_serving(ex: &testkit::example::Example) {
    let status = control::status(&ex.socket()).unwrap();
    assert_eq!(status["phase"], "ready", "{status}");
    assert!(status["lifecycle"]["leave"].is_null(), "{status}");
    assert_eq!(http_get(&ex.readyz_url()).unwrap().0, 200);
    assert!(!ex.state_dir().join("left").exists());
}

#[test]
fn a_rebalance_recommendation_is_reported_with_its_time_and_kiln_stays() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    emulator.notices(|n| n.rebalance(SystemTime::now()));
    let ex = example_on(&emulator, "poll_interval = \"1s\"");
    let metrics = crate::metrics_support::with_metrics(&ex);
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let notice = wait_notice(&ex, "rebalance");
    assert_eq!(notice["action"], "report", "{notice}");
    // Counted once, however many looks see it; the kinds watched exist at zero.
    let looks = || {
        let log = emulator.log();
        log.iter()
            .filter(|l| l.path.ends_with("/events/recommendations/rebalance"))
            .count()
    };
    let seen_by = looks();
    wait_until("another look", LEAVE, || (looks() > seen_by).then_some(()));
    let body = crate::metrics_support::scrape(metrics, None).body;
    for (kind, count) in [
        ("rebalance", 1.0),
        ("spot_interruption", 0.0),
        ("maintenance", 0.0),
    ] {
        let series = format!("kiln_lifecycle_notices_total{{kind=\"{kind}\"}}");
        assert_eq!(
            crate::metrics_support::value_of(&body, &series),
            Some(count),
            "{series}:\n{body}"
        );
    }
    assert!(
        notice["detail"]
            .as_str()
            .unwrap()
            .starts_with("elevated risk of interruption since "),
        "{notice}"
    );
    assert_still_serving(&ex);
    let (_, text) = ex.status_cli(KILN, &[]);
    assert!(
        text.contains("notice: rebalance recommendation: elevated risk"),
        "{text}"
    );
    assert!(text.trim_end().contains("): report"), "{text}");
}

#[test]
fn a_notice_kiln_cannot_read_is_reported_and_never_acted_on() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let ex = example_on(&emulator, "poll_interval = \"1s\"");
    let (_kiln, _notify) = ex.boot_ready(KILN);
    emulator.notices(|n| {
        n.spot_instance_action = Some(r#"{"action": "explode", "time": "2030-01-01T00:00:00Z"}"#.into())
    });
    let problem = wait_until("the problem in status", LEAVE, || {
        lifecycle(&ex)["problem"].as_str().map(String::from)
    });
    assert_eq!(
        problem,
        "spot/instance-action: unknown action \"explode\" (terminate, stop or hibernate); not acted on"
    );
    assert_still_serving(&ex);

    // The watch goes on: the documented notice, once served, is acted on.
    emulator.notices(|n| n.spot_interruption("stop", SystemTime::now() + Duration::from_secs(120)));
    let status = wait_step(&ex, "all services stopped", LEAVE);
    assert!(status["lifecycle"]["problem"].is_null(), "{status}");
}

#[test]
fn maintenance_far_away_waits_and_leaves_once_due_within_the_lead() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    emulator.notices(|n| n.ec2_scheduled("system-reboot", now + 48 * hour, now + 49 * hour));
    let ex = example_on(
        &emulator,
        "poll_interval = \"1s\"\non_maintenance = \"leave\"\nmaintenance_leave_before = \"10m\"",
    );
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let notice = wait_notice(&ex, "maintenance");
    assert_eq!(
        (notice["action"].as_str(), notice["deferred"].as_bool()),
        (Some("leave"), Some(true))
    );
    assert!(
        notice["detail"]
            .as_str()
            .unwrap()
            .starts_with("system-reboot (instance-event-"),
        "{notice}"
    );
    assert_still_serving(&ex);

    emulator.notices(|n| n.ec2_scheduled("instance-stop", now + Duration::from_secs(300), now + hour));
    let status = wait_step(&ex, "all services stopped", LEAVE);
    let reason = status["lifecycle"]["leave"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("maintenance: instance-stop (instance-event-"),
        "{reason}"
    );
}

#[test]
fn a_gce_preemption_is_heard_on_a_hanging_get_and_kiln_leaves() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Gce));
    let ex = example_on(&emulator, "");
    let (_kiln, _notify) = ex.boot_ready(KILN);
    // Both values are long-polled: wait for the hanging GETs, with the ETag of the first answer.
    wait_until("hanging GETs on both values", LEAVE, || {
        (emulator.waiting() == 2).then_some(())
    });
    emulator.notices(|n| n.preempted = true);
    let status = wait_step(&ex, "all services stopped", LEAVE);
    let reason = status["lifecycle"]["leave"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("preemption: the VM is being preempted"),
        "{reason}"
    );
    let log = emulator.log();
    let hanging: Vec<_> = log
        .iter()
        .filter(|l| l.path.contains("preempted") && l.path.contains("wait_for_change=true"))
        .collect();
    assert!(
        hanging
            .iter()
            .all(|l| l.path.contains("last_etag=") && l.path.contains("timeout_sec=300")),
        "{hanging:?}"
    );
    // One plain GET for the first value, then hanging GETs only: nothing polled.
    let preempted_requests = log
        .iter()
        .filter(|l| l.path.contains("/instance/preempted"))
        .count();
    assert_eq!(preempted_requests, hanging.len() + 1, "{log:?}");
}

/// A GCE metadata server (or a proxy in front of it) that answers `wait_for_change` at once with
/// the same ETag: kiln spaces its requests instead of asking as fast as it is answered (it asked
/// about 2,400 times a second), and still hears the preemption.
#[test]
fn a_gce_server_that_never_waits_is_not_asked_in_a_loop() {
    let options = Options {
        gce_never_waits: true,
        ..Options::new(Cloud::Gce)
    };
    let emulator = MetadataEmulator::start(options);
    let ex = example_on(&emulator, "");
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let hanging = || {
        let log = emulator.log();
        log.iter()
            .filter(|l| l.path.contains("wait_for_change=true"))
            .count()
    };
    wait_until("a first hanging GET answered", LEAVE, || {
        (hanging() > 0).then_some(())
    });
    // A rate is measured over a window: this sleep is the window, not a wait for a condition.
    let window = Duration::from_secs(2);
    let before = hanging();
    std::thread::sleep(window);
    let asked = hanging() - before;
    eprintln!("{asked} hanging GETs in {window:?}");
    assert!(asked < 20, "{asked} hanging GETs in {window:?} (both values)");
    emulator.notices(|n| n.preempted = true);
    let status = wait_step(&ex, "all services stopped", LEAVE);
    let reason = status["lifecycle"]["leave"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("preemption:"), "{reason}");
}

#[test]
fn a_gce_host_maintenance_is_reported_by_default() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Gce));
    let ex = example_on(&emulator, "");
    let (_kiln, _notify) = ex.boot_ready(KILN);
    emulator.notices(|n| n.maintenance_event = "MIGRATE_ON_HOST_MAINTENANCE".into());
    let notice = wait_notice(&ex, "maintenance");
    assert_eq!(notice["action"], "report");
    assert_still_serving(&ex);
}

#[test]
fn an_azure_preempt_for_this_vm_is_left_for_then_acknowledged_after_the_stop() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Azure));
    let ex = example_on(&emulator, "poll_interval = \"1s\"");
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let vm = testkit::emulator::metadata::Instance::example(Cloud::Azure).hostname;
    let soon = SystemTime::now() + Duration::from_secs(30);
    // A neighbour's event first: not this VM's business.
    emulator.notices(|n| n.azure_event("Preempt", &["web-2"], soon));
    wait_until("two more looks at the document", LEAVE, || {
        let polls = emulator
            .log()
            .iter()
            .filter(|l| l.path.contains("scheduledevents"))
            .count();
        (polls >= 3).then_some(())
    });
    assert_still_serving(&ex);

    let id = emulator.notices(|n| n.azure_event("Preempt", &[&vm], soon));
    let status = wait_step(&ex, &format!("event {id} acknowledged (StartRequests)"), LEAVE);
    let steps = steps(&status);
    let stopped = steps.iter().position(|s| s == "all services stopped");
    let acknowledged = steps.iter().position(|s| s.starts_with("event "));
    assert!(stopped.is_some() && stopped < acknowledged, "{steps:?}");
    assert_eq!(emulator.notices_now().acknowledged, vec![id]);
    let reason = status["lifecycle"]["leave"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("preemption: Preempt scheduled (event "),
        "{reason}"
    );
}

#[test]
fn a_kiln_restarted_after_the_leave_does_not_rejoin() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let ex = example_on(&emulator, "poll_interval = \"1s\"");
    let (mut kiln, _notify) = ex.boot_ready(KILN);
    emulator.notices(|n| n.spot_interruption("terminate", SystemTime::now() + Duration::from_secs(120)));
    wait_step(&ex, "all services stopped", LEAVE);
    kiln.signal(Signal::SIGTERM);
    assert_eq!(kiln.wait_exit(Duration::from_secs(10)).code(), Some(0));

    // As systemd's Restart= would: the same boot, the same /run.
    let (mut again, notify) = ex.boot_notified(KILN, &[], &[]);
    let ready = notify.wait_for("READY=1", LEAVE, |l| l.starts_with("READY=1"));
    assert_eq!(ready, "READY=1");
    let status = control::status(&ex.socket()).unwrap();
    assert_eq!(status["phase"], "failed", "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("this instance left (spot interruption: terminate at ")
            && reason.contains("does not rejoin"),
        "{reason}"
    );
    assert!(status["services"].as_array().unwrap().is_empty(), "{status}");
    again.signal(Signal::SIGTERM);
    assert_eq!(again.wait_exit(Duration::from_secs(10)).code(), Some(1));
}

/// A peer's text is bounded before kiln keeps it: a 200 KB spot `instance-action` (an action
/// kiln does not know) and a scheduled event with a 100 KB code and id (IMDS answers are read up
/// to 256 KiB) make a problem and a notice of a few hundred characters in `kiln status` and in
/// the log, not hundreds of KB each.
#[test]
fn a_huge_notice_stays_small_in_status_and_the_log() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let huge = format!("\u{1b}]0;forged\u{7}{}", "A".repeat(200 * 1024));
    let large = format!("\u{1b}]0;forged\u{7}{}", "B".repeat(100 * 1024));
    let hour = Duration::from_secs(3600);
    emulator.notices(|n| {
        n.spot_instance_action =
            Some(serde_json::json!({"action": huge, "time": "2030-01-01T00:00:00Z"}).to_string());
        n.ec2_maintenance_raw = Some(
            serde_json::json!([{
                "Code": large, "EventId": large, "State": "active",
                "NotBefore": testkit::emulator::metadata::ec2_date(SystemTime::now() + 48 * hour),
            }])
            .to_string(),
        );
    });
    let ex = example_on(&emulator, "poll_interval = \"1s\"");
    let (kiln, _notify) = ex.boot_ready(KILN);
    let problem = wait_until("the problem in status", LEAVE, || {
        lifecycle(&ex)["problem"].as_str().map(String::from)
    });
    assert!(
        problem.starts_with("spot/instance-action: unknown action"),
        "{problem:.300}"
    );
    let notice = wait_notice(&ex, "maintenance");
    let (_, text) = ex.status_cli(KILN, &[]);
    let (_, json) = ex.status_cli(KILN, &["--json"]);
    for (what, said) in [
        ("the problem", problem.as_str()),
        ("the notice", notice["detail"].as_str().unwrap()),
        ("kiln status", text.as_str()),
        ("kiln status --json", json.as_str()),
    ] {
        assert!(
            said.len() < 16 * 1024,
            "{what} is {} bytes: {said:.300}",
            said.len()
        );
        assert!(!said.contains('\u{1b}'), "{what} holds an escape: {said:.300}");
    }
    assert_still_serving(&ex);
    let log = kiln.log();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2048, "a log line of {longest} bytes");
    assert!(!log.contains('\u{1b}'), "an escape reached the log");
}
