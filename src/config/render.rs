//! `[render]` and its `[[render.file]]`s: the files kiln writes at boot, before any service
//! starts, from the frozen environment and the instance's facts. Symfony's `.env.local.php`, a
//! dotenv or JSON file of chosen variables, or a template (an nginx snippet naming the instance's
//! address). `crate::render` writes them into a tmpfs of its own at `dir` and makes it read-only.
//!
//! Read in two steps as `[lb]`: serde reads [`RenderTable`] as written, [`RenderTable::check`]
//! makes it a [`RenderPlan`] (templates read and compiled, owners resolved, modes typed),
//! listing every problem at once; the boot reads the plan only.
//!
//! A file that holds values of the environment (every whole-environment format, and a template
//! that reads `env`) may hold a secret: its mode gives others nothing (0640 at most). That is
//! decided here, without the cloud, so `kiln check` refuses a config that could ever put a secret
//! in a file others may read.

use super::jinja::JinjaTemplate;
use super::seal::SealConfig;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the files go when `dir` is not given: beside `/run/kiln` (the state dir, 0700: the
/// services' users could not reach into it).
pub const DEFAULT_DIR: &str = "/run/kiln-render";

/// At most this many files: they are a handful of config files, not a tree.
const MAX_FILES: usize = 64;

/// `[render]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RenderTable {
    /// The directory kiln mounts a tmpfs on and writes the files into.
    dir: Option<PathBuf>,
    #[serde(default)]
    file: Vec<FileTable>,
}

/// One `[[render.file]]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    /// The file's name in `dir`.
    #[serde(default)]
    name: String,
    format: Option<Format>,
    /// Whole-environment formats: globs of the names the file holds.
    env_allow: Option<Vec<String>>,
    /// `format = "template"`: the template's path.
    template: Option<PathBuf>,
    owner: Option<String>,
    group: Option<String>,
    /// Octal, as a string: `"0640"` (the default).
    mode: Option<String>,
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Symfony's `.env.local.php`: `return array ('NAME' => 'value', ...);`.
    Symfony,
    /// `NAME="value"` lines, as kiln's own env file (systemd `EnvironmentFile=`, `set -a; . FILE`).
    Dotenv,
    /// One JSON object of names to values.
    Json,
    /// A minijinja template.
    Template,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Symfony => "symfony",
            Format::Dotenv => "dotenv",
            Format::Json => "json",
            Format::Template => "template",
        }
    }
}

/// `[render]`, checked: where, and each file.
#[derive(Debug, Clone)]
pub struct RenderPlan {
    pub dir: PathBuf,
    pub files: Vec<FilePlan>,
}

/// One file to write.
#[derive(Debug, Clone)]
pub struct FilePlan {
    /// A plain file name (no `/`).
    pub name: String,
    pub content: Content,
    /// None: kiln's own user.
    pub owner: Option<Account>,
    /// None: kiln's own group.
    pub group: Option<Account>,
    pub mode: FileMode,
}

impl FilePlan {
    pub fn format(&self) -> Format {
        match &self.content {
            Content::Env { format, .. } => *format,
            Content::Template(_) => Format::Template,
        }
    }
}

/// What goes into a file.
#[derive(Debug, Clone)]
pub enum Content {
    /// The variables whose names `allow` matches, in a whole-environment format.
    Env {
        format: Format,
        allow: Vec<String>,
    },
    Template(JinjaTemplate),
}

/// A user or group named in the config, and its id on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub id: u32,
}

/// A file's permission bits: read for whom reads it, write for the owner at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    /// The modes taken: a rendered file is written once and read-only after, so write bits are
    /// for nobody but the owner, and nothing is executable.
    const ALLOWED: [u32; 6] = [0o400, 0o440, 0o444, 0o600, 0o640, 0o644];
    pub const DEFAULT: FileMode = FileMode(0o640);

    pub fn bits(self) -> u32 {
        self.0
    }

    /// Others may read it.
    pub fn others_read(self) -> bool {
        self.0 & 0o004 != 0
    }

    fn parse(text: &str) -> Result<FileMode, String> {
        let digits = text.strip_prefix('0').filter(|d| d.len() == 3).unwrap_or(text);
        let bits = (digits.len() == 3)
            .then(|| u32::from_str_radix(digits, 8).ok())
            .flatten()
            .ok_or_else(|| format!("mode = {text:?}: write it in octal, as \"0640\""))?;
        if Self::ALLOWED.contains(&bits) {
            Ok(FileMode(bits))
        } else {
            Err(format!(
                "mode = {text:?}: kiln writes the file once and makes it read-only: give read to whom \
                 reads it and write to nobody but the owner (0400, 0440, 0444, 0600, 0640 or 0644)"
            ))
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0{:03o}", self.0)
    }
}

/// Where a file is in the config: `[[render.file]] #2 "env.local.php"`.
fn place(index: usize, name: &str) -> String {
    format!("[[render.file]] #{} {name:?}", index.saturating_add(1))
}

/// What the other sections say about paths: the render dir must stay out of them.
pub struct Neighbours<'a> {
    pub seal: &'a SealConfig,
    /// `[control] state_dir` and the socket's directory.
    pub runtime_dirs: Vec<(&'static str, &'a Path)>,
}

impl RenderTable {
    /// The plan, or every problem, each naming its place and key.
    pub fn check(&self, neighbours: &Neighbours<'_>) -> Result<RenderPlan, Vec<String>> {
        let dir = self.dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        let mut problems: Vec<String> = check_dir(&dir, neighbours)
            .into_iter()
            .map(|p| format!("[render] dir = {:?}: {p}", dir.display().to_string()))
            .collect();
        if self.file.is_empty() {
            problems.push("[render] no [[render.file]]: name the files to write, or drop [render]".into());
        }
        if self.file.len() > MAX_FILES {
            problems.push(format!("[render] {} files: at most {MAX_FILES}", self.file.len()));
        }
        let mut files = Vec::new();
        for (i, file) in self.file.iter().enumerate() {
            let here = place(i, &file.name);
            if let Some(j) = self.file.iter().position(|f| f.name == file.name)
                && j != i
                && !file.name.is_empty()
            {
                problems.push(format!(
                    "{here}: name: already the name of {}",
                    place(j, &file.name)
                ));
            }
            match file.check() {
                Ok(plan) => files.push(plan),
                Err(list) => problems.extend(list.into_iter().map(|p| format!("{here}: {p}"))),
            }
        }
        if problems.is_empty() {
            Ok(RenderPlan { dir, files })
        } else {
            Err(problems)
        }
    }
}

/// The render dir: absolute, plain, outside the seal and away from the state dir and socket.
fn check_dir(dir: &Path, neighbours: &Neighbours<'_>) -> Vec<String> {
    let plain = dir.is_absolute()
        && dir.parent().is_some()
        && !dir
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir));
    if !plain {
        return vec!["must be an absolute path (not \"/\") without \".\" or \"..\"".into()];
    }
    let mut problems: Vec<String> = neighbours.seal.check_outside(dir).err().into_iter().collect();
    for (key, other) in &neighbours.runtime_dirs {
        if dir.starts_with(other) || other.starts_with(dir) {
            problems.push(format!(
                "must be apart from [control] {key} {}: kiln mounts a file system of its own on it",
                other.display()
            ));
        }
    }
    problems
}

impl FileTable {
    fn check(&self) -> Result<FilePlan, Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = check_name(&self.name) {
            problems.push(format!("name: {e}"));
        }
        let content = self.content().map_err(|e| problems.extend(e)).ok();
        let mode = match self.mode.as_deref().map(FileMode::parse) {
            None => Some(FileMode::DEFAULT),
            Some(Ok(mode)) => Some(mode),
            Some(Err(e)) => {
                problems.push(e);
                None
            }
        };
        let holds_env = content.as_ref().is_some_and(|c| match c {
            Content::Env { .. } => true,
            Content::Template(t) => t.names_env,
        });
        if let Some(mode) = mode
            && holds_env
            && mode.others_read()
        {
            problems.push(format!(
                "mode = \"{mode}\": the file holds values of the environment, which may be secrets: \
                 others may not read it (\"0640\" with group = the reader's group, or \"0600\" with owner = the reader)"
            ));
        }
        let owner = account("owner", self.owner.as_deref(), user_id).map_err(|e| problems.push(e));
        let group = account("group", self.group.as_deref(), group_id).map_err(|e| problems.push(e));
        match (content, mode, owner, group) {
            (Some(content), Some(mode), Ok(owner), Ok(group)) if problems.is_empty() => Ok(FilePlan {
                name: self.name.clone(),
                content,
                owner,
                group,
                mode,
            }),
            _ => Err(problems),
        }
    }

    /// The format and what it needs: `env_allow` for a whole-environment format, `template` for
    /// a template, and neither key where it means nothing.
    fn content(&self) -> Result<Content, Vec<String>> {
        let Some(format) = self.format else {
            return Err(vec!["format: missing: symfony, dotenv, json or template".into()]);
        };
        let word = format.as_str();
        match format {
            Format::Template => {
                let mut problems = Vec::new();
                if self.env_allow.is_some() {
                    problems.push(
                        "env_allow: only for symfony, dotenv and json: a template names what it reads".into(),
                    );
                }
                let Some(path) = &self.template else {
                    problems.push("template: missing: the template's path (format = \"template\")".into());
                    return Err(problems);
                };
                let shown = path.display().to_string();
                if !path.is_absolute() {
                    problems.push(format!("template = {shown:?}: must be an absolute path"));
                    return Err(problems);
                }
                match JinjaTemplate::load(path) {
                    Ok(t) if problems.is_empty() => Ok(Content::Template(t)),
                    Ok(_) => Err(problems),
                    Err(list) => {
                        problems.extend(list.into_iter().map(|p| format!("template = {shown:?}: {p}")));
                        Err(problems)
                    }
                }
            }
            _ => {
                let mut problems = Vec::new();
                if self.template.is_some() {
                    problems.push(format!("template: only for format = \"template\", not {word:?}"));
                }
                match &self.env_allow {
                    None => problems.push(format!(
                        "env_allow: missing: format = {word:?} writes the variables it names (globs, \
                         as [[service]] env_allow; [\"*\"] for every one)"
                    )),
                    Some(globs) => {
                        for pattern in globs {
                            if let Err(e) = super::env::check_pattern(pattern) {
                                problems.push(format!("env_allow: {pattern:?}: {e}"));
                            }
                        }
                    }
                }
                match problems.is_empty() {
                    true => Ok(Content::Env {
                        format,
                        allow: self.env_allow.clone().unwrap_or_default(),
                    }),
                    false => Err(problems),
                }
            }
        }
    }
}

/// A plain file name: the file goes in `dir`, nowhere else.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else if name.is_empty() {
        Err("missing: the file's name in [render] dir".into())
    } else {
        Err(format!(
            "{name:?}: a file name of 1 to 128 letters, digits, '.', '_' or '-' (the file goes in [render] dir)"
        ))
    }
}

fn user_id(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

fn group_id(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

fn account(key: &str, name: Option<&str>, id: fn(&str) -> Option<u32>) -> Result<Option<Account>, String> {
    let Some(name) = name else { return Ok(None) };
    let what = if key == "owner" { "user" } else { "group" };
    match id(name) {
        Some(id) => Ok(Some(Account {
            name: name.to_string(),
            id,
        })),
        None => Err(format!("{key} = {name:?}: no such {what} on this system")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str) -> Result<RenderPlan, Vec<String>> {
        let table: RenderTable = toml::from_str(toml).unwrap();
        let seal = SealConfig::default();
        let neighbours = Neighbours {
            seal: &seal,
            runtime_dirs: vec![("state_dir", Path::new("/run/kiln"))],
        };
        table.check(&neighbours)
    }

    #[test]
    fn a_whole_environment_file_is_planned_with_its_defaults() {
        let plan =
            check("[[file]]\nname = \".env.local.php\"\nformat = \"symfony\"\nenv_allow = [\"APP_*\"]\n")
                .unwrap();
        assert_eq!(plan.dir, Path::new(DEFAULT_DIR));
        let file = &plan.files[0];
        assert_eq!(file.mode.to_string(), "0640");
        assert_eq!((file.owner.as_ref(), file.group.as_ref()), (None, None));
        assert!(
            matches!(&file.content, Content::Env { format: Format::Symfony, allow } if allow == &["APP_*"])
        );
    }

    #[test]
    fn every_problem_is_named_with_its_file_and_key() {
        let err = check(
            "dir = \"/run/kiln/files\"\n\
             [[file]]\nname = \"a/b\"\nformat = \"json\"\n\
             [[file]]\nname = \"x\"\nformat = \"dotenv\"\nenv_allow = [\"A-B\"]\nmode = \"0644\"\ntemplate = \"/t\"\n\
             [[file]]\nname = \"x\"\nformat = \"template\"\nenv_allow = []\nowner = \"no-such-user-kiln\"\nmode = \"0777\"\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            [
                "[render] dir = \"/run/kiln/files\": must be apart from [control] state_dir /run/kiln: kiln mounts a file system of its own on it",
                "[[render.file]] #1 \"a/b\": name: \"a/b\": a file name of 1 to 128 letters, digits, '.', '_' or '-' (the file goes in [render] dir)",
                "[[render.file]] #1 \"a/b\": env_allow: missing: format = \"json\" writes the variables it names (globs, as [[service]] env_allow; [\"*\"] for every one)",
                "[[render.file]] #2 \"x\": template: only for format = \"template\", not \"dotenv\"",
                "[[render.file]] #2 \"x\": env_allow: \"A-B\": use letters, digits, '_' and the wildcards '*' and '?'",
                "[[render.file]] #3 \"x\": name: already the name of [[render.file]] #2 \"x\"",
                "[[render.file]] #3 \"x\": env_allow: only for symfony, dotenv and json: a template names what it reads",
                "[[render.file]] #3 \"x\": template: missing: the template's path (format = \"template\")",
                "[[render.file]] #3 \"x\": mode = \"0777\": kiln writes the file once and makes it read-only: give read to whom reads it and write to nobody but the owner (0400, 0440, 0444, 0600, 0640 or 0644)",
                "[[render.file]] #3 \"x\": owner = \"no-such-user-kiln\": no such user on this system",
            ]
        );
    }

    #[test]
    fn a_file_that_may_hold_a_secret_is_never_readable_by_others() {
        let err =
            check("[[file]]\nname = \"e.json\"\nformat = \"json\"\nenv_allow = [\"*\"]\nmode = \"644\"\n")
                .unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0].starts_with(
                "[[render.file]] #1 \"e.json\": mode = \"0644\": the file holds values of the environment"
            ),
            "{err:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let facts_only = dir.path().join("facts.j2");
        std::fs::write(&facts_only, "server {{ instance.local_ipv4 }};\n").unwrap();
        let reads_env = dir.path().join("env.j2");
        std::fs::write(&reads_env, "{{ env.DB }}\n").unwrap();
        let file = |path: &Path| {
            format!(
                "[[file]]\nname = \"f\"\nformat = \"template\"\ntemplate = {:?}\nmode = \"0644\"\n",
                path.display().to_string()
            )
        };
        assert!(check(&file(&facts_only)).is_ok());
        let err = check(&file(&reads_env)).unwrap_err();
        assert!(err[0].contains("holds values of the environment"), "{err:?}");
    }

    #[test]
    fn modes_are_octal_and_read_only() {
        assert_eq!(FileMode::parse("0440").unwrap().bits(), 0o440);
        assert_eq!(FileMode::parse("600").unwrap().bits(), 0o600);
        for bad in ["0660", "0755", "640x", "06400", "", "rw-r-----"] {
            assert!(FileMode::parse(bad).is_err(), "{bad}");
        }
    }
}
