//! In-test OTLP receiver: OTLP/gRPC (trace, metrics, logs services) and
//! OTLP/HTTP protobuf (`POST /v1/traces`, `/v1/metrics`, `/v1/logs`, gzip
//! accepted) on two loopback ports, storing what arrives.
//!
//! The receiver runs its own tokio runtime, so every method is blocking and
//! can be called from a plain `#[test]`. Received spans are flattened into
//! [`ReceivedSpan`]s. It can be told to fail requests on purpose
//! ([`OtlpReceiver::set_failing`]: gRPC `UNAVAILABLE`, HTTP 503) and can be
//! stopped and restarted on the same ports ([`OtlpReceiver::stop`],
//! [`OtlpReceiver::restart`]) to test a backend that goes down and recovers.

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as HttpStatus};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as PbSpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as PbStatusCode;
use prost::Message as _;
use tokio::task::{JoinHandle, JoinSet};
use tonic::codec::CompressionEncoding;

// ---------------------------------------------------------------------------
// Flattened data
// ---------------------------------------------------------------------------

/// An attribute value, flattened from OTLP `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(String, Value)>),
    /// An `AnyValue` with no value set.
    Empty,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// Name of the variant, for error messages ("expected int, got str").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Double(_) => "double",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Map(_) => "kvlist",
            Value::Empty => "empty",
        }
    }
    fn from_any(v: Option<&AnyValue>) -> Value {
        let Some(v) = v.and_then(|v| v.value.as_ref()) else {
            return Value::Empty;
        };
        match v {
            any_value::Value::StringValue(s) => Value::Str(s.clone()),
            any_value::Value::BoolValue(b) => Value::Bool(*b),
            any_value::Value::IntValue(i) => Value::Int(*i),
            any_value::Value::DoubleValue(d) => Value::Double(*d),
            any_value::Value::BytesValue(b) => Value::Bytes(b.clone()),
            any_value::Value::ArrayValue(a) => {
                Value::Array(a.values.iter().map(|v| Value::from_any(Some(v))).collect())
            }
            any_value::Value::KvlistValue(kv) => Value::Map(
                kv.values
                    .iter()
                    .map(|kv| (kv.key.clone(), Value::from_any(kv.value.as_ref())))
                    .collect(),
            ),
            any_value::Value::StringValueStrindex(i) => Value::Str(format!("<strindex {i}>")),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Double(d) => write!(f, "{d}"),
            Value::Bytes(b) => write!(f, "{}", String::from_utf8_lossy(b)),
            Value::Array(a) => {
                write!(f, "[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, "]")
            }
            Value::Map(m) => {
                write!(f, "{{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                write!(f, "}}")
            }
            Value::Empty => write!(f, "<empty>"),
        }
    }
}

fn flatten_attrs(kvs: &[KeyValue]) -> HashMap<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), Value::from_any(kv.value.as_ref())))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl From<PbSpanKind> for SpanKind {
    fn from(k: PbSpanKind) -> Self {
        match k {
            PbSpanKind::Unspecified => SpanKind::Unspecified,
            PbSpanKind::Internal => SpanKind::Internal,
            PbSpanKind::Server => SpanKind::Server,
            PbSpanKind::Client => SpanKind::Client,
            PbSpanKind::Producer => SpanKind::Producer,
            PbSpanKind::Consumer => SpanKind::Consumer,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

impl From<PbStatusCode> for StatusCode {
    fn from(c: PbStatusCode) -> Self {
        match c {
            PbStatusCode::Unset => StatusCode::Unset,
            PbStatusCode::Ok => StatusCode::Ok,
            PbStatusCode::Error => StatusCode::Error,
        }
    }
}

/// Which receiver a span (or request) came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Grpc,
    HttpProtobuf,
}

/// One span as received, with its resource and scope copied in.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub transport: Transport,
    pub resource_attrs: HashMap<String, Value>,
    pub scope_name: String,
    pub scope_version: String,
    pub name: String,
    pub kind: SpanKind,
    /// Lower-case hex.
    pub trace_id: String,
    /// Lower-case hex.
    pub span_id: String,
    /// Lower-case hex, empty for a root span.
    pub parent_span_id: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: HashMap<String, Value>,
    pub status_code: StatusCode,
    pub status_message: String,
    pub event_names: Vec<String>,
    pub dropped_attributes_count: u32,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attrs.get(key)
    }
    /// A string attribute; `None` when missing or of another type.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(Value::as_str)
    }
    /// An int attribute; `None` when missing or of another type.
    pub fn attr_int(&self, key: &str) -> Option<i64> {
        self.attrs.get(key).and_then(Value::as_int)
    }
    pub fn attr_bool(&self, key: &str) -> Option<bool> {
        self.attr(key).and_then(Value::as_bool)
    }
    pub fn resource(&self, key: &str) -> Option<&Value> {
        self.resource_attrs.get(key)
    }
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource_attrs.get(key).and_then(Value::as_str)
    }
    pub fn resource_int(&self, key: &str) -> Option<i64> {
        self.resource_attrs.get(key).and_then(Value::as_int)
    }
    /// `process.pid` of the resource (int).
    pub fn pid(&self) -> Option<u32> {
        self.resource_int("process.pid")
            .and_then(|p| u32::try_from(p).ok())
    }
    /// `service.name` of the resource.
    pub fn service_name(&self) -> Option<&str> {
        self.resource_str("service.name")
    }
    pub fn duration_ns(&self) -> i128 {
        self.end_ns as i128 - self.start_ns as i128
    }
    /// Every attribute value (span and resource) rendered as text, with its key.
    pub fn all_values(&self) -> impl Iterator<Item = (&str, String)> {
        self.attrs
            .iter()
            .chain(self.resource_attrs.iter())
            .map(|(k, v)| (k.as_str(), v.to_string()))
    }
    /// One line for failure messages.
    pub fn summary(&self) -> String {
        let mut keys: Vec<&String> = self.attrs.keys().collect();
        keys.sort();
        let attrs: Vec<String> = keys
            .iter()
            .map(|k| format!("{k}={}", self.attrs[*k]))
            .collect();
        format!(
            "{:?} {:?} '{}' svc={:?} pid={:?} start={} dur={}ns status={:?}{} [{}]",
            self.transport,
            self.kind,
            self.name,
            self.service_name(),
            self.pid(),
            self.start_ns,
            self.duration_ns(),
            self.status_code,
            if self.status_message.is_empty() {
                String::new()
            } else {
                format!("({})", self.status_message)
            },
            attrs.join(", ")
        )
    }
}

/// All spans, one per line, for failure messages.
pub fn dump(spans: &[ReceivedSpan]) -> String {
    if spans.is_empty() {
        return "  <no spans>".to_string();
    }
    spans
        .iter()
        .map(|s| format!("  {}", s.summary()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn flatten_traces(req: &ExportTraceServiceRequest, transport: Transport) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let resource_attrs = rs
            .resource
            .as_ref()
            .map(|r| flatten_attrs(&r.attributes))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            let (scope_name, scope_version) = ss
                .scope
                .as_ref()
                .map(|s| (s.name.clone(), s.version.clone()))
                .unwrap_or_default();
            for s in &ss.spans {
                let (status_code, status_message) = match &s.status {
                    Some(st) => (
                        PbStatusCode::try_from(st.code)
                            .map(StatusCode::from)
                            .unwrap_or(StatusCode::Unset),
                        st.message.clone(),
                    ),
                    None => (StatusCode::Unset, String::new()),
                };
                out.push(ReceivedSpan {
                    transport,
                    resource_attrs: resource_attrs.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    name: s.name.clone(),
                    kind: PbSpanKind::try_from(s.kind)
                        .map(SpanKind::from)
                        .unwrap_or(SpanKind::Unspecified),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                    attrs: flatten_attrs(&s.attributes),
                    status_code,
                    status_message,
                    event_names: s.events.iter().map(|e| e.name.clone()).collect(),
                    dropped_attributes_count: s.dropped_attributes_count,
                });
            }
        }
    }
    out
}

/// One export request as seen by the receiver (accepted or refused).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub transport: Transport,
    /// gRPC method path or HTTP path.
    pub path: String,
    /// Request headers / gRPC metadata (ASCII values only), keys lower-case.
    pub headers: Vec<(String, String)>,
    /// False when the receiver was failing on purpose (or could not decode it).
    pub accepted: bool,
    /// Number of spans in the request (0 for metrics/logs or undecodable bodies).
    pub span_count: usize,
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Store {
    spans: Vec<ReceivedSpan>,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    requests: Vec<RequestInfo>,
}

#[derive(Default)]
struct Shared {
    store: Mutex<Store>,
    changed: Condvar,
    failing: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panicking test thread must not poison the receiver for Drop.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn record(&self, info: RequestInfo, f: impl FnOnce(&mut Store)) {
        let mut st = self.lock();
        st.requests.push(info);
        f(&mut st);
        drop(st);
        self.changed.notify_all();
    }
}

fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect()
}

fn metadata_pairs(md: &tonic::metadata::MetadataMap) -> Vec<(String, String)> {
    header_pairs(&md.clone().into_headers())
}

// ---------------------------------------------------------------------------
// gRPC services
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct GrpcSvc(Arc<Shared>);

const FAIL_MSG: &str = "agent-tests receiver is failing on purpose";

#[tonic::async_trait]
impl TraceService for GrpcSvc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = metadata_pairs(request.metadata());
        let req = request.into_inner();
        let spans = flatten_traces(&req, Transport::Grpc);
        let failing = self.0.failing.load(Ordering::SeqCst);
        let info = RequestInfo {
            transport: Transport::Grpc,
            path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export".into(),
            headers,
            accepted: !failing,
            span_count: spans.len(),
        };
        if failing {
            self.0.record(info, |_| {});
            return Err(tonic::Status::unavailable(FAIL_MSG));
        }
        self.0.record(info, |st| st.spans.extend(spans));
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcSvc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = metadata_pairs(request.metadata());
        let req = request.into_inner();
        let failing = self.0.failing.load(Ordering::SeqCst);
        let info = RequestInfo {
            transport: Transport::Grpc,
            path: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export".into(),
            headers,
            accepted: !failing,
            span_count: 0,
        };
        if failing {
            self.0.record(info, |_| {});
            return Err(tonic::Status::unavailable(FAIL_MSG));
        }
        self.0.record(info, |st| st.metrics.push(req));
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcSvc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let headers = metadata_pairs(request.metadata());
        let req = request.into_inner();
        let failing = self.0.failing.load(Ordering::SeqCst);
        let info = RequestInfo {
            transport: Transport::Grpc,
            path: "/opentelemetry.proto.collector.logs.v1.LogsService/Export".into(),
            headers,
            accepted: !failing,
            span_count: 0,
        };
        if failing {
            self.0.record(info, |_| {});
            return Err(tonic::Status::unavailable(FAIL_MSG));
        }
        self.0.record(info, |st| st.logs.push(req));
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

fn grpc_routes(shared: Arc<Shared>) -> tonic::service::Routes {
    let svc = GrpcSvc(shared);
    tonic::service::Routes::new(
        TraceServiceServer::new(svc.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(64 << 20),
    )
    .add_service(
        MetricsServiceServer::new(svc.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(64 << 20),
    )
    .add_service(
        LogsServiceServer::new(svc)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(64 << 20),
    )
    .prepare()
}

// ---------------------------------------------------------------------------
// OTLP/HTTP
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
    Logs,
}

fn decode_http_body(headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, (HttpStatus, String)> {
    let ctype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("application/x-protobuf") {
        return Err((
            HttpStatus::UNSUPPORTED_MEDIA_TYPE,
            format!("agent-tests receiver only takes application/x-protobuf, got {ctype:?}"),
        ));
    }
    let encoding = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "" | "identity" => Ok(body.to_vec()),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .map_err(|e| (HttpStatus::BAD_REQUEST, format!("bad gzip body: {e}")))?;
            Ok(out)
        }
        other => Err((
            HttpStatus::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}"),
        )),
    }
}

fn protobuf_response(msg: impl prost::Message) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/x-protobuf")],
        msg.encode_to_vec(),
    )
        .into_response()
}

fn http_export(
    shared: &Shared,
    signal: Signal,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let mut info = RequestInfo {
        transport: Transport::HttpProtobuf,
        path: path.to_string(),
        headers: header_pairs(headers),
        accepted: false,
        span_count: 0,
    };
    if shared.failing.load(Ordering::SeqCst) {
        shared.record(info, |_| {});
        return (HttpStatus::SERVICE_UNAVAILABLE, FAIL_MSG).into_response();
    }
    let raw = match decode_http_body(headers, body) {
        Ok(raw) => raw,
        Err((code, msg)) => {
            shared.record(info, |_| {});
            return (code, msg).into_response();
        }
    };
    let bad = |e: prost::DecodeError| {
        (HttpStatus::BAD_REQUEST, format!("bad protobuf: {e}")).into_response()
    };
    match signal {
        Signal::Traces => match ExportTraceServiceRequest::decode(&raw[..]) {
            Ok(req) => {
                let spans = flatten_traces(&req, Transport::HttpProtobuf);
                info.accepted = true;
                info.span_count = spans.len();
                shared.record(info, |st| st.spans.extend(spans));
                protobuf_response(ExportTraceServiceResponse {
                    partial_success: None,
                })
            }
            Err(e) => {
                shared.record(info, |_| {});
                bad(e)
            }
        },
        Signal::Metrics => match ExportMetricsServiceRequest::decode(&raw[..]) {
            Ok(req) => {
                info.accepted = true;
                shared.record(info, |st| st.metrics.push(req));
                protobuf_response(ExportMetricsServiceResponse {
                    partial_success: None,
                })
            }
            Err(e) => {
                shared.record(info, |_| {});
                bad(e)
            }
        },
        Signal::Logs => match ExportLogsServiceRequest::decode(&raw[..]) {
            Ok(req) => {
                info.accepted = true;
                shared.record(info, |st| st.logs.push(req));
                protobuf_response(ExportLogsServiceResponse {
                    partial_success: None,
                })
            }
            Err(e) => {
                shared.record(info, |_| {});
                bad(e)
            }
        },
    }
}

fn http_router(shared: Arc<Shared>) -> axum::Router {
    use axum::routing::post;
    axum::Router::new()
        .route(
            "/v1/traces",
            post(
                |State(s): State<Arc<Shared>>, h: HeaderMap, b: Bytes| async move {
                    http_export(&s, Signal::Traces, "/v1/traces", &h, &b)
                },
            ),
        )
        .route(
            "/v1/metrics",
            post(
                |State(s): State<Arc<Shared>>, h: HeaderMap, b: Bytes| async move {
                    http_export(&s, Signal::Metrics, "/v1/metrics", &h, &b)
                },
            ),
        )
        .route(
            "/v1/logs",
            post(
                |State(s): State<Arc<Shared>>, h: HeaderMap, b: Bytes| async move {
                    http_export(&s, Signal::Logs, "/v1/logs", &h, &b)
                },
            ),
        )
        // Large batches: the default body limit (2 MiB) is too small for a flood.
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(shared)
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Accepts connections until aborted; aborting drops (closes) every connection.
async fn accept_loop<S, B>(std_listener: std::net::TcpListener, svc: S)
where
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = match tokio::net::TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("agent-tests receiver: cannot register listener: {e}");
            return;
        }
    };
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let svc = TowerToHyperService::new(svc.clone());
                conns.spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

struct Endpoint {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    // std sets SO_REUSEADDR on Unix, so rebinding after stop() works despite TIME_WAIT.
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// OTLP protocol the agent should use to reach the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    /// Value for `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn env_value(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
    pub fn transport(self) -> Transport {
        match self {
            Protocol::Grpc => Transport::Grpc,
            Protocol::HttpProtobuf => Transport::HttpProtobuf,
        }
    }
}

/// The receiver. Dropping it shuts everything down.
pub struct OtlpReceiver {
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
    grpc: Endpoint,
    http: Endpoint,
}

impl OtlpReceiver {
    /// Starts both receivers on `127.0.0.1:0`.
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("otlp-receiver")
            .enable_all()
            .build()
            .expect("build receiver runtime");
        let grpc_l = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind gRPC receiver");
        let http_l = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind HTTP receiver");
        let mut rx = OtlpReceiver {
            shared: Arc::new(Shared::default()),
            grpc: Endpoint {
                addr: grpc_l.local_addr().expect("addr"),
                task: None,
            },
            http: Endpoint {
                addr: http_l.local_addr().expect("addr"),
                task: None,
            },
            rt: Some(rt),
        };
        rx.spawn(grpc_l, http_l);
        rx
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime present until drop")
    }

    fn spawn(&mut self, grpc_l: std::net::TcpListener, http_l: std::net::TcpListener) {
        let grpc = grpc_routes(self.shared.clone());
        let http = http_router(self.shared.clone());
        self.grpc.task = Some(self.rt().spawn(accept_loop(grpc_l, grpc)));
        self.http.task = Some(self.rt().spawn(accept_loop(http_l, http)));
    }

    /// `http://127.0.0.1:<port>` of the gRPC receiver.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc.addr)
    }
    /// `http://127.0.0.1:<port>` of the HTTP receiver (base: the exporter appends `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http.addr)
    }
    /// Full URL of the HTTP traces endpoint.
    pub fn http_traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.http.addr)
    }
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.addr
    }
    pub fn http_addr(&self) -> SocketAddr {
        self.http.addr
    }
    pub fn endpoint(&self, protocol: Protocol) -> String {
        match protocol {
            Protocol::Grpc => self.grpc_endpoint(),
            Protocol::HttpProtobuf => self.http_endpoint(),
        }
    }
    /// Environment for the agent: `OTEL_EXPORTER_OTLP_ENDPOINT` and `..._PROTOCOL`.
    pub fn agent_env(&self, protocol: Protocol) -> Vec<(String, String)> {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                self.endpoint(protocol),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL".into(),
                protocol.env_value().into(),
            ),
        ]
    }

    /// A copy of all spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.lock().spans.clone()
    }
    /// Spans matching `filter`.
    pub fn spans_where(&self, filter: impl Fn(&ReceivedSpan) -> bool) -> Vec<ReceivedSpan> {
        self.shared
            .lock()
            .spans
            .iter()
            .filter(|s| filter(s))
            .cloned()
            .collect()
    }
    /// Forgets everything received (spans, metrics, logs, request log).
    pub fn clear(&self) {
        *self.shared.lock() = Store::default();
    }
    /// Every export request seen, accepted or not.
    pub fn requests(&self) -> Vec<RequestInfo> {
        self.shared.lock().requests.clone()
    }
    pub fn metrics_requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.shared.lock().metrics.clone()
    }
    /// Names of all metrics received so far (deduplicated, sorted).
    pub fn metric_names(&self) -> Vec<String> {
        let st = self.shared.lock();
        let mut names: Vec<String> = st
            .metrics
            .iter()
            .flat_map(|r| r.resource_metrics.iter())
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter())
            .map(|m| m.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }
    pub fn logs_requests(&self) -> Vec<ExportLogsServiceRequest> {
        self.shared.lock().logs.clone()
    }

    /// Waits until `pred(all spans)` holds and returns all spans then; panics
    /// with a dump of what arrived if `timeout` passes first.
    pub fn wait_for(
        &self,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Vec<ReceivedSpan> {
        match self.try_wait_for(&pred, timeout) {
            Some(spans) => spans,
            None => {
                let spans = self.spans();
                panic!(
                    "OTLP receiver: condition not met within {timeout:?}; {} spans received, {} export requests ({} refused):\n{}",
                    spans.len(),
                    self.requests().len(),
                    self.requests().iter().filter(|r| !r.accepted).count(),
                    dump(&spans)
                )
            }
        }
    }

    /// Like [`wait_for`](Self::wait_for) but returns `None` on timeout.
    pub fn try_wait_for(
        &self,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Option<Vec<ReceivedSpan>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if pred(&st.spans) {
                return Some(st.spans.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let (g, _) = self
                .shared
                .changed
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(200)))
                .unwrap_or_else(|e| e.into_inner());
            st = g;
        }
    }

    /// Waits until at least `n` spans match `filter`, then keeps watching for
    /// `settle` more so that extra (duplicate) spans would be seen too; returns
    /// the matching spans sorted by start time. Panics on timeout.
    pub fn wait_for_count(
        &self,
        filter: impl Fn(&ReceivedSpan) -> bool,
        n: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<ReceivedSpan> {
        self.wait_for(
            |spans| spans.iter().filter(|s| filter(s)).count() >= n,
            timeout,
        );
        std::thread::sleep(settle);
        let mut got = self.spans_where(&filter);
        got.sort_by_key(|s| (s.start_ns, s.end_ns));
        got
    }

    /// Makes every export fail (gRPC `UNAVAILABLE`, HTTP 503) while `true`.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }
    pub fn is_failing(&self) -> bool {
        self.shared.failing.load(Ordering::SeqCst)
    }

    /// Closes both listeners and every open connection: the agent gets
    /// "connection refused" until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        for ep in [&mut self.grpc, &mut self.http] {
            if let Some(t) = ep.task.take() {
                t.abort();
            }
        }
        // Let the aborts run so the sockets are really closed before we return.
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(20));
            if std::net::TcpStream::connect_timeout(&self.grpc.addr, Duration::from_millis(100))
                .is_err()
                && std::net::TcpStream::connect_timeout(&self.http.addr, Duration::from_millis(100))
                    .is_err()
            {
                break;
            }
        }
    }

    /// Listens again on the same two ports (after [`stop`](Self::stop)).
    pub fn restart(&mut self) {
        assert!(
            self.grpc.task.is_none() && self.http.task.is_none(),
            "restart() without stop()"
        );
        let retry = |addr: SocketAddr| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match bind(addr) {
                    Ok(l) => return l,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("receiver rebind {addr}: {e}; retrying");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("cannot rebind receiver on {addr}: {e}"),
                }
            }
        };
        let g = retry(self.grpc.addr);
        let h = retry(self.http.addr);
        self.spawn(g, h);
    }

    pub fn is_running(&self) -> bool {
        self.grpc.task.is_some()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Never blocks, so dropping inside an async test is fine too.
            rt.shutdown_background();
        }
    }
}
