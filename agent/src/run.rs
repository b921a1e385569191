//! Wiring: metrics endpoint, exporter, eBPF capture and the pipeline loop,
//! and an orderly shutdown on SIGINT/SIGTERM (programs detached first).

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    bpf::{BpfError, Capture, LoadOptions},
    capture::ring::{DRAIN_BATCH, RingReader},
    config::{Config, ExportMode},
    export::{
        ExportError, SpanQueue,
        otlp::OtlpSink,
        queue::{Sink, run_exporter},
        stdout::StdoutSink,
    },
    pipeline::Pipeline,
    resource::{HostPaths, ResourceCache},
    telemetry::{Metrics, server::Health},
};

/// How often [`Pipeline::tick`] runs.
const TICK: Duration = Duration::from_millis(250);
/// Time allowed to export what is queued at shutdown.
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsBind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("ring buffer: {0}")]
    Ring(#[source] std::io::Error),
    #[error("loading the eBPF programs panicked or was cancelled")]
    LoadTask,
    #[error(transparent)]
    Node(#[from] crate::node::start::StartError),
}

pub async fn run(cfg: Config) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;

    let sched = Arc::new(crate::node::sched::SchedStats::default());
    let mut node = crate::node::start::NodeRuntime::new(
        &cfg.node,
        cfg.connections.max_processes,
        vec![sched.clone()],
    )?;
    if let Some(addr) = cfg.metrics_address {
        let (bound, serve) = crate::telemetry::server::bind_with_node(
            addr,
            metrics.clone(),
            health.clone(),
            node.scraper.clone(),
        )
        .await
        .map_err(|source| RunError::MetricsBind { addr, source })?;
        tracing::info!("serving /metrics, /healthz and /readyz on http://{bound}");
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!("metrics endpoint stopped: {e}");
            }
        });
    }

    let (sink, destination) = build_sink(&cfg)?;
    health.exporter_configured.store(true, Ordering::Relaxed);

    let load = LoadOptions {
        capture_bytes: cfg.capture.capture_bytes,
        ring_bytes: cfg.capture.ring_buffer_bytes,
        max_connections: cfg.capture.max_connections,
        wakeup_bytes: cfg.capture.wakeup_bytes,
        runqueue_latency: cfg.node.runqueue_latency,
    };
    let mut capture = tokio::task::spawn_blocking(move || Capture::load(&load))
        .await
        .map_err(|_| RunError::LoadTask)??;
    let ring = capture.take_ring()?;
    metrics.set_kernel_counters(capture.take_counters()?);
    let kernel_conns = capture.take_conns()?;
    match capture.take_sched_stats() {
        Ok(map) => sched.set(map),
        Err(e) => tracing::warn!("kernel process statistics unavailable: {e}"),
    }
    health.programs_attached.store(true, Ordering::Relaxed);
    tracing::info!(
        "agent ready: {} tracepoint programs attached, spans go to {destination}",
        capture.attached
    );

    let (queue, rx) = SpanQueue::new(cfg.export.queue_size, metrics.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics_export = node.spawn_export(stop_rx.clone());
    let exporter = tokio::spawn(run_exporter(
        rx,
        sink,
        cfg.export.batch_size,
        cfg.export.interval,
        FLUSH_AT_SHUTDOWN,
        metrics.clone(),
        stop_rx,
    ));

    let resources = ResourceCache::new(HostPaths::default(), cfg.connections.max_processes);
    let mut pipeline = Pipeline::new(&cfg, resources, Some(kernel_conns), queue, metrics.clone());
    if let Some(traced) = &node.traced {
        pipeline.set_traced(traced.clone());
    }
    let mut reader = RingReader::new(ring, cfg.capture.poll_interval).map_err(RunError::Ring)?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            biased;
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            ready = reader.ready() => {
                ready.map_err(RunError::Ring)?;
                while reader.drain(|bytes| pipeline.on_bytes(bytes)) == DRAIN_BATCH {
                    pipeline.flush();
                    tokio::task::yield_now().await;
                }
                pipeline.flush();
            }
            _ = tick.tick() => {
                pipeline.tick();
                pipeline.flush();
            }
        }
    }

    // Detach first: the host must stop paying for the probes at once.
    let detaching = std::time::Instant::now();
    tokio::task::block_in_place(|| capture.detach());
    tracing::info!(
        "programs detached in {:.0?}; flushing spans",
        detaching.elapsed()
    );
    // What the kernel wrote before detaching is still worth exporting.
    while reader.drain(|bytes| pipeline.on_bytes(bytes)) == DRAIN_BATCH {}
    pipeline.flush();
    drop(pipeline);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(FLUSH_AT_SHUTDOWN + Duration::from_secs(1), exporter).await;
    if let Some(task) = metrics_export {
        let _ = tokio::time::timeout(FLUSH_AT_SHUTDOWN, task).await;
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// The export sink and a description of where spans go.
fn build_sink(cfg: &Config) -> Result<(Sink, String), RunError> {
    Ok(match cfg.export.mode {
        ExportMode::Otlp => {
            let sink = OtlpSink::new(&cfg.export.otlp)?;
            let protocol = match cfg.export.otlp.protocol {
                crate::config::OtlpProtocol::Grpc => "grpc",
                crate::config::OtlpProtocol::HttpProtobuf => "http/protobuf",
            };
            let endpoint = cfg
                .export
                .otlp
                .traces_endpoint
                .clone()
                .unwrap_or_else(|| "the OTEL_EXPORTER_OTLP_* endpoint".to_string());
            (
                Sink::Otlp(Box::new(sink)),
                format!("OTLP {protocol} {endpoint}"),
            )
        }
        ExportMode::Stdout | ExportMode::Auto => (Sink::Stdout(StdoutSink), "stdout".to_string()),
        ExportMode::None => (Sink::Discard, "nowhere (--export none)".to_string()),
    })
}
