//! The span record the pipeline produces.
//!
//! It is exporter-neutral (converted to `SpanData` for OTLP, or printed) and
//! keeps the connection facts that correlation needs: joining an incoming
//! `traceparent` (done in `span::http`), stitching a client span on this host
//! to the server span it caused (same socket pair seen from both ends, same
//! request order: [`Correlation::socket_pair`] and [`Correlation::seq`]), and
//! nesting a server's outgoing calls under the request being handled (the
//! handling thread and time window: [`Correlation::tid`]).

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use opentelemetry::KeyValue;

use crate::resource::ProcessResource;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Client,
    Server,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanStatus {
    Unset,
    Error { description: String },
}

/// Connection facts of the request a span describes.
#[derive(Clone, Debug)]
pub struct Correlation {
    /// Network namespace inode of the socket.
    pub netns: u32,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    /// Position of the request on its connection (0-based).
    pub seq: u64,
    /// Thread that read the request (server) or wrote it (client).
    pub tid: u32,
}

impl Correlation {
    /// The connection as an unordered pair, equal from both ends.
    pub fn socket_pair(&self) -> ((IpAddr, u16), (IpAddr, u16)) {
        if self.local <= self.remote {
            (self.local, self.remote)
        } else {
            (self.remote, self.local)
        }
    }
}

#[derive(Clone, Debug)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero: no parent.
    pub parent_span_id: [u8; 8],
    pub parent_is_remote: bool,
    pub trace_flags: u8,
    pub trace_state: Option<String>,
    pub kind: SpanKind,
    /// Static for every name the agent makes (`GET`, `HTTP`, ...).
    pub name: Cow<'static, str>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<KeyValue>,
    pub status: SpanStatus,
    /// The process the span belongs to (its OTel resource).
    pub resource: Arc<ProcessResource>,
    pub correlation: Correlation,
}

impl SpanRecord {
    pub fn attr(&self, key: &str) -> Option<&opentelemetry::Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_unix_ns.saturating_sub(self.start_unix_ns)
    }
}
