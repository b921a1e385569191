//! Socket lifecycle: which sockets are tracked, their role, and when they
//! end. `accept`/`connect` record the role; `close` and the TCP state
//! tracepoint tell userspace a traced connection is over.

use agent_common::{
    CloseReason, ConnCloseRecord, ConnKey, ConnOpenRecord, ConnState, ConnVal, Counter,
    EndpointKey, IoKind, RecordKind, Role, Syscall,
};
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    capture::{arg, ret},
    maps::{AGENT_ENDPOINTS, CONNS, EVENTS, SK_TRACED, agent_tgid, count, ring_flags},
    sock,
};

const EINPROGRESS: i64 = 115;
const TCP_CLOSE: i32 = 7;
const IPPROTO_TCP: u16 = 6;

/// Starts tracking descriptor `key.fd` if it is a TCP socket. Returns
/// whether it is tracked.
#[inline(always)]
pub fn track(key: ConnKey, role: Role) -> bool {
    let Some(sk) = sock::sock_of_fd(key.fd) else {
        return false;
    };
    let val = ConnVal {
        sk,
        role: role as u8,
        state: ConnState::Unknown as u8,
        protocol: 0,
        _pad: 0,
        unclassified: 0,
        _pad2: [0; 2],
    };
    if CONNS.insert(&key, &val, 0).is_err() {
        count(Counter::ConnMapFull);
        return false;
    }
    true
}

/// What [`announce`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// The `ConnOpen` record is written: trace the connection.
    Yes,
    /// The ring buffer was full: stay unclassified, the next data syscall
    /// tries again.
    RingFull,
    /// The peer is one of the agent's own sockets: ignore the connection.
    AgentOwn,
    /// The selection excludes the connection's ports: ignore it.
    Rejected,
}

/// Whether the selection rejects `sk` by its ports. Not inlined: its frame
/// is gone before the process snapshot needs the stack.
#[inline(never)]
fn ports_rejected(sk: u64) -> bool {
    let (local, remote) = sock::ports(sk);
    crate::select::ports_rejected(local, remote)
}

/// Whether the remote end of `rec` is one of the agent's endpoints (its
/// exact address, or a listening socket on any address).
#[inline(always)]
fn peer_is_agent(rec: &ConnOpenRecord) -> bool {
    let mut key = EndpointKey {
        addr: rec.remote_addr,
        port: rec.remote_port,
        _pad: 0,
        netns: rec.netns,
    };
    if AGENT_ENDPOINTS.get_ptr(&key).is_some() {
        return true;
    }
    key.addr = [0; 16];
    key.netns = 0;
    AGENT_ENDPOINTS.get_ptr(&key).is_some()
}

/// Announces a newly classified connection to userspace.
#[inline(always)]
pub fn announce(key: ConnKey, conn: &ConnVal, protocol: u8, pid_tgid: u64) -> Announced {
    if ports_rejected(conn.sk) {
        return Announced::Rejected;
    }
    // First, while the stack is small (the snapshot is stack-hungry).
    crate::proc::describe_current(key.tgid);
    let mut rec = ConnOpenRecord {
        kind: RecordKind::ConnOpen as u8,
        role: conn.role,
        protocol,
        tgid: key.tgid,
        tid: pid_tgid as u32,
        fd: key.fd as i32,
        sk: conn.sk,
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        ..ConnOpenRecord::default()
    };
    sock::read_addresses(conn.sk, &mut rec);
    if peer_is_agent(&rec) {
        count(Counter::AgentOwnTraffic);
        return Announced::AgentOwn;
    }
    let Some(mut entry) = EVENTS.reserve::<ConnOpenRecord>(0) else {
        count(Counter::RingbufFull);
        return Announced::RingFull;
    };
    entry.write(rec);
    entry.submit(ring_flags());
    count(Counter::ConnRecords);
    let _ = SK_TRACED.insert(&conn.sk, &key, 0);
    Announced::Yes
}

#[inline(always)]
fn emit_close(key: ConnKey, sk: u64, reason: CloseReason, old_state: u8) {
    let Some(mut entry) = EVENTS.reserve::<ConnCloseRecord>(0) else {
        count(Counter::RingbufFull);
        return;
    };
    entry.write(ConnCloseRecord {
        kind: RecordKind::ConnClose as u8,
        reason: reason as u8,
        old_tcp_state: old_state,
        _pad: 0,
        tgid: key.tgid,
        fd: key.fd as i32,
        _pad2: 0,
        sk,
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    });
    entry.submit(ring_flags());
    count(Counter::ConnRecords);
}

#[tracepoint]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    try_accept_exit(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    try_accept_exit(&ctx);
    0
}

#[inline(always)]
fn try_accept_exit(ctx: &TracePointContext) {
    let tgid = ctx.tgid();
    if tgid == agent_tgid() || crate::select::process_excluded(tgid) {
        return;
    }
    let fd = ret(ctx);
    if fd < 0 || fd > i64::from(i32::MAX) {
        return;
    }
    track(
        ConnKey {
            tgid,
            fd: fd as u32,
        },
        Role::Server,
    );
}

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    // The exit is handled by the shared `sys_exit_data` program.
    crate::capture::save_args(&ctx, Syscall::Connect, IoKind::Connect);
    0
}

/// `connect()` returned `ret` on `fd`: 0, or -EINPROGRESS for a
/// non-blocking socket, means the socket now has both addresses.
#[inline(always)]
pub fn connect_done(tgid: u32, fd: i32, ret: i64) {
    if !(ret == 0 || ret == -EINPROGRESS) || fd < 0 {
        return;
    }
    if tgid == agent_tgid() {
        // The local port is bound by now: remember it, so the peer of this
        // connection (a local collector) is not traced.
        remember_agent_endpoint(fd as u32);
        return;
    }
    track(
        ConnKey {
            tgid,
            fd: fd as u32,
        },
        Role::Client,
    );
}

/// Adds the local endpoint of the agent's descriptor `fd` to
/// `AGENT_ENDPOINTS`. Not inlined: its stack frame is separate from the
/// data path's.
#[inline(never)]
fn remember_agent_endpoint(fd: u32) {
    let Some(sk) = sock::sock_of_fd(fd) else {
        return;
    };
    let mut key = EndpointKey::default();
    sock::local_endpoint(sk, &mut key);
    let _ = AGENT_ENDPOINTS.insert(&key, &1, 0);
}

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    try_close(&ctx);
    0
}

#[inline(always)]
fn try_close(ctx: &TracePointContext) {
    let fd = arg(ctx, 0) as i64;
    if fd < 0 || fd > i64::from(i32::MAX) {
        return;
    }
    let key = ConnKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        fd: fd as u32,
    };
    let Some(val) = CONNS.get_ptr(&key) else {
        return;
    };
    // SAFETY: the pointer came from a successful lookup.
    let val = unsafe { *val };
    let _ = CONNS.remove(&key);
    if val.state == ConnState::Traced as u8 {
        let _ = SK_TRACED.remove(&val.sk);
        emit_close(key, val.sk, CloseReason::Close, 0);
    }
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    try_set_state(&ctx);
    0
}

#[inline(always)]
fn try_set_state(ctx: &TracePointContext) {
    // Record layout of sock:inet_sock_set_state (stable since 4.16):
    // skaddr@8, oldstate@16, newstate@20, protocol@30.
    // SAFETY: constant in-bounds offsets of the tracepoint record.
    let (newstate, protocol) = unsafe { (ctx_read::<i32>(ctx, 20), ctx_read::<u16>(ctx, 30)) };
    if newstate != TCP_CLOSE || protocol != IPPROTO_TCP {
        return;
    }
    // SAFETY: as above.
    let sk = unsafe { ctx_read::<u64>(ctx, 8) };
    let Some(key) = SK_TRACED.get_ptr(&sk) else {
        return;
    };
    // SAFETY: the pointer came from a successful lookup.
    let key = unsafe { *key };
    let _ = SK_TRACED.remove(&sk);
    // SAFETY: as above.
    let old = unsafe { ctx_read::<i32>(ctx, 16) };
    emit_close(key, sk, CloseReason::TcpClose, old as u8);
}

/// Reads a field of the tracepoint record at a constant offset.
///
/// # Safety
/// `off` must be a constant, in-bounds, naturally aligned offset.
#[inline(always)]
pub unsafe fn ctx_read<T: Copy>(ctx: &TracePointContext, off: usize) -> T {
    // SAFETY: per the function contract; the verifier checks ctx accesses.
    unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(off).cast::<T>()) }
}
