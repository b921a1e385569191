//! Keys and values of the kernel's hash maps.

/// A socket as a process sees it: (thread group, descriptor).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub tgid: u32,
    pub fd: u32,
}

const _: () = assert!(core::mem::size_of::<ConnKey>() == 8);

/// A TCP endpoint (address and port) in a network namespace: key of the
/// `AGENT_ENDPOINTS` map, the agent's own sockets. A zero `addr` stands for
/// any address (a listening socket bound to the wildcard).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// IPv4 in the first 4 bytes, or IPv6, network byte order.
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub _pad: u16,
    /// Network namespace inode (0: any).
    pub netns: u32,
}

const _: () = assert!(core::mem::size_of::<EndpointKey>() == 24);

/// Capacity of `AGENT_ENDPOINTS`.
pub const MAX_AGENT_ENDPOINTS: u32 = 1024;

/// Tracing state of a socket in the `CONNS` map.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Tracked, but no byte has looked like a supported protocol yet: data
    /// is classified in the kernel and not sent to userspace.
    Unknown = 0,
    /// Classified: every data syscall is sent to userspace.
    Traced = 1,
    /// Userspace decided the bytes are not worth sending (for example an
    /// upgraded or encrypted connection); nothing is sent until close.
    Ignored = 2,
}

/// Value of the `CONNS` map, keyed by [`ConnKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnVal {
    /// Kernel address of the `struct sock`.
    pub sk: u64,
    /// [`crate::Role`].
    pub role: u8,
    /// [`ConnState`].
    pub state: u8,
    /// [`crate::Protocol`] once classified.
    pub protocol: u8,
    pub _pad: u8,
    /// Data syscalls whose bytes matched no supported protocol while the
    /// connection was unclassified; at the load-time limit the kernel
    /// gives up on the connection (state `Ignored`).
    pub unclassified: u16,
    pub _pad2: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<ConnVal>() == 16);

/// How a syscall's user buffer is described.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// `ptr` is the buffer (read/write/recvfrom/sendto).
    Buf = 0,
    /// `ptr` is a `struct iovec[len]` (readv/writev).
    Iov = 1,
    /// `ptr` is a `struct msghdr` (recvmsg/sendmsg).
    Msg = 2,
    /// `ptr` is a `struct mmsghdr[len]` (recvmmsg/sendmmsg).
    Mmsg = 3,
    /// No user buffer (sendfile).
    None = 4,
    /// A connect() in progress: only `fd` matters.
    Connect = 5,
}

/// Syscall arguments saved at entry for the exit program, keyed by
/// `pid_tgid`. Internal to the kernel side.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Inflight {
    pub ptr: u64,
    pub len: u64,
    pub ts_enter_ns: u64,
    pub fd: i32,
    /// [`crate::Syscall`].
    pub syscall: u8,
    /// [`IoKind`].
    pub io: u8,
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<Inflight>() == 32);
