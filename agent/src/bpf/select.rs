//! The kernel's selection maps, seen from userspace: the port table
//! (written once, before the programs are attached) and the set of excluded
//! processes (written at start for every process, then as processes are
//! decided).

use agent_common::select::{PortSelect, SelectFlags};
use aya::maps::{Array, HashMap, Map, MapData};

use super::BpfError;
use crate::config::SelectionConfig;

/// What the kernel is told before the programs run.
#[derive(Clone, Debug, Default)]
pub struct KernelSelection {
    /// [`SelectFlags`] bits.
    pub flags: u32,
    /// (port, [`PortSelect`] bits) for every port with a bit.
    pub ports: Vec<(u16, u8)>,
    /// Processes excluded from the start.
    pub excluded: Vec<u32>,
}

impl KernelSelection {
    /// The port table and flags of `cfg` (no processes yet).
    pub fn from_config(cfg: &SelectionConfig) -> Self {
        let mut bits = std::collections::BTreeMap::<u16, u8>::new();
        for (ranges, bit) in [
            (&cfg.include.ports, PortSelect::INCLUDED),
            (&cfg.exclude.ports, PortSelect::EXCLUDED),
        ] {
            for r in ranges {
                for port in r.from..=r.to {
                    *bits.entry(port).or_default() |= bit;
                }
            }
        }
        let mut flags = 0;
        if !cfg.include.ports.is_empty() {
            flags |= SelectFlags::PORTS_INCLUDE;
        }
        if !cfg.exclude.ports.is_empty() {
            flags |= SelectFlags::PORTS_EXCLUDE;
        }
        if cfg.by_process() {
            flags |= SelectFlags::PROCESSES;
        }
        Self {
            flags,
            ports: bits.into_iter().collect(),
            excluded: Vec::new(),
        }
    }
}

pub(super) fn write_ports(map: &mut Map, ports: &[(u16, u8)]) -> Result<(), BpfError> {
    let mut array: Array<&mut MapData, u8> =
        Array::try_from(map).map_err(|source| BpfError::Map {
            name: "PORT_SELECT",
            source: Box::new(source),
        })?;
    for &(port, bits) in ports {
        array
            .set(u32::from(port), bits, 0)
            .map_err(|source| BpfError::Map {
                name: "PORT_SELECT",
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// `PROC_EXCLUDED`: processes whose syscalls the programs skip.
pub struct ProcFilter {
    map: HashMap<MapData, u32, u8>,
}

impl ProcFilter {
    pub(super) fn new(map: Map) -> Result<Self, BpfError> {
        let map = HashMap::try_from(map).map_err(|source| BpfError::Map {
            name: "PROC_EXCLUDED",
            source: Box::new(source),
        })?;
        Ok(Self { map })
    }

    /// Stops tracing process `tgid` in the kernel.
    pub fn exclude(&mut self, tgid: u32) {
        if let Err(e) = self.map.insert(tgid, 1, 0) {
            tracing::debug!("PROC_EXCLUDED insert {tgid}: {e}");
        }
    }

    /// Traces process `tgid` again (a new program after exec, say).
    pub fn include(&mut self, tgid: u32) {
        let _ = self.map.remove(&tgid);
    }
}
