//! eBPF programs of the agent, attached to syscall, sock and sched
//! tracepoints only (no kprobes, no fentry), so they run on every kernel with
//! BTF and ring buffers.
//!
//! - `capture`: data syscalls on sockets (enter saves arguments, one shared
//!   exit program copies a bounded payload prefix into the ring buffer);
//! - `doctor`: uprobe/kprobe/fentry probes `agent doctor` tries (never
//!   loaded by the agent);
//! - `conn`: socket lifecycle (accept, connect, close, TCP state);
//! - `proc`: process exits;
//! - `select`: processes and ports excluded by the selection;
//! - `sched`: fork, exec and exit counts (per-CPU array);
//! - `runq`: run-queue delay (not attached by default; see its cost in
//!   BENCHMARKS.md);
//! - `sock`: the descriptor → `struct sock` walk and address reads;
//! - `maps`: maps, load-time globals and the loss counters.
#![no_std]
#![no_main]

mod capture;
mod conn;
mod doctor;
mod maps;
mod proc;
mod runq;
mod sched;
mod select;
mod sock;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic; this is never called.
    loop {}
}

/// `bpf_probe_read_kernel` and `bpf_probe_read_user` are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
