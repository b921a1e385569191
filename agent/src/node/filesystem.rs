//! `filesystem` collector: mounts from `/proc/1/mounts`, with
//! node_exporter's default mount-point and filesystem-type exclusions, and
//! `statfs(2)` of each.
//!
//! `statfs` on a dead network (or FUSE) mount blocks, so for every
//! filesystem type that is not known to be local it runs on a worker thread
//! and is given `mount_timeout` (5 s, as node_exporter); a mount that did not
//! answer is marked stuck and reported with `node_filesystem_device_error 1`
//! without being asked again until its hung call returns. Local filesystems
//! are asked directly (a thread hop costs more than their `statfs`).

use std::{
    collections::HashSet,
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use regex::Regex;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
    netstat::CachedFilter,
    otel::{OtelBatch, kv, metric_desc},
};

/// What `statfs` says, in bytes and inodes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub size: f64,
    pub free: f64,
    pub avail: f64,
    pub files: f64,
    pub files_free: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub readonly: bool,
    /// `None`: statfs failed or the mount is stuck.
    pub usage: Option<Usage>,
}

metric_desc!(
    FS_USAGE,
    "system.filesystem.usage",
    "By",
    UpDownCounter,
    "Reports a filesystem's space usage across different states."
);
metric_desc!(
    FS_UTILIZATION,
    "system.filesystem.utilization",
    "1",
    Gauge,
    "Fraction of the filesystem's space in use."
);
metric_desc!(
    FS_INODES,
    "system.filesystem.inodes.usage",
    "{inode}",
    UpDownCounter,
    "Filesystem inodes used and free."
);

pub struct Filesystem {
    mounts_path: PathBuf,
    fallback_mounts_path: PathBuf,
    root: PathBuf,
    mount_points_exclude: CachedFilter,
    fs_types_exclude: CachedFilter,
    statfs: StatfsWorker,
    mounts: Vec<Mount>,
}

impl Filesystem {
    pub fn new(
        p: &NodePaths,
        mount_points_exclude: Option<Regex>,
        fs_types_exclude: Option<Regex>,
        timeout: Duration,
    ) -> Self {
        Self {
            mounts_path: p.proc("1/mounts"),
            fallback_mounts_path: p.proc("mounts"),
            root: p.root.clone(),
            mount_points_exclude: CachedFilter::new(mount_points_exclude),
            fs_types_exclude: CachedFilter::new(fs_types_exclude),
            statfs: StatfsWorker::new(timeout),
            mounts: Vec::new(),
        }
    }
}

/// One line of a mounts file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub readonly: bool,
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012`,
/// `\134` backslash).
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (i + 3 < b.len()
            && b[i] == b'\\'
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)))
        .then(|| {
            b[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, c| v * 8 + u32::from(c - b'0'))
        })
        .and_then(|v| u8::try_from(v).ok());
        if let Some(v) = octal {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a mounts file (`device mountpoint fstype options freq passno`).
/// procfs's parser allocates a map of options per mount and leaves `\040`
/// escaped; only `ro` matters here.
pub fn parse_mounts(text: &str) -> Result<Vec<MountEntry>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.split(' ');
        let (Some(device), Some(mountpoint), Some(fstype), Some(options)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(format!("line {}: fewer than four fields", n + 1));
        };
        out.push(MountEntry {
            device: unescape(device),
            mountpoint: unescape(mountpoint),
            fstype: unescape(fstype),
            readonly: options.split(',').any(|o| o == "ro"),
        });
    }
    Ok(out)
}

impl Collector for Filesystem {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let (path, text) = match reader.read_kept_optional(&self.mounts_path)? {
            Some(t) => (&self.mounts_path, t),
            None => (
                &self.fallback_mounts_path,
                reader.read(&self.fallback_mounts_path)?,
            ),
        };
        let entries = parse_mounts(text).map_err(|e| NodeError::parse(path, e))?;
        self.mounts.clear();
        for e in entries {
            // Mount points as the host sees them (without the rootfs prefix
            // when the agent runs in a container).
            let mountpoint = strip_root(&self.root, &e.mountpoint);
            if self.mount_points_exclude.excludes(&mountpoint)
                || self.fs_types_exclude.excludes(&e.fstype)
            {
                continue;
            }
            if self
                .mounts
                .iter()
                .any(|m| m.mountpoint == mountpoint && m.device == e.device && m.fstype == e.fstype)
            {
                continue;
            }
            self.mounts.push(Mount {
                device: e.device,
                mountpoint,
                fstype: e.fstype,
                readonly: e.readonly,
                usage: None,
            });
        }
        let mut remote = Vec::new();
        for (i, m) in self.mounts.iter_mut().enumerate() {
            let at = self.root.join(m.mountpoint.trim_start_matches('/'));
            if is_local(&m.fstype) {
                m.usage = CString::new(at.as_os_str().as_bytes())
                    .ok()
                    .and_then(|p| statfs(&p));
            } else {
                remote.push((i, m.mountpoint.clone(), at));
            }
        }
        if !remote.is_empty() {
            let indexes: Vec<usize> = remote.iter().map(|(i, _, _)| *i).collect();
            let usages = self
                .statfs
                .statfs_all(remote.into_iter().map(|(_, m, p)| (m, p)).collect());
            for (i, u) in indexes.into_iter().zip(usages) {
                self.mounts[i].usage = u;
            }
        }
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        type Get = fn(&Usage) -> f64;
        let families: [(&str, &str, Get); 5] = [
            (
                "node_filesystem_avail_bytes",
                "Filesystem space available to non-root users in bytes.",
                |u| u.avail,
            ),
            (
                "node_filesystem_files",
                "Filesystem total file nodes.",
                |u| u.files,
            ),
            (
                "node_filesystem_files_free",
                "Filesystem total free file nodes.",
                |u| u.files_free,
            ),
            (
                "node_filesystem_free_bytes",
                "Filesystem free space in bytes.",
                |u| u.free,
            ),
            (
                "node_filesystem_size_bytes",
                "Filesystem size in bytes.",
                |u| u.size,
            ),
        ];
        for (name, help, get) in families {
            out.family(name, help, Kind::Gauge);
            for m in &self.mounts {
                if let Some(u) = &m.usage {
                    out.sample(
                        &[
                            ("device", &m.device),
                            ("fstype", &m.fstype),
                            ("mountpoint", &m.mountpoint),
                        ],
                        get(u),
                    );
                }
            }
        }
        out.family(
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
            Kind::Gauge,
        );
        for m in &self.mounts {
            let error = if m.usage.is_some() { 0.0 } else { 1.0 };
            out.sample(
                &[
                    ("device", &m.device),
                    ("fstype", &m.fstype),
                    ("mountpoint", &m.mountpoint),
                ],
                error,
            );
        }
        out.family(
            "node_filesystem_readonly",
            "Filesystem read-only status.",
            Kind::Gauge,
        );
        for m in self.mounts.iter().filter(|m| m.usage.is_some()) {
            let ro = if m.readonly { 1.0 } else { 0.0 };
            out.sample(
                &[
                    ("device", &m.device),
                    ("fstype", &m.fstype),
                    ("mountpoint", &m.mountpoint),
                ],
                ro,
            );
        }
    }

    fn otel(&self, out: &mut OtelBatch) {
        for m in &self.mounts {
            let Some(u) = &m.usage else { continue };
            let attrs = |state: &'static str| {
                vec![
                    kv("system.device", m.device.clone()),
                    kv("system.filesystem.state", state),
                    kv("system.filesystem.type", m.fstype.clone()),
                    kv(
                        "system.filesystem.mode",
                        if m.readonly { "ro" } else { "rw" },
                    ),
                    kv("system.filesystem.mountpoint", m.mountpoint.clone()),
                ]
            };
            let used = (u.size - u.free).max(0.0);
            let reserved = (u.free - u.avail).max(0.0);
            out.int(&FS_USAGE, attrs("used"), used as u64);
            out.int(&FS_USAGE, attrs("free"), u.avail as u64);
            out.int(&FS_USAGE, attrs("reserved"), reserved as u64);
            if u.size > 0.0 {
                let mut a = attrs("used");
                a.remove(1);
                out.double(&FS_UTILIZATION, a, used / u.size);
            }
            out.int(
                &FS_INODES,
                attrs("used"),
                (u.files - u.files_free).max(0.0) as u64,
            );
            out.int(&FS_INODES, attrs("free"), u.files_free as u64);
        }
    }
}

/// Filesystems whose `statfs` answers from local state (no network, no
/// user-space daemon), so it cannot hang.
fn is_local(fstype: &str) -> bool {
    matches!(
        fstype,
        "ext2"
            | "ext3"
            | "ext4"
            | "xfs"
            | "btrfs"
            | "f2fs"
            | "jfs"
            | "reiserfs"
            | "bcachefs"
            | "tmpfs"
            | "ramfs"
            | "vfat"
            | "msdos"
            | "exfat"
            | "ntfs"
            | "ntfs3"
            | "hfsplus"
            | "udf"
            | "erofs"
            | "squashfs"
            | "iso9660"
            | "zfs"
            | "nilfs2"
            | "efivarfs"
            | "devtmpfs"
            | "overlay"
    )
}

fn strip_root(root: &Path, mountpoint: &str) -> String {
    let root = root.to_string_lossy();
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return mountpoint.to_string();
    }
    match mountpoint.strip_prefix(root) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => mountpoint.to_string(),
    }
}

/// `statfs(2)`, on a worker thread, with a timeout per mount. A scrape
/// hands the worker all its mounts at once (one wake-up, not one per mount).
struct StatfsWorker {
    timeout: Duration,
    worker: Option<Worker>,
    /// Mount points whose `statfs` has not returned yet.
    stuck: Arc<Mutex<HashSet<String>>>,
}

type Batch = Vec<(usize, String, CString)>;

struct Worker {
    tx: mpsc::Sender<Batch>,
    rx: mpsc::Receiver<(usize, Option<Usage>)>,
}

impl StatfsWorker {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            worker: None,
            stuck: Arc::default(),
        }
    }

    fn spawn(&self) -> Option<Worker> {
        let (tx, req_rx) = mpsc::channel::<Batch>();
        let (res_tx, rx) = mpsc::channel();
        let stuck = Arc::clone(&self.stuck);
        let timeout = self.timeout;
        std::thread::Builder::new()
            .name("statfs".into())
            .spawn(move || {
                for batch in req_rx {
                    for (i, mountpoint, path) in batch {
                        let start = std::time::Instant::now();
                        let usage = statfs(&path);
                        // The caller gave up on this one: the mount is
                        // usable again, and this worker is not needed any
                        // more.
                        if start.elapsed() >= timeout || res_tx.send((i, usage)).is_err() {
                            if let Ok(mut s) = stuck.lock() {
                                s.remove(&mountpoint);
                            }
                            tracing::info!(
                                "statfs of {mountpoint} returned after {:.0?}",
                                start.elapsed()
                            );
                            return;
                        }
                    }
                }
            })
            .ok()
            .map(|_| Worker { tx, rx })
    }

    /// Usage of each (mount point, path); `None` for failures and stuck
    /// mounts.
    fn statfs_all(&mut self, mounts: Vec<(String, PathBuf)>) -> Vec<Option<Usage>> {
        let mut out = vec![None; mounts.len()];
        let stuck = self.stuck.lock().map(|s| s.clone()).unwrap_or_default();
        let batch: Batch = mounts
            .into_iter()
            .enumerate()
            .filter(|(_, (m, _))| !stuck.contains(m))
            .filter_map(|(i, (m, p))| Some((i, m, CString::new(p.as_os_str().as_bytes()).ok()?)))
            .collect();
        if batch.is_empty() {
            return out;
        }
        let order: Vec<String> = batch.iter().map(|(_, m, _)| m.clone()).collect();
        if self.worker.is_none() {
            self.worker = self.spawn();
        }
        let Some(worker) = self.worker.as_ref() else {
            return out;
        };
        if worker.tx.send(batch).is_err() {
            self.worker = None;
            return out;
        }
        for mountpoint in order {
            match worker.rx.recv_timeout(self.timeout) {
                Ok((j, usage)) => {
                    if let Some(slot) = out.get_mut(j) {
                        *slot = usage;
                    }
                }
                Err(_) => {
                    tracing::warn!(
                        "statfs of {mountpoint} did not return within {:?}; marked stuck",
                        self.timeout
                    );
                    if let Ok(mut s) = self.stuck.lock() {
                        s.insert(mountpoint);
                    }
                    self.worker = None;
                    break;
                }
            }
        }
        out
    }
}

fn statfs(path: &CString) -> Option<Usage> {
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `s` is writable.
    if unsafe { libc::statfs(path.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let bsize = s.f_bsize as f64;
    Some(Usage {
        size: s.f_blocks as f64 * bsize,
        free: s.f_bfree as f64 * bsize,
        avail: s.f_bavail as f64 * bsize,
        files: s.f_files as f64,
        files_free: s.f_ffree as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{
        defaults, filter_regex,
        test_support::{Tree, fixture_paths},
    };

    fn collector(p: &NodePaths) -> Filesystem {
        Filesystem::new(
            p,
            filter_regex("m", defaults::FILESYSTEM_MOUNT_POINTS_EXCLUDE).unwrap(),
            filter_regex("f", defaults::FILESYSTEM_FS_TYPES_EXCLUDE).unwrap(),
            Duration::from_secs(5),
        )
    }

    #[test]
    fn fixture_keeps_only_real_filesystems() {
        // The fixture root has no mount points under it, so statfs runs on
        // the fixture directory itself for "/".
        let mut c = collector(&fixture_paths());
        c.update(&mut Reader::new()).unwrap();
        let points: Vec<&str> = c.mounts.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(points, vec!["/"], "{:?}", c.mounts);
        assert_eq!(c.mounts[0].device, "/dev/vda");
        assert_eq!(c.mounts[0].fstype, "ext4");
        assert!(c.mounts[0].usage.is_some());
        let mut e = Exposition::new();
        c.prometheus(&mut e);
        assert!(
            e.as_str().contains(
                "node_filesystem_readonly{device=\"/dev/vda\",fstype=\"ext4\",mountpoint=\"/\"} 0\n"
            ),
            "{}",
            e.as_str()
        );
    }

    #[test]
    fn escapes_duplicates_errors_and_readonly() {
        let t = Tree::new();
        std::fs::create_dir_all(t.0.path().join("root/srv/my data")).unwrap();
        std::fs::create_dir_all(t.0.path().join("root/ro")).unwrap();
        t.write(
            "proc/1/mounts",
            "/dev/sdb1 /srv/my\\040data xfs rw,relatime 0 0\n\
             /dev/sdb1 /srv/my\\040data xfs rw,relatime 0 0\n\
             /dev/sdc /ro ext4 ro,relatime 0 0\n\
             /dev/sdd /gone ext4 rw 0 0\n\
             tmpfs /run tmpfs rw 0 0\n\
             overlay /x overlay rw 0 0\n",
        );
        let mut c = collector(&t.paths());
        c.update(&mut Reader::new()).unwrap();
        let got: Vec<(&str, bool, bool)> = c
            .mounts
            .iter()
            .map(|m| (m.mountpoint.as_str(), m.readonly, m.usage.is_some()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/srv/my data", false, true),
                ("/ro", true, true),
                ("/gone", false, false)
            ]
        );
        let mut e = Exposition::new();
        c.prometheus(&mut e);
        let text = e.as_str();
        assert!(text.contains("node_filesystem_device_error{device=\"/dev/sdd\",fstype=\"ext4\",mountpoint=\"/gone\"} 1\n"), "{text}");
        assert!(!text.contains("node_filesystem_size_bytes{device=\"/dev/sdd\""));
        assert!(text.contains(
            "node_filesystem_readonly{device=\"/dev/sdc\",fstype=\"ext4\",mountpoint=\"/ro\"} 1\n"
        ));
    }

    #[test]
    fn falls_back_to_proc_mounts() {
        let t = Tree::new();
        t.write("proc/mounts", "/dev/sda / ext4 rw 0 0\n");
        let mut c = collector(&t.paths());
        c.update(&mut Reader::new()).unwrap();
        assert_eq!(c.mounts.len(), 1);
    }

    #[test]
    fn a_mount_that_does_not_answer_in_time_is_stuck_then_recovers() {
        let t = Tree::new();
        std::fs::create_dir_all(t.0.path().join("root/data")).unwrap();
        // A network filesystem: asked on the worker, with the timeout.
        t.write("proc/1/mounts", "server:/export /data nfs4 rw 0 0\n");
        let mut c = Filesystem::new(&t.paths(), None, None, Duration::from_nanos(1));
        c.update(&mut Reader::new()).unwrap();
        assert_eq!(c.mounts[0].usage, None, "gave up waiting");
        // The late statfs returns: the mount is asked again next time.
        let cleared = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            c.statfs.stuck.lock().unwrap().is_empty()
        });
        assert!(cleared);
        let mut ok = collector(&t.paths());
        ok.update(&mut Reader::new()).unwrap();
        assert!(ok.mounts[0].usage.is_some());
    }

    #[test]
    fn mount_lines() {
        let m =
            parse_mounts("/dev/a /x\\040y\\134z ext4 rw,noatime 0 0\n\nb / xfs ro 0 0\n").unwrap();
        assert_eq!(m[0].mountpoint, "/x y\\z");
        assert!(!m[0].readonly);
        assert!(m[1].readonly);
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        // Beyond a byte (found by the fuzzer): kept as it is.
        assert_eq!(unescape("x\\777y"), "x\\777y");
        assert!(parse_mounts("only three fields\n").is_err());
    }

    #[test]
    fn root_prefix_is_stripped() {
        assert_eq!(strip_root(Path::new("/"), "/var"), "/var");
        assert_eq!(strip_root(Path::new("/host"), "/host/var"), "/var");
        assert_eq!(strip_root(Path::new("/host"), "/host"), "/");
        assert_eq!(strip_root(Path::new("/host"), "/hostile"), "/hostile");
    }
}
