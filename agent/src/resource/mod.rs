//! OpenTelemetry resources for the observed processes and for the host.
//!
//! Every span the agent produces belongs to the process that made or served
//! the request, identified by its host-namespace pid (the tgid eBPF sees).
//! This module turns such a pid into an [`opentelemetry_sdk::Resource`]:
//!
//! - [`HostInfo`]: `host.*` and `os.*`, detected once from a configurable
//!   root (`/`, or e.g. `/host` when the agent runs in a container);
//! - [`ProcessInfo`]: `process.*`, `service.name` (from the process's own
//!   `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`), `container.id` and the
//!   cgroup path, read from `<proc_root>/<pid>/`;
//! - [`ResourceCache`]: pid → [`ProcessResource`] (the info plus a prebuilt
//!   `Resource` and a grouping key), bounded and least-recently-used.
//!
//! Files read:
//!
//! | file                            | gives                                   |
//! |---------------------------------|-----------------------------------------|
//! | `<proc>/<pid>/stat`             | start time (pid reuse), comm fallback   |
//! | `<proc>/<pid>/comm`             | comm                                    |
//! | `<proc>/<pid>/exe` (link)       | executable path and name                |
//! | `<proc>/<pid>/cmdline`          | command line                            |
//! | `<proc>/<pid>/environ`          | service name, extra attributes          |
//! | `<proc>/<pid>/status`           | effective uid (owner)                   |
//! | `<proc>/<pid>/cgroup`           | cgroup path, container id               |
//! | `<proc>/<pid>/mountinfo`        | container id under a cgroup namespace   |
//! | `<root>/etc/passwd`             | owner name (processes on the host only) |
//! | `<root>/etc/machine-id`         | `host.id`                               |
//! | `<root>/proc/sys/kernel/*`      | `host.name`, `os.version`               |
//! | `<root>/etc/os-release`         | `os.description`                        |

mod cache;
mod container;
mod fs;
mod host;
pub mod keys;
mod otel_env;
mod process;

#[cfg(test)]
mod test_support;

use std::io;
use std::path::PathBuf;

pub use cache::{CacheStats, DEFAULT_CAPACITY, ProcessResource, Refresh, ResourceCache};
pub use container::{cgroup_path, container_id_from_cgroup, container_id_from_mountinfo};
pub use host::HostInfo;
pub use otel_env::{MAX_EXTRA_ATTRIBUTES, MAX_KEY_LEN, MAX_VALUE_LEN, OtelEnv, percent_decode};
pub use process::{
    MAX_COMMAND_LINE_LEN, MAX_ENVIRON_LEN, ProcessInfo, ProcessSnapshot, ServiceNameSource,
    read_start_time,
};

/// Why a process (or host) file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The process does not exist (any more).
    #[error("process {pid} is gone")]
    ProcessGone { pid: u32 },
    /// The pid was reused by another process while it was being read.
    #[error("pid {pid} was reused while it was being read")]
    PidReused { pid: u32 },
    /// The agent may not read this file (missing capability, hidepid, ...).
    #[error("permission denied reading {}", path.display())]
    PermissionDenied { path: PathBuf },
    /// The file has not the expected format.
    #[error("malformed {}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: &'static str },
    /// Any other I/O error.
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the host filesystem and the procfs to read are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The host's root filesystem: `/`, or e.g. `/host` in a container.
    pub root: PathBuf,
    /// The procfs showing the host's processes, usually `<root>/proc`.
    pub proc: PathBuf,
}

impl HostPaths {
    /// Paths under `root`, with the procfs at `<root>/proc`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let proc = root.join("proc");
        Self { root, proc }
    }

    /// Paths under `root`, with the procfs somewhere else (e.g. `/proc` of a
    /// container sharing the host pid namespace, with the host's `/` at
    /// `/host`).
    pub fn with_proc(root: impl Into<PathBuf>, proc: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            proc: proc.into(),
        }
    }

    /// The host's user database.
    pub fn passwd(&self) -> PathBuf {
        self.root.join("etc/passwd")
    }

    /// `<proc>/<pid>`.
    pub fn process_dir(&self, pid: u32) -> PathBuf {
        self.proc.join(pid.to_string())
    }
}

impl Default for HostPaths {
    fn default() -> Self {
        Self::new("/")
    }
}
