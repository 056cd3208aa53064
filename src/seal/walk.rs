//! Walking a sealed tree into sorted entries, hashing file contents on every core.
//!
//! The walk starts where the sealed path leads (see `resolve.rs`), never follows a symlink below
//! it and never leaves it, visits the children of a directory in parallel (rayon), and returns
//! entries in the manifest's order: a sorted depth-first walk, which is the component-wise order of
//! `Path`. An entry that disappears while being walked is simply absent (the comparison then
//! reports it removed). Each entry's extended attributes are read with it.

use super::SealError;
use super::entry::{Entry, Kind, absolute};
use super::scope::{Located, Scope};
use super::xattrs::{self, Xattr};
use rayon::prelude::*;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Below this a file is read in one go; above it, in chunks hashed with rayon.
const CHUNK: usize = 1 << 20;

/// The entry at `rel` in the tree of `at` and, with `below`, everything under it.
pub fn walk(scope: &Scope, at: &Located, rel: &Path, below: bool) -> Result<Vec<Entry>, SealError> {
    let mut out = Vec::new();
    let abs = absolute(at.real(), rel);
    visit(scope, at, abs, rel.to_path_buf(), below, &mut out)?;
    Ok(out)
}

fn visit(
    scope: &Scope,
    at: &Located,
    abs: PathBuf,
    rel: PathBuf,
    below: bool,
    out: &mut Vec<Entry>,
) -> Result<(), SealError> {
    if scope.skips(at, &rel) {
        return Ok(());
    }
    let fail = |source: std::io::Error| SealError::Walk {
        path: abs.clone(),
        source,
    };
    let metadata = match std::fs::symlink_metadata(&abs) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        other => other.map_err(fail)?,
    };
    let mut kind = Kind::of(&metadata);
    let mut metadata_now = metadata;
    let mut file_xattrs = None;
    match &mut kind {
        Kind::File { size, hash } => match hash_file(&abs) {
            Ok(Some(hashed)) => {
                (*size, *hash, metadata_now) = (hashed.len, hashed.hash, hashed.metadata);
                file_xattrs = Some(hashed.xattrs);
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(fail(e)),
        },
        Kind::Symlink { target } => match std::fs::read_link(&abs) {
            Ok(t) => *target = t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // No longer a symlink: walk it again as whatever it is now.
                return visit(scope, at, abs.clone(), rel, below, out);
            }
            Err(e) => return Err(fail(e)),
        },
        _ => {}
    }
    let xattrs = match file_xattrs {
        Some(xattrs) => xattrs,
        None => match xattrs::of_path(&abs) {
            Ok(xattrs) => xattrs,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(fail(e)),
        },
    };
    let is_dir = matches!(kind, Kind::Dir);
    out.push(Entry::new(rel.clone(), kind, &metadata_now, xattrs));
    if !(is_dir && below) {
        return Ok(());
    }
    let mut names: Vec<OsString> = match std::fs::read_dir(&abs) {
        Ok(dir) => dir.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>(),
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Ok(());
        }
        Err(e) => Err(e),
    }
    .map_err(fail)?;
    names.sort_unstable();
    let children = names
        .into_par_iter()
        .map(|name| {
            let mut entries = Vec::new();
            visit(scope, at, abs.join(&name), rel.join(&name), true, &mut entries)?;
            Ok(entries)
        })
        .collect::<Result<Vec<_>, SealError>>()?;
    out.extend(children.into_iter().flatten());
    Ok(())
}

/// A regular file as it was read: its metadata and attributes are those of the very file hashed.
struct Hashed {
    metadata: Metadata,
    xattrs: Vec<Xattr>,
    len: u64,
    hash: blake3::Hash,
}

/// Hashes a regular file without following a symlink that replaced it. `None`: it is gone.
fn hash_file(path: &Path) -> std::io::Result<Option<Hashed>> {
    let mut file = match File::options()
        .read(true)
        // O_NONBLOCK: a fifo swapped in after the lstat must not hang the walk.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::other("changed type while being sealed"));
    }
    let xattrs = xattrs::of_file(&file)?;
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    if metadata.len() < CHUNK as u64 {
        let mut buf = Vec::with_capacity(metadata.len() as usize + 1);
        file.read_to_end(&mut buf)?;
        hasher.update(&buf);
        total = buf.len() as u64;
    } else {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut filled = 0;
            while filled < CHUNK {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if filled == 0 {
                break;
            }
            hasher.update_rayon(&buf[..filled]);
            total += filled as u64;
        }
    }
    Ok(Some(Hashed {
        metadata,
        xattrs,
        len: total,
        hash: hasher.finalize(),
    }))
}
