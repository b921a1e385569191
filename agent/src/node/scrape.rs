//! One `/metrics` page: the node collectors' exposition followed by the
//! agent's own metrics. Scrapes are serialised (collectors keep state) and
//! run on a blocking thread (file reads, `statfs`).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use super::{Node, expo::Exposition, otel::OtelBatch};

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
}

impl NodeScraper {
    pub fn new(node: Node) -> Self {
        Self {
            node: Mutex::new(node),
            extra: Vec::new(),
            last_len: AtomicUsize::new(64 * 1024),
        }
    }

    pub fn with_extra(mut self, extra: Arc<dyn ExtraFamilies>) -> Self {
        self.extra.push(extra);
        self
    }

    /// Reads every collector and writes the page; `tail` is appended
    /// (the agent's own metrics, already in the text format).
    pub fn render(&self, tail: &str) -> String {
        let mut out = Exposition::with_capacity(self.last_len.load(Ordering::Relaxed) + tail.len());
        {
            let mut node = self.node.lock().unwrap_or_else(|p| p.into_inner());
            node.update();
            node.prometheus(&mut out);
        }
        for e in &self.extra {
            e.prometheus(&mut out);
        }
        out.push_raw(tail);
        let text = out.into_string();
        self.last_len.store(text.len(), Ordering::Relaxed);
        text
    }

    /// Reads every collector into OTLP data points.
    pub fn otel(&self, batch: &mut OtelBatch) {
        let mut node = self.node.lock().unwrap_or_else(|p| p.into_inner());
        node.update();
        node.otel(batch);
    }
}
