//! `[seal]`: which paths the bake-time integrity manifest covers, and what happens on drift.
//!
//! Without a `[seal]` section kiln seals nothing and verifies nothing (the development default).
//! With one, `paths` is required, and `required` only decides what a *missing* manifest means at
//! boot: refuse (the default) or boot unsealed. A manifest that is present but bad always refuses.

use super::HumanDuration;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

pub const DEFAULT_MANIFEST: &str = "/etc/kiln/seal";

/// The `[seal]` section. `SealConfig::default()` is the absent section: nothing sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawSealConfig")]
pub struct SealConfig {
    /// Absolute paths (directories or files) sealed at bake time; empty when `[seal]` is absent.
    pub paths: Vec<PathBuf>,
    /// Globs matched against absolute paths; a matching directory is skipped with all it holds.
    pub exclude: Vec<String>,
    /// Where `kiln seal` writes the manifest and where boot reads it. Never sealed itself.
    pub manifest: PathBuf,
    pub on_drift: OnDrift,
    /// Period of the full re-verification that backs up the inotify watch.
    pub rescan: HumanDuration,
    /// Bind-remount sealed paths read-only at boot (when kiln has the privilege).
    pub readonly: bool,
    /// A missing manifest refuses the boot; `false` boots unsealed instead (development).
    pub required: bool,
    /// The image's label, written into the manifest by `kiln seal` (`--release` wins over it).
    pub release: Option<Release>,
}

/// A person's name for an image (`v42`, `2024.06.1+build.7`), recorded in the manifest beside the
/// root hash. One word of `A-Z a-z 0-9 . _ - +`, at most 64 bytes, starting with a letter or
/// digit: it is printed in status, logs and tables, and compared with the launch configuration's
/// pin, so it must never need escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Release(String);

impl Release {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Release {
    type Err = String;

    fn from_str(text: &str) -> Result<Release, String> {
        let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
        match text.chars().next() {
            None => Err("a release label is empty".into()),
            _ if text.len() > Release::MAX_LEN => Err(format!(
                "a release label is at most {} characters",
                Release::MAX_LEN
            )),
            Some(first) if !first.is_ascii_alphanumeric() || !text.chars().all(word) => Err(
                "a release label is one word of letters, digits and . _ - + starting with a letter or digit"
                    .into(),
            ),
            Some(_) => Ok(Release(text.to_string())),
        }
    }
}

impl TryFrom<String> for Release {
    type Error = String;

    fn try_from(text: String) -> Result<Release, String> {
        text.parse()
    }
}

impl From<Release> for String {
    fn from(release: Release) -> String {
        release.0
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the running instance does once the sealed paths differ from the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    /// Log it and show it in status; keep serving.
    Report,
    /// `/readyz` 503, agent `down`, deregister: the fleet replaces the instance.
    #[default]
    Fail,
    /// Drain, then power the machine off.
    Poweroff,
}

impl Default for SealConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            exclude: Vec::new(),
            manifest: PathBuf::from(DEFAULT_MANIFEST),
            on_drift: OnDrift::default(),
            rescan: default_rescan(),
            readonly: true,
            required: true,
            release: None,
        }
    }
}

impl SealConfig {
    /// A `[seal]` section is present: something is sealed.
    pub fn is_enabled(&self) -> bool {
        !self.paths.is_empty()
    }

    /// The `exclude` patterns as one matcher over absolute paths.
    pub fn exclude_set(&self) -> Result<globset::GlobSet, String> {
        let mut set = globset::GlobSetBuilder::new();
        for pattern in &self.exclude {
            set.add(exclude_glob(pattern)?);
        }
        set.build().map_err(|e| format!("[seal] exclude: {e}"))
    }
}

fn default_rescan() -> HumanDuration {
    HumanDuration::from_secs(600)
}

fn default_manifest() -> PathBuf {
    PathBuf::from(DEFAULT_MANIFEST)
}

fn yes() -> bool {
    true
}

/// The section as written; [`SealConfig`] is what survives the checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSealConfig {
    paths: Vec<PathBuf>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default = "default_manifest")]
    manifest: PathBuf,
    #[serde(default)]
    on_drift: OnDrift,
    #[serde(default = "default_rescan")]
    rescan: HumanDuration,
    #[serde(default = "yes")]
    readonly: bool,
    #[serde(default = "yes")]
    required: bool,
    #[serde(default)]
    release: Option<Release>,
}

impl TryFrom<RawSealConfig> for SealConfig {
    type Error = String;

    /// Only what makes the section meaningful; everything else is [`SealConfig::check`]'s, so that
    /// `kiln check` lists every problem at once. (The reader puts `[seal]` in front.)
    fn try_from(raw: RawSealConfig) -> Result<Self, String> {
        if raw.paths.is_empty() {
            return Err("paths is empty: list the paths to seal, or remove the [seal] section".into());
        }
        Ok(SealConfig {
            paths: raw.paths,
            exclude: raw.exclude,
            manifest: raw.manifest,
            on_drift: raw.on_drift,
            rescan: raw.rescan,
            readonly: raw.readonly,
            required: raw.required,
            release: raw.release,
        })
    }
}

impl SealConfig {
    /// Every problem serde cannot see, each naming its key. The absent section has none.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for path in &self.paths {
            problems.extend(check_absolute("paths", path).err());
        }
        for (i, a) in self.paths.iter().enumerate() {
            for b in self.paths.iter().skip(i.saturating_add(1)) {
                if a == b {
                    problems.push(format!("[seal] paths lists {} twice", a.display()));
                    continue;
                }
                let (outer, inner) = if a.starts_with(b) { (b, a) } else { (a, b) };
                if inner.starts_with(outer) {
                    problems.push(format!(
                        "[seal] paths: {} is inside {}: list only {}",
                        inner.display(),
                        outer.display(),
                        outer.display()
                    ));
                }
            }
        }
        for pattern in &self.exclude {
            problems.extend(check_exclude(pattern).err());
        }
        problems.extend(check_absolute("manifest", &self.manifest).err());
        if self.rescan.get() < std::time::Duration::from_secs(1) {
            problems.push(format!(
                "[seal] rescan = \"{}\": must be at least 1s",
                self.rescan
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl SealConfig {
    /// kiln writes in `dir` at every boot (the state directory, the control socket's). Inside a
    /// sealed path those files would be drift from kiln's own doing, and `readonly` would leave
    /// kiln unable to write them. A directory that `exclude` skips, or one above it, is not
    /// sealed. Compared as written and, where the paths exist, through their symlinks.
    pub fn check_outside(&self, dir: &Path) -> Result<(), String> {
        let exclude = self.exclude_set().ok();
        let skipped = |dir: &Path, sealed: &Path| {
            exclude.as_ref().is_some_and(|set| {
                dir.ancestors()
                    .take_while(|a| a.starts_with(sealed))
                    .any(|a| set.is_match(a))
            })
        };
        for sealed in &self.paths {
            let inside = [(dir.to_path_buf(), sealed.clone()), (real(dir), real(sealed))]
                .iter()
                .any(|(dir, sealed)| dir.starts_with(sealed) && !skipped(dir, sealed));
            if inside {
                return Err(format!(
                    "inside the sealed path {} ([seal] paths): kiln writes there at every boot, which \
                     the seal would take for drift; move it out of the seal (under /run) or list it \
                     in [seal] exclude",
                    sealed.display()
                ));
            }
        }
        Ok(())
    }
}

/// `path` with the symlinks of its longest existing part resolved; the rest joined as written.
fn real(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(resolved) = std::fs::canonicalize(existing) {
            return missing.iter().rev().fold(resolved, |p, name| p.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

fn check_absolute(key: &str, path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("[seal] {key}: {:?} must be an absolute path", path));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!(
            "[seal] {key}: {:?} must not contain \".\" or \"..\"",
            path
        ));
    }
    Ok(())
}

/// `*` stays within one path component, `**` crosses them.
fn exclude_glob(pattern: &str) -> Result<globset::Glob, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("[seal] exclude: {pattern:?} is not a valid glob: {}", e.kind()))
}

fn check_exclude(pattern: &str) -> Result<(), String> {
    if !(pattern.starts_with('/') || pattern.starts_with("**")) {
        return Err(format!(
            "[seal] exclude: {pattern:?} never matches: patterns match absolute paths, \
             like \"/srv/app/var/cache\" or \"**/var/log\""
        ));
    }
    exclude_glob(pattern).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SealConfig, String> {
        crate::config::Config::parse(text)
            .map(|c| c.seal)
            .map_err(|problems| problems.join("\n"))
    }

    #[test]
    fn defaults_apply_to_a_present_section() {
        let seal = parse("[seal]\npaths = [\"/srv/app\"]\n").unwrap();
        assert!(seal.is_enabled());
        assert_eq!(seal.manifest, PathBuf::from("/etc/kiln/seal"));
        assert_eq!(seal.on_drift, OnDrift::Fail);
        assert_eq!(seal.rescan, HumanDuration::from_secs(600));
        assert!(seal.readonly && seal.required);
    }

    #[test]
    fn release_labels_are_one_printable_word() {
        for good in ["v42", "2024.06.1+build.7", "release_42-rc1", "A"] {
            assert_eq!(good.parse::<Release>().unwrap().as_str(), good);
        }
        let long = "v".repeat(Release::MAX_LEN + 1);
        for bad in [
            "",
            "-v42",
            ".hidden",
            "v42 ",
            "v4\n2",
            "v42/x",
            "caf\u{e9}",
            long.as_str(),
        ] {
            assert!(bad.parse::<Release>().is_err(), "{bad:?}");
        }
        let seal = parse("[seal]\npaths = [\"/srv/app\"]\nrelease = \"v42\"\n").unwrap();
        assert_eq!(seal.release.unwrap().as_str(), "v42");
    }

    #[test]
    fn the_absent_section_seals_nothing() {
        assert!(!SealConfig::default().is_enabled());
    }

    #[test]
    fn bad_sections_are_refused_with_the_key() {
        for (text, needle) in [
            ("[seal]\n", "missing field `paths`"),
            ("[seal]\npaths = []\n", "paths is empty"),
            ("[seal]\npaths = [\"srv/app\"]\n", "must be an absolute path"),
            ("[seal]\npaths = [\"/srv/app/../etc\"]\n", "must not contain"),
            (
                "[seal]\npaths = [\"/srv\", \"/srv/app\"]\n",
                "/srv/app is inside /srv",
            ),
            ("[seal]\npaths = [\"/srv\", \"/srv\"]\n", "twice"),
            (
                "[seal]\npaths = [\"/srv\"]\nexclude = [\"var/cache\"]\n",
                "never matches",
            ),
            (
                "[seal]\npaths = [\"/srv\"]\nexclude = [\"/srv/[\"]\n",
                "not a valid glob",
            ),
            ("[seal]\npaths = [\"/srv\"]\nrescan = \"10ms\"\n", "at least 1s"),
            (
                "[seal]\npaths = [\"/srv\"]\non_drift = \"panic\"\n",
                "unknown variant",
            ),
            (
                "[seal]\npaths = [\"/srv\"]\npath = \"/x\"\n",
                "unknown field `path`",
            ),
            (
                "[seal]\npaths = [\"/srv\"]\nrelease = \"\"\n",
                "release: a release label is empty",
            ),
            (
                "[seal]\npaths = [\"/srv\"]\nrelease = \"v 42\"\n",
                "release: a release label is one word",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn kiln_writes_nowhere_sealed_unless_excluded() {
        let root = tempfile::tempdir().unwrap();
        let sealed = root.path().join("srv");
        std::fs::create_dir_all(sealed.join("releases/42/var")).unwrap();
        std::os::unix::fs::symlink("releases/42", sealed.join("current")).unwrap();
        let seal = |exclude: &[&str]| SealConfig {
            paths: vec![sealed.join("current")],
            exclude: exclude.iter().map(|e| e.to_string()).collect(),
            ..SealConfig::default()
        };
        let outside = root.path().join("run/kiln");
        assert_eq!(seal(&[]).check_outside(&outside), Ok(()));
        // As written, and through the symlink: the real tree is sealed too.
        for inside in [sealed.join("current/var/run"), sealed.join("releases/42/var/run")] {
            let err = seal(&[]).check_outside(&inside).unwrap_err();
            assert!(err.starts_with("inside the sealed path "), "{err}");
        }
        let skip = format!("{}/**/var", root.path().display());
        assert_eq!(
            seal(&[&skip]).check_outside(&sealed.join("current/var/run")),
            Ok(())
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let err = parse("[seal]\npaths = [\"srv\", \"/a\", \"/a/b\"]\nexclude = [\"x\"]\nrescan = \"1ms\"\n")
            .unwrap_err();
        let problems: Vec<&str> = err.lines().collect();
        assert_eq!(problems.len(), 4, "{err}");
    }
}
