//! HTTP/2 (cleartext: prior knowledge, `Upgrade: h2c`, or joined
//! mid-stream) and gRPC over it: `frame` splits each direction into frames,
//! `hpack` decodes header blocks, `session` pairs streams into exchanges;
//! [`Http2Conn`] is the pipeline's [`Session`](super::Session) over them,
//! turning exchanges into gRPC spans (`crate::span::grpc`) or HTTP spans
//! (`crate::span::http`, shared with HTTP/1).

pub mod frame;
pub mod hpack;
pub mod session;

use agent_common::{Direction, classify::h2};
use opentelemetry::KeyValue;

use self::session::{H2Exchange, Headers, Http2Session, Limits};
use super::{DataIn, Emit, Handover, Next, Session};
use crate::{
    config::Config,
    intern::intern,
    span::{
        SpanKind,
        grpc::{UNRESOLVED_ATTR, grpc_span},
        http::{HttpCall, HttpRequest, http_span},
    },
};

/// HTTP/2 settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Http2Config {
    pub limits: Limits,
}

impl Http2Config {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            limits: Limits {
                max_streams: cfg.http2.max_streams,
                max_header_table_bytes: cfg.http2.max_header_table_bytes,
                max_header_block_bytes: cfg.http.max_head_bytes,
            },
        }
    }
}

/// An HTTP/2 connection: the session and the exchanges it finished that are
/// not spans yet (reused buffer).
pub struct Http2Conn {
    session: Http2Session,
    done: Vec<H2Exchange>,
}

impl Http2Conn {
    pub fn new(kind: SpanKind, cfg: &Http2Config) -> Self {
        Self {
            session: Http2Session::new(kind == SpanKind::Server, cfg.limits),
            done: Vec::new(),
        }
    }

    /// After `Upgrade: h2c`: the upgrading request is stream 1.
    pub fn upgraded(kind: SpanKind, cfg: &Http2Config, handover: &Handover) -> Self {
        let Some(up) = &handover.upgraded_request else {
            return Self::new(kind, cfg);
        };
        let head = &up.head;
        let request = Headers {
            method: head.method.clone(),
            scheme: Some(intern("http")),
            authority: head.host.clone(),
            path: head.target.as_deref().map(intern),
            user_agent: head.user_agent.clone(),
            traceparent: head.traceparent.clone(),
            tracestate: head.tracestate.clone(),
            content_type: head.content_type.clone(),
            complete: head.complete,
            ..Headers::default()
        };
        Self {
            session: Http2Session::upgraded(
                kind == SpanKind::Server,
                cfg.limits,
                request,
                up.start_ns,
                up.tid,
                up.seq,
                up.body_bytes,
            ),
            done: Vec::new(),
        }
    }

    /// Moves counters to the metrics and finished exchanges to spans.
    fn emit(&mut self, emit: &mut Emit<'_>) {
        let counts = self.session.take_counts();
        let m = emit.metrics;
        if counts.orphan_frames > 0 {
            m.http2_orphan_frames.inc_by(counts.orphan_frames);
        }
        if counts.stream_overflow > 0 {
            m.http2_stream_overflow.inc_by(counts.stream_overflow);
        }
        if counts.unresolved_fields > 0 {
            m.hpack_unresolved_fields.inc_by(counts.unresolved_fields);
        }
        for p in self.session.take_problems() {
            emit.parse_error(p.side.as_str(), p.reason);
        }
        for ex in self.done.drain(..) {
            let span = if ex.is_grpc() {
                grpc_span(&ex, &emit.conn, emit.clock)
            } else {
                http_span(
                    &http_call(&ex),
                    &emit.conn,
                    emit.redactor,
                    emit.clock,
                    extra_attrs(&ex),
                )
            };
            emit.span(span, ex.outcome);
        }
    }
}

/// A plain HTTP/2 exchange in the protocol-neutral form of `span::http`.
fn http_call(ex: &H2Exchange) -> HttpCall<'_> {
    let r = &ex.request;
    HttpCall {
        request: HttpRequest {
            method: r.method.as_ref(),
            scheme: r.scheme.as_deref(),
            target: r.path.as_deref(),
            authority: r.authority.as_deref(),
            user_agent: r.user_agent.as_ref(),
            traceparent: r.traceparent.as_deref(),
            tracestate: r.tracestate.as_deref(),
            version: "2",
        },
        status: ex.response.as_ref().and_then(|h| h.status),
        outcome: ex.outcome,
        start_ns: ex.start_ns,
        end_ns: ex.end_ns,
        // The stream id: the same at both ends of the connection.
        seq: u64::from(ex.stream_id),
        tid: ex.tid,
    }
}

fn extra_attrs(ex: &H2Exchange) -> Vec<KeyValue> {
    let mut v = vec![KeyValue::new(
        "http.request.body.size",
        ex.request_body_bytes as i64,
    )];
    if ex.response.is_some() {
        v.push(KeyValue::new(
            "http.response.body.size",
            ex.response_body_bytes as i64,
        ));
    }
    if ex.unresolved > 0 {
        v.push(KeyValue::new(UNRESOLVED_ATTR, i64::from(ex.unresolved)));
    }
    v
}

impl Session for Http2Conn {
    fn on_data(&mut self, data: &DataIn<'_>, emit: &mut Emit<'_>) -> Next {
        self.session.on_data(
            data.direction,
            data.payload,
            data.uncaptured,
            data.times,
            &mut self.done,
        );
        self.emit(emit);
        if self.session.is_not_http2() {
            Next::Ignore("not_http2")
        } else {
            Next::Continue
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
}

/// The side of a connection whose role the kernel did not see, from the
/// first bytes: the preface is the client's; otherwise the first HEADERS
/// frame with a request pseudo-header (`:method`, `:path`, `:scheme`,
/// `:authority`, static table indices 1..=7) is sent by the client, one
/// with `:status` (8..=14) by the server. Other frames do not tell.
pub fn infer_kind(direction: Direction, first: &[u8]) -> Option<SpanKind> {
    let sent_by_client = if first
        .starts_with(&frame::PREFACE[..first.len().min(frame::PREFACE.len())])
        && !first.is_empty()
    {
        true
    } else {
        headers_sender_is_client(first)?
    };
    Some(match (direction, sent_by_client) {
        (Direction::Egress, true) | (Direction::Ingress, false) => SpanKind::Client,
        (Direction::Ingress, true) | (Direction::Egress, false) => SpanKind::Server,
    })
}

/// Walks the frames in `b` (bounded) to the first HEADERS frame and looks
/// at the static-table names its block uses.
fn headers_sender_is_client(mut b: &[u8]) -> Option<bool> {
    for _ in 0..32 {
        if b.len() < h2::HEADER_LEN {
            return None;
        }
        let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
        let (kind, fl) = (b[3], b[4]);
        let payload = b.get(h2::HEADER_LEN..)?;
        if kind == h2::HEADERS {
            let mut p = &payload[..payload.len().min(len)];
            if fl & frame::flags::PADDED != 0 {
                p = p.get(1..)?;
            }
            if fl & frame::flags::PRIORITY != 0 {
                p = p.get(5..)?;
            }
            return block_sender_is_client(p);
        }
        b = payload.get(len..)?;
    }
    None
}

/// Reads representations of a header block up to the first one whose name
/// comes from the static table's pseudo-headers.
fn block_sender_is_client(mut p: &[u8]) -> Option<bool> {
    for _ in 0..16 {
        let &first = p.first()?;
        let (index, prefix_bits) = if first & 0x80 != 0 {
            (first & 0x7f, 7)
        } else if first & 0xc0 == 0x40 {
            (first & 0x3f, 6)
        } else if first & 0xe0 == 0x20 {
            // Size update: skip it (its integer may continue).
            p = skip_integer(p, 5)?;
            continue;
        } else {
            (first & 0x0f, 4)
        };
        match index {
            1..=7 => return Some(true),
            8..=14 => return Some(false),
            _ => {}
        }
        // A name the static pseudo-headers do not decide: skip the field.
        let indexed = first & 0x80 != 0;
        p = skip_integer(p, prefix_bits)?;
        if !indexed {
            if index == 0 {
                p = skip_string(p)?;
            }
            p = skip_string(p)?;
        }
    }
    None
}

fn skip_integer(p: &[u8], bits: u32) -> Option<&[u8]> {
    let max = (1u8 << bits) - 1;
    if p.first()? & max < max {
        return p.get(1..);
    }
    let end = p.iter().skip(1).position(|b| b & 0x80 == 0)? + 2;
    p.get(end..)
}

fn skip_string(p: &[u8]) -> Option<&[u8]> {
    let first = *p.first()?;
    let mut len = usize::from(first & 0x7f);
    let mut rest = p.get(1..)?;
    if len == 0x7f {
        let mut shift = 0;
        loop {
            let b = *rest.first()?;
            rest = &rest[1..];
            len += usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 || shift > 28 {
                break;
            }
        }
    }
    rest.get(len..)
}

/// The captured connections of `fixtures/` (see its README).
#[cfg(test)]
pub(crate) mod fixtures {
    /// One relayed chunk of `NAME.h2`: client → server?, bytes.
    pub(crate) fn chunks(name: &str) -> Vec<(bool, Vec<u8>)> {
        let path = format!(
            "{}/src/protocol/http2/fixtures/{name}.h2",
            env!("CARGO_MANIFEST_DIR")
        );
        let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut out = Vec::new();
        let mut i = 0;
        while i + 5 <= b.len() {
            let to_server = b[i] == b'>';
            let n = u32::from_be_bytes([b[i + 1], b[i + 2], b[i + 3], b[i + 4]]) as usize;
            out.push((to_server, b[i + 5..i + 5 + n].to_vec()));
            i += 5 + n;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_the_client_from_preface_and_pseudo_headers() {
        assert_eq!(
            infer_kind(Direction::Egress, frame::PREFACE),
            Some(SpanKind::Client)
        );
        assert_eq!(
            infer_kind(Direction::Ingress, b"PRI * HT"),
            Some(SpanKind::Server)
        );
        // SETTINGS then HEADERS (:method POST) on stream 1.
        let mut b = vec![0, 0, 0, 4, 0, 0, 0, 0, 0];
        b.extend([0, 0, 2, 1, 4, 0, 0, 0, 1, 0x83, 0x86]);
        assert_eq!(infer_kind(Direction::Ingress, &b), Some(SpanKind::Server));
        // HEADERS with a dynamic entry first, then :status 200.
        let b = [0, 0, 2, 1, 4, 0, 0, 0, 1, 0xbe, 0x88];
        assert_eq!(infer_kind(Direction::Ingress, &b), Some(SpanKind::Client));
        // Only DATA: undecided.
        let b = [0, 0, 1, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(infer_kind(Direction::Ingress, &b), None);
    }
}
