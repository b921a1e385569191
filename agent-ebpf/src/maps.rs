//! Maps, load-time globals and counters.

use agent_common::{
    ConnKey, ConnVal, Counter, DEFAULT_CAPTURE_BYTES, DEFAULT_CLASSIFY_ATTEMPTS, DEFAULT_MAX_CONNS,
    DEFAULT_RING_BYTES, EndpointKey, Inflight, KernelOffsets, MAX_CAPTURE_BYTES, MAX_INFLIGHT,
    MAX_PROCS_SEEN, ProcInfoHeader,
    counters::COUNTER_COUNT,
    record::{DataHeader, MAX_PROC_ENVIRON},
};
use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};

/// Every record for userspace: data, connection open/close, process exit.
/// Size set by userspace at load time (`ring_buffer_bytes`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Sockets of interest, by (tgid, fd). Capacity set by userspace
/// (`max_connections`); a failed insert is counted as `conn_map_full`.
#[map]
pub static CONNS: HashMap<ConnKey, ConnVal> = HashMap::with_max_entries(DEFAULT_MAX_CONNS, 0);

/// Traced sockets by `struct sock` address, for `inet_sock_set_state`.
#[map]
pub static SK_TRACED: HashMap<u64, ConnKey> = HashMap::with_max_entries(DEFAULT_MAX_CONNS, 0);

/// The agent's own endpoints: sockets it connected (the kernel adds them
/// at `connect`) and its listening sockets (userspace adds them). A
/// connection whose peer is one of them is the agent talking to itself or
/// to a local collector: it is ignored before any record is written.
#[map]
pub static AGENT_ENDPOINTS: LruHashMap<EndpointKey, u8> =
    LruHashMap::with_max_entries(agent_common::maps::MAX_AGENT_ENDPOINTS, 0);

/// Syscall arguments between enter and exit, by `pid_tgid`.
#[map]
pub static INFLIGHT: HashMap<u64, Inflight> = HashMap::with_max_entries(MAX_INFLIGHT, 0);

/// Room for the payload of one data record. Twice the maximum capture so
/// that "offset < max, length <= max" copies are provably in bounds.
pub const SCRATCH_PAYLOAD: usize = 2 * MAX_CAPTURE_BYTES;

#[repr(C)]
pub struct DataScratch {
    pub header: DataHeader,
    pub payload: [u8; SCRATCH_PAYLOAD],
}

#[map]
pub static SCRATCH: PerCpuArray<DataScratch> = PerCpuArray::with_max_entries(1, 0);

/// Processes already described to userspace (a `ProcInfo` record), so each
/// is described once. An LRU: an evicted process is described again.
#[map]
pub static PROCS_SEEN: LruHashMap<u32, u8> = LruHashMap::with_max_entries(MAX_PROCS_SEEN, 0);

/// Room for one process snapshot: header, command line and environment.
#[repr(C)]
pub struct ProcScratch {
    pub header: ProcInfoHeader,
    pub data: [u8; 2 * MAX_PROC_ENVIRON],
}

#[map]
pub static PROC_SCRATCH: PerCpuArray<ProcScratch> = PerCpuArray::with_max_entries(1, 0);

/// Loss and work counters, indexed by [`Counter`].
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

// Globals written by userspace before load (`EbpfLoader::override_global`).
// Read through `read_volatile` so the compiler does not fold their defaults.

#[unsafe(no_mangle)]
static AGENT_TGID: u32 = 0;

#[unsafe(no_mangle)]
static CAPTURE_BYTES: u32 = DEFAULT_CAPTURE_BYTES;

/// Data syscalls of no supported protocol after which an unclassified
/// connection is given up (0: never).
#[unsafe(no_mangle)]
static CLASSIFY_ATTEMPTS: u32 = DEFAULT_CLASSIFY_ATTEMPTS;

/// Wake the reader once per this many records written on one CPU (0: on
/// every record). Userspace also polls on a short timer, so nothing waits
/// for long.
#[unsafe(no_mangle)]
static WAKEUP_EVERY: u64 = 0;

/// Records written on this CPU since the last forced wake-up.
#[map]
static WAKEUP_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
pub static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    task_files: 0,
    files_fdt: 0,
    fdt_max_fds: 0,
    fdt_fd: 0,
    file_inode: 0,
    file_private_data: 0,
    inode_mode: 0,
    socket_type: 0,
    socket_sk: 0,
    sk_family: 0,
    sk_state: 0,
    sk_num: 0,
    sk_dport: 0,
    sk_rcv_saddr: 0,
    sk_daddr: 0,
    sk_v6_rcv_saddr: 0,
    sk_v6_daddr: 0,
    sk_net: 0,
    net_ns_inum: 0,
    task_mm: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    mm_env_start: 0,
    mm_env_end: 0,
    regs_arg0: 0,
    regs_arg1: 0,
    regs_arg2: 0,
    exit_group_dead: 0,
    regs_window: agent_common::offsets::NO_REGS_WINDOW,
    regs_window_slots: 0,
};

#[inline(always)]
pub fn agent_tgid() -> u32 {
    // SAFETY: reading a plain global.
    unsafe { core::ptr::read_volatile(&raw const AGENT_TGID) }
}

#[inline(always)]
pub fn classify_attempts() -> u32 {
    // SAFETY: reading a plain global.
    unsafe { core::ptr::read_volatile(&raw const CLASSIFY_ATTEMPTS) }
}

#[inline(always)]
pub fn capture_bytes() -> u32 {
    // SAFETY: reading a plain global.
    let v = unsafe { core::ptr::read_volatile(&raw const CAPTURE_BYTES) };
    if v > MAX_CAPTURE_BYTES as u32 {
        MAX_CAPTURE_BYTES as u32
    } else {
        v
    }
}

/// Reads one field of [`KernelOffsets`], e.g. `offset!(task_files)`.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: reading a plain global.
        unsafe { core::ptr::read_volatile(&raw const crate::maps::KERNEL_OFFSETS.$field) as u64 }
    };
}
pub(crate) use offset;

/// Ring-buffer flags for one record: wake the reader once every
/// `WAKEUP_EVERY` records of this CPU (batched wake-ups). A per-CPU count,
/// not `bpf_ringbuf_query`: reading the ring's positions, which the reader
/// keeps writing, cost ~150 ns per record in cache-line transfers.
#[inline(always)]
pub fn ring_flags() -> u64 {
    // SAFETY: reading a plain global.
    let every = unsafe { core::ptr::read_volatile(&raw const WAKEUP_EVERY) };
    if every == 0 {
        return 0;
    }
    let Some(n) = WAKEUP_COUNT.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot; programs do not nest on one CPU.
    unsafe {
        *n += 1;
        if *n >= every {
            *n = 0;
            return BPF_RB_FORCE_WAKEUP as u64;
        }
    }
    BPF_RB_NO_WAKEUP as u64
}

#[inline(always)]
pub fn count(c: Counter) {
    count_n(c, 1);
}

#[inline(always)]
pub fn count_n(c: Counter, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot; programs do not nest on one CPU.
        unsafe { *p += n };
    }
}
