//! The emulators themselves speak the documented protocols (statuses, headers, shapes), so the
//! provider tests against them mean something. Raw HTTP, no kiln code.

use std::time::Duration;
use testkit::emulator::metadata::{Cloud, Imds, MetadataEmulator, Options};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn ec2_token_rules() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let http = client();
    let token_url = format!("{}/latest/api/token", emulator.url());
    let ttl = "x-aws-ec2-metadata-token-ttl-seconds";
    assert_eq!(status(http.put(&token_url)).await, 400, "no TTL");
    assert_eq!(status(http.put(&token_url).header(ttl, "0")).await, 400);
    assert_eq!(status(http.put(&token_url).header(ttl, "21601")).await, 400);
    assert_eq!(status(http.put(&token_url).header(ttl, "abc")).await, 400);
    assert_eq!(
        status(
            http.put(&token_url)
                .header(ttl, "60")
                .header("x-forwarded-for", "10.0.0.9")
        )
        .await,
        403
    );
    assert_eq!(status(http.get(&token_url)).await, 405);
    let answer = http.put(&token_url).header(ttl, "21600").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.headers()[ttl], "21600");
    let token = answer.text().await.unwrap();

    let id_url = format!("{}/latest/meta-data/instance-id", emulator.url());
    assert_eq!(status(http.get(&id_url)).await, 401, "v2-only: no token");
    assert_eq!(
        status(http.get(&id_url).header("x-aws-ec2-metadata-token", "bogus")).await,
        401
    );
    let with = |url: &str| http.get(url).header("x-aws-ec2-metadata-token", &token);
    let answer = with(&id_url).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.text().await.unwrap(), "i-0123456789abcdef0");
    let listing = with(&format!("{}/latest/meta-data/", emulator.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.lines().any(|l| l == "placement/"), "{listing}");
    assert_eq!(
        status(with(&format!("{}/latest/user-data", emulator.url()))).await,
        404
    );
    assert_eq!(
        status(with(&format!("{}/latest/meta-data/nope", emulator.url()))).await,
        404
    );
    let doc: serde_json::Value = with(&format!(
        "{}/latest/dynamic/instance-identity/document",
        emulator.url()
    ))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(doc["region"], "eu-west-1");
}

#[tokio::test]
async fn ec2_tokens_expire() {
    let mut options = Options::new(Cloud::Ec2);
    options.first_token_ttl = Some(Duration::from_millis(100));
    let emulator = MetadataEmulator::start(options);
    let http = client();
    let token = http
        .put(format!("{}/latest/api/token", emulator.url()))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let get = || {
        http.get(format!("{}/latest/meta-data/instance-id", emulator.url()))
            .header("x-aws-ec2-metadata-token", &token)
    };
    assert_eq!(status(get()).await, 200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(status(get()).await, 401);
}

#[tokio::test]
async fn ec2_modes() {
    let http = client();
    for (imds, token_status, tokenless_status) in [
        (Imds::V1Allowed, 200, 200),
        (Imds::V1Only, 404, 200),
        (Imds::Disabled, 403, 403),
    ] {
        let mut options = Options::new(Cloud::Ec2);
        options.imds = imds;
        let emulator = MetadataEmulator::start(options);
        let put = http
            .put(format!("{}/latest/api/token", emulator.url()))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "60");
        assert_eq!(status(put).await, token_status, "{imds:?}");
        let get = http.get(format!("{}/latest/meta-data/instance-id", emulator.url()));
        assert_eq!(status(get).await, tokenless_status, "{imds:?}");
    }
}

#[tokio::test]
async fn gce_requires_the_flavor_header_and_sends_it_back() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Gce).tag("env.A", "1"));
    let http = client();
    let url = format!("{}/computeMetadata/v1/instance/id", emulator.url());
    let answer = http.get(&url).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    assert_eq!(answer.headers()["metadata-flavor"], "Google");
    let flavored = |url: String| http.get(url).header("metadata-flavor", "Google");
    let answer = flavored(url.clone()).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.headers()["metadata-flavor"], "Google");
    assert_eq!(answer.text().await.unwrap(), "4520031799277581759");
    let xff = flavored(url).header("x-forwarded-for", "1.2.3.4");
    assert_eq!(status(xff).await, 403);
    let dir = flavored(format!("{}/computeMetadata/v1/instance", emulator.url()));
    assert_eq!(status(dir).await, 301);
    let doc: serde_json::Value = flavored(format!(
        "{}/computeMetadata/v1/instance/?recursive=true",
        emulator.url()
    ))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(doc["networkInterfaces"][0]["ip"], "10.0.0.5");
    assert_eq!(doc["attributes"]["env.A"], "1");
    let attr = flavored(format!(
        "{}/computeMetadata/v1/instance/attributes/env.A",
        emulator.url()
    ));
    assert_eq!(attr.send().await.unwrap().text().await.unwrap(), "1");
}

#[tokio::test]
async fn azure_requires_the_header_and_an_api_version() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Azure).user_data("A=1"));
    let http = client();
    let url = |path: &str| format!("{}{path}", emulator.url());
    assert_eq!(
        status(http.get(url("/metadata/instance?api-version=2021-02-01"))).await,
        400
    );
    let with = |u: String| http.get(u).header("metadata", "true");
    let answer = with(url("/metadata/instance")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("api-version"));
    assert_eq!(
        status(with(url("/metadata/instance?api-version=1999-01-01"))).await,
        400
    );
    let doc: serde_json::Value = with(url("/metadata/instance?api-version=2021-02-01"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["compute"]["location"], "westeurope");
    let user_data = with(url(
        "/metadata/instance/compute/userData?api-version=2021-01-01&format=text",
    ));
    assert_eq!(user_data.send().await.unwrap().text().await.unwrap(), "QT0x");
    let leaf_json = with(url("/metadata/instance/compute/userData?api-version=2021-01-01"));
    assert_eq!(status(leaf_json).await, 400);
}

#[tokio::test]
async fn openstack_and_digitalocean_documents() {
    let http = client();
    let os = MetadataEmulator::start(Options::new(Cloud::OpenStack).tag("env.A", "1"));
    let doc: serde_json::Value = http
        .get(format!("{}/openstack/latest/meta_data.json", os.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["meta"]["env.A"], "1");
    assert_eq!(doc["availability_zone"], "nova");
    assert_eq!(
        status(http.get(format!("{}/openstack/latest/user_data", os.url()))).await,
        404
    );

    let dig = MetadataEmulator::start(Options::new(Cloud::DigitalOcean));
    let doc: serde_json::Value = http
        .get(format!("{}/metadata/v1.json", dig.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["droplet_id"], 2756294);
    assert_eq!(doc["interfaces"]["private"][0]["ipv4"]["ip_address"], "10.0.0.5");
    assert!(doc.get("user_data").is_none());
}

#[tokio::test]
async fn fault_knobs() {
    let mut options = Options::new(Cloud::DigitalOcean);
    options.fail_first = 1;
    options.drop_first = 1;
    options.latency = Duration::from_millis(200);
    let emulator = MetadataEmulator::start(options);
    let http = client();
    let url = format!("{}/metadata/v1.json", emulator.url());
    let started = std::time::Instant::now();
    assert_eq!(status(http.get(&url)).await, 503);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(http.get(&url).send().await.is_err(), "the second is dropped");
    assert_eq!(status(http.get(&url)).await, 200);
    assert_eq!(
        emulator.log().iter().map(|l| l.status).collect::<Vec<_>>(),
        vec![503, 0, 200]
    );
}
