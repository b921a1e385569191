//! The bounded span queue and the exporter task draining it.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, watch};

use super::{otlp::OtlpSink, stdout::StdoutSink};
use crate::{
    span::{SpanKind, SpanRecord},
    telemetry::Metrics,
};

/// Producer side, owned by the pipeline. Never blocks.
pub struct SpanQueue {
    tx: mpsc::Sender<SpanRecord>,
    metrics: Arc<Metrics>,
}

impl SpanQueue {
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<SpanRecord>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx, metrics }, rx)
    }

    pub fn push(&self, span: SpanRecord) {
        let kind = match span.kind {
            SpanKind::Client => "client",
            SpanKind::Server => "server",
        };
        self.metrics.spans_produced.with_label_values(&[kind]).inc();
        match self.tx.try_send(span) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics
                    .spans_dropped
                    .with_label_values(&["queue_full"])
                    .inc();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics
                    .spans_dropped
                    .with_label_values(&["shutdown"])
                    .inc();
            }
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
    async fn send(&mut self, batch: Vec<SpanRecord>, metrics: &Metrics) {
        match self {
            Sink::Otlp(s) => s.export(batch, metrics).await,
            Sink::Stdout(s) => {
                let n = batch.len() as u64;
                s.print(&batch);
                metrics.spans_exported.inc_by(n);
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

/// Drains the queue in batches of up to `batch_size`, at least every
/// `interval`, until the queue closes or `shutdown` turns true; then sends
/// what is left (bounded by `flush_timeout`).
pub async fn run_exporter(
    mut rx: mpsc::Receiver<SpanRecord>,
    mut sink: Sink,
    batch_size: usize,
    interval: Duration,
    flush_timeout: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch: Vec<SpanRecord> = Vec::with_capacity(batch_size);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let room = batch_size - batch.len();
        tokio::select! {
            n = rx.recv_many(&mut batch, room) => {
                if n == 0 {
                    break;
                }
                if batch.len() < batch_size {
                    continue;
                }
            }
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        metrics.export_queue_length.set(rx.len() as i64);
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            sink.send(full, &metrics).await;
        }
    }
    // Flush what is queued, within the time budget.
    let flush = async {
        while let Ok(span) = rx.try_recv() {
            batch.push(span);
            if batch.len() >= batch_size {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                sink.send(full, &metrics).await;
            }
        }
        if !batch.is_empty() {
            sink.send(std::mem::take(&mut batch), &metrics).await;
        }
    };
    if tokio::time::timeout(flush_timeout, flush).await.is_err() {
        tracing::warn!("export flush at shutdown timed out; remaining spans dropped");
    }
}
