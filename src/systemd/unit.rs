//! The unit kiln is installed as, read the way systemd's system manager loads it, for `kiln
//! check` to compare with kiln's own settings: how long systemd gives kiln to stop, and whether
//! it lets kiln extend that while it drains (`EXTEND_TIMEOUT_USEC`, honoured for `Type=notify`
//! from the main process).
//!
//! The unit is the first `kiln.service` on the search path (`$SYSTEMD_UNIT_PATH` when set, as
//! systemd and `systemd-analyze` take it: a trailing `:` appends the usual directories), then
//! its drop-ins, `kiln.service.d/*.conf` of every directory of the path, by file name (a name in
//! an earlier directory hides the same name later), in name order; a later assignment wins.
//! Without `TimeoutStopSec=` (or `TimeoutSec=`), the manager's `DefaultTimeoutStopSec=` of
//! `/etc/systemd/system.conf` counts, 90 s by default. A masked unit is not installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name kiln's packages install it under (`units/kiln.service`).
pub const UNIT: &str = "kiln.service";

/// The system manager's unit search path, first match wins (systemd.unit(5); `/lib` for
/// systems without the merged `/usr`).
const SEARCH_PATH: &[&str] = &[
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The manager's settings, for `DefaultTimeoutStopSec=`.
const SYSTEM_CONF: &str = "/etc/systemd/system.conf";

/// systemd's own default stop timeout.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// What systemd gives kiln to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The unit file, then the drop-ins read after it.
    pub files: Vec<PathBuf>,
    /// `TimeoutStopSec=` (or `TimeoutSec=`), else the manager's default; None: no timeout
    /// (`infinity`, `0`).
    pub stop_timeout: Option<Duration>,
    /// Where `stop_timeout` comes from, for messages: `TimeoutStopSec=1min of FILE`.
    pub stop_timeout_from: String,
    /// `Type=` (`simple` when unset).
    pub service_type: String,
    /// systemd honours kiln's `EXTEND_TIMEOUT_USEC`: `Type=notify` (or `notify-reload`) and a
    /// `NotifyAccess=` other than `none`.
    pub extends: bool,
}

/// The unit kiln is installed as on this machine; None when there is none (or it is masked, or
/// unreadable).
pub fn installed() -> Option<Unit> {
    let dirs = search_path(std::env::var("SYSTEMD_UNIT_PATH").ok().as_deref());
    let default = default_stop_timeout(Path::new(SYSTEM_CONF));
    load(&dirs, UNIT, default)
}

/// The directories, from `$SYSTEMD_UNIT_PATH` when it is set.
fn search_path(var: Option<&str>) -> Vec<PathBuf> {
    let defaults = || SEARCH_PATH.iter().map(PathBuf::from);
    match var {
        None => defaults().collect(),
        Some(var) => {
            let given = var.split(':').filter(|d| !d.is_empty()).map(PathBuf::from);
            match var.ends_with(':') {
                true => given.chain(defaults()).collect(),
                false => given.collect(),
            }
        }
    }
}

/// The settings read so far: the value of a key and the file that set it.
type Settings = BTreeMap<&'static str, (String, PathBuf)>;

/// The keys read, of the `[Service]` section.
const KEYS: &[&str] = &["TimeoutStopSec", "TimeoutSec", "Type", "NotifyAccess"];

/// `name` on `dirs`, with its drop-ins; `default`: the manager's stop timeout and its source.
fn load(dirs: &[PathBuf], name: &str, default: (Option<Duration>, String)) -> Option<Unit> {
    let file = dirs.iter().map(|d| d.join(name)).find(|f| f.exists())?;
    if std::fs::canonicalize(&file).is_ok_and(|real| real == Path::new("/dev/null")) {
        return None;
    }
    let mut files = vec![file];
    files.extend(drop_ins(dirs, name));
    let mut settings = Settings::new();
    for file in &files {
        read_into(&std::fs::read_to_string(file).ok()?, file, &mut settings);
    }
    let (stop_timeout, stop_timeout_from) = match settings.get("TimeoutStopSec") {
        Some((value, file)) => (
            timespan(value)?,
            format!("TimeoutStopSec={value} of {}", file.display()),
        ),
        None => default,
    };
    let service_type = settings
        .get("Type")
        .map_or("simple", |(v, _)| v.as_str())
        .to_string();
    let access = settings.get("NotifyAccess").map_or("main", |(v, _)| v.as_str());
    let extends = matches!(service_type.as_str(), "notify" | "notify-reload") && access != "none";
    Some(Unit {
        files,
        stop_timeout,
        stop_timeout_from,
        service_type,
        extends,
    })
}

/// `NAME.d/*.conf` over every directory, the first of each file name, in name order.
fn drop_ins(dirs: &[PathBuf], name: &str) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join(format!("{name}.d"))) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "conf") {
                by_name.entry(entry.file_name()).or_insert(path);
            }
        }
    }
    by_name.into_values().collect()
}

/// The `[Service]` keys of one file into `settings`: a later assignment wins, an empty one
/// resets the key, `TimeoutSec=` sets the stop timeout too.
fn read_into(text: &str, file: &Path, settings: &mut Settings) {
    let mut in_service = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        let Some((key, value)) = line
            .split_once('=')
            .filter(|_| in_service && !line.starts_with(['#', ';']))
        else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let Some(key) = KEYS.iter().copied().find(|k| *k == key) else {
            continue;
        };
        let targets = match key {
            "TimeoutSec" => &["TimeoutSec", "TimeoutStopSec"][..],
            _ => std::slice::from_ref(&key),
        };
        for &target in targets {
            match value.is_empty() {
                true => settings.remove(target),
                false => settings.insert(target, (value.to_string(), file.to_path_buf())),
            };
        }
    }
}

/// `DefaultTimeoutStopSec=` of the manager's `[Manager]` section, else systemd's 90 s.
fn default_stop_timeout(conf: &Path) -> (Option<Duration>, String) {
    let builtin = (
        Some(DEFAULT_STOP_TIMEOUT),
        "systemd's default stop timeout, 90s".to_string(),
    );
    let Ok(text) = std::fs::read_to_string(conf) else {
        return builtin;
    };
    let mut in_manager = false;
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_manager = line == "[Manager]";
        } else if in_manager && let Some(value) = line.strip_prefix("DefaultTimeoutStopSec=") {
            found = Some(value.trim().to_string());
        }
    }
    match found.filter(|v| !v.is_empty()) {
        Some(value) => match timespan(&value) {
            Some(timeout) => (
                timeout,
                format!("DefaultTimeoutStopSec={value} of {}", conf.display()),
            ),
            None => builtin,
        },
        None => builtin,
    }
}

/// A systemd time span (`90`, `90s`, `1min 30s`, `2m`, `500ms`); `Some(None)` for no timeout
/// (`infinity`, `0`); None when it is not one.
fn timespan(text: &str) -> Option<Option<Duration>> {
    let text = text.trim();
    if text == "infinity" {
        return Some(None);
    }
    let duration = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text).ok()?,
    };
    Some((!duration.is_zero()).then_some(duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn default() -> (Option<Duration>, String) {
        (
            Some(DEFAULT_STOP_TIMEOUT),
            "systemd's default stop timeout, 90s".into(),
        )
    }

    #[test]
    fn the_first_unit_on_the_path_then_its_drop_ins_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (etc, lib) = (dir.path().join("etc"), dir.path().join("lib"));
        write(
            &lib.join(UNIT),
            "[Unit]\nTimeoutStopSec=1s\n[Service]\nType=notify\nTimeoutStopSec=90s\n",
        );
        let dirs = [etc.clone(), lib.clone()];
        let unit = load(&dirs, UNIT, default()).unwrap();
        assert_eq!(unit.stop_timeout, Some(Duration::from_secs(90)));
        assert!(unit.extends);
        assert_eq!(
            unit.stop_timeout_from,
            format!("TimeoutStopSec=90s of {}", lib.join(UNIT).display())
        );

        // A drop-in in /etc, another in /lib; one of /lib hidden by /etc's of the same name.
        write(
            &etc.join("kiln.service.d/50-stop.conf"),
            "[Service]\nTimeoutSec=2min\n",
        );
        write(
            &lib.join("kiln.service.d/50-stop.conf"),
            "[Service]\nTimeoutStopSec=5s\n",
        );
        write(
            &lib.join("kiln.service.d/60-simple.conf"),
            "# plain\n[Service]\nType=simple\n",
        );
        let unit = load(&dirs, UNIT, default()).unwrap();
        assert_eq!(unit.stop_timeout, Some(Duration::from_secs(120)));
        assert_eq!((unit.service_type.as_str(), unit.extends), ("simple", false));
        assert_eq!(unit.files.len(), 3);

        // An empty assignment resets to the manager's default.
        write(
            &etc.join("kiln.service.d/70-reset.conf"),
            "[Service]\nTimeoutStopSec=\n",
        );
        assert_eq!(
            load(&dirs, UNIT, default()).unwrap().stop_timeout_from,
            default().1
        );
    }

    #[test]
    fn no_unit_or_a_masked_one_is_none_and_notify_access_none_does_not_extend() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = [dir.path().to_path_buf()];
        assert_eq!(load(&dirs, UNIT, default()), None);
        std::os::unix::fs::symlink("/dev/null", dir.path().join(UNIT)).unwrap();
        assert_eq!(load(&dirs, UNIT, default()), None);
        let other = tempfile::tempdir().unwrap();
        write(
            &other.path().join(UNIT),
            "[Service]\nType=notify\nNotifyAccess=none\nTimeoutStopSec=infinity\n",
        );
        let unit = load(&[other.path().to_path_buf()], UNIT, default()).unwrap();
        assert_eq!((unit.extends, unit.stop_timeout), (false, None));
    }

    #[test]
    fn time_spans_as_systemd_writes_them() {
        assert_eq!(timespan("90"), Some(Some(Duration::from_secs(90))));
        assert_eq!(timespan("1min 30s"), Some(Some(Duration::from_secs(90))));
        assert_eq!(timespan("2m"), Some(Some(Duration::from_secs(120))));
        assert_eq!(timespan("500ms"), Some(Some(Duration::from_millis(500))));
        assert_eq!(timespan("infinity"), Some(None));
        assert_eq!(timespan("0"), Some(None));
        assert_eq!(timespan("soon"), None);
    }

    #[test]
    fn the_search_path_from_the_variable() {
        assert_eq!(
            search_path(Some("/a:/b")),
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let appended = search_path(Some("/a:"));
        assert_eq!(appended.len(), SEARCH_PATH.len() + 1);
        assert_eq!(appended[1], PathBuf::from(SEARCH_PATH[0]));
    }

    #[test]
    fn the_managers_default_stop_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("system.conf");
        assert_eq!(default_stop_timeout(&conf), default());
        write(
            &conf,
            "[Manager]\n#DefaultTimeoutStopSec=90s\nDefaultTimeoutStopSec=20s\n",
        );
        assert_eq!(default_stop_timeout(&conf).0, Some(Duration::from_secs(20)));
    }
}
