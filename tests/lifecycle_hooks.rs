//! Auto Scaling lifecycle hooks against a real moto server (signatures and IAM checked) with the
//! shim's `CompleteLifecycleAction` and `RecordLifecycleActionHeartbeat`, and kiln booted on the
//! example with an EC2 metadata emulator that is the group's instance (its id, its
//! `aws:autoscaling:groupName` tag, the instance role's keys). What moto recorded is the proof.

use crate::lifecycle_support::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use testkit::control;
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options, RoleKeys};
use testkit::example::Example;
use testkit::haproxy::{Haproxy, HaproxyConfig};
use testkit::moto::{AutoScaling, Moto, REGION, Transition};
use testkit::wait::wait_until;

/// Long enough for AWS (30 s is its least), short enough that tests never reach it.
const HEARTBEAT_TIMEOUT: u32 = 30;

struct Group {
    moto: Moto,
    asg: AutoScaling,
    emulator: MetadataEmulator,
}

/// moto with the group, and the metadata of its instance.
fn group() -> Group {
    let moto = Moto::start();
    let asg = moto.autoscaling_group(HEARTBEAT_TIMEOUT);
    let mut options = Options::new(Cloud::Ec2)
        .tag("aws:autoscaling:groupName", &asg.group)
        .role(RoleKeys {
            name: "kiln-instance".into(),
            access_key_id: moto.role.access_key_id.clone(),
            secret_access_key: moto.role.secret_access_key.clone(),
            token: moto.role.token.clone(),
            expiration: moto.role.expiration.clone(),
        });
    options.instance.id = asg.instance_id.clone();
    options.instance.region = REGION.into();
    let emulator = MetadataEmulator::start(options);
    Group { moto, asg, emulator }
}

/// `[lifecycle]` with both hooks (the group comes from the instance's tag).
fn hooks_section(group: &Group) -> String {
    format!(
        "launch_hook = \"{}\"\nterminate_hook = \"{}\"\nheartbeat_timeout = \"{HEARTBEAT_TIMEOUT}s\"\n\
         heartbeat_interval = \"1s\"\npoll_interval = \"1s\"\nendpoint = \"{}\"\n",
        group.asg.launch_hook,
        group.asg.terminate_hook,
        group.moto.endpoint()
    )
}

/// Waits until kiln shows the `transition` hook in `state`; returns the status.
fn wait_hook(ex: &Example, transition: &str, state: &str) -> Value {
    wait_until(&format!("the {transition} hook {state}"), LEAVE, || {
        let status = control::status(&ex.socket())?;
        (status["lifecycle"]["hooks"][transition]["state"] == state).then_some(status)
    })
}

/// READY=1 on kiln's boot timeline, as wall clock ms.
fn ready_ms(status: &Value) -> u64 {
    let started = status["started_at_ms"].as_u64().unwrap();
    let ready = status["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["phase"] == "READY=1")
        .unwrap_or_else(|| panic!("no READY=1 on the timeline: {status}"));
    started + ready["start_us"].as_u64().unwrap() / 1000
}

#[test]
fn launch_continues_once_after_ready_and_registered() {
    let group = group();
    group.moto.lifecycle_wait(&group.asg, Transition::Launch);
    let dir = tempfile::tempdir().unwrap();
    let haproxy = Haproxy::start(HaproxyConfig::new(dir.path()));
    let ex = example_on(&group.emulator, &hooks_section(&group));
    let lb = haproxy.lb_table(ex.http_addr, None, None, None);
    ex.edit_toml(|t| {
        t.insert("lb".into(), lb.into());
    });
    let (_kiln, _notify) = ex.boot_ready(KILN);

    let status = wait_hook(&ex, "launch", "continued");
    let calls = group.moto.lifecycle_calls();
    let completed = calls.completed(&group.asg.launch_hook);
    assert_eq!(completed.len(), 1, "{calls:?}");
    assert_eq!(completed[0].0, "CONTINUE");
    let registered_ms = status["lb"]["since_ms"].as_u64().unwrap();
    assert_eq!(status["lb"]["state"], "registered", "{status}");
    assert!(
        completed[0].1 >= ready_ms(&status),
        "CONTINUE before READY=1: {calls:?} {status}"
    );
    assert!(
        completed[0].1 >= registered_ms,
        "CONTINUE before registration: {calls:?} {status}"
    );
    assert_eq!(calls.states[&group.asg.instance_id], "InService");
    assert!(calls.completed(&group.asg.terminate_hook).is_empty());
    assert_eq!(status["lifecycle"]["hooks"]["group"], group.asg.group.as_str());
    let (_, text) = ex.status_cli(KILN, &[]);
    assert!(
        text.contains("\n    auto scaling group kiln-asg\n    launch hook kiln-launch: CONTINUE sent "),
        "{text}"
    );
}

#[test]
fn a_refused_boot_abandons_the_launch_whether_or_not_the_metadata_was_read() {
    let group = group();
    // The environment step refuses (user-data without a value): the metadata was read.
    group.moto.lifecycle_wait(&group.asg, Transition::Launch);
    let bad_user_data = MetadataEmulator::start({
        let mut o = Options::new(Cloud::Ec2)
            .tag("aws:autoscaling:groupName", &group.asg.group)
            .user_data("APP_SECRET=\n")
            .role(RoleKeys {
                name: "kiln-instance".into(),
                access_key_id: group.moto.role.access_key_id.clone(),
                secret_access_key: group.moto.role.secret_access_key.clone(),
                token: group.moto.role.token.clone(),
                expiration: group.moto.role.expiration.clone(),
            });
        o.instance.id = group.asg.instance_id.clone();
        o.instance.region = REGION.into();
        o
    });
    let ex = example_on(&bad_user_data, &hooks_section(&group));
    let (_kiln, _notify) = ex.boot_notified(KILN, &[], &[]);
    let status = wait_hook(&ex, "launch", "abandoned");
    assert_eq!(status["phase"], "failed", "{status}");
    assert!(status["services"].as_array().unwrap().is_empty(), "{status}");
    let calls = group.moto.lifecycle_calls();
    assert_eq!(calls.completed(&group.asg.launch_hook).len(), 1, "{calls:?}");
    assert_eq!(calls.completed(&group.asg.launch_hook)[0].0, "ABANDON");
    assert_eq!(calls.states[&group.asg.instance_id], "Terminating:Proceed");

    // The seal refuses before the metadata is fetched: kiln reads the instance's identity for
    // the answer.
    group.moto.lifecycle_wait(&group.asg, Transition::Launch);
    let ex = example_on(&group.emulator, &hooks_section(&group));
    let app = ex.app_dir.display().to_string();
    let manifest = ex.dir.path().join("no-such-manifest").display().to_string();
    // readonly = false: the remount would outlive this test in the machine's mount namespace.
    ex.edit_config(|c| {
        format!("{c}\n[seal]\npaths = [\"{app}\"]\nmanifest = \"{manifest}\"\nreadonly = false\n")
    });
    let (_kiln, _notify) = ex.boot_notified(KILN, &[], &[]);
    let status = wait_hook(&ex, "launch", "abandoned");
    assert!(
        status["reason"].as_str().unwrap().starts_with("seal: "),
        "{status}"
    );
    let calls = group.moto.lifecycle_calls();
    let completed = calls.completed(&group.asg.launch_hook);
    assert_eq!(completed.len(), 2, "{calls:?}");
    assert_eq!(completed[1].0, "ABANDON");
}

#[test]
fn a_slow_start_sends_heartbeats_then_continue_once() {
    let group = group();
    group.moto.lifecycle_wait(&group.asg, Transition::Launch);
    let ex = example_on(&group.emulator, &hooks_section(&group));
    ex.edit_config(|c| {
        c + "\n[[service]]\nname = \"slow\"\ncommand = [\"sleep\", \"1000\"]\nready_after = \"5s\"\n"
    });
    let (_kiln, _notify) = ex.boot_ready(KILN);
    let status = wait_hook(&ex, "launch", "continued");
    let calls = group.moto.lifecycle_calls();
    let completed = calls.completed(&group.asg.launch_hook);
    let heartbeats = calls.heartbeats(&group.asg.launch_hook);
    assert_eq!(completed.len(), 1, "{calls:?}");
    assert!(heartbeats.len() >= 2, "{calls:?}");
    assert!(heartbeats.iter().all(|&t| t <= completed[0].1), "{calls:?}");
    assert_eq!(
        status["lifecycle"]["hooks"]["launch"]["heartbeats"].as_u64(),
        Some(heartbeats.len() as u64)
    );
}

#[test]
fn termination_continues_once_after_the_drain_and_the_stop() {
    let group = group();
    let ex = example_on(&group.emulator, &hooks_section(&group));
    let (_kiln, _notify) = ex.boot_ready(KILN);
    // Not launched under a wait: the launch hook has nothing to answer, and says so calmly.
    let status = wait_hook(&ex, "launch", "skipped");
    let detail = status["lifecycle"]["hooks"]["launch"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "nothing was waiting: autoscaling CompleteLifecycleAction: ValidationError (HTTP 400): No active Lifecycle Action found with instance ID"
        ),
        "{detail}"
    );

    group.moto.lifecycle_wait(&group.asg, Transition::Terminate);
    group
        .emulator
        .notices(|n| n.target_lifecycle_state = Some("Terminated".into()));
    let step = format!("terminate hook {}: CONTINUE sent", group.asg.terminate_hook);
    let status = wait_step(&ex, &step, LEAVE);
    let steps = steps(&status);
    let stopped = steps.iter().position(|s| s == "all services stopped");
    let answered = steps.iter().position(|s| *s == step);
    assert!(stopped.is_some() && stopped < answered, "{steps:?}");
    let calls = group.moto.lifecycle_calls();
    let completed = calls.completed(&group.asg.terminate_hook);
    assert_eq!(completed.len(), 1, "{calls:?}");
    assert_eq!(completed[0].0, "CONTINUE");
    let stopped_ms = status["lifecycle"]["leave"]["steps"][stopped.unwrap()]["at_ms"]
        .as_u64()
        .unwrap();
    assert!(
        completed[0].1 >= stopped_ms,
        "CONTINUE before the stop: {calls:?}"
    );
    assert_eq!(calls.states[&group.asg.instance_id], "Terminating:Proceed");
    assert_eq!(status["lifecycle"]["hooks"]["terminate"]["state"], "continued");
    assert_eq!(status["lifecycle"]["target_state"], "Terminated");
    let reason = status["lifecycle"]["leave"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("termination: Auto Scaling is terminating the instance"),
        "{reason}"
    );
}

#[test]
fn wrong_credentials_are_refused_with_their_aws_code_and_nothing_is_recorded() {
    let group = group();
    group.moto.lifecycle_wait(&group.asg, Transition::Launch);
    // A user whose every lifecycle call is denied by IAM.
    let denied = group.moto.boto3(
        r#"
iam = client("iam")
iam.create_user(UserName="denied")
iam.put_user_policy(UserName="denied", PolicyName="no-hooks", PolicyDocument=json.dumps({
    "Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["autoscaling:CompleteLifecycleAction",
                                      "autoscaling:RecordLifecycleActionHeartbeat"], "Resource": "*"}]}))
key = iam.create_access_key(UserName="denied")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#,
    );
    let (denied_id, denied_secret) = denied.trim().split_once(' ').unwrap();
    let wrong_secret = "wr0ng-s3cret-value-kiln";
    for (id, secret, code) in [
        (
            group.moto.access_key_id.as_str(),
            wrong_secret,
            "SignatureDoesNotMatch",
        ),
        (denied_id, denied_secret, "AccessDenied"),
    ] {
        let ex = example_on(&group.emulator, &hooks_section(&group));
        let envs = [("AWS_ACCESS_KEY_ID", id), ("AWS_SECRET_ACCESS_KEY", secret)];
        let (mut kiln, notify) = ex.boot_notified(KILN, &[], &envs);
        notify.wait_for("READY=1", LEAVE, |l| l == "READY=1");
        let status = wait_hook(&ex, "launch", "failed");
        let detail = status["lifecycle"]["hooks"]["launch"]["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!(
                "CONTINUE not sent: autoscaling CompleteLifecycleAction: {code} (HTTP 403)"
            )),
            "{detail}"
        );
        let (_, text) = ex.status_cli(KILN, &[]);
        assert!(text.contains("    launch hook kiln-launch: FAILED "), "{text}");
        for output in [text, status.to_string(), kiln.log()] {
            assert!(!output.contains(secret), "a secret leaked: {output}");
        }
        kiln.signal(Signal::SIGTERM);
        kiln.wait_exit(LEAVE);
    }
    let calls = group.moto.lifecycle_calls();
    assert!(calls.record.is_empty(), "{calls:?}");
    assert_eq!(calls.states[&group.asg.instance_id], "Pending:Wait");
}

#[test]
fn a_task_failing_for_good_abandons_the_launch() {
    let group = group();
    group.moto.lifecycle_wait(&group.asg, Transition::Launch);
    let ex = example_on(&group.emulator, &hooks_section(&group));
    let mut task = toml::Table::new();
    task.insert("name".into(), "migrate".into());
    let script = "echo 'no database at db.internal:5432' >&2; exit 2";
    task.insert("command".into(), vec!["sh", "-c", script].into());
    ex.edit_toml(|t| {
        t.insert("task".into(), toml::Value::Array(vec![task.into()]));
    });
    ex.edit_service("php-fpm", |s| {
        s.insert("after".into(), vec!["migrate"].into());
    });
    let (_kiln, _notify) = ex.boot_notified(KILN, &[], &[]);
    let status = wait_hook(&ex, "launch", "abandoned");
    assert_eq!(status["phase"], "failed", "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.contains("task \"migrate\" failed")
            && reason.contains("stderr| no database at db.internal:5432"),
        "{reason}"
    );
    let calls = group.moto.lifecycle_calls();
    let completed = calls.completed(&group.asg.launch_hook);
    assert_eq!(completed.len(), 1, "{calls:?}");
    assert_eq!(completed[0].0, "ABANDON");
}
