//! Azure without a provisioning agent: kiln reports `Ready` to the WireServer once the boot is
//! provisioned, or `NotReady` (`ProvisioningFailed`, why) for a refused boot, against the
//! WireServer emulator; the client's retries on the emulator's faults; and `/azure/health`, the
//! Application Health extension's rich health states, through a boot.

use kiln::metadata::wireserver::{self, Report};
use nix::sys::signal::Signal;
use std::process::Command;
use std::time::Duration;
use testkit::control;
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options};
use testkit::emulator::wireserver::{self as wire, Reported, WireServer};
use testkit::example::Example;
use testkit::peers::Kiln;
use testkit::wait::{http_get, wait_until};
use tokio::time::Instant;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const BOOT: Duration = Duration::from_secs(30);
const SECRET: &str = "hunter2-s3cr3t";

/// The example reading Azure IMDS at `imds`, reporting to `wire`; `extra` lines in `[metadata]`.
fn on_azure(ex: &Example, imds: &MetadataEmulator, wire: &WireServer, extra: &str) {
    ex.edit_config(|c| {
        c.replace(
            &format!("provider = \"nocloud\"\nseed = \"{}\"", ex.seed_dir.display()),
            &format!(
                "provider = \"azure\"\nendpoint = \"{}\"\nwireserver = \"{}\"\ndeadline = \"10s\"\n{extra}",
                imds.url(),
                wire.url()
            ),
        )
    });
    assert!(ex.config().contains(&wire.url()), "{}", ex.config());
}

/// What the Application Health extension makes of one answer of `/azure/health` (rich health
/// states): a 2xx whose JSON body says `Healthy` or `Unhealthy`; anything else is Unknown.
fn app_health_state(ex: &Example) -> String {
    let url = ex.readyz_url().replace("/readyz", "/azure/health");
    let Ok((code, body)) = http_get(&url) else {
        return "Unknown".into();
    };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    match (code, json["ApplicationHealthState"].as_str()) {
        (200..=299, Some(state @ ("Healthy" | "Unhealthy"))) => state.to_string(),
        _ => "Unknown".into(),
    }
}

fn reported(wire: &WireServer) -> Reported {
    wait_until("a health report taken by the WireServer", BOOT, || {
        wire.reports().first().cloned()
    })
}

#[test]
fn ready_is_reported_once_provisioned_and_status_says_so() {
    let imds = MetadataEmulator::start(Options::new(Cloud::Azure).user_data("GREETING=hi\n"));
    let wire = WireServer::start(wire::Options::default());
    let ex = Example::render();
    on_azure(&ex, &imds, &wire, "");
    let _kiln = Kiln::boot(KILN, &ex.config_path);
    wait_until("/readyz 200", BOOT, || {
        (http_get(&ex.readyz_url()).ok()?.0 == 200).then_some(())
    });

    let report = reported(&wire);
    assert_eq!(
        report,
        Reported {
            incarnation: 1,
            state: "Ready".into(),
            substatus: None,
            description: None
        }
    );
    let status = wait_until("the check-in in status", BOOT, || {
        control::status(&ex.socket()).filter(|s| s["check_in"]["outcome"] == "accepted")
    });
    assert_eq!(status["check_in"]["report"], "Ready");
    assert_eq!(status["check_in"]["incarnation"], "1");
    assert_eq!(status["provider"]["name"], "azure");
    assert_eq!(status["provider"]["found"]["by"], "config");
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("  provider: azure, named by [metadata] provider\n"),
        "{text}"
    );
    assert!(text.contains("  azure check-in: Ready reported "), "{text}");
    assert!(text.contains(" ago (goal state incarnation 1)\n"), "{text}");
    assert_eq!(app_health_state(&ex), "Healthy");
    assert_eq!(wire.reports().len(), 1, "one report a boot");
}

/// `provider = "auto"` on Azure (told by the chassis asset tag) checks in as `azure` does, and
/// status names the DMI field that told the cloud.
#[test]
fn auto_on_azure_checks_in_and_status_names_the_dmi_field() {
    let imds = MetadataEmulator::start(Options::new(Cloud::Azure));
    let wire = WireServer::start(wire::Options::default());
    let ex = Example::render();
    let dmi = ex.dir.path().join("dmi");
    std::fs::create_dir(&dmi).unwrap();
    std::fs::write(dmi.join("sys_vendor"), "Microsoft Corporation\n").unwrap();
    std::fs::write(
        dmi.join("chassis_asset_tag"),
        "7783-7084-3265-9085-8269-3286-77\n",
    )
    .unwrap();
    on_azure(&ex, &imds, &wire, &format!("dmi_dir = {dmi:?}\n"));
    ex.edit_config(|c| c.replace("provider = \"azure\"", "provider = \"auto\""));
    let _kiln = Kiln::boot(KILN, &ex.config_path);
    assert_eq!(reported(&wire).state, "Ready");
    let status = wait_until("the check-in in status", BOOT, || {
        control::status(&ex.socket()).filter(|s| s["check_in"]["outcome"] == "accepted")
    });
    assert_eq!(status["provider"]["name"], "azure", "{status}");
    assert_eq!(status["provider"]["found"]["by"], "dmi", "{status}");
    let (_, text) = ex.status_cli(KILN, &[]);
    assert!(
        text.contains(
            "  provider: azure, told by DMI chassis_asset_tag \"7783-7084-3265-9085-8269-3286-77\"\n"
        ),
        "{text}"
    );
    assert!(text.contains("  azure check-in: Ready reported "), "{text}");
}

/// Provisioned means the boot's inputs were accepted, not that the services are ready: a service
/// that never gets ready is the health signal's to tell (Unknown while starting), not a
/// provisioning timeout.
#[test]
fn ready_does_not_wait_for_the_services() {
    let imds = MetadataEmulator::start(Options::new(Cloud::Azure));
    let wire = WireServer::start(wire::Options::default());
    let ex = Example::render();
    on_azure(&ex, &imds, &wire, "");
    ex.edit_probe("nginx", "ready", |probe| {
        let url = probe["http"]
            .as_str()
            .unwrap()
            .replace("/healthz", "/never-there");
        probe.insert("http".into(), url.into());
    });
    let _kiln = Kiln::boot(KILN, &ex.config_path);
    assert_eq!(reported(&wire).state, "Ready");
    let status = control::status(&ex.socket()).unwrap();
    assert_eq!(status["phase"], "starting", "{status}");
    assert_eq!(app_health_state(&ex), "Unknown");
}

/// Boots, waits for the refusal and its report; returns the report and kiln's outputs.
fn refused_and_reported(ex: &Example, wire: &WireServer, reason: &str) -> (Reported, String) {
    let mut kiln = Kiln::boot(KILN, &ex.config_path);
    let report = reported(wire);
    assert_eq!(report.state, "NotReady");
    assert_eq!(report.substatus.as_deref(), Some("ProvisioningFailed"));
    let description = report.description.clone().unwrap();
    assert!(
        description.starts_with("kiln refused the boot: "),
        "{description}"
    );
    assert!(description.contains(reason), "{description}");
    assert!(description.chars().count() <= wireserver::DESCRIPTION_MAX_CHARS);
    assert!(!description.chars().any(char::is_control), "{description:?}");
    let (code, text) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("  azure check-in: NotReady reported "), "{text}");
    assert_eq!(app_health_state(ex), "Unhealthy");
    assert_eq!(wire.reports().len(), 1);
    for output in [&description, &text, &kiln.log()] {
        assert!(!output.contains(SECRET), "a value leaked:\n{output}");
    }
    kiln.signal(Signal::SIGTERM);
    assert_eq!(kiln.wait_exit(BOOT).code(), Some(1));
    (report, text)
}

#[test]
fn bad_user_data_is_reported_not_ready_with_its_reason() {
    let imds = MetadataEmulator::start(
        Options::new(Cloud::Azure).user_data(format!("GREETING=hi\nDATABASE_URL={SECRET}\nAPP_SECRET=\n")),
    );
    let wire = WireServer::start(wire::Options::default());
    let ex = Example::render();
    on_azure(&ex, &imds, &wire, "");
    refused_and_reported(&ex, &wire, "user-data line 3: APP_SECRET= is missing a value");
}

#[test]
fn a_pin_the_image_does_not_hold_is_reported_not_ready() {
    let imds = MetadataEmulator::start(Options::new(Cloud::Azure).tag("kiln-expect-release", "v42"));
    let wire = WireServer::start(wire::Options::default());
    let ex = Example::render();
    on_azure(&ex, &imds, &wire, "");
    refused_and_reported(
        &ex,
        &wire,
        "pin: the launch configuration pins release v42 (tag kiln-expect-release), but this instance is not sealed",
    );
}

#[test]
fn seal_drift_is_reported_not_ready_before_any_metadata() {
    let imds = MetadataEmulator::start(Options::new(Cloud::Azure));
    let wire = WireServer::start(wire::Options::default());
    let ex = Example::render();
    ex.edit_config(|c| {
        c + &format!(
            "\n[seal]\npaths = [\"{}\"]\nmanifest = \"{}\"\nreadonly = false\nrescan = \"1h\"\n",
            ex.app_dir.display(),
            ex.dir.path().join("seal").display()
        )
    });
    let sealed = Command::new(KILN)
        .args(["seal", "--config", ex.config_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        sealed.status.success(),
        "{}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    std::fs::write(ex.app_dir.join("public/index.php"), "<?php echo 'changed';\n").unwrap();
    on_azure(&ex, &imds, &wire, "");
    refused_and_reported(&ex, &wire, "seal: ");
    assert!(imds.log().is_empty(), "refused before the metadata was asked");
}

#[test]
fn check_in_off_sends_nothing_and_says_so() {
    let imds = MetadataEmulator::start(Options::new(Cloud::Azure));
    let wire = WireServer::start(wire::Options::default());
    let ex = Example::render();
    on_azure(&ex, &imds, &wire, "check_in = false\n");
    let _kiln = Kiln::boot(KILN, &ex.config_path);
    wait_until("/readyz 200", BOOT, || {
        (http_get(&ex.readyz_url()).ok()?.0 == 200).then_some(())
    });
    let (_, text) = ex.status_cli(KILN, &[]);
    assert!(
        text.contains(
            "  azure check-in: off ([metadata] check_in = false: something else reports (waagent))\n"
        ),
        "{text}"
    );
    assert!(wire.log().is_empty(), "{:?}", wire.log());
}

#[test]
fn other_clouds_check_in_nowhere() {
    let imds = MetadataEmulator::start(Options::new(Cloud::Gce));
    let wire = WireServer::start(wire::Options::default());
    let ex = Example::render();
    on_azure(&ex, &imds, &wire, "");
    ex.edit_config(|c| c.replace("provider = \"azure\"", "provider = \"gce\""));
    let _kiln = Kiln::boot(KILN, &ex.config_path);
    wait_until("/readyz 200", BOOT, || {
        (http_get(&ex.readyz_url()).ok()?.0 == 200).then_some(())
    });
    let status = control::status(&ex.socket()).unwrap();
    assert!(status["check_in"].is_null(), "{status}");
    assert!(wire.log().is_empty(), "{:?}", wire.log());
}

async fn send(
    wire: &WireServer,
    report: &Report,
    within: Duration,
) -> (
    Result<wireserver::Accepted, wireserver::Failed>,
    Vec<(u32, String)>,
) {
    let mut retries = Vec::new();
    let outcome = wireserver::send(&wire.url(), report, Instant::now() + within, |n, why| {
        retries.push((n, why.to_string()))
    })
    .await;
    (outcome, retries)
}

#[tokio::test]
async fn throttling_and_unavailability_are_retried() {
    for status in [503, 403, 429, 500] {
        let wire = WireServer::start(wire::Options {
            fail_first: 3,
            fail_status: status,
            ..wire::Options::default()
        });
        let (outcome, retries) = send(&wire, &Report::Ready, Duration::from_secs(20)).await;
        let accepted = outcome.unwrap_or_else(|f| panic!("{status}: {f:?}"));
        assert_eq!(accepted.attempts, 4, "{status}");
        assert_eq!(retries.len(), 3, "{status}: {retries:?}");
        assert!(
            retries[0]
                .1
                .starts_with(&format!("goal state: answered {status}")),
            "{retries:?}"
        );
        assert_eq!(wire.reports().len(), 1);
    }
}

#[tokio::test]
async fn a_goal_state_that_moved_on_is_asked_for_again() {
    let wire = WireServer::start(wire::Options {
        bump_incarnation_once: true,
        ..wire::Options::default()
    });
    let (outcome, retries) = send(&wire, &Report::Ready, Duration::from_secs(20)).await;
    let accepted = outcome.unwrap();
    assert_eq!(accepted.incarnation, "2");
    assert_eq!(
        retries,
        [(
            1,
            "health report: answered 410 Gone (the goal state changed; asking for it anew)".to_string()
        )]
    );
    let statuses: Vec<u16> = wire.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [200, 410, 200, 200]);
    assert_eq!(wire.reports()[0].incarnation, 2);
}

#[tokio::test]
async fn a_final_refusal_stops_at_once_and_the_deadline_is_kept() {
    let wire = WireServer::start(wire::Options {
        fail_first: u32::MAX,
        fail_status: 400,
        ..wire::Options::default()
    });
    let (outcome, _) = send(&wire, &Report::Ready, Duration::from_secs(20)).await;
    let failed = outcome.unwrap_err();
    assert_eq!(
        failed.reason,
        format!(
            "WireServer at {}, goal state: answered 400 Bad Request",
            wire.url()
        )
    );
    assert_eq!(wire.log().len(), 1);

    let down = WireServer::start(wire::Options {
        fail_first: u32::MAX,
        ..wire::Options::default()
    });
    let started = std::time::Instant::now();
    let (outcome, _) = send(&down, &Report::Ready, Duration::from_secs(2)).await;
    let failed = outcome.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        failed
            .reason
            .starts_with(&format!("WireServer at {}: gave up after ", down.url())),
        "{}",
        failed.reason
    );
    assert!(
        failed
            .reason
            .ends_with("(deadline): goal state: answered 503 Service Unavailable"),
        "{}",
        failed.reason
    );
}

/// The emulator holds kiln to the protocol: it is checked here against requests written by hand.
#[tokio::test]
async fn the_emulator_refuses_what_azure_refuses() {
    let wire = WireServer::start(wire::Options::default());
    let client = kiln::net::client::link_local().unwrap();
    let goal = format!("{}/machine/?comp=goalstate", wire.url());
    let health = format!("{}/machine/?comp=health", wire.url());
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(client.get(&goal).send().await.unwrap()),
        400,
        "no x-ms-version"
    );
    let v = ("x-ms-version", "2012-11-30");
    assert_eq!(
        status(client.get(&goal).header(v.0, v.1).send().await.unwrap()),
        200
    );
    let document = |incarnation: u32, state: &str, details: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Health><GoalStateIncarnation>{incarnation}</GoalStateIncarnation>\
             <Container><ContainerId>{}</ContainerId><RoleInstanceList><Role><InstanceId>{}</InstanceId>\
             <Health><State>{state}</State>{details}</Health></Role></RoleInstanceList></Container></Health>",
            wire::Options::default().container_id,
            wire::Options::default().instance_id
        )
    };
    let post = |body: String, content_type: &'static str| {
        client
            .post(&health)
            .header(v.0, v.1)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let xml = "text/xml; charset=utf-8";
    assert_eq!(
        status(post(document(1, "Ready", ""), "application/json").await.unwrap()),
        415
    );
    assert_eq!(
        status(post(document(7, "Ready", ""), xml).await.unwrap()),
        410,
        "a stale incarnation"
    );
    assert_eq!(
        status(post(document(1, "NotReady", ""), xml).await.unwrap()),
        400,
        "NotReady needs details"
    );
    assert_eq!(status(post(document(1, "Fine", ""), xml).await.unwrap()), 400);
    assert!(wire.reports().is_empty());
    let details =
        "<Details><SubStatus>ProvisioningFailed</SubStatus><Description>why</Description></Details>";
    assert_eq!(
        status(post(document(1, "NotReady", details), xml).await.unwrap()),
        200
    );
    assert_eq!(wire.reports()[0].description.as_deref(), Some("why"));
}
