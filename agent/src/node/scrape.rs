//! One `/metrics` page: the node collectors' exposition followed by the
//! agent's own metrics. Scrapes are serialised (collectors keep state) and
//! run on a blocking thread (file reads, `statfs`).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use super::{
    Node,
    expo::{Exposition, Kind},
    otel::OtelBatch,
};

/// CPU time of the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Extra families appended to the page after the collectors' (the kernel's
/// process-event counters, the traced processes).
pub trait ExtraFamilies: Send + Sync {
    fn prometheus(&self, out: &mut Exposition);
}

pub struct NodeScraper {
    node: Mutex<Node>,
    extra: Vec<Arc<dyn ExtraFamilies>>,
    /// Size of the last page, to allocate the next one at once.
    last_len: AtomicUsize,
    scrapes: AtomicU64,
    /// CPU time spent reading the collectors and writing pages.
    cpu_ns: AtomicU64,
}

impl NodeScraper {
    pub fn new(node: Node) -> Self {
        Self {
            node: Mutex::new(node),
            extra: Vec::new(),
            last_len: AtomicUsize::new(64 * 1024),
            scrapes: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
        }
    }

    pub fn with_extra(mut self, extra: Arc<dyn ExtraFamilies>) -> Self {
        self.extra.push(extra);
        self
    }

    /// Reads every collector and writes the page; `tail` is appended
    /// (the agent's own metrics, already in the text format).
    pub fn render(&self, tail: &str) -> String {
        let cpu_start = thread_cpu_ns();
        let mut out = Exposition::with_capacity(self.last_len.load(Ordering::Relaxed) + tail.len());
        {
            let mut node = self.node.lock().unwrap_or_else(|p| p.into_inner());
            node.update();
            node.prometheus(&mut out);
        }
        for e in &self.extra {
            e.prometheus(&mut out);
        }
        let scrapes = self.scrapes.fetch_add(1, Ordering::Relaxed) + 1;
        out.family(
            "agent_node_scrapes_total",
            "Pages of node metrics written for /metrics.",
            Kind::Counter,
        );
        out.value(scrapes as f64);
        out.family(
            "agent_node_scrape_cpu_seconds_total",
            "CPU time spent reading the node collectors and writing /metrics pages \
             (up to the previous scrape).",
            Kind::Counter,
        );
        out.value(self.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9);
        out.push_raw(tail);
        let text = out.into_string();
        self.last_len.store(text.len(), Ordering::Relaxed);
        self.cpu_ns
            .fetch_add(thread_cpu_ns().saturating_sub(cpu_start), Ordering::Relaxed);
        text
    }

    /// Reads every collector into OTLP data points.
    pub fn otel(&self, batch: &mut OtelBatch) {
        let mut node = self.node.lock().unwrap_or_else(|p| p.into_inner());
        node.update();
        node.otel(batch);
    }
}
