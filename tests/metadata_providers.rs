//! Every provider through the library against its emulator over real HTTP (and nocloud from a
//! seed directory): the facts, user-data and tags each one returns, and the protocol details
//! each one must get right.

use kiln::config::{Config, MetadataConfig};
use kiln::metadata::{InstanceFacts, fetch};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use testkit::emulator::metadata::{CLOUDS, Cloud, MetadataEmulator, Options};

fn config(emulator: &MetadataEmulator, extra: &str) -> MetadataConfig {
    let text = emulator.config_section(&format!("deadline = \"20s\"\n{extra}"));
    Config::parse(&text).expect("config").metadata
}

fn facts(
    provider: &str,
    id: &str,
    region: Option<&str>,
    zone: Option<&str>,
    hostname: &str,
) -> InstanceFacts {
    InstanceFacts {
        provider: provider.into(),
        instance_id: Some(id.into()),
        region: region.map(Into::into),
        zone: zone.map(Into::into),
        local_ipv4: Some("10.0.0.5".into()),
        hostname: Some(hostname.into()),
    }
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn gce_recursive_instance_and_attributes() {
    let mut options = Options::new(Cloud::Gce)
        .user_data("APP_SECRET=s3cr3t\n")
        .tag("env.APP_ENV", "instance")
        .tag("ssh-keys", "not an env var");
    options.instance.project_attributes.extend(tags(&[
        ("env.APP_ENV", "project"),
        ("env.REGION_DB", "db.internal"),
    ]));
    let emulator = MetadataEmulator::start(options);
    let metadata = fetch(&config(&emulator, "tags_prefix = \"env.\""))
        .await
        .expect("fetch");
    assert_eq!(
        metadata.facts,
        facts(
            "gce",
            "4520031799277581759",
            Some("europe-west1"),
            Some("europe-west1-b"),
            "web-1.c.kiln-test.internal"
        )
    );
    assert_eq!(metadata.user_data.as_deref(), Some(&b"APP_SECRET=s3cr3t\n"[..]));
    // Instance attributes override project attributes, as on GCE.
    assert_eq!(
        metadata.tags,
        tags(&[("env.APP_ENV", "instance"), ("env.REGION_DB", "db.internal")])
    );
    let paths: Vec<String> = emulator.log().into_iter().map(|l| l.path).collect();
    assert_eq!(
        paths,
        ["/computeMetadata/v1/?alt=json&recursive=true"],
        "one request for the instance and the project"
    );
}

#[tokio::test]
async fn gce_refuses_a_server_that_is_not_the_metadata_server() {
    // An EC2 emulator does not answer with Metadata-Flavor: Google.
    let ec2 = MetadataEmulator::start(Options::new(Cloud::Ec2));
    let config = Config::parse(&format!(
        "[metadata]\nprovider = \"gce\"\nendpoint = \"{}\"\n",
        ec2.url()
    ))
    .unwrap()
    .metadata;
    let err = fetch(&config).await.unwrap_err();
    assert_eq!(err.step, "instance metadata");
    assert_eq!(
        err.reason,
        "answered 401 without the header Metadata-Flavor: Google: not a GCE metadata server"
    );
}

#[tokio::test]
async fn azure_document_base64_user_data_and_tags_list() {
    // Binary user-data (gzip) survives base64.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"APP_SECRET=s3cr3t\n").unwrap();
    let gz = gz.finish().unwrap();
    let options = Options::new(Cloud::Azure)
        .user_data(gz.clone())
        .tag("env.APP_ENV", "prod")
        .tag("owner", "ops");
    let emulator = MetadataEmulator::start(options);
    let metadata = fetch(&config(&emulator, "tags_prefix = \"env.\""))
        .await
        .expect("fetch");
    assert_eq!(
        metadata.facts,
        facts(
            "azure",
            "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
            Some("westeurope"),
            Some("1"),
            "web-1"
        )
    );
    assert_eq!(metadata.user_data, Some(gz));
    assert_eq!(metadata.tags, tags(&[("env.APP_ENV", "prod")]));
    assert!(emulator.log().iter().all(|l| l.path.contains("api-version=")));
}

#[tokio::test]
async fn azure_retries_404_410_and_429_as_documented() {
    for status in [404u16, 410, 429] {
        let mut options = Options::new(Cloud::Azure).user_data("A=1\n");
        options.fail_first = 2;
        options.fail_status = status;
        let emulator = MetadataEmulator::start(options);
        let metadata = fetch(&config(&emulator, "")).await.expect("fetch");
        assert_eq!(metadata.user_data.as_deref(), Some(&b"A=1\n"[..]));
        assert_eq!(emulator.count(status), 2);
    }
}

#[tokio::test]
async fn azure_without_user_data_has_none() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Azure));
    let metadata = fetch(&config(&emulator, "")).await.expect("fetch");
    assert_eq!(metadata.user_data, None);
}

#[tokio::test]
async fn a_final_4xx_is_not_retried() {
    // A 400 is final: the error comes at once, not at the deadline.
    let mut options = Options::new(Cloud::Gce);
    options.fail_first = 1;
    options.fail_status = 400;
    let emulator = MetadataEmulator::start(options);
    let started = std::time::Instant::now();
    let err = fetch(&config(&emulator, "")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.reason.contains("400"), "{err}");
    assert_eq!(emulator.log().len(), 1);
}

#[tokio::test]
async fn openstack_meta_data_json_user_data_and_meta() {
    let options = Options::new(Cloud::OpenStack)
        .user_data("{\"APP_SECRET\": \"s3cr3t\"}")
        .tag("env.APP_ENV", "prod")
        .tag("role", "web");
    let emulator = MetadataEmulator::start(options);
    let metadata = fetch(&config(&emulator, "tags_prefix = \"env.\""))
        .await
        .expect("fetch");
    assert_eq!(
        metadata.facts,
        facts(
            "openstack",
            "d8e02d56-2648-49a3-bf97-6be8f1204f38",
            None,
            Some("nova"),
            "web-1.novalocal"
        )
    );
    assert_eq!(
        metadata.user_data.as_deref(),
        Some(&b"{\"APP_SECRET\": \"s3cr3t\"}"[..])
    );
    assert_eq!(metadata.tags, tags(&[("env.APP_ENV", "prod")]));
}

#[tokio::test]
async fn openstack_without_user_data_has_none() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::OpenStack));
    let metadata = fetch(&config(&emulator, "")).await.expect("fetch");
    assert_eq!(metadata.user_data, None);
    assert_eq!(metadata.facts.local_ipv4.as_deref(), Some("10.0.0.5"));
}

#[tokio::test]
async fn digitalocean_one_document() {
    let emulator =
        MetadataEmulator::start(Options::new(Cloud::DigitalOcean).user_data("APP_SECRET=s3cr3t\n"));
    let metadata = fetch(&config(&emulator, "tags_prefix = \"env.\""))
        .await
        .expect("fetch");
    assert_eq!(
        metadata.facts,
        facts("digitalocean", "2756294", Some("ams3"), None, "web-1")
    );
    assert_eq!(metadata.user_data.as_deref(), Some(&b"APP_SECRET=s3cr3t\n"[..]));
    assert!(metadata.tags.is_empty());
    assert_eq!(emulator.log().len(), 1, "{:?}", emulator.log());
}

#[tokio::test]
async fn user_data_none_is_not_even_fetched() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Ec2).user_data("A=1\n"));
    let metadata = fetch(&config(&emulator, "user_data = \"none\""))
        .await
        .expect("fetch");
    assert_eq!(metadata.user_data, None);
    assert!(!emulator.log().iter().any(|l| l.path.contains("user-data")));
}

#[tokio::test]
async fn nocloud_reads_the_seed_directory() {
    let seed = tempfile::tempdir().unwrap();
    std::fs::write(
        seed.path().join("meta-data"),
        "instance-id: iid-local01\nlocal-hostname: web-1\nregion: local\n",
    )
    .unwrap();
    std::fs::write(seed.path().join("user-data"), "APP_SECRET=s3cr3t\n").unwrap();
    let config = Config::parse(&format!("[metadata]\nseed = {:?}\n", seed.path()))
        .unwrap()
        .metadata;
    let metadata = fetch(&config).await.expect("fetch");
    assert_eq!(metadata.endpoint, seed.path().display().to_string());
    assert_eq!(metadata.facts.instance_id.as_deref(), Some("iid-local01"));
    assert_eq!(metadata.facts.hostname.as_deref(), Some("web-1"));
    assert_eq!(metadata.facts.region.as_deref(), Some("local"));
    assert_eq!(metadata.user_data.as_deref(), Some(&b"APP_SECRET=s3cr3t\n"[..]));
}

#[tokio::test]
async fn nocloud_without_a_seed_directory_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("seed");
    let config = Config::parse(&format!("[metadata]\nseed = {missing:?}\n"))
        .unwrap()
        .metadata;
    let err = fetch(&config).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "metadata (nocloud at {}), seed directory: does not exist (create it with meta-data and user-data files, or set [metadata] provider)",
            missing.display()
        )
    );
}

#[test]
fn the_default_datasource_is_the_local_seed() {
    let config = Config::parse("").unwrap().metadata;
    assert_eq!(config.provider, kiln::config::ProviderKind::Nocloud);
    assert_eq!(config.seed, std::path::Path::new("/var/lib/kiln/seed"));
}

/// Gzip of `APP_SECRET=s3cr3t\n`: binary user-data, to check it survives each cloud's encoding.
fn gzipped() -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"APP_SECRET=s3cr3t\n").unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn oracle_imds_v2_document_base64_user_data_and_freeform_tags() {
    let options = Options::new(Cloud::Oracle)
        .user_data(gzipped())
        .tag("env.APP_ENV", "prod")
        .tag("owner", "ops");
    let emulator = MetadataEmulator::start(options);
    let metadata = fetch(&config(&emulator, "tags_prefix = \"env.\""))
        .await
        .expect("fetch");
    assert_eq!(
        metadata.facts,
        facts(
            "oracle",
            "ocid1.instance.oc1.eu-frankfurt-1.antheljtkiln",
            Some("eu-frankfurt-1"),
            Some("Uocm:EU-FRANKFURT-1-AD-1"),
            "web-1"
        )
    );
    assert_eq!(metadata.user_data, Some(gzipped()));
    assert_eq!(metadata.tags, tags(&[("env.APP_ENV", "prod")]));
    // kiln's requests all carried the header: none was refused. Without it, 401.
    assert_eq!(emulator.count(200), emulator.log().len(), "{:?}", emulator.log());
    let url = format!("{}/opc/v2/instance/", emulator.url());
    assert_eq!(testkit::wait::http_get(&url).unwrap().0, 401);
}

#[tokio::test]
async fn hetzner_yaml_metadata_private_network_and_userdata() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Hetzner).user_data("APP_SECRET=s3cr3t\n"));
    let metadata = fetch(&config(&emulator, "")).await.expect("fetch");
    assert_eq!(
        metadata.facts,
        facts("hetzner", "42", Some("eu-central"), Some("hel1-dc2"), "web-1")
    );
    assert_eq!(metadata.user_data.as_deref(), Some(&b"APP_SECRET=s3cr3t\n"[..]));
    // Without user data Hetzner answers an empty body: none.
    let bare = MetadataEmulator::start(Options::new(Cloud::Hetzner));
    assert_eq!(fetch(&config(&bare, "")).await.expect("fetch").user_data, None);
}

#[tokio::test]
async fn scaleway_user_data_only_from_a_privileged_port() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Scaleway).user_data(gzipped()));
    let metadata = fetch(&config(&emulator, "")).await.expect("fetch");
    assert_eq!(
        metadata.facts,
        facts(
            "scaleway",
            "0e6a4c3b-7d21-4f5e-9a8b-3c2d1e0f9a8b",
            Some("fr-par"),
            Some("fr-par-1"),
            "web-1"
        )
    );
    assert_eq!(metadata.user_data, Some(gzipped()));
    let log = emulator.log();
    let user_data = log
        .iter()
        .find(|l| l.path == "/user_data/cloud-init")
        .expect("user-data asked");
    assert_eq!(user_data.status, 200);
    assert!(user_data.peer.port() < 1024, "{user_data:?}");
    // From an ordinary port, refused as Scaleway refuses it.
    let url = format!("{}/user_data/cloud-init", emulator.url());
    assert_eq!(testkit::wait::http_get(&url).unwrap().0, 403);
    let bare = MetadataEmulator::start(Options::new(Cloud::Scaleway));
    assert_eq!(fetch(&config(&bare, "")).await.expect("fetch").user_data, None);
}

#[tokio::test]
async fn vultr_v1_json_and_user_data() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Vultr).user_data("APP_SECRET=s3cr3t\n"));
    let metadata = fetch(&config(&emulator, "")).await.expect("fetch");
    assert_eq!(
        metadata.facts,
        facts(
            "vultr",
            "bd7b2a5b-0f1e-4c7a-9e33-5a1c3f0d2e11",
            Some("ams"),
            None,
            "web-1"
        )
    );
    assert_eq!(metadata.user_data.as_deref(), Some(&b"APP_SECRET=s3cr3t\n"[..]));
    let bare = MetadataEmulator::start(Options::new(Cloud::Vultr));
    assert_eq!(fetch(&config(&bare, "")).await.expect("fetch").user_data, None);
}

#[tokio::test]
async fn akamai_token_then_instance_network_and_base64_user_data() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Akamai).user_data(gzipped()));
    let metadata = fetch(&config(&emulator, "")).await.expect("fetch");
    assert_eq!(
        metadata.facts,
        facts("akamai", "61234567", Some("us-ord"), None, "web-1")
    );
    assert_eq!(metadata.user_data, Some(gzipped()));
    // One token for the whole fetch, asked first; no request was refused.
    assert_eq!(emulator.tokens_issued(), 1);
    let log = emulator.log();
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str()),
        ("PUT", "/v1/token")
    );
    assert_eq!(emulator.count(200), log.len(), "{log:?}");
    // Without the token, 401.
    let url = format!("{}/v1/instance", emulator.url());
    assert_eq!(testkit::wait::http_get(&url).unwrap().0, 401);
}

#[tokio::test]
async fn alibaba_token_and_text_leaves() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Alibaba).user_data("APP_SECRET=s3cr3t\n"));
    let metadata = fetch(&config(&emulator, "")).await.expect("fetch");
    assert_eq!(
        metadata.facts,
        facts(
            "alibaba",
            "i-bp1kiln0example0001",
            Some("cn-hangzhou"),
            Some("cn-hangzhou-i"),
            "iZbp1kiln0example0001Z"
        )
    );
    assert_eq!(metadata.user_data.as_deref(), Some(&b"APP_SECRET=s3cr3t\n"[..]));
    assert_eq!(emulator.tokens_issued(), 1);
    assert_eq!(emulator.count(200), emulator.log().len(), "{:?}", emulator.log());
    // Hardened mode: no token, 403.
    let url = format!("{}/latest/meta-data/instance-id", emulator.url());
    assert_eq!(testkit::wait::http_get(&url).unwrap().0, 403);
    let bare = MetadataEmulator::start(Options::new(Cloud::Alibaba));
    assert_eq!(fetch(&config(&bare, "")).await.expect("fetch").user_data, None);
}

#[tokio::test]
async fn exoscale_meta_data_leaves_and_user_data() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Exoscale).user_data("APP_SECRET=s3cr3t\n"));
    let metadata = fetch(&config(&emulator, "")).await.expect("fetch");
    assert_eq!(
        metadata.facts,
        facts(
            "exoscale",
            "8f2c1d3e-4b5a-4c6d-9e8f-0a1b2c3d4e5f",
            Some("ch-gva-2"),
            Some("ch-gva-2"),
            "web-1"
        )
    );
    assert_eq!(metadata.user_data.as_deref(), Some(&b"APP_SECRET=s3cr3t\n"[..]));
    let bare = MetadataEmulator::start(Options::new(Cloud::Exoscale));
    assert_eq!(fetch(&config(&bare, "")).await.expect("fetch").user_data, None);
}

#[tokio::test]
async fn upcloud_one_document_private_interface() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::UpCloud).user_data("APP_SECRET=s3cr3t\n"));
    let metadata = fetch(&config(&emulator, "")).await.expect("fetch");
    assert_eq!(
        metadata.facts,
        facts(
            "upcloud",
            "00b3e5d2-8c1a-4f6e-9d7b-2a4c6e8f0a1b",
            Some("fi-hel2"),
            None,
            "web-1"
        )
    );
    assert_eq!(metadata.user_data.as_deref(), Some(&b"APP_SECRET=s3cr3t\n"[..]));
    assert_eq!(emulator.log().len(), 1, "{:?}", emulator.log());
    let bare = MetadataEmulator::start(Options::new(Cloud::UpCloud));
    assert_eq!(fetch(&config(&bare, "")).await.expect("fetch").user_data, None);
}

/// Without root or CAP_NET_BIND_SERVICE no source port below 1024 can be bound: that was retried
/// until the deadline (a minute at boot) as if the network were down. Now it ends the fetch at
/// once, saying what kiln needs.
#[test]
fn scaleway_without_a_privileged_port_says_so_at_once() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Scaleway).user_data("A=1\n"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln.toml");
    std::fs::write(&config, emulator.config_section("deadline = \"30s\"")).unwrap();
    let world_readable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(dir.path(), world_readable).unwrap();
    let output = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(["env", "--config"])
        .arg(&config)
        .args(["--write-to", "/nonexistent"])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        format!(
            "kiln env: metadata (scaleway at {}), user_data/cloud-init: cannot bind a source port below 1024 \
             (Permission denied (os error 13)): Scaleway serves user-data only to one; run kiln as root or \
             with CAP_NET_BIND_SERVICE",
            emulator.url()
        )
    );
    assert!(!stderr.contains("retrying"), "{stderr}");
}

#[tokio::test]
async fn every_cloud_on_an_ipv6_literal_endpoint() {
    for cloud in CLOUDS {
        let options = Options::new(cloud)
            .user_data("APP_SECRET=s3cr3t\n")
            .tag("env.APP_ENV", "prod");
        let emulator = MetadataEmulator::start_on("[::1]:0".parse().unwrap(), options).expect("bind [::1]:0");
        let url = emulator.url();
        assert!(url.starts_with("http://[::1]:"), "{url}");
        let metadata = fetch(&config(&emulator, "tags_prefix = \"env.\""))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", cloud.name()));
        assert_eq!(metadata.endpoint, url, "{}", cloud.name());
        assert_eq!(
            metadata.user_data.as_deref(),
            Some(&b"APP_SECRET=s3cr3t\n"[..]),
            "{}",
            cloud.name()
        );
        let log = emulator.log();
        assert!(
            !log.is_empty() && log.iter().all(|l| l.peer.is_ipv6()),
            "{}: {log:?}",
            cloud.name()
        );
    }
}
