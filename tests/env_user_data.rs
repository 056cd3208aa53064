//! Every bad input, through the whole `kiln env` process: the exact error, exit 1, no value in
//! the output, and nothing written. Plus the good formats and the layering, end to end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A secret that must never show up in any output.
const SECRET: &str = "hunter2-s3cr3t";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// `--write-to` directory: empty after any failure.
    written: Vec<String>,
}

struct Instance {
    dir: tempfile::TempDir,
}

impl Instance {
    fn new(user_data: &[u8]) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("seed")).unwrap();
        std::fs::write(
            dir.path().join("seed/meta-data"),
            "instance-id: iid-test\nlocal-hostname: web-1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("seed/user-data"), user_data).unwrap();
        Instance { dir }
    }

    fn seed(&self) -> PathBuf {
        self.dir.path().join("seed")
    }

    /// Runs `kiln env` with `[metadata]` pointing at the seed plus `metadata_extra`, then `rest`.
    fn kiln_env(&self, metadata_extra: &str, rest: &str) -> Run {
        let config = self.dir.path().join("kiln.toml");
        let out = self.dir.path().join("out");
        std::fs::write(
            &config,
            format!("[metadata]\nseed = {:?}\n{metadata_extra}\n{rest}\n", self.seed()),
        )
        .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("env")
            .arg("--config")
            .arg(&config)
            .arg("--write-to")
            .arg(&out)
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            written: list(&out),
        }
    }

    /// The error line a failed boot gives for this instance: `environment (nocloud at SEED), ...`.
    fn expect_error(&self, run: &Run, step_and_reason: &str) {
        let want = format!(
            "kiln env: environment (nocloud at {}), {step_and_reason}\n",
            self.seed().display()
        );
        assert_eq!(run.stderr, want, "stdout: {}", run.stdout);
        assert_eq!(run.code, 1);
        assert!(run.written.is_empty(), "wrote {:?}", run.written);
        assert!(!run.stdout.contains(SECRET) && !run.stderr.contains(SECRET));
    }
}

fn list(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn bad(user_data: impl AsRef<[u8]>, metadata_extra: &str, rest: &str, step_and_reason: &str) {
    let instance = Instance::new(user_data.as_ref());
    let run = instance.kiln_env(metadata_extra, rest);
    instance.expect_error(&run, step_and_reason);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[test]
fn dotenv_missing_value() {
    bad(
        format!("APP_ENV=prod\nDATABASE_URL={SECRET}\nAPP_SECRET=\n"),
        "",
        "",
        "user-data line 3: APP_SECRET= is missing a value (write APP_SECRET=\"\" for an empty one)",
    );
}

#[test]
fn dotenv_line_without_assignment() {
    bad(
        format!("APP_ENV=prod\n{SECRET}\n"),
        "",
        "",
        "user-data line 2: expected NAME=value",
    );
}

#[test]
fn dotenv_unterminated_quote() {
    bad(
        format!("A=1\nAPP_SECRET=\"{SECRET}\nB=2\n"),
        "",
        "",
        "user-data line 2: APP_SECRET: unterminated double quote",
    );
}

#[test]
fn malformed_toml() {
    bad(
        format!("[env]\nAPP_SECRET = \"{SECRET}\nB = \"x\"\n"),
        "",
        "",
        "user-data line 2: not valid TOML: invalid basic string, expected `\"`",
    );
    bad(
        format!("[env]\nAPP_SECRET = {SECRET}\n"),
        "",
        "",
        "user-data line 2: not valid TOML: string values must be quoted, expected literal string",
    );
    bad(
        "[env]\nPORT = 8080\n",
        "",
        "",
        "user-data (toml): PORT must be a string (found integer)",
    );
    bad(
        format!("APP_SECRET = \"{SECRET}\"\n[env]\nA = \"1\"\n"),
        "",
        "",
        "user-data (toml): unknown top-level key \"APP_SECRET\": put the variables in an [env] table",
    );
}

#[test]
fn malformed_json() {
    bad(
        format!("{{\"APP_SECRET\": \"{SECRET}\",}}"),
        "",
        "",
        "user-data line 1: not valid JSON: trailing comma",
    );
    bad(
        format!("[\"{SECRET}\"]"),
        "",
        "",
        "user-data (json): must be an object of strings: {\"NAME\": \"value\"}",
    );
    bad(
        "{\"PORT\": 8080}",
        "",
        "",
        "user-data (json): PORT must be a string (found a number)",
    );
    // An explicit format is not second-guessed.
    bad(
        format!("APP_SECRET={SECRET}\n"),
        "user_data = \"json\"",
        "",
        "user-data line 1: not valid JSON: expected value",
    );
}

/// JSON kept the last of two equal names while dotenv refused them: every format refuses them
/// now, naming the variable and the line, never a value.
#[test]
fn a_name_set_twice_is_refused_in_every_format() {
    bad(
        format!("APP_SECRET={SECRET}\nAPP_SECRET=x\n"),
        "",
        "",
        "user-data line 2: APP_SECRET is set twice (first on line 1)",
    );
    bad(
        format!("{{\"APP_SECRET\": \"{SECRET}\",\n \"APP_SECRET\": \"x\"}}"),
        "",
        "",
        "user-data line 2: APP_SECRET is set twice",
    );
    bad(
        format!("[env]\nAPP_SECRET = \"{SECRET}\"\nAPP_SECRET = \"x\"\n"),
        "",
        "",
        "user-data line 3: APP_SECRET is set twice",
    );
}

/// `kiln env` printed instance facts raw: a terminal escape in the instance id reached the
/// terminal. A fact with control characters is refused where it is fetched.
#[test]
fn instance_facts_with_control_characters_are_refused() {
    let instance = Instance::new(b"A=1\n");
    std::fs::write(
        instance.seed().join("meta-data"),
        "instance-id: i-0abc\u{1b}[2J\u{1b}]0;pwned\u{7}\nlocal-hostname: web-1\n",
    )
    .unwrap();
    let run = instance.kiln_env("", "");
    assert_eq!(
        run.stderr,
        format!(
            "kiln env: metadata (nocloud at {}), instance facts: instance_id holds control characters \
             (a terminal escape or a line break): refused\n",
            instance.seed().display()
        )
    );
    assert_eq!(run.code, 1);
    assert!(run.written.is_empty(), "wrote {:?}", run.written);
    assert!(!run.stdout.contains('\u{1b}') && !run.stderr.contains('\u{1b}'));
}

/// A 200 KB value passed `kiln env`, then every service failed to exec. `kiln env` measures the
/// environment of each service against the kernel's limits as the boot does.
#[test]
fn a_value_over_the_exec_limit_is_refused() {
    let blob = SECRET.repeat(200 * 1024 / SECRET.len());
    let instance = Instance::new(format!("BLOB={blob}\n").as_bytes());
    let run = instance.kiln_env("user_data_limit = 1048576", "");
    instance.expect_error(
        &run,
        &format!(
            "exec limits: BLOB (user-data) is {} bytes as NAME=value, over the 131072 bytes Linux passes \
             per variable (MAX_ARG_STRLEN): every exec would fail with \"Argument list too long\"",
            "BLOB=".len() + blob.len() + 1
        ),
    );
}

#[test]
fn oversized() {
    let big = format!("APP_SECRET={SECRET}\nPAD={}\n", "x".repeat(70 * 1024));
    bad(
        &big,
        "",
        "",
        "user-data: is larger than user_data_limit (65536 bytes)",
    );
    // The limit is configurable.
    bad(
        "A=123456789\n",
        "user_data_limit = 8",
        "",
        "user-data: is larger than user_data_limit (8 bytes)",
    );
}

#[test]
fn gzip_bomb() {
    // 20 MiB that compress to about 20 KiB: under the raw limit, so decompression itself must
    // stop at the cap.
    let bomb = gzip(&vec![b'A'; 20 * 1024 * 1024]);
    assert!(bomb.len() < 65536, "the bomb is {} bytes compressed", bomb.len());
    bad(
        &bomb,
        "",
        "",
        "user-data: is larger than user_data_limit (65536 bytes) once decompressed",
    );
}

#[test]
fn corrupt_gzip() {
    let mut gz = gzip(format!("APP_SECRET={SECRET}\n").as_bytes());
    gz.truncate(gz.len() / 2);
    bad(
        &gz,
        "",
        "",
        "user-data: is gzip-compressed but does not decompress (corrupt or truncated)",
    );
}

#[test]
fn non_utf8() {
    let mut data = format!("A=1\nAPP_SECRET={SECRET}").into_bytes();
    data.extend_from_slice(&[0xff, 0xfe, b'\n']);
    bad(&data, "", "", "user-data line 2: is not UTF-8 text");
}

#[test]
fn nul_byte() {
    bad(
        format!("A=1\nAPP_SECRET={SECRET}\0x\n"),
        "",
        "",
        "user-data line 2: has a NUL byte",
    );
}

#[test]
fn bad_names() {
    bad(
        format!("1APP_SECRET={SECRET}\n"),
        "",
        "",
        "user-data line 1: a name starting with a digit is not a valid variable name (letters, digits and '_', not starting with a digit)",
    );
    bad(
        format!("{{\"APP-SECRET\": \"{SECRET}\"}}"),
        "",
        "",
        "user-data: a name with '-' at character 4 is not a valid variable name (letters, digits and '_', not starting with a digit)",
    );
}

#[test]
fn ld_preload_is_denied() {
    bad(
        format!("APP_SECRET={SECRET}\nLD_PRELOAD=/tmp/evil.so\n"),
        "",
        "",
        "user-data line 2: LD_PRELOAD is denied (built-in deny LD_*: dynamic loader: LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH load code into every process)",
    );
}

#[test]
fn configured_deny_list() {
    bad(
        format!("APP_SECRET={SECRET}\nPATH=/tmp/evil\n"),
        "",
        "[env]\ndeny = [\"PATH\", \"AWS_*\"]",
        "user-data line 2: PATH is denied ([env] deny = \"PATH\")",
    );
}

#[test]
fn kiln_prefix_is_reserved() {
    bad(
        format!("APP_SECRET={SECRET}\nKILN_REGION=us-east-1\n"),
        "",
        "",
        "user-data line 2: KILN_REGION: the KILN_ prefix is reserved for instance facts",
    );
}

#[test]
fn missing_required() {
    bad(
        format!("APP_SECRET={SECRET}\n"),
        "",
        "[env]\nrequired = [\"APP_SECRET\", \"DATABASE_URL\"]",
        "[env] required: DATABASE_URL not set by user-data or tags",
    );
    bad(
        "APP_SECRET=\"\"\n",
        "",
        "[env]\nrequired = [\"APP_SECRET\"]",
        "[env] required: APP_SECRET is empty (set by user-data)",
    );
}

#[test]
fn required_is_not_satisfied_by_kiln_s_own_environment() {
    let instance = Instance::new(b"A=1\n");
    let config = instance.dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        format!(
            "[metadata]\nseed = {:?}\n[env]\nrequired = [\"DATABASE_URL\"]\n",
            instance.seed()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["env", "--config"])
        .arg(&config)
        .env("DATABASE_URL", SECRET)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .ends_with("[env] required: DATABASE_URL not set by user-data or tags\n")
    );
}

#[test]
fn cloud_config_is_refused_with_a_reason() {
    bad(
        format!("#cloud-config\npackages:\n  - nginx\nwrite_files:\n  - content: {SECRET}\n"),
        "",
        "",
        "user-data: is a #cloud-config document: kiln takes environment variables (dotenv, TOML [env] or JSON), not cloud-config; set [metadata] user_data_foreign = \"ignore\" if kiln's variables come from elsewhere",
    );
    bad(
        "#!/bin/sh\necho hi\n",
        "",
        "",
        "user-data: is a script (#!): kiln takes environment variables (dotenv, TOML [env] or JSON), not a script; set [metadata] user_data_foreign = \"ignore\" if kiln's variables come from elsewhere",
    );
}

/// A MIME multi-part user-data as cloud-init's tools write it: `(content type, transfer
/// encoding, body)` parts, base64 bodies encoded here.
fn multipart(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    use base64::Engine;
    let mut doc = b"Content-Type: multipart/mixed; boundary=\"==kiln==\"\nMIME-Version: 1.0\n\n".to_vec();
    for (content_type, encoding, body) in parts {
        doc.extend_from_slice(
            format!("--==kiln==\nContent-Type: {content_type}\nMIME-Version: 1.0\nContent-Transfer-Encoding: {encoding}\n\n").as_bytes(),
        );
        match *encoding {
            "base64" => {
                doc.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(body).as_bytes())
            }
            _ => doc.extend_from_slice(body),
        }
        doc.push(b'\n');
    }
    doc.extend_from_slice(b"--==kiln==--\n");
    doc
}

const CLOUD_CONFIG: &[u8] = b"#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA ops\n";
const KILN_COMMENT: &str = "# kiln environment, not for cloud-init\n";

#[test]
fn kiln_reads_its_part_of_a_multipart_and_leaves_the_rest() {
    let kiln = format!("{KILN_COMMENT}APP_SECRET={SECRET}\nAPP_ENV=prod\n");
    // 7bit, base64, quoted-printable, and gzip inside base64.
    for (encoding, body) in [
        ("7bit", kiln.clone().into_bytes()),
        ("base64", kiln.clone().into_bytes()),
        ("quoted-printable", kiln.replace('=', "=3D").into_bytes()),
        ("base64", gzip(kiln.as_bytes())),
    ] {
        let user_data = multipart(&[
            ("text/cloud-config; charset=\"us-ascii\"", "7bit", CLOUD_CONFIG),
            ("text/x-shellscript", "7bit", b"#!/bin/sh\necho hi\n"),
            ("text/x-kiln-env; charset=\"utf-8\"", encoding, &body),
        ]);
        let instance = Instance::new(&user_data);
        let run = instance.kiln_env("", "[env]\nrequired = [\"APP_SECRET\", \"APP_ENV\"]");
        assert_eq!(run.code, 0, "{encoding}: {}", run.stderr);
        assert!(
            run.stdout
                .lines()
                .any(|l| l.split_whitespace().eq(["APP_SECRET", "user-data"])),
            "{}",
            run.stdout
        );
        let env = std::fs::read_to_string(instance.dir.path().join("out/env")).unwrap();
        assert!(env.contains(&format!("APP_SECRET=\"{SECRET}\"")), "{encoding}");
    }
    // The whole document gzip-compressed, as cloud-init also takes it.
    let user_data = gzip(&multipart(&[
        ("text/cloud-config", "7bit", CLOUD_CONFIG),
        ("text/x-kiln-env", "base64", kiln.as_bytes()),
    ]));
    let run = Instance::new(&user_data).kiln_env("", "[env]\nrequired = [\"APP_SECRET\"]");
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn errors_in_kiln_s_part_name_the_part_and_the_line() {
    let body = format!("{KILN_COMMENT}APP_SECRET={SECRET}\nNOT AN ASSIGNMENT {SECRET}\n");
    bad(
        multipart(&[
            ("text/cloud-config", "7bit", CLOUD_CONFIG),
            ("text/x-kiln-env", "base64", body.as_bytes()),
        ]),
        "",
        "",
        "user-data part 2 line 3: expected NAME=value",
    );
}

#[test]
fn kiln_s_part_must_begin_with_a_comment_cloud_init_may_log() {
    bad(
        multipart(&[
            ("text/cloud-config", "7bit", CLOUD_CONFIG),
            (
                "text/x-kiln-env",
                "base64",
                format!("APP_SECRET={SECRET}\n").as_bytes(),
            ),
        ]),
        "",
        "",
        "user-data part 2: does not begin with a comment line of at least 24 characters: cloud-init writes the first line or 24 bytes of a part it does not handle to its log and the console, where a value must not go; begin the part with a line like \"# kiln environment, not for cloud-init\", or gzip it",
    );
    // A short comment is not enough: older cloud-init versions log 24 bytes whatever the line.
    bad(
        multipart(&[(
            "text/x-kiln-env",
            "7bit",
            format!("# kiln\nA={SECRET}\n").as_bytes(),
        )]),
        "",
        "",
        "user-data part 1: does not begin with a comment line of at least 24 characters: cloud-init writes the first line or 24 bytes of a part it does not handle to its log and the console, where a value must not go; begin the part with a line like \"# kiln environment, not for cloud-init\", or gzip it",
    );
}

#[test]
fn a_multipart_without_kiln_s_part_is_refused_unless_foreign_is_ignored() {
    let user_data = multipart(&[("text/cloud-config", "7bit", CLOUD_CONFIG)]);
    bad(
        &user_data,
        "",
        "",
        "user-data: is a MIME multi-part document (cloud-init) without a text/x-kiln-env part: put kiln's variables in a part of that type, or set [metadata] user_data_foreign = \"ignore\" if they come from elsewhere",
    );
    let instance = Instance::new(&user_data);
    let run = instance.kiln_env(
        "user_data_foreign = \"ignore\"",
        "[env]\ndefaults = { APP_ENV = \"prod\" }",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("user-data"), "{}", run.stdout);
}

#[test]
fn cloud_config_alone_is_no_error_when_foreign_is_ignored() {
    let instance = Instance::new(format!("#cloud-config\nwrite_files:\n  - content: {SECRET}\n").as_bytes());
    let run = instance.kiln_env(
        "user_data_foreign = \"ignore\"",
        "[env]\ndefaults = { APP_ENV = \"prod\" }",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains(SECRET) && !run.stderr.contains(SECRET));
    // But kiln's own part, when there is one, is still read and checked.
    bad(
        multipart(&[(
            "text/x-kiln-env",
            "7bit",
            format!("{KILN_COMMENT}1BAD={SECRET}\n").as_bytes(),
        )]),
        "user_data_foreign = \"ignore\"",
        "",
        "user-data part 1 line 2: a name starting with a digit is not a valid variable name (letters, digits and '_', not starting with a digit)",
    );
}

#[test]
fn bad_multiparts_are_refused_naming_the_part() {
    let ok_body = format!("{KILN_COMMENT}A={SECRET}\n");
    bad(
        multipart(&[
            ("text/x-kiln-env", "7bit", ok_body.as_bytes()),
            ("text/x-kiln-env", "7bit", ok_body.as_bytes()),
        ]),
        "",
        "",
        "user-data: parts 1 and 2 are both text/x-kiln-env: give kiln one part",
    );
    bad(
        multipart(&[("text/x-kiln-env", "base64", b"")]).replace_base64_body(),
        "",
        "",
        "user-data: is MIME multi-part, but part 1 (text/x-kiln-env): its base64 body does not decode",
    );
    bad(
        multipart(&[("text/x-kiln-env; charset=iso-8859-1", "7bit", ok_body.as_bytes())]),
        "",
        "",
        "user-data part 1: charset \"iso-8859-1\": kiln reads UTF-8 only",
    );
    bad(
        multipart(&[(
            "text/x-kiln-env",
            "7bit",
            b"#cloud-config, in kiln's part by mistake\nhostname: web\n",
        )]),
        "",
        "",
        "user-data part 1: is a #cloud-config document, but it is the text/x-kiln-env part: kiln's variables go there",
    );
}

trait BadBase64 {
    fn replace_base64_body(self) -> Vec<u8>;
}

impl BadBase64 for Vec<u8> {
    /// The (empty) base64 body replaced by text that is not base64 (a value among it).
    fn replace_base64_body(self) -> Vec<u8> {
        let text = String::from_utf8(self).unwrap();
        text.replace("base64\n\n\n", &format!("base64\n\n{SECRET}!!\n"))
            .into_bytes()
    }
}

#[test]
fn a_missing_seed_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        format!("[metadata]\nseed = {:?}\n", dir.path().join("nope")),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["env", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "kiln env: metadata (nocloud at {}), seed directory: does not exist (create it with meta-data and user-data files, or set [metadata] provider)\n",
            dir.path().join("nope").display()
        )
    );
}

#[test]
fn a_bad_config_is_exit_78_and_names_the_key() {
    let instance = Instance::new(b"A=1\n");
    let run = instance.kiln_env("endpoint = \"https://169.254.169.254\"", "");
    assert_eq!(run.code, 78);
    assert!(
        run.stderr
            .contains("[metadata] endpoint = \"https://169.254.169.254\": must start with http://"),
        "{}",
        run.stderr
    );
    let run = instance.kiln_env("", "[env]\ndefaults = { LD_AUDIT = \"x\" }");
    assert_eq!(run.code, 78);
    assert!(
        run.stderr.contains("[env] defaults: LD_AUDIT is denied"),
        "{}",
        run.stderr
    );
}

#[test]
fn every_format_and_the_layering() {
    let cases: [(&str, &[u8]); 4] = [
        (
            "dotenv",
            format!("export APP_SECRET='{SECRET}'\nAPP_ENV=staging # from user-data\n")
                .leak()
                .as_bytes(),
        ),
        (
            "toml",
            format!("[env]\nAPP_SECRET = \"{SECRET}\"\nAPP_ENV = \"staging\"\n")
                .leak()
                .as_bytes(),
        ),
        (
            "json",
            format!("{{\"APP_SECRET\": \"{SECRET}\", \"APP_ENV\": \"staging\"}}")
                .leak()
                .as_bytes(),
        ),
        (
            "gzip",
            gzip(format!("APP_SECRET={SECRET}\nAPP_ENV=staging\n").as_bytes()).leak(),
        ),
    ];
    for (format, data) in cases {
        let instance = Instance::new(data);
        let run = instance.kiln_env(
            "",
            "[env]\nrequired = [\"APP_SECRET\"]\ndefaults = { APP_ENV = \"prod\", APP_DEBUG = \"0\" }",
        );
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
        assert!(
            !run.stdout.contains(SECRET) && !run.stderr.contains(SECRET),
            "{format}"
        );
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "nocloud at {} (instance iid-test, fetched in {}",
                instance.seed().display(),
                lines[0].split("fetched in ").nth(1).unwrap()
            )
        );
        let sources: Vec<(&str, &str)> = lines[1..lines.len() - 1]
            .iter()
            .map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next().unwrap(), parts.next().unwrap())
            })
            .collect();
        assert_eq!(
            sources,
            vec![
                ("APP_DEBUG", "default"),
                ("APP_ENV", "user-data"),
                ("APP_SECRET", "user-data"),
                ("KILN_HOSTNAME", "instance"),
                ("KILN_INSTANCE_ID", "instance"),
                ("KILN_PROVIDER", "instance"),
            ],
            "{format}"
        );
        let mut written = run.written.clone();
        written.sort();
        assert_eq!(written, vec!["env", "instance.json"]);
        let env = std::fs::read_to_string(instance.dir.path().join("out/env")).unwrap();
        assert!(env.contains(&format!("\nAPP_SECRET=\"{SECRET}\"\n")), "{format}");
        assert!(env.contains("\nAPP_ENV=\"staging\"\n"), "{format}");
    }
}
