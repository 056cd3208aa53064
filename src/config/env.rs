//! `[env]`: the rules the frozen environment must satisfy, and the rules themselves (variable
//! names, the reserved `KILN_` prefix, the built-in deny list), shared by config checks and `env`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Names that user-data, tags or `defaults` must set to a non-empty value, or the boot fails.
    #[serde(default)]
    pub required: Vec<String>,
    /// Baked values; tags and user-data override them.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// Glob patterns (`*`, `?`) of names that defaults, tags and user-data may not set, on top of
    /// [`BUILTIN_DENY`]. kiln's own inherited environment is not filtered.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// Prefix of the instance facts kiln sets itself (`KILN_INSTANCE_ID`, ...); nothing else may set it.
pub const RESERVED_PREFIX: &str = "KILN_";

/// Names no default, tag or user-data may set, each with the reason. They would let whoever
/// writes user-data run code inside every service, or hijack kiln's own supervision; the image
/// may still set them per service (`[[service]] env`), which is baked and sealed.
pub const BUILTIN_DENY: &[(&str, &str)] = &[
    (
        "LD_*",
        "dynamic loader: LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH load code into every process",
    ),
    (
        "GCONV_PATH",
        "glibc loads iconv modules from it (code execution, cf. CVE-2021-4034)",
    ),
    (
        "GLIBC_TUNABLES",
        "tunes glibc's loader and allocator (cf. CVE-2023-4911)",
    ),
    ("LOCPATH", "glibc reads locale data from it (parsed binary files)"),
    (
        "NLSPATH",
        "message catalogues from an arbitrary path (format strings)",
    ),
    ("HOSTALIASES", "redirects host name resolution"),
    ("RESOLV_HOST_CONF", "redirects host name resolution"),
    ("BASH_ENV", "a file every non-interactive bash runs first"),
    ("ENV", "a file every interactive POSIX shell runs first"),
    (
        "BASH_FUNC_*",
        "exported bash functions replace commands in every bash script",
    ),
    ("SHELLOPTS", "changes how every bash script runs"),
    ("BASHOPTS", "changes how every bash script runs"),
    ("IFS", "changes how every shell script splits words"),
    (
        "PS4",
        "expanded (and its commands run) on every traced shell line",
    ),
    (
        "PHPRC",
        "php.ini from another directory (auto_prepend_file runs code)",
    ),
    (
        "PHP_INI_SCAN_DIR",
        "extra php.ini files (auto_prepend_file runs code)",
    ),
    ("PERL5OPT", "options, including modules to load, for every perl"),
    ("PERL5LIB", "perl modules from another path"),
    ("PERLLIB", "perl modules from another path"),
    ("PYTHONPATH", "python modules from another path"),
    ("PYTHONHOME", "python's standard library from another path"),
    ("PYTHONSTARTUP", "a file python runs first"),
    ("RUBYOPT", "options, including libraries to load, for every ruby"),
    ("RUBYLIB", "ruby libraries from another path"),
    ("NODE_OPTIONS", "options, including --require, for every node"),
    (
        "JAVA_TOOL_OPTIONS",
        "options, including -javaagent, for every JVM",
    ),
    (
        "NOTIFY_SOCKET",
        "systemd's notify socket belongs to kiln, not to services",
    ),
    (
        "WATCHDOG_*",
        "systemd's watchdog belongs to kiln, not to services",
    ),
    (
        "LISTEN_*",
        "systemd's socket activation belongs to kiln, not to services",
    ),
];

impl EnvConfig {
    /// Every problem serde cannot see, each naming the key and the variable, never a value.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for pattern in &self.deny {
            if let Err(e) = check_pattern(pattern) {
                problems.push(format!("deny: {pattern:?}: {e}"));
            }
        }
        // Defaults, tags, user-data and secrets are all admitted by the same rules: a required
        // name they may not set fails every boot.
        for name in &self.required {
            if let Err(e) = check_name(name) {
                problems.push(format!("required: {e}"));
            } else if name.starts_with(RESERVED_PREFIX) {
                problems.push(format!(
                    "required: {name}: the {RESERVED_PREFIX} prefix is reserved for instance facts, so nothing can set it"
                ));
            } else if let Some(why) = self.denied(name) {
                problems.push(format!(
                    "required: {name} is denied ({why}), so nothing can set it"
                ));
            }
        }
        for (name, value) in &self.defaults {
            if let Err(e) = check_name(name) {
                problems.push(format!("defaults: {e}"));
            } else if name.starts_with(RESERVED_PREFIX) {
                problems.push(format!(
                    "defaults: {name}: the {RESERVED_PREFIX} prefix is reserved for instance facts"
                ));
            } else if let Some(why) = self.denied(name) {
                problems.push(format!("defaults: {name} is denied ({why})"));
            }
            if value.contains('\0') {
                problems.push(format!("defaults: {name} has a NUL byte in its value"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Why `name` may not be set by defaults, tags or user-data; None when it may.
    pub fn denied(&self, name: &str) -> Option<String> {
        if let Some((pattern, why)) = BUILTIN_DENY.iter().find(|(p, _)| glob_match(p, name)) {
            return Some(format!("built-in deny {pattern}: {why}"));
        }
        self.deny
            .iter()
            .find(|p| glob_match(p, name))
            .map(|p| format!("[env] deny = {p:?}"))
    }
}

/// A portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, what both a shell and
/// systemd accept.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The error for a bad name. The name is shown (names are not secrets), shortened when it is long
/// enough to be a pasted value rather than a name.
pub fn check_name(name: &str) -> Result<(), String> {
    if is_valid_name(name) {
        return Ok(());
    }
    Err(format!(
        "{} is not a valid variable name (letters, digits and '_', not starting with a digit)",
        describe_bad_name(name)
    ))
}

/// What is wrong with a name, without showing it: a line that is not a name may be a value
/// (a base64 secret ends in `=`, so it reads as `NAME=`), and no value is ever shown.
fn describe_bad_name(name: &str) -> String {
    let bad = name
        .chars()
        .enumerate()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())));
    match bad {
        None => "an empty name".to_string(),
        Some((0, c)) if c.is_ascii_digit() => "a name starting with a digit".to_string(),
        Some((i, c)) if c.is_ascii_graphic() || c == ' ' => {
            format!("a name with {c:?} at character {}", i.saturating_add(1))
        }
        Some((i, c)) => format!(
            "a name with U+{:04X} at character {}",
            u32::from(c),
            i.saturating_add(1)
        ),
    }
}

pub(super) fn check_pattern(pattern: &str) -> Result<(), String> {
    let ok = !pattern.is_empty()
        && pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '?'));
    if ok {
        Ok(())
    } else {
        Err("use letters, digits, '_' and the wildcards '*' and '?'".into())
    }
}

/// Shell-style glob over ASCII names: `*` any run, `?` one character. Case-sensitive, like names.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (mut p, mut n) = (pattern.as_bytes(), name.as_bytes());
    // After the last `*`: the pattern that follows it, and where in the name it is tried next.
    let mut star: Option<(&[u8], &[u8])> = None;
    loop {
        match (p.split_first(), n.split_first()) {
            (Some((b'*', after)), _) => {
                star = Some((after, n));
                p = after;
            }
            (Some((&pc, p_rest)), Some((&nc, n_rest))) if pc == b'?' || pc == nc => {
                p = p_rest;
                n = n_rest;
            }
            (None, None) => return true,
            // A mismatch: let the last `*` swallow one more character and try again from there.
            _ => match star.and_then(|(after, from)| Some((after, from.split_first()?.1))) {
                Some((after, from)) => {
                    star = Some((after, from));
                    p = after;
                    n = from;
                }
                None => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("LD_*", "LD_PRELOAD"));
        assert!(glob_match("LD_*", "LD_"));
        assert!(!glob_match("LD_*", "OLD_X"));
        assert!(glob_match("PATH", "PATH"));
        assert!(!glob_match("PATH", "PATHX"));
        assert!(glob_match("*_KEY", "AWS_SECRET_KEY"));
        assert!(glob_match("A?C", "ABC"));
        assert!(!glob_match("A?C", "AC"));
        assert!(glob_match("*A*B*", "XXAYYBZZ"));
        assert!(!glob_match("*A*B*", "XXBYYAZZ"));
    }

    #[test]
    fn names() {
        assert!(is_valid_name("APP_SECRET"));
        assert!(is_valid_name("_x1"));
        assert!(!is_valid_name("1X"));
        assert!(!is_valid_name("A-B"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("É"));
        // A "name" may be a value written where a name belongs: it is described, never shown.
        let err = check_name("dG9rZW4+Kw").unwrap_err();
        assert!(err.starts_with("a name with '+' at character 8"), "{err}");
        assert!(!err.contains("dG9rZW4"), "{err}");
        assert!(
            check_name("1X")
                .unwrap_err()
                .starts_with("a name starting with a digit")
        );
        assert!(
            check_name("A\u{1b}B")
                .unwrap_err()
                .starts_with("a name with U+001B at character 2")
        );
    }

    #[test]
    fn defaults_are_checked() {
        let mut c = EnvConfig::default();
        c.defaults.insert("LD_PRELOAD".into(), "x".into());
        assert!(c.check().unwrap_err()[0].contains("defaults: LD_PRELOAD is denied (built-in deny LD_*"));
        let mut c = EnvConfig::default();
        c.defaults.insert("KILN_REGION".into(), "x".into());
        assert!(c.check().unwrap_err()[0].contains("reserved"));
        let c = EnvConfig {
            deny: vec!["PA-TH".into()],
            ..Default::default()
        };
        assert!(c.check().unwrap_err()[0].starts_with("deny: \"PA-TH\""));
    }
}
