//! EC2 IMDS through the library against the emulator over real HTTP: tokens, expiry, refusals,
//! retries and the deadline.

use kiln::config::{Config, MetadataConfig};
use kiln::metadata::{Metadata, fetch};
use std::time::{Duration, Instant};
use testkit::emulator::metadata::{Cloud, Imds, MetadataEmulator, Options};

fn config(endpoint: &str, extra: &str) -> MetadataConfig {
    let text = format!("[metadata]\nprovider = \"ec2\"\nendpoint = \"{endpoint}\"\n{extra}\n");
    Config::parse(&text).expect("config").metadata
}

fn ec2(options: Options) -> (MetadataEmulator, MetadataConfig) {
    let emulator = MetadataEmulator::start(options);
    let config = config(&emulator.url(), "tags_prefix = \"env.\"\ndeadline = \"20s\"");
    (emulator, config)
}

fn options() -> Options {
    Options::new(Cloud::Ec2)
        .user_data("APP_SECRET=s3cr3t\n")
        .tag("env.APP_ENV", "staging")
        .tag("Name", "web-1")
}

fn assert_example(metadata: &Metadata) {
    let facts = &metadata.facts;
    assert_eq!(facts.provider, "ec2");
    assert_eq!(facts.instance_id.as_deref(), Some("i-0123456789abcdef0"));
    assert_eq!(facts.region.as_deref(), Some("eu-west-1"));
    assert_eq!(facts.zone.as_deref(), Some("eu-west-1b"));
    assert_eq!(facts.local_ipv4.as_deref(), Some("10.0.0.5"));
    assert_eq!(
        facts.hostname.as_deref(),
        Some("ip-10-0-0-5.eu-west-1.compute.internal")
    );
    assert_eq!(metadata.user_data.as_deref(), Some(&b"APP_SECRET=s3cr3t\n"[..]));
    assert_eq!(
        metadata.tags.iter().collect::<Vec<_>>(),
        vec![(&"env.APP_ENV".to_string(), &"staging".to_string())]
    );
}

#[tokio::test]
async fn v2_only_endpoint_gets_one_token_and_every_get_carries_it() {
    let (emulator, config) = ec2(options());
    let metadata = fetch(&config).await.expect("fetch");
    assert_example(&metadata);
    assert_eq!(emulator.tokens_issued(), 1);
    // The emulator answers 401 to a GET without a valid token.
    assert_eq!(emulator.count(401), 0, "{:?}", emulator.log());
    let log = emulator.log();
    assert!(log.iter().all(|l| l.status == 200), "{log:?}");
    // Only the tag matching the prefix is read.
    assert!(!log.iter().any(|l| l.path.ends_with("/Name")), "{log:?}");
}

#[tokio::test]
async fn an_ipv6_literal_endpoint_is_asked_there_and_only_there() {
    let emulator = MetadataEmulator::start_on("[::1]:0".parse().unwrap(), options()).expect("bind [::1]:0");
    let url = emulator.url();
    assert!(url.starts_with("http://[::1]:"), "{url}");
    let metadata = fetch(&config(&url, "tags_prefix = \"env.\"\ndeadline = \"20s\""))
        .await
        .expect("fetch");
    assert_example(&metadata);
    assert_eq!(metadata.endpoint, url);
    assert_eq!(emulator.tokens_issued(), 1);
    assert!(
        emulator.log().iter().all(|l| l.peer.is_ipv6()),
        "{:?}",
        emulator.log()
    );
}

#[tokio::test]
async fn a_token_that_expires_mid_fetch_is_renewed() {
    // The first token lives 50ms; every answer takes 100ms: all GETs with it see it expired.
    let mut options = options();
    options.first_token_ttl = Some(Duration::from_millis(50));
    options.latency = Duration::from_millis(100);
    let (emulator, config) = ec2(options);
    let metadata = fetch(&config).await.expect("fetch");
    assert_example(&metadata);
    assert!(emulator.count(401) >= 1, "{:?}", emulator.log());
    assert_eq!(emulator.tokens_issued(), 2, "{:?}", emulator.log());
}

#[tokio::test]
async fn a_disabled_endpoint_is_a_clear_error() {
    let mut options = options();
    options.imds = Imds::Disabled;
    let (emulator, config) = ec2(options);
    let err = fetch(&config).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "metadata (ec2 at {}), session token: IMDS token request refused (403): metadata endpoint disabled",
            emulator.url()
        )
    );
}

#[tokio::test]
async fn no_user_data_and_no_tags_is_fine() {
    let mut options = Options::new(Cloud::Ec2);
    options.instance_tags = false;
    let (emulator, config) = ec2(options);
    let metadata = fetch(&config).await.expect("fetch");
    assert_eq!(metadata.user_data, None);
    assert!(metadata.tags.is_empty());
    assert_eq!(
        emulator.count(404),
        2,
        "user-data and the tags listing: {:?}",
        emulator.log()
    );
    let env = kiln::env::freeze(&Default::default(), &config, &metadata).expect("freeze");
    assert_eq!(env.get("KILN_INSTANCE_ID"), Some("i-0123456789abcdef0"));
}

#[tokio::test]
async fn the_first_answers_503_then_success_within_the_deadline() {
    let mut options = options();
    options.fail_first = 3;
    let (emulator, config) = ec2(options);
    let metadata = fetch(&config).await.expect("fetch");
    assert_example(&metadata);
    assert_eq!(emulator.count(503), 3);
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let mut options = options();
    options.drop_first = 2;
    let (emulator, config) = ec2(options);
    let metadata = fetch(&config).await.expect("fetch");
    assert_example(&metadata);
    assert_eq!(emulator.count(0), 2, "{:?}", emulator.log());
}

/// A port nobody listens on: connections are refused at once, again and again.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

#[tokio::test]
async fn an_endpoint_that_is_down_fails_after_about_the_deadline() {
    let config = config(&closed_port(), "deadline = \"1500ms\"");
    let started = Instant::now();
    let err = fetch(&config).await.unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(4), "overran the deadline: {took:?}");
    assert_eq!(err.step, "session token");
    assert!(
        err.reason.starts_with("gave up after 1s") && err.reason.contains("(deadline): cannot connect"),
        "{err}"
    );
}

#[tokio::test]
async fn an_endpoint_that_never_answers_fails_after_about_the_deadline() {
    // Connections complete in the listen backlog and are never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let config = config(&url, "deadline = \"1500ms\"\nrequest_timeout = \"400ms\"");
    let started = Instant::now();
    let err = fetch(&config).await.unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(4), "overran the deadline: {took:?}");
    assert!(err.reason.contains("(deadline): no answer within"), "{err}");
    // Each attempt waited at most request_timeout: at least three attempts fit in 1.5s.
    assert!(!err.reason.contains("and 1 attempt "), "{err}");
}

#[tokio::test]
async fn imdsv1_only_when_the_config_opts_in() {
    let mut options = options();
    options.imds = Imds::V1Only;
    let (emulator, config) = ec2(options);
    let err = fetch(&config).await.unwrap_err();
    assert_eq!(
        err.reason,
        "IMDS token request refused (404): the endpoint has no IMDSv2; set imdsv1 = true to allow token-less requests"
    );
    let mut v1 = config.clone();
    v1.imdsv1 = true;
    let metadata = fetch(&v1).await.expect("fetch with imdsv1 = true");
    assert_example(&metadata);
    drop(emulator);
}

#[tokio::test]
async fn a_v1_allowed_endpoint_still_gets_tokens() {
    let mut options = options();
    options.imds = Imds::V1Allowed;
    let (emulator, config) = ec2(options);
    assert_example(&fetch(&config).await.expect("fetch"));
    assert_eq!(emulator.tokens_issued(), 1);
}

#[tokio::test]
async fn proxy_variables_never_see_metadata_requests() {
    // SAFETY: nextest runs this test alone in its own process; nothing else reads the environment.
    unsafe {
        for name in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
            std::env::set_var(name, "http://127.0.0.1:9");
        }
    }
    let (_emulator, config) = ec2(options());
    assert_example(&fetch(&config).await.expect("fetch despite the proxy variables"));
}
