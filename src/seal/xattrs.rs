//! Extended attributes as the seal records them. File capabilities (`security.capability`) and
//! POSIX ACLs (`system.posix_acl_access`, `system.posix_acl_default`) change who may do what
//! without touching a byte or a mode bit, so every attribute is sealed except two namespaces that
//! belong to the machine the image runs on rather than to the image:
//!
//! - `trusted.*`: filesystem bookkeeping (overlayfs' `trusted.overlay.*`, glusterfs) that differs
//!   with how the image is assembled and mounted, and readable only with CAP_SYS_ADMIN, so an
//!   unprivileged `kiln verify` would see another list than the boot;
//! - `security.*` other than `security.capability`: LSM labels (`security.selinux`,
//!   `security.SMACK64`) set by the running machine's policy (a relabel on first boot changes every
//!   file) and IMA/EVM hashes and signatures written by its kernel (EVM's HMAC key is per machine).
//!   The LSM that reads them is their guard.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use xattr::FileExt;

pub const CAPABILITY: &str = "security.capability";
pub const ACL_ACCESS: &str = "system.posix_acl_access";
pub const ACL_DEFAULT: &str = "system.posix_acl_default";

/// One extended attribute of a sealed entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Xattr {
    pub name: OsString,
    pub value: Vec<u8>,
}

/// Whether the seal records an attribute of this name (see the module comment).
pub fn sealed(name: &OsStr) -> bool {
    let name = name.as_bytes();
    !(name.starts_with(b"trusted.") || (name.starts_with(b"security.") && name != CAPABILITY.as_bytes()))
}

/// The sealed attributes of `path` itself (a symlink is not followed), sorted by name.
pub fn of_path(path: &Path) -> io::Result<Vec<Xattr>> {
    collect(xattr::list(path), |name| xattr::get(path, name))
}

/// The sealed attributes of an open file, sorted by name.
pub fn of_file(file: &File) -> io::Result<Vec<Xattr>> {
    collect(file.list_xattr(), |name| file.get_xattr(name))
}

fn collect(
    names: io::Result<xattr::XAttrs>,
    get: impl Fn(&OsStr) -> io::Result<Option<Vec<u8>>>,
) -> io::Result<Vec<Xattr>> {
    let names = match names {
        Ok(names) => names,
        // A filesystem without extended attributes has none to seal.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.filter(|n| sealed(n)) {
        match get(&name) {
            Ok(Some(value)) => out.push(Xattr { name, value }),
            // Removed between the list and the read: it is not there.
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// What an attribute's value means, for a difference line: capabilities as `getcap` prints them,
/// ACLs as `getfacl` does (numeric ids); other values are not shown (they could be anything).
pub fn describe(name: &OsStr, value: &[u8]) -> Option<String> {
    match name.to_str()? {
        CAPABILITY => capabilities(value),
        ACL_ACCESS | ACL_DEFAULT => acl(value),
        _ => None,
    }
}

/// What an attribute is, for a difference line: `capabilities`, `access ACL`, `xattr user.x`.
pub fn title(name: &OsStr) -> String {
    match name.to_str() {
        Some(CAPABILITY) => "capabilities".into(),
        Some(ACL_ACCESS) => "access ACL".into(),
        Some(ACL_DEFAULT) => "default ACL".into(),
        _ => format!("xattr {}", super::escape::escape(name)),
    }
}

/// `vfs_cap_data` (linux/capability.h): magic and flags, then permitted and inheritable masks in
/// 32-bit halves; revision 3 adds the root id of the user namespace that set it.
fn capabilities(value: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u64> {
        let bytes = value.get(i * 4..i * 4 + 4)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?) as u64)
    };
    let magic = word(0)?;
    let effective = magic & 1 == 1;
    let (permitted, inheritable) = match (magic & 0xff00_0000, value.len()) {
        (0x0100_0000, 12) => (word(1)?, word(2)?),
        (0x0200_0000, 20) | (0x0300_0000, 24) => (word(1)? | word(3)? << 32, word(2)? | word(4)? << 32),
        _ => return None,
    };
    let mut known: Vec<caps::Capability> = caps::all().into_iter().collect();
    known.sort_by_key(|c| c.index());
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for cap in known {
        let (p, i) = (permitted & cap.bitmask() != 0, inheritable & cap.bitmask() != 0);
        if !(p || i) {
            continue;
        }
        let flags = [(effective, 'e'), (i, 'i'), (p, 'p')]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| *c)
            .collect::<String>();
        let name = cap.to_string().to_lowercase();
        match groups.iter_mut().find(|(f, _)| *f == flags) {
            Some((_, names)) => names.push(name),
            None => groups.push((flags, vec![name])),
        }
    }
    let text: Vec<String> = groups
        .into_iter()
        .map(|(flags, names)| format!("{}={flags}", names.join(",")))
        .collect();
    Some(if text.is_empty() {
        "none".into()
    } else {
        text.join(" ")
    })
}

/// `posix_acl_xattr` (linux/posix_acl_xattr.h): version 2, then 8-byte entries of tag,
/// permissions and id.
fn acl(value: &[u8]) -> Option<String> {
    let (header, entries) = value.split_at_checked(4)?;
    if u32::from_le_bytes(header.try_into().ok()?) != 2 || entries.len() % 8 != 0 {
        return None;
    }
    let mut text = Vec::new();
    for entry in entries.chunks_exact(8) {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        let perm = u16::from_le_bytes([entry[2], entry[3]]);
        let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        let who = match tag {
            0x01 => "user:".to_string(),
            0x02 => format!("user:{id}"),
            0x04 => "group:".to_string(),
            0x08 => format!("group:{id}"),
            0x10 => "mask:".to_string(),
            0x20 => "other:".to_string(),
            _ => return None,
        };
        let bits: String = [(4, 'r'), (2, 'w'), (1, 'x')]
            .iter()
            .map(|(bit, c)| if perm & bit != 0 { *c } else { '-' })
            .collect();
        text.push(format!("{who}:{bits}"));
    }
    Some(text.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_namespaces_are_left_out() {
        for name in [
            "user.origin",
            CAPABILITY,
            ACL_ACCESS,
            ACL_DEFAULT,
            "system.nfs4_acl",
        ] {
            assert!(sealed(OsStr::new(name)), "{name}");
        }
        for name in [
            "trusted.overlay.opaque",
            "security.selinux",
            "security.ima",
            "security.evm",
        ] {
            assert!(!sealed(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn capabilities_read_like_getcap() {
        // setcap cap_setuid+ep: revision 2, effective, permitted bit 7.
        let mut v2 = vec![0u8; 20];
        v2[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
        v2[4..8].copy_from_slice(&(1u32 << 7).to_le_bytes());
        assert_eq!(capabilities(&v2).unwrap(), "cap_setuid=ep");
        // cap_net_bind_service (10) permitted and inheritable, cap_bpf (39, high word) permitted.
        v2[..4].copy_from_slice(&0x0200_0000u32.to_le_bytes());
        v2[4..8].copy_from_slice(&(1u32 << 10).to_le_bytes());
        v2[8..12].copy_from_slice(&(1u32 << 10).to_le_bytes());
        v2[12..16].copy_from_slice(&(1u32 << 7).to_le_bytes());
        assert_eq!(capabilities(&v2).unwrap(), "cap_net_bind_service=ip cap_bpf=p");
        assert_eq!(capabilities(&v2[..7]), None);
    }

    #[test]
    fn acls_read_like_getfacl() {
        let mut value = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 6, 65534),
            (4, 4, u32::MAX),
            (0x10, 6, u32::MAX),
            (0x20, 4, u32::MAX),
        ] {
            value.extend(tag.to_le_bytes());
            value.extend(perm.to_le_bytes());
            value.extend(id.to_le_bytes());
        }
        assert_eq!(
            acl(&value).unwrap(),
            "user::rw-,user:65534:rw-,group::r--,mask::rw-,other::r--"
        );
        assert_eq!(acl(&value[..10]), None);
    }
}
