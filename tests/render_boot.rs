//! `[render]` at boot, on the Symfony example: its `.env.local.php` written by kiln before the
//! services, read by real php-fpm with `clear_env = yes`; the files' mode and owner; a read-only
//! tmpfs that refuses every write, root's included; a template naming a variable the instance
//! lacks refuses the boot, naming it, having started and written nothing.

use nix::sys::signal::Signal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::control;
use testkit::example::mounted_at;
use testkit::symfony::{SymfonyExample, sha256_prefix};
use testkit::wait::{http_get, http_get_with, wait_until};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const WAIT: Duration = Duration::from_secs(30);
/// The instance's APP_SECRET here: only `env.local.php` may hold it.
const SECRET: &str = "SECRET-render-8d2e";

/// The example with `APP_SECRET` = [`SECRET`] in its user-data.
fn render() -> SymfonyExample {
    SymfonyExample::render_with_secret(SECRET)
}

fn gid_of(group: &str) -> u32 {
    nix::unistd::Group::from_name(group)
        .unwrap()
        .unwrap_or_else(|| panic!("no group {group}"))
        .gid
        .as_raw()
}

/// What a pool worker's PHP sees of its environment: `clear_env = yes` leaves it nothing of kiln's.
const ENV_PROBE: &str = r#"<?php
header('Content-Type: text/plain');
echo 'getenv_app_secret: ', var_export(getenv('APP_SECRET'), true), "\n";
echo 'server_app_secret: ', var_export($_SERVER['APP_SECRET'] ?? null, true), "\n";
echo 'env_names: ', implode(',', array_keys(getenv())), "\n";
"#;

#[test]
fn php_fpm_with_clear_env_reads_the_secret_from_the_rendered_env_local_php() {
    let ex = render();
    ex.install_probe("env-probe.php", ENV_PROBE);
    let (kiln, _notify) = ex.boot_ready(KILN);

    // The app's page: the secret arrived (its hash), through the symlink in the release.
    let (code, page) = ex.page();
    assert_eq!(code, 200, "{page}");
    let line = format!("app_secret_sha256: {}", sha256_prefix(SECRET));
    assert!(
        page.lines().any(|l| l == line),
        "{line:?} not on the page:\n{page}"
    );
    let link = std::fs::read_link(ex.app_dir.join(".env.local.php")).unwrap();
    assert_eq!(link, ex.run_dir.join("render/env.local.php"));

    // ... and not through the environment: the pool's workers have none of it.
    let seen = ex.probe("env-probe.php");
    assert!(seen.contains("getenv_app_secret: false\n"), "{seen}");
    assert!(seen.contains("server_app_secret: NULL\n"), "{seen}");
    assert!(!seen.contains(SECRET), "{seen}");

    // The file holds the allowed variables only, in Symfony's format.
    let file = ex.run_dir.join("render/env.local.php");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("<?php"), "{text}");
    assert!(
        text.contains(&format!("'APP_SECRET' => '{SECRET}'")),
        "not in the file"
    );
    let allowed = [
        "APP_",
        "GREETING",
        "DATABASE_URL",
        "MESSENGER_TRANSPORT_DSN",
        "KILN_INSTANCE_ID",
    ];
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix('\'')?.split_once('\'').map(|(n, _)| n))
        .collect();
    assert!(names.contains(&"GREETING"), "{names:?}");
    for name in &names {
        assert!(
            allowed.iter().any(|a| name.starts_with(a)),
            "{name} is not allowed in the file"
        );
    }

    // The template of the instance's facts: nginx includes it.
    let answer = http_get_with(&ex.page_url(), &[]).unwrap();
    assert_eq!(answer.header("x-kiln-instance"), Some("iid-kiln-symfony-0001"));

    // The status says what was written, never a value.
    let status = control::status(&ex.socket()).unwrap();
    let render = &status["render"];
    assert_eq!(render["read_only"], true, "{render}");
    let files = render["files"].as_array().unwrap();
    assert_eq!(files[0]["name"], "env.local.php", "{render}");
    assert_eq!(files[0]["format"], "symfony", "{render}");
    assert_eq!(files[0]["mode"], "0640", "{render}");
    assert_eq!(files[0]["owner"], "root:www-data", "{render}");
    assert_eq!(files[1]["name"], "nginx-instance.conf", "{render}");
    assert!(!status.to_string().contains(SECRET), "{status}");
    let (_, said) = ex.status_cli(KILN, &[]);
    assert!(said.contains("env.local.php"), "{said}");
    assert!(!said.contains(SECRET), "{said}");
    assert!(!kiln.log().contains(SECRET), "{}", kiln.log());
}

#[test]
fn rendered_files_have_their_mode_and_owner_and_refuse_every_write() {
    let ex = render();
    let (mut kiln, _notify) = ex.boot_ready(KILN);
    let dir = ex.run_dir.join("render");
    assert!(mounted_at(&dir), "no tmpfs at {}", dir.display());

    let env_file = dir.join("env.local.php");
    let meta = std::fs::metadata(&env_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (0, gid_of("www-data")));
    let conf = std::fs::metadata(dir.join("nginx-instance.conf")).unwrap();
    assert_eq!(conf.permissions().mode() & 0o7777, 0o644);
    assert_eq!((conf.uid(), conf.gid()), (0, 0));

    // Root, the most privileged writer there is, is refused: EROFS, the file unchanged.
    let before = std::fs::read(&env_file).unwrap();
    let erofs = |what: &str, r: std::io::Result<()>| {
        let e = r.expect_err(&format!("{what} succeeded"));
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    erofs(
        "open for writing",
        std::fs::OpenOptions::new().append(true).open(&env_file).map(drop),
    );
    erofs(
        "chmod",
        std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o666)),
    );
    erofs("unlink", std::fs::remove_file(&env_file));
    erofs("rename", std::fs::rename(&env_file, dir.join("moved")));
    erofs("create", std::fs::write(dir.join("new"), "x"));
    assert_eq!(std::fs::read(&env_file).unwrap(), before);
    // The service's own user: the same.
    let out = Command::new("setpriv")
        .args([
            "--reuid=www-data",
            "--regid=www-data",
            "--init-groups",
            "sh",
            "-c",
        ])
        .arg(format!("echo x >> {}", env_file.display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "www-data wrote to {}", env_file.display());
    assert_eq!(std::fs::read(&env_file).unwrap(), before);

    // At stop, the files go with the services that read them.
    kiln.signal(Signal::SIGTERM);
    assert!(kiln.wait_exit(WAIT).success(), "{}", kiln.log());
    assert!(!mounted_at(&dir), "the tmpfs outlived kiln");
    assert!(!env_file.exists(), "env.local.php outlived kiln");
}

/// A template naming `env.NAME` the instance does not have.
fn add_template(ex: &SymfonyExample, name: &str, text: &str) -> std::path::PathBuf {
    let template = ex.run_dir.join(name);
    std::fs::write(&template, text).unwrap();
    let template_str = template.to_str().unwrap().to_string();
    ex.edit_toml(|table| {
        let render = table["render"].as_table_mut().unwrap();
        let files = render["file"].as_array_mut().unwrap();
        let mut file = toml::Table::new();
        file.insert("name".into(), "app.conf".into());
        file.insert("format".into(), "template".into());
        file.insert("template".into(), template_str.into());
        file.insert("mode".into(), "0600".into());
        files.push(file.into());
    });
    template
}

#[test]
fn a_template_naming_a_missing_variable_refuses_the_boot_naming_it() {
    let ex = render();
    let template = add_template(
        &ex,
        "app.conf.j2",
        "secret = {{ env.APP_SECRET }}\n\nmissing = {{ env.NOT_SET_ANYWHERE }}\n",
    );
    let mut kiln = testkit::peers::Kiln::boot(KILN, &ex.config_path);
    let status = wait_until("a refused boot", WAIT, || {
        control::status(&ex.socket()).filter(|s| s["phase"] == "failed")
    });
    let reason = status["reason"].as_str().unwrap();
    for part in [
        "NOT_SET_ANYWHERE",
        "app.conf",
        template.to_str().unwrap(),
        "line 3",
    ] {
        assert!(reason.contains(part), "{part:?} not in {reason}");
    }
    // Nothing started, nothing written, nothing mounted.
    assert!(
        status["services"]
            .as_array()
            .is_none_or(|u| u.iter().all(|u| u["pid"].is_null())),
        "{status}"
    );
    let dir = ex.run_dir.join("render");
    assert!(!mounted_at(&dir), "a tmpfs at {}", dir.display());
    assert!(!dir.join("env.local.php").exists());
    assert!(!dir.join("app.conf").exists());
    assert_eq!(http_get(&ex.readyz_url()).unwrap().0, 503);
    let (code, said) = ex.status_cli(KILN, &[]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("NOT_SET_ANYWHERE"), "{said}");

    kiln.signal(Signal::SIGTERM);
    kiln.wait_exit(WAIT);
    let log = kiln.log();
    assert!(log.contains("NOT_SET_ANYWHERE"), "{log}");
    for text in [log.as_str(), reason, said.as_str()] {
        assert!(!text.contains(SECRET), "{text}");
    }
    assert!(!Path::new(&dir).join("app.conf").exists());
}

#[test]
fn dotenv_and_json_files_hold_the_allowed_variables_as_sh_and_a_json_parser_read_them() {
    let ex = testkit::example::Example::render();
    let dir = ex.run_dir.join("render");
    let file = |name: &str, format: &str, allow: &[&str], mode: &str| {
        let mut t = toml::Table::new();
        t.insert("name".into(), name.into());
        t.insert("format".into(), format.into());
        let allow: Vec<toml::Value> = allow.iter().map(|a| (*a).into()).collect();
        t.insert("env_allow".into(), allow.into());
        t.insert("mode".into(), mode.into());
        toml::Value::Table(t)
    };
    ex.edit_toml(|t| {
        let mut render = toml::Table::new();
        render.insert("dir".into(), dir.display().to_string().into());
        render.insert(
            "file".into(),
            toml::Value::Array(vec![
                file("app.env", "dotenv", &["*"], "0600"),
                file("app.json", "json", &["GREETING", "APP_*"], "0400"),
            ]),
        );
        t.insert("render".into(), render.into());
    });
    let (kiln, _notify) = ex.boot_ready(KILN);

    // dotenv: what `set -a; . FILE` reads (systemd's EnvironmentFile= reads the same syntax).
    let env_file = dir.join("app.env");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -a; . '{}'; printf '%s|%s' \"$GREETING\" \"$DATABASE_URL\"",
            env_file.display()
        ))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello from the kiln example|mysql://app:example@127.0.0.1:3306/app?serverVersion=8.0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // JSON: one object of exactly the allowed names.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("app.json")).unwrap()).unwrap();
    let names: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(names, ["APP_ENV", "APP_SECRET", "GREETING"], "{json}");
    assert_eq!(json["GREETING"], "Hello from the kiln example");
    for (name, mode) in [("app.env", 0o600), ("app.json", 0o400)] {
        let meta = std::fs::metadata(dir.join(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{name}");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{name}");
    }
    assert!(!kiln.log().contains("example-secret-change-me"), "{}", kiln.log());
}
