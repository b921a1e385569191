//! Selection: processes and ports the user chose not to trace cost no
//! record (see `agent_common::select`). Userspace decides each process once
//! (on its first announced connection, and for every process at start) and
//! writes the excluded ones into `PROC_EXCLUDED`; the data programs return
//! at their top for them. Ports are checked when a connection would be
//! announced, before any record is written.

use agent_common::{
    Counter,
    select::{MAX_PROC_EXCLUDED, PORT_SELECT_ENTRIES, PortSelect, SelectFlags},
};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{map, tracepoint},
    maps::{Array, LruHashMap},
    programs::TracePointContext,
};

use crate::maps::{PROCS_SEEN, count};

/// Which filters are active ([`SelectFlags`]); written before load.
#[unsafe(no_mangle)]
static SELECT_FLAGS: u32 = 0;

/// Offset of `child_pid` in the `sched:sched_process_fork` record (read
/// from tracefs by userspace: it moved when the comms became `__data_loc`).
#[unsafe(no_mangle)]
static FORK_CHILD_PID_AT: u32 = 0;

/// [`PortSelect`] bits by port.
#[map]
static PORT_SELECT: Array<u8> = Array::with_max_entries(PORT_SELECT_ENTRIES, 0);

/// Processes not to trace, by tgid.
#[map]
static PROC_EXCLUDED: LruHashMap<u32, u8> = LruHashMap::with_max_entries(MAX_PROC_EXCLUDED, 0);

#[inline(always)]
fn flags() -> u32 {
    // SAFETY: reading a plain global.
    unsafe { core::ptr::read_volatile(&raw const SELECT_FLAGS) }
}

/// Whether process `tgid` is excluded: the caller returns at once.
#[inline(always)]
pub fn process_excluded(tgid: u32) -> bool {
    if flags() & SelectFlags::PROCESSES == 0 {
        return false;
    }
    if PROC_EXCLUDED.get_ptr(&tgid).is_some() {
        count(Counter::SelectionSkippedSyscalls);
        return true;
    }
    false
}

#[inline(always)]
fn port_bits(port: u16) -> u8 {
    match PORT_SELECT.get(u32::from(port)) {
        Some(v) => *v,
        None => 0,
    }
}

/// Whether a connection with these ports is to be dropped before its
/// announcement (counted).
#[inline(always)]
pub fn ports_rejected(local: u16, remote: u16) -> bool {
    let f = flags();
    if f & (SelectFlags::PORTS_INCLUDE | SelectFlags::PORTS_EXCLUDE) == 0 {
        return false;
    }
    let bits = port_bits(local) | port_bits(remote);
    let rejected = (f & SelectFlags::PORTS_EXCLUDE != 0 && bits & PortSelect::EXCLUDED != 0)
        || (f & SelectFlags::PORTS_INCLUDE != 0 && bits & PortSelect::INCLUDED == 0);
    if rejected {
        count(Counter::SelectionIgnoredConnections);
    }
    rejected
}

/// A task of process `tgid` exits (`pid` is the thread): forget entries a
/// fork gave to the thread id, and the process's when it is the last.
#[inline(always)]
pub fn task_exit(pid: u32, tgid: u32, group_dead: bool) {
    if flags() & SelectFlags::PROCESSES == 0 {
        return;
    }
    if pid != tgid {
        let _ = PROC_EXCLUDED.remove(&pid);
    }
    if group_dead {
        let _ = PROC_EXCLUDED.remove(&tgid);
    }
}

/// A fork inherits its parent's exclusion (nginx workers, PostgreSQL
/// backends). Threads get an entry under their thread id too, removed at
/// their exit.
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    if flags() & SelectFlags::PROCESSES == 0 {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if PROC_EXCLUDED.get_ptr(&tgid).is_none() {
        return 0;
    }
    // SAFETY: reading a plain global.
    let at = unsafe { core::ptr::read_volatile(&raw const FORK_CHILD_PID_AT) };
    if at == 0 {
        return 0;
    }
    // SAFETY: the offset comes from this kernel's tracepoint format.
    if let Ok(child) = unsafe { ctx.read_at::<i32>(at as usize) }
        && child > 0
    {
        let _ = PROC_EXCLUDED.insert(&(child as u32), &1, 0);
    }
    0
}

/// A new program: decided again by userspace, which needs a new process
/// description for it.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    if flags() & SelectFlags::PROCESSES == 0 {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = PROC_EXCLUDED.remove(&tgid);
    let _ = PROCS_SEEN.remove(&tgid);
    0
}
