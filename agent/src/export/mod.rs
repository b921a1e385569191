//! Getting spans out: a bounded queue between the pipeline and one exporter
//! task, which batches and sends over OTLP (gRPC or HTTP/protobuf, with
//! opentelemetry-otlp) or prints them.
//!
//! - `queue`: the bounded hand-off; a full queue drops and counts;
//! - `otlp`: grouping by process resource and exporting;
//! - `stdout`: readable one-line spans for a terminal.

pub mod otlp;
pub mod queue;
pub mod stdout;

pub use queue::{SpanQueue, SpanReceiver, run_exporter};

/// Errors building an exporter (bad endpoint, headers, ...).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot build the OTLP exporter: {0}")]
    Build(String),
}
