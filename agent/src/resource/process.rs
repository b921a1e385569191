//! One process, read from `<proc>/<pid>/`.

use std::path::{Path, PathBuf};

use opentelemetry::KeyValue;

use super::container::{
    cgroup_path, container_id_from_cgroup, container_id_from_mountinfo, only_root_cgroups,
};
use super::fs::{process_error, read_head, read_text, truncate_at_char_boundary};
use super::otel_env::OtelEnv;
use super::{HostPaths, ResourceError, keys};

/// `process.command_line` is cut to this many bytes.
pub const MAX_COMMAND_LINE_LEN: usize = 4096;
/// Only this much of `/proc/<pid>/environ` is read.
pub const MAX_ENVIRON_LEN: usize = 128 * 1024;

const MAX_STAT_LEN: usize = 4096;
const MAX_STATUS_LEN: usize = 16 * 1024;
const MAX_CGROUP_LEN: usize = 64 * 1024;
const MAX_MOUNTINFO_LEN: usize = 512 * 1024;
const MAX_PASSWD_LEN: usize = 1024 * 1024;

/// Where `service.name` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceNameSource {
    /// The process's `OTEL_SERVICE_NAME`.
    ServiceNameVar,
    /// `service.name` in the process's `OTEL_RESOURCE_ATTRIBUTES`.
    ResourceAttributesVar,
    /// The executable name (the `comm` when the `exe` link is unreadable).
    Executable,
    /// The `comm` the caller gave for a process that could not be read.
    Fallback,
}

/// What the agent knows about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Host-namespace pid (tgid).
    pub pid: u32,
    /// Start time in clock ticks after boot (field 22 of `stat`); with the
    /// pid it identifies the process. `None` for a fallback.
    pub start_time: Option<u64>,
    /// The kernel's 15-byte task name.
    pub comm: String,
    /// Base name of the executable, or `comm`.
    pub executable_name: String,
    /// Path of the executable (as the process sees it, ` (deleted)` removed).
    pub executable_path: Option<String>,
    /// Arguments joined by spaces, at most [`MAX_COMMAND_LINE_LEN`] bytes.
    pub command_line: Option<String>,
    /// Effective user id.
    pub uid: Option<u32>,
    /// User name for `uid`, from the host's `/etc/passwd`; only for processes
    /// outside containers (a container has its own user database).
    pub owner: Option<String>,
    /// `service.name`.
    pub service_name: String,
    /// Where [`service_name`](Self::service_name) came from.
    pub service_name_source: ServiceNameSource,
    /// Other attributes from the process's `OTEL_RESOURCE_ATTRIBUTES`.
    pub extra_attributes: Vec<(String, String)>,
    /// Full container id when the process runs in a container.
    pub container_id: Option<String>,
    /// The cgroup path (the unified/v2 one when present).
    pub cgroup_path: Option<String>,
}

impl ProcessInfo {
    /// Reads process `pid` under `paths.proc`.
    ///
    /// Only `stat` is required: a missing process gives
    /// [`ResourceError::ProcessGone`]. Everything else is best effort (kernel
    /// threads, zombies and permission errors leave fields empty, the
    /// executable name then falls back to `comm`). If the pid is reused
    /// while being read, [`ResourceError::PidReused`].
    pub fn read(paths: &HostPaths, pid: u32) -> Result<Self, ResourceError> {
        let dir = ProcDir::new(paths, pid);
        let stat = dir.stat()?;
        let comm = dir.comm().unwrap_or_else(|| stat.comm.clone());
        let executable_path = dir.executable_path();
        let executable_name = executable_path
            .as_deref()
            .and_then(base_name)
            .unwrap_or(&comm)
            .to_owned();
        let env = dir.otel_env();
        let (service_name, service_name_source) = choose_service_name(&env, &executable_name);
        let cgroup = dir.cgroup();
        let container_id = cgroup.as_deref().and_then(|text| dir.container_id(text));
        let uid = dir.effective_uid();
        let owner = match (uid, &container_id) {
            (Some(uid), None) => user_name(&paths.passwd(), uid),
            _ => None,
        };
        let info = Self {
            pid,
            start_time: Some(stat.start_time),
            comm,
            executable_name,
            executable_path,
            command_line: dir.command_line(),
            uid,
            owner,
            service_name,
            service_name_source,
            extra_attributes: env.attributes,
            container_id,
            cgroup_path: cgroup.as_deref().and_then(cgroup_path),
        };
        // The files were read one by one: make sure they were one process's.
        if dir.stat()?.start_time != stat.start_time {
            return Err(ResourceError::PidReused { pid });
        }
        Ok(info)
    }

    /// A minimal info for a process that could not be read: `comm` names
    /// the executable and the service.
    pub fn fallback(pid: u32, comm: &str) -> Self {
        Self {
            pid,
            start_time: None,
            comm: comm.to_owned(),
            executable_name: comm.to_owned(),
            executable_path: None,
            command_line: None,
            uid: None,
            owner: None,
            service_name: comm.to_owned(),
            service_name_source: ServiceNameSource::Fallback,
            extra_attributes: Vec::new(),
            container_id: None,
            cgroup_path: None,
        }
    }

    /// Whether this is a [`fallback`](Self::fallback).
    pub fn is_fallback(&self) -> bool {
        self.service_name_source == ServiceNameSource::Fallback
    }

    /// The resource attributes of the process: the extra ones first, then
    /// `service.name`, `process.*` and `container.id`.
    pub fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes: Vec<KeyValue> = self
            .extra_attributes
            .iter()
            .map(|(key, value)| KeyValue::new(key.clone(), value.clone()))
            .collect();
        attributes.push(KeyValue::new(keys::SERVICE_NAME, self.service_name.clone()));
        attributes.push(KeyValue::new(keys::PROCESS_PID, i64::from(self.pid)));
        attributes.push(KeyValue::new(
            keys::PROCESS_EXECUTABLE_NAME,
            self.executable_name.clone(),
        ));
        let optional = [
            (keys::PROCESS_EXECUTABLE_PATH, &self.executable_path),
            (keys::PROCESS_COMMAND_LINE, &self.command_line),
            (keys::PROCESS_OWNER, &self.owner),
            (keys::CONTAINER_ID, &self.container_id),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value.clone()));
            }
        }
        attributes
    }
}

/// Reads the start time of process `pid` (field 22 of its `stat`), to tell
/// a process from a later one with the same pid.
pub fn read_start_time(paths: &HostPaths, pid: u32) -> Result<u64, ResourceError> {
    Ok(ProcDir::new(paths, pid).stat()?.start_time)
}

/// `OTEL_SERVICE_NAME`, else `service.name` of `OTEL_RESOURCE_ATTRIBUTES`,
/// else the executable name.
fn choose_service_name(env: &OtelEnv, executable_name: &str) -> (String, ServiceNameSource) {
    if let Some(name) = &env.service_name {
        (name.clone(), ServiceNameSource::ServiceNameVar)
    } else if let Some(name) = &env.resource_service_name {
        (name.clone(), ServiceNameSource::ResourceAttributesVar)
    } else {
        (executable_name.to_owned(), ServiceNameSource::Executable)
    }
}

/// The last component of a path; `None` when empty.
fn base_name(path: &str) -> Option<&str> {
    path.rsplit('/').next().filter(|name| !name.is_empty())
}

/// The fields of `/proc/<pid>/stat` the agent uses.
#[derive(Debug)]
struct Stat {
    comm: String,
    start_time: u64,
}

impl Stat {
    /// Parses `pid (comm) state ppid ... starttime ...`. The comm may hold
    /// spaces and parentheses, so fields are counted after the last `)`.
    fn parse(text: &str) -> Option<Self> {
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_owned();
        // After the comm come fields 3 (state) onwards: 22 is the 20th.
        let start_time = text[close + 1..].split_whitespace().nth(19)?.parse().ok()?;
        Some(Self { comm, start_time })
    }
}

/// The files of one `/proc/<pid>/`.
struct ProcDir {
    pid: u32,
    dir: PathBuf,
}

impl ProcDir {
    fn new(paths: &HostPaths, pid: u32) -> Self {
        Self {
            pid,
            dir: paths.process_dir(pid),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads a file of this process, at most `limit` bytes, as lossy text.
    fn text(&self, name: &str, limit: usize) -> Option<String> {
        read_text(&self.file(name), limit).ok()
    }

    fn stat(&self) -> Result<Stat, ResourceError> {
        let path = self.file("stat");
        let text = read_text(&path, MAX_STAT_LEN).map_err(|e| process_error(self.pid, &path, e))?;
        Stat::parse(&text).ok_or(ResourceError::Malformed {
            path,
            reason: "no start time after the comm",
        })
    }

    fn comm(&self) -> Option<String> {
        let comm = self.text("comm", 64)?;
        let comm = comm.trim_end_matches('\n');
        (!comm.is_empty()).then(|| comm.to_owned())
    }

    /// The target of the `exe` link; unreadable for kernel threads, zombies
    /// and without the right to ptrace-read the process.
    fn executable_path(&self) -> Option<String> {
        let target = std::fs::read_link(self.file("exe")).ok()?;
        let target = target.to_string_lossy();
        let target = target.strip_suffix(" (deleted)").unwrap_or(&target);
        (!target.is_empty()).then(|| target.to_owned())
    }

    /// The arguments, NUL-separated in the file, joined by spaces.
    fn command_line(&self) -> Option<String> {
        let head = read_head(&self.file("cmdline"), MAX_COMMAND_LINE_LEN).ok()?;
        join_command_line(&head.bytes)
    }

    /// The OpenTelemetry variables of the process's initial environment.
    fn otel_env(&self) -> OtelEnv {
        read_head(&self.file("environ"), MAX_ENVIRON_LEN)
            .map(|head| OtelEnv::from_environ(&head.bytes, head.truncated))
            .unwrap_or_default()
    }

    fn cgroup(&self) -> Option<String> {
        self.text("cgroup", MAX_CGROUP_LEN)
    }

    /// The container id from the cgroup; under a cgroup namespace (every
    /// path `/`), from the mounts.
    fn container_id(&self, cgroup: &str) -> Option<String> {
        container_id_from_cgroup(cgroup).or_else(|| {
            only_root_cgroups(cgroup)
                .then(|| self.text("mountinfo", MAX_MOUNTINFO_LEN))
                .flatten()
                .and_then(|mountinfo| container_id_from_mountinfo(&mountinfo))
        })
    }

    /// The effective uid: the second number of the `Uid:` line of `status`.
    fn effective_uid(&self) -> Option<u32> {
        let status = self.text("status", MAX_STATUS_LEN)?;
        let ids = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
        ids.split_whitespace().nth(1)?.parse().ok()
    }
}

/// NUL-separated arguments joined by spaces, bounded; `None` when empty.
fn join_command_line(bytes: &[u8]) -> Option<String> {
    let bytes = &bytes[..bytes.len().min(MAX_COMMAND_LINE_LEN)];
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    let joined: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    let mut line = String::from_utf8_lossy(&joined).trim_end().to_owned();
    // Lossy decoding may have grown the text past the bound.
    truncate_at_char_boundary(&mut line, MAX_COMMAND_LINE_LEN);
    (!line.is_empty()).then_some(line)
}

/// What the kernel copied from a process when its first connection was
/// announced: enough to describe a process that exits before `/proc` is
/// read (a `curl` in a script).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSnapshot {
    pub comm: String,
    /// NUL-separated arguments (a prefix).
    pub cmdline: Vec<u8>,
    /// NUL-separated `KEY=value` entries (a prefix).
    pub environ: Vec<u8>,
    pub environ_truncated: bool,
}

impl ProcessInfo {
    /// The info of a process known only from its kernel snapshot.
    pub fn from_snapshot(pid: u32, snap: &ProcessSnapshot) -> Self {
        let command_line = join_command_line(&snap.cmdline);
        let argv0 = snap.cmdline.split(|&b| b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        // A process may rewrite its arguments into a title ("postgres:
        // user db 10.0.0.1(5432) idle", "nginx: worker process"): a first
        // argument with spaces is no path, and `comm` names it better.
        let executable_name = base_name(&argv0)
            .filter(|name| !name.starts_with('-') && !name.contains(' '))
            .map_or_else(|| snap.comm.clone(), str::to_owned);
        let env = OtelEnv::from_environ(&snap.environ, snap.environ_truncated);
        let (service_name, service_name_source) = choose_service_name(&env, &executable_name);
        Self {
            pid,
            start_time: None,
            comm: snap.comm.clone(),
            executable_name,
            executable_path: None,
            command_line,
            uid: None,
            owner: None,
            service_name,
            service_name_source,
            extra_attributes: env.attributes,
            container_id: None,
            cgroup_path: None,
        }
    }

    /// Fills what `/proc` could not give (a zombie has an empty cmdline
    /// and environment) from the kernel snapshot.
    pub fn complete_from(&mut self, snap: &ProcessSnapshot) {
        if self.command_line.is_none() {
            self.command_line = join_command_line(&snap.cmdline);
        }
        if matches!(
            self.service_name_source,
            ServiceNameSource::Executable | ServiceNameSource::Fallback
        ) {
            let env = OtelEnv::from_environ(&snap.environ, snap.environ_truncated);
            let (name, source) = choose_service_name(&env, &self.executable_name);
            if source != ServiceNameSource::Executable {
                self.service_name = name;
                self.service_name_source = source;
                self.extra_attributes = env.attributes;
            }
        }
    }
}

/// The name of user `uid` in a passwd file (`name:password:uid:...`).
fn user_name(passwd: &Path, uid: u32) -> Option<String> {
    let text = read_text(passwd, MAX_PASSWD_LEN).ok()?;
    let uid = uid.to_string();
    text.lines()
        .map(|line| line.split(':'))
        .find_map(|mut fields| {
            let name = fields.next()?;
            let id = fields.nth(1)?;
            (id == uid && !name.is_empty()).then(|| name.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::test_support::{TempTree, fixtures, stat_line};

    const DOCKER_ID: &str = "9c1e5b7a3d2f4e6b8a0c1d3e5f7a9b2c4d6e8f0a1b3c5d7e9f2a4b6c8d0e1f3a";

    fn read(pid: u32) -> ProcessInfo {
        ProcessInfo::read(&fixtures(), pid).unwrap()
    }

    fn extra<'a>(info: &'a ProcessInfo, key: &str) -> Option<&'a str> {
        info.extra_attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn stat_parsing() {
        let stat = Stat::parse(&stat_line(42, "we ird) (x", 'S', 987654)).unwrap();
        assert_eq!(stat.comm, "we ird) (x");
        assert_eq!(stat.start_time, 987654);
        // This machine's own format (`cat` reading /proc/self/stat).
        let real = "12139 (cat) R 12132 12132 11354 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 \
                    243158 3133440 380 18446744073709551615 94372499881984 94372499901865";
        assert_eq!(Stat::parse(real).unwrap().start_time, 243158);
        assert!(Stat::parse("12 (short) R 1 2 3").is_none());
    }

    #[test]
    fn plain_process() {
        let info = read(1000);
        assert_eq!(info.pid, 1000);
        assert_eq!(info.start_time, Some(4_518_273));
        assert_eq!(info.comm, "nginx");
        assert_eq!(info.executable_path.as_deref(), Some("/usr/sbin/nginx"));
        assert_eq!(info.executable_name, "nginx");
        assert_eq!(info.command_line.as_deref(), Some("nginx: worker process"));
        assert_eq!(info.service_name, "nginx");
        assert_eq!(info.service_name_source, ServiceNameSource::Executable);
        assert_eq!(info.uid, Some(33));
        assert_eq!(info.owner.as_deref(), Some("www-data"));
        assert_eq!(info.container_id, None);
        assert_eq!(
            info.cgroup_path.as_deref(),
            Some("/system.slice/nginx.service")
        );
        assert!(info.extra_attributes.is_empty());
    }

    #[test]
    fn service_name_from_otel_service_name() {
        let info = read(1001);
        // OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES.
        assert_eq!(info.service_name, "checkout");
        assert_eq!(info.service_name_source, ServiceNameSource::ServiceNameVar);
        assert_eq!(info.executable_name, "java");
        assert_eq!(info.owner.as_deref(), Some("checkout"));
        assert_eq!(extra(&info, "service.version"), Some("2.4.1"));
        assert_eq!(
            info.command_line.as_deref(),
            Some("java -Xmx512m -jar /opt/checkout/checkout.jar")
        );
    }

    #[test]
    fn service_name_and_attributes_from_resource_attributes() {
        let info = read(1002);
        assert_eq!(info.service_name, "cart api");
        assert_eq!(
            info.service_name_source,
            ServiceNameSource::ResourceAttributesVar
        );
        assert_eq!(extra(&info, "service.namespace"), Some("shop"));
        assert_eq!(extra(&info, "service.version"), Some("1.0.0+build.7"));
        assert_eq!(
            extra(&info, "deployment.environment.name"),
            Some("staging, eu")
        );
        assert_eq!(extra(&info, "team"), Some("payments/cart"));
        // Malformed entries and overrides of detected attributes are ignored.
        let keys: Vec<&str> = info
            .extra_attributes
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "service.namespace",
                "service.version",
                "deployment.environment.name",
                "team"
            ]
        );
        assert_eq!(info.executable_name, "python3.12");
        // The invalid UTF-8 byte of the command line is replaced.
        assert_eq!(
            info.command_line.as_deref(),
            Some("python3 -m cart --name caf\u{fffd}")
        );
    }

    #[test]
    fn extra_attributes_cannot_override_detected_ones() {
        let info = read(1002);
        let attributes = info.attributes();
        let values = |key: &str| -> Vec<String> {
            attributes
                .iter()
                .filter(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.as_str().into_owned())
                .collect()
        };
        assert_eq!(values("process.pid"), ["1002"]);
        assert!(values("host.name").is_empty());
        assert_eq!(values("service.name"), ["cart api"]);
    }

    #[test]
    fn docker_cgroup_v1() {
        let info = read(2001);
        assert_eq!(info.container_id.as_deref(), Some(DOCKER_ID));
        assert_eq!(
            info.cgroup_path.as_deref(),
            Some("/system.slice/containerd.service")
        );
        // No host user name for a process in a container.
        assert_eq!(info.uid, Some(0));
        assert_eq!(info.owner, None);
        assert_eq!(info.service_name, "redis-server");
    }

    #[test]
    fn docker_cgroup_v2() {
        let info = read(2002);
        assert_eq!(info.container_id.as_deref(), Some(DOCKER_ID));
        assert_eq!(
            info.cgroup_path,
            Some(format!("/system.slice/docker-{DOCKER_ID}.scope"))
        );
    }

    #[test]
    fn kubernetes_containerd() {
        let info = read(2003);
        assert_eq!(
            info.container_id.as_deref(),
            Some("5d8e1f3a7b9c2d4e6f8a0b1c3d5e7f9a2b4c6d8e0f1a3b5c7d9e2f4a6b8c0d1e")
        );
        assert!(
            info.cgroup_path
                .as_deref()
                .unwrap()
                .starts_with("/kubepods.slice/")
        );
        assert_eq!(info.service_name, "frontend");
        assert_eq!(extra(&info, "k8s.pod.name"), Some("frontend-6b7c9d-x2x9k"));
    }

    #[test]
    fn kubernetes_cri_o() {
        let info = read(2004);
        assert_eq!(
            info.container_id.as_deref(),
            Some("b7a9c1e3d5f7a9b1c3e5d7f9a1b3c5e7d9f1a3b5c7e9d1f3a5b7c9e1d3f5a7b9")
        );
    }

    #[test]
    fn podman() {
        let info = read(2005);
        assert_eq!(
            info.container_id.as_deref(),
            Some("e2c4a6b8d0f2e4a6c8b0d2f4e6a8c0b2d4f6e8a0c2b4d6f8e0a2c4b6d8f0e2a4")
        );
        assert!(info.cgroup_path.unwrap().ends_with(".scope/container"));
    }

    #[test]
    fn cgroup_namespace_uses_mountinfo() {
        let info = read(2006);
        assert_eq!(info.cgroup_path.as_deref(), Some("/"));
        assert_eq!(
            info.container_id.as_deref(),
            Some("0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9")
        );
    }

    #[test]
    fn zombie_falls_back_to_comm() {
        let info = read(3001);
        assert_eq!(info.comm, "worker");
        assert_eq!(info.executable_path, None);
        assert_eq!(info.executable_name, "worker");
        assert_eq!(info.command_line, None);
        assert_eq!(info.service_name, "worker");
        assert_eq!(info.service_name_source, ServiceNameSource::Executable);
    }

    #[test]
    fn vanished_process() {
        let error = ProcessInfo::read(&fixtures(), 9999).unwrap_err();
        assert!(
            matches!(error, ResourceError::ProcessGone { pid: 9999 }),
            "{error}"
        );
        assert!(matches!(
            read_start_time(&fixtures(), 9999),
            Err(ResourceError::ProcessGone { pid: 9999 })
        ));
    }

    #[test]
    fn unreadable_files_are_tolerated() {
        let tree = TempTree::new();
        tree.process(77, "svc", 100);
        // Directories cannot be read as files, even by root.
        tree.mkdir("proc/77/environ");
        tree.mkdir("proc/77/cmdline");
        tree.mkdir("proc/77/cgroup");
        tree.symlink("proc/77/exe", "/usr/bin/svc (deleted)");
        let info = ProcessInfo::read(&tree.paths(), 77).unwrap();
        assert_eq!(info.executable_path.as_deref(), Some("/usr/bin/svc"));
        assert_eq!(info.service_name, "svc");
        assert_eq!(info.command_line, None);
        assert_eq!(info.cgroup_path, None);
        assert_eq!(info.uid, None);
    }

    #[test]
    fn comm_comes_from_stat_without_comm_file() {
        let tree = TempTree::new();
        tree.write("proc/78/stat", stat_line(78, "kworker/0:1", 'I', 5));
        let info = ProcessInfo::read(&tree.paths(), 78).unwrap();
        assert_eq!(info.comm, "kworker/0:1");
        assert_eq!(info.service_name, "kworker/0:1");
    }

    #[test]
    fn malformed_stat() {
        let tree = TempTree::new();
        tree.write("proc/79/stat", "79 (x) R 1\n");
        assert!(matches!(
            ProcessInfo::read(&tree.paths(), 79),
            Err(ResourceError::Malformed { .. })
        ));
    }

    #[test]
    fn huge_environ_is_read_in_part() {
        let tree = TempTree::new();
        tree.process(80, "big", 1);
        let mut environ = b"OTEL_RESOURCE_ATTRIBUTES=service.name=early\0".to_vec();
        while environ.len() < MAX_ENVIRON_LEN + 1000 {
            environ.extend_from_slice(b"FILLER=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\0");
        }
        environ.extend_from_slice(b"OTEL_SERVICE_NAME=late\0");
        tree.write("proc/80/environ", &environ);
        let info = ProcessInfo::read(&tree.paths(), 80).unwrap();
        assert_eq!(info.service_name, "early");
    }

    #[test]
    fn long_command_line_is_bounded() {
        let tree = TempTree::new();
        tree.process(81, "long", 1);
        let mut cmdline = b"prog\0".to_vec();
        cmdline.extend(std::iter::repeat_n(b'a', 3 * MAX_COMMAND_LINE_LEN));
        tree.write("proc/81/cmdline", &cmdline);
        let info = ProcessInfo::read(&tree.paths(), 81).unwrap();
        let line = info.command_line.unwrap();
        assert_eq!(line.len(), MAX_COMMAND_LINE_LEN);
        assert!(line.starts_with("prog aaa"));
    }

    #[test]
    fn fallback_info() {
        let info = ProcessInfo::fallback(5, "curl");
        assert!(info.is_fallback());
        assert_eq!(info.service_name, "curl");
        assert_eq!(info.executable_name, "curl");
        let attributes = info.attributes();
        let keys: Vec<&str> = attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            ["service.name", "process.pid", "process.executable.name"]
        );
    }

    #[test]
    fn live_current_process() {
        let pid = std::process::id();
        let info = ProcessInfo::read(&HostPaths::default(), pid).unwrap();
        assert_eq!(info.pid, pid);
        assert!(info.start_time.is_some());
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_string_lossy();
        assert_eq!(info.executable_name, name);
        assert_eq!(info.executable_path.as_deref(), exe.to_str());
        assert!(info.command_line.is_some());
        let configured = std::env::var_os("OTEL_SERVICE_NAME").is_some()
            || std::env::var_os("OTEL_RESOURCE_ATTRIBUTES").is_some();
        if !configured {
            assert_eq!(info.service_name, name);
            assert_eq!(info.service_name_source, ServiceNameSource::Executable);
        }
    }

    #[test]
    fn passwd_lookup() {
        let passwd = fixtures().passwd();
        assert_eq!(user_name(&passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(&passwd, 33).as_deref(), Some("www-data"));
        assert_eq!(user_name(&passwd, 4242), None);
    }

    #[test]
    fn snapshot_of_a_vanished_process() {
        let snap = ProcessSnapshot {
            comm: "curl".into(),
            cmdline: b"/usr/bin/curl\0-s\0http://x/\0".to_vec(),
            environ: b"HOME=/root\0OTEL_SERVICE_NAME=batch-job\0".to_vec(),
            environ_truncated: false,
        };
        let info = ProcessInfo::from_snapshot(42, &snap);
        assert_eq!(info.executable_name, "curl");
        assert_eq!(
            info.command_line.as_deref(),
            Some("/usr/bin/curl -s http://x/")
        );
        assert_eq!(info.service_name, "batch-job");
        assert_eq!(info.service_name_source, ServiceNameSource::ServiceNameVar);
    }

    #[test]
    fn snapshot_with_a_process_title() {
        // A PostgreSQL backend rewrites its arguments into a title.
        let snap = ProcessSnapshot {
            comm: "postgres".into(),
            cmdline: b"postgres: app shop 10.0.0.7(51324) idle\0".to_vec(),
            environ: Vec::new(),
            environ_truncated: false,
        };
        let info = ProcessInfo::from_snapshot(43, &snap);
        assert_eq!(info.executable_name, "postgres");
        assert_eq!(info.service_name, "postgres");
    }

    #[test]
    fn snapshot_completes_a_zombie() {
        let mut info = read(3001);
        let snap = ProcessSnapshot {
            comm: info.comm.clone(),
            cmdline: b"worker\0--once\0".to_vec(),
            environ: b"OTEL_RESOURCE_ATTRIBUTES=service.name=jobs,service.version=2\0".to_vec(),
            environ_truncated: false,
        };
        info.complete_from(&snap);
        assert_eq!(info.command_line.as_deref(), Some("worker --once"));
        assert_eq!(info.service_name, "jobs");
    }
}
