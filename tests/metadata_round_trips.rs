//! How many requests a fetch makes and how many of them wait for one another (its sequential
//! depth), per cloud, counted by the emulator: every answer is delayed by the same latency, so
//! requests sent together overlap and count once in the depth. The depth is what a boot waits
//! for: a count and a depth, never a time.

use kiln::config::{Config, MetadataConfig};
use kiln::metadata::fetch;
use std::time::Duration;
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options};

/// Long enough that requests sent together surely overlap on a busy machine.
const LATENCY: Duration = Duration::from_millis(40);

fn config(emulator: &MetadataEmulator, extra: &str) -> MetadataConfig {
    let text = emulator.config_section(&format!("deadline = \"20s\"\n{extra}"));
    Config::parse(&text).expect("config").metadata
}

fn slow(options: Options) -> MetadataEmulator {
    MetadataEmulator::start(Options {
        latency: LATENCY,
        ..options
    })
}

/// Fetches with `extra` in `[metadata]`; the emulator's log as `METHOD path` lines, sorted.
async fn fetched(emulator: &MetadataEmulator, extra: &str) -> Vec<String> {
    fetch(&config(emulator, extra)).await.expect("fetch");
    let mut requests: Vec<String> = emulator
        .log()
        .iter()
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    requests.sort();
    requests
}

#[tokio::test]
async fn ec2_token_then_everything_at_once_then_the_wanted_tags() {
    let emulator = slow(
        Options::new(Cloud::Ec2)
            .user_data("APP_SECRET=s3cr3t\n")
            .tag("env.APP_ENV", "prod")
            .tag("env.FEATURE", "a,b")
            .tag("Name", "web-1"),
    );
    let requests = fetched(&emulator, "tags_prefix = \"env.\"").await;
    assert_eq!(
        requests,
        [
            "GET /latest/dynamic/instance-identity/document",
            "GET /latest/meta-data/local-hostname",
            "GET /latest/meta-data/tags/instance",
            "GET /latest/meta-data/tags/instance/env.APP_ENV",
            "GET /latest/meta-data/tags/instance/env.FEATURE",
            "GET /latest/user-data",
            "PUT /latest/api/token",
        ]
    );
    // The token; the document, hostname, user-data and tag listing together; the tags wanted.
    assert_eq!(emulator.sequential_depth(), 3, "{:#?}", emulator.log());
}

#[tokio::test]
async fn ec2_tags_not_exposed_cost_no_round_trip() {
    let emulator = slow(Options {
        instance_tags: false,
        ..Options::new(Cloud::Ec2).user_data("APP_SECRET=s3cr3t\n")
    });
    let requests = fetched(&emulator, "tags_prefix = \"env.\"").await;
    assert_eq!(requests.len(), 5, "{requests:#?}");
    assert_eq!(emulator.count(404), 1, "the tag listing: {requests:#?}");
    assert_eq!(emulator.sequential_depth(), 2, "{:#?}", emulator.log());
}

#[tokio::test]
async fn ec2_tags_none_wanted_cost_no_round_trip() {
    let emulator = slow(Options::new(Cloud::Ec2).tag("Name", "web-1"));
    let requests = fetched(&emulator, "tags_prefix = \"env.\"").await;
    assert!(
        !requests.iter().any(|r| r.contains("/tags/instance/")),
        "{requests:#?}"
    );
    assert_eq!(emulator.sequential_depth(), 2, "{:#?}", emulator.log());
}

#[tokio::test]
async fn gce_one_recursive_document() {
    let mut options = Options::new(Cloud::Gce)
        .user_data("APP_SECRET=s3cr3t\n")
        .tag("env.APP_ENV", "prod");
    options
        .instance
        .project_attributes
        .insert("env.REGION_DB".into(), "db.internal".into());
    let emulator = slow(options);
    let requests = fetched(&emulator, "tags_prefix = \"env.\"").await;
    assert_eq!(requests, ["GET /computeMetadata/v1/?alt=json&recursive=true"]);
    assert_eq!(emulator.sequential_depth(), 1);
}

#[tokio::test]
async fn azure_instance_document_and_user_data_together() {
    let emulator = slow(
        Options::new(Cloud::Azure)
            .user_data("APP_SECRET=s3cr3t\n")
            .tag("env.APP_ENV", "prod"),
    );
    let requests = fetched(&emulator, "tags_prefix = \"env.\"").await;
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(emulator.sequential_depth(), 1, "{:#?}", emulator.log());
}

#[tokio::test]
async fn openstack_documents_together() {
    let emulator = slow(
        Options::new(Cloud::OpenStack)
            .user_data("APP_SECRET=s3cr3t\n")
            .tag("env.APP_ENV", "prod"),
    );
    let requests = fetched(&emulator, "tags_prefix = \"env.\"").await;
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert_eq!(emulator.sequential_depth(), 1, "{:#?}", emulator.log());
}

#[tokio::test]
async fn digitalocean_one_document() {
    let emulator = slow(Options::new(Cloud::DigitalOcean).user_data("APP_SECRET=s3cr3t\n"));
    let requests = fetched(&emulator, "").await;
    assert_eq!(requests, ["GET /metadata/v1.json"]);
    assert_eq!(emulator.sequential_depth(), 1);
}

#[test]
fn the_depth_counts_waits_not_requests() {
    // Checked on the emulator itself: three requests sent together, then one after them.
    let emulator = slow(Options::new(Cloud::DigitalOcean));
    let url = format!("{}/metadata/v1.json", emulator.url());
    let get = |url: String| std::thread::spawn(move || ureq_get(&url));
    let together: Vec<_> = (0..3).map(|_| get(url.clone())).collect();
    for t in together {
        t.join().unwrap();
    }
    ureq_get(&url);
    assert_eq!(emulator.log().len(), 4);
    assert_eq!(emulator.sequential_depth(), 2);
}

/// One plain GET over a fresh connection, answer read whole.
fn ureq_get(url: &str) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
