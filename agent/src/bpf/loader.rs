//! Loads the embedded eBPF object, writes its globals (own pid, capture
//! size, wakeup threshold, kernel offsets), sizes its maps and attaches every
//! program to its tracepoints.

use std::path::Path;

use agent_common::{KernelOffsets, MAX_CAPTURE_BYTES};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{TracePoint, trace_point::TracePointLink},
};

use super::{BpfError, conns::ConnMap, counters::KernelCounters, offsets, tracefs};

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
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_exit_count", "sched", "sched_process_exit"),
];

/// Load-time settings of the kernel side.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Payload prefix copied per syscall (<= MAX_CAPTURE_BYTES).
    pub capture_bytes: u32,
    /// Size of the event ring buffer, a power of two multiple of the page size.
    pub ring_bytes: u32,
    /// Capacity of the kernel connection map.
    pub max_connections: u32,
    /// Wake the reader once this many bytes wait (0: on every record).
    pub wakeup_bytes: u64,
    /// Attach the run-queue delay programs (sched_switch/sched_wakeup; off
    /// by default: see BENCHMARKS.md for their cost).
    pub runqueue_latency: bool,
}

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
    links: Vec<TracePointLink>,
    /// Programs and the maps not taken by userspace.
    ebpf: Ebpf,
    pub attached: usize,
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
        let mut ebpf = EbpfLoader::new()
            .override_global("AGENT_TGID", &tgid, true)
            .override_global("CAPTURE_BYTES", &opts.capture_bytes, true)
            .override_global("WAKEUP_BYTES", &opts.wakeup_bytes, true)
            .override_global("KERNEL_OFFSETS", &offsets, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .map_max_entries("CONNS", opts.max_connections)
            .map_max_entries("SK_TRACED", opts.max_connections)
            .load(OBJECT)
            .map_err(|e| BpfError::Load(Box::new(e)))?;
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
        })
    }

    /// Detaches every program, in parallel: closing one tracepoint
    /// attachment waits for an RCU grace period (tens of milliseconds), so
    /// closing two dozen one after the other takes seconds, while
    /// concurrent closes share their grace periods.
    pub fn detach(self) {
        let Self { links, ebpf, .. } = self;
        std::thread::scope(|scope| {
            for link in links {
                let spawned = std::thread::Builder::new()
                    .name("detach".into())
                    .spawn_scoped(scope, move || drop(link));
                if let Err(e) = spawned {
                    // The link went down with the failed closure: dropped
                    // here, one at a time.
                    tracing::debug!("detaching on the calling thread: {e}");
                }
            }
        });
        drop(ebpf);
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

    /// The kernel counters (taken once).
    pub fn take_counters(&mut self) -> Result<KernelCounters, BpfError> {
        let map = self
            .ebpf
            .take_map("COUNTERS")
            .ok_or(BpfError::MissingMap("COUNTERS"))?;
        KernelCounters::new(map)
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
) -> Result<TracePointLink, BpfError> {
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
    let attach_error = |source| BpfError::Attach {
        program: program.to_string(),
        category: category.to_string(),
        name: name.to_string(),
        source: Box::new(source),
    };
    let id = prog.attach(category, name).map_err(attach_error)?;
    prog.take_link(id).map_err(attach_error)
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
