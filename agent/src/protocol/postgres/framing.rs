//! PostgreSQL protocol 3.0 message framing for one direction of one
//! connection, sans-IO.
//!
//! A [`Framer`] is fed the bytes of one stream (everything the client sent,
//! or everything the server sent) syscall by syscall: the captured prefix
//! plus the count of uncaptured bytes after it (a *gap*). It reports whole
//! messages to a [`Sink`] — the tag (`0` for the untyped messages of the
//! startup phase), the body length, and a bounded prefix of the body (only
//! as many bytes as [`keep`] says the agent uses: query texts, names,
//! command tags, error fields; never row data) — and `desync` when framing
//! is lost.
//!
//! Properties:
//!
//! * **Split-invariant**: the same stream cut into feeds anywhere gives the
//!   same messages, up to the first desync.
//! * **Bounded**: at most `keep(tag)` bytes of one message are buffered (a
//!   header is 5 bytes); bodies are skipped by length, so megabytes of
//!   `DataRow` cost nothing but counting.
//! * **Gap-tolerant**: a gap inside a body is skipped by count (the message
//!   is reported with `complete == false`); a gap that covers a message
//!   start loses the framing (`desync(GapInFraming)`).
//! * **Resynchronizing**: after a desync, each feed is searched for a point
//!   from which a chain of plausible messages follows ([`find_sync`]); the
//!   bytes before it are dropped.
//! * **Never panics**, on any input.

use super::wire::{self, Stream};
use crate::protocol::EventTimes;

/// Largest body the server accepts (`PQ_LARGE_MESSAGE_LIMIT`-ish, 1 GiB).
pub const MAX_BODY: u32 = 0x3fff_ffff;
/// Largest untyped startup-phase message (the server's own limit is 10000).
pub const MAX_STARTUP: u32 = 10_000;

/// Why framing was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DesyncReason {
    /// Uncaptured bytes covered a message start.
    GapInFraming,
    /// A header with an unknown tag or an impossible length.
    InvalidHeader,
    /// The connection closed in the middle of a message.
    ClosedMidMessage,
}

impl DesyncReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GapInFraming => "gap_in_framing",
            Self::InvalidHeader => "invalid_header",
            Self::ClosedMidMessage => "closed_mid_message",
        }
    }
}

/// One message as framed.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Type byte; `0` for an untyped startup-phase message (StartupMessage,
    /// SSLRequest, GSSENCRequest, CancelRequest), whose body then starts
    /// with the 4-byte code.
    pub tag: u8,
    /// Body length (the length field minus its own 4 bytes).
    pub len: u32,
    /// The first bytes of the body, at most `keep(stream, tag)`.
    pub body: &'a [u8],
    /// Every byte of the body was captured (no gap inside it). `body` may
    /// still be shorter than `len` because of `keep`.
    pub complete: bool,
    /// The syscall that carried the message's first byte.
    pub start: EventTimes,
}

/// Receives the framer's events.
pub trait Sink {
    fn message(&mut self, msg: &Message<'_>);
    /// A backend's one-byte answer to SSLRequest/GSSENCRequest.
    fn negotiation_answer(&mut self, answer: u8);
    fn desync(&mut self, reason: DesyncReason);
}

/// Body bytes kept for messages of `tag` in `stream`, given the longest
/// query text the agent keeps.
pub fn keep(stream: Stream, tag: u8, max_query: usize) -> usize {
    match (stream, tag) {
        // Untyped: code + startup parameters (or the cancel key).
        (_, 0) => MAX_STARTUP as usize,
        (Stream::Frontend, b'Q') => max_query + 1,
        // Parse: name + query text.
        (Stream::Frontend, b'P') => max_query + 256,
        // Bind: portal + statement names (parameters are not exported).
        (Stream::Frontend, b'B') => 256,
        (Stream::Frontend, b'E' | b'D' | b'C') => 132,
        (Stream::Backend, b'C') => 128,
        (Stream::Backend, b'E' | b'N') => 2048,
        // RowDescription: the column count; AuthenticationRequest: its code;
        // ReadyForQuery: status; Copy*Response: format; DataRow: column count.
        (Stream::Backend, b'T' | b'D' | b'G' | b'H' | b'W') => 2,
        (Stream::Backend, b'R') => 4,
        (Stream::Backend, b'Z') => 1,
        (Stream::Backend, b'K') => 8,
        _ => 0,
    }
}

#[derive(Debug)]
enum State {
    /// Between messages, or reading a header (`have` bytes of it so far).
    Header { buf: [u8; 5], have: u8 },
    /// Reading a body.
    Body {
        tag: u8,
        len: u32,
        remaining: u32,
        complete: bool,
        start: EventTimes,
    },
    /// Framing lost: searching each feed for a sync point.
    Desynced,
    /// Encrypted session, or closed: ignoring all input.
    Stopped,
}

/// Frames one direction of a connection.
#[derive(Debug)]
pub struct Framer {
    stream: Stream,
    max_query: usize,
    state: State,
    /// Body prefix of the current message while it spans feeds.
    buf: Vec<u8>,
    /// The next message is untyped (frontend, startup phase).
    untyped: bool,
    /// The next byte is the answer to SSLRequest/GSSENCRequest (backend).
    answer: bool,
    /// Columns of the result set being sent (from RowDescription): makes
    /// resynchronisation inside DataRow streams exact.
    row_hint: Option<u16>,
    /// Times of the syscall being fed.
    now: EventTimes,
}

impl Framer {
    pub fn new(stream: Stream, max_query: usize) -> Self {
        Self {
            stream,
            max_query,
            state: State::Header {
                buf: [0; 5],
                have: 0,
            },
            buf: Vec::new(),
            untyped: false,
            answer: false,
            row_hint: None,
            now: EventTimes::default(),
        }
    }

    /// The next message is an untyped startup-phase message.
    pub fn expect_untyped(&mut self) {
        self.untyped = true;
    }

    /// The next byte is a one-byte negotiation answer.
    pub fn expect_answer(&mut self) {
        self.answer = true;
    }

    /// Ignore everything from now on (an encrypted session).
    pub fn stop(&mut self) {
        self.state = State::Stopped;
        self.buf = Vec::new();
    }

    pub fn set_row_hint(&mut self, columns: Option<u16>) {
        self.row_hint = columns;
    }

    pub fn is_stopped(&self) -> bool {
        matches!(self.state, State::Stopped)
    }

    pub fn is_desynced(&self) -> bool {
        matches!(self.state, State::Desynced)
    }

    /// Between messages (nothing partially read).
    pub fn is_idle(&self) -> bool {
        matches!(
            self.state,
            State::Header { have: 0, .. } | State::Desynced | State::Stopped
        )
    }

    /// Bytes buffered (at most `keep` of the current message).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds one syscall: `data` was captured, `gap` more bytes were moved
    /// after it without being captured, of which the last `tail.len()` are
    /// `tail` (the kernel copies the end of a truncated plain read/write).
    pub fn feed(
        &mut self,
        data: &[u8],
        gap: u64,
        tail: &[u8],
        now: EventTimes,
        sink: &mut impl Sink,
    ) {
        self.now = now;
        let mut rest = data;
        if matches!(self.state, State::Desynced) {
            match find_sync(self.stream, rest, gap, self.row_hint) {
                Some(at) => {
                    rest = &rest[at..];
                    self.state = State::Header {
                        buf: [0; 5],
                        have: 0,
                    };
                    self.untyped = false;
                    self.answer = false;
                }
                None => return,
            }
        }
        while !rest.is_empty() {
            let used = self.step(rest, sink);
            rest = rest.get(used..).unwrap_or_default();
        }
        if gap > 0 {
            let tail = if tail.len() as u64 <= gap { tail } else { &[] };
            let skip = gap - tail.len() as u64;
            if skip > 0 {
                self.skip_gap(skip, sink);
            }
            self.feed_tail(tail, sink);
        }
    }

    /// The last bytes of a syscall, after its gap: parsed where framing
    /// reaches them, else searched for a chain of messages ending exactly
    /// at the syscall's end (typically CommandComplete + ReadyForQuery).
    fn feed_tail(&mut self, tail: &[u8], sink: &mut impl Sink) {
        if tail.is_empty() {
            return;
        }
        let mut rest = tail;
        if matches!(self.state, State::Desynced) {
            match find_sync(self.stream, tail, 0, self.row_hint) {
                Some(at) => {
                    rest = &tail[at..];
                    self.state = State::Header {
                        buf: [0; 5],
                        have: 0,
                    };
                    self.untyped = false;
                    self.answer = false;
                }
                None => return,
            }
        }
        while !rest.is_empty() {
            let used = self.step(rest, sink);
            rest = rest.get(used..).unwrap_or_default();
        }
    }

    /// The connection ended: a message cut mid-way is a desync.
    pub fn close(&mut self, sink: &mut impl Sink) {
        let cut = matches!(
            self.state,
            State::Body { .. } | State::Header { have: 1.., .. }
        );
        self.stop();
        if cut {
            sink.desync(DesyncReason::ClosedMidMessage);
        }
    }

    fn desync(&mut self, reason: DesyncReason, sink: &mut impl Sink) {
        self.state = State::Desynced;
        self.buf = Vec::new();
        self.row_hint = None;
        sink.desync(reason);
    }

    fn step(&mut self, data: &[u8], sink: &mut impl Sink) -> usize {
        match self.state {
            State::Stopped | State::Desynced => data.len(),
            State::Header { mut buf, mut have } => {
                if have == 0 && self.answer {
                    self.answer = false;
                    let b = data[0];
                    if matches!(b, b'S' | b'N' | b'G') {
                        sink.negotiation_answer(b);
                        return 1;
                    }
                    // Not an answer (a server refusing with an
                    // ErrorResponse): frame it as a message.
                }
                let need = if self.untyped { 4 } else { 5 };
                let take = (need - have as usize).min(data.len());
                buf[have as usize..have as usize + take].copy_from_slice(&data[..take]);
                have += take as u8;
                if (have as usize) < need {
                    self.state = State::Header { buf, have };
                    return take;
                }
                let (tag, raw_len) = if self.untyped {
                    (0, u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]))
                } else {
                    (buf[0], u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]))
                };
                if !header_ok(self.stream, tag, raw_len) {
                    self.desync(DesyncReason::InvalidHeader, sink);
                    return data.len();
                }
                self.untyped = false;
                let len = raw_len - 4;
                self.state = State::Body {
                    tag,
                    len,
                    remaining: len,
                    complete: true,
                    start: self.now,
                };
                if len == 0 {
                    self.finish(sink, &[]);
                }
                take
            }
            State::Body {
                tag,
                len,
                remaining,
                ..
            } => {
                let take = (remaining as usize).min(data.len());
                let keep = keep(self.stream, tag, self.max_query);
                let done = take == remaining as usize;
                let offset = (len - remaining) as usize;
                if let State::Body { remaining, .. } = &mut self.state {
                    *remaining -= take as u32;
                }
                if done && self.buf.is_empty() && offset == 0 {
                    // The whole body is in this feed: no copy.
                    self.finish(sink, &data[..take.min(keep)]);
                    return take;
                }
                if offset < keep {
                    let want = (keep - offset).min(take);
                    self.buf.extend_from_slice(&data[..want]);
                }
                if done {
                    self.finish_buffered(sink);
                }
                take
            }
        }
    }

    /// Finishes the current message with the buffered body prefix (keeping
    /// the buffer's allocation for the next one).
    fn finish_buffered(&mut self, sink: &mut impl Sink) {
        let body = std::mem::take(&mut self.buf);
        self.finish(sink, &body);
        self.buf = body;
        self.buf.clear();
    }

    /// The current message's body is complete: report it.
    fn finish(&mut self, sink: &mut impl Sink, body: &[u8]) {
        let State::Body {
            tag,
            len,
            complete,
            start,
            ..
        } = self.state
        else {
            return;
        };
        self.state = State::Header {
            buf: [0; 5],
            have: 0,
        };
        sink.message(&Message {
            tag,
            len,
            body,
            complete,
            start,
        });
    }

    fn skip_gap(&mut self, gap: u64, sink: &mut impl Sink) {
        match &mut self.state {
            State::Stopped | State::Desynced => {}
            State::Header { .. } => self.desync(DesyncReason::GapInFraming, sink),
            State::Body {
                remaining,
                complete,
                ..
            } => {
                *complete = false;
                if gap < u64::from(*remaining) {
                    *remaining -= gap as u32;
                    return;
                }
                let beyond = gap > u64::from(*remaining);
                *remaining = 0;
                self.finish_buffered(sink);
                if beyond {
                    self.desync(DesyncReason::GapInFraming, sink);
                }
            }
        }
    }
}

/// Whether a header can start a message of `stream`.
fn header_ok(stream: Stream, tag: u8, raw_len: u32) -> bool {
    if raw_len < 4 {
        return false;
    }
    if tag == 0 {
        return (8..=MAX_STARTUP).contains(&raw_len);
    }
    raw_len - 4 <= MAX_BODY && wire::length_ok(stream, tag, raw_len - 4)
}

/// Where in `data` (the captured bytes of one syscall, followed by `gap`
/// uncaptured ones) a chain of plausible messages starts: strong enough
/// evidence to resynchronize on. `row_hint`: the column count of DataRows
/// expected.
pub fn find_sync(stream: Stream, data: &[u8], gap: u64, row_hint: Option<u16>) -> Option<usize> {
    (0..data.len()).find(|&i| chain_ok(stream, data, i, gap, row_hint))
}

/// Messages checked at most from one candidate start.
const MAX_CHAIN: usize = 6;

fn chain_ok(stream: Stream, data: &[u8], mut pos: usize, gap: u64, row_hint: Option<u16>) -> bool {
    let mut strength = 0u32;
    for _ in 0..MAX_CHAIN {
        if pos == data.len() {
            // The chain ends exactly where the syscall's data ends.
            return gap == 0 && strength >= 2;
        }
        let Some(h) = data.get(pos..pos + 5) else {
            // A header cut by the end of the capture: inconclusive.
            return strength >= 4;
        };
        let tag = h[0];
        let raw_len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
        if raw_len < 4 || raw_len - 4 > MAX_BODY {
            return false;
        }
        let len = raw_len - 4;
        let body_start = pos + 5;
        let end = body_start + len as usize;
        let body = &data[body_start.min(data.len())..end.min(data.len())];
        let Some(s) = wire::plausible(stream, tag, len, body, end <= data.len(), row_hint) else {
            return false;
        };
        strength += s;
        if end > data.len() {
            // The message runs past the captured bytes.
            return strength >= 3;
        }
        if strength >= 6 {
            return true;
        }
        pos = end;
    }
    strength >= 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug)]
    struct Rec {
        events: Vec<String>,
    }

    impl Sink for Rec {
        fn message(&mut self, m: &Message<'_>) {
            self.events.push(format!(
                "{}:{}:{}:{}",
                if m.tag == 0 { '0' } else { m.tag as char },
                m.len,
                String::from_utf8_lossy(m.body),
                m.complete
            ));
        }
        fn negotiation_answer(&mut self, a: u8) {
            self.events.push(format!("answer:{}", a as char));
        }
        fn desync(&mut self, r: DesyncReason) {
            self.events.push(format!("desync:{}", r.as_str()));
        }
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_and_splits() {
        let mut stream = msg(b'C', b"SELECT 1\0");
        stream.extend(msg(b'Z', b"I"));
        let whole = {
            let mut f = Framer::new(Stream::Backend, 100);
            let mut r = Rec::default();
            f.feed(&stream, 0, &[], EventTimes::default(), &mut r);
            r.events
        };
        assert_eq!(whole, ["C:9:SELECT 1\0:true", "Z:1:I:true"]);
        for cut in 0..=stream.len() {
            let mut f = Framer::new(Stream::Backend, 100);
            let mut r = Rec::default();
            f.feed(&stream[..cut], 0, &[], EventTimes::default(), &mut r);
            f.feed(&stream[cut..], 0, &[], EventTimes::default(), &mut r);
            assert_eq!(r.events, whole, "cut at {cut}");
        }
    }

    #[test]
    fn gaps_inside_bodies_are_skipped() {
        let mut rows = Vec::new();
        for _ in 0..3 {
            rows.extend(msg(b'D', &[0, 1, 0, 0, 0, 3, b'a', b'b', b'c']));
        }
        let mut f = Framer::new(Stream::Backend, 100);
        let mut r = Rec::default();
        // First row whole, second cut after 8 bytes (6 uncaptured).
        f.feed(&rows[..14 + 8], 6, &[], EventTimes::default(), &mut r);
        f.feed(&rows[28..], 0, &[], EventTimes::default(), &mut r);
        assert_eq!(r.events.len(), 3);
        assert!(r.events[1].ends_with(":false"));
        // A gap past the end of a message loses framing.
        let mut f = Framer::new(Stream::Backend, 100);
        let mut r = Rec::default();
        f.feed(&rows[..14 + 8], 20, &[], EventTimes::default(), &mut r);
        assert_eq!(r.events.last().unwrap(), "desync:gap_in_framing");
    }

    #[test]
    fn resynchronizes_on_a_chain() {
        let mut f = Framer::new(Stream::Backend, 100);
        let mut r = Rec::default();
        f.feed(
            b"\xff\xff\xff\xff\xff",
            0,
            &[],
            EventTimes::default(),
            &mut r,
        );
        assert_eq!(r.events, ["desync:invalid_header"]);
        let mut tail = b"garbage xx".to_vec();
        tail.extend(msg(b'C', b"SELECT 4000\0"));
        tail.extend(msg(b'Z', b"I"));
        f.feed(&tail, 0, &[], EventTimes::default(), &mut r);
        assert_eq!(r.events[1..], ["C:12:SELECT 4000\0:true", "Z:1:I:true"]);
    }

    #[test]
    fn tails_end_bursts() {
        // Rows, then CommandComplete + ReadyForQuery in one big write whose
        // middle is not captured: the tail still ends the result.
        let mut burst = Vec::new();
        for _ in 0..50 {
            burst.extend(msg(
                b'D',
                &[
                    0, 1, 0, 0, 0, 20, b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x',
                    b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x',
                ],
            ));
        }
        burst.extend(msg(b'C', b"SELECT 50\0"));
        burst.extend(msg(b'Z', b"I"));
        for cap in [10, 100, 300, 1000] {
            let mut f = Framer::new(Stream::Backend, 100);
            f.set_row_hint(Some(1));
            let mut r = Rec::default();
            let tail = &burst[burst.len() - 64..];
            f.feed(
                &burst[..cap],
                (burst.len() - cap) as u64,
                tail,
                EventTimes::default(),
                &mut r,
            );
            assert_eq!(
                r.events[r.events.len() - 2..],
                ["C:10:SELECT 50\0:true", "Z:1:I:true"],
                "cap {cap}: {:?}",
                r.events
            );
        }
    }

    #[test]
    fn untyped_and_answers() {
        let mut f = Framer::new(Stream::Frontend, 100);
        f.expect_untyped();
        let mut r = Rec::default();
        let ssl = [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f];
        f.feed(&ssl, 0, &[], EventTimes::default(), &mut r);
        assert_eq!(r.events.len(), 1);
        assert!(r.events[0].starts_with("0:4:"));
        let mut b = Framer::new(Stream::Backend, 100);
        b.expect_answer();
        let mut r = Rec::default();
        b.feed(b"N", 0, &[], EventTimes::default(), &mut r);
        assert_eq!(r.events, ["answer:N"]);
    }
}
