//! Frontend (client → server) messages: what each body holds that the agent
//! uses, and how plausible a header is for resynchronisation and role
//! inference. Mirrors the kernel's frontend checks in
//! `agent-common/src/classify/postgres.rs`.

use super::wire::{
    CANCEL_REQUEST, GSSENC_REQUEST, PROTOCOL_3, SSL_REQUEST, be32, cstr, is_texty, name_ok,
};

/// Longest statement or portal name kept.
pub const MAX_NAME: usize = 128;

pub fn length_ok(tag: u8, len: u32) -> bool {
    match tag {
        b'S' | b'H' | b'X' | b'c' => len == 0,
        b'Q' | b'f' | b'p' => len >= 1,
        b'P' => len >= 4,
        b'B' => len >= 8,
        b'E' => len >= 5,
        b'D' | b'C' => len >= 2,
        b'F' => len >= 10,
        b'd' => true,
        _ => false,
    }
}

/// A plausible start of SQL text.
fn sql_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || matches!(b, b'(' | b' ' | b'\t' | b'\n' | b'\r' | b'-' | b'/')
}

/// See [`super::wire::plausible`].
pub fn plausible(tag: u8, len: u32, body: &[u8], whole: bool) -> Option<u32> {
    let strength = match tag {
        b'S' | b'H' | b'X' | b'c' => 2,
        b'Q' => {
            let text = if whole {
                body.strip_suffix(&[0])?
            } else {
                body
            };
            if !text.iter().take(64).all(|&b| is_texty(b)) {
                return None;
            }
            match text.first() {
                Some(&b) if sql_start(b) => 2,
                Some(_) => return None,
                None if whole && len == 1 => 1,
                None => 0,
            }
        }
        b'P' => {
            let name = name_ok(body, MAX_NAME)?;
            let query = &body[name.min(body.len())..];
            if !query
                .iter()
                .take(64)
                .take_while(|&&b| b != 0)
                .all(|&b| is_texty(b))
            {
                return None;
            }
            if query.first().is_some_and(|&b| b != 0 && !sql_start(b)) {
                return None;
            }
            2
        }
        b'B' => {
            let portal = name_ok(body, MAX_NAME)?;
            let rest = &body[portal.min(body.len())..];
            name_ok(rest, MAX_NAME)?;
            if body.len() > portal && cstr(rest).is_some() {
                2
            } else {
                1
            }
        }
        b'E' => {
            let name = name_ok(body, MAX_NAME)?;
            if whole {
                if body.len() != name + 4 || body[name - 1] != 0 {
                    return None;
                }
                2
            } else {
                1
            }
        }
        b'D' | b'C' => {
            let kind = *body.first()?;
            if kind != b'S' && kind != b'P' {
                return None;
            }
            let name = name_ok(&body[1..], MAX_NAME)?;
            if whole && name + 1 != body.len() {
                return None;
            }
            2
        }
        b'F' => 1,
        _ => 0,
    };
    Some(strength)
}

/// An untyped startup-phase message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untyped {
    Startup(StartupParams),
    SslRequest,
    GssEncRequest,
    CancelRequest,
    /// Another protocol version or code.
    Other(u32),
}

/// The StartupMessage parameters the agent uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupParams {
    pub user: Option<String>,
    pub database: Option<String>,
    pub application_name: Option<String>,
}

pub fn untyped(body: &[u8]) -> Untyped {
    let Some(code) = be32(body, 0) else {
        return Untyped::Other(0);
    };
    match code {
        SSL_REQUEST => Untyped::SslRequest,
        GSSENC_REQUEST => Untyped::GssEncRequest,
        CANCEL_REQUEST => Untyped::CancelRequest,
        c if c >> 16 == PROTOCOL_3 >> 16 => {
            let mut p = StartupParams::default();
            let mut rest = &body[4..];
            while let Some((key, after)) = cstr(rest) {
                if key.is_empty() {
                    break;
                }
                let Some((value, after)) = cstr(after) else {
                    break;
                };
                let slot = match key {
                    b"user" => &mut p.user,
                    b"database" => &mut p.database,
                    b"application_name" => &mut p.application_name,
                    _ => {
                        rest = after;
                        continue;
                    }
                };
                *slot = Some(super::wire::text(value, 256));
                rest = after;
            }
            // The database defaults to the user name.
            if p.database.as_deref().is_none_or(str::is_empty) {
                p.database.clone_from(&p.user);
            }
            Untyped::Startup(p)
        }
        c => Untyped::Other(c),
    }
}

/// Whether the first bytes of a frontend stream are an untyped message.
pub fn starts_untyped(data: &[u8]) -> bool {
    let (Some(len), Some(code)) = (be32(data, 0), be32(data, 4)) else {
        return false;
    };
    match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        c => c >> 16 == PROTOCOL_3 >> 16 && (8..=10_000).contains(&len),
    }
}

/// A query text from a body prefix: the text, and whether it was cut
/// (`complete == false`, or the body longer than kept).
pub fn query_text(body: &[u8], len: u32, complete: bool) -> (&[u8], bool) {
    let whole = complete && body.len() == len as usize;
    match body.iter().position(|&b| b == 0) {
        Some(nul) => (&body[..nul], false),
        None => (body, !whole || body.len() < len as usize),
    }
}

/// Parse: statement name, query text, whether the text was cut.
pub fn parse(body: &[u8], len: u32, complete: bool) -> Option<(&[u8], &[u8], bool)> {
    let (name, rest) = cstr(body)?;
    let offset = name.len() + 1;
    let (text, cut) = query_text(rest, len.saturating_sub(offset as u32), complete);
    Some((name, text, cut))
}

/// Bind: portal and statement names.
pub fn bind(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (portal, rest) = cstr(body)?;
    let (statement, _) = cstr(rest)?;
    Some((portal, statement))
}

/// Execute: portal name and row limit (0: all rows).
pub fn execute(body: &[u8]) -> Option<(&[u8], u32)> {
    let (portal, rest) = cstr(body)?;
    Some((portal, be32(rest, 0).unwrap_or(0)))
}

/// Describe / Close: `S`tatement or `P`ortal, and the name.
pub fn target(body: &[u8]) -> Option<(u8, &[u8])> {
    let kind = *body.first()?;
    let (name, _) = cstr(&body[1..])?;
    Some((kind, name))
}
