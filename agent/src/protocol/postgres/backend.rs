//! Backend (server → client) messages: what each body holds that the agent
//! uses (command tags, error fields, row descriptions), and how plausible a
//! header is for resynchronisation and role inference.

use std::borrow::Cow;

use super::wire::{be16, be32, cstr, is_texty, text};

/// Most columns a row can have (`MaxTupleAttributeNumber`).
pub const MAX_COLUMNS: u16 = 1664;

pub fn length_ok(tag: u8, len: u32) -> bool {
    match tag {
        b'1' | b'2' | b'3' | b'n' | b's' | b'I' | b'c' => len == 0,
        b'Z' => len == 1,
        b'K' => len == 8,
        b'R' | b'V' => len >= 4,
        b'S' | b'T' | b'D' | b't' => len >= 2,
        b'C' | b'E' | b'N' => len >= 1,
        b'A' => len >= 6,
        b'G' | b'H' | b'W' => len >= 3,
        b'v' => len >= 8,
        b'd' => true,
        _ => false,
    }
}

/// Error and notice field codes (protocol 3.0, section "Error and Notice
/// Message Fields").
fn is_field_code(b: u8) -> bool {
    b"SVCMDHPpqWstcdnFLR".contains(&b)
}

/// See [`super::wire::plausible`].
pub fn plausible(
    tag: u8,
    len: u32,
    body: &[u8],
    whole: bool,
    row_hint: Option<u16>,
) -> Option<u32> {
    let strength = match tag {
        b'1' | b'2' | b'3' | b'n' | b's' | b'I' | b'c' | b'K' => 2,
        b'Z' => match body.first() {
            Some(b'I' | b'T' | b'E') => 2,
            Some(_) => return None,
            None => 1,
        },
        b'C' => {
            let t = if whole {
                body.strip_suffix(&[0])?
            } else {
                body
            };
            if !t.first().is_none_or(u8::is_ascii_uppercase)
                || !t
                    .iter()
                    .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ')
            {
                return None;
            }
            if t.is_empty() { 0 } else { 2 }
        }
        b'E' | b'N' => {
            let code = *body.first()?;
            if !is_field_code(code) {
                return None;
            }
            let value = &body[1..];
            if !value
                .iter()
                .take(32)
                .take_while(|&&b| b != 0)
                .all(|&b| is_texty(b))
            {
                return None;
            }
            if whole && body.last() != Some(&0) {
                return None;
            }
            2
        }
        b'T' => {
            let Some(n) = be16(body, 0) else {
                return Some(0);
            };
            if n > MAX_COLUMNS || u64::from(len) < 2 + 19 * u64::from(n) {
                return None;
            }
            2
        }
        b'D' => {
            let Some(n) = be16(body, 0) else {
                return Some(0);
            };
            if n > MAX_COLUMNS || u64::from(len) < 2 + 4 * u64::from(n) {
                return None;
            }
            if row_hint.is_some_and(|h| h != n) {
                return None;
            }
            // Column lengths, as far as captured, must fit the message.
            let mut at = 2usize;
            let mut seen_all = true;
            for _ in 0..n {
                let Some(l) = be32(body, at) else {
                    seen_all = false;
                    break;
                };
                at += 4;
                if l != u32::MAX {
                    at = at.saturating_add(l as usize);
                }
                if at > len as usize {
                    return None;
                }
            }
            if whole && seen_all && at != len as usize {
                return None;
            }
            // The expected column count and consistent lengths are as
            // distinctive as two messages.
            match (row_hint.is_some(), seen_all) {
                (true, _) if n > 0 => 3,
                (false, true) if n > 0 => 2,
                _ => 1,
            }
        }
        b'S' => {
            let (name, rest) = cstr(body).unwrap_or((body, &[]));
            if name.is_empty() || !name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_') {
                return None;
            }
            if !rest.iter().take_while(|&&b| b != 0).all(|&b| is_texty(b)) {
                return None;
            }
            2
        }
        b'R' => match be32(body, 0) {
            Some(0 | 3 | 7 | 9 | 12) if len == 4 => 2,
            Some(5) if len == 8 => 2,
            Some(2 | 6 | 8 | 10 | 11) => 2,
            Some(_) => return None,
            None => 0,
        },
        b't' => match be16(body, 0) {
            Some(n) if u64::from(len) == 2 + 4 * u64::from(n) => 2,
            Some(_) => return None,
            None => 0,
        },
        b'G' | b'H' | b'W' => match (body.first(), be16(body, 1)) {
            (Some(0 | 1), Some(n)) if u64::from(len) == 3 + 2 * u64::from(n) => 2,
            (Some(0 | 1), None) => 1,
            _ => return None,
        },
        b'A' | b'V' | b'v' => 1,
        _ => 0,
    };
    Some(strength)
}

/// Operations CommandComplete tags name most often: returned as `&'static
/// str`, so a statement's end allocates nothing for its tag.
const COMMON_OPERATIONS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "COPY",
    "FETCH",
    "MOVE",
    "SET",
    "SHOW",
    "START TRANSACTION",
    "SAVEPOINT",
    "RELEASE",
    "PREPARE",
    "DEALLOCATE",
    "EXECUTE",
    "DISCARD ALL",
    "LISTEN",
    "NOTIFY",
    "RESET",
];

/// Longest tag text kept.
const MAX_TAG: usize = 64;

/// A CommandComplete tag: the operation (`INSERT`, `CREATE TABLE`) and the
/// row count it reports, if any (`SELECT 5`, `INSERT 0 1` → 1). Words are
/// single-spaced; trailing numbers are counts (the last one is the rows).
pub fn command_tag(body: &[u8]) -> (Cow<'static, str>, Option<u64>) {
    let raw = cstr(body).map_or(body, |(t, _)| t);
    if raw.len() <= MAX_TAG && raw.is_ascii() {
        // Peel trailing numeric words off the bytes, no allocation.
        let mut op = raw;
        let mut count = None;
        loop {
            let end = op.trim_ascii_end();
            let start = end
                .iter()
                .rposition(u8::is_ascii_whitespace)
                .map_or(0, |i| i + 1);
            let word = &end[start..];
            match std::str::from_utf8(word)
                .ok()
                .and_then(|w| w.parse::<u64>().ok())
            {
                Some(n) if !word.is_empty() => {
                    count.get_or_insert(n);
                    op = &end[..start];
                }
                _ => {
                    op = end;
                    break;
                }
            }
        }
        let op = op.trim_ascii_start();
        if let Some(common) = COMMON_OPERATIONS.iter().find(|c| c.as_bytes() == op) {
            return (Cow::Borrowed(*common), count);
        }
        // ASCII: the bytes are the text.
        let text = String::from_utf8_lossy(op);
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        return (Cow::Owned(words.join(" ")), count);
    }
    tag_words(raw)
}

/// The general path: any bytes, cut to [`MAX_TAG`], split into words.
fn tag_words(raw: &[u8]) -> (Cow<'static, str>, Option<u64>) {
    let tag = text(raw, MAX_TAG);
    let mut words: Vec<&str> = tag.split_ascii_whitespace().collect();
    let mut count = None;
    while let Some(last) = words.last() {
        match last.parse::<u64>() {
            Ok(n) => {
                count.get_or_insert(n);
                words.pop();
            }
            Err(_) => break,
        }
    }
    (Cow::Owned(words.join(" ")), count)
}

/// The fields of an ErrorResponse / NoticeResponse the agent uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// SQLSTATE (`C`).
    pub code: Option<String>,
    /// Non-localized severity (`V`), else the localized one (`S`).
    pub severity: Option<String>,
    /// Primary message (`M`), cut to 512 bytes.
    pub message: Option<String>,
    /// Error position in the query string, 1-based characters (`P`).
    pub position: Option<usize>,
}

pub fn error_fields(body: &[u8]) -> ErrorFields {
    let mut f = ErrorFields::default();
    let mut rest = body;
    while let Some((&code, after)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let Some((value, after)) = cstr(after) else {
            break;
        };
        match code {
            b'C' if value.len() == 5 && value.iter().all(u8::is_ascii_alphanumeric) => {
                f.code = Some(text(value, 5));
            }
            b'V' => f.severity = Some(text(value, 16)),
            b'S' if f.severity.is_none() => f.severity = Some(text(value, 16)),
            b'M' => f.message = Some(text(value, 512)),
            b'P' => f.position = std::str::from_utf8(value).ok().and_then(|p| p.parse().ok()),
            _ => {}
        }
        rest = after;
    }
    f
}

/// RowDescription / DataRow column count.
pub fn columns(body: &[u8]) -> Option<u16> {
    be16(body, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(command_tag(b"INSERT 0 1\0"), ("INSERT".into(), Some(1)));
        assert_eq!(command_tag(b"SELECT 5\0"), ("SELECT".into(), Some(5)));
        assert_eq!(
            command_tag(b"CREATE TABLE\0"),
            ("CREATE TABLE".into(), None)
        );
        assert_eq!(command_tag(b"COPY 50"), ("COPY".into(), Some(50)));
        assert_eq!(command_tag(b""), ("".into(), None));
        // Common operations are static; others and odd spacing are owned
        // and single-spaced, as the slow path makes them.
        assert!(matches!(
            command_tag(b"SELECT 1\0").0,
            Cow::Borrowed("SELECT")
        ));
        assert!(matches!(
            command_tag(b"START TRANSACTION\0").0,
            Cow::Borrowed(_)
        ));
        assert_eq!(
            command_tag(b" CREATE  TABLE \0"),
            ("CREATE TABLE".into(), None)
        );
        assert_eq!(command_tag(b"INSERT 0 +7\0"), ("INSERT".into(), Some(7)));
        assert_eq!(command_tag(b"12 34\0"), ("".into(), Some(34)));
        assert_eq!(command_tag(b"SELECT x1\0"), ("SELECT x1".into(), None));
        // Longer than MAX_TAG: cut first (the count is cut too, then
        // overflows: no count, as before).
        let long = [b"SELECT ".as_slice(), &[b'9'; 70], b"\0"].concat();
        assert_eq!(command_tag(&long), tag_words(&long[..long.len() - 1]));
        assert_eq!(command_tag(&long).1, None);
        assert_eq!(
            command_tag("CRÉER 3\0".as_bytes()),
            ("CRÉER".into(), Some(3))
        );
    }

    /// The allocation-free path and the general one agree on every tag
    /// shape.
    #[test]
    fn tag_paths_agree() {
        for tag in [
            "SELECT 5",
            "INSERT 0 1",
            "CREATE TABLE",
            "COPY 50",
            "",
            " ",
            "1",
            "MOVE 0",
            "FETCH 10",
            "DISCARD ALL",
            "ALTER  TABLE",
            "SELECT\t3",
            "A 1 B 2",
            "X 99999999999999999999",
        ] {
            let mut body = tag.as_bytes().to_vec();
            body.push(0);
            let fast = command_tag(&body);
            assert_eq!(fast, tag_words(tag.as_bytes()), "{tag:?}");
        }
    }

    #[test]
    fn errors() {
        let body = b"SERROR\0VERROR\0C23505\0Mduplicate key\0P12\0\0";
        let f = error_fields(body);
        assert_eq!(f.code.as_deref(), Some("23505"));
        assert_eq!(f.severity.as_deref(), Some("ERROR"));
        assert_eq!(f.message.as_deref(), Some("duplicate key"));
        assert_eq!(f.position, Some(12));
        assert_eq!(error_fields(b"Cbad\0"), ErrorFields::default());
    }

    #[test]
    fn plausibility() {
        assert_eq!(plausible(b'Z', 1, b"I", true, None), Some(2));
        assert_eq!(plausible(b'Z', 1, b"x", true, None), None);
        assert_eq!(plausible(b'C', 9, b"SELECT 1\0", true, None), Some(2));
        assert_eq!(plausible(b'C', 9, b"select 1\0", true, None), None);
        let row = [0, 1, 0, 0, 0, 3, b'a', b'b', b'c'];
        assert_eq!(plausible(b'D', 9, &row, true, Some(1)), Some(3));
        assert_eq!(plausible(b'D', 9, &row, true, None), Some(2));
        assert_eq!(plausible(b'D', 9, &row, true, Some(2)), None);
        assert_eq!(plausible(b'D', 10, &row, true, None), None);
    }
}
