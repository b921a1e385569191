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

/// A read buffer reused across files and scrapes, and one file kept for
/// the whole of one collection (`/proc/stat` serves two collectors).
#[derive(Debug, Default)]
pub struct Reader {
    buf: String,
    shared: Option<(PathBuf, String)>,
}

impl Reader {
    pub fn new() -> Self {
        Self {
            buf: String::with_capacity(64 * 1024),
            shared: None,
        }
    }

    /// Starts a collection: the kept file is read again when next asked.
    pub fn new_cycle(&mut self) {
        if let Some((path, _)) = &mut self.shared {
            path.clear();
        }
    }

    /// The file, read once per collection.
    pub fn read_shared(&mut self, path: &Path) -> Result<&str, NodeError> {
        let fresh = self.shared.as_ref().is_some_and(|(p, _)| p == path);
        if !fresh {
            let mut text = self.shared.take().map(|(_, t)| t).unwrap_or_default();
            text.clear();
            let file = std::fs::File::open(path).map_err(|e| NodeError::io(path, e))?;
            file.take(MAX_FILE_BYTES)
                .read_to_string(&mut text)
                .map_err(|e| NodeError::io(path, e))?;
            self.shared = Some((path.to_path_buf(), text));
        }
        Ok(self.shared.as_ref().map_or("", |(_, t)| t.as_str()))
    }

    /// The whole file as text (at most [`MAX_FILE_BYTES`]).
    pub fn read(&mut self, path: &Path) -> Result<&str, NodeError> {
        self.buf.clear();
        let file = std::fs::File::open(path).map_err(|e| NodeError::io(path, e))?;
        file.take(MAX_FILE_BYTES)
            .read_to_string(&mut self.buf)
            .map_err(|e| NodeError::io(path, e))?;
        Ok(&self.buf)
    }

    /// The file, or `None` when it does not exist.
    pub fn read_optional(&mut self, path: &Path) -> Result<Option<&str>, NodeError> {
        match self.read(path) {
            Ok(_) => Ok(Some(&self.buf)),
            Err(NodeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// The first whitespace-separated number of a file's text.
pub fn first_number(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}
