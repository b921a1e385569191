//! `agent doctor`: can this host run the agent, and if not, what to fix.
//!
//! Every check is run for real where that is cheap: the eBPF object is
//! loaded and every program attached (then detached), a ring buffer map is
//! created, a uprobe is attached to libc, and a kprobe and an fentry
//! program are tried (the agent needs neither: it says so).

use std::{
    fmt::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use crate::bpf::{Capture, LoadOptions, offsets, select::KernelSelection};

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works with a limitation, or a feature the agent does not need.
    Warn,
    /// Not needed by the agent and not available here.
    Unavailable,
    /// The agent cannot run.
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Unavailable => "n/a",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it (for warn/fail/n/a).
    pub fix: String,
}

fn check(
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Runs every check.
pub fn run() -> Vec<Check> {
    let mut out = vec![
        kernel_version(),
        btf(),
        tracefs_check(),
        bpffs(),
        cgroup_v2(),
        memlock(),
    ];
    out.push(capabilities());
    out.push(ring_buffer());
    out.extend(programs());
    out.push(proc_access());
    out
}

/// The report as a table, and whether the agent can run.
pub fn render(checks: &[Check]) -> (String, bool) {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(s, "{:<4}  {:<width$}  detail", "", "check");
    for c in checks {
        let _ = writeln!(
            s,
            "{:<4}  {:<width$}  {}",
            c.status.word(),
            c.name,
            c.detail
        );
        if !c.fix.is_empty() && c.status != Status::Ok {
            let _ = writeln!(s, "{:<4}  {:<width$}  -> {}", "", "", c.fix);
        }
    }
    let can_run = !checks.iter().any(|c| c.status == Status::Fail);
    let _ = writeln!(
        s,
        "\n{}",
        if can_run {
            "The agent can run on this host."
        } else {
            "The agent cannot run on this host: fix the FAIL lines above."
        }
    );
    (s, can_run)
}

fn kernel_version() -> Check {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    // bpf_loop (the iovec copy) arrived in 5.17, bpf_task_pt_regs (the
    // reads' arguments) and BPF perf links in 5.15; ring buffers in 5.8,
    // BTF-typed current task in 5.11.
    if (major, minor) >= (5, 17) {
        check(
            "kernel",
            Status::Ok,
            format!("Linux {release} (>= 5.17)"),
            "",
        )
    } else {
        check(
            "kernel",
            Status::Fail,
            format!(
                "Linux {release}: the programs need 5.17 or later (bpf_loop, bpf_task_pt_regs)"
            ),
            "run a kernel >= 5.17 (current distribution kernels are)",
        )
    }
}

fn btf() -> Check {
    match offsets::from_btf(Path::new(offsets::VMLINUX_BTF)) {
        Ok(_) => check(
            "BTF",
            Status::Ok,
            format!(
                "{} has every structure the programs read",
                offsets::VMLINUX_BTF
            ),
            "",
        ),
        Err(e) => check(
            "BTF",
            Status::Fail,
            e.to_string(),
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (and mount /sys/kernel/btf into the container)",
        ),
    }
}

fn is_mount(path: &str, fstype: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines().any(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let sep = f.iter().position(|x| *x == "-");
                f.get(4) == Some(&path) && sep.and_then(|i| f.get(i + 1)) == Some(&fstype)
            })
        })
        .unwrap_or(false)
}

fn tracefs_check() -> Check {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("events").is_dir() {
            return check("tracefs", Status::Ok, format!("mounted at {dir}"), "");
        }
    }
    check(
        "tracefs",
        Status::Warn,
        "not mounted: the agent mounts it at /sys/kernel/tracing (needs CAP_SYS_ADMIN)",
        "mount -t tracefs tracefs /sys/kernel/tracing, or mount the host's /sys/kernel/tracing into the container",
    )
}

fn bpffs() -> Check {
    if is_mount("/sys/fs/bpf", "bpf") {
        check("bpffs", Status::Ok, "mounted at /sys/fs/bpf", "")
    } else {
        check(
            "bpffs",
            Status::Warn,
            "/sys/fs/bpf is not a bpf filesystem (the agent pins nothing today; it does not need it)",
            "mount -t bpf bpf /sys/fs/bpf",
        )
    }
}

fn cgroup_v2() -> Check {
    if is_mount("/sys/fs/cgroup", "cgroup2") {
        check(
            "cgroup v2",
            Status::Ok,
            "unified hierarchy at /sys/fs/cgroup",
            "",
        )
    } else if is_mount("/sys/fs/cgroup/unified", "cgroup2") {
        check(
            "cgroup v2",
            Status::Ok,
            "hybrid: v1 controllers, unified hierarchy at /sys/fs/cgroup/unified",
            "",
        )
    } else {
        check(
            "cgroup v2",
            Status::Warn,
            "no cgroup2 mount: container ids come from the v1 paths; cgroup selection uses them too",
            "boot with systemd.unified_cgroup_hierarchy=1",
        )
    }
}

fn memlock() -> Check {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    let show = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            format!("{} KiB", v / 1024)
        }
    };
    // Since 5.11 BPF memory is charged to the memory cgroup, not memlock.
    check(
        "memlock",
        Status::Ok,
        format!(
            "RLIMIT_MEMLOCK {} (kernels >= 5.11 charge BPF maps to the memory cgroup; the agent raises it on older ones when it may)",
            show(r.rlim_cur)
        ),
        "",
    )
}

/// Capability numbers (linux/capability.h).
const CAPS: &[(u32, &str, &str)] = &[
    (39, "CAP_BPF", "load programs and create maps"),
    (
        38,
        "CAP_PERFMON",
        "attach tracepoints and uprobes, read kernel memory",
    ),
    (
        19,
        "CAP_SYS_PTRACE",
        "read /proc/PID/environ and the descriptors of other users' processes",
    ),
    (
        21,
        "CAP_SYS_ADMIN",
        "mount tracefs when it is not mounted; read fdinfo of BPF links",
    ),
    (
        2,
        "CAP_DAC_READ_SEARCH",
        "read tracefs and /proc files of other users",
    ),
];

fn capabilities() -> Check {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let have: Vec<&str> = CAPS
        .iter()
        .filter(|(n, _, _)| eff & (1 << n) != 0)
        .map(|(_, name, _)| *name)
        .collect();
    let missing: Vec<String> = CAPS
        .iter()
        .filter(|(n, _, _)| eff & (1 << n) == 0)
        .map(|(_, name, why)| format!("{name} ({why})"))
        .collect();
    if missing.is_empty() {
        check(
            "capabilities",
            Status::Ok,
            format!("effective: {}", have.join(", ")),
            "",
        )
    } else {
        check(
            "capabilities",
            Status::Warn,
            format!("missing: {}", missing.join("; ")),
            "run as root, or grant CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH (and CAP_SYS_ADMIN if tracefs is not mounted); see the program load line for the verdict",
        )
    }
}

/// Creates (and closes) a 64 KiB ring buffer map with the raw syscall.
fn ring_buffer() -> Check {
    #[repr(C)]
    #[derive(Default)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        _rest: [u32; 27],
    }
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_RINGBUF: u32 = 27;
    let attr = MapCreate {
        map_type: BPF_MAP_TYPE_RINGBUF,
        max_entries: 64 * 1024,
        ..MapCreate::default()
    };
    // SAFETY: BPF_MAP_CREATE with a zero-padded attribute of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const MapCreate,
            std::mem::size_of::<MapCreate>() as u32,
        )
    };
    if fd >= 0 {
        // SAFETY: a descriptor we own.
        unsafe { libc::close(fd as i32) };
        check(
            "ring buffer",
            Status::Ok,
            "BPF_MAP_TYPE_RINGBUF created",
            "",
        )
    } else {
        let e = std::io::Error::last_os_error();
        check(
            "ring buffer",
            Status::Fail,
            format!("cannot create a BPF ring buffer: {e}"),
            "kernel >= 5.8 and CAP_BPF (or root)",
        )
    }
}

/// Loads the whole object and attaches every tracepoint program, then the
/// doctor's own uprobe, kprobe and fentry probes.
fn programs() -> Vec<Check> {
    let mut out = Vec::new();
    let started = Instant::now();
    let opts = LoadOptions {
        capture_bytes: agent_common::DEFAULT_CAPTURE_BYTES,
        ring_bytes: 1 << 16,
        max_connections: 1024,
        wakeup_records: 0,
        classify_attempts: agent_common::DEFAULT_CLASSIFY_ATTEMPTS,
        selection: KernelSelection {
            flags: agent_common::select::SelectFlags::PROCESSES,
            ..KernelSelection::default()
        },
        runqueue_latency: false,
    };
    match Capture::load(&opts) {
        Ok(mut capture) => {
            out.push(check(
                "tracepoints",
                Status::Ok,
                format!(
                    "every tracepoint exists with the expected layout; {} programs loaded and attached in {:.1?}",
                    capture.attached,
                    started.elapsed()
                ),
                "",
            ));
            out.push(uprobe(&mut capture));
            out.push(kprobe(&mut capture));
            out.push(fentry(&mut capture));
            capture.detach();
        }
        Err(e) => {
            out.push(check(
                "tracepoints",
                Status::Fail,
                format!("the programs cannot be loaded or attached: {e}"),
                "run as root (or with the capabilities above) on a kernel >= 5.17 with BTF; in a container: privileged, or the capabilities and the tracefs mount of deploy/kubernetes",
            ));
        }
    }
    out
}

/// A libc to probe: the one this process maps, else the host's (through
/// `/proc/1/root` in a container that has no libc of its own).
fn libc_path() -> String {
    for pid in ["self", "1"] {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        if let Some(path) = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
        {
            return if pid == "self" {
                path.to_string()
            } else {
                format!("/proc/1/root{path}")
            };
        }
    }
    "libc".to_string()
}

fn uprobe(capture: &mut Capture) -> Check {
    let events = tracefs_dir()
        .map(|d| d.join("uprobe_events").exists())
        .unwrap_or(false);
    let lib = libc_path();
    match capture.try_uprobe("getpid", &lib) {
        Ok(()) => check(
            "uprobes",
            Status::Ok,
            format!(
                "attached to getpid in {lib}{}",
                if events {
                    " (uprobe_events present)"
                } else {
                    ""
                }
            ),
            "",
        ),
        Err(e) => check(
            "uprobes",
            Status::Warn,
            format!("cannot attach a uprobe to libc: {e} (the agent does not need uprobes today)"),
            "a kernel with CONFIG_UPROBE_EVENTS=y",
        ),
    }
}

fn kprobe(capture: &mut Capture) -> Check {
    let events = tracefs_dir()
        .map(|d| d.join("kprobe_events").exists())
        .unwrap_or(false);
    match capture.try_kprobe("do_sys_openat2") {
        Ok(()) => check(
            "kprobes",
            Status::Ok,
            "attached to do_sys_openat2 (the agent does not need them)",
            "",
        ),
        Err(e) => check(
            "kprobes",
            Status::Unavailable,
            format!(
                "not available ({}{e}): the agent uses no kprobes and runs without them",
                if events {
                    ""
                } else {
                    "kprobe_events missing; "
                }
            ),
            "nothing to do (CONFIG_KPROBE_EVENTS=y would enable them)",
        ),
    }
}

fn fentry(capture: &mut Capture) -> Check {
    match capture.try_fentry("do_sys_openat2") {
        Ok(()) => check(
            "fentry",
            Status::Ok,
            "loaded and attached (the agent does not need it)",
            "",
        ),
        Err(e) => check(
            "fentry",
            Status::Unavailable,
            format!(
                "not available ({e}): the agent uses no fentry/fexit programs and runs without them"
            ),
            "nothing to do (BPF trampolines need CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS)",
        ),
    }
}

fn tracefs_dir() -> Option<std::path::PathBuf> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|d| d.join("events").is_dir())
}

/// The agent describes processes from /proc: is another process's
/// environment readable (hidepid, missing CAP_SYS_PTRACE)?
fn proc_access() -> Check {
    let deadline = Instant::now() + Duration::from_millis(200);
    let own = std::process::id();
    let mut tried = 0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid == own || Instant::now() > deadline {
                continue;
            }
            tried += 1;
            if std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|b| !b.is_empty()) {
                return check(
                    "/proc",
                    Status::Ok,
                    "other processes' environment and executables are readable (service.name, OTEL_RESOURCE_ATTRIBUTES)",
                    "",
                );
            }
        }
    }
    check(
        "/proc",
        Status::Warn,
        format!(
            "no other process's environment is readable ({tried} tried): resources fall back to the kernel's snapshot"
        ),
        "grant CAP_SYS_PTRACE; with hostPID in Kubernetes",
    )
}
