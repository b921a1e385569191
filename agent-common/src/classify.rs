//! Cheap protocol classification of the first bytes of one syscall's data.
//!
//! Runs in the kernel (on connections not yet classified) and is unit-tested
//! on the host. It only decides whether bytes *start* a message of a
//! supported protocol; userspace does the parsing. It must stay free of
//! loops over variable lengths so the verifier accepts it.

use crate::CLASSIFY_BYTES;

mod postgres;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Unknown = 0,
    /// An HTTP/1.x request line or status line.
    Http1 = 1,
    /// The HTTP/2 client connection preface.
    Http2 = 2,
    /// PostgreSQL frontend/backend protocol 3.0.
    Postgres = 3,
}

impl Protocol {
    pub const COUNT: usize = 4;
    pub const ALL: [Protocol; Self::COUNT] = [
        Protocol::Unknown,
        Protocol::Http1,
        Protocol::Http2,
        Protocol::Postgres,
    ];

    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Http1,
            2 => Self::Http2,
            3 => Self::Postgres,
            _ => Self::Unknown,
        }
    }

    /// Label value in the agent's metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Postgres => "postgresql",
        }
    }
}

#[inline(always)]
const fn word(b: &[u8; CLASSIFY_BYTES], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

const fn tag(s: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*s)
}

/// First character of a request target: origin-form `/`, asterisk-form `*`,
/// or absolute-form (`http://`).
#[inline(always)]
const fn is_target_start(c: u8) -> bool {
    c == b'/' || c == b'*' || c == b'h' || c == b'H'
}

/// Classifies the first `len` bytes of `b` (at most [`CLASSIFY_BYTES`]) of
/// a syscall that moved `total` bytes.
#[inline(always)]
pub fn classify_prefix(b: &[u8; CLASSIFY_BYTES], len: usize, total: u64) -> Protocol {
    if postgres::postgres(b, len, total) {
        return Protocol::Postgres;
    }
    if len < 8 {
        return Protocol::Unknown;
    }
    let w0 = word(b, 0);
    // HTTP/2 preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": the first 16 bytes are
    // distinctive enough.
    if w0 == tag(b"PRI ") {
        if len >= 16
            && word(b, 4) == tag(b"* HT")
            && word(b, 8) == tag(b"TP/2")
            && word(b, 12) == tag(b".0\r\n")
        {
            return Protocol::Http2;
        }
        return Protocol::Unknown;
    }
    // An HTTP/2 connection joined mid-stream (open before the agent
    // started, or forgotten while idle): a plausible frame header.
    if h2_frame_plausible(b, len) {
        return Protocol::Http2;
    }
    // Status line "HTTP/1.x NNN".
    if w0 == tag(b"HTTP") {
        if b[4] == b'/' && b[5] == b'1' && b[6] == b'.' && (b[7] == b'1' || b[7] == b'0') {
            return Protocol::Http1;
        }
        return Protocol::Unknown;
    }
    // Request line "METHOD SP target".
    let target_at = match w0 {
        x if x == tag(b"GET ") || x == tag(b"PUT ") => 4,
        x if x == tag(b"POST") || x == tag(b"HEAD") => 5,
        x if x == tag(b"PATC") || x == tag(b"TRAC") => 6,
        x if x == tag(b"DELE") => 7,
        x if x == tag(b"OPTI") || x == tag(b"CONN") => 8,
        _ => return Protocol::Unknown,
    };
    if target_at >= len {
        return Protocol::Unknown;
    }
    // The space before the target, then a plausible target start. CONNECT's
    // target is an authority (host:port), so any character is accepted.
    if b[target_at - 1] != b' ' {
        return Protocol::Unknown;
    }
    if w0 == tag(b"CONN") || is_target_start(b[target_at]) {
        Protocol::Http1
    } else {
        Protocol::Unknown
    }
}

/// Whether the first `len` bytes of `b` start a TLS record
/// ([RFC 8446 §5.1](https://www.rfc-editor.org/rfc/rfc8446#section-5.1)):
/// content type change_cipher_spec, alert, handshake or application_data,
/// legacy version 3.0–3.4, and a length within the 2^14 + 2048 bytes a
/// record may carry. Such a connection is encrypted: its syscalls can never
/// be parsed, so the kernel stops looking at it.
#[inline(always)]
pub fn tls_record(b: &[u8; CLASSIFY_BYTES], len: usize) -> bool {
    if len < 5 {
        return false;
    }
    let content_type_ok = matches!(b[0], 0x14..=0x17);
    let version_ok = b[1] == 0x03 && b[2] <= 0x04;
    let rec_len = (b[3] as u16) << 8 | b[4] as u16;
    content_type_ok && version_ok && rec_len > 0 && rec_len <= (1 << 14) + 2048
}

/// HTTP/2 frame types ([RFC 9113 §6](https://www.rfc-editor.org/rfc/rfc9113#section-6)).
pub mod h2 {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
    /// Frame header length.
    pub const HEADER_LEN: usize = 9;
    /// SETTINGS_MAX_FRAME_SIZE's initial value: frames longer than this
    /// are rare enough that the mid-stream check rejects them.
    pub const DEFAULT_MAX_FRAME: u32 = 16_384;
}

/// Whether `b[..len]` starts with a plausible HTTP/2 frame header, strictly
/// enough that other binary protocols rarely pass: a length within the
/// default maximum frame size, a known type whose flags, length and stream
/// id obey RFC 9113 (SETTINGS: stream 0, length a multiple of 6 and a known
/// first identifier; PING: stream 0, length 8; WINDOW_UPDATE: length 4,
/// non-zero increment; RST_STREAM: stream != 0, length 4; HEADERS: odd
/// stream; ...), the reserved bit clear, and any bytes after the frame
/// consistent with it. PUSH_PROMISE is not accepted (never a good place to
/// join). Shared with userspace, which resynchronises on it.
#[inline(always)]
pub fn h2_frame_plausible(b: &[u8; CLASSIFY_BYTES], len: usize) -> bool {
    if len < h2::HEADER_LEN {
        return false;
    }
    let flen = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
    let ty = b[3];
    let flags = b[4];
    if b[5] & 0x80 != 0 || flen > h2::DEFAULT_MAX_FRAME {
        return false;
    }
    let stream = word(b, 5);
    // Bytes of the payload available in `b`.
    let have = len - h2::HEADER_LEN;
    match ty {
        h2::DATA => stream != 0 && flags & !0x09 == 0,
        h2::HEADERS => {
            // Client-initiated streams are odd; a header block is never
            // empty unless the frame is a bare END_STREAM (trailers).
            stream & 1 == 1 && flags & !0x2d == 0 && (flen > 0 || flags & 0x05 == 0x05)
        }
        h2::PRIORITY => stream != 0 && flags == 0 && flen == 5,
        h2::RST_STREAM => {
            // Error codes are 0x0..=0xd.
            stream != 0
                && flags == 0
                && flen == 4
                && (have < 4 || (b[9] == 0 && b[10] == 0 && b[11] == 0 && b[12] <= 0xd))
        }
        h2::SETTINGS => {
            if stream != 0 || flags & !0x01 != 0 || !flen.is_multiple_of(6) {
                return false;
            }
            if flags == 0x01 {
                return flen == 0;
            }
            // The first identifier: 1..=6, 8 (extended CONNECT) or 9 (no
            // RFC 7540 priorities).
            have < 2 || (b[9] == 0 && matches!(b[10], 1..=6 | 8 | 9))
        }
        h2::PING => stream == 0 && flags & !0x01 == 0 && flen == 8,
        h2::GOAWAY => stream == 0 && flags == 0 && flen >= 8 && (have < 1 || b[9] & 0x80 == 0),
        h2::WINDOW_UPDATE => {
            flags == 0
                && flen == 4
                && (have < 4 || (b[9] & 0x80 == 0 && (b[9] | b[10] | b[11] | b[12]) != 0))
        }
        h2::CONTINUATION => stream != 0 && flags & !0x04 == 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(s: &[u8]) -> Protocol {
        let mut b = [0u8; CLASSIFY_BYTES];
        let n = s.len().min(CLASSIFY_BYTES);
        b[..n].copy_from_slice(&s[..n]);
        classify_prefix(&b, n, 4096)
    }

    #[test]
    fn requests() {
        for r in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"POST /api HTTP/1.1\r\n",
            b"PUT /a HTTP/1.1\r\n",
            b"HEAD / HTTP/1.0\r\n",
            b"DELETE /x/1 HTTP/1.1\r\n",
            b"PATCH /x HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"TRACE / HTTP/1.1\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n",
            b"GET http://example.com/ HTTP/1.1\r\n",
        ] {
            assert_eq!(classify(r), Protocol::Http1, "{:?}", r);
        }
    }

    #[test]
    fn responses() {
        assert_eq!(classify(b"HTTP/1.1 200 OK\r\n"), Protocol::Http1);
        assert_eq!(classify(b"HTTP/1.0 404 Not Found\r\n"), Protocol::Http1);
        assert_eq!(classify(b"HTTP/2 200\r\n"), Protocol::Unknown);
    }

    #[test]
    fn http2_preface() {
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Protocol::Http2
        );
        assert_eq!(classify(b"PRI * HTTP/2.0"), Protocol::Unknown);
    }

    #[test]
    fn http2_mid_stream_frames() {
        for f in [
            // SETTINGS (nginx's first frame): MAX_CONCURRENT_STREAMS 128, ...
            &b"\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x80\x00"[..],
            // SETTINGS ACK.
            b"\x00\x00\x00\x04\x01\x00\x00\x00\x00",
            // HEADERS, stream 1, END_HEADERS.
            b"\x00\x00\x0e\x01\x04\x00\x00\x00\x01\x83\x86\x44\x8a\x62",
            // DATA, stream 3, END_STREAM.
            b"\x00\x00\x05\x00\x01\x00\x00\x00\x03\x00\x00\x00\x00\x00",
            // WINDOW_UPDATE on the connection.
            b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x0f\x00\x01",
            // PING.
            b"\x00\x00\x08\x06\x00\x00\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07",
            // RST_STREAM CANCEL.
            b"\x00\x00\x04\x03\x00\x00\x00\x00\x05\x00\x00\x00\x08",
            // GOAWAY.
            b"\x00\x00\x08\x07\x00\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00",
            // Trailers without fields: HEADERS END_STREAM|END_HEADERS, empty.
            b"\x00\x00\x00\x01\x05\x00\x00\x00\x07",
        ] {
            assert_eq!(classify(f), Protocol::Http2, "{:?}", f);
        }
    }

    #[test]
    fn http2_implausible_frames() {
        for f in [
            // Too long for the default max frame size.
            &b"\x00\x40\x01\x00\x00\x00\x00\x00\x01"[..],
            // DATA on stream 0; unknown DATA flag.
            b"\x00\x00\x05\x00\x00\x00\x00\x00\x00",
            b"\x00\x00\x05\x00\x02\x00\x00\x00\x01",
            // HEADERS on an even stream.
            b"\x00\x00\x05\x01\x04\x00\x00\x00\x02",
            // SETTINGS on a stream, of odd length, ACK with payload, unknown id.
            b"\x00\x00\x06\x04\x00\x00\x00\x00\x01",
            b"\x00\x00\x05\x04\x00\x00\x00\x00\x00",
            b"\x00\x00\x06\x04\x01\x00\x00\x00\x00",
            b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x07\x00",
            // WINDOW_UPDATE of 0, of wrong length.
            b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            b"\x00\x00\x05\x08\x00\x00\x00\x00\x00",
            // Reserved stream bit set.
            b"\x00\x00\x04\x00\x00\x80\x00\x00\x01",
            // PUSH_PROMISE, unknown type.
            b"\x00\x00\x04\x05\x04\x00\x00\x00\x01",
            b"\x00\x00\x04\x0a\x00\x00\x00\x00\x01",
            // A Kafka-like length prefix.
            b"\x00\x00\x00\x2a\x00\x12\x00\x07\x00\x00\x00\x01",
            // Too short for a frame header.
            b"\x00\x00\x00\x04\x01\x00\x00\x00",
        ] {
            assert_eq!(classify(f), Protocol::Unknown, "{:?}", f);
        }
    }

    #[test]
    fn postgres_startup_is_not_http2() {
        // SSLRequest and a StartupMessage: never taken for HTTP/2 frames.
        for f in [
            &b"\x00\x00\x00\x08\x04\xd2\x16\x2f"[..],
            b"\x00\x00\x00\x54\x00\x03\x00\x00user\x00",
        ] {
            assert_ne!(classify(f), Protocol::Http2, "{:?}", f);
        }
    }

    #[test]
    fn not_http() {
        for r in [
            &b""[..],
            b"GET",
            b"GETX / HTTP/1.1",
            b"GET  / HTTP/1.1",
            b"POSTED something",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"SSH-2.0-OpenSSH_9.2",
            // An SSLRequest followed by more bytes than its own 8.
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
            b"DELETED /x",
            b"get / HTTP/1.1\r\n",
        ] {
            assert_eq!(classify(r), Protocol::Unknown, "{:?}", r);
        }
    }

    #[test]
    fn postgres_startup_and_messages() {
        let ssl = b"\x00\x00\x00\x08\x04\xd2\x16\x2f";
        let mut b = [0u8; CLASSIFY_BYTES];
        b[..8].copy_from_slice(ssl);
        assert_eq!(classify_prefix(&b, 8, 8), Protocol::Postgres);
        assert_eq!(
            classify(b"Q\x00\x00\x00\x0dSELECT 1\x00"),
            Protocol::Postgres
        );
        // HTTP methods starting with a PostgreSQL type letter stay HTTP.
        for r in [
            &b"POST /x HTTP/1.1\r\n"[..],
            b"DELETE /x HTTP/1.1\r\n",
            b"PUT / HTTP/1.1\r\n",
        ] {
            assert_eq!(classify(r), Protocol::Http1);
        }
    }

    fn tls(s: &[u8]) -> bool {
        let mut b = [0u8; CLASSIFY_BYTES];
        let n = s.len().min(CLASSIFY_BYTES);
        b[..n].copy_from_slice(&s[..n]);
        tls_record(&b, n)
    }

    #[test]
    fn tls_records() {
        for r in [
            // ClientHello (record version 3.1), ServerHello, TLS 1.3
            // application data, an alert, ChangeCipherSpec.
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03",
            b"\x17\x03\x03\x40\x11",
            b"\x15\x03\x03\x00\x02\x02\x28",
            b"\x14\x03\x03\x00\x01\x01",
        ] {
            assert!(tls(r), "{r:?}");
            // Never a supported protocol either.
            assert_eq!(classify(r), Protocol::Unknown, "{r:?}");
        }
        for r in [
            &b""[..],
            b"\x16\x03\x01\x02",
            // Record too long, empty, unknown content type, version 2.
            b"\x17\x03\x03\x48\x01",
            b"\x17\x03\x03\x00\x00",
            b"\x18\x03\x03\x00\x10",
            b"\x16\x02\x00\x00\x10",
            b"\x17\x03\x05\x00\x10",
            b"GET / HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n",
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
            b"Q\x00\x00\x00\x0dSELECT 1\x00",
            // An HTTP/2 SETTINGS frame.
            b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64",
        ] {
            assert!(!tls(r), "{r:?}");
        }
    }

    #[test]
    fn never_reads_past_len() {
        // Bytes beyond `len` are garbage from a previous use of the buffer.
        let mut b = *b"GET /xxxxxxxxxxx";
        assert_eq!(classify_prefix(&b, 3, 16), Protocol::Unknown);
        b[4] = b'/';
        assert_eq!(classify_prefix(&b, 4, 16), Protocol::Unknown);
    }
}
