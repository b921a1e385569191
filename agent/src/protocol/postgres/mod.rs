//! PostgreSQL frontend/backend protocol 3.0: `framing` cuts each direction
//! into messages (bounded, gap-tolerant, resynchronizing); `frontend` and
//! `backend` decode the message bodies the agent uses; `sql` splits,
//! sanitizes and summarizes statement texts; `session` pairs frontend
//! messages with their answers into executed statements; [`PgConn`] is the
//! pipeline's [`Session`](super::Session) over them, turning statements into
//! spans (`crate::span::db`).
//!
//! Why not the `postgres-protocol` crate: its backend parser
//! (`message::backend::Message::parse`) needs each whole message in one
//! buffer — a multi-megabyte DataRow or CopyData would be buffered — and has
//! no notion of uncaptured bytes; its frontend module only serializes. The
//! agent needs a streaming framer that keeps a bounded prefix of the few
//! messages it reads and skips the rest by length, so the framing is its
//! own; the message layouts follow the protocol documentation.

pub mod backend;
pub mod framing;
pub mod frontend;
pub mod session;
pub mod sql;
pub mod texts;
pub mod wire;

use std::time::Duration;

use agent_common::Direction;

use self::{
    session::{Limits, PgSession, PgStatement, Stop},
    wire::Stream,
};
use super::{DataIn, Emit, Next, Session};
use crate::{config::Config, span::SpanKind};

/// PostgreSQL settings.
#[derive(Clone, Copy, Debug)]
pub struct PgConfig {
    pub limits: Limits,
    /// A statement without an answer for this long ends as a timeout.
    pub query_timeout: Duration,
}

impl PgConfig {
    pub fn from_config(cfg: &Config) -> Self {
        let p = &cfg.postgres;
        Self {
            limits: Limits {
                max_query_bytes: p.max_query_bytes,
                max_prepared: p.max_prepared_statements,
                max_pending: p.max_pending,
                sanitize: p.sanitize_queries,
            },
            query_timeout: p.query_timeout,
        }
    }
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            query_timeout: Duration::from_secs(300),
        }
    }
}

/// A PostgreSQL connection: the session and the statements it finished
/// that are not spans yet (reused buffer).
pub struct PgConn {
    session: PgSession,
    cfg: PgConfig,
    done: Vec<PgStatement>,
}

impl PgConn {
    pub fn new(kind: SpanKind, cfg: &PgConfig) -> Self {
        Self {
            session: PgSession::new(kind == SpanKind::Server, cfg.limits),
            cfg: *cfg,
            done: Vec::new(),
        }
    }

    /// Moves counters to the metrics and finished statements to spans.
    fn emit(&mut self, emit: &mut Emit<'_>) {
        let counts = self.session.take_counts();
        for (event, n) in counts.labelled() {
            if n > 0 {
                emit.metrics
                    .postgres_events
                    .with_label_values(&[event])
                    .inc_by(n);
            }
        }
        for (stream, reason) in self.session.take_desyncs() {
            emit.parse_error(stream.name(), reason);
        }
        let info = self.session.info();
        for st in self.done.drain(..) {
            let span = crate::span::db::statement_span(
                &st,
                info,
                &emit.conn,
                emit.clock,
                self.cfg.limits.sanitize,
            );
            emit.span(span, st.outcome);
        }
    }
}

impl Session for PgConn {
    fn on_data(&mut self, data: &DataIn<'_>, emit: &mut Emit<'_>) -> Next {
        self.session.on_data(
            data.direction,
            data.payload,
            data.uncaptured,
            data.tail,
            data.times,
            &mut self.done,
        );
        self.emit(emit);
        match self.session.stopped() {
            None => Next::Continue,
            Some(Stop::Encrypted("tls")) => Next::Ignore("postgres_tls"),
            Some(Stop::Encrypted(_)) => Next::Ignore("postgres_gssapi"),
            Some(Stop::NotPostgres) => {
                emit.parse_error("connection", "not_postgres");
                Next::Ignore("not_postgres")
            }
            Some(Stop::Replication) => Next::Ignore("postgres_replication"),
        }
    }

    fn expire(&mut self, now_ns: u64, _timeout_ns: u64, emit: &mut Emit<'_>) {
        let timeout = self.cfg.query_timeout.as_nanos() as u64;
        self.session.expire(now_ns, timeout, &mut self.done);
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
}

/// Which stream the first bytes userspace sees of a connection belong to:
/// an untyped startup-phase message or a chain of plausible frontend
/// messages is the client speaking; backend messages the server.
pub fn first_stream(first: &[u8]) -> Option<Stream> {
    if frontend::starts_untyped(first) {
        return Some(Stream::Frontend);
    }
    let sync_at_start = |s| framing::find_sync(s, first, 0, None) == Some(0);
    if sync_at_start(Stream::Frontend) {
        Some(Stream::Frontend)
    } else if sync_at_start(Stream::Backend) {
        Some(Stream::Backend)
    } else {
        None
    }
}

/// Whoever reads frontend messages (StartupMessage, Query, ...) is the
/// server: a PostgreSQL backend process inherits its socket from the
/// postmaster, so the kernel sees its first data with role Unknown.
pub fn infer_kind(direction: Direction, first: &[u8]) -> Option<SpanKind> {
    Some(match (first_stream(first)?, direction) {
        (Stream::Frontend, Direction::Ingress) | (Stream::Backend, Direction::Egress) => {
            SpanKind::Server
        }
        (Stream::Frontend, Direction::Egress) | (Stream::Backend, Direction::Ingress) => {
            SpanKind::Client
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_inference() {
        let ssl = [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f];
        // The backend process reads the SSLRequest: it is the server.
        assert_eq!(infer_kind(Direction::Ingress, &ssl), Some(SpanKind::Server));
        assert_eq!(infer_kind(Direction::Egress, &ssl), Some(SpanKind::Client));
        let mut q = vec![b'Q', 0, 0, 0, 13];
        q.extend_from_slice(b"SELECT 1\0");
        assert_eq!(infer_kind(Direction::Ingress, &q), Some(SpanKind::Server));
        assert_eq!(infer_kind(Direction::Egress, &q), Some(SpanKind::Client));
        let mut done = vec![b'C', 0, 0, 0, 13];
        done.extend_from_slice(b"SELECT 1\0Z\0\0\0\x05I");
        // Whoever writes backend messages is the server.
        assert_eq!(infer_kind(Direction::Egress, &done), Some(SpanKind::Server));
        assert_eq!(
            infer_kind(Direction::Ingress, &done),
            Some(SpanKind::Client)
        );
        assert_eq!(infer_kind(Direction::Ingress, b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(infer_kind(Direction::Ingress, b""), None);
    }
}
