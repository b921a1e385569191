//! The host the agent runs on: `host.*` and `os.*` attributes.

use std::ffi::CStr;
use std::path::Path;

use opentelemetry::KeyValue;

use super::fs::{read_first_line, read_text};
use super::keys;

/// The host, detected once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// `host.name`: the kernel's hostname.
    pub name: Option<String>,
    /// `host.id`: the machine id.
    pub id: Option<String>,
    /// `host.arch`, in OpenTelemetry's spelling (`amd64`, `arm64`, ...).
    pub arch: &'static str,
    /// `os.version`: the kernel release.
    pub os_version: Option<String>,
    /// `os.description`: the distribution's `PRETTY_NAME`, else
    /// `Linux <release>`.
    pub os_description: Option<String>,
}

impl HostInfo {
    /// Detects the host from the filesystem mounted at `root` (`/` normally,
    /// e.g. `/host` in a container), falling back to the agent's own view
    /// (`gethostname`, `uname`) where `root` has nothing.
    pub fn detect(root: &Path) -> Self {
        let os_version = kernel_release(root);
        let os_description = pretty_name(root).or_else(|| {
            os_version
                .as_ref()
                .map(|release| format!("Linux {release}"))
        });
        Self {
            name: hostname(root),
            id: machine_id(root),
            arch: otel_arch(std::env::consts::ARCH),
            os_version,
            os_description,
        }
    }

    /// The `host.*` and `os.*` resource attributes.
    pub fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = vec![
            KeyValue::new(keys::OS_TYPE, "linux"),
            KeyValue::new(keys::HOST_ARCH, self.arch),
        ];
        let optional = [
            (keys::HOST_NAME, &self.name),
            (keys::HOST_ID, &self.id),
            (keys::OS_VERSION, &self.os_version),
            (keys::OS_DESCRIPTION, &self.os_description),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value.clone()));
            }
        }
        attributes
    }
}

/// The hostname: `<root>/proc/sys/kernel/hostname`, `<root>/etc/hostname`,
/// then `gethostname(2)`.
fn hostname(root: &Path) -> Option<String> {
    read_first_line(&root.join("proc/sys/kernel/hostname"))
        .or_else(|| read_first_line(&root.join("etc/hostname")))
        .or_else(libc_hostname)
}

/// The machine id (`host.id` on Linux), ignoring the `uninitialized` marker
/// systemd writes on first boot.
fn machine_id(root: &Path) -> Option<String> {
    ["etc/machine-id", "var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|file| read_first_line(&root.join(file)))
        .find(|id| id != "uninitialized")
}

/// The kernel release: `<root>/proc/sys/kernel/osrelease`, then `uname(2)`.
fn kernel_release(root: &Path) -> Option<String> {
    read_first_line(&root.join("proc/sys/kernel/osrelease")).or_else(uname_release)
}

/// `PRETTY_NAME` from `<root>/etc/os-release` (or `<root>/usr/lib/os-release`).
fn pretty_name(root: &Path) -> Option<String> {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .filter_map(|file| read_text(&root.join(file), 16 * 1024).ok())
        .find_map(|text| os_release_value(&text, "PRETTY_NAME"))
}

/// A value of an os-release file (`KEY=value`, optionally quoted).
fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, value)| value.trim().trim_matches(['"', '\'']).to_owned())
        .filter(|value| !value.is_empty())
}

/// Rust's architecture name in the spelling of OpenTelemetry's `host.arch`
/// (names outside its list are kept as they are).
fn otel_arch(rust_arch: &'static str) -> &'static str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm32",
        "x86" => "x86",
        "powerpc" => "ppc32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

fn libc_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    c_chars_to_string(&buf)
}

fn uname_release() -> Option<String> {
    // SAFETY: `utsname` is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable `utsname`.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    // SAFETY: `uname` NUL-terminates `release`, which lives as long as `uts`.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    c_chars_to_string(release.to_bytes())
}

/// The bytes up to the first NUL, as lossy UTF-8; `None` when empty.
fn c_chars_to_string(bytes: &[u8]) -> Option<String> {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = String::from_utf8_lossy(&bytes[..len]).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::test_support::{TempTree, fixtures};

    fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    }

    #[test]
    fn detects_host_from_fixture_root() {
        let host = HostInfo::detect(&fixtures().root);
        assert_eq!(host.name.as_deref(), Some("node-7.example.internal"));
        assert_eq!(host.id.as_deref(), Some("4f6d2a9c1e8b4b7fa2c35d0e9b61f7a4"));
        assert_eq!(host.os_version.as_deref(), Some("6.8.0-45-generic"));
        assert_eq!(host.os_description.as_deref(), Some("Ubuntu 24.04.1 LTS"));

        let attributes = host.attributes();
        assert_eq!(attribute(&attributes, "os.type").as_deref(), Some("linux"));
        assert_eq!(
            attribute(&attributes, "host.name").as_deref(),
            Some("node-7.example.internal")
        );
        assert_eq!(
            attribute(&attributes, "host.id").as_deref(),
            Some("4f6d2a9c1e8b4b7fa2c35d0e9b61f7a4")
        );
        assert_eq!(
            attribute(&attributes, "host.arch").as_deref(),
            Some(host.arch)
        );
    }

    #[test]
    fn machine_id_falls_back_to_dbus() {
        let tree = TempTree::new();
        tree.write("etc/machine-id", "uninitialized\n");
        tree.write(
            "var/lib/dbus/machine-id",
            "0123456789abcdef0123456789abcdef\n",
        );
        tree.write("proc/sys/kernel/hostname", "box\n");
        tree.write("etc/os-release", "NAME=Foo\n");
        let host = HostInfo::detect(tree.root());
        assert_eq!(host.id.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(host.name.as_deref(), Some("box"));
        // No PRETTY_NAME: the kernel release (from uname) describes the OS.
        assert!(host.os_description.unwrap().starts_with("Linux "));
    }

    #[test]
    fn empty_root_uses_the_agents_own_view() {
        let tree = TempTree::new();
        let host = HostInfo::detect(tree.root());
        assert_eq!(host.id, None);
        assert!(host.name.is_some_and(|name| !name.is_empty()));
        assert!(host.os_version.is_some());
    }

    #[test]
    fn live_host() {
        let host = HostInfo::detect(Path::new("/"));
        assert!(host.name.is_some());
        assert!(host.os_version.is_some());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.arch, "amd64");
        }
    }

    #[test]
    fn arch_names_follow_semantic_conventions() {
        assert_eq!(otel_arch("x86_64"), "amd64");
        assert_eq!(otel_arch("aarch64"), "arm64");
        assert_eq!(otel_arch("arm"), "arm32");
        assert_eq!(otel_arch("riscv64"), "riscv64");
    }

    #[test]
    fn os_release_values_are_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME='Debian 12'\nID=debian\n";
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Debian 12")
        );
        assert_eq!(os_release_value(text, "ID").as_deref(), Some("debian"));
        assert_eq!(os_release_value(text, "VERSION"), None);
    }
}
