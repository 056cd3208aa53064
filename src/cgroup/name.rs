//! Names of the cgroups kiln makes: one for the whole instance where kiln's cgroup is the root
//! of the hierarchy, one per unit.

use std::fmt::Write;
use std::path::Path;

/// The longest name a cgroup directory may have (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// `kiln@` and the state directory escaped as `systemd-escape --path` does (`/run/kiln` →
/// `kiln@run-kiln`): the same config finds the same cgroup again after a `kill -9`, two kilns
/// with different state directories never share one, and a person can compute it.
pub fn instance(state_dir: &Path) -> Result<String, String> {
    let text = state_dir
        .to_str()
        .ok_or_else(|| format!("state_dir {} is not UTF-8", state_dir.display()))?;
    let name = format!("kiln@{}", escape_path(text));
    if name.len() > NAME_MAX {
        return Err(format!(
            "state_dir {text:?} makes a cgroup name over {NAME_MAX} bytes"
        ));
    }
    Ok(name)
}

/// A unit's cgroup: its name (`php-fpm`, `worker#2`), with `_` in front of a name that could
/// be taken for a kernel file (`memory.max`, `cgroup.procs`: every such name has a dot) or that
/// starts with `_` itself, as systemd escapes cgroup names. Service names are letters, digits,
/// `-`, `_` and `.` (checked by `kiln check`), so nothing else needs escaping.
pub fn unit(unit: &str) -> String {
    if unit.contains('.') || unit.starts_with('_') {
        format!("_{unit}")
    } else {
        unit.to_string()
    }
}

/// systemd's path escaping (`systemd-escape --path`): slashes collapsed and trimmed, `/` → `-`,
/// every byte outside `[A-Za-z0-9:_.]` (and a leading `.`) as `\xNN`, the root as `-`.
fn escape_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() {
        return "-".into();
    }
    let joined = parts.join("/");
    let mut out = String::with_capacity(joined.len());
    for (i, byte) in joined.bytes().enumerate() {
        match byte {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.') => out.push(char::from(b)),
            b => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_is_named_after_the_state_dir_as_systemd_escapes_paths() {
        let name = |p: &str| instance(Path::new(p)).unwrap();
        assert_eq!(name("/run/kiln"), "kiln@run-kiln");
        assert_eq!(name("/run//kiln/"), "kiln@run-kiln");
        assert_eq!(
            name("/tmp/kiln-example-Ab_c.x/run/kiln"),
            "kiln@tmp-kiln\\x2dexample\\x2dAb_c.x-run-kiln"
        );
        assert_eq!(name("/.hidden dir"), "kiln@\\x2ehidden\\x20dir");
        assert_eq!(name("/"), "kiln@-");
        assert!(instance(Path::new(&format!("/{}", "a".repeat(300)))).is_err());
    }

    #[test]
    fn units_that_could_be_taken_for_kernel_files_get_an_underscore() {
        assert_eq!(unit("php-fpm"), "php-fpm");
        assert_eq!(unit("worker#2"), "worker#2");
        assert_eq!(unit("memory.max"), "_memory.max");
        assert_eq!(unit("_x"), "__x");
        assert_eq!(unit(".."), "_..");
    }
}
