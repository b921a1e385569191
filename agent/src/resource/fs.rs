//! Bounded file reads, with I/O errors mapped to [`ResourceError`].

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::ResourceError;

/// The first bytes of a file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Head {
    pub bytes: Vec<u8>,
    /// The file had more than the bytes read.
    pub truncated: bool,
}

/// Reads at most `limit` bytes of `path`.
pub(super) fn read_head(path: &Path, limit: usize) -> io::Result<Head> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    // One byte more than the limit tells whether the file was longer.
    file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    let truncated = bytes.len() > limit;
    bytes.truncate(limit);
    Ok(Head { bytes, truncated })
}

/// Reads at most `limit` bytes of `path` as (lossy) UTF-8 text.
pub(super) fn read_text(path: &Path, limit: usize) -> io::Result<String> {
    let head = read_head(path, limit)?;
    Ok(String::from_utf8_lossy(&head.bytes).into_owned())
}

/// The first line of a small file, trimmed; `None` when unreadable or blank.
pub(super) fn read_first_line(path: &Path) -> Option<String> {
    let text = read_text(path, 4096).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// Whether an error means the process behind a `/proc/<pid>` file is gone
/// (`ENOENT` before opening, `ESRCH` when it exits while being read).
pub(super) fn is_gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(libc::ESRCH)
}

/// Maps an error reading a file of process `pid`.
pub(super) fn process_error(pid: u32, path: &Path, error: io::Error) -> ResourceError {
    if is_gone(&error) {
        ResourceError::ProcessGone { pid }
    } else if error.kind() == io::ErrorKind::PermissionDenied {
        ResourceError::PermissionDenied {
            path: path.to_owned(),
        }
    } else {
        ResourceError::Io {
            path: path.to_owned(),
            source: error,
        }
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
pub(super) fn truncate_at_char_boundary(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::test_support::TempTree;

    #[test]
    fn read_head_reports_truncation() {
        let tree = TempTree::new();
        let path = tree.write("f", b"0123456789");
        let head = read_head(&path, 4).unwrap();
        assert_eq!(head.bytes, b"0123");
        assert!(head.truncated);
        let head = read_head(&path, 10).unwrap();
        assert_eq!(head.bytes, b"0123456789");
        assert!(!head.truncated);
    }

    #[test]
    fn missing_file_maps_to_gone() {
        let path = Path::new("/nonexistent/for/sure");
        let error = read_head(path, 1).unwrap_err();
        assert!(matches!(
            process_error(7, path, error),
            ResourceError::ProcessGone { pid: 7 }
        ));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut text = "aé".to_owned(); // 'é' is two bytes
        truncate_at_char_boundary(&mut text, 2);
        assert_eq!(text, "a");
        let mut text = "abc".to_owned();
        truncate_at_char_boundary(&mut text, 5);
        assert_eq!(text, "abc");
    }
}
