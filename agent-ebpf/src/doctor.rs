//! Probes that `agent doctor` loads to tell what this kernel allows. The
//! agent itself never loads them (it uses tracepoints only); programs in
//! the object are only loaded on request, so they cost nothing otherwise.

use aya_ebpf::{
    macros::{fentry, kprobe, uprobe},
    programs::{FEntryContext, ProbeContext},
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
