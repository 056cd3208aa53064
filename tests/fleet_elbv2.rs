//! `kiln fleet` on an ELBv2 target group: a real moto_server with signature checks, real kilns
//! of the example app. The target group names `instance` targets by instance id only: kiln fleet
//! asks EC2 (`DescribeInstances`) where each one is; an instance EC2 cannot place is matched with
//! the `--instance` whose kiln says it is that instance.

use std::process::Command;
use std::time::Duration;
use testkit::example::Example;
use testkit::instance::{HEALTH_PORT, HTTP_PORT, Instance, InstanceSpec};
use testkit::moto::Moto;
use testkit::netns::Lan;

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
        // Where instance targets are asked (the ELBv2 endpoint is the config's).
        .env("AWS_ENDPOINT_URL_EC2", moto.endpoint())
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
    assert_eq!(
        dead["problem"].as_str(),
        Some(
            "the load balancer lists it (healthy); EC2 does not know this instance \
             (InvalidInstanceID.NotFound): give its address with --instance"
        ),
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

/// What an Auto Scaling group of two instances behind a target group looks like on moto.
struct Group {
    target_group_arn: String,
    instance_ids: Vec<String>,
}

/// In moto: a VPC with the LAN's range, one EC2 instance at each of `ips` (`run_instances` in a
/// subnet of that range with `PrivateIpAddress`: moto takes the address given), and an Auto
/// Scaling group with a target group of `instance` targets to which the instances are attached:
/// the group registers them by instance id, at the target group's port, as AWS does.
fn auto_scaling_group(moto: &Moto, ips: &[String]) -> Group {
    let out = moto.boto3(&format!(
        r#"
ec2 = client("ec2")
vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.0.0/24",
                           AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
tg = client("elbv2").create_target_group(Name="asg", Protocol="HTTP", Port={HTTP_PORT}, VpcId=vpc,
                                         TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
ami = ec2.describe_images()["Images"][0]["ImageId"]
ids = [ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small",
                         SubnetId=subnet, PrivateIpAddress=ip)["Instances"][0]["InstanceId"]
       for ip in {ips:?}]
asg = client("autoscaling")
asg.create_launch_configuration(LaunchConfigurationName="asg", ImageId=ami, InstanceType="t3.small")
asg.create_auto_scaling_group(AutoScalingGroupName="asg", LaunchConfigurationName="asg", MinSize=0,
                              MaxSize=4, DesiredCapacity=0, VPCZoneIdentifier=subnet,
                              TargetGroupARNs=[tg])
asg.attach_instances(AutoScalingGroupName="asg", InstanceIds=ids)
print(json.dumps({{"tg": tg, "ids": ids}}))
"#
    ));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let ids: Vec<String> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    let listed = moto.boto3(&format!(
        "print(json.dumps(sorted(t['Target']['Id'] for t in client('elbv2').describe_target_health(\
         TargetGroupArn={:?})['TargetHealthDescriptions'])))",
        v["tg"].as_str().unwrap()
    ));
    let registered: Vec<String> = serde_json::from_str(listed.trim()).unwrap();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(registered, sorted, "the group registered its instances");
    Group {
        target_group_arn: v["tg"].as_str().unwrap().to_string(),
        instance_ids: ids,
    }
}

/// `kiln fleet --json` in the LAN's hub (where moto and the instances are), with `key` and
/// `AWS_ENDPOINT_URL` (the SDKs' variable: ELBv2 and EC2 both at moto); exit code and report.
fn fleet_in_hub(lan: &Lan, moto: &Moto, key: (&str, &str), args: &[&str]) -> (i32, serde_json::Value) {
    let out = lan
        .hub()
        .command(KILN)
        .args(["fleet", "--json", "--health-port", &HEALTH_PORT.to_string()])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", key.0)
        .env("AWS_SECRET_ACCESS_KEY", key.1)
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), json)
}

/// An Auto Scaling group's fleet is `uniform` with no flag but the target group: each instance
/// target is found at its private address by EC2 `DescribeInstances`, its kiln asked there.
/// EC2 denied to the caller leaves each member unplaced, saying why, and `--instance` still
/// places one.
#[test]
fn an_auto_scaling_groups_instance_targets_are_found_in_ec2() {
    let lan = Lan::create();
    let moto = Moto::start_in(lan.hub());
    let hosts = [lan.add_host(), lan.add_host()];
    let ips: Vec<String> = hosts.iter().map(|h| h.ip.to_string()).collect();
    let group = auto_scaling_group(&moto, &ips);
    let mut lb = toml::Table::new();
    lb.insert("kind".into(), "none".into());
    let instances: Vec<Instance> = hosts
        .into_iter()
        .zip(&group.instance_ids)
        .map(|(host, id)| {
            let spec = InstanceSpec {
                kiln_bin: KILN.into(),
                id: id.clone(),
                release: "v1".into(),
                lb: lb.clone(),
                pin: None,
            };
            Instance::boot_on(host, &spec)
        })
        .collect();
    for instance in &instances {
        instance.wait_ready(Duration::from_secs(60));
    }
    let arn = group.target_group_arn.as_str();
    let key = (moto.access_key_id.as_str(), moto.secret_access_key.as_str());

    let (code, report) = fleet_in_hub(&lan, &moto, key, &["--target-group-arn", arn]);
    assert_eq!(
        (report["verdict"].as_str(), code),
        (Some("uniform"), 0),
        "{report:#}"
    );
    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{report:#}");
    for (id, ip) in group.instance_ids.iter().zip(&ips) {
        let m = members.iter().find(|m| m["name"] == id.as_str()).unwrap();
        assert_eq!(
            (
                m["address"].as_str(),
                m["health"].as_str(),
                m["state"].as_str(),
                m["kiln"]["instance_id"].as_str()
            ),
            (
                Some(format!("{ip}:{HTTP_PORT}").as_str()),
                Some(format!("{ip}:{HEALTH_PORT}").as_str()),
                Some("ready"),
                Some(id.as_str())
            ),
            "{report:#}"
        );
    }

    // A caller EC2 refuses: each member says why it was not asked; --instance places one.
    let denied = moto.boto3(
        r#"
iam = client("iam")
iam.create_user(UserName="no-ec2")
iam.put_user_policy(UserName="no-ec2", PolicyName="no-ec2", PolicyDocument=json.dumps({
    "Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ec2:DescribeInstances", "Resource": "*"}]}))
key = iam.create_access_key(UserName="no-ec2")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#,
    );
    let (id, secret) = denied.trim().split_once(' ').unwrap();
    let (code, report) = fleet_in_hub(
        &lan,
        &moto,
        (id, secret),
        &["--target-group-arn", arn, "--instance", &ips[0]],
    );
    assert_eq!(
        (report["verdict"].as_str(), code),
        (Some("drift"), 1),
        "{report:#}"
    );
    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{report:#}");
    let placed = members
        .iter()
        .find(|m| m["name"] == group.instance_ids[0].as_str())
        .unwrap();
    assert_eq!(placed["state"], "ready", "{report:#}");
    let unplaced = members
        .iter()
        .find(|m| m["name"] == group.instance_ids[1].as_str())
        .unwrap();
    let problem = unplaced["problem"].as_str().unwrap();
    assert!(
        problem.starts_with(
            "the load balancer lists it (healthy); its address is not known (ec2 DescribeInstances: "
        ) && problem.ends_with(": give its address with --instance"),
        "{problem}"
    );
    assert!(!problem.contains(secret), "the secret leaked: {problem}");
}
