//! `kiln fleet` on an ELBv2 target group: a real moto_server with signature checks, a real kiln
//! of the example app. The target group names `instance` targets by instance id only, so the
//! member is matched with the `--instance` whose kiln says it is that instance.

use std::process::Command;
use testkit::example::Example;
use testkit::moto::Moto;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
/// The example's nocloud instance id.
const EXAMPLE_ID: &str = "iid-kiln-example-0001";

fn register(moto: &Moto, action: &str, id: &str) {
    moto.boto3(&format!(
        "client('elbv2').{action}(TargetGroupArn={:?}, Targets=[{{'Id': {id:?}, 'Port': 8080}}])",
        moto.target_group_arn
    ));
}

/// `kiln fleet --json ARGS` signed with `secret`: exit code and the report.
fn fleet(moto: &Moto, secret: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(KILN)
        .arg("fleet")
        .arg("--json")
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &moto.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn instance_targets_are_matched_by_the_instance_id_their_kiln_reports() {
    let moto = Moto::start();
    let ex = Example::render();
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        format!(
            "[lb]\nkind = \"elbv2\"\ntarget_group_arn = {:?}\nendpoint = {:?}\n",
            moto.target_group_arn,
            moto.endpoint()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let health = ex.health_addr.to_string();
    register(&moto, "register_targets", EXAMPLE_ID);
    register(&moto, "register_targets", "i-0dead");

    let (code, report) = fleet(
        &moto,
        &moto.secret_access_key,
        &["--config", config, "--instance", &health],
    );
    assert_eq!(
        (report["verdict"].as_str(), code),
        (Some("drift"), 1),
        "{report:#}"
    );
    let members = report["members"].as_array().unwrap();
    assert_eq!(
        members.len(),
        2,
        "the --instance is the example's member: {report:#}"
    );
    let ours = members.iter().find(|m| m["name"] == EXAMPLE_ID).unwrap();
    assert_eq!(
        (
            ours["health"].as_str(),
            ours["lb_word"].as_str(),
            ours["state"].as_str()
        ),
        (Some(health.as_str()), Some("healthy"), Some("ready")),
        "{report:#}"
    );
    let dead = members.iter().find(|m| m["name"] == "i-0dead").unwrap();
    assert_eq!(dead["health"], serde_json::Value::Null);
    assert!(
        dead["problem"]
            .as_str()
            .unwrap()
            .contains("give its address with --instance"),
        "{report:#}"
    );

    register(&moto, "deregister_targets", "i-0dead");
    let (code, report) = fleet(
        &moto,
        &moto.secret_access_key,
        &["--config", config, "--instance", &health],
    );
    assert_eq!(
        (report["verdict"].as_str(), code),
        (Some("uniform"), 0),
        "{report:#}"
    );

    // From a laptop: the target group by flag; a wrong secret is AWS's own refusal.
    let arn = moto.target_group_arn.clone();
    let (code, report) = fleet(
        &moto,
        "not-the-secret",
        &["--config", config, "--target-group-arn", &arn, "--timeout", "2s"],
    );
    assert_eq!(
        (report["verdict"].as_str(), code),
        (Some("unreachable"), 1),
        "{report:#}"
    );
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("SignatureDoesNotMatch"), "{error}");
    assert!(!error.contains("not-the-secret"), "the secret leaked: {error}");
}
