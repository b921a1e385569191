//! `stat` collector: `/proc/stat` totals (boot time, context switches,
//! forks, interrupts, running and blocked processes). The same file's cpu
//! lines are the `cpu` collector's; the parser here serves both.

use std::path::PathBuf;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
    otel::{OtelBatch, kv, metric_desc},
};

/// One `cpuN` line, in USER_HZ ticks (the kernel's column order).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTicks {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    pub guest: u64,
    pub guest_nice: u64,
}

/// What `/proc/stat` holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcStat {
    /// Per CPU: (cpu number, ticks). The aggregate `cpu` line is left out.
    pub cpus: Vec<(u32, CpuTicks)>,
    pub intr: Option<u64>,
    pub ctxt: Option<u64>,
    pub btime: Option<u64>,
    pub processes: Option<u64>,
    pub procs_running: Option<u64>,
    pub procs_blocked: Option<u64>,
}

impl ProcStat {
    /// Parses the file. Unknown lines are skipped (new kernels add some);
    /// a known line with a bad number is an error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut s = Self::default();
        for line in text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let Some(key) = fields.next() else { continue };
            let mut next = |what: &str| -> Result<u64, String> {
                let v = fields
                    .next()
                    .ok_or_else(|| format!("{key}: missing {what}"))?;
                v.parse()
                    .map_err(|_| format!("{key}: {what} {v:?} is not a number"))
            };
            if let Some(n) = key.strip_prefix("cpu") {
                if n.is_empty() {
                    continue;
                }
                let cpu: u32 = n.parse().map_err(|_| format!("bad cpu line {key:?}"))?;
                let mut t = CpuTicks {
                    user: next("user")?,
                    nice: next("nice")?,
                    system: next("system")?,
                    idle: next("idle")?,
                    ..CpuTicks::default()
                };
                // Older kernels have fewer columns.
                for slot in [
                    &mut t.iowait,
                    &mut t.irq,
                    &mut t.softirq,
                    &mut t.steal,
                    &mut t.guest,
                    &mut t.guest_nice,
                ] {
                    match fields.next() {
                        Some(v) => *slot = v.parse().map_err(|_| format!("{key}: bad {v:?}"))?,
                        None => break,
                    }
                }
                s.cpus.push((cpu, t));
                continue;
            }
            let slot = match key {
                "intr" => &mut s.intr,
                "ctxt" => &mut s.ctxt,
                "btime" => &mut s.btime,
                "processes" => &mut s.processes,
                "procs_running" => &mut s.procs_running,
                "procs_blocked" => &mut s.procs_blocked,
                _ => continue,
            };
            *slot = Some(next("value")?);
        }
        Ok(s)
    }
}

/// Reads and parses `/proc/stat`.
pub fn read_proc_stat(reader: &mut Reader, path: &std::path::Path) -> Result<ProcStat, NodeError> {
    let text = reader.read_shared(path)?;
    ProcStat::parse(text).map_err(|e| NodeError::parse(path, e))
}

metric_desc!(
    PROCESS_COUNT,
    "system.process.count",
    "{process}",
    UpDownCounter,
    "Total number of processes in each state."
);
metric_desc!(
    PROCESS_CREATED,
    "system.process.created",
    "{process}",
    Counter,
    "Total number of processes created over uptime of the host."
);
metric_desc!(
    UPTIME,
    "system.uptime",
    "s",
    Gauge,
    "The time the system has been running."
);

pub struct Stat {
    path: PathBuf,
    last: ProcStat,
}

impl Stat {
    pub fn new(p: &NodePaths) -> Self {
        Self {
            path: p.proc("stat"),
            last: ProcStat::default(),
        }
    }
}

impl Collector for Stat {
    fn name(&self) -> &'static str {
        "stat"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        self.last = read_proc_stat(reader, &self.path)?;
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        let s = &self.last;
        let families: [(&str, &str, Kind, Option<u64>); 6] = [
            (
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                Kind::Gauge,
                s.btime,
            ),
            (
                "node_context_switches_total",
                "Total number of context switches.",
                Kind::Counter,
                s.ctxt,
            ),
            (
                "node_forks_total",
                "Total number of forks.",
                Kind::Counter,
                s.processes,
            ),
            (
                "node_intr_total",
                "Total number of interrupts serviced.",
                Kind::Counter,
                s.intr,
            ),
            (
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
                Kind::Gauge,
                s.procs_blocked,
            ),
            (
                "node_procs_running",
                "Number of processes in runnable state.",
                Kind::Gauge,
                s.procs_running,
            ),
        ];
        for (name, help, kind, value) in families {
            let Some(value) = value else { continue };
            out.family(name, help, kind);
            out.value(value as f64);
        }
    }

    fn otel(&self, out: &mut OtelBatch) {
        let s = &self.last;
        if let Some(v) = s.procs_running {
            out.int(&PROCESS_COUNT, vec![kv("process.status", "running")], v);
        }
        if let Some(v) = s.procs_blocked {
            out.int(&PROCESS_COUNT, vec![kv("process.status", "blocked")], v);
        }
        if let Some(v) = s.processes {
            out.int(&PROCESS_CREATED, vec![], v);
        }
        if let Some(boot) = s.btime {
            let now = out.time_unix_ns as f64 / 1e9;
            out.double(&UPTIME, vec![], (now - boot as f64).max(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{fixture_paths, render};

    #[test]
    fn fixture_values() {
        let text = std::fs::read_to_string(fixture_paths().proc("stat")).unwrap();
        let s = ProcStat::parse(&text).unwrap();
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpus[1].0, 1);
        assert_eq!(s.btime, Some(1_796_150_184));
        assert!(s.intr.unwrap() > 0 && s.ctxt.unwrap() > 0 && s.processes.unwrap() > 0);
        let out = render(&mut Stat::new(&fixture_paths()));
        assert!(
            out.contains("node_boot_time_seconds 1.796150184e+09\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE node_forks_total counter\n"));
    }

    #[test]
    fn old_kernels_and_bad_input() {
        let s = ProcStat::parse("cpu 1 2 3 4\ncpu0 1 2 3 4\nbtime 5\nfuture 1 2\n").unwrap();
        assert_eq!(
            s.cpus,
            vec![(
                0,
                CpuTicks {
                    user: 1,
                    nice: 2,
                    system: 3,
                    idle: 4,
                    ..CpuTicks::default()
                }
            )]
        );
        assert_eq!(s.btime, Some(5));
        assert!(ProcStat::parse("cpu0 1 2\n").is_err());
        assert!(ProcStat::parse("ctxt x\n").is_err());
        assert!(ProcStat::parse("cpuX 1 2 3 4\n").is_err());
        assert_eq!(ProcStat::parse("").unwrap(), ProcStat::default());
    }
}
