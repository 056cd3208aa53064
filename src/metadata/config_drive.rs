//! The OpenStack config drive: a read-only filesystem (ISO 9660 or FAT) labelled `config-2`
//! holding `openstack/latest/meta_data.json`, `user_data` and `network_data.json`, attached by
//! OpenStack without a metadata service and by several private clouds.
//!
//! The device is found by label: udev's `/dev/disk/by-label/config-2` link, else by reading the
//! label of each disk-like device in `/sys/class/block` (what blkid does); two devices labelled
//! `config-2` are refused, naming both. It is read from the device itself, not mounted: a
//! static binary at early boot can count on `read(2)` but not on the kernel having iso9660 or
//! vfat (minimal cloud kernels ship neither, and loading a module needs userspace), nor on
//! CAP_SYS_ADMIN; and a filesystem image from outside is safer parsed by a bounded reader in
//! kiln (ISO 9660 in [`super::iso9660`], FAT by the `fatfs` crate), whose worst case is a
//! refused boot, than by a kernel driver. Every read goes through [`Budget`], so no image can
//! make kiln read without end.

use super::client::json_string;
use super::iso9660::{self, Iso};
use super::{InstanceFacts, MetadataError, MetadataProvider, Result, TagNames};
use crate::config::MetadataConfig;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tokio::sync::OnceCell;

pub const LABEL: &str = "config-2";
const META_DATA: &str = "openstack/latest/meta_data.json";
const USER_DATA: &str = "openstack/latest/user_data";
const NETWORK_DATA: &str = "openstack/latest/network_data.json";
/// Nova's EC2-style document: its `local-ipv4` is the instance's address.
const EC2_META_DATA: &str = "ec2/latest/meta-data.json";
/// A metadata document is small.
const DOCUMENT_MAX: u32 = 1024 * 1024;
/// Where the labels are: 64 KiB covers ISO 9660's volume descriptors and FAT's boot sector.
const HEAD: usize = 64 * 1024;
/// The kinds of block device a config drive comes as (CD-ROM, virtio, SCSI, Xen, IDE, NVMe,
/// loop); others (device-mapper, RAID, network block devices) are never read.
const DISK_PREFIXES: &[&str] = &["sr", "vd", "sd", "xvd", "hd", "nvme", "loop"];

/// The filesystem of a config drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    Iso9660,
    Vfat,
}

impl Filesystem {
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Iso9660 => "iso9660",
            Filesystem::Vfat => "vfat",
        }
    }
}

/// A device labelled `config-2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub device: PathBuf,
    pub filesystem: Filesystem,
}

/// The config drive attached to this machine, if one is.
pub fn find() -> std::result::Result<Option<Drive>, String> {
    find_in(
        Path::new("/dev/disk/by-label"),
        Path::new("/sys/class/block"),
        Path::new("/dev"),
    )
}

/// [`find`] under other roots (tests).
pub fn find_in(by_label: &Path, sys_block: &Path, dev: &Path) -> std::result::Result<Option<Drive>, String> {
    for label in [LABEL, "CONFIG-2"] {
        let link = by_label.join(label);
        let Ok(device) = std::fs::canonicalize(&link) else {
            continue;
        };
        return match probe(&device) {
            Ok(Some(filesystem)) => Ok(Some(Drive { device, filesystem })),
            Ok(None) => Err(format!(
                "{} ({}) holds no ISO 9660 or FAT filesystem labelled {LABEL}",
                device.display(),
                link.display()
            )),
            Err(e) => Err(format!("{}: {e}", device.display())),
        };
    }
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Ok(None);
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| DISK_PREFIXES.iter().any(|p| name.starts_with(p)))
        .collect();
    names.sort();
    let mut found = Vec::new();
    for name in names {
        let size = std::fs::read_to_string(sys_block.join(&name).join("size")).unwrap_or_default();
        if size.trim() == "0" {
            continue; // an empty CD-ROM drive, a detached loop device
        }
        let device = dev.join(&name);
        // A device that cannot be read holds no drive kiln could use.
        if let Ok(Some(filesystem)) = probe(&device) {
            found.push(Drive { device, filesystem });
        }
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => {
            let devices: Vec<String> = found.iter().map(|d| d.device.display().to_string()).collect();
            Err(format!(
                "{} devices are labelled {LABEL} ({}): kiln reads none of them",
                devices.len(),
                devices.join(", ")
            ))
        }
    }
}

/// The filesystem of `device` when it is labelled `config-2`.
fn probe(device: &Path) -> std::io::Result<Option<Filesystem>> {
    let mut head = Vec::with_capacity(HEAD);
    std::fs::File::open(device)?
        .take(HEAD as u64)
        .read_to_end(&mut head)?;
    Ok(label_of(&head).and_then(|(fs, label)| label.eq_ignore_ascii_case(LABEL).then_some(fs)))
}

/// The filesystem and label in the first 64 KiB of a device: ISO 9660, else FAT.
pub fn label_of(head: &[u8]) -> Option<(Filesystem, String)> {
    if let Some(label) = iso9660::label(head) {
        return Some((Filesystem::Iso9660, label));
    }
    fat_label(head).map(|label| (Filesystem::Vfat, label))
}

/// A FAT boot sector's volume label (FAT12/16 at byte 43, FAT32 at byte 71, each after an
/// extended boot signature 0x29).
fn fat_label(head: &[u8]) -> Option<String> {
    if head.get(510..512)? != [0x55, 0xAA] {
        return None;
    }
    let bytes_per_sector = u16::from_le_bytes([*head.get(11)?, *head.get(12)?]);
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) {
        return None;
    }
    let sectors_per_fat16 = u16::from_le_bytes([*head.get(22)?, *head.get(23)?]);
    let (signature, label) = match sectors_per_fat16 {
        0 => (66, 71),
        _ => (38, 43),
    };
    if *head.get(signature)? != 0x29 {
        return None;
    }
    Some(
        String::from_utf8_lossy(head.get(label..label + 11)?)
            .trim_end()
            .to_string(),
    )
}

/// A device read with a bound on the bytes read: a crafted filesystem (a cluster chain that
/// loops, directories without end) ends in an error, not a boot that never finishes. Writes
/// are refused: the drive is opened read-only, and nothing of kiln's writes to it.
pub struct Budget<R> {
    inner: R,
    left: u64,
}

impl<R> Budget<R> {
    pub fn new(inner: R, bytes: u64) -> Budget<R> {
        Budget { inner, left: bytes }
    }
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other(
                "read more than a config drive holds: refused",
            ));
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for Budget<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(to)
    }
}

impl<R> Write for Budget<R> {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads one file of a drive by path, at most a limit (plus one byte); None when absent.
type ReadFile = dyn FnMut(&str, u32) -> std::result::Result<Option<Vec<u8>>, String>;

/// What kiln reads of a config drive.
#[derive(Debug, Default)]
pub struct Contents {
    pub meta_data: Value,
    pub user_data: Option<Vec<u8>>,
    pub local_ipv4: Option<String>,
}

/// Reads the drive's files: `meta_data.json` must be there; `user_data` at most `user_data_cap`
/// bytes (one past the limit, for the environment to refuse, as with every provider).
pub fn read(drive: &Drive, user_data_cap: u32) -> std::result::Result<Contents, String> {
    let file = std::fs::File::open(&drive.device).map_err(|e| format!("cannot open: {e}"))?;
    read_from(file, drive.filesystem, user_data_cap)
}

/// The bytes [`read`] may read of a drive: the documents and user-data twice over, and room
/// for the directories and allocation tables.
pub fn budget(user_data_cap: u32) -> u64 {
    4 * u64::from(DOCUMENT_MAX) + 2 * u64::from(user_data_cap) + 4 * 1024 * 1024
}

/// [`read`] from any device (an image in memory, for the fuzz target).
pub fn read_from<R: Read + Seek + 'static>(
    device: R,
    filesystem: Filesystem,
    user_data_cap: u32,
) -> std::result::Result<Contents, String> {
    let device = Budget::new(device, budget(user_data_cap));
    let mut files: Box<ReadFile> = match filesystem {
        Filesystem::Iso9660 => {
            let mut iso = Iso::open(device)?;
            Box::new(move |path, limit| iso.read(path, limit))
        }
        Filesystem::Vfat => {
            let fs = fatfs::FileSystem::new(device, fatfs::FsOptions::new())
                .map_err(|e| format!("not a FAT filesystem kiln can read: {e}"))?;
            Box::new(move |path, limit| fat_read(&fs, path, limit))
        }
    };
    let document = |name: &str, bytes: Vec<u8>| -> std::result::Result<Value, String> {
        if bytes.len() > DOCUMENT_MAX as usize {
            return Err(format!("{name} is over the {DOCUMENT_MAX} byte limit"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{name}: not the expected JSON: {e}"))
    };
    let meta_data = files(META_DATA, DOCUMENT_MAX)?.ok_or(format!("{META_DATA} is not on the drive"))?;
    let meta_data = document(META_DATA, meta_data)?;
    let user_data = files(USER_DATA, user_data_cap.saturating_sub(1))?;
    let ec2 = match files(EC2_META_DATA, DOCUMENT_MAX)? {
        Some(bytes) => json_string(&document(EC2_META_DATA, bytes)?, "/local-ipv4"),
        None => None,
    };
    let local_ipv4 = match ec2 {
        Some(ip) => Some(ip),
        None => match files(NETWORK_DATA, DOCUMENT_MAX)? {
            Some(bytes) => first_ipv4(&document(NETWORK_DATA, bytes)?),
            None => None,
        },
    };
    Ok(Contents {
        meta_data,
        user_data,
        local_ipv4,
    })
}

fn fat_read<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    path: &str,
    limit: u32,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let mut file = match fs.root_dir().open_file(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let mut bytes = Vec::new();
    (&mut file)
        .take(u64::from(limit) + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(Some(bytes))
}

/// `network_data.json`: the first IPv4 address of a statically addressed network.
fn first_ipv4(doc: &Value) -> Option<String> {
    let networks = doc.get("networks")?.as_array()?;
    networks
        .iter()
        .filter(|n| n.get("type").and_then(Value::as_str) == Some("ipv4"))
        .find_map(|n| json_string(n, "/ip_address"))
}

/// The config drive as a datasource: the `openstack` provider's documents, from the drive.
pub(super) struct ConfigDrive {
    drive: Drive,
    user_data_cap: u32,
    contents: OnceCell<Contents>,
}

impl ConfigDrive {
    pub fn new(drive: Drive, config: &MetadataConfig) -> ConfigDrive {
        let cap = config.user_data_limit.saturating_add(1);
        ConfigDrive {
            drive,
            user_data_cap: u32::try_from(cap).unwrap_or(u32::MAX),
            contents: OnceCell::new(),
        }
    }

    fn error(&self, reason: String) -> MetadataError {
        MetadataError {
            provider: "openstack".into(),
            endpoint: self.endpoint(),
            step: "read the config drive".into(),
            reason,
        }
    }

    /// Read once, off the async thread: the reads are of a block device.
    async fn contents(&self) -> Result<&Contents> {
        self.contents
            .get_or_try_init(|| async {
                let (drive, cap) = (self.drive.clone(), self.user_data_cap);
                tokio::task::spawn_blocking(move || read(&drive, cap))
                    .await
                    .map_err(|e| self.error(format!("stopped: {e}")))?
                    .map_err(|reason| self.error(reason))
            })
            .await
    }
}

#[async_trait::async_trait]
impl MetadataProvider for ConfigDrive {
    fn name(&self) -> &'static str {
        "openstack"
    }

    fn endpoint(&self) -> String {
        format!("config drive {}", self.drive.device.display())
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let contents = self.contents().await?;
        Ok(super::openstack::facts_from(
            &contents.meta_data,
            contents.local_ipv4.clone(),
        ))
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.contents().await?.user_data.clone())
    }

    async fn tags(&self, wanted: &TagNames<'_>) -> Result<BTreeMap<String, String>> {
        let contents = self.contents().await?;
        let meta = contents
            .meta_data
            .get("meta")
            .and_then(Value::as_object)
            .into_iter()
            .flatten();
        Ok(meta
            .filter(|(k, _)| wanted.matches(k))
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect())
    }
}
