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
///
/// The exporter gives the sent batches back ([`SpanReceiver::give_back`])
/// and they are dropped here, on the thread that allocated the spans'
/// attributes: freed on the exporter's thread, every allocation and free
/// missed glibc's per-thread cache and took the arena's lock. One of them
/// is kept as the next batch's vector.
pub struct SpanQueue {
    tx: mpsc::UnboundedSender<Vec<SpanRecord>>,
    spent: mpsc::UnboundedReceiver<Vec<SpanRecord>>,
    pending: Vec<SpanRecord>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

/// Consumer side, owned by the exporter task.
pub struct SpanReceiver {
    rx: mpsc::UnboundedReceiver<Vec<SpanRecord>>,
    spent: mpsc::UnboundedSender<Vec<SpanRecord>>,
    queued: Arc<AtomicUsize>,
}

/// The largest returned vector kept for the next batch (in spans): a
/// burst's vector is freed instead of held for ever.
const REUSE_MAX_SPANS: usize = 1024;

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

    /// Hands a sent batch back to the producer, which drops it (or drops
    /// it here once the producer is gone).
    pub fn give_back(&self, batch: Vec<SpanRecord>) {
        let _ = self.spent.send(batch);
    }
}

impl SpanQueue {
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Self, SpanReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (spent_tx, spent) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        (
            Self {
                tx,
                spent,
                pending: Vec::new(),
                queued: Arc::clone(&queued),
                capacity,
                metrics,
            },
            SpanReceiver {
                rx,
                spent: spent_tx,
                queued,
            },
        )
    }

    pub fn push(&mut self, span: SpanRecord) {
        match span.kind {
            SpanKind::Client => self.metrics.spans_client.inc(),
            SpanKind::Server => self.metrics.spans_server.inc(),
        }
        self.pending.push(span);
    }

    /// Hands the spans collected so far to the exporter, and drops the
    /// batches it gave back.
    pub fn flush(&mut self) {
        self.hand_over();
        while let Ok(mut spent) = self.spent.try_recv() {
            spent.clear();
            if self.pending.capacity() == 0 && spent.capacity() <= REUSE_MAX_SPANS {
                self.pending = spent;
            }
        }
    }

    fn hand_over(&mut self) {
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

    /// Sends everything, in requests of at most `batch_size` spans, then
    /// gives the batches back to the producer.
    async fn send_all(
        &mut self,
        sink: &mut Sink,
        batch_size: usize,
        metrics: &Metrics,
        rx: &SpanReceiver,
    ) {
        {
            let spans: Vec<&SpanRecord> = self.chunks.iter().flatten().collect();
            for request in spans.chunks(batch_size.max(1)) {
                sink.send(request, metrics).await;
            }
        }
        for chunk in self.chunks.drain(..) {
            rx.give_back(chunk);
        }
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
        pending.send_all(&mut sink, batch_size, &metrics, &rx).await;
    }
    // Flush what is queued, within the time budget.
    let flush = async {
        while let Some(spans) = rx.try_recv() {
            pending.push(spans);
        }
        pending.send_all(&mut sink, batch_size, &metrics, &rx).await;
    };
    if tokio::time::timeout(flush_timeout, flush).await.is_err() {
        tracing::warn!("export flush at shutdown timed out; remaining spans dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::red::red_tests::{http, resource, span};

    #[tokio::test]
    async fn sent_batches_come_back_and_one_is_reused() {
        let metrics = Metrics::new();
        let (mut queue, mut rx) = SpanQueue::new(100, Arc::clone(&metrics));
        let res = resource(1, "svc");
        for _ in 0..3 {
            queue.push(span(&res, SpanKind::Server, http("/", 200), 1));
        }
        queue.flush();
        let batch = rx.recv().await.expect("a batch");
        assert_eq!((batch.len(), rx.queued()), (3, 0));
        let capacity = batch.capacity();
        rx.give_back(batch);
        // The next flush drops the spans here and keeps the vector.
        queue.flush();
        assert!(queue.pending.is_empty());
        assert_eq!(queue.pending.capacity(), capacity);
        queue.push(span(&res, SpanKind::Client, http("/", 200), 1));
        queue.flush();
        assert_eq!(rx.recv().await.expect("a batch").len(), 1);
    }

    #[tokio::test]
    async fn a_burst_vector_is_not_kept() {
        let metrics = Metrics::new();
        let (mut queue, mut rx) = SpanQueue::new(1 << 16, Arc::clone(&metrics));
        let res = resource(1, "svc");
        for _ in 0..REUSE_MAX_SPANS + 1 {
            queue.push(span(&res, SpanKind::Server, http("/", 200), 1));
        }
        queue.flush();
        let batch = rx.recv().await.expect("a batch");
        rx.give_back(batch);
        queue.flush();
        assert_eq!(queue.pending.capacity(), 0);
    }

    #[tokio::test]
    async fn batches_given_back_after_the_producer_is_gone_are_dropped() {
        let metrics = Metrics::new();
        let (mut queue, mut rx) = SpanQueue::new(100, Arc::clone(&metrics));
        queue.push(span(
            &resource(1, "svc"),
            SpanKind::Server,
            http("/", 200),
            1,
        ));
        queue.flush();
        drop(queue);
        let batch = rx.recv().await.expect("a batch");
        rx.give_back(batch);
        assert!(rx.recv().await.is_none());
    }
}
