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
    let emulator = metadata(&moto, &asg, None);
    Group { moto, asg, emulator }
}

/// The EC2 metadata of the group's instance (its id, the group's tag, the instance role's
/// keys), with `user_data` when given.
fn metadata(moto: &Moto, asg: &AutoScaling, user_data: Option<&str>) -> MetadataEmulator {
    let mut options = Options::new(Cloud::Ec2)
        .tag("aws:autoscaling:groupName", &asg.group)
        .role(RoleKeys {
            name: "kiln-instance".into(),
            access_key_id: moto.role.access_key_id.clone(),
            secret_access_key: moto.role.secret_access_key.clone(),
            token: moto.role.token.clone(),
            expiration: moto.role.expiration.clone(),
        });
    if let Some(user_data) = user_data {
        options = options.user_data(user_data);
    }
    options.instance.id = asg.instance_id.clone();
    options.instance.region = REGION.into();
    MetadataEmulator::start(options)
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
    let bad_user_data = metadata(&group.moto, &group.asg, Some("APP_SECRET=\n"));
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
        let status = wait_hook(&ex, "launch", "gave_up");
        let detail = status["lifecycle"]["hooks"]["launch"]["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!(
                "CONTINUE not sent: autoscaling CompleteLifecycleAction: {code} (HTTP 403)"
            )),
            "{detail}"
        );
        let (_, text) = ex.status_cli(KILN, &[]);
        assert!(text.contains("    launch hook kiln-launch: GAVE UP "), "{text}");
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

/// The example sealed as release v42 and booted where the launch configuration pins v43: the
/// pin refuses the boot once the metadata is read.
fn pinned_wrong(group: &Group) -> (Example, MetadataEmulator) {
    let emulator = metadata(&group.moto, &group.asg, Some("KILN_EXPECT_RELEASE=v43\n"));
    let ex = example_on(&emulator, &hooks_section(group));
    // readonly = false: the remount would outlive this test in the machine's mount namespace.
    ex.edit_config(|c| {
        format!(
            "{c}\n[seal]\npaths = [\"{}\"]\nmanifest = \"{}\"\nreadonly = false\nrescan = \"1h\"\n",
            ex.app_dir.display(),
            ex.dir.path().join("seal").display()
        )
    });
    let out = std::process::Command::new(KILN)
        .args(["seal", "--release", "v42", "--config"])
        .arg(&ex.config_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (ex, emulator)
}

/// The log's lines that name the launch hook, for messages.
fn hook_lines(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("hook kiln-launch") || l.contains("bye"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// While AWS throttles the answer to a pinned-wrong boot, status and the log both say that
/// ABANDON is being sent (not `idle`), and both say when it went through.
#[test]
fn a_refused_boot_says_it_is_sending_abandon_while_aws_throttles_it() {
    let group = group();
    group.moto.lifecycle_wait(&group.asg, Transition::Launch);
    group.moto.throttle_lifecycle(1_000_000);
    let (ex, _emulator) = pinned_wrong(&group);
    let (kiln, _notify) = ex.boot_notified(KILN, &[], &[]);

    let status = wait_hook(&ex, "launch", "sending_abandon");
    assert!(
        status["reason"].as_str().unwrap().starts_with("pin: "),
        "{status}"
    );
    kiln.wait_log(
        "lifecycle: launch hook kiln-launch: sending ABANDON (the boot was refused)",
        LEAVE,
    );
    let (_, text) = ex.status_cli(KILN, &[]);
    assert!(
        text.contains("\n    launch hook kiln-launch: sending ABANDON for "),
        "{text}"
    );
    wait_until("a throttled ABANDON", LEAVE, || {
        (group.moto.lifecycle_calls().throttled > 0).then_some(())
    });
    let status = control::status(&ex.socket()).unwrap();
    assert_eq!(
        status["lifecycle"]["hooks"]["launch"]["state"], "sending_abandon",
        "{status}"
    );

    group.moto.throttle_lifecycle(0);
    let status = wait_hook(&ex, "launch", "abandoned");
    kiln.wait_log("lifecycle: launch hook kiln-launch: ABANDON sent", LEAVE);
    let calls = group.moto.lifecycle_calls();
    let completed = calls.completed(&group.asg.launch_hook);
    assert_eq!(completed.len(), 1, "{calls:?}");
    assert_eq!(completed[0].0, "ABANDON");
    assert_eq!(status["phase"], "failed", "{status}");
    let log = kiln.log();
    let sending = log.find("sending ABANDON").unwrap();
    let sent = log.find("ABANDON sent").unwrap();
    assert!(sending < sent, "{}", hook_lines(&log));
}

/// A stop while AWS throttles a hook's answer waits for it at most `STOP_GRACE` (1 s), then
/// gives it up, in the log before kiln exits: after a refused boot (ABANDON), and after a boot
/// that got ready (CONTINUE) before "bye".
#[test]
fn a_stop_gives_up_a_hooks_answer_after_its_bound() {
    let group = group();
    group.moto.lifecycle_wait(&group.asg, Transition::Launch);
    group.moto.throttle_lifecycle(1_000_000);

    let (ex, _emulator) = pinned_wrong(&group);
    let (mut kiln, _notify) = ex.boot_notified(KILN, &[], &[]);
    wait_hook(&ex, "launch", "sending_abandon");
    kiln.signal(Signal::SIGTERM);
    let exit = kiln.wait_exit(LEAVE);
    assert_eq!(exit.code(), Some(1), "a refused boot exits 1 when stopped");
    let log = kiln.log();
    assert!(
        log.contains(
            "lifecycle: launch hook kiln-launch: gave up: ABANDON not sent: kiln stopped before AWS answered (a stop waits 1s at most for a hook's answer)"
        ),
        "{}",
        hook_lines(&log)
    );

    let ex = example_on(&group.emulator, &hooks_section(&group));
    let (mut kiln, notify) = ex.boot_notified(KILN, &[], &[]);
    notify.wait_for("READY=1", LEAVE, |l| l == "READY=1");
    wait_hook(&ex, "launch", "sending_continue");
    kiln.signal(Signal::SIGTERM);
    kiln.wait_exit(LEAVE);
    let log = kiln.log();
    let gave_up = log.find(
        "lifecycle: launch hook kiln-launch: gave up: CONTINUE not sent: kiln stopped before AWS answered",
    );
    let bye = log.find("all services stopped; bye");
    assert!(
        gave_up.is_some() && bye.is_some() && gave_up < bye,
        "{}",
        hook_lines(&log)
    );
    let calls = group.moto.lifecycle_calls();
    assert!(calls.completed(&group.asg.launch_hook).is_empty(), "{calls:?}");
    assert_eq!(calls.states[&group.asg.instance_id], "Pending:Wait");
}

/// Processes an earlier kiln left that would not die (frozen by the v1 freezer: SIGKILL waits
/// for a thaw) refuse the boot before anything launches; the instance could never serve, so
/// the launch hook hears ABANDON at once instead of the group waiting out the hook's timeout.
#[test]
fn leftovers_that_would_not_die_abandon_the_launch() {
    let group = group();
    group.moto.lifecycle_wait(&group.asg, Transition::Launch);
    let ex = example_on(&group.emulator, &hooks_section(&group));
    let services = testkit::cgroups::kiln_dir(&ex.state_dir())
        .expect("a cgroup2 mount showing the test's cgroup")
        .join("services");
    let frozen = Frozen::start(&services.join("php-fpm"));
    let (_kiln, _notify) = ex.boot_notified(KILN, &[], &[]);

    let status = wait_hook(&ex, "launch", "abandoned");
    let reason = status["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        format!(
            "cgroups: processes an earlier kiln left in {} did not die within 10s of SIGKILL: {} sleep",
            services.display(),
            frozen.pid
        ),
        "{status}"
    );
    assert!(status["services"].as_array().unwrap().is_empty(), "{status}");
    let calls = group.moto.lifecycle_calls();
    let completed = calls.completed(&group.asg.launch_hook);
    assert_eq!(completed.len(), 1, "{calls:?}");
    assert_eq!(completed[0].0, "ABANDON");
    assert_eq!(calls.states[&group.asg.instance_id], "Terminating:Proceed");
}

/// A `sleep` in a cgroup v2 of kiln's tree and in a frozen cgroup v1 freezer: SIGKILL cannot end
/// it until it is thawed. Dropping it thaws and kills it, and removes the freezer cgroup (before
/// the example's drop removes kiln's tree: declare it after the example).
struct Frozen {
    pid: u32,
    child: std::process::Child,
    freezer: std::path::PathBuf,
}

impl Frozen {
    fn start(cgroup: &std::path::Path) -> Frozen {
        let freezer_root = std::path::Path::new("/sys/fs/cgroup/freezer");
        assert!(
            freezer_root.is_dir(),
            "this test needs the cgroup v1 freezer (the hybrid layout of the CI machines)"
        );
        std::fs::create_dir_all(cgroup).unwrap();
        let freezer = freezer_root.join(format!("kt-frozen-{}", std::process::id()));
        std::fs::create_dir_all(&freezer).unwrap();
        let child = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
        let frozen = Frozen {
            pid: child.id(),
            child,
            freezer,
        };
        std::fs::write(cgroup.join("cgroup.procs"), frozen.pid.to_string()).unwrap();
        std::fs::write(frozen.freezer.join("cgroup.procs"), frozen.pid.to_string()).unwrap();
        std::fs::write(frozen.freezer.join("freezer.state"), "FROZEN").unwrap();
        wait_until("the sleep frozen", LEAVE, || {
            let state = std::fs::read_to_string(frozen.freezer.join("freezer.state")).ok()?;
            (state.trim() == "FROZEN").then_some(())
        });
        frozen
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::fs::write(self.freezer.join("freezer.state"), "THAWED");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.freezer);
    }
}
