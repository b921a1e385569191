//! HTTP/1.x message framing for one direction of one TCP connection, sans-IO.
//!
//! A [`Parser`] is fed the bytes of one stream (all requests of a connection,
//! or all its responses) syscall by syscall with [`Parser::feed`]: the bytes
//! the syscall moved that were captured, plus the count of bytes it moved
//! beyond them (a *gap*: their content is unknown). It reports what it finds
//! to a [`Sink`]: `begin`, `head`, `end` for every message, in order, and
//! `desync` / `upgraded` when it stops understanding the stream.
//!
//! Properties:
//!
//! * **Split-invariant**: a stream cut into feeds at any byte boundaries gives
//!   the same events (only the feed in which each event fires changes), up
//!   to the first desync: where the parser resynchronizes after one depends
//!   on syscall boundaries, by design.
//! * **No body buffering**: bodies are counted and skipped. Only an
//!   incomplete head is buffered, never more than [`Limits::max_head_bytes`];
//!   chunked framing is decoded byte by byte with counters.
//! * **Never panics**, on any input.
//!
//! Framing follows RFC 9112 §6.3. Details worth knowing:
//!
//! * `end(body_bytes)` reports the *payload* length: the Content-Length, the
//!   sum of chunk sizes (chunk size lines, chunk CRLFs and trailers are not
//!   counted), or the bytes seen until close (gaps included).
//! * Gaps inside a Content-Length body, inside chunk data or inside a body
//!   delimited by close are skipped like data. A gap anywhere else (head,
//!   chunk framing, between messages) loses the framing: `desync`.
//! * A head cut short (gap, connection close, larger than `max_head_bytes`,
//!   more than `max_headers` fields) is reported with `complete == false` and
//!   the fields of the lines seen in full (for a request whose start line was
//!   itself cut, the method and the target prefix). A head larger than
//!   `max_head_bytes` or with too many fields is then skipped, unbuffered, up
//!   to its end, and parsing goes on when the lines seen decide the framing:
//!   always for requests (a request without Content-Length or
//!   Transfer-Encoding among those lines is assumed to have no body), and for
//!   responses when a Content-Length or Transfer-Encoding was seen or the
//!   status/hint implies no body. Otherwise: `desync(HeadTooLarge)` (or
//!   `TooManyHeaders`).
//!   A head cut by a gap or by close always ends in `desync` (its end is
//!   unknown), except a 101 (or tunnel) response, which still upgrades.
//!   Bytes seen that are not valid HTTP, even in an unfinished last line,
//!   make it `desync(InvalidHead)` instead, with no head reported.
//! * Between messages, CR and LF bytes are skipped. A message whose first
//!   byte cannot start one (not a token character for requests, not `H` for
//!   responses) is `desync(Garbage)` without `begin`; anything later that is
//!   not valid HTTP/1.x is `begin` then `desync(InvalidHead)`.
//! * After a desync the parser resynchronizes only on a feed whose data starts
//!   with a plausible message start (see [`plausible_start`]); bytes inside a
//!   syscall's data are never used to resynchronize.
//! * A 1xx response other than 101 is a message of its own (no body). A 101
//!   response, or a 2xx response the sink hints is a [`BodyHint::Tunnel`],
//!   ends with `upgraded` (instead of `end`), and the parser ignores
//!   everything after it. The request stream's parser cannot see that: the
//!   session calls [`Parser::stop`] on it.
//! * `Connection: close` and HTTP/1.0 are only reported
//!   ([`Head::connection_close`]); the parser keeps going.

use std::{mem::MaybeUninit, sync::Arc};

use httparse::{Header, ParserConfig, Status};

use crate::intern::intern_text;

/// Which side of the exchange a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Request,
    Response,
}

/// Bounds on what the parser keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most head bytes buffered (start line + fields + final CRLF); also the
    /// longest chunk size line and trailer section accepted. Values below
    /// [`MIN_HEAD_BYTES`] are raised to it.
    pub max_head_bytes: usize,
    /// Most header fields parsed in one head.
    pub max_headers: usize,
    /// Longest request-target kept in [`Head::target`] (bytes).
    pub max_target_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_target_len: 2048,
        }
    }
}

/// Smallest effective [`Limits::max_head_bytes`].
pub const MIN_HEAD_BYTES: usize = 64;

/// Longest method token accepted at the start of a request.
const MAX_METHOD_LEN: usize = 32;

/// Request method as parsed (case-sensitive, as RFC 9110 §9.1 says).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    /// Any other valid token.
    Other(String),
}

impl Method {
    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
            Self::Other(token) => token,
        }
    }

    pub(crate) fn from_token(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "CONNECT" => Self::Connect,
            "OPTIONS" => Self::Options,
            "TRACE" => Self::Trace,
            "PATCH" => Self::Patch,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A parsed message head. Only the fields the agent uses are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub kind: MessageKind,
    /// Requests: the method.
    pub method: Option<Method>,
    /// Requests: the raw request-target, cut to `max_target_len` bytes (on a
    /// character boundary; then `target_truncated`).
    pub target: Option<String>,
    /// The target was longer than kept (or its end was not seen).
    pub target_truncated: bool,
    /// 0 or 1 (HTTP/1.0 or HTTP/1.1). 1 when the start line was cut before
    /// the version.
    pub version_minor: u8,
    /// Responses: the status code.
    pub status: Option<u16>,
    pub host: Option<Arc<str>>,
    pub user_agent: Option<Arc<str>>,
    /// A valid Content-Length (all values equal, digits only).
    pub content_length: Option<u64>,
    /// Transfer-Encoding's final coding is chunked.
    pub chunked: bool,
    /// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`.
    pub connection_close: bool,
    /// Upgrade header value (e.g. "h2c", "websocket").
    pub upgrade: Option<Arc<str>>,
    pub traceparent: Option<String>,
    /// All tracestate fields, joined with ",".
    pub tracestate: Option<String>,
    pub content_type: Option<Arc<str>>,
    /// Bytes of the head (start line + fields + final CRLF), as far as seen
    /// when it was reported.
    pub head_bytes: usize,
    /// False when the head was cut short: the fields are those of the lines
    /// seen in full.
    pub complete: bool,
}

impl Head {
    fn new(kind: MessageKind) -> Self {
        Self {
            kind,
            method: None,
            target: None,
            target_truncated: false,
            version_minor: 1,
            status: None,
            host: None,
            user_agent: None,
            content_length: None,
            chunked: false,
            connection_close: false,
            upgrade: None,
            traceparent: None,
            tracestate: None,
            content_type: None,
            head_bytes: 0,
            complete: true,
        }
    }
}

/// What the session tells the parser about a response's body, decided from
/// the matching request. Ignored for requests and 1xx responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyHint {
    #[default]
    Normal,
    /// Response to HEAD: no body whatever the fields say.
    NoBody,
    /// Response to CONNECT: a 2xx turns the stream into a tunnel (the parser
    /// stops); other statuses are framed normally.
    Tunnel,
}

/// Receives the parser's events.
pub trait Sink {
    /// A new message started: its first byte was consumed in the current
    /// `feed()` call.
    fn begin(&mut self);
    /// The head of the current message is known (complete, or partial with
    /// `head.complete == false`). For responses the return value adjusts
    /// body framing (ignored for requests).
    fn head(&mut self, head: Box<Head>) -> BodyHint;
    /// The current message ended; `body_bytes` is the payload length
    /// (chunk framing and trailers excluded; gaps included).
    fn end(&mut self, body_bytes: u64);
    /// Framing was lost. The current message (if any) is abandoned; the
    /// parser resynchronizes on a later feed whose data starts with a
    /// plausible message start.
    fn desync(&mut self, reason: DesyncReason);
    /// The stream switched protocol (101 response, or a 2xx response hinted
    /// [`BodyHint::Tunnel`]): this ends the current message (no `end` is
    /// sent for it) and the parser ignores all further input. `upgrade` is
    /// the Upgrade header value, if any.
    fn upgraded(&mut self, upgrade: Option<&str>);
}

/// Why framing was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DesyncReason {
    /// The head is not valid HTTP/1.x.
    InvalidHead,
    /// The head outgrew `max_head_bytes` and the lines seen do not decide
    /// the framing.
    HeadTooLarge,
    /// The head has more than `max_headers` fields and the fields seen do not
    /// decide the framing.
    TooManyHeaders,
    /// Content-Length invalid or conflicting, or a request whose
    /// Transfer-Encoding does not end with chunked.
    InvalidFraming,
    /// Uncaptured bytes covered a head, chunk framing, or a message start.
    GapInFraming,
    /// Malformed chunk size line, chunk terminator, or oversized trailers.
    BadChunk,
    /// The bytes where a message should start do not look like one.
    Garbage,
    /// The connection closed in the middle of a message.
    ClosedMidMessage,
}

impl DesyncReason {
    /// Low-cardinality name for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidHead => "invalid_head",
            Self::HeadTooLarge => "head_too_large",
            Self::TooManyHeaders => "too_many_headers",
            Self::InvalidFraming => "invalid_framing",
            Self::GapInFraming => "gap_in_framing",
            Self::BadChunk => "bad_chunk",
            Self::Garbage => "garbage",
            Self::ClosedMidMessage => "closed_mid_message",
        }
    }
}

/// Frames one direction of one connection into messages.
#[derive(Debug)]
pub struct Parser {
    kind: MessageKind,
    limits: Limits,
    state: State,
    /// Head bytes of the current message while its head spans feeds
    /// (empty otherwise; never longer than `max_head_bytes`).
    buf: Vec<u8>,
}

/// Where the parser is in the stream.
#[derive(Debug)]
enum State {
    /// Between messages: the next non-CRLF byte starts one.
    Idle,
    /// Reading a head; the scanner has seen every byte of it so far.
    Head(EndScan),
    /// A head cut short but whose framing is known: skipping (unbuffered) to
    /// its end.
    SkipHead { scan: EndScan, framing: Framing },
    /// Skipping a body.
    Body(Body),
    /// Framing lost: waiting for a feed starting with a plausible message.
    Desynced,
    /// Protocol switched, connection closed, or [`Parser::stop`]: ignoring
    /// all input.
    Stopped,
}

/// How a message body is delimited, decided from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    NoBody,
    Length(u64),
    Chunked,
    UntilClose,
    /// The stream switches protocol after this head.
    Switch,
    /// The head makes the body length undeterminable.
    Invalid,
}

/// A body being skipped.
#[derive(Debug)]
enum Body {
    /// Content-Length: `remaining` of `total` bytes left.
    Length {
        remaining: u64,
        total: u64,
    },
    Chunked(ChunkDecoder),
    /// Delimited by close: `seen` bytes so far.
    UntilClose {
        seen: u64,
    },
}

impl Parser {
    /// A parser at the start of a stream of `kind` messages.
    pub fn new(kind: MessageKind, mut limits: Limits) -> Self {
        limits.max_head_bytes = limits.max_head_bytes.max(MIN_HEAD_BYTES);
        Self {
            kind,
            limits,
            state: State::Idle,
            buf: Vec::new(),
        }
    }

    /// The kind of messages this parser frames.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The effective limits (`max_head_bytes` raised to [`MIN_HEAD_BYTES`]).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Feeds one syscall: `data` is what was captured, `gap` the number of
    /// bytes the same syscall moved after `data` that were not captured.
    /// Returns how many bytes of `data` belong to HTTP/1: all of them,
    /// except after a message that switched protocols (101) in this feed,
    /// where the rest is the new protocol's.
    pub fn feed(&mut self, data: &[u8], gap: u64, sink: &mut impl Sink) -> usize {
        if matches!(self.state, State::Desynced) && plausible_start(self.kind, data) {
            self.state = State::Idle;
        }
        let was_stopped = self.is_stopped();
        let mut rest = data;
        while !rest.is_empty() {
            if !was_stopped && self.is_stopped() {
                return data.len() - rest.len();
            }
            let used = self.step(rest, sink);
            rest = rest.get(used..).unwrap_or_default();
        }
        if gap > 0 {
            self.skip_gap(gap, sink);
        }
        data.len()
    }

    /// The connection ended. A body delimited by close ends here; a message
    /// cut mid-way is reported with `desync(ClosedMidMessage)` (after its
    /// partial head, if the head was being read). The parser then ignores
    /// all input.
    pub fn close(&mut self, sink: &mut impl Sink) {
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Idle | State::Desynced | State::Stopped => {}
            State::Head(_) => self.cut_head(DesyncReason::ClosedMidMessage, HeadEnd::Unknown, sink),
            State::SkipHead { .. } | State::Body(Body::Length { .. } | Body::Chunked(_)) => {
                sink.desync(DesyncReason::ClosedMidMessage);
            }
            State::Body(Body::UntilClose { seen }) => sink.end(seen),
        }
        self.state = State::Stopped;
        self.buf = Vec::new();
    }

    /// Stops parsing without an event: all further input is ignored. For the
    /// session to call on the request stream once the response stream
    /// reported [`Sink::upgraded`].
    pub fn stop(&mut self) {
        self.state = State::Stopped;
        self.buf = Vec::new();
    }

    /// True while between messages (nothing partially parsed): idle, waiting
    /// to resynchronize, or stopped.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle | State::Desynced | State::Stopped)
    }

    /// True after a desync until a plausible message start is seen.
    pub fn is_desynced(&self) -> bool {
        matches!(self.state, State::Desynced)
    }

    /// True once the parser ignores all input (upgrade, close, stop).
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, State::Stopped)
    }

    /// Bytes currently buffered (always <= `limits().max_head_bytes`).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Consumes a prefix of `data` (possibly empty when the state changed).
    fn step(&mut self, data: &[u8], sink: &mut impl Sink) -> usize {
        match self.state {
            State::Idle => self.step_idle(data, sink),
            State::Head(_) => self.step_head(data, sink),
            State::SkipHead { .. } => self.step_skip_head(data, sink),
            State::Body(_) => self.step_body(data, sink),
            State::Desynced | State::Stopped => data.len(),
        }
    }

    /// Skips empty lines between messages, then starts the next message if
    /// its first byte is plausible.
    fn step_idle(&mut self, data: &[u8], sink: &mut impl Sink) -> usize {
        let blank = data
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        let Some(&first) = data.get(blank) else {
            return blank;
        };
        if !prefix_plausible(self.kind, &[first]) {
            self.desync(DesyncReason::Garbage, sink);
            return data.len();
        }
        sink.begin();
        self.state = State::Head(EndScan::default());
        blank
    }

    /// Reads head bytes: up to the end of the head, or into the buffer.
    fn step_head(&mut self, data: &[u8], sink: &mut impl Sink) -> usize {
        let State::Head(scan) = &mut self.state else {
            return 0;
        };
        let room = self.limits.max_head_bytes.saturating_sub(self.buf.len());
        let window = &data[..data.len().min(room)];
        if let Some(end) = scan.find_end(window) {
            let head = &window[..end];
            if self.buf.is_empty() {
                // The whole head is in this feed: parse it in place.
                let outcome = parse_head(self.kind, head, &self.limits);
                if matches!(outcome, HeadOutcome::TooManyHeaders) {
                    self.buf.extend_from_slice(head);
                }
                self.head_ended(outcome, end, sink);
            } else {
                self.buf.extend_from_slice(head);
                let outcome = parse_head(self.kind, &self.buf, &self.limits);
                self.head_ended(outcome, self.buf.len(), sink);
            }
            return end;
        }
        let scan = *scan;
        let checked = self.buf.len();
        self.buf.extend_from_slice(window);
        if checked <= MAX_METHOD_LEN && !prefix_plausible(self.kind, &self.buf) {
            self.desync(DesyncReason::InvalidHead, sink);
            return data.len();
        }
        if window.contains(&b'\n') {
            // Validate the lines so far, to drop garbage early. Too many
            // fields is acted on at the end of the head (or when it is cut),
            // so that the event does not depend on where feeds split.
            match parse_head(self.kind, &self.buf, &self.limits) {
                HeadOutcome::Partial | HeadOutcome::TooManyHeaders => {}
                HeadOutcome::Complete(..) | HeadOutcome::Invalid => {
                    self.desync(DesyncReason::InvalidHead, sink);
                    return data.len();
                }
            }
        }
        if self.buf.len() >= self.limits.max_head_bytes {
            self.cut_head(DesyncReason::HeadTooLarge, HeadEnd::Scanning(scan), sink);
        }
        window.len()
    }

    /// The whole head (`len` bytes) has been seen and parsed. For
    /// `TooManyHeaders`, `buf` holds the head.
    fn head_ended(&mut self, outcome: HeadOutcome, len: usize, sink: &mut impl Sink) {
        match outcome {
            HeadOutcome::Complete(parsed, n) if n == len => {
                self.buf = Vec::new();
                let (framing, upgrade) = self.report_head(parsed, sink);
                self.start_body(framing, upgrade.as_deref(), sink);
            }
            HeadOutcome::TooManyHeaders => {
                self.cut_head(DesyncReason::TooManyHeaders, HeadEnd::Reached, sink);
            }
            _ => self.desync(DesyncReason::InvalidHead, sink),
        }
    }

    /// Reports the head read so far (in `buf`) as incomplete, then goes on
    /// where the lines seen allow it, else desyncs with `reason`. Bytes seen
    /// that are not valid (even in an unfinished last line) make it an
    /// invalid head instead, as they would have if a LF had followed them.
    fn cut_head(&mut self, reason: DesyncReason, end: HeadEnd, sink: &mut impl Sink) {
        if let HeadOutcome::Invalid | HeadOutcome::Complete(..) =
            parse_head(self.kind, &self.buf, &self.limits)
        {
            return self.desync(DesyncReason::InvalidHead, sink);
        }
        let partial = partial_head(self.kind, &self.buf, &self.limits);
        self.buf = Vec::new();
        let Some(parsed) = partial else {
            return self.desync(reason, sink);
        };
        let facts = parsed.facts;
        let (framing, upgrade) = self.report_head(parsed, sink);
        let decided = framing != Framing::UntilClose || facts.transfer_encoding.is_some();
        let keeps_going = matches!(
            reason,
            DesyncReason::HeadTooLarge | DesyncReason::TooManyHeaders
        );
        match end {
            _ if framing == Framing::Switch => self.start_body(framing, upgrade.as_deref(), sink),
            HeadEnd::Reached if keeps_going && decided => self.start_body(framing, None, sink),
            HeadEnd::Scanning(scan) if keeps_going && decided => {
                self.state = State::SkipHead { scan, framing }
            }
            _ => self.desync(reason, sink),
        }
    }

    /// Hands the head to the sink; returns the body framing it implies and
    /// the Upgrade value.
    fn report_head(
        &mut self,
        parsed: ParsedHead,
        sink: &mut impl Sink,
    ) -> (Framing, Option<Arc<str>>) {
        let upgrade = parsed.head.upgrade.clone();
        let hint = sink.head(parsed.head);
        (framing(self.kind, &parsed.facts, hint), upgrade)
    }

    /// Enters the body state `framing` calls for (ending the message at once
    /// when it has no body).
    fn start_body(&mut self, framing: Framing, upgrade: Option<&str>, sink: &mut impl Sink) {
        self.state = match framing {
            Framing::NoBody | Framing::Length(0) => return self.finish(0, sink),
            Framing::Length(n) => State::Body(Body::Length {
                remaining: n,
                total: n,
            }),
            Framing::Chunked => State::Body(Body::Chunked(ChunkDecoder::default())),
            Framing::UntilClose => State::Body(Body::UntilClose { seen: 0 }),
            Framing::Switch => {
                sink.upgraded(upgrade);
                State::Stopped
            }
            Framing::Invalid => return self.desync(DesyncReason::InvalidFraming, sink),
        };
    }

    /// Skips the rest of a head too large to buffer.
    fn step_skip_head(&mut self, data: &[u8], sink: &mut impl Sink) -> usize {
        let State::SkipHead { scan, framing } = &mut self.state else {
            return 0;
        };
        match scan.find_end(data) {
            Some(end) => {
                let framing = *framing;
                self.start_body(framing, None, sink);
                end
            }
            None => data.len(),
        }
    }

    /// Skips body bytes; ends the message at the end of the body.
    fn step_body(&mut self, data: &[u8], sink: &mut impl Sink) -> usize {
        let State::Body(body) = &mut self.state else {
            return 0;
        };
        match body {
            Body::Length { remaining, total } => {
                let n = (*remaining).min(data.len() as u64);
                *remaining -= n;
                if *remaining == 0 {
                    let total = *total;
                    self.finish(total, sink);
                }
                n as usize
            }
            Body::UntilClose { seen } => {
                *seen = seen.saturating_add(data.len() as u64);
                data.len()
            }
            Body::Chunked(decoder) => {
                let (used, step) = decoder.feed(data, self.limits.max_head_bytes);
                match step {
                    ChunkStep::More => {}
                    ChunkStep::Done => {
                        let body = decoder.body;
                        self.finish(body, sink);
                    }
                    ChunkStep::Bad => self.desync(DesyncReason::BadChunk, sink),
                }
                used
            }
        }
    }

    /// Applies `gap` uncaptured bytes that follow the data just fed.
    fn skip_gap(&mut self, gap: u64, sink: &mut impl Sink) {
        match &mut self.state {
            State::Desynced | State::Stopped => {}
            State::Idle | State::SkipHead { .. } => self.desync(DesyncReason::GapInFraming, sink),
            State::Head(_) => self.cut_head(DesyncReason::GapInFraming, HeadEnd::Unknown, sink),
            State::Body(Body::UntilClose { seen }) => *seen = seen.saturating_add(gap),
            State::Body(Body::Length { remaining, total }) => {
                let n = (*remaining).min(gap);
                *remaining -= n;
                if *remaining == 0 {
                    let total = *total;
                    self.finish(total, sink);
                    if gap > n {
                        self.desync(DesyncReason::GapInFraming, sink);
                    }
                }
            }
            State::Body(Body::Chunked(decoder)) => {
                if !decoder.skip(gap) {
                    self.desync(DesyncReason::GapInFraming, sink);
                }
            }
        }
    }

    /// Ends the current message.
    fn finish(&mut self, body_bytes: u64, sink: &mut impl Sink) {
        self.state = State::Idle;
        sink.end(body_bytes);
    }

    /// Abandons the current message and waits for a plausible start.
    fn desync(&mut self, reason: DesyncReason, sink: &mut impl Sink) {
        self.state = State::Desynced;
        self.buf = Vec::new();
        sink.desync(reason);
    }
}

/// Whether the end of a cut head is known.
#[derive(Debug, Clone, Copy)]
enum HeadEnd {
    /// The whole head has been consumed.
    Reached,
    /// Not yet: the scanner has seen every head byte so far.
    Scanning(EndScan),
    /// Lost (gap or close).
    Unknown,
}

/// Finds the empty line ending a head, across feeds, without buffering.
#[derive(Debug, Clone, Copy, Default)]
struct EndScan {
    at: LinePos,
}

/// Position of the last byte scanned within its line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum LinePos {
    /// Inside a line with content (the start line at first).
    #[default]
    InLine,
    /// Just after a LF.
    LineStart,
    /// A CR right after a LF.
    LineStartCr,
}

impl EndScan {
    /// Scans `bytes`; returns the length up to and including the LF ending
    /// the head, if it is there. Jumps from LF to LF (memchr): a head is a
    /// few lines, so this looks at a handful of positions, not every byte.
    fn find_end(&mut self, bytes: &[u8]) -> Option<usize> {
        // `line` is where the current line starts in `bytes`; the state
        // tells what precedes `bytes[0]` when the line began before it.
        let mut line = 0;
        for lf in memchr::memchr_iter(b'\n', bytes) {
            let content = &bytes[line..lf];
            let empty = match (line, self.at) {
                (0, LinePos::InLine) => false,
                (0, LinePos::LineStartCr) => content.is_empty(),
                _ => content.is_empty() || content == b"\r",
            };
            if empty {
                return Some(lf + 1);
            }
            line = lf + 1;
            self.at = LinePos::LineStart;
        }
        let rest = &bytes[line..];
        self.at = match (self.at, rest) {
            (at, []) => at,
            (LinePos::LineStart, [b'\r']) => LinePos::LineStartCr,
            _ => LinePos::InLine,
        };
        None
    }
}

/// Decodes chunked framing byte by byte, skipping chunk data.
#[derive(Debug, Clone, Copy, Default)]
struct ChunkDecoder {
    state: ChunkState,
    /// Sum of the chunk sizes read so far.
    body: u64,
}

/// Where the decoder is in the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex chunk size.
    Size { value: u64, digits: usize },
    /// After the size: whitespace and extensions up to the LF; `line` bytes
    /// of the size line so far.
    Ext { value: u64, line: usize },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// After chunk data: CRLF (or a bare LF) expected; `cr` once CR is seen.
    DataEnd { cr: bool },
    /// Trailer section after the last chunk: `line` bytes into the current
    /// field line (0 at a line start), `cr` when a line start holds a CR,
    /// `total` trailer bytes so far.
    Trailers { line: usize, cr: bool, total: usize },
}

impl Default for ChunkState {
    fn default() -> Self {
        Self::Size {
            value: 0,
            digits: 0,
        }
    }
}

/// Result of decoding some chunked bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkStep {
    More,
    /// The body ended (after the trailer section).
    Done,
    Bad,
}

impl ChunkDecoder {
    /// Decodes a prefix of `data`: up to the end of the body, an error, or
    /// all of it. Size lines and trailers are bounded by `max_line` bytes.
    fn feed(&mut self, data: &[u8], max_line: usize) -> (usize, ChunkStep) {
        let mut i = 0;
        while i < data.len() {
            if let ChunkState::Data { remaining } = &mut self.state {
                let n = (*remaining).min((data.len() - i) as u64);
                *remaining -= n;
                i += n as usize;
                if *remaining == 0 {
                    self.state = ChunkState::DataEnd { cr: false };
                }
                continue;
            }
            let step = self.byte(data[i], max_line);
            i += 1;
            if step != ChunkStep::More {
                return (i, step);
            }
        }
        (i, ChunkStep::More)
    }

    /// Skips `gap` uncaptured bytes; false if they cover framing.
    fn skip(&mut self, gap: u64) -> bool {
        let ChunkState::Data { remaining } = &mut self.state else {
            return false;
        };
        if gap > *remaining {
            return false;
        }
        *remaining -= gap;
        if *remaining == 0 {
            self.state = ChunkState::DataEnd { cr: false };
        }
        true
    }

    /// Decodes one framing byte.
    fn byte(&mut self, b: u8, max_line: usize) -> ChunkStep {
        self.state = match self.state {
            ChunkState::Size { value, digits } => match hex_value(b) {
                Some(d) if digits < max_line => match value.checked_mul(16) {
                    Some(v) => ChunkState::Size {
                        value: v | u64::from(d),
                        digits: digits + 1,
                    },
                    None => return ChunkStep::Bad,
                },
                _ if digits == 0 => return ChunkStep::Bad,
                None if b == b'\n' => self.size_line_done(value),
                None if matches!(b, b' ' | b'\t' | b';' | b'\r') => ChunkState::Ext {
                    value,
                    line: digits + 1,
                },
                _ => return ChunkStep::Bad,
            },
            ChunkState::Ext { value, .. } if b == b'\n' => self.size_line_done(value),
            ChunkState::Ext { line, .. } if line >= max_line => return ChunkStep::Bad,
            ChunkState::Ext { value, line } => ChunkState::Ext {
                value,
                line: line + 1,
            },
            ChunkState::DataEnd { cr: false } if b == b'\r' => ChunkState::DataEnd { cr: true },
            ChunkState::DataEnd { .. } if b == b'\n' => ChunkState::default(),
            ChunkState::DataEnd { .. } | ChunkState::Data { .. } => return ChunkStep::Bad,
            ChunkState::Trailers { total, .. } if total >= max_line => return ChunkStep::Bad,
            ChunkState::Trailers { line: 0, .. } if b == b'\n' => return ChunkStep::Done,
            ChunkState::Trailers {
                line: 0, cr: true, ..
            } => return ChunkStep::Bad,
            ChunkState::Trailers { line, total, .. } => match b {
                b'\n' => ChunkState::Trailers {
                    line: 0,
                    cr: false,
                    total: total + 1,
                },
                b'\r' if line == 0 => ChunkState::Trailers {
                    line: 0,
                    cr: true,
                    total: total + 1,
                },
                _ => ChunkState::Trailers {
                    line: line + 1,
                    cr: false,
                    total: total + 1,
                },
            },
        };
        ChunkStep::More
    }

    /// A size line ended: the last chunk starts the trailers.
    fn size_line_done(&mut self, size: u64) -> ChunkState {
        if size == 0 {
            return ChunkState::Trailers {
                line: 0,
                cr: false,
                total: 0,
            };
        }
        self.body = self.body.saturating_add(size);
        ChunkState::Data { remaining: size }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A head turned into the fields kept and the facts that frame its body.
#[derive(Debug)]
struct ParsedHead {
    /// Boxed: the head goes from the parser to the exchange to the span
    /// builder, a pointer move each time instead of a copy of 200 bytes.
    head: Box<Head>,
    facts: FramingFacts,
}

/// What a head says about its body's length.
#[derive(Debug, Clone, Copy, Default)]
struct FramingFacts {
    status: Option<u16>,
    /// `Some(final coding is chunked)` when Transfer-Encoding is present.
    transfer_encoding: Option<bool>,
    content_length: ContentLength,
}

/// The Content-Length fields of a head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ContentLength {
    #[default]
    Absent,
    Valid(u64),
    /// Not digits, overflowing, or differing values.
    Invalid,
}

/// Result of running httparse over head bytes.
#[derive(Debug)]
enum HeadOutcome {
    /// A whole head, of the given length.
    Complete(ParsedHead, usize),
    /// Valid so far; more bytes needed.
    Partial,
    TooManyHeaders,
    Invalid,
}

/// Body framing per RFC 9112 §6.3.
fn framing(kind: MessageKind, facts: &FramingFacts, hint: BodyHint) -> Framing {
    match kind {
        MessageKind::Request => match (facts.transfer_encoding, facts.content_length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, ContentLength::Invalid) => Framing::Invalid,
            (None, ContentLength::Valid(n)) => Framing::Length(n),
            (None, ContentLength::Absent) => Framing::NoBody,
        },
        MessageKind::Response => match facts.status.unwrap_or(200) {
            101 => Framing::Switch,
            100..=199 | 204 | 304 => Framing::NoBody,
            200..=299 if hint == BodyHint::Tunnel => Framing::Switch,
            _ if hint == BodyHint::NoBody => Framing::NoBody,
            _ => match (facts.transfer_encoding, facts.content_length) {
                (Some(true), _) => Framing::Chunked,
                (Some(false), _) | (None, ContentLength::Absent) => Framing::UntilClose,
                (None, ContentLength::Valid(n)) => Framing::Length(n),
                (None, ContentLength::Invalid) => Framing::Invalid,
            },
        },
    }
}

/// Lenient httparse settings: a passive observer accepts what peers accept.
fn httparse_config() -> ParserConfig {
    let mut config = ParserConfig::default();
    config
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true);
    config
}

/// Header slots kept on the stack when `max_headers` allows.
const STACK_HEADERS: usize = 128;

/// Parses head bytes (starting at the start line) with httparse.
fn parse_head(kind: MessageKind, bytes: &[u8], limits: &Limits) -> HeadOutcome {
    // Uninitialised: httparse writes only the slots it fills (no 4 KiB
    // zeroed per head; not measurable on its own in the pipeline bench).
    let mut stack = [const { MaybeUninit::<Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap: Vec<MaybeUninit<Header<'_>>>;
    let slots: &mut [MaybeUninit<Header<'_>>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = Vec::with_capacity(limits.max_headers);
        heap.resize_with(limits.max_headers, MaybeUninit::uninit);
        &mut heap
    };
    let config = httparse_config();
    let mut head = Box::new(Head::new(kind));
    let mut facts = FramingFacts::default();
    let parsed = match kind {
        MessageKind::Request => {
            let mut req = httparse::Request::new(&mut []);
            let parsed = config.parse_request_with_uninit_headers(&mut req, bytes, slots);
            if req.method.is_some_and(|m| m.len() > MAX_METHOD_LEN) {
                return HeadOutcome::Invalid;
            }
            if let Ok(Status::Complete(_)) = parsed {
                head.method = req.method.map(Method::from_token);
                if let Some(path) = req.path {
                    set_target(&mut head, path, false, limits);
                }
                head.version_minor = req.version.unwrap_or(1);
                read_fields(&mut head, &mut facts, req.headers);
            }
            parsed
        }
        MessageKind::Response => {
            let mut res = httparse::Response::new(&mut []);
            let parsed = config.parse_response_with_uninit_headers(&mut res, bytes, slots);
            if let Ok(Status::Complete(_)) = parsed {
                head.status = res.code;
                facts.status = res.code;
                head.version_minor = res.version.unwrap_or(1);
                read_fields(&mut head, &mut facts, res.headers);
            }
            parsed
        }
    };
    match parsed {
        Ok(Status::Complete(n)) => {
            head.head_bytes = n;
            HeadOutcome::Complete(ParsedHead { head, facts }, n)
        }
        Ok(Status::Partial) => HeadOutcome::Partial,
        Err(httparse::Error::TooManyHeaders) => HeadOutcome::TooManyHeaders,
        Err(_) => HeadOutcome::Invalid,
    }
}

/// Stores the request-target, cut to `max_target_len` bytes.
fn set_target(head: &mut Head, target: &str, cut: bool, limits: &Limits) {
    let keep = target.floor_char_boundary(limits.max_target_len);
    head.target = Some(target[..keep].to_owned());
    head.target_truncated = cut || keep < target.len();
}

/// Reads the fields the agent uses, and the framing facts.
fn read_fields(head: &mut Head, facts: &mut FramingFacts, fields: &[Header<'_>]) {
    let mut close = false;
    let mut keep_alive = false;
    for field in fields {
        let name = field.name;
        let value = field.value;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("content-length") {
            facts.content_length = merge_content_length(facts.content_length, value);
        } else if is("transfer-encoding") {
            facts.transfer_encoding = Some(final_coding_chunked(value, facts.transfer_encoding));
        } else if is("connection") {
            for token in list_items(value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if is("tracestate") {
            let text = text(value);
            head.tracestate = Some(match head.tracestate.take() {
                Some(prev) => format!("{prev},{text}"),
                None => text,
            });
        } else {
            let slot = match name.len() {
                4 if is("host") => &mut head.host,
                7 if is("upgrade") => &mut head.upgrade,
                10 if is("user-agent") => &mut head.user_agent,
                11 if is("traceparent") => {
                    head.traceparent.get_or_insert_with(|| text(value));
                    continue;
                }
                12 if is("content-type") => &mut head.content_type,
                _ => continue,
            };
            // Few distinct values per host: one shared copy of each.
            slot.get_or_insert_with(|| intern_text(value));
        }
    }
    if let ContentLength::Valid(n) = facts.content_length {
        head.content_length = Some(n);
    }
    head.chunked = facts.transfer_encoding == Some(true);
    head.connection_close = close || (head.version_minor == 0 && !keep_alive);
}

/// Field value as text (lossy), without surrounding whitespace.
fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).trim().to_owned()
}

/// The non-empty, trimmed items of a comma-separated field value.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
}

/// Folds one Content-Length field into what earlier ones said: every value
/// must be the same digits-only number.
fn merge_content_length(prev: ContentLength, value: &[u8]) -> ContentLength {
    let mut merged = prev;
    for item in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
        merged = match (merged, parse_decimal(item)) {
            (ContentLength::Invalid, _) | (_, None) => ContentLength::Invalid,
            (ContentLength::Absent, Some(n)) => ContentLength::Valid(n),
            (ContentLength::Valid(m), Some(n)) if m == n => merged,
            (ContentLength::Valid(_), Some(_)) => ContentLength::Invalid,
        };
    }
    merged
}

/// Digits-only decimal, without overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(d)
    })
}

/// Whether the last coding of a Transfer-Encoding field (or of the earlier
/// ones, if this one is empty) is chunked.
fn final_coding_chunked(value: &[u8], prev: Option<bool>) -> bool {
    let coding = |item: &[u8]| {
        let name = item.split(|&b| b == b';').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"chunked")
    };
    list_items(value)
        .last()
        .map_or(prev.unwrap_or(false), coding)
}

/// The head fields of a head cut short: the start line and at most
/// `max_headers` field lines seen in full, or what a cut start line shows.
fn partial_head(kind: MessageKind, bytes: &[u8], limits: &Limits) -> Option<ParsedHead> {
    let mut parsed = match complete_lines(bytes, limits.max_headers) {
        Some(len) => {
            let mut lines = Vec::with_capacity(len + 2);
            lines.extend_from_slice(&bytes[..len]);
            lines.extend_from_slice(b"\r\n");
            match parse_head(kind, &lines, limits) {
                HeadOutcome::Complete(parsed, _) => parsed,
                _ => return None,
            }
        }
        None => partial_start_line(kind, bytes, limits)?,
    };
    parsed.head.complete = false;
    parsed.head.head_bytes = bytes.len();
    Some(parsed)
}

/// Length of the start line plus at most `max_fields` following lines, if
/// the start line is complete.
fn complete_lines(bytes: &[u8], max_fields: usize) -> Option<usize> {
    let mut ends = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1);
    let start_line = ends.next()?;
    Some(ends.take(max_fields).last().unwrap_or(start_line))
}

/// A start line without its end: requests give the method and the target
/// seen; responses need the status code.
fn partial_start_line(kind: MessageKind, bytes: &[u8], limits: &Limits) -> Option<ParsedHead> {
    let mut head = Box::new(Head::new(kind));
    let mut facts = FramingFacts::default();
    match kind {
        MessageKind::Request => {
            let sp = bytes.iter().position(|&b| b == b' ')?;
            let method = std::str::from_utf8(&bytes[..sp]).ok()?;
            if !(1..=MAX_METHOD_LEN).contains(&method.len()) || !method.bytes().all(is_tchar) {
                return None;
            }
            let rest = bytes[sp..].trim_ascii_start();
            let len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let target = &rest[..len];
            if target.is_empty() || !target.iter().all(|&b| b > b' ' && b != 0x7f) {
                return None;
            }
            head.method = Some(Method::from_token(method));
            set_target(
                &mut head,
                &String::from_utf8_lossy(target),
                len == rest.len(),
                limits,
            );
            if rest[len..].trim_ascii_start().starts_with(b"HTTP/1.0") {
                head.version_minor = 0;
            }
        }
        MessageKind::Response => {
            let version = match bytes.get(..9)? {
                b"HTTP/1.0 " => 0,
                b"HTTP/1.1 " => 1,
                _ => return None,
            };
            let code = bytes[9..].trim_ascii_start().get(..3)?;
            let status = parse_decimal(code).and_then(|n| u16::try_from(n).ok())?;
            head.version_minor = version;
            head.status = Some(status);
            facts.status = Some(status);
        }
    }
    head.connection_close = head.version_minor == 0;
    Some(ParsedHead { head, facts })
}

/// RFC 9110 token character.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether the first bytes of a message (as many as there are) can start a
/// message of `kind`: a method token and a space, or "HTTP/1.".
fn prefix_plausible(kind: MessageKind, bytes: &[u8]) -> bool {
    match kind {
        MessageKind::Request => {
            let token = bytes.iter().take_while(|&&b| is_tchar(b)).count();
            match bytes.get(token) {
                None => token <= MAX_METHOD_LEN,
                Some(b' ') => (1..=MAX_METHOD_LEN).contains(&token),
                Some(_) => false,
            }
        }
        MessageKind::Response => {
            let n = bytes.len().min(7);
            bytes[..n] == b"HTTP/1."[..n]
        }
    }
}

/// Whether a syscall's data looks like the start of a message, strictly
/// enough to resynchronize on: for requests, an upper-case method, a space
/// and a target start (and, if the line ends within `data`, an HTTP/1.x
/// version); for responses "HTTP/1.x " and a status code.
pub fn plausible_start(kind: MessageKind, data: &[u8]) -> bool {
    match kind {
        MessageKind::Request => plausible_request_line(data),
        MessageKind::Response => {
            matches!(data.get(..9), Some(b"HTTP/1.0 " | b"HTTP/1.1 "))
                && data[9..].iter().take(3).all(u8::is_ascii_digit)
        }
    }
}

fn plausible_request_line(data: &[u8]) -> bool {
    let method = data
        .iter()
        .take_while(|&&b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
        .count();
    if !(1..=MAX_METHOD_LEN).contains(&method) || data.get(method) != Some(&b' ') {
        return false;
    }
    let target_start = data
        .get(method + 1)
        .is_some_and(|&b| b == b'/' || b == b'*' || b.is_ascii_alphanumeric());
    if !target_start {
        return false;
    }
    match data.iter().position(|&b| b == b'\n') {
        None => true,
        Some(lf) => {
            let line = data[..lf].strip_suffix(b"\r").unwrap_or(&data[..lf]);
            line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0")
        }
    }
}

#[cfg(test)]
mod tests;
