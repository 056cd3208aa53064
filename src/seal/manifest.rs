//! The manifest file: a versioned, line-based text format with one root hash over everything.
//!
//! ```text
//! kiln-seal 2
//! release v42
//! seal /srv/app/current
//! via /srv/app/current releases/42
//! d 0755 0 0 .
//! f 0644 33 33 1234 <blake3 hex> composer.json
//! l 0777 0 0 ../shared/.env .env
//! seal /usr/bin/php
//! f 0755 0 0 8123456 <blake3 hex> .
//! x security.capability 0100000280000000...
//! root <blake3 hex>
//! ```
//!
//! An optional `release` line (the image's label), then one `seal` line per sealed path (in
//! config order), the symlinks crossed on the way to its tree (`via <link> <target>`, see
//! `resolve.rs`), then its entries sorted component by component (`d`irectory, `f`ile, `l`ink,
//! `p`ipe, `s`ocket, `c`har and `b`lock devices with `major:minor`), paths relative to the tree
//! and escaped (see `escape.rs`). `x <name> <hex value>` lines after an entry are its extended
//! attributes (see `xattrs.rs`), sorted by name; `-` is an empty value. Text, so two images'
//! manifests can be compared with `diff`.
//!
//! The root hash is BLAKE3 over every line before the `root` line, with each `seal <path>` line
//! hashed as just `seal` and each `via <link> <target>` as `via <target>`: the same content sealed
//! under another folder has the same root hash, so instances and rebuilds can be compared. The
//! release label is covered: it cannot be edited without the manifest failing its own check. The
//! sealed paths themselves are checked against the config instead, the links against the paths as
//! they resolve, and a manifest that does not end in its `root` line is truncated.
//!
//! Version 1 (no extended attributes, symlinked sealed paths recorded as bare links) is refused
//! with a request to seal again: it cannot vouch for what version 2 covers.

use super::SealError;
use super::entry::{Entry, Kind, Mode};
use super::escape::{escape, unescape};
use super::resolve::Link;
use super::xattrs::Xattr;
use crate::config::Release;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const MAGIC: &str = "kiln-seal";
pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The image's label (`kiln seal --release`, `[seal] release`).
    pub release: Option<Release>,
    pub roots: Vec<SealedRoot>,
    pub root_hash: blake3::Hash,
}

/// One sealed path (`[seal] paths`) and every entry of the tree it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRoot {
    pub path: PathBuf,
    /// The symlinks crossed on the way to the tree, in order; empty when there are none.
    pub links: Vec<Link>,
    /// Sorted by path, component by component (the order of a sorted depth-first walk).
    pub entries: Vec<Entry>,
}

impl Manifest {
    pub fn new(release: Option<Release>, roots: Vec<SealedRoot>) -> Manifest {
        let mut manifest = Manifest {
            release,
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
        if let Some(release) = &self.release {
            text.push_str(&format!("release {release}\n"));
        }
        for root in &self.roots {
            text.push_str(&format!("seal {}\n", escape(root.path.as_os_str())));
            for link in &root.links {
                let (path, target) = (escape(link.path.as_os_str()), escape(link.target.as_os_str()));
                text.push_str(&format!("via {path} {target}\n"));
            }
            for entry in &root.entries {
                entry_lines(&mut text, entry);
            }
        }
        let mut hasher = blake3::Hasher::new();
        for line in text.split_terminator('\n') {
            hash_line(&mut hasher, line);
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
            Some(Ok(1)) => {
                return Err(
                    "format version 1, written by an older kiln: it does not cover extended \
                            attributes (file capabilities, ACLs) nor the trees behind symlinked \
                            sealed paths, so it cannot vouch for this image: seal again with this \
                            kiln (`kiln seal`)"
                        .into(),
                );
            }
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
            hash_line(&mut hasher, line);
        }
        let computed = hasher.finalize();
        if computed != recorded {
            return Err(format!(
                "edited: it records root hash {} but its content hashes to {}",
                recorded.to_hex(),
                computed.to_hex()
            ));
        }
        let (release, roots) = parse_body(body)?;
        Ok(Manifest {
            release,
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

/// Feeds one body line to the root hash (see the module comment for `seal` and `via`).
fn hash_line(hasher: &mut blake3::Hasher, line: &str) {
    if line.starts_with("seal ") {
        hasher.update(b"seal\n");
    } else if let Some(rest) = line.strip_prefix("via ") {
        let target = rest.rsplit(' ').next().unwrap_or_default();
        hasher.update(b"via ").update(target.as_bytes()).update(b"\n");
    } else {
        hasher.update(line.as_bytes()).update(b"\n");
    }
}

/// The lines after the first: the release, then each sealed path with its links and entries.
fn parse_body(body: &str) -> Result<(Option<Release>, Vec<SealedRoot>), String> {
    let mut release = None;
    let mut roots: Vec<SealedRoot> = Vec::new();
    for (i, line) in body.split('\n').enumerate().skip(1) {
        let at = |e: String| format!("line {}: {e}", i + 1);
        if let Some(label) = line.strip_prefix("release ") {
            if i != 1 {
                return Err(at("`release` must be the second line".into()));
            }
            release = Some(label.parse::<Release>().map_err(at)?);
            continue;
        }
        if let Some(path) = line.strip_prefix("seal ") {
            let path = unescape(path).map_err(at)?;
            roots.push(SealedRoot {
                path,
                links: Vec::new(),
                entries: Vec::new(),
            });
            continue;
        }
        let root = roots
            .last_mut()
            .ok_or_else(|| at("a line before any `seal` line".into()))?;
        if let Some(words) = line.strip_prefix("via ") {
            if !root.entries.is_empty() {
                return Err(at("`via` after the entries of its sealed path".into()));
            }
            let (path, target) = words.split_once(' ').ok_or_else(|| at("bad `via` line".into()))?;
            let (path, target) = (unescape(path).map_err(at)?, unescape(target).map_err(at)?);
            root.links.push(Link { path, target });
            continue;
        }
        if let Some(words) = line.strip_prefix("x ") {
            let entry = root
                .entries
                .last_mut()
                .ok_or_else(|| at("an attribute before any entry".into()))?;
            let xattr = parse_xattr(words).map_err(at)?;
            if entry
                .xattrs
                .last()
                .is_some_and(|before| before.name >= xattr.name)
            {
                return Err(at(format!("attribute {:?} is out of order", xattr.name)));
            }
            entry.xattrs.push(xattr);
            continue;
        }
        let entry = parse_entry(line).map_err(at)?;
        if let Some(before) = root.entries.last()
            && before.path >= entry.path
        {
            return Err(at(format!("{:?} is out of order", entry.path)));
        }
        root.entries.push(entry);
    }
    Ok((release, roots))
}

/// An entry's line and the lines of its attributes.
fn entry_lines(out: &mut String, e: &Entry) {
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
    for xattr in &e.xattrs {
        let value = match xattr.value.is_empty() {
            true => "-".to_string(),
            false => xattr.value.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let _ = writeln!(out, "x {} {value}", escape(&xattr.name));
    }
}

fn parse_xattr(words: &str) -> Result<Xattr, String> {
    let (name, value) = words
        .split_once(' ')
        .ok_or_else(|| format!("bad attribute line {words:?}"))?;
    let name = unescape(name)?.into_os_string();
    let value = match value {
        "-" => Vec::new(),
        hex if !hex.is_empty()
            && hex.len() % 2 == 0
            && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| format!("bad attribute value {hex:?}"))?
        }
        other => return Err(format!("bad attribute value {other:?}")),
    };
    if name.is_empty() {
        return Err("an attribute without a name".into());
    }
    Ok(Xattr { name, value })
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
        xattrs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: Kind, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            xattrs: Vec::new(),
        }
    }

    fn sample(root: &str) -> Manifest {
        let file = |path: &str, content: &[u8]| Entry {
            uid: 33,
            gid: 33,
            ..entry(
                path,
                Kind::File {
                    size: content.len() as u64,
                    hash: blake3::hash(content),
                },
                0o644,
            )
        };
        let mut php = file("bin/php", b"\x7fELF");
        php.xattrs = vec![
            Xattr {
                name: "security.capability".into(),
                value: vec![1, 0, 0, 2, 0x80, 0, 0, 0],
            },
            Xattr {
                name: "user.empty".into(),
                value: Vec::new(),
            },
        ];
        Manifest::new(
            Some("v42".parse().unwrap()),
            vec![SealedRoot {
                path: root.into(),
                links: vec![Link {
                    path: format!("{root}/current").into(),
                    target: "releases/42".into(),
                }],
                entries: vec![
                    entry("", Kind::Dir, 0o755),
                    file("a b", b"x"),
                    php,
                    entry(
                        "link",
                        Kind::Symlink {
                            target: "../a b".into(),
                        },
                        0o777,
                    ),
                    entry("null", Kind::CharDevice { major: 1, minor: 3 }, 0o666),
                    file("src/Kernel.php", b"<?php"),
                ],
            }],
        )
    }

    #[test]
    fn encodes_and_decodes_the_same_manifest() {
        let manifest = sample("/srv/app");
        let bytes = manifest.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), manifest);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(
                "kiln-seal 2\nrelease v42\nseal /srv/app\nvia /srv/app/current releases/42\nd 0755 0 0 .\nf 0644 33 33 1 "
            ),
            "{text}"
        );
        assert!(text.contains("\nl 0777 0 0 ../a\\x20b link\n"), "{text}");
        assert!(text.contains("\nc 0666 0 0 1:3 null\n"), "{text}");
        assert!(
            text.contains(" bin/php\nx security.capability 0100000280000000\nx user.empty -\nl "),
            "{text}"
        );
    }

    #[test]
    fn the_root_hash_ignores_where_the_tree_is_but_not_the_release() {
        let (a, b) = (sample("/srv/app"), sample("/tmp/elsewhere/copy"));
        assert_ne!(a.encode(), b.encode());
        assert_eq!(a.root_hash, b.root_hash);
        let other = Manifest::new(Some("v43".parse().unwrap()), a.roots.clone());
        assert_ne!(other.root_hash, a.root_hash);
        assert_ne!(Manifest::new(None, a.roots.clone()).root_hash, a.root_hash);
    }

    #[test]
    fn expected_finds_entries_and_subtrees() {
        let manifest = sample("/srv/app");
        let root = &manifest.roots[0];
        assert_eq!(root.expected(Path::new(""), true).len(), 6);
        assert_eq!(root.expected(Path::new(""), false).len(), 1);
        assert_eq!(root.expected(Path::new("src"), true).len(), 1);
        assert_eq!(root.expected(Path::new("src"), false).len(), 0);
        assert_eq!(root.expected(Path::new("src/Kernel.php"), false).len(), 1);
        assert_eq!(root.expected(Path::new("zzz"), true).len(), 0);
    }

    #[test]
    fn refuses_bad_manifests_with_a_clear_reason() {
        let good = sample("/srv/app").encode();
        let text = String::from_utf8(good.clone()).unwrap();
        let err = |bytes: &[u8]| Manifest::decode(bytes).unwrap_err();
        assert!(err(&good[..good.len() - 10]).contains("truncated"));
        assert!(err(&good[..good.len() / 2]).contains("truncated"));
        assert!(err(b"").contains("truncated"));
        assert!(err(b"kiln-se").contains("truncated"));
        assert!(err(b"kiln-seal 2\n").contains("truncated"));
        assert!(err(b"hello world\n").contains("not a kiln seal manifest"));
        assert!(err(b"kiln-seal 3\nseal /x\n").contains("format version 3"));
        let v1 = err(b"kiln-seal 1\nseal /x\nd 0755 0 0 .\nroot 00\n");
        assert!(
            v1.contains("format version 1") && v1.contains("seal again"),
            "{v1}"
        );
        for (from, to) in [
            ("f 0644 33 33 1 ", "f 0666 33 33 1 "),
            ("release v42", "release v43"),
            ("x security.capability 01", "x security.capability 00"),
            ("x user.empty -\n", ""),
            ("releases/42", "releases/43"),
        ] {
            let edited = text.replacen(from, to, 1);
            assert!(err(edited.as_bytes()).contains("edited"), "{from} -> {to}");
        }
    }
}
