//! Where the collectors read from, and one reusable read buffer.

use std::{
    io::{self, Read as _},
    path::{Path, PathBuf},
};

use super::NodeError;

/// The host's procfs, sysfs and root filesystem (`/proc`, `/sys`, `/`
/// normally; e.g. `/host/proc`, `/host/sys`, `/host` in a container), as
/// node_exporter's `--path.procfs`, `--path.sysfs`, `--path.rootfs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePaths {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub root: PathBuf,
}

impl Default for NodePaths {
    fn default() -> Self {
        Self {
            proc: "/proc".into(),
            sys: "/sys".into(),
            root: "/".into(),
        }
    }
}

impl NodePaths {
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }

    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }

    pub fn root(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// Largest file a collector reads (procfs files are far smaller; this only
/// bounds memory against a strange file).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Open procfs and sysfs files kept at most (the collectors' fixed files
/// are fewer than 20, plus one per network device).
const MAX_KEPT: usize = 32;

/// `statfs(2)`'s types of procfs and sysfs.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// A read buffer reused across files and scrapes, one file kept for the
/// whole of one collection (`/proc/stat` serves two collectors), and the
/// collectors' procfs and sysfs files kept open.
///
/// A procfs or sysfs file read again from offset 0 is generated afresh
/// (seq_file restarts its iterator at position 0; sysctl and sysfs
/// attributes format on every read), so [`Reader::read_kept`] reads them
/// with `pread(2)` instead of `open` + `read` + `close` on every scrape:
/// the path walk of `openat` was a fifth of a scrape's CPU. A descriptor
/// not read during a whole collection is closed at the next
/// [`Reader::new_cycle`] (a network device that went away), and one whose
/// read fails is closed and the file opened again. Files on other
/// filesystems (fixtures, `/etc`, `/run/udev`, textfiles replaced by
/// rename) are opened each time, so they are seen as they are now.
#[derive(Debug, Default)]
pub struct Reader {
    buf: String,
    shared: Option<(PathBuf, String)>,
    kept: Vec<Kept>,
}

#[derive(Debug)]
struct Kept {
    path: PathBuf,
    file: std::fs::File,
    /// Read since the last [`Reader::new_cycle`].
    used: bool,
}

impl Reader {
    pub fn new() -> Self {
        Self {
            buf: String::with_capacity(64 * 1024),
            shared: None,
            kept: Vec::new(),
        }
    }

    /// Starts a collection: the kept file is read again when next asked.
    pub fn new_cycle(&mut self) {
        if let Some((path, _)) = &mut self.shared {
            path.clear();
        }
        self.kept
            .retain_mut(|k| std::mem::replace(&mut k.used, false));
    }

    /// The file, read once per collection (kept open like
    /// [`Reader::read_kept`]).
    pub fn read_shared(&mut self, path: &Path) -> Result<&str, NodeError> {
        let fresh = self.shared.as_ref().is_some_and(|(p, _)| p == path);
        if !fresh {
            let mut text = self.shared.take().map(|(_, t)| t).unwrap_or_default();
            self.kept_into(path, &mut text)
                .map_err(|e| NodeError::io(path, e))?;
            self.shared = Some((path.to_path_buf(), text));
        }
        Ok(self.shared.as_ref().map_or("", |(_, t)| t.as_str()))
    }

    /// The whole file as text (at most [`MAX_FILE_BYTES`]), opened anew.
    pub fn read(&mut self, path: &Path) -> Result<&str, NodeError> {
        self.buf.clear();
        let file = std::fs::File::open(path).map_err(|e| NodeError::io(path, e))?;
        file.take(MAX_FILE_BYTES)
            .read_to_string(&mut self.buf)
            .map_err(|e| NodeError::io(path, e))?;
        Ok(&self.buf)
    }

    /// The whole file as text, for a collector's fixed file: kept open
    /// when it is a procfs or sysfs file, opened anew otherwise.
    pub fn read_kept(&mut self, path: &Path) -> Result<&str, NodeError> {
        let mut text = std::mem::take(&mut self.buf);
        let read = self.kept_into(path, &mut text);
        self.buf = text;
        read.map_err(|e| NodeError::io(path, e))?;
        Ok(&self.buf)
    }

    /// [`Reader::read_kept`], or `None` when the file does not exist.
    pub fn read_kept_optional(&mut self, path: &Path) -> Result<Option<&str>, NodeError> {
        optional(self.read_kept(path).map(|_| ())).map(|found| found.then_some(self.buf.as_str()))
    }

    /// The file, or `None` when it does not exist.
    pub fn read_optional(&mut self, path: &Path) -> Result<Option<&str>, NodeError> {
        optional(self.read(path).map(|_| ())).map(|found| found.then_some(self.buf.as_str()))
    }

    /// Reads `path` into `text` through its kept descriptor (opening and
    /// keeping it first when it is on procfs or sysfs). A failed read drops the
    /// descriptor, and the file is opened once more.
    fn kept_into(&mut self, path: &Path, text: &mut String) -> io::Result<()> {
        text.clear();
        if let Some(i) = self.kept.iter().position(|k| k.path == path) {
            let k = &mut self.kept[i];
            if read_from_start(&k.file, text).is_ok() {
                k.used = true;
                return Ok(());
            }
            self.kept.swap_remove(i);
            text.clear();
        }
        let file = std::fs::File::open(path)?;
        read_from_start(&file, text)?;
        if self.kept.len() < MAX_KEPT && regenerated_on_read(&file) {
            self.kept.push(Kept {
                path: path.to_path_buf(),
                file,
                used: true,
            });
        }
        Ok(())
    }
}

/// `Ok(true)` for a file read, `Ok(false)` for one that does not exist.
fn optional(read: Result<(), NodeError>) -> Result<bool, NodeError> {
    match read {
        Ok(()) => Ok(true),
        Err(NodeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The file from offset 0 to its end (at most [`MAX_FILE_BYTES`]), with
/// `pread(2)`: the descriptor's own offset is not used.
fn read_from_start(file: &std::fs::File, text: &mut String) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    // SAFETY: the bytes are checked as UTF-8 below before `text` is used
    // as a string again; on any error `text` is cleared.
    let bytes = unsafe { text.as_mut_vec() };
    let mut filled = 0usize;
    let result = loop {
        if bytes.len() - filled < 4096 {
            let grow = bytes.len().max(16 * 1024);
            bytes.resize(bytes.len() + grow, 0);
        }
        match file.read_at(&mut bytes[filled..], filled as u64) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                filled += n;
                if filled as u64 >= MAX_FILE_BYTES {
                    filled = MAX_FILE_BYTES as usize;
                    break Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    bytes.truncate(filled);
    let result = result.and_then(|()| {
        std::str::from_utf8(bytes)
            .map(|_| ())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    });
    if result.is_err() {
        bytes.clear();
    }
    result
}

// `f_type`'s type differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn regenerated_on_read(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd as _;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: a valid descriptor and a writable statfs buffer.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    rc == 0 && {
        // SAFETY: fstatfs filled it.
        let kind = unsafe { st.assume_init() }.f_type as i64;
        kind == PROC_SUPER_MAGIC || kind == SYSFS_MAGIC
    }
}

/// The first whitespace-separated number of a file's text.
pub fn first_number(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_procfs_file_is_read_afresh() {
        let mut r = Reader::new();
        let path = Path::new("/proc/thread-self/schedstat");
        let first = r.read_kept(path).expect("procfs").to_string();
        assert_eq!(r.kept.len(), 1, "kept open");
        // Some CPU time later the run time in the file has grown.
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let second = r.read_kept(path).expect("procfs").to_string();
        assert_eq!(r.kept.len(), 1, "the same descriptor");
        let ns = |t: &str| first_number(t).expect("run time");
        assert!(ns(&second) > ns(&first), "{first} then {second}");
    }

    #[test]
    fn a_file_left_unread_for_a_cycle_is_closed() {
        let mut r = Reader::new();
        let (a, b) = (
            Path::new("/proc/thread-self/schedstat"),
            Path::new("/proc/loadavg"),
        );
        r.read_kept(a).expect("procfs");
        r.read_kept(b).expect("procfs");
        r.new_cycle();
        r.read_kept(a).expect("procfs");
        assert_eq!(r.kept.len(), 2, "both read in the last cycle");
        r.new_cycle();
        assert_eq!(r.kept.len(), 1, "only the one read in the last cycle");
        assert_eq!(r.kept[0].path, a);
    }

    #[test]
    fn other_files_are_opened_each_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "one").expect("write");
        let mut r = Reader::new();
        assert_eq!(r.read_kept(&path).expect("read"), "one");
        assert!(r.kept.is_empty());
        // Replaced by rename, as textfiles and os-release are.
        let tmp = dir.path().join("g");
        std::fs::write(&tmp, "two").expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        assert_eq!(r.read_kept(&path).expect("read"), "two");
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(
            r.read_kept_optional(&path).expect("absent is not an error"),
            None
        );
    }

    #[test]
    fn shared_file_is_read_once_per_cycle() {
        let mut r = Reader::new();
        let path = Path::new("/proc/thread-self/schedstat");
        let a = r.read_shared(path).expect("procfs").to_string();
        assert_eq!(r.read_shared(path).expect("procfs"), a, "same cycle");
        r.new_cycle();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        assert_ne!(r.read_shared(path).expect("procfs"), a, "next cycle");
    }
}
