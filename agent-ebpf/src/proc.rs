//! Processes: a snapshot (command line, environment) when a process's first
//! connection is announced, and exits, so userspace can drop the state of a
//! whole process.

use agent_common::{
    Counter, ProcExitRecord, ProcInfoFlags, ProcInfoHeader, RecordKind,
    record::{MAX_PROC_CMDLINE, MAX_PROC_ENVIRON, PROC_INFO_HEADER_SIZE},
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel, generated,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::maps::{EVENTS, PROC_SCRATCH, PROCS_SEEN, count, offset, ring_flags};

#[inline(always)]
fn kread(addr: u64) -> u64 {
    // SAFETY: bpf_probe_read_kernel faults safely.
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0)
}

/// Hides a value's range from the compiler so masks stay for the verifier.
#[inline(always)]
fn opaque(v: u32) -> u32 {
    // SAFETY: volatile read of a local.
    unsafe { core::ptr::read_volatile(&v) }
}

/// Copies up to `max` bytes of the current process's memory `[start, end)`
/// to `dst`; returns (bytes copied, whether the range was longer).
#[inline(always)]
fn copy_range(dst: *mut u8, start: u64, end: u64, max: u32) -> (u32, bool) {
    if start == 0 || end <= start {
        return (0, false);
    }
    let len = end - start;
    let mut n = if len > u64::from(max) {
        max
    } else {
        len as u32
    };
    if n > max {
        n = max;
    }
    // SAFETY: dst has room for `max` bytes; the helper faults safely.
    let rc = unsafe { generated::bpf_probe_read_user(dst.cast(), n, start as *const _) };
    if rc != 0 {
        count(Counter::ReadFault);
        return (0, false);
    }
    (n, len > u64::from(n))
}

/// Describes the current process to userspace once (until it exits or is
/// evicted from `PROCS_SEEN`). Called before its first `ConnOpen`.
#[inline(always)]
pub fn describe_current(tgid: u32) {
    if PROCS_SEEN.get_ptr(&tgid).is_some() {
        return;
    }
    let Some(scratch) = PROC_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch; programs do not nest on one CPU.
    let scratch = unsafe { &mut *scratch };
    // SAFETY: returns the current task pointer; only used as an address.
    let task = unsafe { bpf_get_current_task() };
    let mm = kread(task + offset!(task_mm));
    let mut flags = 0u8;
    let dst = scratch.data.as_mut_ptr();
    let (cmdline_len, cut) = if mm == 0 {
        (0, false)
    } else {
        copy_range(
            dst,
            kread(mm + offset!(mm_arg_start)),
            kread(mm + offset!(mm_arg_end)),
            MAX_PROC_CMDLINE as u32,
        )
    };
    if cut {
        flags |= ProcInfoFlags::CMDLINE_TRUNCATED;
    }
    // cmdline_len <= MAX_PROC_CMDLINE (a power of two): the mask keeps the
    // environment copy within the scratch for the verifier.
    let at = opaque(cmdline_len) & (MAX_PROC_CMDLINE as u32 - 1);
    let (environ_len, cut) = if mm == 0 {
        (0, false)
    } else {
        // SAFETY: at < MAX_PROC_CMDLINE and the data array has room for
        // MAX_PROC_CMDLINE + MAX_PROC_ENVIRON bytes.
        copy_range(
            unsafe { dst.add(at as usize) },
            kread(mm + offset!(mm_env_start)),
            kread(mm + offset!(mm_env_end)),
            MAX_PROC_ENVIRON as u32,
        )
    };
    if cut {
        flags |= ProcInfoFlags::ENVIRON_TRUNCATED;
    }
    scratch.header = ProcInfoHeader {
        kind: RecordKind::ProcInfo as u8,
        flags,
        _pad: [0; 2],
        tgid,
        // SAFETY: helpers without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        // SAFETY: as above.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        cmdline_len: at,
        environ_len,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    let mut size = PROC_INFO_HEADER_SIZE as u32 + at + environ_len;
    if size > (PROC_INFO_HEADER_SIZE + MAX_PROC_CMDLINE + MAX_PROC_ENVIRON) as u32 {
        size = (PROC_INFO_HEADER_SIZE + MAX_PROC_CMDLINE + MAX_PROC_ENVIRON) as u32;
    }
    // SAFETY: size <= size_of::<ProcScratch>().
    let bytes = unsafe {
        core::slice::from_raw_parts(
            (scratch as *const crate::maps::ProcScratch).cast::<u8>(),
            size as usize,
        )
    };
    match EVENTS.output::<[u8]>(bytes, ring_flags()) {
        Ok(()) => {
            count(Counter::ProcInfoRecords);
            let _ = PROCS_SEEN.insert(&tgid, &1, 0);
        }
        Err(_) => count(Counter::RingbufFull),
    }
}

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
    crate::select::task_exit(id as u32, tgid, group_dead);
    if !group_dead {
        return;
    }
    let _ = PROCS_SEEN.remove(&tgid);
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
