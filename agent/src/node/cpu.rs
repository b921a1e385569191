//! `cpu` collector: seconds each CPU spent in each mode (`/proc/stat`).
//!
//! As node_exporter does, a counter that goes backwards (a known kernel
//! quirk of iowait and idle on some hypervisors) keeps its last value, and a
//! CPU whose idle time jumps back by 3 s or more (hotplug) starts over.

use std::path::PathBuf;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
    otel::{OtelBatch, kv, kv_int, metric_desc},
    stat::{CpuTicks, read_proc_stat},
};

/// Modes in node_exporter's (alphabetical) order, with the tick getter and
/// the OpenTelemetry `cpu.mode` value.
type Mode = (&'static str, fn(&CpuTicks) -> u64, &'static str);

const MODES: [Mode; 8] = [
    ("idle", |t| t.idle, "idle"),
    ("iowait", |t| t.iowait, "iowait"),
    ("irq", |t| t.irq, "interrupt"),
    ("nice", |t| t.nice, "nice"),
    ("softirq", |t| t.softirq, "softirq"),
    ("steal", |t| t.steal, "steal"),
    ("system", |t| t.system, "system"),
    ("user", |t| t.user, "user"),
];

/// Idle going back by this much means the CPU was replugged.
const JUMP_BACK_SECONDS: f64 = 3.0;

metric_desc!(
    CPU_TIME,
    "system.cpu.time",
    "s",
    Counter,
    "Seconds each logical CPU spent on each mode."
);
metric_desc!(
    CPU_LOGICAL_COUNT,
    "system.cpu.logical.count",
    "{cpu}",
    UpDownCounter,
    "Reports the number of logical (virtual) processor cores created by the operating system to manage multitasking."
);

/// Seconds per mode of one CPU, in [`MODES`] order, then guest and
/// guest_nice.
type Seconds = [f64; 10];

pub struct Cpu {
    path: PathBuf,
    hz: f64,
    /// (cpu, seconds), kept monotonic across updates.
    cpus: Vec<(u32, Seconds)>,
}

impl Cpu {
    pub fn new(p: &NodePaths) -> Self {
        Self {
            path: p.proc("stat"),
            hz: user_hz(),
            cpus: Vec::new(),
        }
    }

    fn merge(&mut self, fresh: &[(u32, CpuTicks)]) {
        let mut next = Vec::with_capacity(fresh.len());
        for (cpu, ticks) in fresh {
            let mut new: Seconds = [0.0; 10];
            for (i, (_, get, _)) in MODES.iter().enumerate() {
                new[i] = get(ticks) as f64 / self.hz;
            }
            new[8] = ticks.guest as f64 / self.hz;
            new[9] = ticks.guest_nice as f64 / self.hz;
            let merged = match self.cpus.iter().find(|(c, _)| c == cpu) {
                Some((_, old)) if old[0] - new[0] < JUMP_BACK_SECONDS => {
                    let mut m = new;
                    for (m, o) in m.iter_mut().zip(old) {
                        if *m < *o {
                            *m = *o;
                        }
                    }
                    m
                }
                _ => new,
            };
            next.push((*cpu, merged));
        }
        self.cpus = next;
    }
}

/// USER_HZ, the unit of `/proc/stat` (100 on every Linux architecture).
pub fn user_hz() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let stat = read_proc_stat(reader, &self.path)?;
        self.merge(&stat.cpus);
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        let mut num = itoa::Buffer::new();
        out.family(
            "node_cpu_guest_seconds_total",
            "Seconds the CPUs spent in guests (VMs) for each mode.",
            Kind::Counter,
        );
        for (cpu, s) in &self.cpus {
            let cpu = num.format(*cpu);
            out.sample(&[("cpu", cpu), ("mode", "nice")], s[9]);
            out.sample(&[("cpu", cpu), ("mode", "user")], s[8]);
        }
        out.family(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
            Kind::Counter,
        );
        for (cpu, s) in &self.cpus {
            let cpu = num.format(*cpu);
            for (i, (mode, _, _)) in MODES.iter().enumerate() {
                out.sample(&[("cpu", cpu), ("mode", mode)], s[i]);
            }
        }
    }

    fn otel(&self, out: &mut OtelBatch) {
        for (cpu, s) in &self.cpus {
            for (i, (_, _, mode)) in MODES.iter().enumerate() {
                out.double(
                    &CPU_TIME,
                    vec![
                        kv("cpu.mode", *mode),
                        kv_int("cpu.logical_number", i64::from(*cpu)),
                    ],
                    s[i],
                );
            }
        }
        out.int(&CPU_LOGICAL_COUNT, vec![], self.cpus.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{Tree, fixture_paths, render};

    #[test]
    fn fixture() {
        let out = render(&mut Cpu::new(&fixture_paths()));
        assert_eq!(out.matches("node_cpu_seconds_total{").count(), 16, "{out}");
        assert_eq!(out.matches("node_cpu_guest_seconds_total{").count(), 4);
    }

    #[test]
    fn counters_never_go_backwards() {
        let t = Tree::new();
        t.write("proc/stat", "cpu0 100 0 100 1000 50 0 0 0 0 0\n");
        let mut c = Cpu::new(&t.paths());
        let mut r = Reader::new();
        r.new_cycle();
        c.update(&mut r).unwrap();
        // iowait goes back: the old value stays.
        t.write("proc/stat", "cpu0 200 0 100 1010 40 0 0 0 0 0\n");
        r.new_cycle();
        c.update(&mut r).unwrap();
        let s = c.cpus[0].1;
        assert_eq!(s[1], 0.5, "iowait kept");
        assert_eq!(s[7], 2.0, "user moved");
        // Idle jumps back by 10 s: hotplug, start over.
        t.write("proc/stat", "cpu0 1 0 1 10 1 0 0 0 0 0\n");
        r.new_cycle();
        c.update(&mut r).unwrap();
        assert_eq!(c.cpus[0].1[0], 0.1);
        // A CPU goes offline.
        t.write("proc/stat", "cpu1 1 0 1 10 1 0 0 0 0 0\n");
        r.new_cycle();
        c.update(&mut r).unwrap();
        assert_eq!(c.cpus.len(), 1);
        assert_eq!(c.cpus[0].0, 1);
    }
}
