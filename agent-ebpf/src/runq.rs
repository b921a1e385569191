//! Run-queue delay (wake-up or preemption to running), measured on
//! `sched_wakeup`/`sched_wakeup_new`/`sched_switch`. **Not attached by
//! default**: it runs on every context switch of the machine, and
//! `cargo xtask bench sched` measures what that costs (BENCHMARKS.md). The
//! delay goes into a per-CPU log2 histogram and a per-thread (count, sum)
//! entry, the work a per-process histogram needs.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::TracePointContext,
};

/// Slots of the log2 histogram (1 ns .. ~2^39 ns).
const SLOTS: u32 = 40;

/// When each runnable thread became runnable.
#[map]
static RUNQ_SINCE: HashMap<u32, u64> = HashMap::with_max_entries(65_536, 0);

/// Delay histogram, log2 nanosecond slots.
#[map]
static RUNQ_HIST: PerCpuArray<u64> = PerCpuArray::with_max_entries(SLOTS, 0);

/// Per thread: (count, total nanoseconds).
#[map]
static RUNQ_BY_TID: LruHashMap<u32, [u64; 2]> = LruHashMap::with_max_entries(16_384, 0);

/// `sched_wakeup*`: `pid` at offset 24.
#[inline(always)]
fn woken(ctx: &TracePointContext) {
    // SAFETY: the field layout is this kernel's (checked by the loader).
    let Ok(pid) = (unsafe { ctx.read_at::<i32>(24) }) else {
        return;
    };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = RUNQ_SINCE.insert(pid as u32, now, 0);
}

#[tracepoint]
pub fn runq_wakeup(ctx: TracePointContext) -> u32 {
    woken(&ctx);
    0
}

#[tracepoint]
pub fn runq_wakeup_new(ctx: TracePointContext) -> u32 {
    woken(&ctx);
    0
}

/// `sched_switch`: `prev_pid` 24, `prev_state` 32 (8 bytes), `next_pid` 56.
#[tracepoint]
pub fn runq_switch(ctx: TracePointContext) -> u32 {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: field offsets of this kernel's format (checked by the loader).
    let (prev, state, next) = unsafe {
        (
            ctx.read_at::<i32>(24).unwrap_or(0),
            ctx.read_at::<i64>(32).unwrap_or(-1),
            ctx.read_at::<i32>(56).unwrap_or(0),
        )
    };
    // Preempted while runnable: it waits in the run queue from now.
    if state == 0 && prev != 0 {
        let _ = RUNQ_SINCE.insert(prev as u32, now, 0);
    }
    if next == 0 {
        return 0;
    }
    let key = next as u32;
    // SAFETY: the value is copied out at once.
    let Some(since) = (unsafe { RUNQ_SINCE.get(key) }).copied() else {
        return 0;
    };
    let _ = RUNQ_SINCE.remove(key);
    let delay = now.saturating_sub(since);
    let slot = (64 - delay.leading_zeros()).min(SLOTS - 1);
    if let Some(p) = RUNQ_HIST.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot; programs do not nest on one CPU.
        unsafe { *p += 1 };
    }
    match RUNQ_BY_TID.get_ptr_mut(key) {
        // SAFETY: a map value; racing updates only skew the statistic.
        Some(v) => unsafe {
            (*v)[0] += 1;
            (*v)[1] += delay;
        },
        None => {
            let _ = RUNQ_BY_TID.insert(key, [1, delay], 0);
        }
    }
    0
}
