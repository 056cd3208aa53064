//! Reading the config file itself: a regular file, and a small one.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest config read. A kiln.toml is a few KiB (the example is 4, a hundred services
/// would be about 100): a file over 1 MiB is not a config but a wrong `--config` (a log, an
/// image), and reading it whole would only cost memory and time before a parse error.
pub const MAX_BYTES: u64 = 1 << 20;

/// The file's text, or why it cannot be a config: not a regular file (`/dev/zero` would be read
/// until memory runs out, a FIFO would block), over [`MAX_BYTES`], unreadable or not UTF-8.
pub fn read(path: &Path) -> Result<String, String> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer before its type can be told.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let kind = file
        .metadata()
        .map_err(|e| format!("cannot read: {e}"))?
        .file_type();
    if !kind.is_file() {
        return Err(format!("not a regular file ({})", describe(&kind)));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_BYTES {
        return Err("over 1 MiB: a kiln.toml is a few KiB; is this the config?".into());
    }
    String::from_utf8(bytes).map_err(|e| format!("cannot read: not UTF-8 text ({e})"))
}

fn describe(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}
