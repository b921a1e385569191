//! Process exits, so userspace can drop the state of a whole process.

use agent_common::{Counter, ProcExitRecord, RecordKind};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::maps::{EVENTS, count, offset, ring_flags};

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    try_exit(&ctx);
    0
}

#[inline(always)]
fn try_exit(ctx: &TracePointContext) {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    let group_dead_at = offset!(exit_group_dead);
    let group_dead = if group_dead_at != 0 {
        // SAFETY: the offset was read from this kernel's tracepoint format.
        unsafe { ctx.read_at::<u8>(group_dead_at as usize) }.unwrap_or(0) != 0
    } else {
        // Kernels before `group_dead` was added: the leader's exit.
        id as u32 == tgid
    };
    if !group_dead {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<ProcExitRecord>(0) else {
        count(Counter::RingbufFull);
        return;
    };
    entry.write(ProcExitRecord {
        kind: RecordKind::ProcExit as u8,
        _pad: [0; 3],
        tgid,
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    });
    entry.submit(ring_flags());
    count(Counter::ProcRecords);
}
