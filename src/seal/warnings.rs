//! What `kiln check` (and the boot's log) warns about the sealed paths on this machine: a path
//! that is not there (through the symlinks on its way, as `kiln seal` follows them), which `kiln
//! seal` would refuse. It looks at the machine, so it lives here rather than with the config's
//! own warnings.

use super::scope::Located;
use crate::config::SealConfig;
use std::io::ErrorKind;
use std::path::Path;

/// One warning per sealed path `kiln seal` could not read here, in `paths` order.
pub fn warnings(config: &SealConfig) -> Vec<String> {
    if !config.is_enabled() {
        return Vec::new();
    }
    config.paths.iter().filter_map(|path| unreadable(path)).collect()
}

/// Why `kiln seal` would refuse `path`, found the way it finds it; None when it can read it.
fn unreadable(path: &Path) -> Option<String> {
    let fix = "put it in place before kiln seal, or take it out of paths";
    let at = match Located::new(path) {
        Ok(at) => at,
        Err(e) => return Some(format!("[seal] paths: {}: {e}; {fix}", path.display())),
    };
    let error = std::fs::symlink_metadata(at.real()).err()?;
    let what = match at.real() == path {
        true => path.display().to_string(),
        false => format!("{} leads to {}, which", path.display(), at.real().display()),
    };
    Some(match error.kind() {
        ErrorKind::NotFound => format!("[seal] paths: {what} does not exist: kiln seal refuses it; {fix}"),
        _ => format!("[seal] paths: {what} cannot be read ({error}): kiln seal refuses it; {fix}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_path_that_is_not_there_is_named_with_where_it_leads() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("app")).unwrap();
        std::os::unix::fs::symlink("releases/42", base.join("current")).unwrap();
        let config = SealConfig {
            paths: vec![base.join("app"), base.join("gone"), base.join("current")],
            ..SealConfig::default()
        };
        assert_eq!(
            warnings(&config),
            [
                format!(
                    "[seal] paths: {} does not exist: kiln seal refuses it; put it in place before kiln seal, or take it out of paths",
                    base.join("gone").display()
                ),
                format!(
                    "[seal] paths: {} leads to {}, which does not exist: kiln seal refuses it; put it in place before kiln seal, or take it out of paths",
                    base.join("current").display(),
                    base.join("releases/42").display()
                ),
            ]
        );
        assert!(warnings(&SealConfig::default()).is_empty());
    }
}
