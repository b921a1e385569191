//! The agent's own `process_*` metrics (the names every Prometheus client
//! library exports): CPU, memory, threads, descriptors, start time.
//!
//! It replaces the `prometheus` crate's process collector, which parsed
//! `/proc/self/limits` on every scrape (8 % of a `/metrics` page's
//! samples) and counted CPU in whole seconds. Here the process is read as
//! the traced processes are ([`read_process`]), the descriptor limit comes
//! from `getrlimit(2)`, the start time is computed once, and CPU time is in
//! fractional seconds as client_golang reports it.

use std::{path::Path, sync::Mutex};

use prometheus::{
    core::{Collector, Desc},
    proto::{Counter, Gauge, Metric, MetricFamily, MetricType},
};

use crate::node::{
    Reader,
    cpu::user_hz,
    process::{ProcessSample, read_process},
    stat::ProcStat,
};

const PROC: &str = "/proc";

const FAMILIES: [(&str, &str, MetricType); 7] = [
    (
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        MetricType::COUNTER,
    ),
    (
        "process_open_fds",
        "Number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_max_fds",
        "Maximum number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        MetricType::GAUGE,
    ),
    (
        "process_threads",
        "Number of OS threads in the process.",
        MetricType::GAUGE,
    ),
];

pub struct SelfProcess {
    descs: Vec<Desc>,
    reader: Mutex<Reader>,
    pid: u32,
    page_size: u64,
    /// Seconds since the epoch; `None` when `/proc/stat` had no `btime`.
    start_time: Option<f64>,
}

impl SelfProcess {
    pub fn new() -> Self {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _)| {
                Desc::new(
                    (*name).into(),
                    (*help).into(),
                    Vec::new(),
                    Default::default(),
                )
                .expect("valid desc")
            })
            .collect();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page_size = if page > 0 { page as u64 } else { 4096 };
        let pid = std::process::id();
        let mut reader = Reader::new();
        let start_ticks = read_process(&mut reader, Path::new(PROC), pid, page_size)
            .ok()
            .map(|s| s.start_ticks);
        let btime = std::fs::read_to_string(Path::new(PROC).join("stat"))
            .ok()
            .and_then(|t| ProcStat::parse(&t).ok())
            .and_then(|s| s.btime);
        Self {
            descs,
            reader: Mutex::new(reader),
            pid,
            page_size,
            start_time: btime
                .zip(start_ticks)
                .map(|(b, t)| b as f64 + t as f64 / user_hz()),
        }
    }

    /// Reads the process now (the same reading as the traced processes').
    pub fn sample(&self) -> Option<ProcessSample> {
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        read_process(&mut reader, Path::new(PROC), self.pid, self.page_size).ok()
    }
}

impl Default for SelfProcess {
    fn default() -> Self {
        Self::new()
    }
}

/// The soft limit on open descriptors (`None` when unlimited).
fn open_files_limit() -> Option<f64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur as f64)
}

fn one(name: &str, help: &str, kind: MetricType, value: f64) -> MetricFamily {
    let mut m = Metric::default();
    if kind == MetricType::COUNTER {
        let mut c = Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(vec![m]);
    f
}

impl Collector for SelfProcess {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(s) = self.sample() else {
            return Vec::new();
        };
        let values = [
            Some(s.user_seconds + s.system_seconds),
            s.fds.map(|n| n as f64),
            open_files_limit(),
            Some(s.virtual_bytes as f64),
            Some(s.rss_bytes as f64),
            self.start_time,
            Some(s.threads as f64),
        ];
        FAMILIES
            .iter()
            .zip(values)
            .filter_map(|((name, help, kind), v)| Some(one(name, help, *kind, v?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let p = SelfProcess::new();
        let s = p.sample().expect("readable");
        assert!(s.threads >= 1);
        assert!(s.rss_bytes > 0 && s.virtual_bytes >= s.rss_bytes);
        assert!(s.fds.expect("fd dir") >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let start = p.start_time.expect("btime");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        // CPU time grows in fractions of a second.
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(60) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let cpu = |s: &ProcessSample| s.user_seconds + s.system_seconds;
        assert!(cpu(&p.sample().expect("readable")) > cpu(&s));
    }

    #[test]
    fn families_as_client_libraries_name_them() {
        let families = SelfProcess::new().collect();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert!(names.contains(&"process_cpu_seconds_total"));
        assert!(names.contains(&"process_resident_memory_bytes"));
        assert!(names.contains(&"process_start_time_seconds"));
        assert_eq!(families[0].get_field_type(), MetricType::COUNTER);
    }
}
