//! `STATE_DIR/env` reads back exactly, through systemd's own `EnvironmentFile=` parser and
//! through `sh`/`bash` `set -a; . FILE`, for values with spaces, quotes, `$`, backslashes, `#`
//! and newlines. Also its mode, its atomic replacement, and `instance.json`.
//!
//! systemd's parser: no systemd runs here, so the test calls the very function the service
//! manager uses for `EnvironmentFile=` (`load_env_file`, exported by the private library
//! `libsystemd-shared-*.so` that ships with the `systemd` package) through `dlopen`.

use kiln::config::Config;
use kiln::metadata::{InstanceFacts, Metadata};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char, c_int};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const TRICKY: &[(&str, &str)] = &[
    ("SPACES", "  leading, inner  and trailing  "),
    ("SINGLE_QUOTE", "it's 'quoted'"),
    ("DOUBLE_QUOTE", "say \"hi\""),
    ("DOLLAR", "$HOME ${PATH} $(id) $$"),
    ("BACKTICK", "`id` `"),
    ("BACKSLASH", "C:\\dir\\ \\n \\\\ \\\" \\$"),
    ("TRAILING_BACKSLASH", "end\\"),
    ("HASH", "#not a comment # still not"),
    ("NEWLINES", "line 1\nline 2\n\nline 4\n"),
    ("LEADING_NEWLINE", "\nx"),
    ("CRLF", "a\r\nb\r"),
    ("TAB", "\tx\t"),
    ("EMPTY", ""),
    ("EQUALS", "a=b=c="),
    ("SEMICOLON", ";x; y"),
    ("UNICODE", "héllo wörld ✓"),
    ("EVERYTHING", "'\"$`\\#\n ;= \\\n'"),
];

fn frozen() -> (kiln::env::FrozenEnv, Metadata) {
    let object: serde_json::Map<String, serde_json::Value> = TRICKY
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    let metadata = Metadata {
        endpoint: "http://169.254.169.254".into(),
        facts: InstanceFacts {
            provider: "ec2".into(),
            instance_id: Some("i-0abc".into()),
            region: Some("eu-west-1".into()),
            zone: Some("eu-west-1b".into()),
            local_ipv4: Some("10.0.0.5".into()),
            hostname: Some("web 1 \"odd\" $host".into()),
        },
        user_data: Some(serde_json::Value::Object(object).to_string().into_bytes()),
        tags: BTreeMap::new(),
        found: Default::default(),
    };
    let config = Config::parse("[metadata]\nprovider = \"ec2\"\n").unwrap();
    let env = kiln::env::freeze(&config.env, &config.metadata, &metadata).expect("freeze");
    for (name, value) in TRICKY {
        assert_eq!(env.get(name), Some(*value));
    }
    (env, metadata)
}

fn written() -> (tempfile::TempDir, BTreeMap<String, String>) {
    let (env, metadata) = frozen();
    let dir = tempfile::tempdir().unwrap();
    kiln::env::write_files(dir.path(), &env, &metadata).expect("write");
    let all = env.vars().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    (dir, all)
}

fn libsystemd_shared() -> PathBuf {
    for dir in [
        "/usr/lib/x86_64-linux-gnu/systemd",
        "/usr/lib/systemd",
        "/lib/systemd",
    ] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("libsystemd-shared-") && name.ends_with(".so") {
                    return entry.path();
                }
            }
        }
    }
    panic!("libsystemd-shared-*.so not found: this test needs the Debian package systemd");
}

/// What systemd would put in a unit's environment from `EnvironmentFile=path`.
fn systemd_reads(path: &Path) -> BTreeMap<String, String> {
    type LoadEnvFile = unsafe extern "C" fn(*mut libc::FILE, *const c_char, *mut *mut *mut c_char) -> c_int;
    let lib = CString::new(libsystemd_shared().as_os_str().as_encoded_bytes()).unwrap();
    let path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: the library is systemd's own; `load_env_file(FILE *f, const char *fname,
    // char ***ret)` (systemd 252, src/basic/env-file.h) reads `fname` when `f` is NULL and
    // returns a NULL-terminated array of "KEY=VALUE" strings. The memory is left to the
    // test process's exit.
    unsafe {
        let handle = libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!handle.is_null(), "dlopen {lib:?}");
        let symbol = libc::dlsym(handle, c"load_env_file".as_ptr());
        assert!(!symbol.is_null(), "load_env_file not exported");
        let load: LoadEnvFile = std::mem::transmute(symbol);
        let mut list: *mut *mut c_char = std::ptr::null_mut();
        let r = load(std::ptr::null_mut(), path.as_ptr(), &mut list);
        assert_eq!(r, 0, "load_env_file failed: {r}");
        let mut out = BTreeMap::new();
        let mut p = list;
        while !p.is_null() && !(*p).is_null() {
            let entry = CStr::from_ptr(*p).to_str().expect("UTF-8").to_string();
            let (k, v) = entry.split_once('=').expect("KEY=VALUE");
            out.insert(k.to_string(), v.to_string());
            p = p.add(1);
        }
        out
    }
}

/// The environment a shell exports after `set -a; . FILE`, from an empty environment.
fn shell_reads(shell: &str, path: &Path) -> BTreeMap<String, String> {
    let output = Command::new(shell)
        .args(["-c", "set -a; . \"$1\"; exec env -0", "sh"])
        .arg(path)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
        .stdout
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let e = String::from_utf8(e.to_vec()).unwrap();
            let (k, v) = e.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn systemd_environment_file_reads_back_exactly() {
    let (dir, all) = written();
    let read = systemd_reads(&dir.path().join("env"));
    for (name, value) in TRICKY {
        assert_eq!(read.get(*name).map(String::as_str), Some(*value), "{name}");
    }
    // Not only the tricky ones: the whole frozen environment, nothing more, nothing less.
    assert_eq!(read, all);
}

#[test]
fn sh_and_bash_read_back_exactly() {
    let (dir, all) = written();
    // Variables the shell itself sets or changes.
    let shell_owned = ["PWD", "OLDPWD", "SHLVL", "_"];
    for shell in ["sh", "bash"] {
        let read = shell_reads(shell, &dir.path().join("env"));
        for (name, value) in TRICKY {
            assert_eq!(
                read.get(*name).map(String::as_str),
                Some(*value),
                "{shell}: {name}"
            );
        }
        for (name, value) in &all {
            if !shell_owned.contains(&name.as_str()) {
                assert_eq!(read.get(name), Some(value), "{shell}: {name}");
            }
        }
    }
}

#[test]
fn the_env_file_is_0600_sorted_and_replaced_atomically() {
    let (dir, _) = written();
    let path = dir.path().join("env");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("=\""))
        .filter_map(|l| l.split_once('=').map(|(n, _)| n))
        .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // A second boot replaces it (and a stale temp file of a crashed boot is no obstacle).
    std::fs::write(dir.path().join(".env.kiln-tmp"), "junk").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (env, metadata) = frozen();
    kiln::env::write_files(dir.path(), &env, &metadata).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, vec!["env", "instance.json"]);
}

#[test]
fn instance_json_holds_the_facts_and_no_secret() {
    let (dir, _) = written();
    let text = std::fs::read_to_string(dir.path().join("instance.json")).unwrap();
    let facts: InstanceFacts = serde_json::from_str(&text).unwrap();
    assert_eq!(facts.instance_id.as_deref(), Some("i-0abc"));
    assert_eq!(facts.region.as_deref(), Some("eu-west-1"));
    for (_, value) in TRICKY.iter().filter(|(_, v)| v.len() > 3) {
        assert!(!text.contains(value));
    }
}
