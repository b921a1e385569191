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
    /// Position of the request on its connection (0-based; HTTP/1 order,
    /// PostgreSQL statement order). HTTP/2: the stream id, the same at both
    /// ends.
    pub seq: u64,
    /// `seq` is an HTTP/2 stream id (the same at both ends whatever was
    /// lost), not a count of requests (which a lost record shifts at one
    /// end for the rest of the connection). Set by `Emit::span`.
    pub seq_is_stream_id: bool,
    /// Thread that read the request (server) or wrote it (client).
    pub tid: u32,
    /// Kernel monotonic start and end (the span's times before conversion
    /// to wall time: comparable with each other without clock steps).
    pub start_ns: u64,
    pub end_ns: u64,
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

/// A span's name: static, shared with other spans (`Arc`), or its own.
#[derive(Clone, Debug)]
pub enum SpanName {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
}

impl SpanName {
    pub fn as_str(&self) -> &str {
        match self {
            SpanName::Static(s) => s,
            SpanName::Shared(s) => s,
            SpanName::Owned(s) => s,
        }
    }
}

impl std::ops::Deref for SpanName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for SpanName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for SpanName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<str> for SpanName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SpanName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<&'static str> for SpanName {
    fn from(s: &'static str) -> Self {
        SpanName::Static(s)
    }
}

impl From<String> for SpanName {
    fn from(s: String) -> Self {
        SpanName::Owned(s)
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
    /// Static or shared for the names the agent makes (`GET`, `GET
    /// /users/{id}`, a gRPC method, a query summary): no allocation per
    /// span.
    pub name: SpanName,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<KeyValue>,
    pub status: SpanStatus,
    /// The process the span belongs to (its OTel resource).
    pub resource: Arc<ProcessResource>,
    pub correlation: Correlation,
    /// What RED metrics need, typed (no attribute lookups per span).
    pub facts: Facts,
}

/// The request as RED metrics see it: the semantic-convention attributes
/// of the `*.duration` histograms, typed, so that a metric series is found
/// without formatting or allocating per span.
#[derive(Clone, Debug, Default)]
pub enum Facts {
    /// Not measured (spans built by hand in tests).
    #[default]
    None,
    Http(HttpFacts),
    Rpc(RpcFacts),
    Db(DbFacts),
}

/// Why an exchange failed (`error.type`), without its text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    #[default]
    None,
    /// The status code (HTTP), gRPC status or SQLSTATE names it.
    Status,
    Timeout,
    ConnectionClosed,
    Reset,
}

impl ErrorKind {
    /// `error.type` for the transport failures (`None` for the others).
    pub const fn transport_name(self) -> Option<&'static str> {
        match self {
            ErrorKind::Timeout => Some("timeout"),
            ErrorKind::ConnectionClosed => Some("connection_closed"),
            ErrorKind::Reset => Some("reset"),
            ErrorKind::None | ErrorKind::Status => None,
        }
    }
}

/// HTTP methods the conventions know, in a fixed order (`_OTHER` last).
pub const HTTP_METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
];

#[derive(Clone, Debug)]
pub struct HttpFacts {
    /// Index into [`HTTP_METHODS`].
    pub method: u8,
    pub status: Option<u16>,
    /// `network.protocol.version`: `1.0`, `1.1`, `2`.
    pub version: &'static str,
    pub https: bool,
    /// SERVER spans: `url.path` (for `http.route`).
    pub path: Option<Arc<str>>,
    pub server_address: Arc<str>,
    pub server_port: u16,
    pub error: ErrorKind,
}

#[derive(Clone, Debug)]
pub struct RpcFacts {
    /// `rpc.method` (`None`: `_OTHER`).
    pub method: Option<Arc<str>>,
    /// gRPC status code.
    pub status: Option<u32>,
    pub server_address: Arc<str>,
    pub server_port: u16,
    pub error: ErrorKind,
}

#[derive(Clone, Debug)]
pub struct DbFacts {
    pub namespace: Option<Arc<str>>,
    pub operation: Option<Cow<'static, str>>,
    pub summary: Option<Arc<str>>,
    /// SQLSTATE of an error or warning.
    pub status_code: Option<Arc<str>>,
    pub server_address: Arc<str>,
    pub server_port: u16,
    pub error: ErrorKind,
}

impl Default for HttpFacts {
    fn default() -> Self {
        Self {
            method: 0,
            status: None,
            version: "1.1",
            https: false,
            path: None,
            server_address: Arc::from(""),
            server_port: 0,
            error: ErrorKind::None,
        }
    }
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

    pub fn is_error(&self) -> bool {
        matches!(self.status, SpanStatus::Error { .. })
    }
}
