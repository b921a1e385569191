//! The bounded span queue and the exporter task draining it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, watch};

use super::{otlp::OtlpSink, stdout::StdoutSink};
use crate::{
    span::{SpanKind, SpanRecord},
    telemetry::Metrics,
};

/// Producer side, owned by the pipeline. Never blocks.
///
/// Spans are collected locally and handed over in batches
/// ([`SpanQueue::flush`], once per ring-buffer drain), so the exporter task
/// is woken once per batch, not once per span. The bound is on spans
/// queued (handed over but not yet taken by the exporter): a batch that
/// would exceed it is dropped and counted.
pub struct SpanQueue {
    tx: mpsc::UnboundedSender<Vec<SpanRecord>>,
    pending: Vec<SpanRecord>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

/// Consumer side, owned by the exporter task.
pub struct SpanReceiver {
    rx: mpsc::UnboundedReceiver<Vec<SpanRecord>>,
    queued: Arc<AtomicUsize>,
}

impl SpanReceiver {
    /// The next batch, or `None` once the producer is gone.
    pub async fn recv(&mut self) -> Option<Vec<SpanRecord>> {
        let batch = self.rx.recv().await?;
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }

    pub fn try_recv(&mut self) -> Option<Vec<SpanRecord>> {
        let batch = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }

    /// Spans handed over and not yet taken.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl SpanQueue {
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Self, SpanReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        (
            Self {
                tx,
                pending: Vec::new(),
                queued: Arc::clone(&queued),
                capacity,
                metrics,
            },
            SpanReceiver { rx, queued },
        )
    }

    pub fn push(&mut self, span: SpanRecord) {
        match span.kind {
            SpanKind::Client => self.metrics.spans_client.inc(),
            SpanKind::Server => self.metrics.spans_server.inc(),
        }
        self.pending.push(span);
    }

    /// Hands the spans collected so far to the exporter.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let n = self.pending.len();
        if self.queued.load(Ordering::Relaxed) + n > self.capacity {
            self.pending.clear();
            self.metrics
                .spans_dropped
                .with_label_values(&["queue_full"])
                .inc_by(n as u64);
            return;
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        let batch = std::mem::take(&mut self.pending);
        if self.tx.send(batch).is_err() {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            self.metrics
                .spans_dropped
                .with_label_values(&["shutdown"])
                .inc_by(n as u64);
        }
    }
}

/// Where a batch goes.
pub enum Sink {
    Otlp(Box<OtlpSink>),
    Stdout(StdoutSink),
    /// Spans are counted and discarded (`--export none`).
    Discard,
}

impl Sink {
    async fn send(&mut self, batch: &[&SpanRecord], metrics: &Metrics) {
        match self {
            Sink::Otlp(s) => s.export(batch, metrics).await,
            Sink::Stdout(s) => {
                s.print(batch);
                metrics.spans_exported.inc_by(batch.len() as u64);
            }
            Sink::Discard => {
                metrics
                    .spans_dropped
                    .with_label_values(&["export_disabled"])
                    .inc_by(batch.len() as u64);
            }
        }
    }
}

/// Batches as the pipeline handed them over, sent without copying the
/// spans into one vector (a span is ~340 bytes).
#[derive(Default)]
struct Pending {
    chunks: Vec<Vec<SpanRecord>>,
    spans: usize,
}

impl Pending {
    fn push(&mut self, chunk: Vec<SpanRecord>) {
        self.spans += chunk.len();
        self.chunks.push(chunk);
    }

    /// Sends everything, in requests of at most `batch_size` spans.
    async fn send_all(&mut self, sink: &mut Sink, batch_size: usize, metrics: &Metrics) {
        {
            let spans: Vec<&SpanRecord> = self.chunks.iter().flatten().collect();
            for request in spans.chunks(batch_size.max(1)) {
                sink.send(request, metrics).await;
            }
        }
        self.chunks.clear();
        self.spans = 0;
    }
}

/// Sends what the pipeline hands over, in batches of up to `batch_size`
/// spans and at least every `interval`, until the queue closes or
/// `shutdown` turns true; then sends what is left (bounded by
/// `flush_timeout`).
pub async fn run_exporter(
    mut rx: SpanReceiver,
    mut sink: Sink,
    batch_size: usize,
    interval: Duration,
    flush_timeout: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pending = Pending::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = rx.recv() => {
                let Some(spans) = received else { break };
                pending.push(spans);
                if pending.spans < batch_size {
                    continue;
                }
            }
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        metrics
            .export_queue_length
            .set((rx.queued() + pending.spans) as i64);
        pending.send_all(&mut sink, batch_size, &metrics).await;
    }
    // Flush what is queued, within the time budget.
    let flush = async {
        while let Some(spans) = rx.try_recv() {
            pending.push(spans);
        }
        pending.send_all(&mut sink, batch_size, &metrics).await;
    };
    if tokio::time::timeout(flush_timeout, flush).await.is_err() {
        tracing::warn!("export flush at shutdown timed out; remaining spans dropped");
    }
}
