//! The examples (`examples/php-app/`, `examples/symfony/`), rendered into a fresh directory.
//!
//! There is one renderer: tests call [`Example::render`] (or [`Example::render_app`]), `run.sh`
//! calls `kiln-testkit example render [--app NAME] DIR`. Both lay out:
//!
//! ```text
//! DIR/kiln.toml          kiln's config
//! DIR/app/               the PHP app, readable by www-data
//! DIR/seed/              meta-data and user-data for the nocloud datasource
//! DIR/run/               everything written at runtime: php-fpm.conf, nginx.conf, sockets, pid
//!                        files, nginx's temp dirs (run/nginx/), kiln's state dir (run/kiln/)
//! ```
//!
//! Templates hold `{{run_dir}}`, `{{app_dir}}`, `{{seed_dir}}`, `{{http_addr}}` and `{{health_addr}}`; a line that
//! starts with `{{root_only}}` is kept only when rendering as root (php-fpm's pool `user`/`group`).
//! An app may have a bake step, run once after the copy as an image's last build stage runs it
//! (the Symfony app's `cache:warmup`): what it writes is part of the release.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::notify::NotifySocket;
use crate::peers::{Kiln, Process};

/// How long a test waits for the example to be ready: seconds normally, more on a loaded machine.
pub const BOOT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Which example to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum App {
    /// `examples/php-app`: a page and a plain PHP worker; most tests use it.
    #[default]
    PhpApp,
    /// `examples/symfony`: a Symfony 5.4 app from Debian's packages, Redis, Messenger workers.
    Symfony,
}

impl App {
    /// Every app, as `--app` names it.
    pub const ALL: [App; 2] = [App::PhpApp, App::Symfony];

    /// Its directory under `examples/`, and its name for `--app`.
    pub fn name(self) -> &'static str {
        match self {
            App::PhpApp => "php-app",
            App::Symfony => "symfony",
        }
    }

    /// The app named `name`, if any.
    pub fn parse(name: &str) -> Option<App> {
        App::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The example's sources in this repository.
    pub fn source_dir(self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(self.name())
    }

    /// Templates (path in the example, path in the render) filled after the trees are copied.
    fn templates(self) -> &'static [(&'static str, &'static str)] {
        const SERVERS: [(&str, &str); 3] = [
            ("kiln.toml", "kiln.toml"),
            ("nginx.conf", "run/nginx.conf"),
            ("php-fpm.conf", "run/php-fpm.conf"),
        ];
        match self {
            App::PhpApp => &SERVERS,
            // The instance's environment names paths of this render (the database, Redis's socket).
            App::Symfony => &[
                SERVERS[0],
                SERVERS[1],
                SERVERS[2],
                ("seed/user-data", "seed/user-data"),
            ],
        }
    }

    /// Files copied as they are (path in the example, path in the render): kiln's own templates,
    /// whose `{{ ... }}` are minijinja's, not the renderer's.
    fn verbatim(self) -> &'static [(&'static str, &'static str)] {
        match self {
            App::PhpApp => &[],
            App::Symfony => &[("nginx-instance.conf.j2", "run/nginx-instance.conf.j2")],
        }
    }

    /// Symlinks made in the release (path in the render, target under the render's `run/`):
    /// the Symfony app reads `.env.local.php` from where kiln renders it (`[render] dir`).
    fn links(self) -> &'static [(&'static str, &'static str)] {
        match self {
            App::PhpApp => &[],
            App::Symfony => &[("app/.env.local.php", "render/env.local.php")],
        }
    }

    /// Directories under `run/` made at render time, besides `run/` itself.
    fn run_dirs(self) -> &'static [&'static str] {
        match self {
            App::PhpApp => &["nginx"],
            App::Symfony => &["nginx", "data"],
        }
    }

    /// What the image's last build stage runs in the copied app, if anything.
    fn bake(self, app_dir: &Path) -> Result<(), String> {
        match self {
            App::PhpApp => Ok(()),
            App::Symfony => bake_symfony(app_dir),
        }
    }
}

/// What to render the example for.
#[derive(Debug, Clone)]
pub struct RenderSpec {
    /// Which example.
    pub app: App,
    /// Where nginx serves the app.
    pub http_addr: SocketAddr,
    /// kiln's /livez and /readyz.
    pub health_addr: SocketAddr,
    /// Keep the `{{root_only}}` lines (php-fpm refuses a root pool without `user`).
    pub as_root: bool,
}

/// Where a render put things.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub dir: PathBuf,
    pub run_dir: PathBuf,
    pub app_dir: PathBuf,
    pub seed_dir: PathBuf,
    pub config_path: PathBuf,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Renders the example into `dir` (created if missing). A directory that holds something else
/// than an earlier render is refused; an earlier render's `run/`, `app/` and `seed/` are emptied.
pub fn render_into(dir: &Path, spec: &RenderSpec) -> Result<Rendered, String> {
    let src = spec.app.source_dir();
    let rendered = prepare_dir(dir, spec.app)?;
    let vars = [
        ("{{run_dir}}", path_str(&rendered.run_dir)?),
        ("{{app_dir}}", path_str(&rendered.app_dir)?),
        ("{{seed_dir}}", path_str(&rendered.seed_dir)?),
        ("{{http_addr}}", spec.http_addr.to_string()),
        ("{{health_addr}}", spec.health_addr.to_string()),
    ];
    copy_tree(&src.join("app"), &rendered.app_dir)?;
    copy_tree(&src.join("seed"), &rendered.seed_dir)?;
    for (template, target) in spec.app.templates() {
        let path = src.join(template);
        let text = std::fs::read_to_string(&path).map_err(|e| io_error("read", &path, e))?;
        let text = render_text(&text, &vars, spec.as_root).map_err(|e| format!("{}: {e}", path.display()))?;
        write_file(&rendered.dir.join(target), &text)?;
    }
    for (file, target) in spec.app.verbatim() {
        let path = src.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| io_error("read", &path, e))?;
        write_file(&rendered.dir.join(target), &text)?;
    }
    // Dangling until kiln renders at boot, as in a baked image: the bake reads `.env` instead.
    for (link, target) in spec.app.links() {
        let (link, target) = (rendered.dir.join(link), rendered.run_dir.join(target));
        std::os::unix::fs::symlink(&target, &link).map_err(|e| io_error("link", &link, e))?;
    }
    spec.app.bake(&rendered.app_dir)?;
    Ok(rendered)
}

/// Checks `dir` is empty or an earlier render, empties what a render writes, and makes `run/`.
fn prepare_dir(dir: &Path, app: App) -> Result<Rendered, String> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| io_error("read", dir, e))?
            .next()
            .is_none();
        if !empty && !dir.join("kiln.toml").exists() {
            return Err(format!(
                "{} is neither empty nor an earlier render of the example (no kiln.toml): not touching it",
                dir.display()
            ));
        }
    }
    let dir = std::path::absolute(dir).map_err(|e| io_error("resolve", dir, e))?;
    let rendered = Rendered {
        run_dir: dir.join("run"),
        app_dir: dir.join("app"),
        seed_dir: dir.join("seed"),
        config_path: dir.join("kiln.toml"),
        dir: dir.clone(),
    };
    for old in [&rendered.run_dir, &rendered.app_dir, &rendered.seed_dir] {
        if old.exists() {
            std::fs::remove_dir_all(old).map_err(|e| io_error("remove", old, e))?;
        }
    }
    // 0755 all the way: nginx's worker runs as nobody and php-fpm's pool as www-data when root.
    let run_dirs = app.run_dirs().iter().map(|d| rendered.run_dir.join(d));
    for d in [dir.clone(), rendered.run_dir.clone()]
        .into_iter()
        .chain(run_dirs)
    {
        std::fs::create_dir_all(&d).map_err(|e| io_error("create", &d, e))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error("chmod", &d, e))?;
    }
    Ok(rendered)
}

/// `bin/console cache:warmup` for prod, as the image's last build stage runs it: without the
/// instance's environment (there is none at bake time), so the compiled container reads every
/// variable at run time. The cache lands in `app/var/cache/prod`, part of the sealed release.
fn bake_symfony(app_dir: &Path) -> Result<(), String> {
    let out = Command::new("php")
        .args(["bin/console", "cache:warmup", "--no-interaction"])
        .current_dir(app_dir)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("APP_ENV", "prod")
        .env("APP_DEBUG", "0")
        .output()
        .map_err(|e| {
            format!(
                "bake {}: run php bin/console cache:warmup: {e}",
                app_dir.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "bake {}: php bin/console cache:warmup failed ({}):\n{}{}",
            app_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Whatever the umask: the services (www-data, nobody) read the release, never write it.
    make_readable(&app_dir.join("var"))
}

/// Directories 0755, files 0644, all the way down.
fn make_readable(path: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| io_error("stat", path, e))?;
    let mode = if meta.is_dir() { 0o755 } else { 0o644 };
    if !meta.file_type().is_symlink() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_error("chmod", path, e))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| io_error("read", path, e))? {
            make_readable(&entry.map_err(|e| io_error("read", path, e))?.path())?;
        }
    }
    Ok(())
}

/// Fills placeholders and keeps or drops `{{root_only}}` lines. Unknown placeholders are errors.
pub fn render_text(text: &str, vars: &[(&str, String)], as_root: bool) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = match line.strip_prefix("{{root_only}}") {
            Some(rest) if as_root => rest,
            Some(_) => continue,
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    for (name, value) in vars {
        out = out.replace(name, value);
    }
    if let Some(i) = out.find("{{") {
        let end = out[i..].find("}}").map_or(out.len(), |j| i + j + 2);
        return Err(format!("unknown placeholder {}", &out[i..end]));
    }
    Ok(out)
}

fn path_str(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// Copies a directory of plain files; directories 0755, files 0644 (readable by the services).
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("create {}: {e}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("read {}: {e}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry
            .file_type()
            .map_err(|e| format!("stat {}: {e}", src.display()))?
            .is_dir()
        {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| format!("copy {}: {e}", src.display()))?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| format!("chmod {}: {e}", dst.display()))?;
        }
    }
    Ok(())
}

/// The example rendered into a fresh temporary directory, on fresh loopback addresses.
pub struct Example {
    /// Removed when the example is dropped.
    pub dir: tempfile::TempDir,
    pub run_dir: PathBuf,
    pub app_dir: PathBuf,
    pub seed_dir: PathBuf,
    pub config_path: PathBuf,
    /// nginx.
    pub http_addr: SocketAddr,
    /// kiln's /livez and /readyz.
    pub health_addr: SocketAddr,
}

impl Example {
    /// Renders the example (as root when the test runs as root) into a new temp dir.
    pub fn render() -> Example {
        Self::render_at(crate::net::free_addr(), crate::net::free_addr())
    }

    /// Renders the example with nginx on `http_addr` and kiln's health on `health_addr` (e.g.
    /// an address of a host in a network namespace of its own).
    pub fn render_at(http_addr: SocketAddr, health_addr: SocketAddr) -> Example {
        Self::render_app_at(App::PhpApp, http_addr, health_addr)
    }

    /// Renders `app` (as root when the test runs as root) into a new temp dir.
    pub fn render_app(app: App) -> Example {
        Self::render_app_at(app, crate::net::free_addr(), crate::net::free_addr())
    }

    /// Renders `app` with nginx on `http_addr` and kiln's health on `health_addr`.
    pub fn render_app_at(app: App, http_addr: SocketAddr, health_addr: SocketAddr) -> Example {
        let dir = tempfile::Builder::new()
            .prefix("kiln-example-")
            .tempdir()
            .expect("create a temp dir for the example");
        let spec = RenderSpec {
            app,
            http_addr,
            health_addr,
            as_root: nix::unistd::geteuid().is_root(),
        };
        let rendered = render_into(dir.path(), &spec)
            .unwrap_or_else(|e| panic!("render the {} example: {e}", app.name()));
        Example {
            dir,
            run_dir: rendered.run_dir,
            app_dir: rendered.app_dir,
            seed_dir: rendered.seed_dir,
            config_path: rendered.config_path,
            http_addr: spec.http_addr,
            health_addr: spec.health_addr,
        }
    }

    /// The current kiln.toml text.
    pub fn config(&self) -> String {
        std::fs::read_to_string(&self.config_path).expect("read the example's kiln.toml")
    }

    /// Rewrites kiln.toml as text (keeps comments).
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        std::fs::write(&self.config_path, f(self.config())).expect("write the example's kiln.toml");
    }

    /// kiln.toml parsed as a TOML table.
    pub fn config_table(&self) -> toml::Table {
        self.config()
            .parse()
            .unwrap_or_else(|e| panic!("{} is not TOML: {e}", self.config_path.display()))
    }

    /// Rewrites kiln.toml as a TOML table (comments are lost).
    pub fn edit_toml(&self, f: impl FnOnce(&mut toml::Table)) {
        let mut table = self.config_table();
        f(&mut table);
        let text = toml::to_string(&table).expect("serialize kiln.toml");
        std::fs::write(&self.config_path, text).expect("write the example's kiln.toml");
    }

    /// Rewrites one `[[service]]` table, e.g. to change its command or probes. Panics when the
    /// service does not exist.
    pub fn edit_service(&self, name: &str, f: impl FnOnce(&mut toml::Table)) {
        let path = self.config_path.clone();
        self.edit_toml(|table| f(service_table_mut(table, name, &path)));
    }

    /// Sets one variable in a service's `env`.
    pub fn set_service_env(&self, name: &str, key: &str, value: &str) {
        self.edit_service(name, |service| {
            let env = service
                .entry("env")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            env.as_table_mut()
                .expect("env is a table")
                .insert(key.into(), toml::Value::String(value.into()));
        });
    }

    /// Sets `key` to `value` in the seed's user-data, in place of the line it has. Panics when
    /// there is no such line: the example's user-data is what a test means to change.
    pub fn set_user_data(&self, key: &str, value: &str) {
        let path = self.seed_dir.join("user-data");
        let text = std::fs::read_to_string(&path).expect("read the example's user-data");
        let prefix = format!("{key}=");
        assert!(
            text.lines().any(|l| l.starts_with(&prefix)),
            "no {key} line in {}",
            path.display()
        );
        let text: String = text
            .lines()
            .map(|l| match l.starts_with(&prefix) {
                true => format!("{prefix}{value}\n"),
                false => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&path, text).expect("write the example's user-data");
    }

    /// Rewrites one probe table (`kind` is "startup", "ready" or "live") of a service, creating
    /// it when missing: e.g. a shorter `period` to make a fault test quick.
    pub fn edit_probe(&self, name: &str, kind: &str, f: impl FnOnce(&mut toml::Table)) {
        self.edit_service(name, |service| {
            let probe = service
                .entry(kind)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            f(probe
                .as_table_mut()
                .unwrap_or_else(|| panic!("[service.{kind}] is not a table")));
        });
    }

    /// A service's `command` as written in kiln.toml.
    pub fn service_command(&self, name: &str) -> Vec<String> {
        let mut table = self.config_table();
        let service = service_table_mut(&mut table, name, &self.config_path);
        service
            .get("command")
            .and_then(toml::Value::as_array)
            .map(|argv| {
                argv.iter()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| panic!("service {name:?} has no command"))
    }

    /// A service's `env` as written in kiln.toml.
    pub fn service_env(&self, name: &str) -> BTreeMap<String, String> {
        let mut table = self.config_table();
        let service = service_table_mut(&mut table, name, &self.config_path);
        service
            .get("env")
            .and_then(toml::Value::as_table)
            .map(|env| {
                env.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Starts one service of kiln.toml directly, without kiln: its command, `env` (plus `envs`)
    /// and `working_dir`, as a [`Process`] (one copy, whatever `replicas` says).
    pub fn spawn_service(&self, name: &str, envs: &[(&str, &str)]) -> Process {
        let argv = self.service_command(name);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.envs(self.service_env(name));
        cmd.envs(envs.iter().copied());
        let mut table = self.config_table();
        if let Some(dir) = service_table_mut(&mut table, name, &self.config_path)
            .get("working_dir")
            .and_then(toml::Value::as_str)
        {
            cmd.current_dir(dir);
        }
        Process::spawn(cmd)
    }

    /// `kiln boot --config <this example>`.
    pub fn boot(&self, kiln_bin: &str) -> Kiln {
        Kiln::boot(kiln_bin, &self.config_path)
    }

    /// `kiln boot` with a notify socket standing in for systemd's, under an optional wrapper
    /// (`["unshare", "--pid", "--fork", "--mount-proc"]`) and with extra environment.
    pub fn boot_notified(
        &self,
        kiln_bin: &str,
        wrapper: &[&str],
        envs: &[(&str, &str)],
    ) -> (Kiln, NotifySocket) {
        let notify = NotifySocket::bind();
        let (key, value) = notify.env();
        let config = self.config_path.to_str().expect("config path is UTF-8");
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.extend([kiln_bin, "boot", "--config", config]);
        let mut all_envs = vec![(key, value.as_str())];
        all_envs.extend_from_slice(envs);
        (Kiln::boot_with(argv[0], &argv[1..], &all_envs), notify)
    }

    /// `kiln boot`, waiting for its `READY=1`.
    pub fn boot_ready(&self, kiln_bin: &str) -> (Kiln, NotifySocket) {
        let (kiln, notify) = self.boot_notified(kiln_bin, &[], &[]);
        notify.wait_for("READY=1", BOOT_DEADLINE, |l| l == "READY=1");
        (kiln, notify)
    }

    /// `kiln status ARGS` against this example's socket: exit code and stdout.
    pub fn status_cli(&self, kiln_bin: &str, args: &[&str]) -> (i32, String) {
        let out = Command::new(kiln_bin)
            .arg("status")
            .args(["--socket", self.socket().to_str().expect("socket path is UTF-8")])
            .args(args)
            .output()
            .expect("run kiln status");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// `kiln check ARGS --config` this example's config: what it said.
    pub fn check(&self, kiln_bin: &str, args: &[&str]) -> Checked {
        let out = Command::new(kiln_bin)
            .arg("check")
            .args(args)
            .args([
                "--config",
                self.config_path.to_str().expect("config path is UTF-8"),
            ])
            .output()
            .expect("run kiln check");
        Checked {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `kiln check` refuses this example's config (exit 78), naming the file and saying each of
    /// `messages` (and, for more than one, counting them). Returns what it said on stderr.
    pub fn check_refuses(&self, kiln_bin: &str, messages: &[&str]) -> String {
        let Checked { code, stderr, .. } = self.check(kiln_bin, &[]);
        let config = self.config_path.display().to_string();
        assert_eq!(code, Some(78), "kiln check: {stderr}");
        for message in messages {
            assert!(
                stderr.contains(message),
                "kiln check said:\n{stderr}\nexpected: {message}"
            );
        }
        assert!(stderr.contains(&config), "the error names the file: {stderr}");
        if messages.len() > 1 {
            let count = format!("{config}: {} errors:", messages.len());
            assert!(
                stderr.contains(&count),
                "kiln check said:\n{stderr}\nexpected: {count}"
            );
        }
        stderr
    }

    /// The app's page through nginx.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.http_addr)
    }

    /// nginx's own health location (answered without PHP).
    pub fn healthz_url(&self) -> String {
        format!("http://{}/healthz", self.http_addr)
    }

    pub fn readyz_url(&self) -> String {
        format!("http://{}/readyz", self.health_addr)
    }

    pub fn livez_url(&self) -> String {
        format!("http://{}/livez", self.health_addr)
    }

    /// kiln's control socket, as kiln.toml names it.
    pub fn socket(&self) -> PathBuf {
        self.control_path("socket")
    }

    /// kiln's state dir, as kiln.toml names it.
    pub fn state_dir(&self) -> PathBuf {
        self.control_path("state_dir")
    }

    /// php-fpm's FastCGI socket.
    pub fn php_fpm_socket(&self) -> PathBuf {
        self.run_dir.join("php-fpm.sock")
    }

    fn control_path(&self, key: &str) -> PathBuf {
        self.config_table()
            .get("control")
            .and_then(|c| c.get(key))
            .and_then(toml::Value::as_str)
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("kiln.toml has no [control] {key}"))
    }
}

/// kiln's cgroups for this example go with it: a kiln killed with SIGKILL leaves them (see
/// [`crate::cgroups`]). Both the state directory the config names now and the rendered one, as a
/// test may have changed or broken the config.
/// What `kiln check` said ([`Example::check`]).
pub struct Checked {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Drop for Example {
    fn drop(&mut self) {
        let named = std::fs::read_to_string(&self.config_path)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|t| Some(PathBuf::from(t.get("control")?.get("state_dir")?.as_str()?)));
        let rendered = self.run_dir.join("kiln");
        for state_dir in named.into_iter().chain([rendered]) {
            if let Some(dir) = crate::cgroups::kiln_dir(&state_dir) {
                crate::cgroups::remove_tree(&dir);
            }
        }
        // A kiln killed before its stop leaves its render tmpfs mounted: the temp dir could
        // not be removed under it.
        unmount_all(&self.run_dir.join("render"));
    }
}

/// Detaches every mount at `dir` (kiln's render tmpfs, possibly stacked), if any.
pub fn unmount_all(dir: &Path) {
    while mounted_at(dir) {
        if nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH).is_err() {
            return;
        }
    }
}

/// Something is mounted at exactly `dir`.
pub fn mounted_at(dir: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let wanted = real.to_string_lossy().replace(' ', "\\040");
    table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
}

fn service_table_mut<'a>(table: &'a mut toml::Table, name: &str, path: &Path) -> &'a mut toml::Table {
    table
        .get_mut("service")
        .and_then(toml::Value::as_array_mut)
        .and_then(|services| {
            services
                .iter_mut()
                .filter_map(toml::Value::as_table_mut)
                .find(|s| s.get("name").and_then(toml::Value::as_str) == Some(name))
        })
        .unwrap_or_else(|| panic!("{}: no [[service]] named {name:?}", path.display()))
}

const USAGE: &str =
    "usage: kiln-testkit example render [--app php-app|symfony] DIR [--http ADDR] [--health ADDR]
  Renders examples/APP (default php-app) into DIR (default addresses 127.0.0.1:8080 and 127.0.0.1:9100).";

/// Entry point of `kiln-testkit example ...`.
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-testkit example: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let mut args = args.iter();
    if args.next().map(String::as_str) != Some("render") {
        return Err(USAGE.into());
    }
    let mut dir = None;
    let mut spec = RenderSpec {
        app: App::PhpApp,
        http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        health_addr: SocketAddr::from(([127, 0, 0, 1], 9100)),
        as_root: nix::unistd::geteuid().is_root(),
    };
    while let Some(arg) = args.next() {
        let mut value =
            |flag: &str, what: &str| args.next().ok_or_else(|| format!("{flag} needs {what}\n{USAGE}"));
        match arg.as_str() {
            "--http" => spec.http_addr = parse_addr("--http", value("--http", "an address")?)?,
            "--health" => spec.health_addr = parse_addr("--health", value("--health", "an address")?)?,
            "--app" => {
                let name = value("--app", "an example's name")?;
                spec.app =
                    App::parse(name).ok_or_else(|| format!("--app {name:?}: no such example\n{USAGE}"))?;
            }
            _ if arg.starts_with('-') || dir.is_some() => return Err(format!("unexpected {arg:?}\n{USAGE}")),
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let dir = dir.ok_or_else(|| USAGE.to_string())?;
    let rendered = render_into(&dir, &spec)?;
    println!(
        "rendered the {} example into {}",
        spec.app.name(),
        rendered.dir.display()
    );
    Ok(())
}

fn parse_addr(flag: &str, value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|e| format!("{flag} {value:?}: not an address like 127.0.0.1:8080 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_only_lines_follow_the_user() {
        let text = "a = {{run_dir}}\n{{root_only}}user = www-data\nb\n";
        let vars = [("{{run_dir}}", "/r".to_string())];
        assert_eq!(
            render_text(text, &vars, true).unwrap(),
            "a = /r\nuser = www-data\nb\n"
        );
        assert_eq!(render_text(text, &vars, false).unwrap(), "a = /r\nb\n");
    }

    #[test]
    fn every_example_is_named_as_its_directory() {
        for app in App::ALL {
            assert_eq!(App::parse(app.name()), Some(app));
            assert!(app.source_dir().join("kiln.toml").is_file(), "{app:?}");
        }
        assert_eq!(App::parse("php"), None);
    }

    #[test]
    fn an_unknown_app_is_refused_naming_it() {
        let args: Vec<String> = ["render", "--app", "laravel", "/nonexistent"]
            .map(String::from)
            .into();
        let err = run(&args).unwrap_err();
        assert!(err.starts_with("--app \"laravel\": no such example\n"), "{err}");
        assert!(!Path::new("/nonexistent").exists());
    }

    #[test]
    fn an_unknown_placeholder_is_an_error() {
        let err = render_text("x = {{nope}}\n", &[], true).unwrap_err();
        assert_eq!(err, "unknown placeholder {{nope}}");
    }
}
