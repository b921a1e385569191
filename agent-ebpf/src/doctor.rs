//! Probes that `agent doctor` loads to tell what this kernel allows, and the
//! no-op programs `cargo xtask bench hooks` measures the hooks with
//! (`agent::bpf::loader::NoopHooks`). The agent itself never loads them;
//! programs in the object are only loaded on request, so they cost nothing
//! otherwise.

use aya_ebpf::{
    macros::{fentry, kprobe, raw_tracepoint, tracepoint, uprobe},
    programs::{FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
};

/// Attached by the doctor to a libc function: are uprobes usable?
#[uprobe]
pub fn doctor_uprobe(_ctx: ProbeContext) -> u32 {
    0
}

/// Attached by the doctor to a kernel function: are kprobes usable?
#[kprobe]
pub fn doctor_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

/// Loaded by the doctor against a kernel function: are fentry programs
/// (BPF trampolines) usable?
#[fentry(function = "do_sys_openat2")]
pub fn doctor_fentry(_ctx: FEntryContext) -> u32 {
    0
}

/// Attached by the doctor to `sys_enter`: are raw tracepoints usable? Also
/// the no-op of `cargo xtask bench floor` (the cost of the hook alone).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn doctor_raw_tracepoint(_ctx: RawTracePointContext) -> u32 {
    0
}

/// A no-op tracepoint program: what `cargo xtask bench floor` attaches to
/// the capture's tracepoints to measure the hooks' cost alone.
#[tracepoint]
pub fn doctor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}
