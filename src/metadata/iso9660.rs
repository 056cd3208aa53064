//! Just enough ISO 9660 (ECMA-119) to read a config drive's few files by path, from the device
//! itself: the volume descriptors, the directory tree (Joliet's when there is one: the names
//! Nova, cloud-localds and `genisoimage -J` write; else the primary tree, whose names are
//! compared without their `;1` version and trailing dot, ignoring case), and a file's extent.
//!
//! Every number comes from the device, which kiln does not trust: offsets and lengths are
//! checked before use, directories are read up to [`DIR_MAX`], files up to the caller's limit,
//! and a path is at most a few components deep, so a crafted image ends in an error, never a
//! loop or a panic. Rock Ridge is not read (its names repeat Joliet's on the images above).

use std::io::{Read, Seek, SeekFrom};

const SECTOR: u64 = 2048;
/// Volume descriptors start at sector 16.
const FIRST_DESCRIPTOR: u64 = 16;
/// Descriptors looked at before giving up on the terminator.
const DESCRIPTORS_MAX: u64 = 32;
/// The largest directory read: a config drive's hold a handful of entries.
const DIR_MAX: u32 = 1024 * 1024;

/// Where a directory or file lies on the device.
#[derive(Debug, Clone, Copy)]
struct Extent {
    lba: u32,
    len: u32,
    dir: bool,
}

/// An ISO 9660 volume on `device`.
pub struct Iso<R> {
    device: R,
    root: Extent,
    joliet: bool,
}

/// The label (volume identifier) of an ISO 9660 volume, from its first 64 KiB: Joliet's when
/// there is one, else the primary one. None when `head` holds no ISO 9660 volume.
pub fn label(head: &[u8]) -> Option<String> {
    let mut primary = None;
    for n in 0..DESCRIPTORS_MAX {
        let at = usize::try_from((FIRST_DESCRIPTOR + n) * SECTOR).ok()?;
        let descriptor = head.get(at..at.checked_add(2048)?)?;
        if descriptor.get(1..6) != Some(b"CD001") {
            return primary;
        }
        let id = descriptor.get(40..72)?;
        match descriptor[0] {
            1 => primary = Some(String::from_utf8_lossy(id).trim_end().to_string()),
            2 if is_joliet(descriptor) => return Some(ucs2(id).trim_end().to_string()),
            255 => return primary,
            _ => {}
        }
    }
    primary
}

fn is_joliet(descriptor: &[u8]) -> bool {
    matches!(descriptor.get(88..91), Some(b"%/@" | b"%/C" | b"%/E"))
}

fn ucs2(bytes: &[u8]) -> String {
    let units = bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

fn u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<R: Read + Seek> Iso<R> {
    /// Reads the volume descriptors; the root of Joliet's tree if there is one.
    pub fn open(mut device: R) -> Result<Iso<R>, String> {
        let mut primary = None;
        for n in 0..DESCRIPTORS_MAX {
            let descriptor = read_at(&mut device, (FIRST_DESCRIPTOR + n) * SECTOR, 2048)?;
            if descriptor.get(1..6) != Some(b"CD001") {
                break;
            }
            let root = || record(descriptor.get(156..190)?).map(|(extent, _)| extent);
            match descriptor[0] {
                1 => primary = root(),
                2 if is_joliet(&descriptor) => {
                    let root = root().ok_or("the Joliet root directory record is malformed")?;
                    return Ok(Iso {
                        device,
                        root,
                        joliet: true,
                    });
                }
                255 => break,
                _ => {}
            }
        }
        let root = primary.ok_or("no ISO 9660 primary volume descriptor")?;
        Ok(Iso {
            device,
            root,
            joliet: false,
        })
    }

    /// The file at `path` (`/`-separated, from the root), at most `limit` bytes of it (one
    /// more tells the caller it is over); None when it is not there.
    pub fn read(&mut self, path: &str, limit: u32) -> Result<Option<Vec<u8>>, String> {
        let mut at = self.root;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() > 8 {
            return Err(format!("{path}: too deep"));
        }
        for (n, part) in parts.iter().enumerate() {
            if !at.dir {
                return Ok(None);
            }
            match self.find(at, part)? {
                Some(extent) => at = extent,
                None => return Ok(None),
            }
            if n + 1 == parts.len() && at.dir {
                return Err(format!("{path} is a directory"));
            }
        }
        let len = at.len.min(limit.saturating_add(1));
        read_at(&mut self.device, u64::from(at.lba) * SECTOR, len as usize).map(Some)
    }

    /// The entry of directory `dir` named `name`.
    fn find(&mut self, dir: Extent, name: &str) -> Result<Option<Extent>, String> {
        if dir.len > DIR_MAX {
            return Err(format!(
                "a directory of {} bytes is over the {DIR_MAX} byte limit",
                dir.len
            ));
        }
        let bytes = read_at(&mut self.device, u64::from(dir.lba) * SECTOR, dir.len as usize)?;
        let mut at = 0usize;
        while at < bytes.len() {
            let len = usize::from(bytes[at]);
            if len == 0 {
                // Records do not cross sectors: the rest of this one is padding.
                at = (at / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let entry = bytes
                .get(at..at + len)
                .ok_or("a directory record runs past its directory")?;
            at += len;
            let Some((extent, id)) = record(entry) else {
                return Err("a malformed directory record".into());
            };
            if id == [0] || id == [1] {
                continue; // `.` and `..`
            }
            if self.matches(id, name) {
                return Ok(Some(extent));
            }
        }
        Ok(None)
    }

    fn matches(&self, id: &[u8], name: &str) -> bool {
        let text = match self.joliet {
            true => ucs2(id),
            false => String::from_utf8_lossy(id).into_owned(),
        };
        let bare = text.split(';').next().unwrap_or_default();
        let bare = match self.joliet {
            true => bare,
            false => bare.strip_suffix('.').unwrap_or(bare),
        };
        bare.eq_ignore_ascii_case(name)
    }
}

/// A directory record's extent and file identifier. Multi-extent files (over 4 GiB) are not
/// read: a config drive holds none.
fn record(entry: &[u8]) -> Option<(Extent, &[u8])> {
    let flags = *entry.get(25)?;
    if flags & 0x80 != 0 {
        return None;
    }
    let id_len = usize::from(*entry.get(32)?);
    let id = entry.get(33..33usize.checked_add(id_len)?)?;
    let extent = Extent {
        lba: u32_le(entry, 2)?,
        len: u32_le(entry, 10)?,
        dir: flags & 0x02 != 0,
    };
    Some((extent, id))
}

fn read_at<R: Read + Seek>(device: &mut R, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    device
        .seek(SeekFrom::Start(offset))
        .map_err(|e| format!("cannot seek to byte {offset}: {e}"))?;
    let mut buf = vec![0u8; len];
    device
        .read_exact(&mut buf)
        .map_err(|e| format!("cannot read {len} bytes at byte {offset}: {e}"))?;
    Ok(buf)
}
