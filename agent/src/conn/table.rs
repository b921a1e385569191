//! Connections by thread group then socket: two-level so that a process exit
//! drops all of a process's connections at once.

use std::{
    collections::{HashMap, hash_map::Entry},
    net::IpAddr,
    sync::Arc,
};

use agent_common::{Protocol, Role};

use crate::{
    protocol::{PendingRequest, Session},
    resource::ProcessResource,
    span::SpanKind,
};

pub struct Conn {
    pub fd: i32,
    /// As the kernel saw it (accept/connect), or Unknown.
    pub role: Role,
    pub protocol: Protocol,
    pub netns: u32,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    /// The addresses as text, formatted once for every span.
    pub local_ip: Arc<str>,
    pub remote_ip: Arc<str>,
    pub resource: Arc<ProcessResource>,
    /// Created on the first data once the span kind is known.
    pub session: Option<Box<dyn Session>>,
    /// Kernel timestamp of the last record about this connection.
    pub last_ns: u64,
}

impl Conn {
    /// The span kind of this connection: the role the kernel saw, else
    /// inferred from the first bytes (`None`: not decidable yet).
    pub fn span_kind(&self, direction: agent_common::Direction, first: &[u8]) -> Option<SpanKind> {
        match self.role {
            Role::Server => Some(SpanKind::Server),
            Role::Client => Some(SpanKind::Client),
            Role::Unknown => crate::protocol::infer_kind(self.protocol, direction, first),
        }
    }
}

/// Bounded connection table.
pub struct ConnTable {
    by_tgid: HashMap<u32, HashMap<u64, Conn>>,
    len: usize,
    max: usize,
}

impl ConnTable {
    pub fn new(max: usize) -> Self {
        Self {
            by_tgid: HashMap::new(),
            len: 0,
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get_mut(&mut self, tgid: u32, sk: u64) -> Option<&mut Conn> {
        self.by_tgid.get_mut(&tgid)?.get_mut(&sk)
    }

    /// Inserts a connection; returns the one it replaced (same socket seen
    /// again), or `Err(conn)` when the table is full.
    pub fn insert(&mut self, tgid: u32, sk: u64, conn: Conn) -> Result<Option<Conn>, Conn> {
        let full = self.len >= self.max;
        let per_process = self.by_tgid.entry(tgid).or_default();
        match per_process.entry(sk) {
            Entry::Occupied(mut e) => Ok(Some(std::mem::replace(e.get_mut(), conn))),
            Entry::Vacant(_) if full => {
                if per_process.is_empty() {
                    self.by_tgid.remove(&tgid);
                }
                Err(conn)
            }
            Entry::Vacant(e) => {
                e.insert(conn);
                self.len += 1;
                Ok(None)
            }
        }
    }

    pub fn remove(&mut self, tgid: u32, sk: u64) -> Option<Conn> {
        let per_process = self.by_tgid.get_mut(&tgid)?;
        let conn = per_process.remove(&sk)?;
        if per_process.is_empty() {
            self.by_tgid.remove(&tgid);
        }
        self.len -= 1;
        Some(conn)
    }

    /// The server requests still in flight in the process (over its server
    /// connections), into `out`.
    pub fn pending_server_requests(&self, tgid: u32, out: &mut Vec<PendingRequest>) {
        let Some(conns) = self.by_tgid.get(&tgid) else {
            return;
        };
        for c in conns.values().filter(|c| c.role == Role::Server) {
            if let Some(s) = &c.session {
                s.pending_requests(out);
            }
        }
    }

    /// Removes every connection of a process.
    pub fn remove_process(&mut self, tgid: u32) -> Vec<(u64, Conn)> {
        let conns: Vec<(u64, Conn)> = self
            .by_tgid
            .remove(&tgid)
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        self.len -= conns.len();
        conns
    }

    /// Visits every connection; `f` returns false to remove it (the removed
    /// connection is handed to `removed`).
    pub fn retain(
        &mut self,
        mut f: impl FnMut(u32, u64, &mut Conn) -> bool,
        mut removed: impl FnMut(u32, u64, Conn),
    ) {
        let mut gone = Vec::new();
        for (&tgid, conns) in &mut self.by_tgid {
            for (&sk, conn) in conns.iter_mut() {
                if !f(tgid, sk, conn) {
                    gone.push((tgid, sk));
                }
            }
        }
        for (tgid, sk) in gone {
            if let Some(conn) = self.remove(tgid, sk) {
                removed(tgid, sk, conn);
            }
        }
    }
}
