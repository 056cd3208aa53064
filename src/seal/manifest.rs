//! The manifest file: a versioned, line-based text format with one root hash over everything.
//!
//! ```text
//! kiln-seal 1
//! seal /srv/app
//! d 0755 0 0 .
//! f 0644 33 33 1234 <blake3 hex> composer.json
//! l 0777 0 0 ../shared/.env .env
//! seal /usr/bin/kiln
//! f 0755 0 0 8123456 <blake3 hex> .
//! root <blake3 hex>
//! ```
//!
//! One `seal` line per sealed path (in config order), then its entries sorted component by
//! component (`d`irectory, `f`ile, `l`ink, `p`ipe, `s`ocket, `c`har and `b`lock devices with
//! `major:minor`), paths relative to the sealed path and escaped (see `escape.rs`). Text, so two
//! images' manifests can be compared with `diff`.
//!
//! The root hash is BLAKE3 over every line before the `root` line, with each `seal <path>` line
//! hashed as just `seal`: the same content sealed under another folder has the same root hash,
//! so instances and rebuilds can be compared. The sealed paths themselves are checked against the
//! config instead, and a manifest that does not end in its `root` line is truncated.

use super::SealError;
use super::entry::{Entry, Kind, Mode};
use super::escape::{escape, unescape};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const MAGIC: &str = "kiln-seal";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub roots: Vec<SealedRoot>,
    pub root_hash: blake3::Hash,
}

/// One sealed path (`[seal] paths`) and every entry under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRoot {
    pub path: PathBuf,
    /// Sorted by path, component by component (the order of a sorted depth-first walk).
    pub entries: Vec<Entry>,
}

impl Manifest {
    pub fn new(roots: Vec<SealedRoot>) -> Manifest {
        let mut manifest = Manifest {
            roots,
            root_hash: blake3::Hash::from_bytes([0; 32]),
        };
        manifest.root_hash = manifest.body().1;
        manifest
    }

    /// The exact bytes of the manifest file.
    pub fn encode(&self) -> Vec<u8> {
        let (mut text, hash) = self.body();
        text.push_str(&format!("root {}\n", hash.to_hex()));
        text.into_bytes()
    }

    /// Everything before the `root` line, and its root hash.
    fn body(&self) -> (String, blake3::Hash) {
        let mut text = format!("{MAGIC} {FORMAT_VERSION}\n");
        let mut hasher = blake3::Hasher::new();
        hasher.update(text.as_bytes());
        for root in &self.roots {
            text.push_str(&format!("seal {}\n", escape(root.path.as_os_str())));
            hasher.update(b"seal\n");
            for entry in &root.entries {
                let start = text.len();
                entry_line(&mut text, entry);
                hasher.update(&text.as_bytes()[start..]);
            }
        }
        (text, hasher.finalize())
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            if bytes.starts_with(MAGIC.as_bytes()) {
                "corrupt: not valid UTF-8".to_string()
            } else {
                "not a kiln seal manifest".to_string()
            }
        })?;
        let first = text.split('\n').next().unwrap_or_default();
        let Some(version) = first.strip_prefix(MAGIC) else {
            return Err(if text.is_empty() || MAGIC.starts_with(first) {
                "truncated: empty or cut in its first line".into()
            } else {
                "not a kiln seal manifest (it does not start with `kiln-seal`)".into()
            });
        };
        match version.strip_prefix(' ').map(str::parse::<u32>) {
            Some(Ok(FORMAT_VERSION)) if text.len() > first.len() => {}
            Some(Ok(v)) if v != FORMAT_VERSION => {
                return Err(format!(
                    "format version {v}, but this kiln reads version {FORMAT_VERSION}: \
                     seal again with this kiln (`kiln seal`)"
                ));
            }
            _ if text.len() == first.len() => return Err("truncated after its first line".into()),
            _ => return Err(format!("unreadable format version in {first:?}")),
        }

        let body_and_root = text
            .strip_suffix('\n')
            .ok_or("truncated: it does not end with a newline")?;
        let (body, root_line) = match body_and_root.rsplit_once('\n') {
            Some((body, last)) => (body, last),
            None => return Err("truncated: no root line".into()),
        };
        let recorded = root_line
            .strip_prefix("root ")
            .and_then(|hex| blake3::Hash::from_hex(hex).ok())
            .ok_or("truncated: the last line is not `root <hash>`")?;

        let mut hasher = blake3::Hasher::new();
        for line in body.split('\n') {
            match line.starts_with("seal ") {
                true => hasher.update(b"seal\n"),
                false => hasher.update(line.as_bytes()).update(b"\n"),
            };
        }
        let computed = hasher.finalize();
        if computed != recorded {
            return Err(format!(
                "edited: it records root hash {} but its content hashes to {}",
                recorded.to_hex(),
                computed.to_hex()
            ));
        }

        let mut roots: Vec<SealedRoot> = Vec::new();
        for (i, line) in body.split('\n').enumerate().skip(1) {
            let at = |e: String| format!("line {}: {e}", i + 1);
            if let Some(path) = line.strip_prefix("seal ") {
                let path = unescape(path).map_err(at)?;
                roots.push(SealedRoot {
                    path,
                    entries: Vec::new(),
                });
                continue;
            }
            let entry = parse_entry(line).map_err(at)?;
            let root = roots
                .last_mut()
                .ok_or_else(|| at("an entry before any `seal` line".into()))?;
            if let Some(before) = root.entries.last()
                && before.path >= entry.path
            {
                return Err(at(format!("{:?} is out of order", entry.path)));
            }
            root.entries.push(entry);
        }
        Ok(Manifest {
            roots,
            root_hash: recorded,
        })
    }

    /// Reads and checks the manifest file.
    pub fn read(path: &Path) -> Result<Manifest, SealError> {
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                SealError::ManifestMissing {
                    path: path.to_path_buf(),
                }
            } else {
                SealError::ManifestUnreadable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Manifest::decode(&bytes).map_err(|reason| SealError::ManifestInvalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Writes the manifest atomically: a temporary file beside it, fsync, rename, fsync the folder.
    pub fn write(&self, path: &Path) -> Result<(), SealError> {
        let fail = |source: std::io::Error| SealError::ManifestWrite {
            path: path.to_path_buf(),
            source,
        };
        let temp = temp_path(path);
        let dir = path.parent().unwrap_or(Path::new("/"));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&temp)?;
            file.write_all(&self.encode())?;
            file.sync_all()?;
            std::fs::rename(&temp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map_err(fail)
    }

    pub fn root_hash_hex(&self) -> String {
        self.root_hash.to_hex().to_string()
    }

    pub fn entry_count(&self) -> usize {
        self.roots.iter().map(|r| r.entries.len()).sum()
    }

    /// Regular files and their total size.
    pub fn file_totals(&self) -> (usize, u64) {
        self.roots
            .iter()
            .flat_map(|r| &r.entries)
            .filter_map(|e| match e.kind {
                Kind::File { size, .. } => Some(size),
                _ => None,
            })
            .fold((0, 0), |(n, total), size| (n + 1, total + size))
    }
}

impl SealedRoot {
    /// The entry at `rel`, or everything at and below it, as recorded.
    pub fn expected(&self, rel: &Path, below: bool) -> &[Entry] {
        let start = self.entries.partition_point(|e| e.path.as_path() < rel);
        let rest = &self.entries[start..];
        let len = if below {
            rest.partition_point(|e| e.path.starts_with(rel))
        } else {
            usize::from(rest.first().is_some_and(|e| e.path == rel))
        };
        &rest[..len]
    }
}

/// Where [`Manifest::write`] stages the file; the walk never seals it either.
pub fn temp_path(manifest: &Path) -> PathBuf {
    let name = manifest.file_name().unwrap_or_default().to_string_lossy();
    manifest.with_file_name(format!(".{name}.kiln-tmp"))
}

fn entry_line(out: &mut String, e: &Entry) {
    use std::fmt::Write;
    let path = if e.path.as_os_str().is_empty() {
        ".".to_string()
    } else {
        escape(e.path.as_os_str())
    };
    let (mode, uid, gid) = (Mode(e.mode), e.uid, e.gid);
    let _ = match &e.kind {
        Kind::Dir => writeln!(out, "d {mode} {uid} {gid} {path}"),
        Kind::File { size, hash } => writeln!(out, "f {mode} {uid} {gid} {size} {} {path}", hash.to_hex()),
        Kind::Symlink { target } => {
            writeln!(out, "l {mode} {uid} {gid} {} {path}", escape(target.as_os_str()))
        }
        Kind::Fifo => writeln!(out, "p {mode} {uid} {gid} {path}"),
        Kind::Socket => writeln!(out, "s {mode} {uid} {gid} {path}"),
        Kind::CharDevice { major, minor } => writeln!(out, "c {mode} {uid} {gid} {major}:{minor} {path}"),
        Kind::BlockDevice { major, minor } => writeln!(out, "b {mode} {uid} {gid} {major}:{minor} {path}"),
    };
}

fn parse_entry(line: &str) -> Result<Entry, String> {
    let fields: Vec<&str> = line.split(' ').collect();
    let want = match fields[0] {
        "d" | "p" | "s" => 5,
        "l" | "c" | "b" => 6,
        "f" => 7,
        other => return Err(format!("unknown entry type {other:?}")),
    };
    if fields.len() != want {
        return Err(format!("expected {want} fields, found {}", fields.len()));
    }
    let mode = u32::from_str_radix(fields[1], 8)
        .ok()
        .filter(|m| *m <= 0o7777 && fields[1].len() == 4)
        .ok_or_else(|| format!("bad mode {:?}", fields[1]))?;
    let number = |s: &str| s.parse::<u32>().map_err(|_| format!("bad number {s:?}"));
    let (uid, gid) = (number(fields[2])?, number(fields[3])?);
    let device = |s: &str| -> Result<(u32, u32), String> {
        let (major, minor) = s.split_once(':').ok_or_else(|| format!("bad device {s:?}"))?;
        Ok((number(major)?, number(minor)?))
    };
    let kind = match fields[0] {
        "d" => Kind::Dir,
        "p" => Kind::Fifo,
        "s" => Kind::Socket,
        "l" => Kind::Symlink {
            target: unescape(fields[4])?,
        },
        "c" => {
            let (major, minor) = device(fields[4])?;
            Kind::CharDevice { major, minor }
        }
        "b" => {
            let (major, minor) = device(fields[4])?;
            Kind::BlockDevice { major, minor }
        }
        _ => Kind::File {
            size: fields[4]
                .parse()
                .map_err(|_| format!("bad size {:?}", fields[4]))?,
            hash: blake3::Hash::from_hex(fields[5]).map_err(|_| format!("bad hash {:?}", fields[5]))?,
        },
    };
    let path = match fields[want - 1] {
        "." => PathBuf::new(),
        word => {
            let path = unescape(word)?;
            if !path.is_relative()
                || path
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(format!("bad path {word:?}"));
            }
            path
        }
    };
    Ok(Entry {
        path,
        kind,
        mode,
        uid,
        gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(root: &str) -> Manifest {
        let file = |path: &str, content: &[u8]| Entry {
            path: path.into(),
            kind: Kind::File {
                size: content.len() as u64,
                hash: blake3::hash(content),
            },
            mode: 0o644,
            uid: 33,
            gid: 33,
        };
        Manifest::new(vec![SealedRoot {
            path: root.into(),
            entries: vec![
                Entry {
                    path: "".into(),
                    kind: Kind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                },
                file("a b", b"x"),
                Entry {
                    path: "link".into(),
                    kind: Kind::Symlink {
                        target: "../a b".into(),
                    },
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                },
                Entry {
                    path: "null".into(),
                    kind: Kind::CharDevice { major: 1, minor: 3 },
                    mode: 0o666,
                    uid: 0,
                    gid: 0,
                },
                file("src/Kernel.php", b"<?php"),
            ],
        }])
    }

    #[test]
    fn encodes_and_decodes_the_same_manifest() {
        let manifest = sample("/srv/app");
        let bytes = manifest.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), manifest);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("kiln-seal 1\nseal /srv/app\nd 0755 0 0 .\nf 0644 33 33 1 "));
        assert!(text.contains("\nl 0777 0 0 ../a\\x20b link\n"), "{text}");
        assert!(text.contains("\nc 0666 0 0 1:3 null\n"), "{text}");
    }

    #[test]
    fn the_root_hash_ignores_where_the_tree_is() {
        let (a, b) = (sample("/srv/app"), sample("/tmp/elsewhere/copy"));
        assert_ne!(a.encode(), b.encode());
        assert_eq!(a.root_hash, b.root_hash);
    }

    #[test]
    fn expected_finds_entries_and_subtrees() {
        let manifest = sample("/srv/app");
        let root = &manifest.roots[0];
        assert_eq!(root.expected(Path::new(""), true).len(), 5);
        assert_eq!(root.expected(Path::new(""), false).len(), 1);
        assert_eq!(root.expected(Path::new("src"), true).len(), 1);
        assert_eq!(root.expected(Path::new("src"), false).len(), 0);
        assert_eq!(root.expected(Path::new("src/Kernel.php"), false).len(), 1);
        assert_eq!(root.expected(Path::new("zzz"), true).len(), 0);
    }

    #[test]
    fn refuses_bad_manifests_with_a_clear_reason() {
        let good = sample("/srv/app").encode();
        let err = |bytes: &[u8]| Manifest::decode(bytes).unwrap_err();
        assert!(err(&good[..good.len() - 10]).contains("truncated"));
        assert!(err(&good[..good.len() / 2]).contains("truncated"));
        assert!(err(b"").contains("truncated"));
        assert!(err(b"kiln-se").contains("truncated"));
        assert!(err(b"kiln-seal 1\n").contains("truncated"));
        assert!(err(b"hello world\n").contains("not a kiln seal manifest"));
        assert!(err(b"kiln-seal 2\nseal /x\n").contains("format version 2"));
        let edited = String::from_utf8(good.clone())
            .unwrap()
            .replace("f 0644 33 33 1 ", "f 0666 33 33 1 ");
        assert!(err(edited.as_bytes()).contains("edited"));
    }
}
