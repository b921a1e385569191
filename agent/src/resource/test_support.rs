//! Helpers for the tests: the fixture tree and throw-away directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::HostPaths;

/// The committed fixture tree (`fixtures/` next to this file).
pub fn fixtures() -> HostPaths {
    HostPaths::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/resource/fixtures"
    ))
}

/// A directory under the system temp dir, removed on drop.
pub struct TempTree {
    root: PathBuf,
}

impl TempTree {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("agent-resource-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn paths(&self) -> HostPaths {
        HostPaths::new(&self.root)
    }

    /// Writes `contents` at `relative` (creating parents); returns its path.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        path
    }

    /// Creates a directory at `relative`.
    pub fn mkdir(&self, relative: &str) -> PathBuf {
        let path = self.root.join(relative);
        fs::create_dir_all(&path).unwrap();
        path
    }

    /// Creates a symlink at `relative` pointing to `target`.
    pub fn symlink(&self, relative: &str, target: &str) {
        let path = self.root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    /// Writes a minimal, plausible `proc/<pid>/` for a running process.
    pub fn process(&self, pid: u32, comm: &str, start_time: u64) {
        self.write(&format!("proc/{pid}/comm"), format!("{comm}\n"));
        self.write(
            &format!("proc/{pid}/stat"),
            stat_line(pid, comm, 'S', start_time),
        );
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A `/proc/<pid>/stat` line in the kernel's format (52 fields).
pub fn stat_line(pid: u32, comm: &str, state: char, start_time: u64) -> String {
    format!(
        "{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 1204 0 0 0 3 1 0 0 20 0 1 0 \
         {start_time} 12574720 1302 18446744073709551615 94740326838272 94740327383553 \
         140728832208736 0 0 0 0 4096 16387 0 0 0 17 3 0 0 0 0 0 94740327458960 \
         94740327475232 94740345733120 140728832215881 140728832215901 140728832215901 \
         140728832217066 0\n"
    )
}
