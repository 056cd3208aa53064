//! The Symfony example (`examples/symfony/`) in tests: rendered and booted as the php-app example
//! is ([`Example`], which it derefs to), plus what only this app has: its console run with the
//! environment kiln froze, its queue, its migrations' marker and its baked prod cache.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::example::{App, Example};
use crate::wait::{http_get_within, http_request_within};

/// A request's deadline: a fresh php-fpm answers in tens of milliseconds, a loaded machine slower.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The Symfony example rendered into a fresh temporary directory, on fresh loopback addresses.
pub struct SymfonyExample {
    example: Example,
}

impl Deref for SymfonyExample {
    type Target = Example;

    fn deref(&self) -> &Example {
        &self.example
    }
}

/// What a console command did.
#[derive(Debug)]
pub struct Console {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl SymfonyExample {
    /// Renders it (its prod cache warmed, as an image's last build stage does) into a temp dir.
    pub fn render() -> SymfonyExample {
        SymfonyExample {
            example: Example::render_app(App::Symfony),
        }
    }

    /// [`SymfonyExample::render`] with `APP_SECRET` = `secret` in its user-data: a value the
    /// tests then look for where it must not be.
    pub fn render_with_secret(secret: &str) -> SymfonyExample {
        let ex = SymfonyExample::render();
        ex.set_user_data("APP_SECRET", secret);
        ex
    }

    /// `kiln env --write-to`: the environment a boot would freeze, written where
    /// [`SymfonyExample::console`] reads it, without starting anything.
    pub fn freeze_env(&self, kiln_bin: &str) -> PathBuf {
        let dir = self.dir.path().join("frozen");
        std::fs::create_dir_all(&dir).expect("create the frozen env's dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod the frozen env's dir");
        let out = Command::new(kiln_bin)
            .args([
                "env",
                "--config",
                path_str(&self.config_path),
                "--write-to",
                path_str(&dir),
            ])
            .output()
            .expect("run kiln env");
        assert!(
            out.status.success(),
            "kiln env: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("env")
    }

    /// `php bin/console ARGS` in the app, with exactly the environment of `env_file` (kiln's
    /// `STATE_DIR/env` or [`SymfonyExample::freeze_env`]'s), as kiln hands it to a service.
    pub fn console(&self, env_file: &Path, args: &[&str]) -> Console {
        let out = self
            .console_command(env_file, args)
            .output()
            .expect("run bin/console");
        Console {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The command [`SymfonyExample::console`] runs, to start it in the background.
    pub fn console_command(&self, env_file: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            r#"set -a; . "$0"; exec php bin/console "$@""#,
            path_str(env_file),
        ])
        .args(args)
        .current_dir(&self.app_dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin");
        cmd
    }

    /// The lines `app:migrate` appended to APP_MIGRATIONS_LOG: one per run that applied something.
    pub fn migrations_applied(&self) -> Vec<String> {
        match std::fs::read_to_string(self.run_dir.join("data/migrations.log")) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read the migrations log: {e}"),
        }
    }

    /// `POST /tasks?seconds=S` with `text`: the id of the queued task.
    pub fn queue_task(&self, text: &str, seconds: f64) -> String {
        let url = format!("http://{}/tasks?seconds={seconds}", self.http_addr);
        let answer = http_request_within("POST", &url, &[], text.as_bytes(), REQUEST_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.status, 202, "POST {url}: {}", answer.body);
        answer
            .body
            .trim()
            .strip_prefix("queued task ")
            .unwrap_or_else(|| panic!("POST {url} answered {:?}", answer.body))
            .to_owned()
    }

    /// `GET /`: the page's status and body.
    pub fn page(&self) -> (u16, String) {
        http_get_within(&self.page_url(), REQUEST_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Puts a test's own PHP script at `public/NAME` before the boot, and routes `/NAME` to
    /// php-fpm in the rendered nginx.conf (the example sends everything else to index.php). What
    /// a test asks php-fpm that the app does not show: OPcache's state, the workers' environment.
    pub fn install_probe(&self, name: &str, php: &str) {
        let script = self.app_dir.join("public").join(name);
        std::fs::write(&script, php).unwrap_or_else(|e| panic!("write {}: {e}", script.display()));
        let conf = self.run_dir.join("nginx.conf");
        let text = std::fs::read_to_string(&conf).expect("read the rendered nginx.conf");
        let anchor = "        location = /index.php {";
        assert!(text.contains(anchor), "no {anchor:?} in {}", conf.display());
        let location = format!(
            "        location = /{name} {{\n            include /etc/nginx/fastcgi_params;\n            fastcgi_param SCRIPT_FILENAME $realpath_root/{name};\n            fastcgi_pass unix:{}/php-fpm.sock;\n        }}\n\n{anchor}",
            self.run_dir.display()
        );
        std::fs::write(&conf, text.replacen(anchor, &location, 1)).expect("write nginx.conf");
    }

    /// `GET /NAME` of a probe from [`SymfonyExample::install_probe`]: its body (200 asserted).
    pub fn probe(&self, name: &str) -> String {
        let url = format!("http://{}/{name}", self.http_addr);
        let (code, body) = http_get_within(&url, REQUEST_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code, 200, "GET {url}: {body}");
        body
    }

    /// The prod cache the bake wrote: `app/var/cache/prod`.
    pub fn prod_cache(&self) -> PathBuf {
        self.app_dir.join("var/cache/prod")
    }

    /// Every file and directory under `app/var` with its size and modification time: equal
    /// snapshots mean nothing wrote there.
    pub fn var_snapshot(&self) -> BTreeMap<PathBuf, (u64, SystemTime)> {
        let mut files = BTreeMap::new();
        snapshot(&self.app_dir.join("var"), &mut files);
        files
    }
}

fn snapshot(path: &Path, files: &mut BTreeMap<PathBuf, (u64, SystemTime)>) {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let modified = meta.modified().expect("mtime");
    files.insert(path.to_owned(), (meta.len(), modified));
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())) {
            snapshot(&entry.expect("read a directory entry").path(), files);
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("the example's paths are UTF-8")
}

/// The first 12 hex digits of SHA-256(`text`), by coreutils (not by the app's PHP): what the
/// example's page shows of its APP_SECRET.
pub fn sha256_prefix(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().expect("wait for sha256sum");
    String::from_utf8(out.stdout).unwrap()[..12].to_string()
}
