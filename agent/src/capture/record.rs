//! Ring-buffer records, decoded without copying the payload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use agent_common::{
    AF_INET, AF_INET6, CloseReason, ConnCloseRecord, ConnOpenRecord, DataFlags, DataHeader,
    Direction, ProcExitRecord, ProcInfoFlags, ProcInfoHeader, Protocol, RecordKind, Role, Syscall,
    TAIL_BYTES,
    record::{DATA_HEADER_SIZE, PROC_INFO_HEADER_SIZE},
};

/// One decoded record. Data payloads borrow the ring buffer.
#[derive(Debug)]
pub enum Record<'a> {
    Data(DataEvent<'a>),
    ConnOpen(ConnOpen),
    ConnClose(ConnClose),
    ProcExit(ProcExit),
    ProcInfo(ProcInfo<'a>),
}

/// Bytes one syscall moved on a traced socket.
#[derive(Debug, Clone, Copy)]
pub struct DataEvent<'a> {
    pub direction: Direction,
    pub syscall: Syscall,
    pub flags: u8,
    pub tgid: u32,
    pub tid: u32,
    pub fd: i32,
    pub sk: u64,
    pub ts_enter_ns: u64,
    pub ts_exit_ns: u64,
    /// Bytes the syscall moved.
    pub total_len: u64,
    /// The first bytes (at most the capture size).
    pub payload: &'a [u8],
    /// The last bytes, when the payload was truncated and the kernel copied
    /// them (at most `TAIL_BYTES`): the end of the uncaptured part.
    pub tail: &'a [u8],
}

impl<'a> DataEvent<'a> {
    /// A `read` (ingress) or `write` (egress) on fd 7 whose whole payload
    /// was captured: records built by hand, for tests and benchmarks.
    pub fn whole(
        direction: Direction,
        (tgid, tid, sk): (u32, u32, u64),
        payload: &'a [u8],
        (ts_enter_ns, ts_exit_ns): (u64, u64),
    ) -> Self {
        Self {
            direction,
            syscall: match direction {
                Direction::Ingress => Syscall::Read,
                Direction::Egress => Syscall::Write,
            },
            flags: 0,
            tgid,
            tid,
            fd: 7,
            sk,
            ts_enter_ns,
            ts_exit_ns,
            total_len: payload.len() as u64,
            payload,
            tail: &[],
        }
    }

    /// Bytes moved but not captured (a gap the parser must skip).
    pub fn uncaptured(&self) -> u64 {
        self.total_len.saturating_sub(self.payload.len() as u64)
    }

    pub fn has_flag(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub fn is_truncated(&self) -> bool {
        self.has_flag(DataFlags::TRUNCATED)
    }
}

/// A socket became traced.
#[derive(Debug, Clone)]
pub struct ConnOpen {
    pub role: Role,
    pub protocol: Protocol,
    pub tcp_state: u8,
    pub tgid: u32,
    pub tid: u32,
    pub fd: i32,
    pub sk: u64,
    pub ts_ns: u64,
    pub netns: u32,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub comm: String,
}

#[derive(Debug, Clone, Copy)]
pub struct ConnClose {
    pub reason: CloseReason,
    pub old_tcp_state: u8,
    pub tgid: u32,
    pub fd: i32,
    pub sk: u64,
    pub ts_ns: u64,
}

/// A snapshot of a process, taken in its own context when its first
/// connection was announced.
#[derive(Debug, Clone, Copy)]
pub struct ProcInfo<'a> {
    pub tgid: u32,
    pub ts_ns: u64,
    pub cgroup_id: u64,
    pub comm: &'a [u8],
    /// NUL-separated arguments (a prefix).
    pub cmdline: &'a [u8],
    pub cmdline_truncated: bool,
    /// NUL-separated `KEY=value` entries (a prefix).
    pub environ: &'a [u8],
    pub environ_truncated: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct ProcExit {
    pub tgid: u32,
    pub ts_ns: u64,
}

/// Why a record could not be decoded (counted, never fatal).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("record of kind {kind:?} is {len} bytes, shorter than its layout")]
    Short { kind: RecordKind, len: usize },
    #[error("data record claims {claimed} payload bytes but carries {carried}")]
    PayloadLength { claimed: usize, carried: usize },
    #[error("bad field value: {0}")]
    BadField(&'static str),
}

fn read_pod<T: Copy>(bytes: &[u8], kind: RecordKind) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
        });
    }
    // SAFETY: length checked; T is a repr(C) plain-old-data record type for
    // which every bit pattern is valid; read_unaligned handles alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn addr(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        let v6 = Ipv6Addr::from(*raw);
        // Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d.
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

impl<'a> Record<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let &tag = bytes.first().ok_or(DecodeError::Empty)?;
        let kind = RecordKind::from_u8(tag).ok_or(DecodeError::UnknownKind(tag))?;
        match kind {
            RecordKind::Data => {
                let h: DataHeader = read_pod(bytes, kind)?;
                let payload = &bytes[DATA_HEADER_SIZE..];
                let claimed = h.captured_len as usize;
                let tail = h.tail_len as usize;
                if claimed + tail > payload.len() {
                    return Err(DecodeError::PayloadLength {
                        claimed: claimed + tail,
                        carried: payload.len(),
                    });
                }
                if tail > TAIL_BYTES || (claimed + tail) as u64 > h.total_len {
                    return Err(DecodeError::BadField("tail_len"));
                }
                Ok(Record::Data(DataEvent {
                    direction: Direction::from_u8(h.direction)
                        .ok_or(DecodeError::BadField("direction"))?,
                    syscall: Syscall::from_u8(h.syscall).ok_or(DecodeError::BadField("syscall"))?,
                    flags: h.flags,
                    tgid: h.tgid,
                    tid: h.tid,
                    fd: h.fd,
                    sk: h.sk,
                    ts_enter_ns: h.ts_enter_ns,
                    ts_exit_ns: h.ts_exit_ns,
                    total_len: h.total_len,
                    payload: &payload[..claimed],
                    tail: &payload[claimed..claimed + tail],
                }))
            }
            RecordKind::ConnOpen => {
                let r: ConnOpenRecord = read_pod(bytes, kind)?;
                if r.family != AF_INET && r.family != AF_INET6 {
                    return Err(DecodeError::BadField("family"));
                }
                let comm_len = r.comm.iter().position(|&b| b == 0).unwrap_or(r.comm.len());
                Ok(Record::ConnOpen(ConnOpen {
                    role: Role::from_u8(r.role),
                    protocol: Protocol::from_u8(r.protocol),
                    tcp_state: r.tcp_state,
                    tgid: r.tgid,
                    tid: r.tid,
                    fd: r.fd,
                    sk: r.sk,
                    ts_ns: r.ts_ns,
                    netns: r.netns,
                    local: (addr(r.family, &r.local_addr), r.local_port),
                    remote: (addr(r.family, &r.remote_addr), r.remote_port),
                    comm: String::from_utf8_lossy(&r.comm[..comm_len]).into_owned(),
                }))
            }
            RecordKind::ConnClose => {
                let r: ConnCloseRecord = read_pod(bytes, kind)?;
                Ok(Record::ConnClose(ConnClose {
                    reason: CloseReason::from_u8(r.reason)
                        .ok_or(DecodeError::BadField("reason"))?,
                    old_tcp_state: r.old_tcp_state,
                    tgid: r.tgid,
                    fd: r.fd,
                    sk: r.sk,
                    ts_ns: r.ts_ns,
                }))
            }
            RecordKind::ProcInfo => {
                let h: ProcInfoHeader = read_pod(bytes, kind)?;
                let body = &bytes[PROC_INFO_HEADER_SIZE..];
                let (c, e) = (h.cmdline_len as usize, h.environ_len as usize);
                if c.saturating_add(e) > body.len() {
                    return Err(DecodeError::PayloadLength {
                        claimed: c.saturating_add(e),
                        carried: body.len(),
                    });
                }
                let comm_len = h.comm.iter().position(|&b| b == 0).unwrap_or(h.comm.len());
                Ok(Record::ProcInfo(ProcInfo {
                    tgid: h.tgid,
                    ts_ns: h.ts_ns,
                    cgroup_id: h.cgroup_id,
                    comm: &bytes[PROC_INFO_HEADER_SIZE - 16..PROC_INFO_HEADER_SIZE - 16 + comm_len],
                    cmdline: &body[..c],
                    cmdline_truncated: h.flags & ProcInfoFlags::CMDLINE_TRUNCATED != 0,
                    environ: &body[c..c + e],
                    environ_truncated: h.flags & ProcInfoFlags::ENVIRON_TRUNCATED != 0,
                }))
            }
            RecordKind::ProcExit => {
                let r: ProcExitRecord = read_pod(bytes, kind)?;
                Ok(Record::ProcExit(ProcExit {
                    tgid: r.tgid,
                    ts_ns: r.ts_ns,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a repr(C) POD value with no padding
        // holes (explicit _pad fields).
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn data_record() {
        let h = DataHeader {
            kind: RecordKind::Data as u8,
            direction: Direction::Ingress as u8,
            syscall: Syscall::Recvfrom as u8,
            flags: DataFlags::TRUNCATED,
            tgid: 10,
            tid: 11,
            fd: 5,
            sk: 0xffff_8880_0000_1000,
            ts_enter_ns: 1,
            ts_exit_ns: 2,
            total_len: 100,
            captured_len: 3,
            tail_len: 0,
        };
        let mut bytes = as_bytes(&h);
        bytes.extend_from_slice(b"GET");
        let Record::Data(d) = Record::decode(&bytes).unwrap() else {
            panic!("not data")
        };
        assert_eq!(d.payload, b"GET");
        assert_eq!(d.uncaptured(), 97);
        assert!(d.is_truncated());
        assert_eq!(d.direction, Direction::Ingress);
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(Record::decode(&[]).unwrap_err(), DecodeError::Empty);
        assert_eq!(
            Record::decode(&[99]).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
        assert!(matches!(
            Record::decode(&[1, 1, 1]).unwrap_err(),
            DecodeError::Short { .. }
        ));
        let h = DataHeader {
            kind: 1,
            direction: 1,
            syscall: 1,
            captured_len: 1000,
            ..Default::default()
        };
        assert!(matches!(
            Record::decode(&as_bytes(&h)).unwrap_err(),
            DecodeError::PayloadLength { .. }
        ));
    }

    #[test]
    fn conn_open_v4_mapped() {
        let mut r = ConnOpenRecord {
            kind: RecordKind::ConnOpen as u8,
            role: Role::Server as u8,
            family: AF_INET6,
            local_port: 8080,
            remote_port: 50000,
            ..Default::default()
        };
        r.local_addr = Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped().octets();
        r.comm[..5].copy_from_slice(b"nginx");
        let Record::ConnOpen(c) = Record::decode(&as_bytes(&r)).unwrap() else {
            panic!()
        };
        assert_eq!(c.local, (IpAddr::V4(Ipv4Addr::LOCALHOST), 8080));
        assert_eq!(c.comm, "nginx");
        assert_eq!(c.role, Role::Server);
    }
}
