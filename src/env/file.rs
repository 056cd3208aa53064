//! `STATE_DIR/env` and `STATE_DIR/instance.json`, written atomically.
//!
//! The env file is read back exactly by both systemd's `EnvironmentFile=` and a shell's
//! `set -a; . FILE`: every value is double-quoted and `\`, `"`, `$` and `` ` `` are
//! backslash-escaped. Inside double quotes those four are exactly the escapes both grammars
//! honour; every other character, newlines included, is taken literally by both. (Single quotes
//! would not do: systemd does not take the shell's `'\''` idiom.)

use super::FrozenEnv;
use crate::metadata::Metadata;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub fn write_files(state_dir: &Path, env: &FrozenEnv, metadata: &Metadata) -> io::Result<()> {
    fs::create_dir_all(state_dir)?;
    write_atomic(&state_dir.join("env"), 0o600, render(env).as_bytes())?;
    let mut facts = serde_json::to_vec_pretty(&metadata.facts).map_err(io::Error::other)?;
    facts.push(b'\n');
    write_atomic(&state_dir.join("instance.json"), 0o644, &facts)
}

/// The file's text: a comment, then `NAME="value"` lines sorted by name.
pub fn render(env: &FrozenEnv) -> String {
    let mut out = String::from(
        "# Written by kiln at boot: the frozen environment of every service. Do not edit;\n\
         # it is rewritten at every boot. Readable by systemd EnvironmentFile= and `set -a; . FILE`.\n",
    );
    // vars() is sorted (BTreeMap).
    for (name, value) in env.vars() {
        out.push_str(name);
        out.push('=');
        out.push_str(&quote(value));
        out.push('\n');
    }
    out
}

/// `value` double-quoted with `\`, `"`, `$` and `` ` `` backslash-escaped: the grammar of this
/// file, which `[render]`'s dotenv format writes too.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Temp file in the same directory (created with its final mode), fsync, rename over, fsync
/// the directory: a reader sees the old file or the new one, never half of one.
fn write_atomic(path: &Path, mode: u32, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.kiln-tmp"));
    // A leftover of a boot that died here: it is ours to replace.
    match fs::remove_file(&temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
