//! The agent's own telemetry: Prometheus metrics about itself (events,
//! losses, parse errors, spans) and the HTTP endpoint serving them with the
//! health checks.

pub mod metrics;
pub mod self_process;
pub mod server;

pub use metrics::Metrics;
