//! Data syscalls on sockets.
//!
//! Each `sys_enter_*` program filters (not the agent, a TCP socket, not
//! ignored) and saves the arguments in `INFLIGHT`; the one shared
//! `sys_exit_data` program, attached to every matching `sys_exit_*`,
//! classifies unclassified connections and copies a bounded payload prefix
//! into a data record.

use agent_common::{
    CLASSIFY_BYTES, ConnKey, ConnState, ConnVal, Counter, DataFlags, DataHeader, Inflight, IoKind,
    MAX_CAPTURE_BYTES, MAX_IOVECS, Protocol, RecordKind, Role, Syscall, TAIL_BYTES,
    classify_prefix, offsets::NO_REGS_WINDOW, record::DATA_HEADER_SIZE, tls_record,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user,
        generated,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    conn::{self, ctx_read},
    maps::{
        CONNS, DataScratch, EVENTS, INFLIGHT, SCRATCH, agent_tgid, capture_bytes,
        classify_attempts, count, count_n, offset, ring_flags,
    },
};

/// Syscall argument `n` (syscalls:sys_enter_* records: args from offset 16).
#[inline(always)]
pub fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    // SAFETY: constant in-bounds offsets of the syscall tracepoint record.
    unsafe { ctx_read::<u64>(ctx, 16 + 8 * n) }
}

/// Return value (syscalls:sys_exit_* records: `ret` at offset 16).
#[inline(always)]
pub fn ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: as above.
    unsafe { ctx_read::<i64>(ctx, 16) }
}

macro_rules! enter_program {
    ($name:ident, $syscall:expr, $io:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            save_args(&ctx, $syscall, $io);
            0
        }
    };
}

// Writes: the entry saves the arguments and the time the write started (a
// client span starts when its request starts to be written).
enter_program!(sys_enter_write, Syscall::Write, IoKind::Buf);
enter_program!(sys_enter_sendto, Syscall::Sendto, IoKind::Buf);
enter_program!(sys_enter_writev, Syscall::Writev, IoKind::Iov);
enter_program!(sys_enter_sendmsg, Syscall::Sendmsg, IoKind::Msg);
enter_program!(sys_enter_sendmmsg, Syscall::Sendmmsg, IoKind::Mmsg);
enter_program!(sys_enter_sendfile64, Syscall::Sendfile, IoKind::None);

macro_rules! ingress_exit_program {
    ($name:ident, $syscall:expr, $io:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            try_exit_ingress(&ctx, $syscall, $io);
            0
        }
    };
}

// Reads: no entry program. Only the exit time matters (data is there when
// the read returns) and the arguments are still in the task's saved user
// registers, so a read that finds nothing (EAGAIN, the common case for
// event-loop servers) costs one early return.
ingress_exit_program!(sys_exit_read, Syscall::Read, IoKind::Buf);
ingress_exit_program!(sys_exit_recvfrom, Syscall::Recvfrom, IoKind::Buf);
ingress_exit_program!(sys_exit_readv, Syscall::Readv, IoKind::Iov);
ingress_exit_program!(sys_exit_recvmsg, Syscall::Recvmsg, IoKind::Msg);
ingress_exit_program!(sys_exit_recvmmsg, Syscall::Recvmmsg, IoKind::Mmsg);

/// The first three arguments of the current syscall, from the user
/// registers saved at syscall entry (`bpf_task_pt_regs`): one read of the
/// 24 bytes holding them where they are adjacent (x86_64), else three.
#[inline(always)]
fn syscall_args() -> Option<[u64; 3]> {
    // SAFETY: helpers returning the current task and its saved registers.
    let regs = unsafe {
        let task = generated::bpf_get_current_task_btf();
        generated::bpf_task_pt_regs(task) as u64
    };
    if regs == 0 {
        return None;
    }
    let window = offset!(regs_window);
    if window != u64::from(NO_REGS_WINDOW) {
        let mut w = [0u64; 4];
        // SAFETY: 24 bytes into a 32-byte local; the helper faults safely.
        let rc = unsafe {
            generated::bpf_probe_read_kernel(
                w.as_mut_ptr().cast(),
                24,
                (regs + window) as *const core::ffi::c_void,
            )
        };
        if rc != 0 {
            return None;
        }
        let slots = offset!(regs_window_slots);
        return Some([
            w[(slots & 3) as usize],
            w[((slots >> 2) & 3) as usize],
            w[((slots >> 4) & 3) as usize],
        ]);
    }
    let read = |off: u64| -> Option<u64> {
        // SAFETY: bpf_probe_read_kernel faults safely.
        unsafe { bpf_probe_read_kernel((regs + off) as *const u64) }.ok()
    };
    Some([
        read(offset!(regs_arg0))?,
        read(offset!(regs_arg1))?,
        read(offset!(regs_arg2))?,
    ])
}

#[inline(always)]
fn try_exit_ingress(ctx: &TracePointContext, syscall: Syscall, io: IoKind) {
    let ret = ret(ctx);
    if ret <= 0 {
        return;
    }
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    if tgid == agent_tgid() || crate::select::process_excluded(tgid) {
        return;
    }
    let Some([fd, ptr, len]) = syscall_args() else {
        count(Counter::ReadFault);
        return;
    };
    let fd = fd as i64;
    if fd < 0 || fd > i64::from(i32::MAX) {
        return;
    }
    let key = ConnKey {
        tgid,
        fd: fd as u32,
    };
    let conn = match CONNS.get_ptr_mut(key) {
        Some(c) => c,
        None => {
            if !conn::track(key, Role::Unknown) {
                return;
            }
            let Some(c) = CONNS.get_ptr_mut(key) else {
                return;
            };
            c
        }
    };
    // SAFETY: helper without preconditions. A read's data is there when it
    // returns: entry and exit share this one timestamp.
    let now = unsafe { bpf_ktime_get_ns() };
    let inflight = Inflight {
        ptr,
        len,
        ts_enter_ns: now,
        fd: fd as i32,
        syscall: syscall as u8,
        io: io as u8,
        _pad: [0; 2],
    };
    finish_data(conn, key, &inflight, id, ret, now);
}

/// Saves the arguments of a syscall on a socket of interest. `arg 0` is the
/// descriptor for every hooked syscall; `arg 1`/`arg 2` are the buffer (or
/// iovec/msghdr array) and its length/count.
#[inline(always)]
pub fn save_args(ctx: &TracePointContext, syscall: Syscall, io: IoKind) {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    // The agent's own connects are followed (to learn its endpoints), none
    // of its data.
    if tgid == agent_tgid() && !matches!(io, IoKind::Connect) {
        return;
    }
    if crate::select::process_excluded(tgid) {
        return;
    }
    let fd = arg(ctx, 0) as i64;
    if fd < 0 || fd > i64::from(i32::MAX) {
        return;
    }
    if !matches!(io, IoKind::Connect) {
        let key = ConnKey {
            tgid,
            fd: fd as u32,
        };
        match CONNS.get_ptr(&key) {
            // SAFETY: the pointer came from a successful lookup.
            Some(v) => {
                if unsafe { (*v).state } == ConnState::Ignored as u8 {
                    return;
                }
            }
            None => {
                if !conn::track(key, Role::Unknown) {
                    return;
                }
            }
        }
    }
    let inflight = Inflight {
        ptr: arg(ctx, 1),
        len: arg(ctx, 2),
        // SAFETY: helper without preconditions.
        ts_enter_ns: unsafe { bpf_ktime_get_ns() },
        fd: fd as i32,
        syscall: syscall as u8,
        io: io as u8,
        _pad: [0; 2],
    };
    if INFLIGHT.insert(&id, &inflight, 0).is_err() {
        count(Counter::InflightMapFull);
    }
}

/// Attached to the `sys_exit_*` tracepoint of every hooked syscall.
#[tracepoint]
pub fn sys_exit_data(ctx: TracePointContext) -> u32 {
    try_exit(&ctx);
    0
}

#[inline(always)]
fn try_exit(ctx: &TracePointContext) {
    let id = bpf_get_current_pid_tgid();
    let Some(inflight) = INFLIGHT.get_ptr(&id) else {
        return;
    };
    // SAFETY: the pointer came from a successful lookup.
    let inflight = unsafe { *inflight };
    let _ = INFLIGHT.remove(&id);
    let ret = ret(ctx);
    let tgid = (id >> 32) as u32;
    if inflight.io == IoKind::Connect as u8 {
        conn::connect_done(tgid, inflight.fd, ret);
        return;
    }
    if ret <= 0 {
        return;
    }
    let key = ConnKey {
        tgid,
        fd: inflight.fd as u32,
    };
    let Some(conn) = CONNS.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    finish_data(conn, key, &inflight, id, ret, now);
}

/// A data syscall on a tracked socket (`conn`, the `CONNS` entry of `key`)
/// returned `ret` > 0 bytes at `now`: classify the connection if needed,
/// then emit the data.
#[inline(always)]
fn finish_data(conn: *mut ConnVal, key: ConnKey, inflight: &Inflight, id: u64, ret: i64, now: u64) {
    // SAFETY: the pointer came from a successful lookup; entries are only
    // mutated by the thread doing I/O on that descriptor or by userspace.
    let cv = unsafe { *conn };
    if cv.state == ConnState::Unknown as u8 {
        let protocol = match classify(inflight, ret as u64) {
            Classified::Protocol(p) => p,
            Classified::Tls => {
                // SAFETY: as above.
                unsafe { (*conn).state = ConnState::Ignored as u8 };
                count(Counter::TlsIgnored);
                return;
            }
            Classified::Unknown => {
                count(Counter::Unclassified);
                let seen = u32::from(cv.unclassified) + 1;
                let limit = classify_attempts();
                // SAFETY: as above.
                unsafe {
                    if limit != 0 && seen >= limit {
                        (*conn).state = ConnState::Ignored as u8;
                        count(Counter::UnclassifiedGivenUp);
                    } else if seen <= u32::from(u16::MAX) {
                        (*conn).unclassified = seen as u16;
                    }
                }
                return;
            }
        };
        match conn::announce(key, &cv, protocol as u8, id) {
            conn::Announced::Yes => {}
            conn::Announced::RingFull => return,
            conn::Announced::AgentOwn | conn::Announced::Rejected => {
                // SAFETY: as above.
                unsafe { (*conn).state = ConnState::Ignored as u8 };
                return;
            }
        }
        // SAFETY: as above.
        unsafe {
            (*conn).state = ConnState::Traced as u8;
            (*conn).protocol = protocol as u8;
        }
    } else if cv.state != ConnState::Traced as u8 {
        return;
    }
    emit_data(inflight, id, ret as u64, cv.sk, now);
}

/// First (pointer, length) segment of the syscall's user buffer.
#[inline(always)]
fn first_segment(inflight: &Inflight) -> Option<(u64, u64)> {
    let io = inflight.io;
    if io == IoKind::Buf as u8 {
        return Some((inflight.ptr, inflight.len));
    }
    let (iov, iovcnt) = if io == IoKind::Iov as u8 {
        (inflight.ptr, inflight.len)
    } else if io == IoKind::Msg as u8 || io == IoKind::Mmsg as u8 {
        msg_iov(inflight.ptr)?
    } else {
        return None;
    };
    if iovcnt == 0 {
        return None;
    }
    let seg: [u64; 2] = uread(iov)?;
    Some((seg[0], seg[1]))
}

/// `msg_iov` and `msg_iovlen` of a user `struct msghdr` (also the first
/// member of `struct mmsghdr`).
#[inline(always)]
fn msg_iov(msghdr: u64) -> Option<(u64, u64)> {
    let v: [u64; 2] = uread(msghdr + 16)?;
    Some((v[0], v[1]))
}

#[inline(always)]
fn uread<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_user tolerates any address (it faults safely).
    match unsafe { bpf_probe_read_user(addr as *const T) } {
        Ok(v) => Some(v),
        Err(_) => {
            count(Counter::ReadFault);
            None
        }
    }
}

/// What a connection's bytes are, as far as the kernel can tell.
enum Classified {
    Protocol(Protocol),
    /// TLS records: encrypted, never parseable here.
    Tls,
    /// Not (yet) recognisable.
    Unknown,
}

#[inline(always)]
fn classify(inflight: &Inflight, ret: u64) -> Classified {
    let Some((ptr, len)) = first_segment(inflight) else {
        return Classified::Unknown;
    };
    let mut n = if len < ret { len } else { ret };
    if n > CLASSIFY_BYTES as u64 {
        n = CLASSIFY_BYTES as u64;
    }
    let mut buf = [0u8; CLASSIFY_BYTES];
    // SAFETY: n <= buf.len(); the helper faults safely on bad user memory.
    let rc = unsafe {
        generated::bpf_probe_read_user(buf.as_mut_ptr().cast(), n as u32, ptr as *const _)
    };
    if rc != 0 {
        return Classified::Unknown;
    }
    match classify_prefix(&buf, n as usize, ret) {
        Protocol::Unknown if tls_record(&buf, n as usize) => Classified::Tls,
        Protocol::Unknown => Classified::Unknown,
        p => Classified::Protocol(p),
    }
}

#[inline(always)]
fn emit_data(inflight: &Inflight, pid_tgid: u64, ret: u64, sk: u64, now: u64) {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch; programs do not nest on one CPU.
    let scratch: &mut DataScratch = unsafe { &mut *scratch };
    let cap = u64::from(capture_bytes());
    let mut flags = 0u8;
    let mut total = ret;
    let io = inflight.io;
    let dst = scratch.payload.as_mut_ptr();
    // Where the payload is: one buffer, or an iovec array (readv/writev
    // directly, recvmsg/sendmsg/mmsg through their msghdr).
    let mut segments: Option<(u64, u64)> = None;
    let mut single = false;
    if io == IoKind::Buf as u8 {
        single = true;
    } else if io == IoKind::Iov as u8 {
        segments = Some((inflight.ptr, inflight.len));
    } else if io == IoKind::Msg as u8 {
        segments = msg_iov(inflight.ptr);
        if segments.is_none() {
            flags |= DataFlags::READ_FAULT;
        }
    } else if io == IoKind::Mmsg as u8 {
        // `ret` counts messages. Capture the first one (TCP code paths
        // rarely use the mmsg calls) and say so.
        if ret > 1 {
            flags |= DataFlags::PARTIAL_VECTOR;
        }
        let first_len: u32 = uread(inflight.ptr + 56).unwrap_or(0);
        total = u64::from(first_len);
        segments = msg_iov(inflight.ptr);
    } else {
        flags |= DataFlags::NO_PAYLOAD;
    }
    let want = min(total, cap);
    let captured = if single {
        copy_user(dst, inflight.ptr, want)
    } else if let Some((iov, iovcnt)) = segments {
        copy_iovecs(iov, iovcnt, want)
    } else {
        0
    };
    let mut captured = captured;
    if captured > MAX_CAPTURE_BYTES as u32 {
        captured = MAX_CAPTURE_BYTES as u32;
    }
    let mut tail_len = 0u32;
    if u64::from(captured) < total && flags & DataFlags::NO_PAYLOAD == 0 {
        flags |= DataFlags::TRUNCATED;
        count(Counter::PayloadTruncated);
        if io == IoKind::Buf as u8 && captured > 0 {
            tail_len = copy_tail(dst, captured, inflight.ptr, total);
        }
    }
    let syscall = inflight.syscall;
    scratch.header = DataHeader {
        kind: RecordKind::Data as u8,
        direction: match Syscall::from_u8(syscall) {
            Some(s) => s.direction() as u8,
            None => 0,
        },
        syscall,
        flags,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        fd: inflight.fd,
        sk,
        ts_enter_ns: inflight.ts_enter_ns,
        ts_exit_ns: now,
        total_len: total,
        captured_len: captured,
        tail_len,
    };
    let size = DATA_HEADER_SIZE + captured as usize + tail_len as usize;
    // SAFETY: size <= size_of::<DataScratch>() (captured <= MAX_CAPTURE_BYTES).
    let bytes =
        unsafe { core::slice::from_raw_parts((scratch as *const DataScratch).cast::<u8>(), size) };
    match EVENTS.output::<[u8]>(bytes, ring_flags()) {
        Ok(()) => {
            count(Counter::DataRecords);
            count_n(Counter::PayloadBytes, u64::from(captured));
        }
        Err(_) => count(Counter::RingbufFull),
    }
}

/// Hides `v`'s known range from the compiler, so a following mask that is
/// redundant for LLVM (but not for the verifier) is kept.
#[inline(always)]
fn opaque(v: u32) -> u32 {
    // SAFETY: volatile read of a local.
    unsafe { core::ptr::read_volatile(&v) }
}

#[inline(always)]
fn min(a: u64, b: u64) -> u64 {
    if a < b { a } else { b }
}

/// Copies the last bytes (at most [`TAIL_BYTES`], never overlapping the
/// `captured` prefix) of a `total`-byte user buffer at `src` to
/// `dst + captured`. Returns how many.
#[inline(always)]
fn copy_tail(dst: *mut u8, captured: u32, src: u64, total: u64) -> u32 {
    let rest = total - u64::from(captured);
    let mut n = if rest < TAIL_BYTES as u64 {
        rest as u32
    } else {
        TAIL_BYTES as u32
    };
    n = opaque(n);
    if n == 0 || n > TAIL_BYTES as u32 {
        return 0;
    }
    let mut at = opaque(captured);
    if at > MAX_CAPTURE_BYTES as u32 {
        at = MAX_CAPTURE_BYTES as u32;
    }
    // SAFETY: at + n <= MAX_CAPTURE_BYTES + TAIL_BYTES < room in dst; the
    // helper faults safely.
    let rc = unsafe {
        generated::bpf_probe_read_user(
            dst.add(at as usize).cast(),
            n,
            (src + total - u64::from(n)) as *const _,
        )
    };
    if rc != 0 {
        count(Counter::ReadFault);
        return 0;
    }
    n
}

/// Copies `want` (<= MAX_CAPTURE_BYTES) bytes of user memory to `dst`.
#[inline(always)]
fn copy_user(dst: *mut u8, src: u64, want: u64) -> u32 {
    let mut n = want as u32;
    if n > MAX_CAPTURE_BYTES as u32 {
        n = MAX_CAPTURE_BYTES as u32;
    }
    if n == 0 {
        return 0;
    }
    // SAFETY: dst has room for 2 * MAX_CAPTURE_BYTES; the helper faults safely.
    let rc = unsafe { generated::bpf_probe_read_user(dst.cast(), n, src as *const _) };
    if rc != 0 {
        count(Counter::ReadFault);
        return 0;
    }
    n
}

/// State of one iovec copy, shared with the `bpf_loop` callback.
#[repr(C)]
struct IovCopy {
    iov: u64,
    iovcnt: u64,
    want: u32,
    off: u32,
    /// Iovecs looked at.
    done: u32,
    faulted: u32,
}

/// Copies up to `want` bytes from the first [`MAX_IOVECS`] of a user iovec
/// array, in order, into the per-CPU scratch payload. The loop is
/// `bpf_loop` (kernel 5.17+): the verifier checks the step once, however
/// many iovecs a syscall has — gRPC's C core writes each frame as an iovec
/// of its own, so one write of many coalesced calls has well over a
/// hundred, more than an unrolled loop the verifier accepts.
#[inline(always)]
fn copy_iovecs(iov: u64, iovcnt: u64, want: u64) -> u32 {
    let mut st = IovCopy {
        iov,
        iovcnt,
        want: min(want, MAX_CAPTURE_BYTES as u64) as u32,
        off: 0,
        done: 0,
        faulted: 0,
    };
    let n = if iovcnt < MAX_IOVECS as u64 {
        iovcnt as u32
    } else {
        MAX_IOVECS as u32
    };
    // SAFETY: a callback of the signature bpf_loop expects; its context
    // is this stack frame's `st`, alive for the whole call.
    unsafe {
        generated::bpf_loop(
            n,
            iov_step as *mut core::ffi::c_void,
            (&raw mut st).cast(),
            0,
        );
    }
    if st.faulted != 0 {
        count(Counter::ReadFault);
    }
    if u64::from(st.done) < iovcnt && st.off < st.want && st.faulted == 0 {
        count(Counter::IovecsSkipped);
    }
    st.off
}

/// One iovec: appends its first bytes to the scratch payload. Returns 1 to
/// stop the loop.
extern "C" fn iov_step(index: u32, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `IovCopy` copy_iovecs passed.
    let st = unsafe { &mut *ctx.cast::<IovCopy>() };
    if st.off >= st.want || u64::from(index) >= st.iovcnt {
        return 1;
    }
    st.done = index + 1;
    let Some(seg) = uread::<[u64; 2]>(st.iov + 16 * u64::from(index)) else {
        st.faulted = 1;
        return 1;
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let mut chunk = st.want - st.off;
    if seg[1] < u64::from(chunk) {
        chunk = seg[1] as u32;
    }
    if chunk > MAX_CAPTURE_BYTES as u32 {
        chunk = MAX_CAPTURE_BYTES as u32;
    }
    // off < want <= MAX_CAPTURE_BYTES: the mask changes nothing but gives
    // the verifier the bound off + chunk < 2 * MAX_CAPTURE_BYTES.
    let at = st.off & (MAX_CAPTURE_BYTES as u32 - 1);
    if chunk > 0 {
        // SAFETY: at + chunk < 2 * MAX_CAPTURE_BYTES = room in the scratch
        // payload; the helper faults safely.
        let rc = unsafe {
            let dst = (*scratch).payload.as_mut_ptr().add(at as usize);
            generated::bpf_probe_read_user(dst.cast(), chunk, seg[0] as *const _)
        };
        if rc != 0 {
            st.faulted = 1;
            return 1;
        }
    }
    st.off = at + chunk;
    0
}
