//! A small sealed tree shaped like a Symfony release, in a temporary folder removed on drop.

use kiln::config::{Config, SealConfig};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const KERNEL: &str = "<?php\nclass Kernel {}\n";
pub const CONSOLE: &str = "#!/usr/bin/env php\n<?php\n";

pub struct Fixture {
    /// Removed with everything in it when the fixture drops.
    pub dir: tempfile::TempDir,
    /// Where the sealed tree really is (the sealed path itself, unless it leads there through a
    /// symlink: see [`Fixture::release`]).
    pub app: PathBuf,
    /// As `[seal] paths` names it.
    pub sealed: PathBuf,
    pub manifest: PathBuf,
    pub config_path: PathBuf,
    pub config: SealConfig,
}

impl Fixture {
    /// The tree, sealed under `<tmp>/app`, with `var/cache` excluded and a 1 h rescan (so only
    /// the watch can see a change quickly).
    pub fn new() -> Fixture {
        Fixture::with(&[])
    }

    /// Like [`Fixture::new`], with extra `key = value` lines in `[seal]` (a `rescan` line
    /// replaces the 1 h default).
    pub fn with(extra: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let app = dir.path().join("app");
        build_tree(&app, false);
        let cache = app.join("var/cache");
        Fixture::sealing(dir, app.clone(), app, cache, extra)
    }

    /// The usual PHP deploy layout: the tree is `<tmp>/srv/releases/42`, `<tmp>/srv/current ->
    /// releases/42`, and `[seal] paths` names `<tmp>/srv/<sealed>` (`current`, or a folder below
    /// it such as `current/public`). `exclude` names the cache through `current`.
    pub fn release(sealed: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let srv = dir.path().join("srv");
        let app = srv.join("releases/42");
        build_tree(&app, false);
        symlink("releases/42", srv.join("current")).unwrap();
        let cache = srv.join("current/var/cache");
        Fixture::sealing(dir, app, srv.join(sealed), cache, &[])
    }

    fn sealing(
        dir: tempfile::TempDir,
        app: PathBuf,
        sealed: PathBuf,
        cache: PathBuf,
        extra: &[&str],
    ) -> Fixture {
        fs::create_dir_all(dir.path().join("etc/kiln")).unwrap();
        let manifest = dir.path().join("etc/kiln/seal");
        let config_path = dir.path().join("etc/kiln/kiln.toml");
        let rescan = match extra.iter().any(|l| l.starts_with("rescan")) {
            true => "",
            false => "rescan = \"1h\"\n",
        };
        let text = format!(
            "[seal]\npaths = [{sealed:?}]\nexclude = [{cache:?}]\nmanifest = {manifest:?}\n{rescan}{}\n",
            extra.join("\n"),
        );
        fs::write(&config_path, &text).unwrap();
        let config = Config::parse(&text).expect("fixture config").seal;
        Fixture {
            dir,
            app,
            sealed,
            manifest,
            config_path,
            config,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.app.join(rel)
    }

    pub fn seal(&self) -> kiln::seal::Manifest {
        kiln::seal::seal(&self.config).expect("seal")
    }

    /// `kiln <subcommand> --config <fixture config>`.
    pub fn kiln(&self, subcommand: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command.arg(subcommand).arg("--config").arg(&self.config_path);
        command
    }
}

/// Writes the tree. `reversed` creates the entries in the opposite order (other inode numbers
/// and directory order on disk, same content).
pub fn build_tree(app: &Path, reversed: bool) {
    let mut steps: Vec<Box<dyn Fn()>> = Vec::new();
    let file = |rel: &'static str, content: &'static str, mode: u32| -> Box<dyn Fn()> {
        let path = app.join(rel);
        Box::new(move || {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        })
    };
    steps.push(file(
        "composer.json",
        "{\"require\": {\"php\": \">=8.2\"}}\n",
        0o644,
    ));
    steps.push(file("bin/console", CONSOLE, 0o755));
    steps.push(file(
        "public/index.php",
        "<?php\nrequire '../vendor/autoload.php';\n",
        0o644,
    ));
    steps.push(file("src/Kernel.php", KERNEL, 0o644));
    steps.push(file(
        "src/Controller/HomeController.php",
        "<?php\nclass Home {}\n",
        0o644,
    ));
    steps.push(file("vendor/autoload.php", "<?php\n// autoload\n", 0o644));
    steps.push(file(
        "config/packages/framework.yaml",
        "framework:\n  secret: '%env(APP_SECRET)%'\n",
        0o644,
    ));
    steps.push(file("var/cache/prod/container.php", "<?php // warmed\n", 0o644));
    {
        let link = app.join("current");
        steps.push(Box::new(move || {
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            symlink("src", &link).unwrap();
        }));
    }
    if reversed {
        steps.reverse();
    }
    fs::create_dir_all(app).unwrap();
    for step in steps {
        step();
    }
    fs::set_permissions(app, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Sets every modification time below `dir` to `secs` after the epoch.
pub fn set_mtimes(dir: &Path, secs: u64) {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            set_mtimes(&entry.path(), secs);
        }
        if !kind.is_symlink() {
            fs::File::open(entry.path()).unwrap().set_modified(when).unwrap();
        }
    }
}

/// Runs a tool a test needs (`setcap` from libcap2-bin, `setfacl` from acl; `packaging/dev-setup.sh
/// --tests` installs them), failing the test if it fails.
pub fn run(program: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (packaging/dev-setup.sh --tests installs it)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `setcap cap_setuid+ep FILE`: the file would make anyone who runs it root.
pub fn setcap(file: &Path, caps: &str) {
    run("setcap", &[caps.as_ref(), file.as_os_str()]);
}

/// `setfacl -m u:nobody:rw FILE`: nobody could write it.
pub fn let_nobody_write(file: &Path) {
    run(
        "setfacl",
        &["-m".as_ref(), "u:nobody:rw".as_ref(), file.as_os_str()],
    );
}
