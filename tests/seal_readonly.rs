//! The read-only remount, run by the hidden `kiln remount-readonly` inside a private mount
//! namespace made for each test (`unshare -m --propagation private`): writes to sealed paths fail
//! with EROFS there, excluded paths stay writable, and the test's own namespace is untouched.
//! The namespace ends with its shell, so nothing is left mounted even when a test fails.

use crate::seal_support::Fixture;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `script` with `sh` in a new private mount namespace; `$KILN`, `$CONFIG` and `$APP` set.
fn in_private_namespace(fx: &Fixture, config: &Path, script: &str) -> Output {
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .env("KILN", env!("CARGO_BIN_EXE_kiln"))
        .env("CONFIG", config)
        .env("APP", &fx.app)
        .env("DIR", fx.dir.path())
        .output()
        .expect("unshare runs (util-linux)");
    eprintln!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The mount lines of this (the host's) namespace that mention `dir`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(String::from)
        .collect()
}

/// `try LABEL CMD...` prints `LABEL: <output>`, or `LABEL: ok` when it succeeds silently.
const TRY: &str = r#"try() { label=$1; shift; out=$("$@" 2>&1); echo "$label: ${out:-ok}"; }
mounts() { awk -v app="$APP" '$5 == app || index($5, app "/") == 1' /proc/self/mountinfo | wc -l; }
"#;

fn line<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{label}: ")))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
}

#[test]
fn writes_fail_with_erofs_inside_and_the_host_is_untouched() {
    let fx = Fixture::new();
    fx.seal();
    let script = format!(
        r#"{TRY}
try outcome "$KILN" remount-readonly --config "$CONFIG"
try create touch "$APP/public/shell.php"
try append sh -c 'echo x >> "$1"' - "$APP/composer.json"
try chmod chmod 0777 "$APP/src/Kernel.php"
try mkdir mkdir "$APP/src/Evil"
try remove rm "$APP/bin/console"
try cache touch "$APP/var/cache/prod/fresh.php"
echo "mounts: $(mounts)"
try again "$KILN" remount-readonly --config "$CONFIG"
echo "mounts after again: $(mounts)"
"#
    );
    let out = in_private_namespace(&fx, &fx.config_path, &script);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let app = fx.app.display();
    assert_eq!(
        line(&stdout, "outcome"),
        format!("outcome: read-only: {app} (writable: {app}/var/cache)")
    );
    for label in ["create", "append", "chmod", "mkdir", "remove"] {
        assert!(
            line(&stdout, label).contains("Read-only file system"),
            "{label}: {stdout}"
        );
    }
    assert_eq!(line(&stdout, "cache"), "cache: ok");
    // Sealed path and the writable cache; a second run (a restarted kiln) adds nothing.
    assert_eq!(line(&stdout, "mounts"), "mounts: 2");
    assert_eq!(
        line(&stdout, "again"),
        format!("again: read-only: {app} (writable: {app}/var/cache)")
    );
    assert_eq!(line(&stdout, "mounts after again"), "mounts after again: 2");

    // The host saw none of it: no mounts, the tree writable, the cache write real.
    assert_eq!(host_mounts_under(fx.dir.path()), Vec::<String>::new());
    fs::write(fx.path("public/host.php"), "<?php").expect("the host can still write");
    assert!(fx.path("var/cache/prod/fresh.php").exists());
    assert!(!fx.path("public/shell.php").exists());
    assert!(fx.path("bin/console").exists());
}

/// A hard link made from outside the tree would let writes reach a sealed file without an event
/// in any watched directory (only the rescan would see them). Under the read-only remount no such
/// link can be made: link(2) refuses to cross mounts (EXDEV), and inside the tree the mount is
/// read-only.
#[test]
fn no_hard_link_can_be_made_to_a_sealed_file() {
    let fx = Fixture::new();
    fx.seal();
    let script = format!(
        r#"{TRY}
try outcome "$KILN" remount-readonly --config "$CONFIG"
try outside ln "$APP/public/index.php" "$DIR/hardlink"
try inside ln "$APP/public/index.php" "$APP/public/copy.php"
try excluded ln "$APP/public/index.php" "$APP/var/cache/copy.php"
echo "links: $(stat -c %h "$APP/public/index.php")"
"#
    );
    let out = in_private_namespace(&fx, &fx.config_path, &script);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        line(&stdout, "outcome").starts_with("outcome: read-only: "),
        "{stdout}"
    );
    for label in ["outside", "excluded"] {
        assert!(
            line(&stdout, label).contains("Invalid cross-device link"),
            "{label}: {stdout}"
        );
    }
    assert!(
        line(&stdout, "inside").contains("Read-only file system"),
        "{stdout}"
    );
    assert_eq!(line(&stdout, "links"), "links: 1");
    assert!(!fx.dir.path().join("hardlink").exists());
}

#[test]
fn mount_flags_are_kept_and_sealed_files_are_read_only_too() {
    let fx = Fixture::new();
    // Inside the namespace: a nosuid,nodev,noexec tmpfs holding a copy of the tree and a file.
    let ns = fx.dir.path().join("ns");
    fs::create_dir(&ns).unwrap();
    let config = fx.dir.path().join("ns.toml");
    fs::write(
        &config,
        format!(
            "[seal]\npaths = [{app:?}, {file:?}]\nexclude = [{cache:?}]\nmanifest = {manifest:?}\n",
            app = ns.join("app"),
            file = ns.join("kiln"),
            cache = ns.join("app/var/cache"),
            manifest = ns.join("seal"),
        ),
    )
    .unwrap();
    let script = format!(
        r#"{TRY}
mount -t tmpfs -o nosuid,nodev,noexec tmpfs "$DIR/ns" || exit 3
cp -a "$APP" "$DIR/ns/app" && cp "$KILN" "$DIR/ns/kiln" || exit 4
try outcome "$KILN" remount-readonly --config "$CONFIG"
echo "app options: $(findmnt -n -o OPTIONS --mountpoint "$DIR/ns/app")"
echo "cache options: $(findmnt -n -o OPTIONS --mountpoint "$DIR/ns/app/var/cache")"
try file sh -c 'echo x >> "$1"' - "$DIR/ns/kiln"
"#
    );
    let out = in_private_namespace(&fx, &config, &script);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ns = ns.display();
    assert_eq!(
        line(&stdout, "outcome"),
        format!("outcome: read-only: {ns}/app, {ns}/kiln (writable: {ns}/app/var/cache)")
    );
    let options = |label: &str| -> Vec<String> {
        let l = line(&stdout, label);
        l[label.len() + 2..].split(',').map(String::from).collect()
    };
    let app = options("app options");
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(app.contains(&flag.to_string()), "{flag} missing: {app:?}");
    }
    let cache = options("cache options");
    for flag in ["rw", "nosuid", "nodev", "noexec"] {
        assert!(cache.contains(&flag.to_string()), "{flag} missing: {cache:?}");
    }
    assert!(
        line(&stdout, "file").contains("Read-only file system"),
        "{stdout}"
    );
    assert_eq!(host_mounts_under(fx.dir.path()), Vec::<String>::new());
}

#[test]
fn without_the_privilege_it_says_so_and_changes_nothing() {
    let fx = Fixture::new();
    // Readable by nobody.
    for dir in [
        fx.dir.path(),
        &fx.dir.path().join("etc"),
        &fx.dir.path().join("etc/kiln"),
    ] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = format!(
        r#"{TRY}
try outcome setpriv --reuid=65534 --regid=65534 --clear-groups "$KILN" remount-readonly --config "$CONFIG"
echo "mounts: $(mounts)"
"#
    );
    let out = in_private_namespace(&fx, &fx.config_path, &script);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        line(&stdout, "outcome"),
        "outcome: not remounted: no privilege (EPERM)"
    );
    assert_eq!(line(&stdout, "mounts"), "mounts: 0");
}

#[test]
fn readonly_false_mounts_nothing() {
    let fx = Fixture::with(&["readonly = false"]);
    let outcome = kiln::seal::remount_readonly(&fx.config);
    assert_eq!(outcome, kiln::seal::ReadonlyOutcome::Disabled);
    assert_eq!(outcome.to_string(), "not remounted: [seal] readonly = false");
    assert_eq!(host_mounts_under(fx.dir.path()), Vec::<String>::new());
}
