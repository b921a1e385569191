//! `filesystem` collector: mounts from `/proc/1/mounts` (procfs), with
//! node_exporter's default mount-point and filesystem-type exclusions, and
//! `statfs(2)` of each.
//!
//! `statfs` on a dead network mount blocks, so it runs on a worker thread
//! and is given `mount_timeout` (5 s, as node_exporter); a mount that did not
//! answer is marked stuck and reported with `node_filesystem_device_error 1`
//! without being asked again until its hung call returns.

use std::{
    collections::HashSet,
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use procfs_core::{FromRead as _, MountEntry};
use regex::Regex;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
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

metric_desc!(FS_USAGE, "system.filesystem.usage", "By", UpDownCounter, "Reports a filesystem's space usage across different states.");
metric_desc!(FS_UTILIZATION, "system.filesystem.utilization", "1", Gauge, "Fraction of the filesystem's space in use.");
metric_desc!(FS_INODES, "system.filesystem.inodes.usage", "{inode}", UpDownCounter, "Filesystem inodes used and free.");

pub struct Filesystem {
    mounts_path: PathBuf,
    fallback_mounts_path: PathBuf,
    root: PathBuf,
    mount_points_exclude: Option<Regex>,
    fs_types_exclude: Option<Regex>,
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
            mount_points_exclude,
            fs_types_exclude,
            statfs: StatfsWorker::new(timeout),
            mounts: Vec::new(),
        }
    }
}

/// Parses a mounts file (procfs), undoing the octal escape of spaces that
/// procfs leaves (`\040`).
pub fn parse_mounts(text: &str) -> Result<Vec<MountEntry>, String> {
    let mut entries =
        Vec::<MountEntry>::from_read(text.as_bytes()).map_err(|e| e.to_string())?;
    for e in &mut entries {
        for s in [&mut e.fs_spec, &mut e.fs_file] {
            if s.contains("\\040") {
                *s = s.replace("\\040", " ");
            }
        }
    }
    Ok(entries)
}

impl Collector for Filesystem {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let (path, text) = match reader.read_optional(&self.mounts_path)? {
            Some(t) => (&self.mounts_path, t),
            None => (&self.fallback_mounts_path, reader.read(&self.fallback_mounts_path)?),
        };
        let entries = parse_mounts(text).map_err(|e| NodeError::parse(path, e))?;
        let mut seen = HashSet::new();
        self.mounts.clear();
        for e in entries {
            // Mount points as the host sees them (without the rootfs prefix
            // when the agent runs in a container).
            let mountpoint = strip_root(&self.root, &e.fs_file);
            if self.mount_points_exclude.as_ref().is_some_and(|r| r.is_match(&mountpoint))
                || self.fs_types_exclude.as_ref().is_some_and(|r| r.is_match(&e.fs_vfstype))
            {
                continue;
            }
            if !seen.insert((e.fs_spec.clone(), mountpoint.clone(), e.fs_vfstype.clone())) {
                continue;
            }
            self.mounts.push(Mount {
                device: e.fs_spec,
                mountpoint,
                fstype: e.fs_vfstype,
                readonly: e.fs_mntops.contains_key("ro"),
                usage: None,
            });
        }
        let requests = self
            .mounts
            .iter()
            .map(|m| {
                let at = self.root.join(m.mountpoint.trim_start_matches('/'));
                (m.mountpoint.clone(), at)
            })
            .collect();
        let usages = self.statfs.statfs_all(requests);
        for (m, u) in self.mounts.iter_mut().zip(usages) {
            m.usage = u;
        }
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        type Get = fn(&Usage) -> f64;
        let families: [(&str, &str, Get); 5] = [
            ("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", |u| u.avail),
            ("node_filesystem_files", "Filesystem total file nodes.", |u| u.files),
            ("node_filesystem_files_free", "Filesystem total free file nodes.", |u| u.files_free),
            ("node_filesystem_free_bytes", "Filesystem free space in bytes.", |u| u.free),
            ("node_filesystem_size_bytes", "Filesystem size in bytes.", |u| u.size),
        ];
        for (name, help, get) in families {
            out.family(name, help, Kind::Gauge);
            for m in &self.mounts {
                if let Some(u) = &m.usage {
                    out.sample(&[("device", &m.device), ("fstype", &m.fstype), ("mountpoint", &m.mountpoint)], get(u));
                }
            }
        }
        out.family("node_filesystem_device_error", "Whether an error occurred while getting statistics for the given device.", Kind::Gauge);
        for m in &self.mounts {
            let error = if m.usage.is_some() { 0.0 } else { 1.0 };
            out.sample(&[("device", &m.device), ("fstype", &m.fstype), ("mountpoint", &m.mountpoint)], error);
        }
        out.family("node_filesystem_readonly", "Filesystem read-only status.", Kind::Gauge);
        for m in self.mounts.iter().filter(|m| m.usage.is_some()) {
            let ro = if m.readonly { 1.0 } else { 0.0 };
            out.sample(&[("device", &m.device), ("fstype", &m.fstype), ("mountpoint", &m.mountpoint)], ro);
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
                    kv("system.filesystem.mode", if m.readonly { "ro" } else { "rw" }),
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
            out.int(&FS_INODES, attrs("used"), (u.files - u.files_free).max(0.0) as u64);
            out.int(&FS_INODES, attrs("free"), u.files_free as u64);
        }
    }
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
    use crate::node::{defaults, filter_regex, test_support::{Tree, fixture_paths}};

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
        assert!(e.as_str().contains("node_filesystem_readonly{device=\"/dev/vda\",fstype=\"ext4\",mountpoint=\"/\"} 0\n"), "{}", e.as_str());
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
        assert_eq!(got, vec![("/srv/my data", false, true), ("/ro", true, true), ("/gone", false, false)]);
        let mut e = Exposition::new();
        c.prometheus(&mut e);
        let text = e.as_str();
        assert!(text.contains("node_filesystem_device_error{device=\"/dev/sdd\",fstype=\"ext4\",mountpoint=\"/gone\"} 1\n"), "{text}");
        assert!(!text.contains("node_filesystem_size_bytes{device=\"/dev/sdd\""));
        assert!(text.contains("node_filesystem_readonly{device=\"/dev/sdc\",fstype=\"ext4\",mountpoint=\"/ro\"} 1\n"));
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
        t.write("proc/1/mounts", "/dev/sdb /data ext4 rw 0 0\n");
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
    fn root_prefix_is_stripped() {
        assert_eq!(strip_root(Path::new("/"), "/var"), "/var");
        assert_eq!(strip_root(Path::new("/host"), "/host/var"), "/var");
        assert_eq!(strip_root(Path::new("/host"), "/host"), "/");
        assert_eq!(strip_root(Path::new("/host"), "/hostile"), "/hostile");
    }
}
