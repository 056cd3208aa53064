//! One sealed path as the manifest records it: what it is and who may touch it. Times and inode
//! numbers are left out on purpose: they differ between two copies of the same tree.

use super::xattrs::Xattr;
use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to its sealed root; empty for the root itself (written `.` in the manifest).
    pub path: PathBuf,
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Extended attributes (capabilities, ACLs, ...; see `xattrs.rs`), sorted by name.
    pub xattrs: Vec<Xattr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64, hash: blake3::Hash },
    Symlink { target: PathBuf },
    Fifo,
    Socket,
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
}

impl Kind {
    /// The kind of entry `metadata` describes, with the content parts (size, hash, target) left
    /// for the walk to fill in.
    pub(crate) fn of(metadata: &std::fs::Metadata) -> Kind {
        let ft = metadata.file_type();
        let rdev = metadata.rdev();
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink {
                target: PathBuf::new(),
            }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else if ft.is_char_device() {
            Kind::CharDevice {
                major: libc::major(rdev),
                minor: libc::minor(rdev),
            }
        } else if ft.is_block_device() {
            Kind::BlockDevice {
                major: libc::major(rdev),
                minor: libc::minor(rdev),
            }
        } else {
            Kind::File {
                size: metadata.len(),
                hash: blake3::Hash::from_bytes([0; 32]),
            }
        }
    }

    /// A word for people: `file`, `directory`, `symlink`...
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Dir => "directory",
            Kind::File { .. } => "file",
            Kind::Symlink { .. } => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::CharDevice { .. } => "character device",
            Kind::BlockDevice { .. } => "block device",
        }
    }

    pub(crate) fn same_type(&self, other: &Kind) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl Entry {
    pub(crate) fn new(path: PathBuf, kind: Kind, metadata: &std::fs::Metadata, xattrs: Vec<Xattr>) -> Entry {
        Entry {
            path,
            kind,
            mode: metadata.mode() & 0o7777,
            uid: metadata.uid(),
            gid: metadata.gid(),
            xattrs,
        }
    }
}

/// The absolute path of `rel` under `root` (`root` itself for the empty relative path).
pub fn absolute(root: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Mode bits as the manifest and the differences print them: `0644`, `4755`.
pub(crate) struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}
