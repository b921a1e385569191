//! HTTP/2 framing (RFC 9113 §4) for one direction of one connection,
//! sans-IO.
//!
//! A [`FrameParser`] is fed each syscall's captured bytes and the count of
//! bytes it moved beyond them (a *gap*), like the HTTP/1 parser. It reports
//! every frame to a [`FrameSink`] once the frame's last byte has gone by,
//! with its payload when the frame is one whose content matters (HEADERS,
//! CONTINUATION, PUSH_PROMISE, SETTINGS, RST_STREAM, GOAWAY; DATA only its
//! first [`DATA_PEEK`] bytes), buffered up to a bound; DATA payloads are
//! skipped by count, gaps inside them too.
//!
//! * The client's connection preface (`PRI * HTTP/2.0...`) is consumed when
//!   the stream starts with it; a stream that starts with a frame (the
//!   server side, or a connection the agent joined late) is parsed as is.
//! * A gap that covers a frame header loses the framing: `desync`. So does a
//!   frame header no peer would send (a connection error in RFC 9113). The
//!   parser then resynchronises only at the start of a later syscall whose
//!   bytes begin with a plausible frame header
//!   ([`agent_common::classify::h2_frame_plausible`], the check the kernel
//!   uses to join connections mid-stream).
//! * Split-invariant: the same bytes cut into syscalls at any boundaries
//!   give the same frames (up to the first desync).
//! * Never panics; buffers at most `max_payload` bytes.

use agent_common::{CLASSIFY_BYTES, classify::h2, classify::h2_frame_plausible};

/// The client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// DATA payload bytes kept: the pad length and a gRPC message prefix.
pub const DATA_PEEK: usize = 6;

/// Frame flags.
pub mod flags {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHeader {
    fn parse(b: &[u8; h2::HEADER_LEN]) -> Self {
        Self {
            len: u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// Frames RFC 9113 forbids (a connection error: no peer sends them),
    /// longer than the receiver allows included.
    fn is_valid(&self, max_frame: u32) -> bool {
        if self.len > max_frame {
            return false;
        }
        let on_stream = self.stream != 0;
        match self.kind {
            h2::DATA | h2::HEADERS | h2::CONTINUATION | h2::PUSH_PROMISE => on_stream,
            h2::PRIORITY => on_stream && self.len == 5,
            h2::RST_STREAM => on_stream && self.len == 4,
            h2::SETTINGS => {
                !on_stream
                    && self.len.is_multiple_of(6)
                    && (self.flags & flags::ACK == 0 || self.len == 0)
            }
            h2::PING => !on_stream && self.len == 8,
            h2::GOAWAY => !on_stream && self.len >= 8,
            h2::WINDOW_UPDATE => self.len == 4,
            // Unknown types are ignored (extensions).
            _ => true,
        }
    }

    /// Whether the payload is kept for the sink, and how much of it.
    fn keep(&self, max_payload: usize) -> usize {
        let len = self.len as usize;
        match self.kind {
            h2::HEADERS | h2::CONTINUATION | h2::PUSH_PROMISE => len.min(max_payload),
            h2::DATA => len.min(DATA_PEEK),
            h2::SETTINGS => len.min(max_payload.min(6 * 16)),
            h2::RST_STREAM | h2::GOAWAY => len.min(8),
            _ => 0,
        }
    }
}

/// One frame, reported when its last byte went by.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    /// The kept prefix of the payload (see [`FrameHeader`] kinds).
    pub payload: &'a [u8],
    /// Every payload byte was captured and kept (`payload.len() == len`).
    pub complete: bool,
}

/// Why framing was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DesyncReason {
    /// Uncaptured bytes covered a frame header.
    GapInFraming,
    /// A frame header no peer would send.
    InvalidFrame,
    /// A preface that went wrong after its first bytes.
    BadPreface,
}

impl DesyncReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GapInFraming => "gap_in_framing",
            Self::InvalidFrame => "invalid_frame",
            Self::BadPreface => "bad_preface",
        }
    }
}

/// Receives the parser's events.
pub trait FrameSink {
    fn frame(&mut self, frame: Frame<'_>);
    fn desync(&mut self, reason: DesyncReason);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a stream that may begin with the preface; `n` bytes
    /// of it matched so far.
    Preface(usize),
    /// Reading a frame header (`hdr_len` bytes of it in `hdr`).
    Header,
    /// Inside a payload.
    Payload {
        header: FrameHeader,
        remaining: u32,
        keep: usize,
        /// A gap covered part of the kept prefix.
        cut: bool,
    },
    /// Framing lost: waiting for a syscall that starts with a plausible
    /// frame header.
    Desynced,
}

#[derive(Debug)]
pub struct FrameParser {
    state: State,
    hdr: [u8; h2::HEADER_LEN],
    hdr_len: usize,
    buf: Vec<u8>,
    max_payload: usize,
    /// The receiver's SETTINGS_MAX_FRAME_SIZE.
    max_frame: u32,
    frames: u64,
}

impl FrameParser {
    /// `expect_preface`: the stream may start with the client preface.
    /// `max_payload`: most payload bytes kept per frame.
    pub fn new(expect_preface: bool, max_payload: usize) -> Self {
        Self {
            state: if expect_preface {
                State::Preface(0)
            } else {
                State::Header
            },
            hdr: [0; h2::HEADER_LEN],
            hdr_len: 0,
            buf: Vec::new(),
            max_payload,
            max_frame: h2::DEFAULT_MAX_FRAME,
            frames: 0,
        }
    }

    /// The receiving side advertised SETTINGS_MAX_FRAME_SIZE = `size`
    /// (RFC 9113 bounds it to 16384..=2^24-1).
    pub fn set_max_frame(&mut self, size: u32) {
        self.max_frame = size.clamp(h2::DEFAULT_MAX_FRAME, (1 << 24) - 1);
    }

    /// Frames reported so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Between frames (nothing partially read) or waiting to resync.
    pub fn is_idle(&self) -> bool {
        match self.state {
            State::Header => self.hdr_len == 0,
            State::Preface(n) => n == 0,
            State::Desynced => true,
            State::Payload { .. } => false,
        }
    }

    pub fn is_desynced(&self) -> bool {
        self.state == State::Desynced
    }

    /// Bytes buffered (at most `max_payload` + a frame header).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.hdr_len
    }

    /// Feeds one syscall: `data` captured, then `gap` bytes not captured.
    pub fn feed(&mut self, data: &[u8], gap: u64, sink: &mut impl FrameSink) {
        if self.state == State::Desynced && syscall_start_plausible(data) {
            self.state = State::Header;
            self.hdr_len = 0;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let used = self.step(rest, sink);
            rest = rest.get(used..).unwrap_or_default();
        }
        if gap > 0 {
            self.skip_gap(gap, sink);
        }
    }

    fn step(&mut self, data: &[u8], sink: &mut impl FrameSink) -> usize {
        match self.state {
            State::Preface(n) => {
                let want = &PREFACE[n..];
                let take = want.len().min(data.len());
                let common = data.iter().zip(want).take_while(|(a, b)| a == b).count();
                if common == take {
                    self.state = if n + take == PREFACE.len() {
                        State::Header
                    } else {
                        State::Preface(n + take)
                    };
                    take
                } else if n == 0 && common == 0 {
                    // No preface (the agent joined late): frames from here.
                    self.state = State::Header;
                    0
                } else {
                    self.desync(DesyncReason::BadPreface, sink);
                    data.len()
                }
            }
            State::Header => {
                let take = (h2::HEADER_LEN - self.hdr_len).min(data.len());
                self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[..take]);
                self.hdr_len += take;
                if self.hdr_len == h2::HEADER_LEN {
                    self.hdr_len = 0;
                    let header = FrameHeader::parse(&self.hdr);
                    if !header.is_valid(self.max_frame) {
                        self.desync(DesyncReason::InvalidFrame, sink);
                        return data.len();
                    }
                    self.begin_payload(header, sink);
                }
                take
            }
            State::Payload {
                header,
                remaining,
                keep,
                cut,
            } => {
                let take = (remaining as usize).min(data.len());
                let room = keep.saturating_sub(self.buf.len());
                if room > 0 && !cut {
                    self.buf.extend_from_slice(&data[..take.min(room)]);
                }
                let remaining = remaining - take as u32;
                if remaining == 0 {
                    self.end_payload(header, keep, cut, sink);
                } else if let State::Payload { remaining: r, .. } = &mut self.state {
                    *r = remaining;
                }
                take
            }
            State::Desynced => data.len(),
        }
    }

    fn begin_payload(&mut self, header: FrameHeader, sink: &mut impl FrameSink) {
        let keep = header.keep(self.max_payload);
        self.buf.clear();
        if header.len == 0 {
            self.end_payload(header, 0, false, sink);
            return;
        }
        self.state = State::Payload {
            header,
            remaining: header.len,
            keep,
            cut: false,
        };
    }

    fn end_payload(
        &mut self,
        header: FrameHeader,
        keep: usize,
        cut: bool,
        sink: &mut impl FrameSink,
    ) {
        self.state = State::Header;
        self.frames += 1;
        let complete = !cut && keep == header.len as usize && self.buf.len() == keep;
        sink.frame(Frame {
            header,
            payload: &self.buf,
            complete,
        });
        if self.buf.capacity() > 4 * 1024 {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    fn skip_gap(&mut self, gap: u64, sink: &mut impl FrameSink) {
        match self.state {
            State::Desynced => {}
            State::Preface(0) => {
                // Not even the first byte was seen: the preface or frames
                // were lost.
                self.desync(DesyncReason::GapInFraming, sink);
            }
            State::Preface(_) => self.desync(DesyncReason::GapInFraming, sink),
            State::Header => self.desync(DesyncReason::GapInFraming, sink),
            State::Payload {
                header,
                remaining,
                keep,
                cut,
            } => {
                let cut = cut || self.buf.len() < keep;
                if gap < u64::from(remaining) {
                    self.state = State::Payload {
                        header,
                        remaining: remaining - gap as u32,
                        keep,
                        cut,
                    };
                    return;
                }
                self.end_payload(header, keep, cut, sink);
                if gap > u64::from(remaining) {
                    self.desync(DesyncReason::GapInFraming, sink);
                }
            }
        }
    }

    fn desync(&mut self, reason: DesyncReason, sink: &mut impl FrameSink) {
        self.state = State::Desynced;
        self.hdr_len = 0;
        self.buf.clear();
        sink.desync(reason);
    }
}

/// Whether a syscall's bytes start with a plausible frame header.
pub fn syscall_start_plausible(data: &[u8]) -> bool {
    let mut b = [0u8; CLASSIFY_BYTES];
    let n = data.len().min(CLASSIFY_BYTES);
    b[..n].copy_from_slice(&data[..n]);
    h2_frame_plausible(&b, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        frames: Vec<(FrameHeader, Vec<u8>, bool)>,
        desyncs: Vec<DesyncReason>,
    }

    impl FrameSink for Rec {
        fn frame(&mut self, f: Frame<'_>) {
            self.frames.push((f.header, f.payload.to_vec(), f.complete));
        }
        fn desync(&mut self, reason: DesyncReason) {
            self.desyncs.push(reason);
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn stream() -> Vec<u8> {
        let mut s = PREFACE.to_vec();
        s.extend(frame(h2::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        s.extend(frame(h2::HEADERS, 0x4, 1, &[0x82, 0x86, 0x84]));
        s.extend(frame(h2::DATA, 0x1, 1, &[0u8; 100]));
        s.extend(frame(h2::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        s.extend(frame(h2::RST_STREAM, 0, 1, &[0, 0, 0, 8]));
        s
    }

    #[test]
    fn whole_and_split_at_every_byte() {
        let s = stream();
        let mut whole = Rec::default();
        FrameParser::new(true, 1024).feed(&s, 0, &mut whole);
        assert_eq!(whole.frames.len(), 5);
        assert!(whole.desyncs.is_empty());
        assert_eq!(whole.frames[1].1, vec![0x82, 0x86, 0x84]);
        assert_eq!(whole.frames[2].1, vec![0; DATA_PEEK]);
        assert!(!whole.frames[2].2, "DATA is only peeked");
        for cut in 0..=s.len() {
            let mut split = Rec::default();
            let mut p = FrameParser::new(true, 1024);
            p.feed(&s[..cut], 0, &mut split);
            p.feed(&s[cut..], 0, &mut split);
            assert_eq!(split.frames, whole.frames, "cut at {cut}");
            assert!(p.is_idle());
        }
    }

    #[test]
    fn gap_inside_data_is_skipped_but_not_over_a_header() {
        let s = stream();
        // Cut inside the DATA payload, the rest of it uncaptured.
        let data_at = PREFACE.len() + 15 + 12 + 9;
        let mut rec = Rec::default();
        let mut p = FrameParser::new(true, 1024);
        p.feed(&s[..data_at + 10], 90, &mut rec);
        p.feed(&s[data_at + 100..], 0, &mut rec);
        assert_eq!(rec.frames.len(), 5);
        assert!(rec.desyncs.is_empty());
        // A gap past the DATA frame's end covers the next header: desync,
        // then resync at a syscall that starts with a frame header.
        let mut rec = Rec::default();
        let mut p = FrameParser::new(true, 1024);
        p.feed(&s[..data_at + 10], 95, &mut rec);
        assert_eq!(rec.desyncs, vec![DesyncReason::GapInFraming]);
        p.feed(&s[data_at + 105..data_at + 110], 0, &mut rec);
        assert!(p.is_desynced());
        p.feed(&s[data_at + 100 + 13..], 0, &mut rec);
        assert_eq!(rec.frames.len(), 4);
        assert_eq!(rec.frames[3].0.kind, h2::RST_STREAM);
    }

    #[test]
    fn no_preface_and_invalid_frames() {
        let s = stream();
        let mut rec = Rec::default();
        FrameParser::new(true, 1024).feed(&s[PREFACE.len()..], 0, &mut rec);
        assert_eq!(rec.frames.len(), 5);
        let mut rec = Rec::default();
        // PING on a stream.
        FrameParser::new(false, 1024).feed(&frame(h2::PING, 0, 1, &[0; 8]), 0, &mut rec);
        assert_eq!(rec.desyncs, vec![DesyncReason::InvalidFrame]);
        let mut rec = Rec::default();
        FrameParser::new(true, 1024).feed(b"PRI * HTTP/1.1\r\n", 0, &mut rec);
        assert_eq!(rec.desyncs, vec![DesyncReason::BadPreface]);
    }

    #[test]
    fn large_header_block_is_cut_at_the_bound() {
        let f = frame(h2::HEADERS, 0x4, 1, &[0x82; 100]);
        let mut rec = Rec::default();
        FrameParser::new(false, 10).feed(&f, 0, &mut rec);
        assert_eq!(rec.frames[0].1.len(), 10);
        assert!(!rec.frames[0].2);
    }
}
