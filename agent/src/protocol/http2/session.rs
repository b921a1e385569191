//! One HTTP/2 connection seen from one process: a [`FrameParser`] and an
//! HPACK [`Decoder`] per direction, and the streams in flight, producing an
//! [`H2Exchange`] per stream.
//!
//! * Requests and responses pair by stream id; streams interleave freely.
//!   A stream ends when the response side sends END_STREAM (on DATA, on
//!   trailers, or on a Trailers-Only HEADERS), when either side resets it
//!   (RST_STREAM → [`Outcome::Reset`]), when the server's GOAWAY excludes
//!   it, when it is idle longer than the request timeout ([`Outcome::Timeout`])
//!   or when the connection ends ([`Outcome::ConnectionClosed`]).
//! * Responses on streams the agent did not see begin (it joined late) are
//!   counted as orphans.
//! * Open streams are bounded (`max_streams`): streams beyond are counted
//!   and not traced.
//! * SETTINGS_HEADER_TABLE_SIZE sent by one side bounds the other side's
//!   HPACK table; a desync or a cut header block forgets that direction's
//!   table, which fills again from the next insertion.
//!
//! Timestamps follow the HTTP/1 session: a stream starts at the *entry* of
//! the write carrying its request HEADERS (client side) or the *exit* of
//! the read (server side), and ends at the exit of the syscall carrying the
//! frame that ended it.

use std::{collections::HashMap, sync::Arc};

use agent_common::{Direction, classify::h2};

use super::{
    frame::{DesyncReason, Frame, FrameParser, FrameSink, flags},
    hpack::{Decoder, Field},
};
use crate::{
    intern::intern,
    protocol::{EventTimes, Outcome, http1::parser::Method},
};

/// HTTP/2 settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open streams tracked per connection.
    pub max_streams: usize,
    /// HPACK dynamic table bytes kept per direction.
    pub max_header_table_bytes: usize,
    /// Header block bytes buffered (HEADERS + CONTINUATION).
    pub max_header_block_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_streams: 256,
            max_header_table_bytes: 64 * 1024,
            max_header_block_bytes: 16 * 1024,
        }
    }
}

/// Longest header value kept (bytes).
const MAX_VALUE: usize = 2048;

/// The header fields the agent uses, from one header block.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Headers {
    pub method: Option<Method>,
    pub scheme: Option<Arc<str>>,
    pub authority: Option<Arc<str>>,
    pub path: Option<Arc<str>>,
    pub status: Option<u16>,
    pub content_type: Option<Arc<str>>,
    pub user_agent: Option<Arc<str>>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub grpc_status: Option<u32>,
    /// Fields whose name or value could not be resolved.
    pub unresolved: u32,
    /// The block was decoded to its end.
    pub complete: bool,
}

fn text(v: &[u8]) -> String {
    let v = &v[..v.len().min(MAX_VALUE)];
    String::from_utf8_lossy(v).into_owned()
}

/// A value that repeats from request to request (`:path` of a gRPC method,
/// `:authority`, `content-type`...): one shared copy.
fn shared(v: &[u8]) -> Arc<str> {
    let v = &v[..v.len().min(MAX_VALUE)];
    match std::str::from_utf8(v) {
        Ok(s) => intern(s),
        Err(_) => intern(&String::from_utf8_lossy(v)),
    }
}

impl Headers {
    fn field(&mut self, f: Field<'_>) {
        let (Some(name), Some(value)) = (f.name, f.value) else {
            return;
        };
        match name {
            b":method" => {
                self.method = std::str::from_utf8(value).ok().map(Method::from_token);
            }
            b":scheme" => self.scheme = Some(shared(value)),
            b":authority" => self.authority = Some(shared(value)),
            // HTTP/1 upgrade requests carry Host instead.
            b"host" if self.authority.is_none() => self.authority = Some(shared(value)),
            b":path" => self.path = Some(shared(value)),
            b":status" => {
                self.status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok())
            }
            b"content-type" => self.content_type = Some(shared(value)),
            b"user-agent" => self.user_agent = Some(shared(value)),
            b"traceparent" => self.traceparent = Some(text(value)),
            b"tracestate" => match &mut self.tracestate {
                Some(s) if s.len() < MAX_VALUE => {
                    s.push(',');
                    s.push_str(&text(value));
                }
                Some(_) => {}
                None => self.tracestate = Some(text(value)),
            },
            b"grpc-status" => {
                self.grpc_status = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            }
            _ => {}
        }
    }

    /// Content type says gRPC (`application/grpc`, `application/grpc+proto`, ...).
    pub fn is_grpc(&self) -> bool {
        self.content_type.as_deref().is_some_and(|c| {
            c.get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
        })
    }
}

/// One stream's request and response.
#[derive(Debug)]
pub struct H2Exchange {
    pub stream_id: u32,
    pub request: Headers,
    /// The final response's headers (1xx skipped).
    pub response: Option<Headers>,
    /// `grpc-status` from the trailers (or a Trailers-Only response).
    pub grpc_status: Option<u32>,
    /// The response ended with a trailers block.
    pub trailers: bool,
    /// The first request DATA frame looked like gRPC message framing.
    pub grpc_framed: bool,
    /// Unresolved fields over all blocks of the stream.
    pub unresolved: u32,
    /// Kernel monotonic nanoseconds.
    pub start_ns: u64,
    pub end_ns: u64,
    pub outcome: Outcome,
    /// RST_STREAM or GOAWAY error code, for [`Outcome::Reset`].
    pub reset_code: Option<u32>,
    /// DATA payload bytes (padding excluded).
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    /// Thread that read (server) or wrote (client) the request.
    pub tid: u32,
    /// Order of the stream on the connection, from 0.
    pub seq: u64,
}

impl H2Exchange {
    /// Whether this is a gRPC call: by content type, else (headers that
    /// could not be resolved) by a grpc-status, gRPC message framing or
    /// response trailers.
    pub fn is_grpc(&self) -> bool {
        if self.request.is_grpc() || self.response.as_ref().is_some_and(Headers::is_grpc) {
            return true;
        }
        let content_type_known = self.request.content_type.is_some()
            || self
                .response
                .as_ref()
                .is_some_and(|r| r.content_type.is_some());
        !content_type_known && (self.grpc_status.is_some() || self.grpc_framed || self.trailers)
    }
}

/// Things worth counting that are not exchanges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Frames for streams the agent did not see begin.
    pub orphan_frames: u64,
    /// Streams not traced because `max_streams` were open.
    pub stream_overflow: u64,
    /// Header fields that could not be resolved.
    pub unresolved_fields: u64,
}

/// Which half of the exchange a direction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request = 0,
    Response = 1,
}

impl Side {
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
    const fn other(self) -> Side {
        match self {
            Side::Request => Side::Response,
            Side::Response => Side::Request,
        }
    }
}

/// A parse problem, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    pub side: Side,
    pub reason: &'static str,
}

#[derive(Debug)]
struct Stream {
    seq: u64,
    request: Headers,
    response: Option<Headers>,
    grpc_status: Option<u32>,
    trailers: bool,
    grpc_framed: bool,
    request_data_seen: bool,
    unresolved: u32,
    start_ns: u64,
    /// Last frame of this stream (for the idle timeout).
    last_ns: u64,
    request_bytes: u64,
    response_bytes: u64,
    tid: u32,
}

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    push: bool,
    buf: Vec<u8>,
    complete: bool,
}

struct State {
    hpack: [Decoder; 2],
    /// SETTINGS_MAX_FRAME_SIZE bounding each side's frames (set by the
    /// other side's SETTINGS).
    max_frame: [u32; 2],
    pending: [Option<PendingBlock>; 2],
    streams: HashMap<u32, Stream>,
    limits: Limits,
    next_seq: u64,
    now: EventTimes,
    start_at_enter: bool,
    last_ns: u64,
    /// Frames parsed in sync (the connection is HTTP/2 for sure once > 0).
    frames_ok: u64,
    /// Framing failed before any frame parsed: not HTTP/2 after all.
    not_http2: bool,
    counts: Counts,
    problems: Vec<Problem>,
}

pub struct Http2Session {
    parsers: [FrameParser; 2],
    is_server: bool,
    st: State,
}

impl Http2Session {
    pub fn new(is_server: bool, limits: Limits) -> Self {
        let block = limits.max_header_block_bytes.max(256);
        Self {
            parsers: [
                FrameParser::new(true, block),
                FrameParser::new(false, block),
            ],
            is_server,
            st: State {
                hpack: [
                    Decoder::new(limits.max_header_table_bytes),
                    Decoder::new(limits.max_header_table_bytes),
                ],
                max_frame: [h2::DEFAULT_MAX_FRAME; 2],
                pending: [None, None],
                streams: HashMap::new(),
                limits,
                next_seq: 0,
                now: EventTimes::default(),
                start_at_enter: false,
                last_ns: 0,
                frames_ok: 0,
                not_http2: false,
                counts: Counts::default(),
                problems: Vec::new(),
            },
        }
    }

    /// An `Upgrade: h2c` connection: the HTTP/1 request becomes stream 1,
    /// fully sent, its response to come in HTTP/2.
    pub fn upgraded(
        is_server: bool,
        limits: Limits,
        request: Headers,
        start_ns: u64,
        tid: u32,
        seq: u64,
        request_bytes: u64,
    ) -> Self {
        let mut s = Self::new(is_server, limits);
        s.st.next_seq = seq + 1;
        s.st.last_ns = start_ns;
        s.st.streams.insert(
            1,
            Stream {
                seq,
                request,
                response: None,
                grpc_status: None,
                trailers: false,
                grpc_framed: false,
                request_data_seen: true,
                unresolved: 0,
                start_ns,
                last_ns: start_ns,
                request_bytes,
                response_bytes: 0,
                tid,
            },
        );
        s
    }

    /// Feeds the bytes of one syscall. Finished streams go to `out`.
    pub fn on_data(
        &mut self,
        direction: Direction,
        data: &[u8],
        gap: u64,
        times: EventTimes,
        out: &mut Vec<H2Exchange>,
    ) {
        let st = &mut self.st;
        st.now = times;
        st.last_ns = st.last_ns.max(times.exit_ns);
        st.start_at_enter = direction == Direction::Egress;
        let side = if (direction == Direction::Ingress) == self.is_server {
            Side::Request
        } else {
            Side::Response
        };
        let parser = &mut self.parsers[side as usize];
        parser.set_max_frame(st.max_frame[side as usize]);
        parser.feed(data, gap, &mut Handler { st, side, out });
    }

    /// Ends streams with no frame for `timeout_ns` (at `now_ns`).
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64, out: &mut Vec<H2Exchange>) {
        let mut stale: Vec<(u64, u32)> = self
            .st
            .streams
            .iter()
            .filter(|(_, s)| now_ns.saturating_sub(s.last_ns) >= timeout_ns)
            .map(|(&id, s)| (s.seq, id))
            .collect();
        stale.sort_unstable();
        for (_, id) in stale {
            if let Some(s) = self.st.streams.remove(&id) {
                out.push(finish(id, s, now_ns, Outcome::Timeout, None));
            }
        }
    }

    /// The connection ended at `now_ns`: every open stream ends as
    /// [`Outcome::ConnectionClosed`].
    pub fn close(&mut self, now_ns: u64, out: &mut Vec<H2Exchange>) {
        let end = self.st.last_ns.max(now_ns);
        let mut open: Vec<(u64, u32)> =
            self.st.streams.iter().map(|(&id, s)| (s.seq, id)).collect();
        open.sort_unstable();
        for (_, id) in open {
            if let Some(s) = self.st.streams.remove(&id) {
                out.push(finish(id, s, end, Outcome::ConnectionClosed, None));
            }
        }
        self.st.pending = [None, None];
    }

    /// No stream in flight, nothing partly parsed, and no HPACK state worth
    /// keeping (a connection whose dynamic tables are known is kept: losing
    /// them makes later headers unresolvable).
    /// The streams awaiting the end of their responses.
    pub fn pending_requests(&self, out: &mut Vec<crate::protocol::PendingRequest>) {
        out.extend(
            self.st
                .streams
                .values()
                .map(|s| crate::protocol::PendingRequest {
                    start_ns: s.start_ns,
                    tid: s.tid,
                }),
        );
    }

    pub fn is_idle(&self) -> bool {
        self.st.streams.is_empty()
            && self.parsers.iter().all(FrameParser::is_idle)
            && self.st.hpack.iter().all(|d| d.table().is_empty())
    }

    /// The bytes were not HTTP/2 after all (framing failed before any frame).
    pub fn is_not_http2(&self) -> bool {
        self.st.not_http2
    }

    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.st.counts)
    }

    pub fn take_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.st.problems)
    }

    pub fn open_streams(&self) -> usize {
        self.st.streams.len()
    }

    /// Bytes buffered by the parsers and pending header blocks.
    pub fn buffered(&self) -> usize {
        self.parsers
            .iter()
            .map(FrameParser::buffered)
            .sum::<usize>()
            + self
                .st
                .pending
                .iter()
                .flatten()
                .map(|p| p.buf.len())
                .sum::<usize>()
    }
}

fn finish(
    id: u32,
    s: Stream,
    end_ns: u64,
    outcome: Outcome,
    reset_code: Option<u32>,
) -> H2Exchange {
    H2Exchange {
        stream_id: id,
        request: s.request,
        response: s.response,
        grpc_status: s.grpc_status,
        trailers: s.trailers,
        grpc_framed: s.grpc_framed,
        unresolved: s.unresolved,
        start_ns: s.start_ns,
        end_ns: end_ns.max(s.start_ns),
        outcome,
        reset_code,
        request_body_bytes: s.request_bytes,
        response_body_bytes: s.response_bytes,
        tid: s.tid,
        seq: s.seq,
    }
}

struct Handler<'a> {
    st: &'a mut State,
    side: Side,
    out: &'a mut Vec<H2Exchange>,
}

/// Strips padding (and the priority fields of HEADERS) from a payload.
/// `None`: malformed. The trailing padding is only known to be inside the
/// kept bytes when the payload is complete.
fn unpad(payload: &[u8], header_flags: u8, extra: usize, complete: bool) -> Option<&[u8]> {
    let mut p = payload;
    let mut pad = 0;
    if header_flags & flags::PADDED != 0 {
        pad = usize::from(*p.first()?);
        p = &p[1..];
    }
    p = p.get(extra..)?;
    if complete {
        p = &p[..p.len().checked_sub(pad)?];
    }
    Some(p)
}

impl Handler<'_> {
    fn problem(&mut self, reason: &'static str) {
        self.st.problems.push(Problem {
            side: self.side,
            reason,
        });
    }

    fn start_ns(&self) -> u64 {
        if self.st.start_at_enter {
            self.st.now.enter_ns
        } else {
            self.st.now.exit_ns
        }
    }

    /// A header block that interrupts a pending one: RFC 9113 forbids it.
    fn drop_pending(&mut self) {
        if self.st.pending[self.side as usize].take().is_some() {
            self.problem("interrupted_header_block");
            self.st.hpack[self.side as usize].forget();
        }
    }

    fn decode(&mut self, stream: u32, end_stream: bool, push: bool, block: &[u8], complete: bool) {
        let mut headers = Headers::default();
        let stats =
            self.st.hpack[self.side as usize].decode(block, complete, &mut |f| headers.field(f));
        headers.unresolved = stats.unresolved;
        headers.complete = stats.error.is_none();
        self.st.counts.unresolved_fields += u64::from(stats.unresolved);
        if let Some(e) = stats.error {
            self.problem(e.as_str());
        }
        if stats.bad_huffman > 0 {
            self.problem("hpack_bad_huffman");
        }
        if !push {
            self.headers(stream, end_stream, headers);
        }
    }

    fn headers(&mut self, id: u32, end_stream: bool, headers: Headers) {
        let now = self.st.now;
        match self.side {
            Side::Request => {
                if let Some(s) = self.st.streams.get_mut(&id) {
                    // Request trailers.
                    s.unresolved += headers.unresolved;
                    s.last_ns = now.exit_ns;
                    return;
                }
                if id.is_multiple_of(2) {
                    return;
                }
                if self.st.streams.len() >= self.st.limits.max_streams {
                    self.st.counts.stream_overflow += 1;
                    return;
                }
                let seq = self.st.next_seq;
                self.st.next_seq += 1;
                let start_ns = self.start_ns();
                self.st.streams.insert(
                    id,
                    Stream {
                        seq,
                        unresolved: headers.unresolved,
                        request: headers,
                        response: None,
                        grpc_status: None,
                        trailers: false,
                        grpc_framed: false,
                        request_data_seen: end_stream,
                        start_ns,
                        last_ns: now.exit_ns,
                        request_bytes: 0,
                        response_bytes: 0,
                        tid: now.tid,
                    },
                );
            }
            Side::Response => {
                let Some(s) = self.st.streams.get_mut(&id) else {
                    self.st.counts.orphan_frames += 1;
                    return;
                };
                s.last_ns = now.exit_ns;
                s.unresolved += headers.unresolved;
                if s.response.is_none() {
                    if matches!(headers.status, Some(100..=199)) && !end_stream {
                        // Informational (100 Continue): the final one follows.
                        return;
                    }
                    if end_stream {
                        // Trailers-Only.
                        s.grpc_status = headers.grpc_status;
                    }
                    s.response = Some(headers);
                } else {
                    s.trailers = true;
                    if headers.grpc_status.is_some() {
                        s.grpc_status = headers.grpc_status;
                    }
                }
                if end_stream {
                    self.complete(id, Outcome::Complete, None);
                }
            }
        }
    }

    fn complete(&mut self, id: u32, outcome: Outcome, code: Option<u32>) {
        if let Some(s) = self.st.streams.remove(&id) {
            self.out
                .push(finish(id, s, self.st.now.exit_ns, outcome, code));
        }
    }

    fn data(&mut self, f: &Frame<'_>) {
        let id = f.header.stream;
        let Some(s) = self.st.streams.get_mut(&id) else {
            self.st.counts.orphan_frames += 1;
            return;
        };
        s.last_ns = self.st.now.exit_ns;
        let mut len = u64::from(f.header.len);
        let mut body = f.payload;
        if f.header.flags & flags::PADDED != 0 {
            match f.payload.first() {
                Some(&pad) => {
                    len = len.saturating_sub(u64::from(pad) + 1);
                    body = &body[1..];
                }
                None => len = 0,
            }
        }
        match self.side {
            Side::Request => {
                if !s.request_data_seen && body.len() >= 5 {
                    // gRPC length-prefixed message: compressed flag 0/1 and a
                    // length within gRPC's default 4 MiB limit (one message,
                    // several, or the start of one spanning frames).
                    let msg = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
                    s.grpc_framed = body[0] <= 1 && msg <= 4 << 20;
                }
                s.request_data_seen = true;
                s.request_bytes += len;
            }
            Side::Response => s.response_bytes += len,
        }
        if f.header.flags & flags::END_STREAM != 0 && self.side == Side::Response {
            self.complete(id, Outcome::Complete, None);
        }
    }

    fn settings(&mut self, f: &Frame<'_>) {
        if f.header.flags & flags::ACK != 0 {
            return;
        }
        for pair in f.payload.chunks_exact(6) {
            let id = u16::from_be_bytes([pair[0], pair[1]]);
            let value = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]);
            match id {
                // SETTINGS_HEADER_TABLE_SIZE bounds the *peer's* encoder.
                0x1 => self.st.hpack[self.side.other() as usize].set_limit(value),
                // SETTINGS_MAX_FRAME_SIZE bounds the peer's frames.
                0x5 => self.st.max_frame[self.side.other() as usize] = value,
                _ => {}
            }
        }
    }

    fn goaway(&mut self, f: &Frame<'_>) {
        let p = f.payload;
        if p.len() < 8 || self.side != Side::Response {
            return;
        }
        let last = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
        let code = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        // Streams the server will not process.
        let mut gone: Vec<(u64, u32)> = self
            .st
            .streams
            .iter()
            .filter(|(id, _)| **id > last)
            .map(|(&id, s)| (s.seq, id))
            .collect();
        gone.sort_unstable();
        for (_, id) in gone {
            self.complete(id, Outcome::Reset, Some(code));
        }
    }
}

impl FrameSink for Handler<'_> {
    fn frame(&mut self, f: Frame<'_>) {
        self.st.frames_ok += 1;
        let h = f.header;
        let side = self.side as usize;
        if h.kind != h2::CONTINUATION && self.st.pending[side].is_some() {
            self.drop_pending();
        }
        match h.kind {
            h2::HEADERS | h2::PUSH_PROMISE => {
                let push = h.kind == h2::PUSH_PROMISE;
                let extra = if push {
                    4
                } else if h.flags & flags::PRIORITY != 0 {
                    5
                } else {
                    0
                };
                let Some(block) = unpad(f.payload, h.flags, extra, f.complete) else {
                    self.problem("malformed_headers");
                    self.st.hpack[side].forget();
                    return;
                };
                let end_stream = !push && h.flags & flags::END_STREAM != 0;
                if h.flags & flags::END_HEADERS != 0 {
                    self.decode(h.stream, end_stream, push, block, f.complete);
                } else {
                    self.st.pending[side] = Some(PendingBlock {
                        stream: h.stream,
                        end_stream,
                        push,
                        buf: block.to_vec(),
                        complete: f.complete,
                    });
                }
            }
            h2::CONTINUATION => {
                let max = self.st.limits.max_header_block_bytes;
                let Some(p) = self.st.pending[side]
                    .as_mut()
                    .filter(|p| p.stream == h.stream)
                else {
                    // The start of the block was not seen: its insertions
                    // are lost.
                    self.drop_pending();
                    self.problem("orphan_continuation");
                    self.st.hpack[side].forget();
                    return;
                };
                let room = max.saturating_sub(p.buf.len());
                if f.payload.len() > room || !f.complete {
                    p.complete = false;
                }
                if p.complete {
                    p.buf.extend_from_slice(f.payload);
                } else {
                    p.buf
                        .extend_from_slice(&f.payload[..f.payload.len().min(room)]);
                }
                if h.flags & flags::END_HEADERS != 0
                    && let Some(p) = self.st.pending[side].take()
                {
                    self.decode(p.stream, p.end_stream, p.push, &p.buf, p.complete);
                }
            }
            h2::DATA => self.data(&f),
            h2::RST_STREAM => {
                let code = f
                    .payload
                    .get(..4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                if self.st.streams.contains_key(&h.stream) {
                    self.complete(h.stream, Outcome::Reset, code);
                }
            }
            h2::SETTINGS => self.settings(&f),
            h2::GOAWAY => self.goaway(&f),
            _ => {}
        }
    }

    fn desync(&mut self, reason: DesyncReason) {
        if self.st.frames_ok == 0 && reason != DesyncReason::GapInFraming {
            self.st.not_http2 = true;
        }
        self.problem(reason.as_str());
        let side = self.side as usize;
        self.st.pending[side] = None;
        // Header blocks may have been lost with the framing.
        self.st.hpack[side].forget();
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
