//! HTTP/1.x: `parser` frames one direction of a connection into messages;
//! `session` pairs requests with responses into exchanges; [`Http1Conn`]
//! is the pipeline's [`Session`](super::Session) over them, turning
//! exchanges into spans (`crate::span::http`).

pub mod parser;
pub mod session;

use agent_common::{Direction, Protocol};

use self::{
    parser::{Limits, MessageKind},
    session::{Http1Session, HttpExchange},
};
use super::{DataIn, Emit, Handover, Next, Session};
use crate::{config::Config, span::SpanKind};

/// HTTP/1 settings.
#[derive(Clone, Copy, Debug)]
pub struct Http1Config {
    pub limits: Limits,
    pub max_pending: usize,
}

impl Http1Config {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            limits: Limits {
                max_head_bytes: cfg.http.max_head_bytes,
                ..Limits::default()
            },
            max_pending: cfg.http.max_pending_requests,
        }
    }
}

/// An HTTP/1 connection: the session and the exchanges it completed but
/// that are not spans yet (reused buffer).
pub struct Http1Conn {
    session: Http1Session,
    done: Vec<HttpExchange>,
}

impl Http1Conn {
    pub fn new(kind: SpanKind, cfg: &Http1Config) -> Self {
        Self {
            session: Http1Session::new(kind == SpanKind::Server, cfg.limits, cfg.max_pending),
            done: Vec::new(),
        }
    }

    /// Moves counters to the metrics and completed exchanges to spans.
    fn emit(&mut self, emit: &mut Emit<'_>) {
        let counts = self.session.take_counts();
        let m = emit.metrics;
        if counts.orphan_responses > 0 {
            m.http_orphan_responses.inc_by(counts.orphan_responses);
        }
        if counts.pending_overflow > 0 {
            m.http_pending_overflow.inc_by(counts.pending_overflow);
        }
        for d in self.session.take_desyncs() {
            let stream = match d.stream {
                MessageKind::Request => "request",
                MessageKind::Response => "response",
            };
            emit.parse_error(stream, d.reason);
        }
        for ex in self.done.drain(..) {
            let span = crate::span::http::exchange_span(&ex, &emit.conn, emit.redactor, emit.clock);
            emit.span(span, ex.outcome);
        }
    }
}

impl Session for Http1Conn {
    fn on_data(&mut self, data: &DataIn<'_>, emit: &mut Emit<'_>) -> Next {
        self.session.on_data(
            data.direction,
            data.payload,
            data.uncaptured,
            data.times,
            &mut self.done,
        );
        self.emit(emit);
        match self.session.upgrade() {
            None => Next::Continue,
            Some(session::Upgrade::H2c) => Next::Switch(Protocol::Http2),
            Some(session::Upgrade::Opaque) => Next::Ignore("upgraded"),
        }
    }

    fn expire(&mut self, now_ns: u64, timeout_ns: u64, emit: &mut Emit<'_>) {
        self.session.expire(now_ns, timeout_ns, &mut self.done);
        self.emit(emit);
    }

    fn close(&mut self, now_ns: u64, emit: &mut Emit<'_>) {
        self.session.close(now_ns, &mut self.done);
        self.emit(emit);
    }

    fn is_idle(&self) -> bool {
        self.session.is_idle()
    }

    fn pending_requests(&self, out: &mut Vec<crate::protocol::PendingRequest>) {
        self.session.pending_requests(out);
    }

    fn take_handover(&mut self) -> Option<Handover> {
        let (upgraded_request, rest) = self.session.take_h2c();
        Some(Handover {
            upgraded_request,
            rest,
        })
    }
}

/// Whoever sends a request (or receives a response) is the client.
pub fn infer_kind(direction: Direction, first: &[u8]) -> Option<SpanKind> {
    if first.is_empty() {
        return None;
    }
    let is_response = first.starts_with(b"HTTP/");
    Some(match (direction, is_response) {
        (Direction::Ingress, false) | (Direction::Egress, true) => SpanKind::Server,
        (Direction::Egress, false) | (Direction::Ingress, true) => SpanKind::Client,
    })
}
