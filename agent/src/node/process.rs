//! Process metrics of the processes the agent traces (those with a traced
//! connection), as OpenTelemetry `process.*` metrics, each on the
//! process's own resource (the one its spans carry).
//!
//! The pipeline registers a process when it opens its first traced
//! connection and forgets it at its exit ([`TracedProcesses`], bounded).
//! Each export reads, per process (procfs parsers):
//!
//! | file | gives |
//! |---|---|
//! | `<proc>/<pid>/stat` | CPU times, faults, threads, virtual size, RSS, start time |
//! | `<proc>/<pid>/status` | context switches |
//! | `<proc>/<pid>/io` | disk bytes (needs root) |
//! | `<proc>/<pid>/fd/` | open descriptors (counted) |

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use procfs_core::{
    FromRead as _,
    process::{Io, Stat, Status},
};

use super::{
    NodeError, Reader,
    cpu::user_hz,
    otel::{OtelBatch, kv, metric_desc},
};
use crate::resource::ProcessResource;

metric_desc!(
    CPU_TIME,
    "process.cpu.time",
    "s",
    Counter,
    "Total CPU seconds broken down by different CPU modes."
);
metric_desc!(
    MEMORY_USAGE,
    "process.memory.usage",
    "By",
    UpDownCounter,
    "The amount of physical memory in use."
);
metric_desc!(
    MEMORY_VIRTUAL,
    "process.memory.virtual",
    "By",
    UpDownCounter,
    "The amount of committed virtual memory."
);
metric_desc!(
    THREADS,
    "process.thread.count",
    "{thread}",
    UpDownCounter,
    "Process threads count."
);
metric_desc!(
    FDS,
    "process.unix.file_descriptor.count",
    "{file_descriptor}",
    UpDownCounter,
    "Number of unix file descriptors in use by the process."
);
metric_desc!(
    DISK_IO,
    "process.disk.io",
    "By",
    Counter,
    "Disk bytes transferred."
);
metric_desc!(
    CONTEXT_SWITCHES,
    "process.context_switches",
    "{context_switch}",
    Counter,
    "Number of times the process has been context switched."
);
metric_desc!(
    PAGING_FAULTS,
    "process.paging.faults",
    "{fault}",
    Counter,
    "Number of page faults the process has made."
);
metric_desc!(
    UPTIME,
    "process.uptime",
    "s",
    Gauge,
    "The time the process has been running."
);

/// The traced processes, by pid (host pid namespace).
#[derive(Debug)]
pub struct TracedProcesses {
    inner: Mutex<HashMap<u32, Arc<ProcessResource>>>,
    capacity: usize,
}

impl TracedProcesses {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::default(),
            capacity,
        }
    }

    /// Registers a process (at capacity, new processes are not added).
    pub fn insert(&self, pid: u32, resource: Arc<ProcessResource>) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() < self.capacity || map.contains_key(&pid) {
            map.insert(pid, resource);
        }
    }

    pub fn remove(&self, pid: u32) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn snapshot(&self) -> Vec<(u32, Arc<ProcessResource>)> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.iter().map(|(p, r)| (*p, Arc::clone(r))).collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }
}

/// One reading of a process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessSample {
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub rss_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    /// Clock ticks after boot (field 22 of `stat`).
    pub start_ticks: u64,
    pub voluntary_switches: Option<u64>,
    pub involuntary_switches: Option<u64>,
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
    pub fds: Option<u64>,
}

/// Reads `<proc>/<pid>`.
pub fn read_process(
    reader: &mut Reader,
    proc_root: &Path,
    pid: u32,
    page_size: u64,
) -> Result<ProcessSample, NodeError> {
    let dir = proc_root.join(pid.to_string());
    let path = dir.join("stat");
    let stat = Stat::from_read(reader.read(&path)?.as_bytes())
        .map_err(|e| NodeError::parse(&path, e.to_string()))?;
    let hz = user_hz();
    let mut s = ProcessSample {
        user_seconds: stat.utime as f64 / hz,
        system_seconds: stat.stime as f64 / hz,
        rss_bytes: stat.rss * page_size,
        virtual_bytes: stat.vsize,
        threads: stat.num_threads.max(0) as u64,
        minor_faults: stat.minflt,
        major_faults: stat.majflt,
        start_ticks: stat.starttime,
        ..ProcessSample::default()
    };
    let path = dir.join("status");
    if let Ok(Some(text)) = reader.read_optional(&path)
        && let Ok(status) = Status::from_read(text.as_bytes())
    {
        s.voluntary_switches = status.voluntary_ctxt_switches;
        s.involuntary_switches = status.nonvoluntary_ctxt_switches;
    }
    let path = dir.join("io");
    if let Ok(Some(text)) = reader.read_optional(&path)
        && let Ok(io) = Io::from_read(text.as_bytes())
    {
        s.read_bytes = Some(io.read_bytes);
        s.write_bytes = Some(io.write_bytes);
    }
    s.fds = std::fs::read_dir(dir.join("fd"))
        .ok()
        .map(|d| d.filter(|e| e.is_ok()).count() as u64);
    Ok(s)
}

impl ProcessSample {
    /// The data points of this process (`out.start_unix_ns` is its start).
    pub fn otel(&self, out: &mut OtelBatch) {
        out.double(&CPU_TIME, vec![kv("cpu.mode", "user")], self.user_seconds);
        out.double(
            &CPU_TIME,
            vec![kv("cpu.mode", "system")],
            self.system_seconds,
        );
        out.int(&MEMORY_USAGE, vec![], self.rss_bytes);
        out.int(&MEMORY_VIRTUAL, vec![], self.virtual_bytes);
        out.int(&THREADS, vec![], self.threads);
        if let Some(n) = self.fds {
            out.int(&FDS, vec![], n);
        }
        if let (Some(r), Some(w)) = (self.read_bytes, self.write_bytes) {
            out.int(&DISK_IO, vec![kv("disk.io.direction", "read")], r);
            out.int(&DISK_IO, vec![kv("disk.io.direction", "write")], w);
        }
        if let (Some(v), Some(i)) = (self.voluntary_switches, self.involuntary_switches) {
            out.int(
                &CONTEXT_SWITCHES,
                vec![kv("process.context_switch_type", "voluntary")],
                v,
            );
            out.int(
                &CONTEXT_SWITCHES,
                vec![kv("process.context_switch_type", "involuntary")],
                i,
            );
        }
        out.int(
            &PAGING_FAULTS,
            vec![kv("system.paging.type", "minor")],
            self.minor_faults,
        );
        out.int(
            &PAGING_FAULTS,
            vec![kv("system.paging.type", "major")],
            self.major_faults,
        );
        let up = (out.time_unix_ns.saturating_sub(out.start_unix_ns)) as f64 / 1e9;
        out.double(&UPTIME, vec![], up);
    }
}

/// Reads every traced process into one batch each.
pub struct ProcessMetrics {
    traced: Arc<TracedProcesses>,
    proc_root: PathBuf,
    page_size: u64,
    reader: Reader,
}

impl ProcessMetrics {
    pub fn new(traced: Arc<TracedProcesses>, proc_root: PathBuf) -> Self {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Self {
            traced,
            proc_root,
            page_size: if page > 0 { page as u64 } else { 4096 },
            reader: Reader::new(),
        }
    }

    /// (resource, batch) per live traced process; `boot_unix_ns` turns
    /// start ticks into wall time. Processes that are gone, or whose pid now
    /// belongs to another process, are dropped from the registry.
    pub fn collect(
        &mut self,
        boot_unix_ns: u64,
        now_unix_ns: u64,
    ) -> Vec<(Arc<ProcessResource>, OtelBatch)> {
        let hz = user_hz();
        let mut out = Vec::new();
        for (pid, resource) in self.traced.snapshot() {
            let sample = match read_process(&mut self.reader, &self.proc_root, pid, self.page_size)
            {
                Ok(s) => s,
                Err(_) => {
                    self.traced.remove(pid);
                    continue;
                }
            };
            if resource
                .info
                .start_time
                .is_some_and(|t| t != sample.start_ticks)
            {
                self.traced.remove(pid);
                continue;
            }
            let start = boot_unix_ns + (sample.start_ticks as f64 / hz * 1e9) as u64;
            let mut batch = OtelBatch::new(start, now_unix_ns);
            sample.otel(&mut batch);
            out.push((resource, batch));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::fixture_paths;

    #[test]
    fn fixture_process() {
        let s = read_process(&mut Reader::new(), &fixture_paths().proc, 4242, 4096).unwrap();
        assert_eq!(s.threads, 5);
        assert_eq!(s.rss_bytes, 4977 * 4096);
        assert_eq!(s.virtual_bytes, 1_048_383_488);
        assert_eq!(s.user_seconds, 0.02);
        assert_eq!(s.start_ticks, 97983);
        assert_eq!(s.fds, Some(9));
        assert_eq!(s.read_bytes, Some(0));
        assert_eq!(s.write_bytes, Some(4096));
        assert!(s.voluntary_switches.is_some());
        let mut b = OtelBatch::new(1, 2_000_000_001);
        s.otel(&mut b);
        let names: Vec<String> = b.into_metrics().into_iter().map(|m| m.name).collect();
        for n in [
            "process.cpu.time",
            "process.memory.usage",
            "process.memory.virtual",
            "process.thread.count",
            "process.unix.file_descriptor.count",
            "process.disk.io",
            "process.context_switches",
            "process.paging.faults",
            "process.uptime",
        ] {
            assert!(names.iter().any(|m| m == n), "{n} missing from {names:?}");
        }
    }

    #[test]
    fn gone_process_is_an_error() {
        assert!(read_process(&mut Reader::new(), &fixture_paths().proc, 999_999, 4096).is_err());
    }
}
