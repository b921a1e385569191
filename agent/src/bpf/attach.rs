//! Tracepoint attachments the agent can detach at once.
//!
//! A tracepoint program is attached through a perf event (one per
//! tracepoint, `perf_event_open` with `PERF_TYPE_TRACEPOINT`) and a BPF link
//! joining the program to it (`BPF_LINK_CREATE`, `BPF_PERF_EVENT`). The two
//! are kept apart here, unlike in aya (which closes the perf event once the
//! link holds it), because they tear down at very different speeds:
//!
//! - closing the *link* takes the program out of the tracepoint's program
//!   array (an RCU pointer swap): from then on the program never runs —
//!   microseconds;
//! - closing the last reference to the *perf event* unregisters it from the
//!   tracepoint and waits for an RCU-tasks-trace grace period, which took
//!   from 50 ms on an idle machine to a full second on a busy one.
//!
//! So [`Attachment::detach`] closes the links (the programs stop at once)
//! and hands back the perf events, dropped last, in parallel.
//!
//! Kernels without BPF perf links (before 5.15) fall back to
//! `PERF_EVENT_IOC_SET_BPF`; there the program stops only when the perf
//! event closes.

use std::{
    fs, io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::Path,
};

/// `PERF_TYPE_TRACEPOINT`.
const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `PERF_ATTR_SIZE_VER0`: the fields below are all a tracepoint needs.
const PERF_ATTR_SIZE_VER0: u32 = 64;
/// `_IOW('$', 8, __u32)` and `_IO('$', 0)`.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
/// `BPF_LINK_CREATE` command and `BPF_PERF_EVENT` attach type.
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PERF_EVENT: u32 = 41;

/// The first 64 bytes of `struct perf_event_attr` (`PERF_ATTR_SIZE_VER0`).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttrV0 {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// The bit fields (`disabled`, `inherit`, ...): all zero.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttrV0>() == PERF_ATTR_SIZE_VER0 as usize);

/// The `link_create` member of `union bpf_attr` (the rest zero).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    /// `perf_event.bpf_cookie` and room the kernel checks to be zero.
    _rest: [u64; 6],
}

/// One program attached to one tracepoint.
#[derive(Debug)]
pub struct Attachment {
    /// `None` on kernels without BPF perf links.
    link: Option<OwnedFd>,
    perf: OwnedFd,
}

impl Attachment {
    /// Attaches the loaded program `prog` to `category:name`.
    pub fn tracepoint(
        prog: BorrowedFd<'_>,
        tracefs: &Path,
        category: &str,
        name: &str,
    ) -> io::Result<Self> {
        let id_path = tracefs.join("events").join(category).join(name).join("id");
        let id: u64 = fs::read_to_string(&id_path)?
            .trim()
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{id_path:?}: {e}")))?;
        let attr = PerfEventAttrV0 {
            type_: PERF_TYPE_TRACEPOINT,
            size: PERF_ATTR_SIZE_VER0,
            config: id,
            wakeup_events: 1,
            ..Default::default()
        };
        // All processes, CPU 0: a BPF program on a tracepoint perf event
        // runs for the tracepoint on every CPU.
        // SAFETY: a valid perf_event_attr of the size it declares.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &raw const attr,
                -1 as libc::pid_t,
                0 as libc::c_int,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the syscall returned a new descriptor we own.
        let perf = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let link_attr = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_fd: perf.as_raw_fd() as u32,
            attach_type: BPF_PERF_EVENT,
            ..Default::default()
        };
        // SAFETY: a zero-padded bpf_attr prefix of the size passed.
        let link = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_LINK_CREATE,
                &raw const link_attr,
                std::mem::size_of::<LinkCreateAttr>() as libc::c_uint,
            )
        };
        if link >= 0 {
            // SAFETY: the syscall returned a new descriptor we own.
            let link = unsafe { OwnedFd::from_raw_fd(link as i32) };
            return Ok(Self {
                link: Some(link),
                perf,
            });
        }
        let link_error = io::Error::last_os_error();
        if !matches!(link_error.raw_os_error(), Some(libc::EINVAL | libc::E2BIG)) {
            return Err(link_error);
        }
        // No BPF perf links: attach to the perf event itself.
        // SAFETY: ioctls on a perf event descriptor we own.
        unsafe {
            if libc::ioctl(
                perf.as_raw_fd(),
                PERF_EVENT_IOC_SET_BPF as _,
                prog.as_raw_fd(),
            ) != 0
                || libc::ioctl(perf.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self { link: None, perf })
    }

    /// Stops the program now (closes its link); the perf event, slow to
    /// tear down, is returned to be dropped later.
    pub fn detach(self) -> OwnedFd {
        drop(self.link);
        self.perf
    }
}

/// Detaches every attachment, in parallel: on kernels whose syscall
/// tracepoints may fault (6.13+), closing a link waits for an
/// RCU-tasks-trace grace period too, and concurrent closes share it.
pub fn detach_all(attachments: Vec<Attachment>) -> Vec<OwnedFd> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = attachments
            .into_iter()
            .map(|a| {
                std::thread::Builder::new()
                    .name("bpf-detach".into())
                    .spawn_scoped(scope, move || a.detach())
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h {
                Ok(h) => h.join().ok(),
                // The attachment went down with the failed closure.
                Err(e) => {
                    tracing::debug!("cannot spawn a detach thread: {e}");
                    None
                }
            })
            .collect()
    })
}

/// Closes descriptors in parallel (each perf event's teardown waits for a
/// grace period; concurrent ones share it).
pub fn close_all(fds: Vec<OwnedFd>) {
    std::thread::scope(|scope| {
        for fd in fds {
            let spawned = std::thread::Builder::new()
                .name("bpf-teardown".into())
                .spawn_scoped(scope, move || drop(fd));
            if let Err(e) = spawned {
                // The descriptor went down with the failed closure.
                tracing::debug!("closing on the calling thread: {e}");
            }
        }
    });
}
