//! Where a sealed path leads. PHP deploys put releases side by side and point a symlink at the
//! live one (`/srv/app/current -> releases/42`), so a sealed path is often a symlink or lies
//! below one. The seal then covers both: every symlink crossed on the way (its target text: swapping
//! `current` is drift) and the tree it leads to (changing the release is drift). Symlinks inside a
//! sealed tree are recorded as links and never followed.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};

/// Like the kernel's limit on symlinks in one lookup (MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// A symlink crossed on the way to a sealed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Where the link is, with every symlink before it resolved.
    pub path: PathBuf,
    /// What it says, as `readlink` gives it.
    pub target: PathBuf,
}

/// A sealed path, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The symlinks crossed, in the order they were met.
    pub links: Vec<Link>,
    /// The path with no symlink left in it: where the tree is. A missing component ends the
    /// resolution; the rest is joined as written (the walk then finds nothing there).
    pub real: PathBuf,
}

enum Step {
    Up,
    Name(OsString),
}

/// Resolves `path` (absolute) component by component, like the kernel does, noting each link.
pub fn resolve(path: &Path) -> io::Result<Resolved> {
    let mut links = Vec::new();
    let mut real = PathBuf::from("/");
    let mut pending = steps(path);
    while let Some(step) = pending.pop_front() {
        let name = match step {
            Step::Up => {
                real.pop();
                continue;
            }
            Step::Name(name) => name,
        };
        let next = real.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                if links.len() == MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&next)?;
                if target.is_absolute() {
                    real = PathBuf::from("/");
                }
                for step in steps(&target).into_iter().rev() {
                    pending.push_front(step);
                }
                links.push(Link { path: next, target });
            }
            Ok(_) => real = next,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                real = next;
                for step in pending.drain(..) {
                    match step {
                        Step::Up => drop(real.pop()),
                        Step::Name(name) => real.push(name),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Resolved { links, real })
}

fn steps(path: &Path) -> VecDeque<Step> {
    path.components()
        .filter_map(|c| match c {
            Component::ParentDir => Some(Step::Up),
            Component::Normal(name) => Some(Step::Name(name.to_owned())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn notes_every_link_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("srv/releases/42/public")).unwrap();
        symlink("releases/42", base.join("srv/current")).unwrap();
        symlink(base.join("srv"), base.join("app")).unwrap();

        let plain = resolve(&base.join("srv/releases/42")).unwrap();
        assert_eq!(plain.links, vec![]);
        assert_eq!(plain.real, base.join("srv/releases/42"));

        let below = resolve(&base.join("app/current/public")).unwrap();
        assert_eq!(
            below.links,
            vec![
                Link {
                    path: base.join("app"),
                    target: base.join("srv")
                },
                Link {
                    path: base.join("srv/current"),
                    target: "releases/42".into()
                },
            ]
        );
        assert_eq!(below.real, base.join("srv/releases/42/public"));

        symlink("../releases/../releases/43", base.join("srv/releases/next")).unwrap();
        let missing = resolve(&base.join("srv/releases/next/public")).unwrap();
        assert_eq!(missing.real, base.join("srv/releases/43/public"));

        symlink("loop", base.join("loop")).unwrap();
        let err = resolve(&base.join("loop/x")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }
}
