//! Records written to the `EVENTS` ring buffer.
//!
//! Layout rule: the first byte of every record is its [`RecordKind`]. Data
//! records are a fixed [`DataHeader`] followed by `captured_len` payload
//! bytes and `tail_len` tail bytes; every other record is fixed-size.

/// First byte of every ring-buffer record.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// [`DataHeader`] + payload: bytes a traced socket read or wrote.
    Data = 1,
    /// [`ConnOpenRecord`]: a socket became traced (first classified data).
    ConnOpen = 2,
    /// [`ConnCloseRecord`]: a traced socket was closed or its TCP state
    /// reached CLOSE.
    ConnClose = 3,
    /// [`ProcExitRecord`]: a process (thread group) exited.
    ProcExit = 4,
    /// [`ProcInfoHeader`] + command line + environment: a snapshot of a
    /// process taken when its first connection is announced, so even a
    /// process that exits at once gets its resource attributes.
    ProcInfo = 5,
}

impl RecordKind {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Data),
            2 => Some(Self::ConnOpen),
            3 => Some(Self::ConnClose),
            4 => Some(Self::ProcExit),
            5 => Some(Self::ProcInfo),
            _ => None,
        }
    }
}

/// Which way bytes moved, seen from the traced process.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The process read the bytes (recv, read, ...).
    Ingress = 1,
    /// The process wrote the bytes (send, write, sendfile, ...).
    Egress = 2,
}

impl Direction {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Ingress),
            2 => Some(Self::Egress),
            _ => None,
        }
    }
}

/// How the traced process came to hold the socket.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Seen first in a data syscall (for example opened before the agent
    /// started); userspace infers the role.
    Unknown = 0,
    /// The process called `connect()` on it.
    Client = 1,
    /// The process got it from `accept()`/`accept4()`.
    Server = 2,
}

impl Role {
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Client,
            2 => Self::Server,
            _ => Self::Unknown,
        }
    }
}

/// The syscall that produced a data record.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Read = 1,
    Write = 2,
    Readv = 3,
    Writev = 4,
    Recvfrom = 5,
    Sendto = 6,
    Recvmsg = 7,
    Sendmsg = 8,
    Recvmmsg = 9,
    Sendmmsg = 10,
    Sendfile = 11,
    Connect = 12,
}

impl Syscall {
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Read,
            2 => Self::Write,
            3 => Self::Readv,
            4 => Self::Writev,
            5 => Self::Recvfrom,
            6 => Self::Sendto,
            7 => Self::Recvmsg,
            8 => Self::Sendmsg,
            9 => Self::Recvmmsg,
            10 => Self::Sendmmsg,
            11 => Self::Sendfile,
            12 => Self::Connect,
            _ => return None,
        })
    }

    pub const fn direction(self) -> Direction {
        match self {
            Self::Read | Self::Readv | Self::Recvfrom | Self::Recvmsg | Self::Recvmmsg => {
                Direction::Ingress
            }
            _ => Direction::Egress,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Readv => "readv",
            Self::Writev => "writev",
            Self::Recvfrom => "recvfrom",
            Self::Sendto => "sendto",
            Self::Recvmsg => "recvmsg",
            Self::Sendmsg => "sendmsg",
            Self::Recvmmsg => "recvmmsg",
            Self::Sendmmsg => "sendmmsg",
            Self::Sendfile => "sendfile",
            Self::Connect => "connect",
        }
    }
}

/// Bit flags of [`DataHeader::flags`].
pub struct DataFlags;

impl DataFlags {
    /// The syscall moved more bytes than were copied (`total_len >
    /// captured_len`); the rest is a gap userspace must skip.
    pub const TRUNCATED: u8 = 1 << 0;
    /// The syscall has no user buffer to copy (sendfile): only the byte
    /// count is known.
    pub const NO_PAYLOAD: u8 = 1 << 1;
    /// Reading the user buffer faulted; `captured_len` is 0.
    pub const READ_FAULT: u8 = 1 << 2;
    /// Only the first message of a recvmmsg/sendmmsg vector was captured;
    /// `total_len` still counts all messages.
    pub const PARTIAL_VECTOR: u8 = 1 << 3;
}

/// Header of a [`RecordKind::Data`] record; `captured_len` payload bytes
/// follow it in the same record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataHeader {
    /// [`RecordKind::Data`].
    pub kind: u8,
    /// [`Direction`].
    pub direction: u8,
    /// [`Syscall`].
    pub syscall: u8,
    /// [`DataFlags`] bits.
    pub flags: u8,
    pub tgid: u32,
    pub tid: u32,
    pub fd: i32,
    /// Kernel address of the `struct sock`: the connection's identity while
    /// it is open. Never exported.
    pub sk: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at syscall entry.
    pub ts_enter_ns: u64,
    /// `bpf_ktime_get_ns()` at syscall exit.
    pub ts_exit_ns: u64,
    /// Bytes the syscall moved (its return value, or the sum of message
    /// lengths for the mmsg calls).
    pub total_len: u64,
    /// Payload bytes that follow this header: the first bytes the syscall
    /// moved.
    pub captured_len: u32,
    /// Tail bytes that follow the payload: the *last* bytes the syscall
    /// moved, copied (at most [`crate::TAIL_BYTES`]) when the payload was
    /// truncated and the buffer is a plain one (read/write/recvfrom/sendto).
    /// They are part of the uncaptured count `total_len - captured_len`.
    /// Protocols whose messages end a burst (PostgreSQL's CommandComplete
    /// and ReadyForQuery after megabytes of rows) resynchronize on them.
    pub tail_len: u32,
}

pub const DATA_HEADER_SIZE: usize = 56;
const _: () = assert!(core::mem::size_of::<DataHeader>() == DATA_HEADER_SIZE);

/// A socket became traced: its addresses, owner and role.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnOpenRecord {
    /// [`RecordKind::ConnOpen`].
    pub kind: u8,
    /// [`Role`].
    pub role: u8,
    /// [`crate::Protocol`] the kernel classified the first bytes as.
    pub protocol: u8,
    /// TCP state (`TCP_ESTABLISHED` = 1, ...) when first seen.
    pub tcp_state: u8,
    pub tgid: u32,
    pub tid: u32,
    pub fd: i32,
    pub sk: u64,
    pub ts_ns: u64,
    /// Inode number of the socket's network namespace (0 if unknown).
    pub netns: u32,
    /// [`crate::AF_INET`] or [`crate::AF_INET6`].
    pub family: u16,
    /// Local port, host byte order.
    pub local_port: u16,
    /// Remote port, host byte order.
    pub remote_port: u16,
    pub _pad: [u8; 6],
    /// IPv4 in the first 4 bytes, or IPv6, network byte order.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// `comm` of the thread that made the socket traced.
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<ConnOpenRecord>() == 96);

/// Why a [`ConnCloseRecord`] was written.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The process called `close()` on the descriptor.
    Close = 1,
    /// The kernel moved the socket to TCP_CLOSE (reset, or the end of the
    /// close handshake) while the descriptor was still open.
    TcpClose = 2,
}

impl CloseReason {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Close),
            2 => Some(Self::TcpClose),
            _ => None,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCloseRecord {
    /// [`RecordKind::ConnClose`].
    pub kind: u8,
    /// [`CloseReason`].
    pub reason: u8,
    /// TCP state before the transition (for [`CloseReason::TcpClose`]).
    pub old_tcp_state: u8,
    pub _pad: u8,
    pub tgid: u32,
    pub fd: i32,
    pub _pad2: u32,
    pub sk: u64,
    pub ts_ns: u64,
}

const _: () = assert!(core::mem::size_of::<ConnCloseRecord>() == 32);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcExitRecord {
    /// [`RecordKind::ProcExit`].
    pub kind: u8,
    pub _pad: [u8; 3],
    pub tgid: u32,
    pub ts_ns: u64,
}

const _: () = assert!(core::mem::size_of::<ProcExitRecord>() == 16);

/// Header of a [`RecordKind::ProcInfo`] record, followed by `cmdline_len`
/// bytes of `/proc/PID/cmdline` (NUL-separated) and `environ_len` bytes of
/// the initial environment (NUL-separated), both prefixes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcInfoHeader {
    /// [`RecordKind::ProcInfo`].
    pub kind: u8,
    /// [`ProcInfoFlags`] bits.
    pub flags: u8,
    pub _pad: [u8; 2],
    pub tgid: u32,
    pub ts_ns: u64,
    /// `bpf_get_current_cgroup_id()` (cgroup v2 id of the process).
    pub cgroup_id: u64,
    pub cmdline_len: u32,
    pub environ_len: u32,
    pub comm: [u8; 16],
}

pub const PROC_INFO_HEADER_SIZE: usize = 48;
const _: () = assert!(core::mem::size_of::<ProcInfoHeader>() == PROC_INFO_HEADER_SIZE);

/// Bit flags of [`ProcInfoHeader::flags`].
pub struct ProcInfoFlags;

impl ProcInfoFlags {
    /// The command line was longer than what was copied.
    pub const CMDLINE_TRUNCATED: u8 = 1 << 0;
    /// The environment was longer than what was copied.
    pub const ENVIRON_TRUNCATED: u8 = 1 << 1;
}

/// Bytes of the command line copied into a process snapshot.
pub const MAX_PROC_CMDLINE: usize = 1024;
/// Bytes of the environment copied into a process snapshot.
pub const MAX_PROC_ENVIRON: usize = 8192;
