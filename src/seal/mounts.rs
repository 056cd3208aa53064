//! The mount table, for the watch. A bind mount over a sealed directory changes every file below
//! it without one write inside the tree, so inotify never hears of it; a mount that goes away
//! (kiln's own read-only bind) makes the tree writable again. `/proc/self/mountinfo` tells both,
//! and polling it gives POLLPRI when the table of kiln's mount namespace changes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

pub const MOUNTINFO: &str = crate::mountinfo::PATH;

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Unique within the namespace while mounted; a remount on the same point gets a new one.
    pub id: u64,
    pub point: PathBuf,
    pub fstype: String,
    /// The device, and for a bind mount the folder of it that was bound.
    pub source: String,
}

/// The open mount table: read it again whenever it is readable with priority.
pub struct MountTable {
    file: File,
}

impl MountTable {
    pub fn open() -> io::Result<MountTable> {
        Ok(MountTable {
            file: File::open(MOUNTINFO)?,
        })
    }

    /// The whole table now.
    pub fn read(&self) -> io::Result<Vec<Mount>> {
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(parse(&text))
    }
}

impl AsRawFd for MountTable {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// The mount table's lines as the watch compares them.
pub fn parse(text: &str) -> Vec<Mount> {
    crate::mountinfo::parse(text)
        .into_iter()
        .map(|m| Mount {
            id: m.id,
            source: match m.root.as_str() {
                "/" => m.device,
                folder => format!("{}:{folder}", m.device),
            },
            point: m.point,
            fstype: m.fstype,
        })
        .collect()
}

/// Whether a mount at `point` changes what `tree` (a real path) or the way to it shows: it is on
/// or below the tree, or above it.
pub fn touches(point: &Path, tree: &Path) -> bool {
    point.starts_with(tree) || tree.starts_with(point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_mountinfo_lines() {
        let text = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    36 22 254:0 /tmp/evil /srv/my\\040app/public rw,relatime - ext4 /dev/vda rw\n\
                    37 22 0:50 / /run/user rw shared:5 master:2 - tmpfs tmpfs rw,mode=700\n\
                    garbage\n";
        let mounts = parse(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(
            mounts[1],
            Mount {
                id: 36,
                point: "/srv/my app/public".into(),
                fstype: "ext4".into(),
                source: "/dev/vda:/tmp/evil".into(),
            }
        );
        assert_eq!(mounts[2].source, "tmpfs");
        assert!(touches(Path::new("/srv/app/public"), Path::new("/srv/app")));
        assert!(touches(Path::new("/srv"), Path::new("/srv/app")));
        assert!(!touches(Path::new("/srv/application"), Path::new("/srv/app")));
        assert!(!touches(Path::new("/run/netns/x"), Path::new("/srv/app")));
    }

    #[test]
    fn the_table_of_this_process_reads() {
        let mounts = MountTable::open().unwrap().read().unwrap();
        assert!(mounts.iter().any(|m| m.point == Path::new("/")), "{mounts:?}");
    }
}
