//! `/metrics` (Prometheus text), `/healthz` (the process answers) and
//! `/readyz` (programs attached and exporter configured).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

use super::Metrics;
use crate::node::{
    expo::Exposition,
    scrape::{ExtraFamilies, NodeScraper},
};

/// Readiness facts, set by the parts that establish them.
#[derive(Debug, Default)]
pub struct Health {
    pub programs_attached: AtomicBool,
    pub exporter_configured: AtomicBool,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.programs_attached.load(Ordering::Relaxed)
            && self.exporter_configured.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    node: Option<Arc<NodeScraper>>,
    /// Families written after the agent's own (RED metrics, service graph).
    extra: Vec<Arc<dyn ExtraFamilies>>,
}

/// Binds `addr` now (so a busy port is a startup error) and returns the
/// bound address and the serving future.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    bind_with_node(addr, metrics, health, None, Vec::new()).await
}

/// [`bind`], with the node collectors' metrics and `extra` families (RED
/// metrics) on the same page.
pub async fn bind_with_node(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    node: Option<Arc<NodeScraper>>,
    extra: Vec<Arc<dyn ExtraFamilies>>,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState {
            metrics,
            health,
            node,
            extra,
        });
    Ok((local, async move { axum::serve(listener, app).await }))
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    let mut own = s.metrics.render();
    if !s.extra.is_empty() {
        let mut out = Exposition::with_capacity(16 * 1024);
        for e in &s.extra {
            e.prometheus(&mut out);
        }
        own.push_str(out.as_str());
    }
    let body = match s.node {
        // procfs reads take microseconds and statfs of network mounts has
        // its own worker and timeout: the page is written on this worker
        // (a hand-off to the blocking pool costs more than the page on a
        // busy machine), telling the runtime to move its other tasks away.
        Some(node) => tokio::task::block_in_place(|| node.render(&own)),
        None => own,
    };
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_programs_and_exporter() {
        let h = Health::default();
        assert!(!h.is_ready());
        h.exporter_configured.store(true, Ordering::Relaxed);
        assert!(!h.is_ready(), "exporter alone");
        h.programs_attached.store(true, Ordering::Relaxed);
        assert!(h.is_ready());
    }
}
