//! The kernel connection map, seen from userspace: tell the kernel to stop
//! sending a connection's data, and sweep entries of processes that exited
//! (an exiting process closes its descriptors without `close()` calls).

use std::collections::HashSet;

use agent_common::{ConnKey, ConnState, ConnVal};
use aya::maps::{HashMap, Map, MapData};

use super::BpfError;

pub struct ConnMap {
    map: HashMap<MapData, ConnKey, ConnVal>,
}

impl ConnMap {
    pub(super) fn new(map: Map) -> Result<Self, BpfError> {
        let map = HashMap::try_from(map).map_err(|source| BpfError::Map {
            name: "CONNS",
            source: Box::new(source),
        })?;
        Ok(Self { map })
    }

    /// Stops data capture for one socket, if it is still the same socket.
    pub fn ignore(&mut self, tgid: u32, fd: i32, sk: u64) {
        self.set_state(tgid, fd, sk, ConnState::Ignored);
    }

    /// Returns a socket to the unclassified state: the kernel announces it
    /// again (a new `ConnOpen`) when it next carries a message start. Used
    /// when userspace forgets an idle connection.
    pub fn forget(&mut self, tgid: u32, fd: i32, sk: u64) {
        self.set_state(tgid, fd, sk, ConnState::Unknown);
    }

    fn set_state(&mut self, tgid: u32, fd: i32, sk: u64, state: ConnState) {
        let key = ConnKey {
            tgid,
            fd: fd as u32,
        };
        if let Ok(mut val) = self.map.get(&key, 0)
            && val.sk == sk
        {
            val.state = state as u8;
            if state == ConnState::Unknown {
                // A fresh start: the classification budget too.
                val.unclassified = 0;
            }
            let _ = self.map.insert(key, val, 0);
        }
    }

    /// Removes entries whose process no longer exists. Returns how many.
    pub fn sweep(&mut self, alive: impl Fn(u32) -> bool) -> usize {
        let mut dead = HashSet::new();
        let keys: Vec<ConnKey> = self.map.keys().filter_map(Result::ok).collect();
        for key in &keys {
            if !dead.contains(&key.tgid) && !alive(key.tgid) {
                dead.insert(key.tgid);
            }
        }
        let mut removed = 0;
        for key in keys {
            if dead.contains(&key.tgid) && self.map.remove(&key).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}
