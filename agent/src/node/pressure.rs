//! `pressure` collector: pressure stall information (procfs), in
//! node_exporter's names: total stall times in seconds.

use std::path::{Path, PathBuf};

use procfs_core::{CpuPressure, FromRead as _, IoPressure, MemoryPressure};

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Totals {
    cpu_some: f64,
    io_some: f64,
    io_full: f64,
    memory_some: f64,
    memory_full: f64,
}

pub struct Pressure {
    cpu: PathBuf,
    io: PathBuf,
    memory: PathBuf,
    totals: Totals,
}

impl Pressure {
    pub fn new(p: &NodePaths) -> Self {
        Self {
            cpu: p.proc("pressure/cpu"),
            io: p.proc("pressure/io"),
            memory: p.proc("pressure/memory"),
            totals: Totals::default(),
        }
    }
}

/// Microseconds to seconds.
fn secs(us: u64) -> f64 {
    // As node_exporter computes it (so 6.051953999999999 prints the same).
    us as f64 / 1000.0 / 1000.0
}

impl Collector for Pressure {
    fn name(&self) -> &'static str {
        "pressure"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        fn bad(path: &Path) -> impl FnOnce(procfs_core::ProcError) -> NodeError + '_ {
            move |e| NodeError::parse(path, e.to_string())
        }
        let cpu = CpuPressure::from_read(reader.read_kept(&self.cpu)?.as_bytes())
            .map_err(bad(&self.cpu))?;
        let io =
            IoPressure::from_read(reader.read_kept(&self.io)?.as_bytes()).map_err(bad(&self.io))?;
        let memory = MemoryPressure::from_read(reader.read_kept(&self.memory)?.as_bytes())
            .map_err(bad(&self.memory))?;
        self.totals = Totals {
            cpu_some: secs(cpu.some.total),
            io_some: secs(io.some.total),
            io_full: secs(io.full.total),
            memory_some: secs(memory.some.total),
            memory_full: secs(memory.full.total),
        };
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        let t = &self.totals;
        for (name, help, v) in [
            (
                "node_pressure_cpu_waiting_seconds_total",
                "Total time in seconds that processes have waited for CPU time",
                t.cpu_some,
            ),
            (
                "node_pressure_io_stalled_seconds_total",
                "Total time in seconds no process could make progress due to IO congestion",
                t.io_full,
            ),
            (
                "node_pressure_io_waiting_seconds_total",
                "Total time in seconds that processes have waited due to IO congestion",
                t.io_some,
            ),
            (
                "node_pressure_memory_stalled_seconds_total",
                "Total time in seconds no process could make progress due to memory congestion",
                t.memory_full,
            ),
            (
                "node_pressure_memory_waiting_seconds_total",
                "Total time in seconds that processes have waited for memory",
                t.memory_some,
            ),
        ] {
            out.family(name, help, Kind::Counter);
            out.value(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{Tree, fixture_paths, render};

    #[test]
    fn fixture_and_missing_psi() {
        let out = render(&mut Pressure::new(&fixture_paths()));
        assert_eq!(out.matches("# TYPE").count(), 5, "{out}");
        let t = Tree::new();
        assert!(
            Pressure::new(&t.paths())
                .update(&mut Reader::new())
                .is_err(),
            "no PSI: the collector fails, as node_exporter's"
        );
    }
}
