//! `agent_process_events_total{event}`: forks, execs and exits counted by
//! the kernel on sched tracepoints (`agent-ebpf/src/sched.rs`), summed over
//! CPUs at scrape time.

use std::sync::Mutex;

use agent_common::sched::SchedStat;
use aya::maps::{MapData, PerCpuArray};

use super::{
    expo::{Exposition, Kind},
    scrape::ExtraFamilies,
};

/// The kernel's per-CPU counts, once the programs are loaded.
#[derive(Default)]
pub struct SchedStats {
    map: Mutex<Option<PerCpuArray<MapData, u64>>>,
}

impl SchedStats {
    pub fn set(&self, map: PerCpuArray<MapData, u64>) {
        *self.map.lock().unwrap_or_else(|p| p.into_inner()) = Some(map);
    }

    /// Totals in [`SchedStat::ALL`] order (`None` before the programs are
    /// loaded).
    pub fn read(&self) -> Option<[u64; SchedStat::ALL.len()]> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let map = map.as_ref()?;
        Some(SchedStat::ALL.map(|s| {
            map.get(&(s as u32), 0)
                .map(|per_cpu| per_cpu.iter().sum())
                .unwrap_or(0)
        }))
    }
}

impl ExtraFamilies for SchedStats {
    fn prometheus(&self, out: &mut Exposition) {
        let Some(totals) = self.read() else { return };
        out.family(
            "agent_process_events_total",
            "Process lifecycle events counted by the kernel since the agent started \
             (sched tracepoints): fork (tasks created, threads included), exec, exit \
             (whole processes), thread_exit.",
            Kind::Counter,
        );
        for (s, v) in SchedStat::ALL.iter().zip(totals) {
            out.sample(&[("event", s.name())], v as f64);
        }
    }
}
