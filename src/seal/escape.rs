//! Paths as one space-free, printable word: the manifest stays one entry per line, and a file
//! name holding a newline or terminal escapes cannot forge lines in the manifest, a log or status.
//!
//! Valid UTF-8 other than controls, space and backslash is kept as is; every other byte is `\xHH`.
//! One spelling per byte string, so the encoding is deterministic.

use std::ffi::OsStr;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub fn escape(path: &OsStr) -> String {
    let mut out = String::with_capacity(path.len());
    for chunk in path.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == ' ' || c == '\\' {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A path for messages: escaped the same way.
pub fn shown(path: &Path) -> String {
    escape(path.as_os_str())
}

/// The inverse of [`escape`]; refuses any spelling [`escape`] would not have written.
pub fn unescape(word: &str) -> Result<PathBuf, String> {
    let mut out = Vec::with_capacity(word.len());
    let mut rest = word.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'\\' {
            let hex = tail
                .get(..3)
                .filter(|h| h[0] == b'x')
                .and_then(|h| std::str::from_utf8(&h[1..]).ok())
                .filter(|h| h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in {word:?}"))?;
            out.push(hex);
            rest = &tail[3..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    let path = PathBuf::from(OsStr::from_bytes(&out));
    if escape(path.as_os_str()) != word {
        return Err(format!("{word:?} is not in canonical form"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_names() {
        for name in [
            &b"plain/name.php"[..],
            b"with space",
            b"back\\slash",
            b"new\nline",
            b"\xff\xfe not utf8",
            "caf\u{e9}/\u{65e5}\u{672c}".as_bytes(),
            b"\x1b[31mred",
        ] {
            let os = OsStr::from_bytes(name);
            let word = escape(os);
            assert!(
                !word.contains([' ', '\n']) && !word.chars().any(char::is_control),
                "{word}"
            );
            assert_eq!(unescape(&word).unwrap().as_os_str(), os, "{word}");
        }
        assert_eq!(escape(OsStr::new("a b")), "a\\x20b");
        assert_eq!(escape(OsStr::new("caf\u{e9}")), "caf\u{e9}");
    }

    #[test]
    fn refuses_other_spellings() {
        assert!(unescape("a\\x41").is_err()); // `A` is written as itself
        assert!(unescape("a\\x2").is_err());
        assert!(unescape("a\\X20").is_err());
        assert!(unescape("a\\x2A").is_err()); // upper-case hex
    }
}
