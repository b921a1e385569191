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
    bpf::{BpfError, Capture, LoadOptions, select::KernelSelection},
    capture::ring::{DRAIN_BATCH, RingReader},
    config::{Config, ExportMode},
    export::{
        ExportError, SpanQueue,
        otlp::OtlpSink,
        queue::{Sink, run_exporter},
        stdout::StdoutSink,
    },
    kube::{self, KubeError, PodStore},
    pipeline::Pipeline,
    resource::{HostPaths, ResourceCache},
    selection::{Selection, Verdict, gate},
    telemetry::{Metrics, server::Health},
};

/// How long start-up waits for the first pod list when the selection
/// needs pod metadata (then processes in pods not yet known are decided at
/// their first connection).
const POD_SYNC_WAIT: Duration = Duration::from_secs(10);

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
    #[error("kubernetes: {0}")]
    Kubernetes(#[from] KubeError),
    #[error(transparent)]
    Node(#[from] crate::node::start::StartError),
}

pub async fn run(cfg: Config) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;

    let sched = Arc::new(crate::node::sched::SchedStats::default());
    let red = crate::red::RedShared::new();
    let mut node = crate::node::start::NodeRuntime::new(
        &cfg.node,
        cfg.connections.max_processes,
        vec![sched.clone()],
        Some(red.clone()),
    )?;
    let mut listening = None;
    if let Some(addr) = cfg.metrics_address {
        let (bound, serve) = crate::telemetry::server::bind_with_node(
            addr,
            metrics.clone(),
            health.clone(),
            node.scraper.clone(),
            vec![red.clone()],
        )
        .await
        .map_err(|source| RunError::MetricsBind { addr, source })?;
        tracing::info!("serving /metrics, /healthz and /readyz on http://{bound}");
        listening = Some(bound);
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!("metrics endpoint stopped: {e}");
            }
        });
    }

    let (sink, destination) = build_sink(&cfg)?;
    health.exporter_configured.store(true, Ordering::Relaxed);

    let paths = HostPaths::default();
    let pods = start_kubernetes(&cfg, &metrics)?;
    if let Some(store) = &pods
        && cfg.selection.needs_kubernetes()
    {
        let deadline = tokio::time::Instant::now() + POD_SYNC_WAIT;
        while !store.synced() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut selection = KernelSelection::from_config(&cfg.selection);
    let rules = Selection::new(&cfg.selection, cfg.connections.max_processes);
    let mut initial: Vec<(u32, Verdict)> = Vec::new();
    if let Some(rules) = &rules {
        let (rules_copy, paths_copy, store) = (
            Selection::new(&cfg.selection, 1).expect("process rules"),
            paths.clone(),
            pods.clone(),
        );
        let _ = rules;
        initial = tokio::task::spawn_blocking(move || {
            gate::initial(&rules_copy, &paths_copy, store.as_deref())
        })
        .await
        .map_err(|_| RunError::LoadTask)?;
        selection.excluded = initial
            .iter()
            .filter(|(_, v)| *v == Verdict::Excluded)
            .map(|(pid, _)| *pid)
            .collect();
        tracing::info!(
            "selection: {} running processes excluded, {} selected",
            selection.excluded.len(),
            initial.len() - selection.excluded.len()
        );
    }

    let load = LoadOptions {
        capture_bytes: cfg.capture.capture_bytes,
        ring_bytes: cfg.capture.ring_buffer_bytes,
        max_connections: cfg.capture.max_connections,
        wakeup_records: cfg.capture.wakeup_records,
        classify_attempts: cfg.capture.classify_attempts,
        selection,
        runqueue_latency: cfg.node.runqueue_latency,
    };
    let mut capture = tokio::task::spawn_blocking(move || Capture::load(&load))
        .await
        .map_err(|_| RunError::LoadTask)??;
    if let Some(bound) = listening {
        capture.add_own_listener(bound)?;
    }
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

    let mut resources = ResourceCache::new(paths, cfg.connections.max_processes);
    if let Some(store) = pods {
        resources = resources.with_pods(store);
    }
    let mut pipeline =
        Pipeline::new(&cfg, resources, Some(kernel_conns), queue, metrics.clone()).with_red(red);
    if let Some(rules) = rules {
        let mut gate = gate::Gate::new(rules, Some(capture.take_proc_filter()?), &metrics.registry);
        gate.preload(&initial);
        pipeline = pipeline.with_selection(gate);
    }
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
    let teardown = capture.detach();
    tracing::info!(
        "programs detached in {:.0?}; flushing spans",
        detaching.elapsed()
    );
    // What the kernel wrote before detaching is still worth exporting.
    while reader.drain(|bytes| pipeline.on_bytes(bytes)) == DRAIN_BATCH {}
    // Spans held for their parents go out as they are.
    pipeline.close_all();
    drop(pipeline);
    let _ = stop_tx.send(true);
    // The perf events' teardown (a grace period) overlaps the flush.
    let teardown = tokio::task::spawn_blocking(move || drop(teardown));
    let _ = tokio::time::timeout(FLUSH_AT_SHUTDOWN + Duration::from_secs(1), exporter).await;
    if let Some(task) = metrics_export {
        let _ = tokio::time::timeout(FLUSH_AT_SHUTDOWN, task).await;
    }
    let _ = teardown.await;
    tracing::info!("agent stopped");
    Ok(())
}

/// Starts the pod watch when Kubernetes metadata is on.
fn start_kubernetes(cfg: &Config, metrics: &Metrics) -> Result<Option<Arc<PodStore>>, RunError> {
    let k = &cfg.kubernetes;
    if !k.enabled {
        return Ok(None);
    }
    let api = kube::api::ApiConfig::resolve(k)?;
    // Fail now on a bad CA or certificate rather than in the background.
    api.client()?;
    let node = k.node_name.clone().or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
    });
    tracing::info!(
        "kubernetes metadata from {} for node {}",
        api.server,
        node.as_deref().unwrap_or("(any)")
    );
    let store = PodStore::new(k.max_pods);
    let kube_metrics = kube::KubeMetrics::register(&metrics.registry);
    tokio::spawn(kube::watch::run(api, node, store.clone(), kube_metrics));
    Ok(Some(store))
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
            let endpoint = cfg.export.otlp.traces_endpoint.clone();
            (
                Sink::Otlp(Box::new(sink)),
                format!("OTLP {protocol} {endpoint}"),
            )
        }
        ExportMode::Stdout | ExportMode::Auto => (Sink::Stdout(StdoutSink), "stdout".to_string()),
        ExportMode::None => (Sink::Discard, "nowhere (--export none)".to_string()),
    })
}
