//! A broken config is a clear error naming the place, from `kiln check` and from `kiln boot`, and
//! `kiln boot` starts nothing. Every problem but a TOML syntax error is listed at once: values
//! serde refuses and unknown keys with the others. What `kiln check` only warns about exits 0.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use testkit::example::{Checked, Example};
use testkit::peers::{Kiln, tagged_processes};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Breaks the example with `edit`, then checks both commands refuse it with `message`.
fn refused(edit: impl FnOnce(String) -> String, message: &str) {
    refused_with(edit, &[message]);
}

/// Breaks the example with `edit`, then checks both commands refuse it naming every one of
/// `messages`, and that `kiln status` explains the refusal.
fn refused_with(edit: impl FnOnce(String) -> String, messages: &[&str]) {
    refused_in(Example::render(), edit, messages);
}

/// [`refused_with`] on an example rendered by the caller (for messages that name its paths).
fn refused_in(ex: Example, edit: impl FnOnce(String) -> String, messages: &[&str]) {
    ex.edit_config(|c| {
        let edited = edit(c.clone());
        assert_ne!(edited, c, "the edit changed nothing");
        edited
    });
    let config = ex.config_path.to_str().unwrap();
    ex.check_refuses(KILN, messages);

    let mut kiln = Kiln::boot(KILN, &ex.config_path);
    let status = kiln.wait_exit(Duration::from_secs(10));
    let log = kiln.log();
    assert_eq!(status.code(), Some(78), "kiln boot: {log}");
    for message in messages {
        assert!(
            log.contains(message),
            "kiln boot said:\n{log}\nexpected: {message}"
        );
    }
    assert!(log.contains(config), "the error names the file: {log}");
    assert!(log.contains("nothing was started"), "{log}");
    assert!(tagged_processes(kiln.tag()).is_empty(), "boot started something");
    assert!(
        !ex.socket().exists() && !ex.php_fpm_socket().exists(),
        "boot left runtime files"
    );

    let status = Command::new(KILN)
        .args(["status", "--config", config])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "kiln status: {stdout}");
    assert!(stdout.contains("kiln boot refuses its config"), "{stdout}");
    for message in messages {
        assert!(
            stdout.contains(message),
            "kiln status said:\n{stdout}\nexpected: {message}"
        );
    }
}

#[test]
fn an_unknown_key() {
    refused(
        |c| c.replace("replicas = 2", "replicas = 2\ncolour = \"red\""),
        "unknown field `colour`",
    );
}

#[test]
fn a_dependency_cycle() {
    refused(
        |c| c.replacen("name = \"php-fpm\"", "name = \"php-fpm\"\nafter = [\"nginx\"]", 1),
        "dependency cycle in `after`: php-fpm -> nginx -> php-fpm",
    );
}

#[test]
fn an_unknown_after_name() {
    refused(
        |c| c.replace("after = [\"php-fpm\"]", "after = [\"php\"]"),
        "[[service]] #2 \"nginx\": after: unknown service \"php\"",
    );
}

#[test]
fn a_missing_executable() {
    refused(
        |c| c.replace("command = [\"php\",", "command = [\"no-such-php\","),
        "[[service]] #3 \"worker\": command: \"no-such-php\" not found in PATH",
    );
}

#[test]
fn a_bad_duration() {
    refused(
        |c| c.replacen("stop_timeout = \"10s\"", "stop_timeout = \"10 parsecs\"", 1),
        "invalid duration \"10 parsecs\"",
    );
}

#[test]
fn every_problem_at_once() {
    refused_with(
        |c| {
            c.replace("after = [\"php-fpm\"]", "after = [\"php\"]")
                .replace("command = [\"php\",", "command = [\"no-such-php\",")
                .replace("working_dir = \"", "working_dir = \"/nonexistent")
                .replace("restart_delay = \"200ms\"", "restart_delay = \"1h\"")
        },
        &[
            "[[service]] #2 \"nginx\": after: unknown service \"php\"",
            "[[service]] #3 \"worker\": command: \"no-such-php\" not found in PATH",
            "[[service]] #3 \"worker\": working_dir = \"/nonexistent",
            "[[service]] #3 \"worker\": restart_delay = \"1h\": must be above zero and at most restart_delay_max",
        ],
    );
}

#[test]
fn a_working_dir_that_does_not_exist() {
    refused(
        |c| c.replace("working_dir = \"", "working_dir = \"/nonexistent"),
        "\": does not exist",
    );
}

/// The reproduction: this passed `kiln check`, then `kiln boot` panicked on the
/// overflowing startup budget with a service left running.
#[test]
fn a_probe_period_of_500_billion_years() {
    refused(
        |c| c.replacen("period = \"100ms\"", "period = \"500000000000y\"", 1),
        "invalid duration \"500000000000y\": at most \"10y\"",
    );
}

#[test]
fn a_probe_whose_startup_budget_is_over_ten_years() {
    refused(
        |c| c.replacen("period = \"100ms\"", "period = \"1y\"", 1),
        "[[service]] #1 \"php-fpm\": [service.startup] period (\"1year\") × failure_threshold (100) is over \"10y\"",
    );
}

#[test]
fn a_good_config_checks_clean() {
    let ex = Example::render();
    let out = ex.check(KILN, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("ok (3 services, 4 processes)"));
}

/// The 1-based line of the first line of `text` that starts with `start`.
fn line_of(text: &str, start: &str) -> usize {
    text.lines().position(|l| l.starts_with(start)).expect(start) + 1
}

/// The case: a bad duration came alone as a TOML error, hiding every other problem.
/// Values are read after the structure: the bad value, an unknown key, a string where a list
/// goes and the checks' own problems come in one list, each with its place (and its line).
#[test]
fn a_bad_value_comes_with_every_other_problem() {
    let ex = Example::render();
    let edit = |c: String| {
        c.replacen("stop_timeout = \"10s\"", "stop_timeout = \"10 parsecs\"", 1)
            .replace("replicas = 2", "replicas = 2\ncolour = \"red\"")
            .replace("after = [\"php-fpm\"]", "after = [\"php\"]")
            .replacen("expect = \"pong\"", "expect = [\"pong\"]", 1)
    };
    let edited = edit(ex.config());
    let stop_timeout = line_of(&edited, "stop_timeout = \"10 parsecs\"");
    let colour = line_of(&edited, "colour = ");
    let expect = line_of(&edited, "expect = [");
    let messages = [
        format!(
            "[[service]] #1 \"php-fpm\": stop_timeout: invalid duration \"10 parsecs\" (unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)): write a number and a unit, like \"250ms\", \"20s\" or \"5m\" (line {stop_timeout})"
        ),
        format!(
            "[[service]] #1 \"php-fpm\": [service.startup] expect: invalid type: sequence, expected a string (line {expect})"
        ),
        format!(
            "[[service]] #3 \"worker\": colour: unknown field `colour`, expected one of `name`, `command`, `after`, `user`, `group`, `working_dir`, `env`, `env_allow`, `stop_signal`, `stop_signal_to`, `stop_timeout`, `restart`, `restart_delay`, `restart_delay_max`, `replicas`, `ready_after`, `memory_max`, `cpu_weight`, `tasks_max`, `nice`, `startup`, `ready`, `live`, `phpfpm_status` (line {colour})"
        ),
        "[[service]] #2 \"nginx\": after: unknown service \"php\"".to_string(),
    ];
    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
    refused_in(ex, edit, &messages);
}

/// A nice level the kernel does not have.
#[test]
fn a_nice_level_out_of_range() {
    refused(
        |c| c.replace("nice = 10", "nice = 20"),
        "[[service]] #3 \"worker\": nice = 20: must be between -20 and 19",
    );
}

/// A probe URL the probe's HTTP client cannot parse passed `kiln check`; every boot then
/// refused it (invalid authority), as a failed boot that stayed up instead of exit 78.
#[test]
fn an_http_probe_url_the_probe_cannot_use() {
    refused(
        |c| {
            let at = c.find("http = \"http://").unwrap();
            let end = at + c[at..].find('\n').unwrap();
            format!("{}http = \"http://[::1:80/x\"{}", &c[..at], &c[end..])
        },
        "[[service]] #2 \"nginx\": [service.ready] http = \"http://[::1:80/x\": invalid authority",
    );
}

/// A probe every nanosecond never passes (a check takes longer than its timeout) and forks
/// without a pause: both have a floor, named with the key.
#[test]
fn a_probe_period_or_timeout_of_one_nanosecond() {
    refused_with(
        |c| {
            c.replacen("period = \"100ms\"", "period = \"1ns\"", 1).replacen(
                "timeout = \"1s\"",
                "timeout = \"1ns\"",
                1,
            )
        },
        &[
            "[[service]] #1 \"php-fpm\": [service.startup] period = \"1ns\": at least \"100ms\"",
            "[[service]] #1 \"php-fpm\": [service.startup] timeout = \"1ns\": at least \"10ms\"",
        ],
    );
}

/// A state directory inside a sealed path: every boot wrote its files there, then found them as
/// drift from the seal.
#[test]
fn a_state_dir_inside_a_sealed_path() {
    let ex = Example::render();
    let run_dir = ex.run_dir.display().to_string();
    let sealed = format!("\n[seal]\npaths = [\"{run_dir}\"]\n");
    let message = format!(
        "[control] state_dir {run_dir}/kiln: inside the sealed path {run_dir} ([seal] paths): kiln writes there at every boot, which the seal would take for drift; move it out of the seal (under /run) or list it in [seal] exclude"
    );
    refused_in(ex, |c| c + &sealed, &[&message]);
}

/// A control socket path over `sun_path` (108 bytes with its NUL) could never be bound: the
/// boot failed to serve, after `kiln check` passed.
#[test]
fn a_control_socket_path_too_long_to_bind() {
    let ex = Example::render();
    let socket = ex.socket().display().to_string();
    let long = socket.replace("control.sock", &format!("{}.sock", "s".repeat(100)));
    let message = format!(
        "[control] socket = \"{long}\": {} bytes, over the 107 a unix socket path may have",
        long.len()
    );
    refused_in(ex, |c| c.replace(&socket, &long), &[&message]);
}

/// An agent port on every address beside a health port on one: the same port, so the second
/// bind of every boot failed; only an equal address was refused.
#[test]
fn an_agent_port_that_takes_the_health_port() {
    let ex = Example::render();
    let health = ex.health_addr;
    let edit = |c: String| {
        c.replace(
            &format!("listen = \"{health}\""),
            &format!(
                "listen = \"{health}\"\nagent_listen = \"0.0.0.0:{}\"",
                health.port()
            ),
        )
    };
    refused_in(ex, edit, &["[health] agent_listen must differ from listen"]);
}

/// URLs were checked for their scheme only; one the HTTP client cannot parse failed at boot.
#[test]
fn an_endpoint_the_http_client_cannot_parse() {
    refused(
        |c| c.replace("[metadata]\n", "[metadata]\nendpoint = \"http://[::1:80\"\n"),
        "[metadata] endpoint = \"http://[::1:80\": not a URL: invalid IPv6 address",
    );
}

/// A required variable that defaults, tags, user-data and secrets may not set (denied, or of the
/// reserved prefix) failed every boot after the metadata fetch.
#[test]
fn a_required_variable_nothing_may_set() {
    refused_with(
        |c| c + "\n[env]\nrequired = [\"LD_PRELOAD\", \"KILN_ZONE\"]\n",
        &[
            "[env] required: LD_PRELOAD is denied (built-in deny LD_*: dynamic loader: LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH load code into every process), so nothing can set it",
            "[env] required: KILN_ZONE: the KILN_ prefix is reserved for instance facts, so nothing can set it",
        ],
    );
}

/// `kiln check --config FILE` with its address space bounded to 1 GiB (a kiln that reads
/// `/dev/zero` whole must fail here, not take the machine's memory), killed after 20 s (a kiln
/// that blocks on a FIFO).
fn check_bounded(config: &Path) -> Output {
    Command::new("prlimit")
        .args([
            "--as=1073741824",
            "--",
            "timeout",
            "-s",
            "KILL",
            "20",
            KILN,
            "check",
            "--config",
        ])
        .arg(config)
        .output()
        .unwrap()
}

/// `--config` that is not a small regular file: `/dev/zero` was read until memory ran out, a
/// FIFO blocked the read, a large file was read whole. Each is refused at once, naming why.
#[test]
fn a_config_that_is_not_a_small_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("kiln.toml.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat((1 << 20) + 1)).unwrap();
    for (path, why) in [
        (Path::new("/dev/zero"), "not a regular file (a character device)"),
        (&fifo, "not a regular file (a FIFO)"),
        (dir.path(), "not a regular file (a directory)"),
        (&big, "over 1 MiB: a kiln.toml is a few KiB; is this the config?"),
    ] {
        let out = check_bounded(path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{}: {stderr}", path.display());
        assert_eq!(stderr, format!("kiln check: {}: {why}\n", path.display()));
    }
}

/// `kiln check ARGS --config` the example's, with `envs` added to its environment.
fn check_with(ex: &Example, args: &[&str], envs: &[(&str, &str)]) -> Checked {
    let out = Command::new(KILN)
        .arg("check")
        .args(args)
        .arg("--config")
        .arg(&ex.config_path)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `kiln check` on the example edited by `edit`: it passes, and says each of `warnings` (and
/// nothing else) on stderr; `--strict` refuses the same list.
fn warned(ex: &Example, edit: impl FnOnce(String) -> String, warnings: &[String]) {
    warned_with(ex, &[], &[], edit, warnings);
}

/// [`warned`] with `args` and `envs` given to each `kiln check`.
fn warned_with(
    ex: &Example,
    args: &[&str],
    envs: &[(&str, &str)],
    edit: impl FnOnce(String) -> String,
    warnings: &[String],
) {
    ex.edit_config(edit);
    let config = ex.config_path.to_str().unwrap();
    let out = check_with(ex, args, envs);
    let (stdout, stderr) = (out.stdout, out.stderr);
    assert_eq!(out.code, Some(0), "{stderr}");
    let said: String = warnings
        .iter()
        .map(|w| format!("kiln check: {config}: warning: {w}\n"))
        .collect();
    assert_eq!(stderr, said);
    let count = match warnings.len() {
        1 => "1 warning".to_string(),
        n => format!("{n} warnings"),
    };
    assert!(
        stdout.contains(&format!("ok (3 services, 4 processes, {count})")),
        "{stdout}"
    );

    let strict: Vec<&str> = args.iter().copied().chain(["--strict"]).collect();
    let out = check_with(ex, &strict, envs);
    let stderr = out.stderr;
    assert_eq!(out.code, Some(78), "{stderr}");
    for warning in warnings {
        assert!(stderr.contains(&format!("{warning} (--strict)")), "{stderr}");
    }
}

/// `env_allow` is no boundary for a service that runs as root (the tests run as root, so a
/// service without `user` runs as kiln's user, root): root reads every environment.
#[test]
fn env_allow_as_root_is_a_warning() {
    let ex = Example::render();
    let env_file = ex.state_dir().join("env");
    let warning = format!(
        "[[service]] #2 \"nginx\": env_allow is no boundary: the service runs as root (no `user`: kiln's), who can read the whole environment ({}, /proc/PID/environ of every service); give it a user of its own",
        env_file.display()
    );
    warned(
        &ex,
        |c| {
            c.replace(
                "after = [\"php-fpm\"]",
                "after = [\"php-fpm\"]\nenv_allow = [\"APP_*\"]",
            )
        },
        &[warning],
    );
}

/// Nor for a service whose user also runs a service that gets more of the environment: a
/// process can read the environment of another process of its user.
#[test]
fn env_allow_beside_a_wider_service_of_its_user_is_a_warning() {
    let ex = Example::render();
    warned(
        &ex,
        |c| {
            c.replacen("name = \"php-fpm\"", "name = \"php-fpm\"\nuser = \"www-data\"", 1)
                .replace(
                    "after = [\"php-fpm\"]",
                    "after = [\"php-fpm\"]\nuser = \"www-data\"\nenv_allow = [\"APP_*\"]",
                )
        },
        &["[[service]] #2 \"nginx\": env_allow is no boundary: the service runs as \"www-data\", as [[service]] #1 \"php-fpm\" does, which gets more of the environment, and a process can read /proc/PID/environ of another of its user; give it a user of its own".to_string()],
    );
}

/// A limit whose controller kiln would not have is refused by every boot here (tests/cgroup.rs):
/// `kiln check` says so ahead, found the way the boot finds its controllers. On the CI layout the
/// test process is at the top of cgroup2 (hybrid: no controllers), where kiln makes its tree.
#[test]
fn a_limit_kiln_would_not_have_the_controller_for_is_a_warning() {
    let ex = Example::render();
    let offers = testkit::cgroups::own_dir()
        .unwrap()
        .join("cgroup.subtree_control");
    assert_eq!(
        std::fs::read_to_string(&offers).unwrap().trim(),
        "",
        "not the CI layout"
    );
    let warning = format!(
        "[[service]] #3 \"worker\": memory_max needs the memory controller, which a kiln booted here would not have ({} offers: none); kiln boot refuses a limit it cannot apply",
        offers.display()
    );
    warned(
        &ex,
        |c| c.replace("replicas = 2", "replicas = 2\nmemory_max = \"256M\""),
        &[warning],
    );
}

/// A value shaped like a secret reference reaches the services as that text where nothing
/// resolves it: `[env] defaults` without a `[secrets]` section enabling its scheme, and any
/// service's own `env` (never resolved). Each is named by its key, never by its value.
#[test]
fn a_secret_reference_nothing_resolves_is_a_warning() {
    let ex = Example::render();
    warned(
        &ex,
        |c| {
            c.replacen(
                "env = { APP_ENV = \"prod\" }",
                "env = { APP_ENV = \"prod\", APP_KEY = \"secretsmanager:app/key-SECRET\" }",
                1,
            ) + "\n[env]\ndefaults = { DB_PASSWORD = \"ssm:/app/db-SECRET\", MAILER = \"smtp://mail:25\" }\n"
        },
        &[
            "[env] defaults: DB_PASSWORD looks like a secret reference (ssm:...), but there is no [secrets] section: the services get that text; add \"ssm\" to [secrets] schemes (a [secrets] section enables them all)".to_string(),
            "[[service]] #1 \"php-fpm\": env APP_KEY looks like a secret reference (secretsmanager:...), but a service's env is never resolved: the service gets that text; move it to [env] defaults, with [secrets] schemes including \"secretsmanager\"".to_string(),
        ],
    );
    let out = ex.check(KILN, &[]);
    assert!(
        !out.stderr.contains("SECRET"),
        "a value was shown: {}",
        out.stderr
    );

    // A [secrets] section that leaves the scheme out.
    let ex = Example::render();
    warned(
        &ex,
        |c| c + "\n[env]\ndefaults = { DB_PASSWORD = \"ssm:/app/db\" }\n[secrets]\nschemes = [\"gcp\"]\n",
        &["[env] defaults: DB_PASSWORD looks like a secret reference (ssm:...), but [secrets] schemes leaves out \"ssm\": the services get that text; add \"ssm\" to [secrets] schemes (a [secrets] section enables them all)".to_string()],
    );
}

/// A sealed path that is not there fails only at `kiln seal`: `kiln check` says so first, with
/// where a symlink on the way leads.
#[test]
fn a_sealed_path_that_does_not_exist_is_a_warning() {
    let ex = Example::render();
    let missing = ex.dir.path().join("not-deployed-yet");
    let current = ex.dir.path().join("current");
    std::os::unix::fs::symlink("releases/42", &current).unwrap();
    let warnings = [
        format!(
            "[seal] paths: {} does not exist: kiln seal refuses it; put it in place before kiln seal, or take it out of paths",
            missing.display()
        ),
        format!(
            "[seal] paths: {} leads to {}, which does not exist: kiln seal refuses it; put it in place before kiln seal, or take it out of paths",
            current.display(),
            ex.dir.path().join("releases/42").display()
        ),
    ];
    let (app, manifest) = (ex.app_dir.clone(), ex.dir.path().join("seal"));
    warned(
        &ex,
        |c| {
            format!(
                "{c}\n[seal]\npaths = [\"{}\", \"{}\", \"{}\"]\nmanifest = \"{}\"\nreadonly = false\n",
                app.display(),
                missing.display(),
                current.display(),
                manifest.display()
            )
        },
        &warnings,
    );
    let out = Command::new(KILN)
        .args(["seal", "--config"])
        .arg(&ex.config_path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "kiln seal took a path that is not there");
}

/// `[lb] drain_timeout` is compared with the `kiln.service` systemd would load (here from
/// `$SYSTEMD_UNIT_PATH`, as systemd takes it, with its drop-ins): a unit that does not take
/// kiln's `EXTEND_TIMEOUT_USEC` (not `Type=notify`) and stops kiln sooner would cut the drain.
/// kiln's own unit extends the stop while kiln drains: no warning with it, whatever the drain.
#[test]
fn a_drain_the_units_stop_timeout_would_cut_is_a_warning() {
    let units = tempfile::tempdir().unwrap();
    let unit_path = units.path().to_str().unwrap().to_string();
    let envs = [("SYSTEMD_UNIT_PATH", unit_path.as_str())];
    let lb = |drain: &str| {
        format!(
            "\n[lb]\nkind = \"haproxy\"\nsocket = \"/run/haproxy/admin.sock\"\nbackend = \"app\"\naddress = \"127.0.0.1:8080\"\ndrain_timeout = \"{drain}\"\n"
        )
    };
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/units/kiln.service")).unwrap();
    std::fs::write(units.path().join("kiln.service"), &shipped).unwrap();
    let ex = Example::render();
    ex.edit_config(|c| c + &lb("5m"));
    let out = check_with(&ex, &["--strict"], &envs);
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""), "kiln's own unit");

    // A drop-in of an operator's: a plain service, stopped after 20 s.
    let drop_in = units.path().join("kiln.service.d/50-simple.conf");
    std::fs::create_dir_all(drop_in.parent().unwrap()).unwrap();
    std::fs::write(&drop_in, "[Service]\nType=simple\nTimeoutStopSec=20s\n").unwrap();
    let ex = Example::render();
    warned_with(
        &ex,
        &[],
        &envs,
        |c| c + &lb("30s"),
        &[format!(
            "[lb] drain_timeout (30s) is not shorter than the time systemd gives kiln to stop (TimeoutStopSec=20s of {}), and Type=simple does not let kiln extend it while it drains: systemd would kill kiln and its services in the middle of the drain; raise TimeoutStopSec above drain_timeout plus the services' stop (systemctl edit kiln), or use Type=notify as kiln's own unit does",
            drop_in.display()
        )],
    );
}

/// With `--online`, `kiln check` reads the target group's deregistration delay from AWS (moto,
/// signatures checked): a shorter `drain_timeout` is a warning. Without `--online` it asks
/// nothing; with AWS out of reach it says so in a note and still passes, `--strict` too.
#[test]
fn a_drain_shorter_than_the_deregistration_delay_is_a_warning_when_online() {
    let moto = testkit::moto::Moto::start();
    moto.boto3(&format!(
        "client('elbv2').modify_target_group_attributes(TargetGroupArn={:?}, Attributes=[\
         {{'Key': 'deregistration_delay.timeout_seconds', 'Value': '120'}}])",
        moto.target_group_arn
    ));
    let keys = [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.as_str()),
    ];
    let lb = |endpoint: &str| {
        format!(
            "\n[lb]\nkind = \"elbv2\"\ntarget_group_arn = {:?}\nendpoint = {endpoint:?}\ndrain_timeout = \"30s\"\n",
            moto.target_group_arn
        )
    };
    let ex = Example::render();
    let (_, name) = moto.target_group_arn.split_once(":targetgroup/").unwrap();
    warned_with(
        &ex,
        &["--online"],
        &keys,
        |c| c + &lb(&moto.endpoint()),
        &[format!(
            "[lb] drain_timeout (30s) is shorter than the deregistration delay of targetgroup/{name} (deregistration_delay.timeout_seconds = 120): kiln would stop the services while the target group still lets requests in flight finish; set drain_timeout = \"120s\", or lower the target group's delay"
        )],
    );
    let out = check_with(&ex, &["--strict"], &keys);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (Some(0), ""),
        "not asked without --online"
    );

    let closed = format!("http://{}", testkit::net::free_addr());
    let ex = Example::render();
    ex.edit_config(|c| c + &lb(&closed));
    let out = check_with(&ex, &["--online", "--strict"], &keys);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let note = format!(
        "kiln check: {}: note: [lb] drain_timeout was not compared with the target group's deregistration delay: ",
        ex.config_path.display()
    );
    assert!(out.stderr.starts_with(&note), "{}", out.stderr);
    assert!(!out.stderr.contains(&moto.secret_access_key), "{}", out.stderr);
}
