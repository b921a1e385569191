//! Types shared by the eBPF programs (`agent-ebpf`) and the userspace agent.
//!
//! Everything here is `#[repr(C)]` with explicit padding and a `const` size
//! assertion, because the same bytes are written by the kernel and read by
//! userspace. Every ring-buffer record starts with a one-byte [`RecordKind`]
//! tag so the reader can dispatch before it knows the record's layout.
#![no_std]

pub mod classify;
pub mod counters;
pub mod maps;
pub mod node;
pub mod offsets;
pub mod record;
pub mod sched;
pub mod select;

pub use classify::{Protocol, classify_prefix, tls_record};
pub use counters::Counter;
pub use maps::{ConnKey, ConnState, ConnVal, EndpointKey, Inflight, IoKind};
pub use offsets::KernelOffsets;
pub use record::{
    CloseReason, ConnCloseRecord, ConnOpenRecord, DataFlags, DataHeader, Direction, ProcExitRecord,
    ProcInfoFlags, ProcInfoHeader, RecordKind, Role, Syscall,
};

/// Hard upper bound of the payload prefix copied per syscall. The runtime
/// capture size (`capture_bytes` in the configuration) may be smaller.
///
/// Bounded by the per-CPU scratch buffer, which holds twice this (see
/// `agent-ebpf/src/capture.rs`) and must stay below the 32 KiB per-CPU
/// allocation limit.
pub const MAX_CAPTURE_BYTES: usize = 8192;

/// Default number of data syscalls a tracked connection may carry bytes of
/// no supported protocol before the kernel stops classifying it (see
/// [`ConnVal::unclassified`]).
pub const DEFAULT_CLASSIFY_ATTEMPTS: u32 = 256;

/// Default payload prefix copied per syscall: large enough for the request
/// line and headers of real HTTP traffic.
pub const DEFAULT_CAPTURE_BYTES: u32 = 4096;

/// Bytes copied from the end of a syscall whose payload was truncated (the
/// record's tail; see [`DataHeader::tail_len`]).
pub const TAIL_BYTES: usize = 64;

/// Bytes of payload the kernel looks at to classify a connection's protocol.
pub const CLASSIFY_BYTES: usize = 16;

/// Maximum number of iovecs looked at in one readv/writev/recvmsg/sendmsg:
/// Linux's `IOV_MAX`, so in practice all of them (copying stops anyway at
/// `capture_bytes`). gRPC's C core writes every HTTP/2 frame and message as
/// iovecs of their own, six per unary response, and coalesces concurrent
/// calls into one write of a few hundred. The copy loop is `bpf_loop`
/// (kernel 5.17+), so the bound costs the verifier nothing; an unrolled
/// loop of 64 had been too much for it.
pub const MAX_IOVECS: usize = 1024;

/// Capacity of the kernel's set of processes already described to
/// userspace (an LRU: an evicted process is described again).
pub const MAX_PROCS_SEEN: u32 = 16_384;

/// Default size of the event ring buffer (bytes, power of two).
pub const DEFAULT_RING_BYTES: u32 = 8 * 1024 * 1024;

/// Default capacity of the kernel connection map.
pub const DEFAULT_MAX_CONNS: u32 = 65_536;

/// Capacity of the map holding syscall arguments between enter and exit,
/// one entry per thread inside a traced syscall.
pub const MAX_INFLIGHT: u32 = 16_384;

/// Linux address families the kernel reports.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all these types are `#[repr(C)]`, contain only integers and
    // byte arrays, and have explicit padding (no uninitialised bytes).
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::ConnVal {}
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::KernelOffsets {}
}
