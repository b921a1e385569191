//! Protocol parsers (sans-IO, over bytes) and the per-connection sessions
//! that turn parsed messages into spans. Each protocol mirrors its
//! kernel-side classifier in `agent-common/src/classify.rs`.
//!
//! The pipeline knows protocols only through [`Session`]: it creates one per
//! connection with [`new_session`] once the kernel has classified the
//! connection's bytes and the span kind is known ([`infer_kind`] for
//! connections whose role the kernel did not see), feeds it every data
//! syscall, ticks it for timeouts and closes it. A session hands finished
//! spans to the [`Emit`] it is given.

pub mod http1;
pub mod http2;
pub mod postgres;

use std::{net::IpAddr, sync::Arc};

use agent_common::{Direction, Protocol};

use crate::{
    clock::Clock,
    config::Config,
    correlate::Correlator,
    resource::ProcessResource,
    span::{SpanKind, SpanRecord, redact::Redactor},
    telemetry::Metrics,
};

/// Times of the syscall being fed.
#[derive(Clone, Copy, Debug, Default)]
pub struct EventTimes {
    /// Kernel monotonic ns at syscall entry.
    pub enter_ns: u64,
    /// Kernel monotonic ns at syscall exit.
    pub exit_ns: u64,
    pub tid: u32,
}

/// One data syscall on a connection, as a session sees it.
#[derive(Clone, Copy, Debug)]
pub struct DataIn<'a> {
    pub direction: Direction,
    /// The captured prefix of what the syscall moved.
    pub payload: &'a [u8],
    /// Bytes the syscall moved beyond `payload` (a gap to skip).
    pub uncaptured: u64,
    /// The last `tail.len()` of the `uncaptured` bytes, when the kernel
    /// copied them (a truncated plain read/write): a session may skip
    /// `uncaptured - tail.len()` bytes and parse these.
    pub tail: &'a [u8],
    pub times: EventTimes,
}

/// An exchange in flight ([`Session::pending_requests`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    pub start_ns: u64,
    pub tid: u32,
}

/// How an exchange (request and response, a call, a statement) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Request and response both seen to their end.
    Complete,
    /// The response began but its end could not be framed (capture gap or
    /// garbage): the span ends at the last byte seen.
    Truncated,
    /// No response within the request timeout.
    Timeout,
    /// The connection ended before the response did.
    ConnectionClosed,
    /// The peer reset the exchange (HTTP/2 RST_STREAM, GOAWAY).
    Reset,
}

impl Outcome {
    pub const COUNT: usize = 5;
    pub const ALL: [Outcome; Self::COUNT] = [
        Outcome::Complete,
        Outcome::Truncated,
        Outcome::Timeout,
        Outcome::ConnectionClosed,
        Outcome::Reset,
    ];

    /// Label value in the agent's metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Truncated => "truncated",
            Outcome::Timeout => "timeout",
            Outcome::ConnectionClosed => "connection_closed",
            Outcome::Reset => "reset",
        }
    }
}

/// The connection a session belongs to, from the traced process's side.
pub struct ConnContext<'a> {
    pub kind: SpanKind,
    pub netns: u32,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    /// `local.0` / `remote.0` as text (formatted once per connection).
    pub local_ip: &'a Arc<str>,
    pub remote_ip: &'a Arc<str>,
    pub resource: &'a Arc<ProcessResource>,
}

/// Where a session sends what it finishes, with what it needs to build
/// spans.
pub struct Emit<'a> {
    /// The protocol of the session emitting (labels its metrics).
    pub protocol: Protocol,
    pub conn: ConnContext<'a>,
    pub redactor: &'a Redactor,
    pub clock: &'a Clock,
    pub metrics: &'a Metrics,
    sink: &'a mut Correlator,
    /// The thread of the write syscall being fed, if it is one (the thread
    /// that answered, for the spans it completes).
    pub write_tid: Option<u32>,
}

impl<'a> Emit<'a> {
    pub fn new(
        protocol: Protocol,
        conn: ConnContext<'a>,
        redactor: &'a Redactor,
        clock: &'a Clock,
        metrics: &'a Metrics,
        sink: &'a mut Correlator,
        write_tid: Option<u32>,
    ) -> Self {
        Self {
            protocol,
            conn,
            redactor,
            clock,
            metrics,
            sink,
            write_tid,
        }
    }

    /// Hands over the span of one exchange and counts how it ended.
    pub fn span(&mut self, mut span: SpanRecord, outcome: Outcome) {
        self.metrics.exchange(self.protocol, outcome);
        span.correlation.seq_is_stream_id = matches!(self.protocol, Protocol::Http2);
        self.sink.accept(span, self.write_tid);
    }

    /// Counts a parse failure (`agent_parse_errors_total`) of this
    /// session's protocol.
    pub fn parse_error(&self, stream: &str, reason: &str) {
        self.metrics
            .parse_errors
            .with_label_values(&[self.protocol.name(), stream, reason])
            .inc();
    }
}

/// What a session wants done with its connection after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep feeding it.
    Continue,
    /// The bytes are no longer this protocol and not worth sending (an
    /// upgrade to WebSocket, a tunnel, an encrypted session): stop the
    /// kernel sending them. The reason labels a metric.
    Ignore(&'static str),
    /// The connection switched to another protocol (`Upgrade: h2c`): start
    /// a session of that protocol, same span kind, and feed it from the
    /// next syscall on.
    Switch(Protocol),
}

/// What a session hands to the next one when its connection switches
/// protocol ([`Next::Switch`]).
#[derive(Debug, Default)]
pub struct Handover {
    /// `Upgrade: h2c`: the HTTP/1 request that asked for the upgrade,
    /// answered in HTTP/2 on stream 1.
    pub upgraded_request: Option<http1::session::UpgradedRequest>,
    /// Bytes the switching syscall moved after the switching message (the
    /// first bytes of the new protocol), to be fed to the new session with
    /// that syscall's direction, times and uncaptured count.
    pub rest: Vec<u8>,
}

/// One connection's protocol state: sans-IO, bounded, never panics on
/// bad input.
pub trait Session: Send {
    /// Feeds one data syscall.
    fn on_data(&mut self, data: &DataIn<'_>, emit: &mut Emit<'_>) -> Next;
    /// Ends exchanges waiting longer than `timeout_ns` at `now_ns`.
    fn expire(&mut self, now_ns: u64, timeout_ns: u64, emit: &mut Emit<'_>);
    /// The connection ended at `now_ns`: finish what can be finished.
    fn close(&mut self, now_ns: u64, emit: &mut Emit<'_>);
    /// No exchange in progress (the connection may be forgotten when idle).
    fn is_idle(&self) -> bool;
    /// The exchanges still awaiting their end (server requests not yet
    /// answered): kernel monotonic start and the thread that read them, for
    /// in-process nesting (a client call is given no parent while a server
    /// request that may enclose it is in flight). Every protocol implements
    /// it; the default reports nothing.
    fn pending_requests(&self, _out: &mut Vec<PendingRequest>) {}
    /// After [`Next::Switch`]: the state the next protocol's session needs.
    fn take_handover(&mut self) -> Option<Handover> {
        None
    }
}

/// Protocol settings, taken from the configuration once.
#[derive(Clone, Debug)]
pub struct ProtocolConfig {
    pub http1: http1::Http1Config,
    pub http2: http2::Http2Config,
    pub postgres: postgres::PgConfig,
}

impl ProtocolConfig {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            http1: http1::Http1Config::from_config(cfg),
            http2: http2::Http2Config::from_config(cfg),
            postgres: postgres::PgConfig::from_config(cfg),
        }
    }
}

/// A session for a connection the kernel classified as `protocol`.
/// `None` for protocols without a userspace parser (counted by the caller).
pub fn new_session(
    protocol: Protocol,
    kind: SpanKind,
    cfg: &ProtocolConfig,
) -> Option<Box<dyn Session>> {
    match protocol {
        Protocol::Http1 => Some(Box::new(http1::Http1Conn::new(kind, &cfg.http1))),
        Protocol::Http2 => Some(Box::new(http2::Http2Conn::new(kind, &cfg.http2))),
        Protocol::Postgres => Some(Box::new(postgres::PgConn::new(kind, &cfg.postgres))),
        _ => None,
    }
}

/// The session of a connection that switched to `protocol` ([`Next::Switch`]),
/// continuing from what the previous session handed over.
pub fn switch_session(
    protocol: Protocol,
    kind: SpanKind,
    cfg: &ProtocolConfig,
    handover: &Handover,
) -> Option<Box<dyn Session>> {
    match protocol {
        Protocol::Http2 => Some(Box::new(http2::Http2Conn::upgraded(
            kind, &cfg.http2, handover,
        ))),
        _ => new_session(protocol, kind, cfg),
    }
}

/// The span kind of a connection whose role the kernel did not see (it was
/// open before the agent started), from the first bytes that reached
/// userspace and their direction. `None`: not decidable from these bytes.
pub fn infer_kind(protocol: Protocol, direction: Direction, first: &[u8]) -> Option<SpanKind> {
    match protocol {
        Protocol::Http1 => http1::infer_kind(direction, first),
        Protocol::Http2 => http2::infer_kind(direction, first),
        Protocol::Postgres => postgres::infer_kind(direction, first),
        _ => None,
    }
}
