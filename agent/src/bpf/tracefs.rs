//! tracefs: mounted on demand (a fresh host has it unmounted), and the
//! tracepoint record formats checked against what the programs assume.

use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
};

use super::BpfError;

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// The tracefs directory, mounting tracefs at /sys/kernel/tracing if no
/// mount is found.
pub fn ensure_mounted() -> Result<PathBuf, BpfError> {
    if let Some(dir) = find() {
        return Ok(dir);
    }
    let target = CString::new(TRACEFS).expect("no NUL");
    let fstype = CString::new("tracefs").expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let source = std::io::Error::last_os_error();
        // Another process (a second agent, a test) may be mounting it at
        // the same moment: EBUSY, then the mount appears.
        for _ in 0..20 {
            if let Some(dir) = find() {
                return Ok(dir);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        return Err(BpfError::Tracefs {
            path: TRACEFS.to_string(),
            source,
        });
    }
    tracing::info!("mounted tracefs at {TRACEFS}");
    Ok(PathBuf::from(TRACEFS))
}

/// A mounted tracefs, if there is one.
fn find() -> Option<PathBuf> {
    [TRACEFS, DEBUGFS_TRACING]
        .into_iter()
        .find(|dir| Path::new(dir).join("events").is_dir())
        .map(PathBuf::from)
}

/// A field of a tracepoint record: (offset, size).
pub fn field(
    tracefs: &Path,
    category: &str,
    name: &str,
    field: &str,
) -> Result<Option<(u32, u32)>, BpfError> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text = fs::read_to_string(&path).map_err(|e| BpfError::TracepointFormat {
        category: category.to_string(),
        name: name.to_string(),
        reason: format!("{}: {e}", path.display()),
    })?;
    Ok(parse_field(&text, field))
}

/// Finds `field` in a tracepoint `format` file.
fn parse_field(format: &str, field: &str) -> Option<(u32, u32)> {
    for line in format.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next()?;
        // "int oldstate", "__u8 saddr[4]", "const void * skaddr"
        let ident = decl.rsplit([' ', '*']).next()?.split('[').next()?;
        if ident != field {
            continue;
        }
        let mut offset = None;
        let mut size = None;
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        return Some((offset?, size?));
    }
    None
}

/// Checks that a field sits where the programs read it.
pub fn expect_field(
    tracefs: &Path,
    category: &str,
    name: &str,
    field_name: &str,
    offset: u32,
    size: u32,
) -> Result<(), BpfError> {
    match field(tracefs, category, name, field_name)? {
        Some((o, s)) if o == offset && s == size => Ok(()),
        found => Err(BpfError::TracepointFormat {
            category: category.to_string(),
            name: name.to_string(),
            reason: format!(
                "field {field_name} expected at offset {offset} size {size}, found {found:?}"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET_STATE: &str = "name: inet_sock_set_state
ID: 1434
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
";

    #[test]
    fn parses_fields() {
        assert_eq!(parse_field(SET_STATE, "skaddr"), Some((8, 8)));
        assert_eq!(parse_field(SET_STATE, "newstate"), Some((20, 4)));
        assert_eq!(parse_field(SET_STATE, "protocol"), Some((30, 2)));
        assert_eq!(parse_field(SET_STATE, "saddr_v6"), Some((40, 16)));
        assert_eq!(parse_field(SET_STATE, "group_dead"), None);
    }
}
