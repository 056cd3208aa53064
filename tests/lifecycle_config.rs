//! A bad `[lifecycle]` is a config error like any other: `kiln check` and `kiln boot` list every
//! problem at once, each with its key, and nothing starts.

use std::time::Duration;
use testkit::example::Example;
use testkit::peers::{Kiln, tagged_processes};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

#[test]
fn every_lifecycle_problem_is_listed_and_nothing_starts() {
    let ex = Example::render();
    ex.edit_config(|c| {
        c + "\n[lifecycle]\nlaunch_hook = \"kiln launch\"\nterminate_hook = \"kiln-terminate\"\n\
             on_termination = \"report\"\nheartbeat_timeout = \"3h\"\npoll_interval = \"2m\"\n\
             endpoint = \"autoscaling.internal\"\n"
    });
    let expected = [
        "[lifecycle] launch_hook = \"kiln launch\": a lifecycle hook name is 1 to 255 letters, digits, '-', '_' or '/'",
        "[lifecycle] launch_hook, terminate_hook: Auto Scaling lifecycle hooks are EC2's, and [metadata] provider = \"nocloud\" (use \"ec2\" or \"auto\")",
        "[lifecycle] terminate_hook needs on_termination = \"leave\" (it is \"report\")",
        "[lifecycle] heartbeat_timeout = \"3h\": a hook's HeartbeatTimeout is 30s to 2h (as set on the group)",
        "[lifecycle] poll_interval = \"2m\": 1s to 1m (a spot interruption is announced 2 minutes ahead)",
        "[lifecycle] endpoint = \"autoscaling.internal\": give an http:// or https:// URL",
    ];
    ex.check_refuses(KILN, &expected);

    let mut kiln = Kiln::boot(KILN, &ex.config_path);
    assert_eq!(
        kiln.wait_exit(Duration::from_secs(10)).code(),
        Some(78),
        "{}",
        kiln.log()
    );
    let log = kiln.log();
    for problem in expected {
        assert!(
            log.contains(problem),
            "kiln boot said:\n{log}\nexpected: {problem}"
        );
    }
    assert!(log.contains("nothing was started"), "{log}");
    assert!(tagged_processes(kiln.tag()).is_empty(), "boot started something");
}

#[test]
fn an_unknown_key_is_refused_with_its_name() {
    let ex = Example::render();
    ex.edit_config(|c| c + "\n[lifecycle]\non_spot = \"leave\"\n");
    ex.check_refuses(KILN, &["unknown field `on_spot`"]);
}
