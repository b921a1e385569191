//! Process lifecycle counts: forks, execs and exits counted per CPU on
//! sched tracepoints. One array increment per event, nothing sent to
//! userspace (which sums the array at scrape time). Self-contained: its own
//! map and programs (the exit count is a second program on
//! `sched_process_exit`, beside `proc.rs`'s).

use agent_common::sched::{SCHED_STAT_COUNT, SchedStat};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::map, macros::tracepoint, maps::PerCpuArray,
    programs::TracePointContext,
};

use crate::maps::offset;

/// Counts by [`SchedStat`].
#[map]
pub static SCHED_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(SCHED_STAT_COUNT, 0);

#[inline(always)]
fn bump(s: SchedStat) {
    if let Some(p) = SCHED_STATS.get_ptr_mut(s as u32) {
        // SAFETY: per-CPU slot; programs do not nest on one CPU.
        unsafe { *p += 1 };
    }
}

#[tracepoint]
pub fn sched_fork_count(_ctx: TracePointContext) -> u32 {
    bump(SchedStat::Fork);
    0
}

#[tracepoint]
pub fn sched_exec_count(_ctx: TracePointContext) -> u32 {
    bump(SchedStat::Exec);
    0
}

#[tracepoint]
pub fn sched_exit_count(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let group_dead_at = offset!(exit_group_dead);
    let group_dead = if group_dead_at != 0 {
        // SAFETY: the offset was read from this kernel's tracepoint format.
        unsafe { ctx.read_at::<u8>(group_dead_at as usize) }.unwrap_or(0) != 0
    } else {
        id as u32 == (id >> 32) as u32
    };
    bump(if group_dead {
        SchedStat::Exit
    } else {
        SchedStat::ThreadExit
    });
    0
}
