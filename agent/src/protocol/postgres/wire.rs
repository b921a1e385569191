//! Wire-level facts shared by both directions: which stream a message is
//! on, body decoding helpers, and the per-tag plausibility rules that
//! framing and resynchronisation rely on (`frontend` / `backend` hold the
//! rules of each direction).

use super::{backend, frontend};

/// Which side sent a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Client → server.
    Frontend,
    /// Server → client.
    Backend,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Self::Frontend => "frontend",
            Self::Backend => "backend",
        }
    }
}

/// Protocol 3.0 in a StartupMessage.
pub const PROTOCOL_3: u32 = 196_608;
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// Whether a typed message's body length is possible for its tag (exact
/// sizes of fixed messages; unknown tags are impossible).
pub fn length_ok(stream: Stream, tag: u8, len: u32) -> bool {
    match stream {
        Stream::Frontend => frontend::length_ok(tag, len),
        Stream::Backend => backend::length_ok(tag, len),
    }
}

/// How strongly a message header and body prefix look like a real message
/// of `stream` (0: possible but says little, 2: well-formed and
/// distinctive), or `None` if impossible. `whole`: `body` is the entire
/// body.
pub fn plausible(
    stream: Stream,
    tag: u8,
    len: u32,
    body: &[u8],
    whole: bool,
    row_hint: Option<u16>,
) -> Option<u32> {
    if !length_ok(stream, tag, len) {
        return None;
    }
    match stream {
        Stream::Frontend => frontend::plausible(tag, len, body, whole),
        Stream::Backend => backend::plausible(tag, len, body, whole, row_hint),
    }
}

pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The NUL-terminated string at the start of `b` and what follows it.
/// `None` when no NUL is in `b`.
pub fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = b.iter().position(|&c| c == 0)?;
    Some((&b[..nul], &b[nul + 1..]))
}

/// Text of a protocol string (lossy UTF-8), cut to `max` bytes.
pub fn text(b: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(b);
    let cut = s.floor_char_boundary(max.min(s.len()));
    s[..cut].to_string()
}

/// Printable ASCII or common white space.
pub fn is_texty(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r') || b >= 0x80
}

/// Whether `b` is a NUL-terminated identifier-like name (printable ASCII,
/// no spaces) within its first `max` bytes, possibly empty. If `b` ends
/// before a NUL (a captured prefix), its bytes must still be name bytes.
pub fn name_ok(b: &[u8], max: usize) -> Option<usize> {
    for (i, &c) in b.iter().enumerate().take(max + 1) {
        if c == 0 {
            return Some(i + 1);
        }
        if !(0x21..0x7f).contains(&c) && c < 0x80 {
            return None;
        }
    }
    if b.len() <= max { Some(b.len()) } else { None }
}
