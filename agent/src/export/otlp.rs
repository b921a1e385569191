//! OTLP export with opentelemetry-otlp (gRPC via tonic, or HTTP/protobuf).
//!
//! The SDK exporter carries one resource at a time, while the agent's spans
//! belong to many processes: a batch is grouped by process resource and
//! each group is sent with that resource. Failed batches are dropped and
//! counted (the queue in front bounds memory); warnings are rate-limited.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use opentelemetry::{
    InstrumentationScope,
    trace::{SpanContext, SpanId, SpanKind as OtelKind, Status, TraceFlags, TraceId, TraceState},
};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};

use super::ExportError;
use crate::{
    config::{OtlpConfig, OtlpProtocol},
    resource::ProcessResource,
    span::{SpanKind, SpanRecord, SpanStatus},
    telemetry::Metrics,
};

/// Instrumentation scope of every span the agent makes.
pub const SCOPE_NAME: &str = "agent";

pub struct OtlpSink {
    exporter: opentelemetry_otlp::SpanExporter,
    scope: InstrumentationScope,
    timeout: Duration,
    warn: RateLimitedWarning,
}

impl OtlpSink {
    /// Builds the exporter. Must run inside the tokio runtime (tonic).
    pub fn new(cfg: &OtlpConfig) -> Result<Self, ExportError> {
        let exporter = match cfg.protocol {
            OtlpProtocol::Grpc => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                    .with_timeout(cfg.timeout);
                if let Some(url) = &cfg.traces_endpoint {
                    b = b.with_endpoint(url.clone());
                }
                if !cfg.headers.is_empty() {
                    let mut md = tonic::metadata::MetadataMap::new();
                    for (k, v) in &cfg.headers {
                        let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
                            .map_err(|e| ExportError::Build(format!("header {k:?}: {e}")))?;
                        let val = v
                            .parse()
                            .map_err(|e| ExportError::Build(format!("header {k:?}: {e}")))?;
                        md.insert(key, val);
                    }
                    b = b.with_metadata(md);
                }
                b.build()
            }
            OtlpProtocol::HttpProtobuf => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_timeout(cfg.timeout);
                if let Some(url) = &cfg.traces_endpoint {
                    b = b.with_endpoint(url.clone());
                }
                if !cfg.headers.is_empty() {
                    b = b.with_headers(cfg.headers.clone().into_iter().collect());
                }
                b.build()
            }
        }
        .map_err(|e| ExportError::Build(e.to_string()))?;
        Ok(Self {
            exporter,
            scope: InstrumentationScope::builder(SCOPE_NAME)
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            timeout: cfg.timeout + Duration::from_secs(1),
            warn: RateLimitedWarning::new(Duration::from_secs(10)),
        })
    }

    /// Sends one batch, one request per process resource in it.
    pub async fn export(&mut self, batch: Vec<SpanRecord>, metrics: &Metrics) {
        let mut groups: HashMap<u64, (Arc<ProcessResource>, Vec<SpanData>)> = HashMap::new();
        for span in batch {
            let key = span.resource.key;
            let entry = groups
                .entry(key)
                .or_insert_with(|| (Arc::clone(&span.resource), Vec::new()));
            entry.1.push(to_span_data(span, &self.scope));
        }
        for (_, (resource, spans)) in groups {
            let n = spans.len() as u64;
            self.exporter.set_resource(&resource.resource);
            let result = tokio::time::timeout(self.timeout, self.exporter.export(spans)).await;
            match result {
                Ok(Ok(())) => {
                    metrics.spans_exported.inc_by(n);
                    metrics.export_requests.with_label_values(&["ok"]).inc();
                }
                Ok(Err(e)) => self.failed(n, &e.to_string(), metrics),
                Err(_) => self.failed(n, "timed out", metrics),
            }
        }
    }

    fn failed(&mut self, spans: u64, error: &str, metrics: &Metrics) {
        metrics
            .spans_dropped
            .with_label_values(&["export_failed"])
            .inc_by(spans);
        metrics.export_requests.with_label_values(&["error"]).inc();
        self.warn.warn(|suppressed| {
            tracing::warn!(
                "OTLP export failed ({error}); {spans} spans dropped \
                 ({suppressed} more failures since the last warning)"
            );
        });
    }
}

fn to_span_data(r: SpanRecord, scope: &InstrumentationScope) -> SpanData {
    let trace_state = r
        .trace_state
        .as_deref()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(r.trace_id),
            SpanId::from_bytes(r.span_id),
            TraceFlags::new(r.trace_flags),
            false,
            trace_state,
        ),
        parent_span_id: SpanId::from_bytes(r.parent_span_id),
        parent_span_is_remote: r.parent_is_remote,
        span_kind: match r.kind {
            SpanKind::Client => OtelKind::Client,
            SpanKind::Server => OtelKind::Server,
        },
        name: r.name,
        start_time: to_time(r.start_unix_ns),
        end_time: to_time(r.end_unix_ns),
        attributes: r.attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: match r.status {
            SpanStatus::Unset => Status::Unset,
            SpanStatus::Error { description } => Status::error(description),
        },
        instrumentation_scope: scope.clone(),
    }
}

fn to_time(unix_ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(unix_ns)
}

/// Logs at most once per period, saying how many were suppressed.
pub struct RateLimitedWarning {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedWarning {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            suppressed: 0,
        }
    }

    pub fn warn(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.period)
        {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.suppressed = 0;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit() {
        let mut w = RateLimitedWarning::new(Duration::from_secs(60));
        let mut logged = vec![];
        for _ in 0..5 {
            w.warn(|s| logged.push(s));
        }
        assert_eq!(logged, vec![0]);
        assert_eq!(w.suppressed, 4);
    }
}
