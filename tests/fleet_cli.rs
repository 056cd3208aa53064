//! `kiln fleet`'s answers to bad input and to a load balancer that cannot be asked: a clear
//! sentence and an exit code a pipeline can tell from "not ready yet" (2).

use std::process::Command;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// `kiln fleet ARGS`: exit code, stdout, stderr.
fn fleet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(KILN).arg("fleet").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiln.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_str().unwrap().to_string())
}

#[test]
fn bad_input_is_named_and_exits_78_or_64() {
    let (_d, no_lb) = config("[health]\nlisten = \"0.0.0.0:9100\"\n");
    let (code, _, err) = fleet(&["--config", &no_lb]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(&format!("no load balancer to ask ({no_lb} has no [lb])")),
        "{err}"
    );

    let (_d, broken) = config("[lb]\nkind = \"haproxy\"\nsocket = \"admin.sock\"\n");
    let (code, _, err) = fleet(&["--config", &broken]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains(&broken) && err.contains("[lb] socket"), "{err}");

    let (code, _, err) = fleet(&["--config", "/nonexistent/kiln.toml"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("/nonexistent/kiln.toml: cannot read"), "{err}");

    for (args, needle) in [
        (
            &["--socket", "/s", "--service", "app"][..],
            "give the flags of one",
        ),
        (&["--socket", "/s"][..], "give --backend"),
        (
            &["--socket", "/s", "--backend", "app", "--timeout", "0s"][..],
            "--timeout",
        ),
        (
            &["--socket", "/s", "--backend", "app", "--instance", "http://x"][..],
            "--instance",
        ),
        (
            &["--agent", "ftp://x", "--service", "app"][..],
            "agent \"ftp://x\"",
        ),
    ] {
        let (code, _, err) = fleet(args);
        assert_eq!(code, 78, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }

    let (code, _, err) = fleet(&["--timeout", "soon"]);
    assert_eq!(code, 64, "a usage error is not 'rolling' (2): {err}");
}

#[test]
fn only_lb_and_health_are_read_from_the_image_config() {
    // The image's config names programs this machine lacks; fleet does not care. Its load
    // balancer is not there: unreachable, exit 1, and --json still prints the verdict.
    let (dir, path) = config("");
    let socket = dir.path().join("admin.sock");
    std::fs::write(
        &path,
        format!(
            "[health]\nlisten = \"0.0.0.0:9100\"\n[lb]\nkind = \"haproxy\"\nsocket = {socket:?}\n\
             backend = \"app\"\naddress = \"{{local_ipv4}}:8080\"\n\
             [[service]]\nname = \"app\"\ncommand = [\"no-such-program-on-a-laptop\"]\n"
        ),
    )
    .unwrap();
    let (code, out, err) = fleet(&["--config", &path]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.starts_with("UNREACHABLE: cannot list the members: haproxy runtime API at "),
        "{out}"
    );
    assert!(out.contains("cannot connect"), "{out}");

    let (code, out, _) = fleet(&["--config", &path, "--json"]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["verdict"], "unreachable");
    assert!(
        json["error"].as_str().unwrap().contains("cannot connect"),
        "{json}"
    );
}
