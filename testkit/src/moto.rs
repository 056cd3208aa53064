//! A real `moto_server` (moto from PyPI, in a venv) standing in for AWS (ELBv2, SSM, Secrets
//! Manager, Auto Scaling, IAM, STS), with signature checking on.
//!
//! It runs through `testkit/moto_server.py`, moto's own server with a small shim: SSM reads are
//! authorized against each parameter's ARN, as AWS does, so an IAM policy can deny one parameter
//! (moto alone checks every policy against the resource "*"); and Auto Scaling's
//! `CompleteLifecycleAction` and `RecordLifecycleActionHeartbeat`, which moto lacks, are added
//! behind moto's own authentication, with a test-only endpoint to put an instance in a hook's wait
//! state and to read what the two actions accepted ([`Moto::lifecycle_wait`],
//! [`Moto::lifecycle_calls`]).
//!
//! moto checks SigV4 signatures only when started with `INITIAL_NO_AUTH_ACTION_COUNT=N`: the first
//! N calls are free. [`Moto::start`] spends them on the setup, through boto3 from the same venv:
//! an IAM user with a policy allowing everything and an access key, a VPC, an ELBv2 target
//! group, and an assumed role's temporary credentials (what an instance role hands out through
//! IMDS). Then it checks that a badly signed call is refused, so every later call is checked.
//!
//! Where moto is: `$KILN_MOTO_VENV/bin`, else `target/venv/bin` of this workspace. Install with
//! `python3 -m venv target/venv && target/venv/bin/pip install 'moto[server]'`.

use crate::netns::Netns;
use crate::peers::Process;
use crate::wait::wait_until;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Free calls: create_user, put_user_policy, create_access_key, create_vpc, create_target_group,
/// create_role, put_role_policy, assume_role. Calls left over are spent by the check that a
/// badly signed call is refused.
const SETUP_CALLS: u32 = 8;
pub const REGION: &str = "us-east-1";

/// The venv holding moto and boto3.
pub fn venv() -> PathBuf {
    match std::env::var_os("KILN_MOTO_VENV") {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/venv"),
    }
}

/// A running moto_server with a user, its key and a target group. Dropping it stops it.
pub struct Moto {
    pub process: Process,
    pub addr: SocketAddr,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub target_group_arn: String,
    /// Temporary credentials of an assumed role, as IMDS serves an instance role's.
    pub role: RoleCredentials,
    /// The network namespace moto runs in (its name); None: the test's own.
    netns: Option<String>,
}

/// `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration` of an assumed role.
#[derive(Debug, Clone)]
pub struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
    pub expiration: String,
}

impl Moto {
    pub fn start() -> Moto {
        Self::start_with(None)
    }

    /// moto inside `netns`, at 127.0.0.1 there: for clients of that namespace only (`kiln fleet`
    /// in the hub of a [`crate::netns::Lan`] whose hosts are the instances). [`Moto::boto3`]
    /// runs there too; the lifecycle endpoint is not reached from outside.
    pub fn start_in(netns: &Netns) -> Moto {
        Self::start_with(Some(netns))
    }

    fn start_with(netns: Option<&Netns>) -> Moto {
        let bin = venv().join("bin/moto_server");
        let interpreter = venv().join("bin/python");
        let launcher = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("moto_server.py");
        assert!(
            bin.exists(),
            "{} not found: install moto with `python3 -m venv target/venv && target/venv/bin/pip install 'moto[server]'` \
             (or point KILN_MOTO_VENV at a venv that has it)",
            bin.display()
        );
        let addr = crate::net::free_addr();
        let mut cmd = match netns {
            Some(ns) => ns.command(&interpreter),
            None => Command::new(&interpreter),
        };
        cmd.arg(&launcher)
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_CALLS.to_string())
            .env("AWS_DEFAULT_REGION", REGION);
        let process = Process::spawn(cmd);
        let listening = || {
            wait_until("moto_server to listen", Duration::from_secs(30), || {
                crate::net::is_listening(addr).then_some(())
            })
        };
        match netns {
            // Asked from a thread inside the namespace: 127.0.0.1 there is not the test's.
            Some(ns) => std::thread::scope(|s| {
                s.spawn(|| {
                    ns.enter().expect("enter moto's network namespace");
                    listening()
                })
                .join()
                .expect("the wait for moto panicked")
            }),
            None => listening(),
        }
        let netns = netns.map(|ns| ns.name().to_string());
        let out = python(
            netns.as_deref(),
            &format!(
                r#"
import boto3, json
from botocore.exceptions import ClientError
kw = dict(endpoint_url="http://{addr}", region_name="{REGION}",
          aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="kiln")
iam.put_user_policy(UserName="kiln", PolicyName="all", PolicyDocument=json.dumps(
    {{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "*", "Resource": "*"}}]}}))
key = iam.create_access_key(UserName="kiln")["AccessKey"]
vpc = boto3.client("ec2", **kw).create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
tg = boto3.client("elbv2", **kw).create_target_group(
    Name="kiln", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="instance")["TargetGroups"][0]
trust = {{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow",
          "Principal": {{"Service": "ec2.amazonaws.com"}}, "Action": "sts:AssumeRole"}}]}}
role = iam.create_role(RoleName="kiln-instance", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
iam.put_role_policy(RoleName="kiln-instance", PolicyName="all", PolicyDocument=json.dumps(
    {{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "*", "Resource": "*"}}]}}))
creds = boto3.client("sts", **kw).assume_role(RoleArn=role["Arn"], RoleSessionName="i-0kiln")["Credentials"]
# Every later call must be signed: a wrong secret is refused once the free calls are spent.
bad = boto3.client("elbv2", endpoint_url="http://{addr}", region_name="{REGION}",
                   aws_access_key_id=key["AccessKeyId"], aws_secret_access_key="wrong")
refused = None
for _ in range(5):
    try:
        bad.describe_target_groups()
    except ClientError as e:
        refused = e.response["Error"]["Code"]
        break
print(json.dumps({{"id": key["AccessKeyId"], "secret": key["SecretAccessKey"],
                  "arn": tg["TargetGroupArn"], "refused": refused,
                  "role": [creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"],
                           creds["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ")]}}))
"#
            ),
        );
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("moto setup printed {out:?}: {e}"));
        assert_eq!(
            v["refused"], "SignatureDoesNotMatch",
            "moto does not check signatures after setup: {v}"
        );
        Moto {
            process,
            addr,
            access_key_id: v["id"].as_str().unwrap().to_string(),
            secret_access_key: v["secret"].as_str().unwrap().to_string(),
            target_group_arn: v["arn"].as_str().unwrap().to_string(),
            role: RoleCredentials {
                access_key_id: v["role"][0].as_str().unwrap().to_string(),
                secret_access_key: v["role"][1].as_str().unwrap().to_string(),
                token: v["role"][2].as_str().unwrap().to_string(),
                expiration: v["role"][3].as_str().unwrap().to_string(),
            },
            netns,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs `script` with boto3 after a preamble that defines `client(name, region=REGION)`:
    /// a boto3 client signed with the admin user's key (allowed everything, IAM included).
    /// Returns what it printed.
    pub fn boto3(&self, script: &str) -> String {
        python(
            self.netns.as_deref(),
            &format!(
                r#"
import boto3, json
def client(name, region="{REGION}"):
    return boto3.client(name, endpoint_url="{}", region_name=region,
                        aws_access_key_id="{}", aws_secret_access_key="{}")
{script}
"#,
                self.endpoint(),
                self.access_key_id,
                self.secret_access_key
            ),
        )
    }

    /// `(id, port, state)` of every target of the group, as boto3 (signed with the user's key)
    /// gets them from DescribeTargetHealth.
    pub fn targets(&self) -> Vec<(String, u16, String)> {
        let out = python(
            self.netns.as_deref(),
            &format!(
                r#"
import boto3, json
c = boto3.client("elbv2", endpoint_url="{}", region_name="{REGION}",
                 aws_access_key_id="{}", aws_secret_access_key="{}")
d = c.describe_target_health(TargetGroupArn="{}")["TargetHealthDescriptions"]
print(json.dumps([[t["Target"]["Id"], t["Target"].get("Port", 0), t["TargetHealth"]["State"]] for t in d]))
"#,
                self.endpoint(),
                self.access_key_id,
                self.secret_access_key,
                self.target_group_arn
            ),
        );
        let v: Vec<(String, u16, String)> = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("describe_target_health printed {out:?}: {e}"));
        v
    }
}

/// An Auto Scaling group of one instance with a launch hook and a terminate hook.
#[derive(Debug, Clone)]
pub struct AutoScaling {
    pub group: String,
    pub instance_id: String,
    pub launch_hook: String,
    pub terminate_hook: String,
}

/// Which wait state of an instance, and so which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `Pending:Wait`, on the launch hook.
    Launch,
    /// `Terminating:Wait`, on the terminate hook.
    Terminate,
}

/// One call the shim accepted (`CompleteLifecycleAction`, `RecordLifecycleActionHeartbeat`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LifecycleCall {
    pub action: String,
    pub group: String,
    pub instance: String,
    pub hook: String,
    /// `CONTINUE` or `ABANDON` for `CompleteLifecycleAction`.
    pub result: Option<String>,
    /// Wall clock, ms since the Unix epoch.
    pub time_ms: u64,
}

/// What the shim recorded: the calls in order, and each instance's lifecycle state.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LifecycleRecord {
    pub record: Vec<LifecycleCall>,
    pub states: std::collections::BTreeMap<String, String>,
    /// `CompleteLifecycleAction` calls answered `Throttling` ([`Moto::throttle_lifecycle`]).
    #[serde(default)]
    pub throttled: u32,
}

impl LifecycleRecord {
    /// The `CompleteLifecycleAction` calls on `hook`: their results.
    pub fn completed(&self, hook: &str) -> Vec<(String, u64)> {
        self.record
            .iter()
            .filter(|c| c.action == "CompleteLifecycleAction" && c.hook == hook)
            .map(|c| (c.result.clone().unwrap_or_default(), c.time_ms))
            .collect()
    }

    /// When each `RecordLifecycleActionHeartbeat` on `hook` was accepted.
    pub fn heartbeats(&self, hook: &str) -> Vec<u64> {
        self.record
            .iter()
            .filter(|c| c.action == "RecordLifecycleActionHeartbeat" && c.hook == hook)
            .map(|c| c.time_ms)
            .collect()
    }
}

impl Moto {
    /// A group `kiln-asg` of one instance (a launch configuration, a group, its two hooks with
    /// `heartbeat_timeout` seconds), created with the admin user's key.
    pub fn autoscaling_group(&self, heartbeat_timeout: u32) -> AutoScaling {
        let out = self.boto3(&format!(
            r#"
ec2 = client("ec2")
ami = ec2.describe_images()["Images"][0]["ImageId"]
asg = client("autoscaling")
asg.create_launch_configuration(LaunchConfigurationName="kiln", ImageId=ami, InstanceType="t3.small")
asg.create_auto_scaling_group(AutoScalingGroupName="kiln-asg", LaunchConfigurationName="kiln",
    MinSize=1, MaxSize=1, DesiredCapacity=1, AvailabilityZones=["{REGION}a"])
for name, transition in [("kiln-launch", "LAUNCHING"), ("kiln-terminate", "TERMINATING")]:
    asg.put_lifecycle_hook(LifecycleHookName=name, AutoScalingGroupName="kiln-asg",
        LifecycleTransition="autoscaling:EC2_INSTANCE_" + transition,
        HeartbeatTimeout={heartbeat_timeout}, DefaultResult="ABANDON")
print(asg.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"][0]["InstanceId"])
"#
        ));
        AutoScaling {
            group: "kiln-asg".into(),
            instance_id: out.trim().to_string(),
            launch_hook: "kiln-launch".into(),
            terminate_hook: "kiln-terminate".into(),
        }
    }

    /// Puts the group's instance in `Pending:Wait` (launch) or `Terminating:Wait` (terminate),
    /// waiting on that hook, as Auto Scaling does when it launches or terminates it.
    pub fn lifecycle_wait(&self, asg: &AutoScaling, transition: Transition) {
        let (hook, name) = match transition {
            Transition::Launch => (&asg.launch_hook, "launch"),
            Transition::Terminate => (&asg.terminate_hook, "terminate"),
        };
        let body = serde_json::json!({
            "group": asg.group, "instance": asg.instance_id, "hook": hook, "transition": name,
        })
        .to_string();
        let answer = crate::wait::http_request(
            "POST",
            &format!("{}/moto-api/kiln/lifecycle", self.endpoint()),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("moto's lifecycle endpoint: {e}"));
        assert_eq!(answer.status, 200, "moto's lifecycle endpoint: {}", answer.body);
    }

    /// The next `calls` `CompleteLifecycleAction` calls are answered with AWS's `Throttling`
    /// error (HTTP 400, "Rate exceeded"), after moto's authentication, as AWS does to a caller
    /// over its rate; kiln retries them.
    pub fn throttle_lifecycle(&self, calls: u32) {
        let body = serde_json::json!({ "throttle": calls }).to_string();
        let answer = crate::wait::http_request(
            "POST",
            &format!("{}/moto-api/kiln/lifecycle", self.endpoint()),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("moto's lifecycle endpoint: {e}"));
        assert_eq!(answer.status, 200, "moto's lifecycle endpoint: {}", answer.body);
    }

    /// Every call the lifecycle actions accepted, and the instances' states.
    pub fn lifecycle_calls(&self) -> LifecycleRecord {
        let (status, body) = crate::wait::http_get(&format!("{}/moto-api/kiln/lifecycle", self.endpoint()))
            .unwrap_or_else(|e| panic!("moto's lifecycle endpoint: {e}"));
        assert_eq!(status, 200, "moto's lifecycle endpoint: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("moto's lifecycle record {body:?}: {e}"))
    }
}

/// Runs a script with the venv's python (inside the network namespace `netns`, when given);
/// panics with its stderr on failure.
fn python(netns: Option<&str>, script: &str) -> String {
    let interpreter = venv().join("bin/python");
    let mut cmd = match netns {
        Some(name) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", name]).arg(&interpreter);
            cmd
        }
        None => Command::new(&interpreter),
    };
    let out = cmd
        .args(["-c", script])
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "python (boto3) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
