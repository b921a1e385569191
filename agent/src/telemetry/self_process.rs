//! The agent's own `process_*` metrics (the names every Prometheus client
//! library exports): CPU, memory, threads, descriptors, start time.
//!
//! It replaces the `prometheus` crate's process collector, which opened
//! and parsed `/proc/self/limits` and `/proc/self/stat` on every scrape
//! (8 % of a `/metrics` page's CPU) and counted CPU in whole seconds. Here
//! `stat` is read through a kept descriptor, the descriptor limit comes
//! from `getrlimit(2)`, the start time is computed once, and CPU time is in
//! fractional seconds as client_golang reports it.

use std::{path::Path, sync::Mutex};

use procfs_core::{FromRead as _, process::Stat};
use prometheus::{
    core::{Collector, Desc},
    proto::{Counter, Gauge, Metric, MetricFamily, MetricType},
};

use crate::node::{Reader, cpu::user_hz};

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

/// One reading of the agent's own process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SelfSample {
    pub cpu_seconds: f64,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub virtual_bytes: f64,
    pub resident_bytes: f64,
    pub threads: f64,
}

pub struct SelfProcess {
    descs: Vec<Desc>,
    reader: Mutex<Reader>,
    hz: f64,
    page_size: f64,
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
        let hz = user_hz();
        let mut reader = Reader::new();
        let start_ticks = reader
            .read_kept(Path::new("/proc/self/stat"))
            .ok()
            .and_then(|t| Stat::from_read(t.as_bytes()).ok())
            .map(|s| s.starttime);
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| boot_time(&t));
        Self {
            descs,
            reader: Mutex::new(reader),
            hz,
            page_size: if page > 0 { page as f64 } else { 4096.0 },
            start_time: btime.zip(start_ticks).map(|(b, t)| b + t as f64 / hz),
        }
    }

    /// Reads the process now; `None` when `/proc/self/stat` is unreadable.
    pub fn sample(&self) -> Option<SelfSample> {
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let stat = Stat::from_read(
            reader
                .read_kept(Path::new("/proc/self/stat"))
                .ok()?
                .as_bytes(),
        )
        .ok()?;
        drop(reader);
        Some(SelfSample {
            cpu_seconds: (stat.utime + stat.stime) as f64 / self.hz,
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            max_fds: open_files_limit(),
            virtual_bytes: stat.vsize as f64,
            resident_bytes: stat.rss as f64 * self.page_size,
            threads: stat.num_threads as f64,
        })
    }
}

impl Default for SelfProcess {
    fn default() -> Self {
        Self::new()
    }
}

/// `btime` of `/proc/stat`.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|v| v as f64)
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
            Some(s.cpu_seconds),
            s.open_fds,
            s.max_fds,
            Some(s.virtual_bytes),
            Some(s.resident_bytes),
            self.start_time,
            Some(s.threads),
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
        assert!(s.threads >= 1.0);
        assert!(s.resident_bytes > 0.0 && s.virtual_bytes >= s.resident_bytes);
        assert!(s.open_fds.expect("fd dir") >= 3.0);
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
        assert!(p.sample().expect("readable").cpu_seconds > s.cpu_seconds);
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

    #[test]
    fn boot_time_line() {
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1796150184\nprocesses 3\n"),
            Some(1_796_150_184.0)
        );
        assert_eq!(boot_time("cpu 1 2\n"), None);
    }
}
