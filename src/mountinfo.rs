//! `/proc/self/mountinfo` (proc(5)), one parser for the two rooms that read it: the seal's watch
//! (a mount over a sealed path) and the cgroup room (where cgroup2 is mounted).
//!
//! `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: id, parent,
//! device, root, mount point, options, optional fields, `-`, type, source, super options.

use std::path::PathBuf;

pub const PATH: &str = "/proc/self/mountinfo";

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Unique within the namespace while mounted; a remount on the same point gets a new one.
    pub id: u64,
    /// The folder of the file system shown at the mount point (`/` unless a bind mount).
    pub root: String,
    pub point: PathBuf,
    /// Per-mount options (`rw,relatime`).
    pub options: String,
    pub fstype: String,
    pub device: String,
}

impl Mount {
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Every line that parses; others are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let dash = fields.iter().position(|f| *f == "-")?;
    Some(Mount {
        id: fields.first()?.parse().ok()?,
        root: unescape(fields.get(3)?),
        point: PathBuf::from(unescape(fields.get(4)?)),
        options: fields.get(5)?.to_string(),
        fstype: unescape(fields.get(dash.checked_add(1)?)?),
        device: unescape(fields.get(dash.checked_add(2)?)?),
    })
}

/// The kernel writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| byte == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(decoded) => {
                out.push(decoded);
                i += 4;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let text = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    36 22 254:0 /tmp/evil /srv/my\\040app/public ro,relatime - ext4 /dev/vda rw\n\
                    37 22 0:50 / /run/user rw shared:5 master:2 - tmpfs tmpfs rw,mode=700\n\
                    garbage\n";
        let mounts = parse(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[1].point, PathBuf::from("/srv/my app/public"));
        assert_eq!(
            (mounts[1].root.as_str(), mounts[1].read_only()),
            ("/tmp/evil", true)
        );
        assert_eq!(
            (mounts[2].fstype.as_str(), mounts[2].device.as_str()),
            ("tmpfs", "tmpfs")
        );
        assert_eq!(unescape("a\\134b\\9"), "a\\b\\9");
    }
}
