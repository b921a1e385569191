//! Loads the embedded eBPF object, writes its globals (own pid, capture
//! size, wakeup threshold, kernel offsets), sizes its maps and attaches every
//! program to its tracepoints.

use std::{os::fd::AsFd as _, path::Path};

use agent_common::{EndpointKey, KernelOffsets, MAX_CAPTURE_BYTES};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};

use super::{
    BpfError,
    attach::Attachment,
    conns::ConnMap,
    counters::KernelCounters,
    offsets,
    select::{KernelSelection, ProcFilter},
    tracefs,
};

/// The eBPF object, built by `build.rs` from `agent-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent"));

/// Writes (and connect): (entry program, tracepoint suffix). The shared
/// `sys_exit_data` program is attached to `sys_exit_<suffix>` of each.
const EGRESS_SYSCALLS: &[(&str, &str)] = &[
    ("sys_enter_write", "write"),
    ("sys_enter_sendto", "sendto"),
    ("sys_enter_writev", "writev"),
    ("sys_enter_sendmsg", "sendmsg"),
    ("sys_enter_sendmmsg", "sendmmsg"),
    ("sys_enter_sendfile64", "sendfile64"),
    ("sys_enter_connect", "connect"),
];

/// Reads: one exit program each (`sys_exit_<suffix>`), no entry program
/// (arguments come from the saved user registers).
const INGRESS_SYSCALLS: &[&str] = &["read", "recvfrom", "readv", "recvmsg", "recvmmsg"];

/// Other programs: (program, category, tracepoint).
const LIFECYCLE: &[(&str, &str, &str)] = &[
    ("sys_exit_accept4", "syscalls", "sys_exit_accept4"),
    ("sys_exit_accept", "syscalls", "sys_exit_accept"),
    ("sys_enter_close", "syscalls", "sys_enter_close"),
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    // Process lifecycle counts (agent-ebpf/src/sched.rs).
    ("sched_fork_count", "sched", "sched_process_fork"),
    ("sched_exec_count", "sched", "sched_process_exec"),
    ("sched_exit_count", "sched", "sched_process_exit"),
];

/// Inode number of the agent's network namespace.
fn own_netns() -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let ino = std::fs::metadata("/proc/self/ns/net")?.ino();
    u32::try_from(ino).map_err(|_| std::io::Error::other(format!("netns inode {ino} > u32")))
}

/// Every (category, tracepoint) the capture attaches to by default: the
/// hook points whose bare cost `cargo xtask bench hooks` measures.
pub fn capture_tracepoints() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for &(_, suffix) in EGRESS_SYSCALLS {
        out.push(("syscalls", format!("sys_enter_{suffix}")));
        out.push(("syscalls", format!("sys_exit_{suffix}")));
    }
    for &suffix in INGRESS_SYSCALLS {
        out.push(("syscalls", format!("sys_exit_{suffix}")));
    }
    for &(_, category, name) in LIFECYCLE {
        if !out.iter().any(|(c, n)| *c == category && n == name) {
            out.push((category, name.to_string()));
        }
    }
    out
}

/// How [`NoopHooks`] hooks the capture's syscalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoopMode {
    /// A no-op program on each of the capture's tracepoints.
    Tracepoints,
    /// A no-op raw tracepoint on `sys_enter` and `sys_exit` (every
    /// syscall) instead of the syscall tracepoints; the other tracepoints
    /// as above.
    RawSyscalls,
}

/// No-op programs on the capture's hook points, attached (the same way as
/// the capture's) while this lives: the floor any capture on them pays
/// (`cargo xtask bench hooks`).
pub struct NoopHooks {
    _links: Vec<Attachment>,
    _ebpf: Ebpf,
    pub attached: usize,
}

impl NoopHooks {
    pub fn attach(mode: NoopMode) -> Result<Self, BpfError> {
        raise_memlock_best_effort();
        tracefs::ensure_mounted()?;
        let mut ebpf = EbpfLoader::new()
            .load(OBJECT)
            .map_err(|e| BpfError::Load(Box::new(e)))?;
        let mut points = capture_tracepoints();
        let mut raw_attached = 0;
        if mode == NoopMode::RawSyscalls {
            points.retain(|(category, _)| *category != "syscalls");
            let program = "doctor_raw_tracepoint";
            let error = |source: aya::programs::ProgramError| BpfError::Program {
                program: program.into(),
                source: Box::new(source),
            };
            let prog: &mut aya::programs::RawTracePoint = ebpf
                .program_mut(program)
                .ok_or(BpfError::Program {
                    program: program.into(),
                    source: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
                })?
                .try_into()
                .map_err(error)?;
            prog.load().map_err(error)?;
            for tp in ["sys_enter", "sys_exit"] {
                // The link is owned by the program, detached with the object.
                prog.attach(tp).map_err(error)?;
                raw_attached += 1;
            }
        }
        let mut links = Vec::new();
        for (category, name) in &points {
            links.push(attach(&mut ebpf, "doctor_tracepoint", category, name)?);
        }
        Ok(Self {
            attached: links.len() + raw_attached,
            _links: links,
            _ebpf: ebpf,
        })
    }
}

/// Load-time settings of the kernel side.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Payload prefix copied per syscall (<= MAX_CAPTURE_BYTES).
    pub capture_bytes: u32,
    /// Size of the event ring buffer, a power of two multiple of the page size.
    pub ring_bytes: u32,
    /// Capacity of the kernel connection map.
    pub max_connections: u32,
    /// Records per CPU between forced wake-ups of the reader (0: on every
    /// record).
    pub wakeup_records: u64,
    /// Data syscalls of no supported protocol before an unclassified
    /// connection is given up (0: never; <= 65535).
    pub classify_attempts: u32,
    /// Ports and processes the user chose not to trace.
    pub selection: KernelSelection,
    /// Attach the run-queue delay programs (sched_switch/sched_wakeup; off
    /// by default: see BENCHMARKS.md for their cost).
    pub runqueue_latency: bool,
}

/// Fork and exec keep the excluded-process set right; attached only when
/// processes are selected.
const SELECTION_PROGRAMS: &[(&str, &str, &str)] = &[
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exec", "sched", "sched_process_exec"),
];

/// The run-queue delay programs: (program, tracepoint).
const RUNQ: &[(&str, &str)] = &[
    ("runq_wakeup", "sched_wakeup"),
    ("runq_wakeup_new", "sched_wakeup_new"),
    ("runq_switch", "sched_switch"),
];

/// The loaded, attached programs and the maps userspace reads.
pub struct Capture {
    /// The attachments, owned here so [`Capture::detach`] can close them
    /// all at once.
    links: Vec<Attachment>,
    /// Programs and the maps not taken by userspace.
    ebpf: Ebpf,
    pub attached: usize,
    proc_filter: Option<ProcFilter>,
}

impl Capture {
    /// Loads and attaches everything. Fails with a clear error when not root,
    /// without BTF, or when the kernel refuses a program.
    pub fn load(opts: &LoadOptions) -> Result<Self, BpfError> {
        validate(opts)?;
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(BpfError::NotRoot(euid));
        }
        raise_memlock_best_effort();
        let tracefs = tracefs::ensure_mounted()?;
        check_formats(&tracefs)?;
        let mut offsets = offsets::from_btf(Path::new(offsets::VMLINUX_BTF))?;
        offsets.exit_group_dead =
            tracefs::field(&tracefs, "sched", "sched_process_exit", "group_dead")?
                .map_or(0, |(off, _)| off);
        let tgid = std::process::id();
        let select = &opts.selection;
        let by_process = select.flags & agent_common::select::SelectFlags::PROCESSES != 0;
        let fork_child_pid_at: u32 = if by_process {
            match tracefs::field(&tracefs, "sched", "sched_process_fork", "child_pid")? {
                Some((off, 4)) => off,
                found => {
                    return Err(BpfError::TracepointFormat {
                        category: "sched".into(),
                        name: "sched_process_fork".into(),
                        reason: format!("field child_pid of 4 bytes expected, found {found:?}"),
                    });
                }
            }
        } else {
            0
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("AGENT_TGID", &tgid, true)
            .override_global("SELECT_FLAGS", &select.flags, true)
            .override_global("FORK_CHILD_PID_AT", &fork_child_pid_at, true)
            .override_global("CAPTURE_BYTES", &opts.capture_bytes, true)
            .override_global("WAKEUP_EVERY", &opts.wakeup_records, true)
            .override_global("CLASSIFY_ATTEMPTS", &opts.classify_attempts, true)
            .override_global("KERNEL_OFFSETS", &offsets, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .map_max_entries("CONNS", opts.max_connections)
            .map_max_entries("SK_TRACED", opts.max_connections)
            .load(OBJECT)
            .map_err(|e| BpfError::Load(Box::new(e)))?;
        // The selection is in place before the first program runs.
        if !select.ports.is_empty() {
            let map = ebpf
                .map_mut("PORT_SELECT")
                .ok_or(BpfError::MissingMap("PORT_SELECT"))?;
            super::select::write_ports(map, &select.ports)?;
        }
        let mut proc_filter = ProcFilter::new(
            ebpf.take_map("PROC_EXCLUDED")
                .ok_or(BpfError::MissingMap("PROC_EXCLUDED"))?,
        )?;
        for &pid in &select.excluded {
            proc_filter.exclude(pid);
        }
        let mut links = Vec::new();
        // On an error, `links` is dropped: what was attached is detached.
        for &(program, suffix) in EGRESS_SYSCALLS {
            let (enter, exit) = (format!("sys_enter_{suffix}"), format!("sys_exit_{suffix}"));
            links.push(attach(&mut ebpf, program, "syscalls", &enter)?);
            links.push(attach(&mut ebpf, "sys_exit_data", "syscalls", &exit)?);
        }
        for &suffix in INGRESS_SYSCALLS {
            let exit = format!("sys_exit_{suffix}");
            links.push(attach(&mut ebpf, &exit, "syscalls", &exit)?);
        }
        for &(program, category, name) in LIFECYCLE {
            links.push(attach(&mut ebpf, program, category, name)?);
        }
        if by_process {
            for &(program, category, name) in SELECTION_PROGRAMS {
                links.push(attach(&mut ebpf, program, category, name)?);
            }
        }
        if opts.runqueue_latency {
            for (field, off, size) in [
                ("prev_pid", 24, 4),
                ("prev_state", 32, 8),
                ("next_pid", 56, 4),
            ] {
                tracefs::expect_field(&tracefs, "sched", "sched_switch", field, off, size)?;
            }
            for tp in ["sched_wakeup", "sched_wakeup_new"] {
                tracefs::expect_field(&tracefs, "sched", tp, "pid", 24, 4)?;
            }
            for &(program, name) in RUNQ {
                links.push(attach(&mut ebpf, program, "sched", name)?);
            }
        }
        log_offsets(&offsets);
        let attached = links.len();
        Ok(Self {
            links,
            ebpf,
            attached,
            proc_filter: Some(proc_filter),
        })
    }

    /// Detaches every program at once: each stops running when its link
    /// closes (microseconds). What is slow to tear down (the perf events,
    /// whose unregistration waits for an RCU grace period; the object) is
    /// returned, to be dropped once the rest of the shutdown is done.
    pub fn detach(self) -> Teardown {
        let Self {
            links,
            ebpf,
            proc_filter,
            ..
        } = self;
        drop(proc_filter);
        Teardown {
            perf_events: super::attach::detach_all(links),
            ebpf: Some(ebpf),
        }
    }

    /// The event ring buffer (taken once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, BpfError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(BpfError::MissingMap("EVENTS"))?;
        RingBuf::try_from(map).map_err(|source| BpfError::Map {
            name: "EVENTS",
            source: Box::new(source),
        })
    }

    /// Attaches (then detaches) the doctor's uprobe to `symbol` of `target`
    /// (a library name like `libc`, or a path).
    pub fn try_uprobe(&mut self, symbol: &str, target: &str) -> Result<(), String> {
        let prog: &mut aya::programs::UProbe = self
            .ebpf
            .program_mut("doctor_uprobe")
            .ok_or("doctor_uprobe missing from the object")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        prog.load().map_err(|e| error_chain(&e))?;
        let id = prog
            .attach(
                symbol,
                target,
                aya::programs::uprobe::UProbeScope::AllProcesses,
            )
            .map_err(|e| error_chain(&e))?;
        prog.detach(id).map_err(|e| error_chain(&e))
    }

    /// Attaches (then detaches) the doctor's kprobe to kernel function `f`.
    pub fn try_kprobe(&mut self, f: &str) -> Result<(), String> {
        let prog: &mut aya::programs::KProbe = self
            .ebpf
            .program_mut("doctor_kprobe")
            .ok_or("doctor_kprobe missing from the object")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        prog.load().map_err(|e| error_chain(&e))?;
        let id = prog.attach(f, 0).map_err(|e| error_chain(&e))?;
        prog.detach(id).map_err(|e| error_chain(&e))
    }

    /// Loads and attaches (then detaches) the doctor's fentry program on
    /// kernel function `f`.
    pub fn try_fentry(&mut self, f: &str) -> Result<(), String> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| e.to_string())?;
        let prog: &mut aya::programs::FEntry = self
            .ebpf
            .program_mut("doctor_fentry")
            .ok_or("doctor_fentry missing from the object")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        prog.load(f, &btf).map_err(|e| error_chain(&e))?;
        let id = prog.attach().map_err(|e| error_chain(&e))?;
        prog.detach(id).map_err(|e| error_chain(&e))
    }

    /// The excluded-process set (taken once).
    pub fn take_proc_filter(&mut self) -> Result<ProcFilter, BpfError> {
        self.proc_filter
            .take()
            .ok_or(BpfError::MissingMap("PROC_EXCLUDED"))
    }

    /// The kernel counters (taken once).
    pub fn take_counters(&mut self) -> Result<KernelCounters, BpfError> {
        let map = self
            .ebpf
            .take_map("COUNTERS")
            .ok_or(BpfError::MissingMap("COUNTERS"))?;
        KernelCounters::new(map)
    }

    /// Declares one of the agent's listening sockets: connections to it
    /// (Prometheus scraping `/metrics`, probes) are not traced. The kernel
    /// adds the agent's outgoing connections by itself.
    pub fn add_own_listener(&mut self, addr: std::net::SocketAddr) -> Result<(), BpfError> {
        let map = self
            .ebpf
            .map_mut("AGENT_ENDPOINTS")
            .ok_or(BpfError::MissingMap("AGENT_ENDPOINTS"))?;
        let mut map: aya::maps::HashMap<_, EndpointKey, u8> = aya::maps::HashMap::try_from(map)
            .map_err(|source| BpfError::Map {
                name: "AGENT_ENDPOINTS",
                source: Box::new(source),
            })?;
        let mut key = EndpointKey {
            port: addr.port(),
            ..EndpointKey::default()
        };
        // A wildcard bind matches any address (key address 0, netns 0); a
        // specific address is looked up with the connection's network
        // namespace, which is the agent's own (the inode of its
        // `/proc/self/ns/net`, the kernel's `net->ns.inum`).
        match addr.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => {
                key.addr[..4].copy_from_slice(&ip.octets());
            }
            std::net::IpAddr::V6(ip) if !ip.is_unspecified() => key.addr = ip.octets(),
            _ => {}
        }
        if key.addr != [0; 16] {
            key.netns = own_netns().map_err(BpfError::OwnNetns)?;
        }
        map.insert(key, 1, 0).map_err(|source| BpfError::Map {
            name: "AGENT_ENDPOINTS",
            source: Box::new(source),
        })
    }

    /// The fork/exec/exit counts (taken once).
    pub fn take_sched_stats(&mut self) -> Result<PerCpuArray<MapData, u64>, BpfError> {
        let map = self
            .ebpf
            .take_map("SCHED_STATS")
            .ok_or(BpfError::MissingMap("SCHED_STATS"))?;
        PerCpuArray::try_from(map).map_err(|source| BpfError::Map {
            name: "SCHED_STATS",
            source: Box::new(source),
        })
    }

    /// The connection map (taken once).
    pub fn take_conns(&mut self) -> Result<ConnMap, BpfError> {
        let map = self
            .ebpf
            .take_map("CONNS")
            .ok_or(BpfError::MissingMap("CONNS"))?;
        ConnMap::new(map)
    }
}

/// An error with its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn validate(opts: &LoadOptions) -> Result<(), BpfError> {
    if opts.capture_bytes == 0 || opts.capture_bytes as usize > MAX_CAPTURE_BYTES {
        return Err(BpfError::Option(format!(
            "capture_bytes must be between 1 and {MAX_CAPTURE_BYTES}, got {}",
            opts.capture_bytes
        )));
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
    if !opts.ring_bytes.is_power_of_two() || opts.ring_bytes < page {
        return Err(BpfError::Option(format!(
            "ring_buffer_bytes must be a power of two of at least {page}, got {}",
            opts.ring_bytes
        )));
    }
    if opts.max_connections == 0 {
        return Err(BpfError::Option("max_connections must be positive".into()));
    }
    Ok(())
}

fn attach(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
) -> Result<Attachment, BpfError> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| BpfError::Program {
            program: program.to_string(),
            source: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
        })?
        .try_into()
        .map_err(|source| BpfError::Program {
            program: program.to_string(),
            source: Box::new(source),
        })?;
    if prog.fd().is_err() {
        prog.load().map_err(|source| BpfError::Program {
            program: program.to_string(),
            source: Box::new(source),
        })?;
    }
    let attach_error = |source: Box<dyn std::error::Error + Send + Sync>| BpfError::Attach {
        program: program.to_string(),
        category: category.to_string(),
        name: name.to_string(),
        source,
    };
    let fd = prog.fd().map_err(|e| attach_error(Box::new(e)))?;
    let tracefs = tracefs::ensure_mounted()?;
    Attachment::tracepoint(fd.as_fd(), &tracefs, category, name)
        .map_err(|e| attach_error(Box::new(e)))
}

/// What [`Capture::detach`] leaves to tear down: the perf events (closed
/// in parallel) and the object. Dropping it blocks for a grace period.
pub struct Teardown {
    perf_events: Vec<std::os::fd::OwnedFd>,
    ebpf: Option<Ebpf>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        super::attach::close_all(std::mem::take(&mut self.perf_events));
        drop(self.ebpf.take());
    }
}

/// The programs read tracepoint records at fixed offsets; refuse to run if
/// this kernel lays them out differently.
fn check_formats(tracefs: &Path) -> Result<(), BpfError> {
    for &(_, suffix) in EGRESS_SYSCALLS {
        let enter = format!("sys_enter_{suffix}");
        let first = if suffix == "sendfile64" {
            "out_fd"
        } else {
            "fd"
        };
        tracefs::expect_field(tracefs, "syscalls", &enter, first, 16, 8)?;
        tracefs::expect_field(
            tracefs,
            "syscalls",
            &format!("sys_exit_{suffix}"),
            "ret",
            16,
            8,
        )?;
    }
    for &suffix in INGRESS_SYSCALLS {
        tracefs::expect_field(
            tracefs,
            "syscalls",
            &format!("sys_exit_{suffix}"),
            "ret",
            16,
            8,
        )?;
    }
    tracefs::expect_field(tracefs, "syscalls", "sys_enter_close", "fd", 16, 8)?;
    tracefs::expect_field(tracefs, "syscalls", "sys_exit_accept4", "ret", 16, 8)?;
    tracefs::expect_field(tracefs, "syscalls", "sys_exit_accept", "ret", 16, 8)?;
    for (field, off, size) in [
        ("skaddr", 8, 8),
        ("oldstate", 16, 4),
        ("newstate", 20, 4),
        ("protocol", 30, 2),
    ] {
        tracefs::expect_field(tracefs, "sock", "inet_sock_set_state", field, off, size)?;
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones to
/// the cgroup. Raising the limit needs CAP_SYS_RESOURCE, which we may not
/// have and do not need on current kernels, so failure is only logged.
fn raise_memlock_best_effort() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an initialised rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::last_os_error()
        );
    }
}

fn log_offsets(o: &KernelOffsets) {
    tracing::debug!(?o, "kernel offsets from BTF");
}
