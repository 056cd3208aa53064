//! End to end through `kiln boot` on the PHP example: each cloud's emulator hands user-data to
//! kiln, and the page nginx serves shows a variable from it. And fail closed: a bad user-data or
//! a refusing endpoint starts nothing, `/readyz` stays 503 and `kiln status` names the reason.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;
use testkit::control;
use testkit::emulator::metadata::{Cloud, Imds, Instance, MetadataEmulator, Options};
use testkit::example::Example;
use testkit::peers::Kiln;
use testkit::wait::{http_get, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const BOOT: Duration = Duration::from_secs(30);
const SECRET: &str = "hunter2-s3cr3t";

/// Points the example's `[metadata]` at the emulator and requires APP_SECRET.
fn use_emulator(ex: &Example, emulator: &MetadataEmulator) {
    ex.edit_toml(|config| {
        let mut metadata = toml::Table::new();
        metadata.insert("provider".into(), emulator.cloud().name().into());
        metadata.insert("endpoint".into(), emulator.url().into());
        metadata.insert("deadline".into(), "10s".into());
        config.insert("metadata".into(), metadata.into());
        let mut env = toml::Table::new();
        env.insert("required".into(), vec![toml::Value::from("APP_SECRET")].into());
        config.insert("env".into(), env.into());
    });
}

fn kiln_status(ex: &Example, args: &[&str]) -> (i32, String) {
    let out = Command::new(KILN)
        .arg("status")
        .args(["--socket", ex.socket().to_str().unwrap()])
        .args(args)
        .output()
        .expect("run kiln status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn page_shows_user_data_from(cloud: Cloud) {
    let greeting = format!("hello from {}", cloud.name());
    let emulator = MetadataEmulator::start(
        Options::new(cloud).user_data(format!("GREETING={greeting}\nAPP_SECRET={SECRET}\n")),
    );
    let ex = Example::render();
    use_emulator(&ex, &emulator);
    let kiln = Kiln::boot(KILN, &ex.config_path);
    wait_until("/readyz 200", BOOT, || {
        (http_get(&ex.readyz_url()).ok()?.0 == 200).then_some(())
    });

    let (code, page) = http_get(&ex.page_url()).unwrap();
    assert_eq!(code, 200, "{page}");
    let id = Instance::example(cloud).id;
    assert!(page.contains(&format!("greeting: {greeting}\n")), "{page}");
    assert!(page.contains(&format!("provider: {}\n", cloud.name())), "{page}");
    assert!(page.contains(&format!("instance_id: {id}\n")), "{page}");

    // Status knows the facts and where each name came from, and no value.
    let (code, json) = kiln_status(&ex, &["--json"]);
    assert_eq!(code, 0, "{json}");
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["instance"]["provider"], cloud.name());
    assert_eq!(status["instance"]["instance_id"], id.as_str());
    let source = |name: &str| {
        status["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["source"].as_str().unwrap().to_string())
    };
    assert_eq!(source("GREETING").as_deref(), Some("user-data"));
    assert_eq!(source("APP_SECRET").as_deref(), Some("user-data"));
    assert_eq!(source("KILN_INSTANCE_ID").as_deref(), Some("instance"));
    let (_, text) = kiln_status(&ex, &[]);
    for output in [&json, &text, &kiln.log()] {
        assert!(!output.contains(SECRET), "a value leaked:\n{output}");
    }
    // The one place the secret is: the 0600 env file.
    let env_file = ex.state_dir().join("env");
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&env_file).unwrap().contains(SECRET));
}

#[test]
fn ec2_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::Ec2);
}

#[test]
fn gce_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::Gce);
}

#[test]
fn azure_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::Azure);
}

#[test]
fn openstack_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::OpenStack);
}

#[test]
fn digitalocean_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::DigitalOcean);
}

#[test]
fn oracle_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::Oracle);
}

#[test]
fn hetzner_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::Hetzner);
}

#[test]
fn scaleway_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::Scaleway);
}

#[test]
fn vultr_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::Vultr);
}

#[test]
fn akamai_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::Akamai);
}

#[test]
fn alibaba_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::Alibaba);
}

#[test]
fn exoscale_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::Exoscale);
}

#[test]
fn upcloud_user_data_reaches_the_page() {
    page_shows_user_data_from(Cloud::UpCloud);
}

#[test]
fn nocloud_seed_of_the_example_reaches_the_page() {
    let ex = Example::render();
    let _kiln = Kiln::boot(KILN, &ex.config_path);
    wait_until("/readyz 200", BOOT, || {
        (http_get(&ex.readyz_url()).ok()?.0 == 200).then_some(())
    });
    let (_, page) = http_get(&ex.page_url()).unwrap();
    assert!(page.contains("greeting: Hello from the kiln example\n"), "{page}");
    assert!(
        page.contains("instance_id: iid-kiln-example-0001\nprovider: nocloud\n"),
        "{page}"
    );
}

/// Boots and waits for the refusal; then checks that nothing but kiln runs, `/readyz` is 503,
/// and `kiln status` exits 1 naming `reason`.
fn refused(ex: &Example, reason: &str) {
    let kiln = Kiln::boot(KILN, &ex.config_path);
    let status = wait_until("the boot refused", BOOT, || {
        control::status(&ex.socket()).filter(|s| s["phase"] == "failed")
    });
    assert!(status["reason"].as_str().unwrap().contains(reason), "{status}");
    assert!(
        status["services"]
            .as_array()
            .is_none_or(|s| s.iter().all(|u| u["pid"].is_null()))
    );
    assert_eq!(http_get(&ex.readyz_url()).unwrap().0, 503);
    let running = kiln.processes();
    assert_eq!(running.len(), 1, "only kiln runs: {running:?}");
    let (code, text) = kiln_status(ex, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(reason), "{text}");
    assert!(kiln.log().contains(reason), "{}", kiln.log());
    for output in [&text, &kiln.log(), &status.to_string()] {
        assert!(!output.contains(SECRET), "a value leaked:\n{output}");
    }
    assert!(
        !ex.state_dir().join("env").exists(),
        "no env file for a refused boot"
    );
}

#[test]
fn bad_user_data_starts_nothing_and_status_names_the_reason() {
    let ex = Example::render();
    std::fs::write(
        ex.seed_dir.join("user-data"),
        format!("GREETING=hi\nDATABASE_URL={SECRET}\nAPP_SECRET=\n"),
    )
    .unwrap();
    refused(
        &ex,
        &format!(
            "environment (nocloud at {}), user-data line 3: APP_SECRET= is missing a value",
            ex.seed_dir.display()
        ),
    );
}

#[test]
fn a_disabled_metadata_endpoint_starts_nothing_and_status_names_the_reason() {
    let mut options = Options::new(Cloud::Ec2).user_data(format!("APP_SECRET={SECRET}\n"));
    options.imds = Imds::Disabled;
    let emulator = MetadataEmulator::start(options);
    let ex = Example::render();
    use_emulator(&ex, &emulator);
    refused(
        &ex,
        &format!(
            "metadata (ec2 at {}), session token: IMDS token request refused (403): metadata endpoint disabled",
            emulator.url()
        ),
    );
}

#[test]
fn a_missing_required_variable_starts_nothing() {
    let emulator = MetadataEmulator::start(Options::new(Cloud::Gce).user_data("GREETING=hi\n"));
    let ex = Example::render();
    use_emulator(&ex, &emulator);
    refused(&ex, "[env] required: APP_SECRET not set by user-data or tags");
}

/// A 200 KB value was accepted, then every service crash-looped on "Argument list too long":
/// no exec can pass a variable over MAX_ARG_STRLEN (128 KiB). Now the boot is refused, naming
/// the variable, never its value.
#[test]
fn a_value_too_big_for_exec_starts_nothing() {
    let ex = Example::render();
    ex.edit_config(|c| c.replace("[metadata]\n", "[metadata]\nuser_data_limit = 1048576\n"));
    let blob = SECRET.repeat(200 * 1024 / SECRET.len());
    std::fs::write(
        ex.seed_dir.join("user-data"),
        format!("GREETING=hi\nBLOB={blob}\n"),
    )
    .unwrap();
    refused(
        &ex,
        &format!(
            "environment (nocloud at {}), exec limits: BLOB (user-data) is {} bytes as NAME=value, \
             over the 131072 bytes Linux passes per variable (MAX_ARG_STRLEN)",
            ex.seed_dir.display(),
            "BLOB=".len() + blob.len() + 1
        ),
    );
}

/// An instance id holding a terminal escape and a region holding a line break were printed raw
/// by `kiln env` and `kiln status`. Facts are checked where they are fetched: the boot is refused,
/// naming the facts, and nothing kiln prints carries the escape.
#[test]
fn instance_facts_with_control_characters_start_nothing() {
    let ex = Example::render();
    std::fs::write(
        ex.seed_dir.join("meta-data"),
        "{\"instance-id\": \"i-0abc\\u001b]0;pwned\\u0007\", \"region\": \"eu-west-1\\nFAKE: READY\"}\n",
    )
    .unwrap();
    refused(
        &ex,
        &format!(
            "metadata (nocloud at {}), instance facts: instance_id holds control characters (a terminal \
             escape or a line break), region holds control characters (a terminal escape or a line break): refused",
            ex.seed_dir.display()
        ),
    );
    let (_, text) = kiln_status(&ex, &[]);
    assert!(!text.contains('\u{1b}') && !text.contains("FAKE"), "{text}");
}
