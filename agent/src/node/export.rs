//! OTLP export of node and process metrics, every `interval`: one
//! `ExportMetricsServiceRequest` holding the host's `system.*` metrics on
//! the host resource and each traced process's `process.*` metrics on its
//! own resource, over gRPC (tonic) or HTTP/protobuf (reqwest), optionally
//! gzip-compressed. Values are cumulative, so a failed export loses no
//! counts: it is counted (`agent_node_metrics_exports_total{result}`) and
//! the next one carries the totals.

use std::{
    io::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient,
    },
    common::v1::{InstrumentationScope, KeyValue},
    metrics::v1::{ResourceMetrics, ScopeMetrics},
    resource::v1::Resource,
};
use prost::Message as _;
use tokio::sync::watch;

use super::{
    config::MetricsExport,
    expo::{Exposition, Kind},
    otel::{OtelBatch, from_sdk},
    process::ProcessMetrics,
    scrape::{ExtraFamilies, NodeScraper},
};
use crate::{config::OtlpProtocol, export::otlp::RateLimitedWarning};

/// Errors building the exporter.
#[derive(Debug, thiserror::Error)]
pub enum MetricsExportError {
    #[error("OTLP metrics endpoint {url:?}: {reason}")]
    Endpoint { url: String, reason: String },
}

enum Transport {
    Grpc(MetricsServiceClient<tonic::transport::Channel>),
    Http {
        client: reqwest::Client,
        url: String,
    },
}

/// Counters of the export, on `/metrics`.
#[derive(Debug, Default)]
pub struct ExportStats {
    ok: AtomicU64,
    failed: AtomicU64,
    points: AtomicU64,
}

impl ExtraFamilies for ExportStats {
    fn prometheus(&self, out: &mut Exposition) {
        out.family(
            "agent_node_metrics_exports_total",
            "OTLP exports of node and process metrics, by result.",
            Kind::Counter,
        );
        out.sample(&[("result", "ok")], self.ok.load(Ordering::Relaxed) as f64);
        out.sample(
            &[("result", "error")],
            self.failed.load(Ordering::Relaxed) as f64,
        );
        out.family(
            "agent_node_metrics_points_exported_total",
            "Data points of node and process metrics accepted by the OTLP backend.",
            Kind::Counter,
        );
        out.value(self.points.load(Ordering::Relaxed) as f64);
    }
}

pub struct MetricsExporter {
    transport: Transport,
    cfg: MetricsExport,
    url: String,
    stats: Arc<ExportStats>,
    warn: RateLimitedWarning,
}

impl MetricsExporter {
    /// Builds the client (connections are made lazily). Must run inside the
    /// tokio runtime.
    pub fn new(cfg: &MetricsExport, stats: Arc<ExportStats>) -> Result<Self, MetricsExportError> {
        let url = cfg.endpoint.clone().unwrap_or_default();
        let bad = |reason: String| MetricsExportError::Endpoint {
            url: url.clone(),
            reason,
        };
        let transport = match cfg.protocol {
            OtlpProtocol::Grpc => {
                let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                    .map_err(|e| bad(e.to_string()))?
                    .timeout(cfg.timeout)
                    .connect_timeout(cfg.timeout);
                if url.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())
                        .map_err(|e| bad(e.to_string()))?;
                }
                let mut client = MetricsServiceClient::new(endpoint.connect_lazy());
                if cfg.gzip {
                    client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                Transport::Grpc(client)
            }
            OtlpProtocol::HttpProtobuf => Transport::Http {
                client: reqwest::Client::builder()
                    .timeout(cfg.timeout)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
                url: url.clone(),
            },
        };
        Ok(Self {
            transport,
            cfg: cfg.clone(),
            url,
            stats,
            warn: RateLimitedWarning::new(Duration::from_secs(60)),
        })
    }

    /// Sends one request; failures are counted and logged at a bounded rate.
    pub async fn export(&mut self, request: ExportMetricsServiceRequest, points: u64) {
        let result = tokio::time::timeout(
            self.cfg.timeout + Duration::from_secs(1),
            self.send(request),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".to_string()));
        match result {
            Ok(()) => {
                self.stats.ok.fetch_add(1, Ordering::Relaxed);
                self.stats.points.fetch_add(points, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let url = &self.url;
                self.warn.warn(|suppressed| {
                    tracing::warn!(
                        "OTLP metrics export to {url} failed: {e} ({suppressed} more failures since the last warning)"
                    );
                });
            }
        }
    }

    async fn send(&mut self, request: ExportMetricsServiceRequest) -> Result<(), String> {
        match &mut self.transport {
            Transport::Grpc(client) => {
                let mut req = tonic::Request::new(request);
                for (k, v) in &self.cfg.headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
                        .map_err(|e| format!("header {k:?}: {e}"))?;
                    let val = v.parse().map_err(|e| format!("header {k:?}: {e}"))?;
                    req.metadata_mut().insert(key, val);
                }
                client
                    .export(req)
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
            }
            Transport::Http { client, url } => {
                let mut body = request.encode_to_vec();
                let mut req = client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf");
                if self.cfg.gzip {
                    let mut gz =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    gz.write_all(&body).map_err(|e| e.to_string())?;
                    body = gz.finish().map_err(|e| e.to_string())?;
                    req = req.header("content-encoding", "gzip");
                }
                for (k, v) in &self.cfg.headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                let resp = req.body(body).send().await.map_err(|e| e.to_string())?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {}", resp.status()))
                }
            }
        }
    }
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The boot time from `/proc/stat`, in Unix nanoseconds.
fn boot_unix_ns(proc_root: &std::path::Path) -> u64 {
    std::fs::read_to_string(proc_root.join("stat"))
        .ok()
        .and_then(|t| super::stat::ProcStat::parse(&t).ok())
        .and_then(|s| s.btime)
        .map_or(0, |b| b * 1_000_000_000)
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "agent".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

/// Data points of a metric.
fn metric_points(m: &opentelemetry_proto::tonic::metrics::v1::Metric) -> u64 {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    match &m.data {
        Some(Data::Histogram(h)) => h.data_points.len() as u64,
        Some(Data::Sum(s)) => s.data_points.len() as u64,
        Some(Data::Gauge(g)) => g.data_points.len() as u64,
        _ => 0,
    }
}

fn resource_metrics(
    attributes: Vec<KeyValue>,
    metrics: Vec<opentelemetry_proto::tonic::metrics::v1::Metric>,
) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes,
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(scope()),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

/// What one export collects.
pub struct Sources {
    pub node: Option<Arc<NodeScraper>>,
    pub processes: Option<Mutex<ProcessMetrics>>,
    /// The host resource (`host.*`, `os.*`, the agent as distribution).
    pub host: Vec<opentelemetry::KeyValue>,
    pub proc_root: std::path::PathBuf,
    /// RED metrics (on each process's resource) and the service graph (on
    /// the host's).
    pub red: Option<Arc<crate::red::RedShared>>,
}

/// Collects everything into one request (blocking: reads files).
pub fn collect(sources: &Sources) -> (ExportMetricsServiceRequest, u64) {
    let now = unix_ns(SystemTime::now());
    let boot = boot_unix_ns(&sources.proc_root);
    let host: Vec<KeyValue> = sources
        .host
        .iter()
        .map(|kv| from_sdk(&kv.key, &kv.value))
        .collect();
    let mut resource_metrics_list = Vec::new();
    let mut points = 0;
    let mut host_metrics = Vec::new();
    if let Some(node) = &sources.node {
        let mut batch = OtelBatch::new(boot, now);
        node.otel(&mut batch);
        points += batch.points() as u64;
        host_metrics = batch.into_metrics();
    }
    if let Some(red) = &sources.red {
        let graph = red.graph_otlp(now);
        points += graph.iter().map(metric_points).sum::<u64>();
        host_metrics.extend(graph);
    }
    if !host_metrics.is_empty() {
        resource_metrics_list.push(resource_metrics(host, host_metrics));
    }
    // One ResourceMetrics per process: its process.* and RED metrics.
    let mut by_process: std::collections::HashMap<u64, usize> = Default::default();
    if let Some(p) = &sources.processes {
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        for (resource, batch) in p.collect(boot, now) {
            points += batch.points() as u64;
            let attrs = resource
                .resource
                .iter()
                .map(|(k, v)| from_sdk(k, v))
                .collect();
            by_process.insert(resource.key, resource_metrics_list.len());
            resource_metrics_list.push(resource_metrics(attrs, batch.into_metrics()));
        }
    }
    if let Some(red) = &sources.red {
        for (resource, metrics) in red.otlp(now) {
            points += metrics.iter().map(metric_points).sum::<u64>();
            match by_process.get(&resource.key) {
                Some(&i) => resource_metrics_list[i].scope_metrics[0]
                    .metrics
                    .extend(metrics),
                None => {
                    let attrs = resource
                        .resource
                        .iter()
                        .map(|(k, v)| from_sdk(k, v))
                        .collect();
                    resource_metrics_list.push(resource_metrics(attrs, metrics));
                }
            }
        }
    }
    (
        ExportMetricsServiceRequest {
            resource_metrics: resource_metrics_list,
        },
        points,
    )
}

/// Exports every `interval` until `stop`, then once more.
pub async fn run(
    mut exporter: MetricsExporter,
    sources: Arc<Sources>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(exporter.cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: wait one interval first.
    tick.tick().await;
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        let s = Arc::clone(&sources);
        let Ok((request, points)) = tokio::task::spawn_blocking(move || collect(&s)).await else {
            break;
        };
        if !request.resource_metrics.is_empty() {
            exporter.export(request, points).await;
        }
        if last {
            break;
        }
    }
}
