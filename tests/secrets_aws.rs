//! SSM Parameter Store and Secrets Manager references against a real moto_server with signature
//! checks on: through `kiln env` (values in the env file it writes), and through `kiln boot` of
//! the PHP example (the page shows a secret, a refused boot starts nothing, no value leaks, each
//! service gets only what it is allowed).

use nix::sys::signal::Signal;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use testkit::control;
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options, RoleKeys};
use testkit::example::Example;
use testkit::moto::{Moto, REGION};
use testkit::peers::Kiln;
use testkit::wait::{http_get, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const BOOT: Duration = Duration::from_secs(60);
const ACCOUNT: &str = "123456789012";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kiln env --write-to DIR/out` with `config` and `envs`; its output and the env file.
fn kiln_env(dir: &Path, config: &str, envs: &[(&str, &str)]) -> (Output, String) {
    let path = dir.join("kiln.toml");
    std::fs::write(&path, config).unwrap();
    let out_dir = dir.join("out");
    let mut cmd = Command::new(KILN);
    cmd.args([
        "env",
        "--config",
        path.to_str().unwrap(),
        "--write-to",
        out_dir.to_str().unwrap(),
    ]);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(envs.iter().copied());
    let out = cmd.output().unwrap();
    let env = std::fs::read_to_string(out_dir.join("env")).unwrap_or_default();
    (out, env)
}

/// A nocloud seed in `dir` with `user_data`; the `[metadata]` section pointing at it.
fn seed(dir: &Path, user_data: &str) -> String {
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(
        seed.join("meta-data"),
        "instance-id: i-0secrets\nlocal-hostname: web-1\n",
    )
    .unwrap();
    std::fs::write(seed.join("user-data"), user_data).unwrap();
    format!(
        "[metadata]\nprovider = \"nocloud\"\nseed = {:?}\ndeadline = \"20s\"\n[control]\nsocket = \"/run/kiln-test-unused.sock\"\n",
        seed.to_str().unwrap()
    )
}

/// The line of `kiln env`'s listing for `name` says `source`.
fn listed_as(out: &Output, name: &str, source: &str) -> bool {
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        l.split_once(' ')
            .is_some_and(|(n, rest)| n == name && rest.trim_start() == source)
    })
}

#[test]
fn ssm_and_secrets_manager_references_resolve_batched_paged_and_decrypted() {
    let moto = Moto::start();
    let rds_arn = moto.boto3(
        r#"
ssm = client("ssm")
ssm.put_parameter(Name="/app/prod/greeting", Value="hello-from-ssm", Type="String")
ssm.put_parameter(Name="/app/prod/db_password", Value="ssm-secure-value", Type="SecureString")
ssm.put_parameter(Name="/app/prod/api_key", Value="api-v1", Type="SecureString")
ssm.put_parameter(Name="/app/prod/api_key", Value="api-v2", Type="SecureString", Overwrite=True)
ssm.label_parameter_version(Name="/app/prod/api_key", ParameterVersion=1, Labels=["old"])
for i in range(12):
    ssm.put_parameter(Name=f"/app/prod/env/p{i:02}", Value=f"path-value-{i:02}", Type="SecureString")
    ssm.put_parameter(Name=f"/app/many/m{i:02}", Value=f"many-value-{i:02}", Type="String")
sm = client("secretsmanager")
sm.create_secret(Name="app/plain", SecretString="sm-plain-value")
arn = sm.create_secret(Name="app/rds", SecretString=json.dumps({"username": "app", "password": "sm-rds-password"}))["ARN"]
print(arn)
"#,
    );
    let rds_arn = rds_arn.trim();
    let mut user_data = format!(
        "GREETING=ssm:/app/prod/greeting\n\
         DB_PASSWORD=ssm:///app/prod/db_password\n\
         API_OLD=ssm:/app/prod/api_key:1\n\
         API_LABEL=ssm:/app/prod/api_key:old\n\
         API_KEY=ssm:arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/app/prod/api_key\n\
         SM_PLAIN=secretsmanager:app/plain\n\
         RDS_PASSWORD=secretsmanager:{rds_arn}:password\n\
         RDS_USER=secretsmanager:app/rds:username\n\
         NOT_A_REFERENCE=vault:secret/app\n"
    );
    for i in 0..12 {
        user_data.push_str(&format!("M{i:02}=ssm:/app/many/m{i:02}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = seed(dir.path(), &user_data)
        + &format!("[secrets]\nregion = {REGION:?}\nssm_paths = [\"/app/prod/env\"]\n");
    let endpoint = moto.endpoint();
    let (out, env) = kiln_env(
        dir.path(),
        &config,
        &[
            ("AWS_ACCESS_KEY_ID", &moto.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &moto.secret_access_key),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let expect = [
        ("GREETING", "hello-from-ssm"),
        // Decrypted: moto gives kms:alias/aws/ssm:<value> to a read without WithDecryption.
        ("DB_PASSWORD", "ssm-secure-value"),
        ("API_OLD", "api-v1"),
        ("API_LABEL", "api-v1"),
        ("API_KEY", "api-v2"),
        ("SM_PLAIN", "sm-plain-value"),
        ("RDS_PASSWORD", "sm-rds-password"),
        ("RDS_USER", "app"),
        ("NOT_A_REFERENCE", "vault:secret/app"),
        ("M00", "many-value-00"),
        ("M11", "many-value-11"),
        ("P00", "path-value-00"),
        ("P11", "path-value-11"),
    ];
    for (name, value) in expect {
        assert!(env.contains(&format!("{name}=\"{value}\"\n")), "{name}: {env}");
    }
    assert!(
        !env.contains("kms:alias"),
        "a SecureString was read without decryption: {env}"
    );
    assert!(
        listed_as(&out, "GREETING", "secret (ssm:/app/prod/greeting)"),
        "{}",
        text(&out)
    );
    assert!(
        listed_as(&out, "P07", "secret (ssm:/app/prod/env/p07)"),
        "{}",
        text(&out)
    );
    assert!(
        listed_as(
            &out,
            "RDS_PASSWORD",
            &format!("secret (secretsmanager:{rds_arn}:password)")
        ),
        "{}",
        text(&out)
    );
    assert!(listed_as(&out, "NOT_A_REFERENCE", "user-data"), "{}", text(&out));
    // 17 SSM references, 15 names (api_key three times): 4 GetParameters of at most 10 names,
    // each name once per call; 12 path parameters in 2 pages of GetParametersByPath; one
    // BatchGetSecretValue for app/plain and app/rds (by name and by ARN, both keys).
    let said = text(&out);
    assert!(said.contains("secrets: 32 resolved in"), "{said}");
    assert!(said.contains("(7 requests)"), "{said}");
    for secret in [
        "hello-from-ssm",
        "ssm-secure-value",
        "sm-rds-password",
        "path-value-03",
    ] {
        assert!(!said.contains(secret), "{secret} in kiln env's output: {said}");
    }
}

/// Instance-role credentials through the EC2 metadata emulator (IMDSv2), the region from the
/// instance facts, the SSM endpoint from `AWS_ENDPOINT_URL_SSM` and Secrets Manager's from the
/// config.
#[test]
fn credentials_from_the_instance_role_and_the_region_from_the_instance() {
    let moto = Moto::start();
    let region = "eu-west-1";
    moto.boto3(&format!(
        r#"
client("ssm", "{region}").put_parameter(Name="/app/db", Value="role-read-value", Type="SecureString")
client("secretsmanager", "{region}").create_secret(Name="app/key", SecretString="role-read-secret")
"#
    ));
    let role = RoleKeys {
        name: "kiln-instance".into(),
        access_key_id: moto.role.access_key_id.clone(),
        secret_access_key: moto.role.secret_access_key.clone(),
        token: moto.role.token.clone(),
        expiration: moto.role.expiration.clone(),
    };
    let ec2 = MetadataEmulator::start(
        Options::new(Cloud::Ec2)
            .user_data("DATABASE_URL=ssm:/app/db\nAPI_KEY=secretsmanager:app/key\n")
            .role(role),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[secrets]\nsecretsmanager_endpoint = {:?}\n[control]\nsocket = \"/run/kiln-test-unused.sock\"\n",
        ec2.config_section("deadline = \"20s\""),
        moto.endpoint()
    );
    let endpoint = moto.endpoint();
    let (out, env) = kiln_env(dir.path(), &config, &[("AWS_ENDPOINT_URL_SSM", &endpoint)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(env.contains("DATABASE_URL=\"role-read-value\"\n"), "{env}");
    assert!(env.contains("API_KEY=\"role-read-secret\"\n"), "{env}");
    let role_fetches = ec2
        .log()
        .iter()
        .filter(|l| l.path == "/latest/meta-data/iam/security-credentials/kiln-instance" && l.status == 200)
        .count();
    assert_eq!(
        role_fetches,
        1,
        "the role's keys are fetched once and shared: {:?}",
        ec2.log()
    );
    assert!(
        ec2.count(401) == 0,
        "a metadata GET went without its token: {:?}",
        ec2.log()
    );
}

/// The example app with `[secrets]` and the user-data replaced by `user_data`, and two extra
/// services that only sleep: `limited` (env_allow = APP_*) and `open` (no allow list).
fn example_with_secrets(moto: &Moto, user_data: &str, extra_metadata: &str) -> Example {
    let example = Example::render();
    std::fs::write(example.seed_dir.join("user-data"), user_data).unwrap();
    let seed = example.seed_dir.to_str().unwrap().to_string();
    let ssm = moto.endpoint();
    example.edit_toml(|t| {
        let metadata: toml::Table = toml::from_str(&format!(
            "provider = \"nocloud\"\nseed = {seed:?}\ndeadline = \"20s\"\n{extra_metadata}"
        ))
        .unwrap();
        t.insert("metadata".into(), metadata.into());
        let secrets: toml::Table =
            toml::from_str(&format!("region = {REGION:?}\nssm_endpoint = {ssm:?}\n")).unwrap();
        t.insert("secrets".into(), secrets.into());
        let services = t["service"].as_array_mut().unwrap();
        for (name, allow) in [("limited", "env_allow = [\"APP_*\"]\n"), ("open", "")] {
            let service: toml::Table = toml::from_str(&format!(
                "name = {name:?}\ncommand = [\"sleep\", \"100000\"]\nready_after = \"100ms\"\n{allow}"
            ))
            .unwrap();
            services.push(service.into());
        }
    });
    example
}

fn boot(example: &Example, moto: &Moto, secret: &str) -> Kiln {
    let config = example.config_path.to_str().unwrap().to_string();
    let endpoint = moto.endpoint();
    Kiln::boot_with(
        KILN,
        &["boot", "--config", &config],
        &[
            ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", secret),
            // Secrets Manager through the SDKs' global variable, SSM through the config.
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    )
}

fn environ(pid: i32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .filter_map(|v| {
            let v = String::from_utf8_lossy(v);
            v.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Every file under `dir` (recursively), but `env`.
fn files_but_env(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_but_env(&path));
        } else if path.file_name().is_some_and(|n| n != "env") && path.is_file() {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_booted_instance_gets_its_secrets_leaks_none_limits_services_and_announces_rotation() {
    let moto = Moto::start();
    moto.boto3(
        r#"
ssm = client("ssm")
ssm.put_parameter(Name="/app/prod/greeting", Value="greeting-from-ssm-7d1f", Type="String")
ssm.put_parameter(Name="/app/prod/db", Value="mysql://app:db-pass-4b2e@db/app", Type="SecureString")
client("secretsmanager").create_secret(Name="app/rds", SecretString=json.dumps({"password": "app-secret-9c3a"}))
"#,
    );
    let values = ["greeting-from-ssm-7d1f", "db-pass-4b2e", "app-secret-9c3a"];
    let example = example_with_secrets(
        &moto,
        "GREETING=ssm:/app/prod/greeting\nDATABASE_URL=ssm:/app/prod/db\nAPP_SECRET=secretsmanager:app/rds:password\nAPP_ENV=prod\n",
        "recheck = \"1s\"\n",
    );
    let mut kiln = boot(&example, &moto, &moto.secret_access_key);
    wait_until("/readyz 200", BOOT, || {
        (http_get(&example.readyz_url()).ok()?.0 == 200).then_some(())
    });
    let (code, page) = http_get(&example.page_url()).unwrap();
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("greeting: greeting-from-ssm-7d1f\n"), "{page}");

    // Least privilege, read back from the processes themselves.
    let socket = example.socket();
    let limited = environ(control::unit_pid(&socket, "limited").unwrap());
    let names: Vec<&str> = limited.iter().map(|(k, _)| k.as_str()).collect();
    for wanted in ["APP_SECRET", "APP_ENV", "PATH", "KILN_SERVICE", "KILN_REPLICA"] {
        assert!(names.contains(&wanted), "limited lacks {wanted}: {names:?}");
    }
    for unwanted in [
        "DATABASE_URL",
        "GREETING",
        "KILN_INSTANCE_ID",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
    ] {
        assert!(!names.contains(&unwanted), "limited has {unwanted}: {names:?}");
    }
    let open = environ(control::unit_pid(&socket, "open").unwrap());
    let get = |k: &str| open.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(
        get("DATABASE_URL").as_deref(),
        Some("mysql://app:db-pass-4b2e@db/app")
    );
    for kiln_only in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"] {
        assert_eq!(get(kiln_only), None, "kiln's {kiln_only} reached a service");
    }

    // Status: the count, the sources, no value.
    let (code, status_text) = example.status_cli(KILN, &[]);
    assert_eq!(code, 0, "{status_text}");
    assert!(status_text.contains("secrets: 3 resolved in"), "{status_text}");
    let status = control::status(&socket).unwrap();
    let source = |name: &str| {
        status["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["source"].clone())
    };
    assert_eq!(source("DATABASE_URL").unwrap(), "secret (ssm:/app/prod/db)");
    assert!(
        status["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["phase"] == "secrets"),
        "{status}"
    );

    // Rotation: announced, never applied.
    moto.boto3(r#"client("ssm").put_parameter(Name="/app/prod/db", Value="mysql://app:rotated-5e6f@db/app", Type="SecureString", Overwrite=True)"#);
    let line = "secret DATABASE_URL changed since boot: replace this instance";
    wait_until("the rotation announced", BOOT, || {
        let status = control::status(&socket)?;
        status["warnings"]
            .as_array()?
            .iter()
            .any(|w| w == line)
            .then_some(())
    });
    let env_file = example.state_dir().join("env");
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        env.contains("DATABASE_URL=\"mysql://app:db-pass-4b2e@db/app\""),
        "{env}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // No value anywhere kiln wrote but the env file: its log, its status, its state dir.
    let (_, status_text) = example.status_cli(KILN, &[]);
    let (_, status_json) = example.status_cli(KILN, &["--json"]);
    kiln.signal(Signal::SIGTERM);
    assert!(kiln.wait_exit(BOOT).success(), "{}", kiln.log());
    let mut written = vec![
        ("kiln's log".to_string(), kiln.log()),
        ("status".into(), status_text),
        ("status --json".into(), status_json),
    ];
    for file in files_but_env(&example.state_dir()) {
        written.push((
            file.display().to_string(),
            String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned(),
        ));
    }
    for (what, text) in &written {
        for value in values
            .iter()
            .chain(&["rotated-5e6f", moto.secret_access_key.as_str()])
        {
            assert!(!text.contains(value), "{value} is in {what}:\n{text}");
        }
    }
}

/// A wrong secret key: SignatureDoesNotMatch named with the variable and its reference, the
/// boot refused, nothing started.
#[test]
fn a_wrong_secret_key_refuses_the_boot_and_denying_one_parameter_names_it() {
    let moto = Moto::start();
    let limited = moto.boto3(&format!(
        r#"
ssm = client("ssm")
ssm.put_parameter(Name="/app/prod/allowed", Value="allowed-value-1a2b", Type="SecureString")
ssm.put_parameter(Name="/app/prod/denied", Value="denied-value-3c4d", Type="SecureString")
client("secretsmanager").create_secret(Name="app/key", SecretString="sm-value-5e6f")
iam = client("iam")
iam.create_user(UserName="limited")
iam.put_user_policy(UserName="limited", PolicyName="no-denied", PolicyDocument=json.dumps({{"Version": "2012-10-17", "Statement": [
    {{"Effect": "Allow", "Action": "*", "Resource": "*"}},
    {{"Effect": "Deny", "Action": "ssm:GetParameter*", "Resource": "arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/app/prod/denied"}},
    {{"Effect": "Deny", "Action": "secretsmanager:BatchGetSecretValue", "Resource": "*"}}]}}))
key = iam.create_access_key(UserName="limited")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#
    ));
    let (limited_id, limited_secret) = limited.trim().split_once(' ').unwrap();
    let user_data =
        "ALLOWED=ssm:/app/prod/allowed\nDENIED_ONE=ssm:/app/prod/denied\nSM_KEY=secretsmanager:app/key\n";

    // The wrong key.
    let example = example_with_secrets(&moto, user_data, "");
    let mut kiln = boot(&example, &moto, "not-the-secret-key");
    let status = wait_until("a refused boot", BOOT, || {
        control::status(&example.socket()).filter(|s| s["phase"] == "failed")
    });
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("SignatureDoesNotMatch"), "{reason}");
    assert!(
        reason.contains("ALLOWED") && reason.contains("ssm:/app/prod/allowed"),
        "{reason}"
    );
    assert!(
        status["services"]
            .as_array()
            .is_none_or(|u| u.iter().all(|u| u["pid"].is_null())),
        "{status}"
    );
    assert_eq!(http_get(&example.readyz_url()).unwrap().0, 503);
    let (code, said) = example.status_cli(KILN, &[]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("SignatureDoesNotMatch"), "{said}");
    kiln.signal(Signal::SIGTERM);
    kiln.wait_exit(BOOT);
    assert!(!kiln.log().contains("not-the-secret-key"), "{}", kiln.log());

    // A policy that denies one parameter: AccessDenied on that variable only, nothing started.
    let example = example_with_secrets(&moto, user_data, "");
    let config = example.config_path.to_str().unwrap().to_string();
    let endpoint = moto.endpoint();
    let mut kiln = Kiln::boot_with(
        KILN,
        &["boot", "--config", &config],
        &[
            ("AWS_ACCESS_KEY_ID", limited_id),
            ("AWS_SECRET_ACCESS_KEY", limited_secret),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
    );
    let status = wait_until("a refused boot", BOOT, || {
        control::status(&example.socket()).filter(|s| s["phase"] == "failed")
    });
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.contains("secret DENIED_ONE (ssm:/app/prod/denied)"),
        "{reason}"
    );
    assert!(reason.contains("AccessDenied"), "{reason}");
    assert!(
        !reason.contains("ALLOWED"),
        "the allowed parameter is blamed too: {reason}"
    );
    assert!(
        status["services"]
            .as_array()
            .is_none_or(|u| u.iter().all(|u| u["pid"].is_null())),
        "{status}"
    );
    kiln.signal(Signal::SIGTERM);
    kiln.wait_exit(BOOT);
    let log = kiln.log();
    for value in [
        "allowed-value-1a2b",
        "denied-value-3c4d",
        "sm-value-5e6f",
        limited_secret,
    ] {
        assert!(!log.contains(value), "{value} in the log:\n{log}");
    }
}

/// user-data controls a reference, never where kiln sends its credentials: an ARN whose region
/// field is `x@127.0.0.78/` makes the default endpoint `https://ssm.x@127.0.0.78/.amazonaws.com`,
/// that is 127.0.0.78:443, and kiln would send its signed request with the session token there
/// and take the answer as the secret. It is refused, naming the variable, quoting nothing, and
/// nothing connects to the listener it points at.
#[test]
fn an_arn_whose_region_is_a_host_is_refused_and_nothing_is_sent_there() {
    // A loopback address of this test's own, on the port the default endpoint uses.
    let listener = std::net::TcpListener::bind("127.0.0.78:443").unwrap();
    let hostile = [
        (
            "DATABASE_URL",
            format!("ssm:arn:aws:ssm:x@127.0.0.78/:{ACCOUNT}:parameter/app/db"),
        ),
        (
            "API_KEY",
            format!("secretsmanager:arn:aws:secretsmanager:x@127.0.0.78/:{ACCOUNT}:secret:app/key"),
        ),
    ];
    let user_data: String = hostile.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
    let dir = tempfile::tempdir().unwrap();
    let config = seed(dir.path(), &user_data).replace("deadline = \"20s\"", "deadline = \"3s\"")
        + "[secrets]\nregion = \"us-east-1\"\n";
    let token = "session-token-7f3a";
    let (out, env) = kiln_env(
        dir.path(),
        &config,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret-key-2b9c"),
            ("AWS_SESSION_TOKEN", token),
        ],
    );
    let said = text(&out);
    // kiln has exited: a connection it opened waits in the backlog.
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("kiln connected to the address user-data named: {other:?}\n{said}"),
    }
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(env.is_empty(), "{env}");
    for (name, value) in &hostile {
        let scheme = value.split(':').next().unwrap();
        assert!(
            said.contains(&format!(
                "secret {name} (from user-data): the value is not a valid {scheme} reference: \
                 the ARN's region is not an AWS region (e.g. eu-west-1)"
            )),
            "{said}"
        );
        assert!(!said.contains(value.as_str()), "the value is shown: {said}");
    }
    for shown in ["127.0.0.78", "x@", token, "secret-key-2b9c"] {
        assert!(!said.contains(shown), "{shown} is shown: {said}");
    }
}
