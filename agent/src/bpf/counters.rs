//! The kernel's own counters (per-CPU array `COUNTERS`), summed over CPUs.

use agent_common::Counter;
use aya::maps::{Map, MapData, PerCpuArray};

use super::BpfError;

pub struct KernelCounters {
    map: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for KernelCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelCounters").finish_non_exhaustive()
    }
}

impl KernelCounters {
    pub(super) fn new(map: Map) -> Result<Self, BpfError> {
        let map = PerCpuArray::try_from(map).map_err(|source| BpfError::Map {
            name: "COUNTERS",
            source: Box::new(source),
        })?;
        Ok(Self { map })
    }

    /// Current totals, in [`Counter::ALL`] order.
    pub fn read(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|&c| {
                let total = self
                    .map
                    .get(&(c as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (c, total)
            })
            .collect()
    }
}
