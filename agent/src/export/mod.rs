//! Getting spans out: a bounded queue between the pipeline and one exporter
//! task, which batches and sends over OTLP (gRPC with tonic or
//! HTTP/protobuf with reqwest, encoded from the span records directly) or
//! prints them.
//!
//! - `queue`: the bounded hand-off; a full queue drops and counts;
//! - `otlp`: protobuf encoding (a `ResourceSpans` per process) and the two
//!   transports;
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
