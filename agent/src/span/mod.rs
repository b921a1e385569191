//! Spans: the agent's own span record, how HTTP exchanges and database
//! statements become spans with
//! the OpenTelemetry semantic conventions, trace context, and redaction.
//!
//! - `model`: [`SpanRecord`], what the pipeline hands to exporters, with the
//!   connection facts later correlation needs (socket pair, order, thread);
//! - `context`: ids and W3C `traceparent` parsing;
//! - `http`: HTTP exchange → span (names, attributes, status);
//! - `db`: database statement → span (PostgreSQL);
//! - `redact`: query strings and secrets.

pub mod context;
pub mod db;
pub mod grpc;
pub mod http;
pub mod model;
pub mod redact;
pub mod route;

pub use model::{SpanKind, SpanName, SpanRecord, SpanStatus};
