//! The notice paths of the metadata emulators speak the documented formats, so the lifecycle
//! tests against them mean something. Raw HTTP, no kiln code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// 2030-01-01T00:00:00Z.
fn y2030() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

async fn ec2_get(http: &reqwest::Client, emulator: &MetadataEmulator, path: &str) -> (u16, String) {
    let token = http
        .put(format!("{}/latest/api/token", emulator.url()))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let answer = http
        .get(format!("{}/latest/meta-data/{path}", emulator.url()))
        .header("x-aws-ec2-metadata-token", token)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

#[tokio::test]
async fn ec2_notices_are_absent_until_announced_then_documented_json() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let http = client();
    for path in [
        "spot/instance-action",
        "events/recommendations/rebalance",
        "autoscaling/target-lifecycle-state",
    ] {
        assert_eq!(ec2_get(&http, &emulator, path).await.0, 404, "{path}");
    }
    assert_eq!(
        ec2_get(&http, &emulator, "events/maintenance/scheduled").await,
        (200, "[]".into())
    );

    emulator.notices(|n| {
        n.spot_interruption("terminate", y2030());
        n.rebalance(y2030());
        n.target_lifecycle_state = Some("Terminated".into());
        n.ec2_scheduled("system-reboot", y2030(), y2030() + Duration::from_secs(1000));
    });
    let (code, spot) = ec2_get(&http, &emulator, "spot/instance-action").await;
    assert_eq!(code, 200);
    let spot: serde_json::Value = serde_json::from_str(&spot).unwrap();
    assert_eq!(
        spot,
        serde_json::json!({"action": "terminate", "time": "2030-01-01T00:00:00Z"})
    );
    let (_, rebalance) = ec2_get(&http, &emulator, "events/recommendations/rebalance").await;
    assert_eq!(rebalance, r#"{"noticeTime":"2030-01-01T00:00:00Z"}"#);
    assert_eq!(
        ec2_get(&http, &emulator, "autoscaling/target-lifecycle-state").await,
        (200, "Terminated".into())
    );
    let (_, events) = ec2_get(&http, &emulator, "events/maintenance/scheduled").await;
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let event = &events[0];
    assert_eq!(event["Code"], "system-reboot");
    assert_eq!(event["State"], "active");
    assert_eq!(event["NotBefore"], "01 Jan 2030 00:00:00 GMT");
    assert_eq!(event["NotAfter"], "01 Jan 2030 00:16:40 GMT");
    assert!(event["EventId"].as_str().unwrap().starts_with("instance-event-"));
    // A token is still required, as for every path.
    let bare = http
        .get(format!(
            "{}/latest/meta-data/spot/instance-action",
            emulator.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 401);
}

async fn gce_get(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.get(url)
        .header("metadata-flavor", "Google")
        .send()
        .await
        .unwrap()
}

fn etag(answer: &reqwest::Response) -> String {
    answer.headers()["etag"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gce_hanging_gets_answer_on_a_change_with_a_new_etag() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Gce));
    let http = client();
    let url = format!("{}/computeMetadata/v1/instance/preempted", emulator.url());
    let first = gce_get(&http, &url).await;
    assert_eq!(first.headers()["metadata-flavor"], "Google");
    let first_etag = etag(&first);
    assert_eq!(first_etag.len(), 16, "{first_etag}");
    assert_eq!(first.text().await.unwrap(), "FALSE");
    let maintenance = gce_get(
        &http,
        &format!("{}/computeMetadata/v1/instance/maintenance-event", emulator.url()),
    )
    .await;
    assert_eq!(maintenance.text().await.unwrap(), "NONE");

    // A stale ETag is answered at once.
    let stale = gce_get(
        &http,
        &format!("{url}?wait_for_change=true&last_etag=0000000000000000"),
    )
    .await;
    assert_eq!(
        (etag(&stale), stale.text().await.unwrap()),
        (first_etag.clone(), "FALSE".into())
    );

    // The current one hangs until the value changes.
    let hanging = tokio::spawn({
        let (http, url) = (
            http.clone(),
            format!("{url}?wait_for_change=true&last_etag={first_etag}"),
        );
        async move { gce_get(&http, &url).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while emulator.waiting() != 1 {
        assert!(std::time::Instant::now() < deadline, "the GET never hung");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!hanging.is_finished());
    emulator.notices(|n| n.preempted = true);
    let changed = hanging.await.unwrap();
    assert_ne!(etag(&changed), first_etag);
    assert_eq!(changed.text().await.unwrap(), "TRUE");

    // timeout_sec: answered without a change, with the same value and ETag.
    let now = etag(&gce_get(&http, &url).await);
    let timed = gce_get(
        &http,
        &format!("{url}?wait_for_change=true&last_etag={now}&timeout_sec=1"),
    )
    .await;
    assert_eq!(timed.status().as_u16(), 200);
    assert_eq!(etag(&timed), now);
    assert_eq!(timed.text().await.unwrap(), "TRUE");
    // And the header is still required.
    let bare = http
        .get(format!("{url}?wait_for_change=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 403);
}

#[tokio::test]
async fn azure_scheduled_events_are_listed_and_started_by_their_acknowledgement() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Azure));
    let http = client();
    let url = format!(
        "{}/metadata/scheduledevents?api-version=2020-07-01",
        emulator.url()
    );
    let get = |http: &reqwest::Client| http.get(&url).header("metadata", "true").send();
    let empty: serde_json::Value = get(&http).await.unwrap().json().await.unwrap();
    assert_eq!(empty, serde_json::json!({"DocumentIncarnation": 0, "Events": []}));

    let id = emulator.notices(|n| n.azure_event("Preempt", &["web-1"], y2030()));
    let doc: serde_json::Value = get(&http).await.unwrap().json().await.unwrap();
    assert_eq!(doc["DocumentIncarnation"], 1);
    let event = &doc["Events"][0];
    assert_eq!(event["EventId"], id.as_str());
    assert_eq!(event["EventType"], "Preempt");
    assert_eq!(event["ResourceType"], "VirtualMachine");
    assert_eq!(event["Resources"], serde_json::json!(["web-1"]));
    assert_eq!(event["EventStatus"], "Scheduled");
    assert_eq!(event["NotBefore"], "Tue, 01 Jan 2030 00:00:00 GMT");
    assert_eq!(event["EventSource"], "Platform");

    let post = |body: String| {
        http.post(&url)
            .header("metadata", "true")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        post(r#"{"StartRequests": [{"EventId": "nope"}]}"#.into())
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(post("{}".into()).await.unwrap().status(), 400);
    let ack = format!(r#"{{"StartRequests": [{{"EventId": "{id}"}}]}}"#);
    assert_eq!(post(ack).await.unwrap().status(), 200);
    let started: serde_json::Value = get(&http).await.unwrap().json().await.unwrap();
    assert_eq!(started["DocumentIncarnation"], 2);
    assert_eq!(started["Events"][0]["EventStatus"], "Started");
    assert_eq!(started["Events"][0]["NotBefore"], "");
    assert_eq!(emulator.notices_now().acknowledged, vec![id]);

    // The documented refusals: no header, no or an unknown api-version.
    assert_eq!(http.get(&url).send().await.unwrap().status(), 400);
    let no_version = format!("{}/metadata/scheduledevents", emulator.url());
    assert_eq!(
        http.get(&no_version)
            .header("metadata", "true")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let old = format!(
        "{}/metadata/scheduledevents?api-version=2016-01-01",
        emulator.url()
    );
    assert_eq!(
        http.get(&old)
            .header("metadata", "true")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}
