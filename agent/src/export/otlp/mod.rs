//! OTLP export: gRPC (tonic) or HTTP/protobuf (reqwest), one
//! `ExportTraceServiceRequest` per batch with a `ResourceSpans` per process.
//!
//! - `encode`: protobuf bytes straight from the agent's span records;
//! - `grpc`, `http`: the two transports, each answering [`Sent`].
//!
//! A batch that cannot be delivered is retried with backoff while the
//! error is retryable (per the OTLP specification: UNAVAILABLE, 429, 503,
//! ...) and the time budget lasts, then dropped and counted; the queue in
//! front bounds memory meanwhile. Warnings are rate-limited. The
//! connection is re-established by itself when the backend comes back.

pub mod encode;
mod grpc;
mod http;

use std::time::{Duration, Instant};

use bytes::Bytes;

use self::encode::{ResourceBytes, Scope};
use super::ExportError;
use crate::{
    config::{OtlpConfig, OtlpProtocol},
    span::SpanRecord,
    telemetry::Metrics,
};

/// Instrumentation scope of every span the agent makes.
pub const SCOPE_NAME: &str = "agent";

/// Processes whose encoded resource is kept.
const RESOURCE_CACHE: usize = 4096;

/// Backoff before the first retry, doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_ATTEMPTS: u32 = 4;

/// What the backend made of one request.
#[derive(Debug)]
pub enum Sent {
    /// Accepted; `rejected` spans were refused (partial success).
    Accepted { rejected: u64, message: String },
    /// Failed; worth retrying (backend busy or unreachable).
    Retryable(String),
    /// Failed for good (bad request, unauthenticated, ...).
    Permanent(String),
}

enum Transport {
    Grpc(Box<grpc::GrpcClient>),
    Http(http::HttpClient),
}

pub struct OtlpSink {
    transport: Transport,
    scope: Scope,
    resources: ResourceBytes,
    body: Vec<u8>,
    timeout: Duration,
    warn: RateLimitedWarning,
}

impl OtlpSink {
    /// Builds the exporter. Must run inside the tokio runtime (tonic).
    pub fn new(cfg: &OtlpConfig) -> Result<Self, ExportError> {
        let transport = match cfg.protocol {
            OtlpProtocol::Grpc => Transport::Grpc(Box::new(grpc::GrpcClient::new(cfg)?)),
            OtlpProtocol::HttpProtobuf => Transport::Http(http::HttpClient::new(cfg)?),
        };
        Ok(Self {
            transport,
            scope: Scope {
                name: SCOPE_NAME,
                version: env!("CARGO_PKG_VERSION"),
            },
            resources: ResourceBytes::new(RESOURCE_CACHE),
            body: Vec::new(),
            timeout: cfg.timeout,
            warn: RateLimitedWarning::new(Duration::from_secs(10)),
        })
    }

    /// Sends one batch as one request.
    pub async fn export(&mut self, batch: &[&SpanRecord], metrics: &Metrics) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        encode::encode_request(batch, &self.scope, &mut self.resources, &mut self.body);
        // Shared with the transport for every attempt, not copied; the
        // buffer comes back for the next batch once the request is sent.
        let body = Bytes::from(std::mem::take(&mut self.body));
        self.send_with_retries(&body, n, metrics).await;
        if let Ok(buf) = body.try_into_mut() {
            self.body = Vec::from(buf);
        }
    }

    async fn send_with_retries(&mut self, body: &Bytes, n: u64, metrics: &Metrics) {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let sent = match tokio::time::timeout(left, self.send(body)).await {
                Ok(sent) => sent,
                Err(_) => Sent::Retryable(format!("no answer within {:?}", self.timeout)),
            };
            match sent {
                Sent::Accepted { rejected, message } => {
                    metrics.spans_exported.inc_by(n - rejected.min(n));
                    metrics.export_requests.with_label_values(&["ok"]).inc();
                    if rejected > 0 {
                        metrics
                            .spans_dropped
                            .with_label_values(&["rejected"])
                            .inc_by(rejected.min(n));
                        self.warn.warn(|suppressed| {
                            tracing::warn!(
                                "the OTLP backend rejected {rejected} of {n} spans: {message} \
                                 ({suppressed} more problems since the last warning)"
                            );
                        });
                    }
                    return;
                }
                Sent::Retryable(error)
                    if attempt < MAX_ATTEMPTS && Instant::now() + backoff < deadline =>
                {
                    metrics.export_requests.with_label_values(&["retry"]).inc();
                    tracing::debug!("OTLP export failed ({error}); retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Sent::Retryable(error) | Sent::Permanent(error) => {
                    self.failed(n, &error, metrics);
                    return;
                }
            }
        }
    }

    async fn send(&mut self, body: &Bytes) -> Sent {
        match &mut self.transport {
            Transport::Grpc(c) => c.send(body).await,
            Transport::Http(c) => c.send(body).await,
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
