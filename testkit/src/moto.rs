//! A real `moto_server` (moto from PyPI, in a venv) standing in for AWS (ELBv2, SSM, Secrets
//! Manager, IAM, STS), with signature checking on.
//!
//! It runs through `testkit/moto_server.py`, moto's own server with one shim: SSM reads are
//! authorized against each parameter's ARN, as AWS does, so an IAM policy can deny one parameter
//! (moto alone checks every policy against the resource "*").
//!
//! moto checks SigV4 signatures only when started with `INITIAL_NO_AUTH_ACTION_COUNT=N`: the first
//! N calls are free. [`Moto::start`] spends them on the setup, through boto3 from the same venv:
//! an IAM user with a policy allowing everything and an access key, a VPC, an ELBv2 target
//! group, and an assumed role's temporary credentials (what an instance role hands out through
//! IMDS). Then it checks that a badly signed call is refused, so every later call is checked.
//!
//! Where moto is: `$KILN_MOTO_VENV/bin`, else `target/venv/bin` of this workspace. Install with
//! `python3 -m venv target/venv && target/venv/bin/pip install 'moto[server]'`.

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
        let mut cmd = Command::new(&interpreter);
        cmd.arg(&launcher)
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_CALLS.to_string())
            .env("AWS_DEFAULT_REGION", REGION);
        let process = Process::spawn(cmd);
        wait_until("moto_server to listen", Duration::from_secs(30), || {
            crate::net::is_listening(addr).then_some(())
        });
        let out = python(&format!(
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
        ));
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
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs `script` with boto3 after a preamble that defines `client(name, region=REGION)`:
    /// a boto3 client signed with the admin user's key (allowed everything, IAM included).
    /// Returns what it printed.
    pub fn boto3(&self, script: &str) -> String {
        python(&format!(
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
        ))
    }

    /// `(id, port, state)` of every target of the group, as boto3 (signed with the user's key)
    /// gets them from DescribeTargetHealth.
    pub fn targets(&self) -> Vec<(String, u16, String)> {
        let out = python(&format!(
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
        ));
        let v: Vec<(String, u16, String)> = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("describe_target_health printed {out:?}: {e}"));
        v
    }
}

/// Runs a script with the venv's python; panics with its stderr on failure.
fn python(script: &str) -> String {
    let out = Command::new(venv().join("bin/python"))
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
