//! PostgreSQL protocol 3.0 message starts, from the first 16 bytes of one
//! syscall and the syscall's byte count. Userspace
//! (`agent/src/protocol/postgres/`) validates further and tells the kernel
//! to ignore a connection that is not PostgreSQL after all.
//!
//! Recognised:
//! * untyped startup-phase messages: StartupMessage (length, protocol 3.x,
//!   a parameter name), SSLRequest and GSSENCRequest (8 bytes, alone),
//!   CancelRequest (16 bytes, alone);
//! * for connections opened before the agent started, typed message starts
//!   whose 4-byte big-endian length fits the syscall and whose first body
//!   bytes have the message's shape: frontend Query (SQL text with its NUL
//!   where visible), Parse, Bind, Execute, Describe, Close (names), Sync and
//!   Terminate (alone); backend CommandComplete (an upper-case tag),
//!   ReadyForQuery (alone), RowDescription, ErrorResponse/NoticeResponse
//!   (`S` + severity), ParseComplete/BindComplete followed by another
//!   backend header.
//!
//! What else could look like this: binary protocols with a length prefix
//! (MySQL, Redis' RESP is text, Kafka, TDS, DNS over TCP, TLS records, HTTP/2
//! frames). A 4-byte length fitting the syscall *and* a type byte *and*
//! texty or exactly-structured bodies rule out TLS (0x16/0x17 first), HTTP
//! and HTTP/2 (text, or a length beyond the syscall), and make a chance
//! match on the others rare; those are then ignored by userspace, at the
//! cost of one syscall's record.

use crate::CLASSIFY_BYTES;

const PROTOCOL_3: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Largest message body the server accepts (1 GiB).
const MAX_LEN: u32 = 0x3fff_ffff;

#[inline(always)]
fn be32(b: &[u8; CLASSIFY_BYTES], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// SQL text byte (printable, white space, or UTF-8).
#[inline(always)]
const fn texty(c: u8) -> bool {
    (c >= 0x20 && c < 0x7f) || c == b'\t' || c == b'\n' || c == b'\r' || c >= 0x80
}

/// Statement / portal name byte.
#[inline(always)]
const fn name_byte(c: u8) -> bool {
    (c > 0x20 && c < 0x7f) || c >= 0x80
}

/// A plausible first byte of SQL text.
#[inline(always)]
const fn sql_start(c: u8) -> bool {
    c.is_ascii_alphabetic()
        || c == b'('
        || c == b' '
        || c == b'\t'
        || c == b'\n'
        || c == b'-'
        || c == b'/'
}

#[inline(always)]
pub fn postgres(b: &[u8; CLASSIFY_BYTES], len: usize, total: u64) -> bool {
    if len >= 8 && untyped(b, len, total) {
        return true;
    }
    if len < 5 {
        return false;
    }
    let l = be32(b, 1);
    if !(4..=MAX_LEN).contains(&l) || u64::from(l) + 1 > total {
        return false;
    }
    let l = l as usize;
    match b[0] {
        b'Q' => query(b, len, l),
        b'P' => parse(b, len, l),
        b'B' => bind(b, len, l),
        b'E' => execute(b, len, l) || severity(b, len),
        b'D' | b'C' if names_target(b, len, l) => true,
        b'C' => command_complete(b, len, l),
        b'S' | b'X' => l == 4 && total == 5,
        b'Z' => l == 5 && len >= 6 && total == 6 && matches!(b[5], b'I' | b'T' | b'E'),
        b'T' => row_description(b, len, l),
        b'N' => severity(b, len),
        b'1' | b'2' => l == 4 && len >= 10 && backend_header(b),
        _ => false,
    }
}

#[inline(always)]
fn untyped(b: &[u8; CLASSIFY_BYTES], len: usize, total: u64) -> bool {
    let l = be32(b, 0);
    let code = be32(b, 4);
    if code == SSL_REQUEST || code == GSSENC_REQUEST {
        return l == 8 && total == 8;
    }
    if code == CANCEL_REQUEST {
        return l == 16 && total == 16;
    }
    // Protocol 3.0 to 3.2, a whole message, a parameter name after the code.
    code >> 16 == PROTOCOL_3 >> 16
        && code & 0xffff <= 2
        && l > 8
        && l <= 10_000
        && u64::from(l) <= total
        && len > 8
        && (b[8].is_ascii_lowercase() || b[8] == b'_')
}

/// Query: SQL text, its NUL where the message ends within the bytes seen.
#[inline(always)]
fn query(b: &[u8; CLASSIFY_BYTES], len: usize, l: usize) -> bool {
    if l < 5 || len < 6 || !sql_start(b[5]) {
        return false;
    }
    let mut i = 6;
    while i < CLASSIFY_BYTES {
        if i < len {
            let ok = if i == l {
                b[i] == 0
            } else if i < l {
                texty(b[i])
            } else {
                true
            };
            if !ok {
                return false;
            }
        }
        i += 1;
    }
    true
}

/// Parse: a statement name (maybe empty), its NUL, then SQL text.
#[inline(always)]
fn parse(b: &[u8; CLASSIFY_BYTES], len: usize, l: usize) -> bool {
    if l < 8 {
        return false;
    }
    let mut nul_seen = false;
    let mut i = 5;
    while i < CLASSIFY_BYTES {
        if i < len && i <= l {
            let c = b[i];
            if !nul_seen {
                if c == 0 {
                    nul_seen = true;
                    if i + 1 < len && !sql_start(b[i + 1]) {
                        return false;
                    }
                } else if !name_byte(c) {
                    return false;
                }
            } else if c != 0 && !texty(c) {
                return false;
            }
        }
        i += 1;
    }
    nul_seen || len == CLASSIFY_BYTES
}

/// Bind: portal name, NUL, statement name, NUL (then binary).
#[inline(always)]
fn bind(b: &[u8; CLASSIFY_BYTES], len: usize, l: usize) -> bool {
    if l < 12 {
        return false;
    }
    let mut nuls = 0;
    let mut i = 5;
    while i < CLASSIFY_BYTES {
        if i < len && nuls < 2 {
            let c = b[i];
            if c == 0 {
                nuls += 1;
            } else if !name_byte(c) {
                return false;
            }
        }
        i += 1;
    }
    nuls == 2 || len == CLASSIFY_BYTES
}

/// Execute: portal name, NUL, 4-byte row limit: the NUL is at `l - 4`.
#[inline(always)]
fn execute(b: &[u8; CLASSIFY_BYTES], len: usize, l: usize) -> bool {
    if l < 9 {
        return false;
    }
    let nul = l - 4;
    let mut i = 5;
    while i < CLASSIFY_BYTES {
        if i < len {
            let ok = if i < nul {
                name_byte(b[i])
            } else if i == nul {
                b[i] == 0
            } else {
                true
            };
            if !ok {
                return false;
            }
        }
        i += 1;
    }
    true
}

/// Describe / Close: `S` or `P`, a name, its NUL ending the message.
#[inline(always)]
fn names_target(b: &[u8; CLASSIFY_BYTES], len: usize, l: usize) -> bool {
    if l < 6 || len < 6 || (b[5] != b'S' && b[5] != b'P') {
        return false;
    }
    let mut i = 6;
    while i < CLASSIFY_BYTES {
        if i < len {
            let ok = if i < l {
                name_byte(b[i])
            } else if i == l {
                b[i] == 0
            } else {
                true
            };
            if !ok {
                return false;
            }
        }
        i += 1;
    }
    true
}

/// CommandComplete: an upper-case tag (`SELECT 1`, `INSERT 0 1`), its NUL.
#[inline(always)]
fn command_complete(b: &[u8; CLASSIFY_BYTES], len: usize, l: usize) -> bool {
    if !(6..=68).contains(&l) || len < 6 || !b[5].is_ascii_uppercase() {
        return false;
    }
    let mut i = 6;
    while i < CLASSIFY_BYTES {
        if i < len {
            let c = b[i];
            let ok = if i < l {
                c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' '
            } else if i == l {
                c == 0
            } else {
                true
            };
            if !ok {
                return false;
            }
        }
        i += 1;
    }
    true
}

/// RowDescription: 1..=1664 columns, enough bytes for them, a name start.
#[inline(always)]
fn row_description(b: &[u8; CLASSIFY_BYTES], len: usize, l: usize) -> bool {
    if len < 8 {
        return false;
    }
    let n = u16::from_be_bytes([b[5], b[6]]) as usize;
    (1..=1664).contains(&n) && l >= 6 + 19 * n && name_byte(b[7])
}

/// ErrorResponse / NoticeResponse: the `S` field, a severity word, NUL.
#[inline(always)]
fn severity(b: &[u8; CLASSIFY_BYTES], len: usize) -> bool {
    if len < 8 || b[5] != b'S' {
        return false;
    }
    let mut words = 0;
    let mut i = 6;
    while i < CLASSIFY_BYTES {
        if i < len && words >= 0 {
            let c = b[i];
            if c == 0 {
                words = -1;
            } else if c.is_ascii_uppercase() || c >= 0x80 {
                words = 1;
            } else {
                return false;
            }
        }
        i += 1;
    }
    words != 0
}

/// After a 5-byte ParseComplete/BindComplete: another backend header.
#[inline(always)]
fn backend_header(b: &[u8; CLASSIFY_BYTES]) -> bool {
    let next = be32(b, 6);
    matches!(
        b[5],
        b'2' | b'T' | b'D' | b'C' | b'n' | b'E' | b's' | b'I' | b'Z' | b't'
    ) && (4..=MAX_LEN).contains(&next)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;

    fn classify(s: &[u8], total: u64) -> bool {
        let mut b = [0u8; CLASSIFY_BYTES];
        let n = s.len().min(CLASSIFY_BYTES);
        b[..n].copy_from_slice(&s[..n]);
        postgres(&b, n, total)
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn whole(m: &[u8]) -> bool {
        classify(m, m.len() as u64)
    }

    #[test]
    fn startup_phase() {
        let mut startup = 0u32.to_be_bytes().to_vec();
        startup.extend_from_slice(&PROTOCOL_3.to_be_bytes());
        startup.extend_from_slice(b"user\0postgres\0database\0postgres\0\0");
        let n = startup.len() as u32;
        startup[..4].copy_from_slice(&n.to_be_bytes());
        assert!(whole(&startup));
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        assert!(whole(&ssl));
        let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        assert!(whole(&gss));
        let mut cancel = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
        cancel.extend_from_slice(&[0, 0, 0x5c, 0x18, 0x87, 0x02, 0x62, 0xb9]);
        assert!(whole(&cancel));
        // Followed by more data, or a length past the syscall: no.
        assert!(!classify(&ssl, 9));
        assert!(!classify(&startup, startup.len() as u64 - 1));
        // Protocol 2.0, or a code nobody sends.
        let mut v2 = startup.clone();
        v2[4..8].copy_from_slice(&0x0002_0000u32.to_be_bytes());
        assert!(!whole(&v2));
    }

    #[test]
    fn frontend_messages() {
        assert!(whole(&msg(b'Q', b"SELECT 1\0")));
        assert!(whole(&msg(
            b'Q',
            b"select abalance from pgbench_accounts where aid = 1;\0"
        )));
        assert!(whole(&msg(b'Q', b"-- c\nSELECT 1\0")));
        let mut ext = msg(b'P', b"\0SELECT abalance FROM t WHERE aid = $1\0\0\0");
        ext.extend(msg(b'B', b"\0\0\0\0\0\x01\0\0\0\x0525961\0\x01\0\0"));
        assert!(whole(&ext));
        assert!(whole(&msg(b'P', b"P_1\0UPDATE t SET a = $1\0\0\0")));
        let mut prepared = msg(
            b'B',
            b"\0P_1\0\0\0\0\x02\0\0\0\x042165\0\0\0\x0557713\0\x01\0\0",
        );
        prepared.extend(msg(b'D', b"P\0"));
        assert!(whole(&prepared));
        assert!(whole(&msg(
            b'B',
            b"\0s0\0\0\x02\0\x01\0\x01\0\x02\0\0\0\x04\0\0\0\x01"
        )));
        let mut exec = msg(b'E', b"\0\0\0\0\0");
        exec.extend(msg(b'S', b""));
        assert!(whole(&exec));
        assert!(whole(&msg(b'E', b"p0\0\0\0\0\x07")));
        assert!(whole(&msg(b'C', b"Ss3\0")));
        assert!(whole(&msg(b'S', b"")));
        assert!(whole(&msg(b'X', b"")));
    }

    #[test]
    fn backend_messages() {
        let mut done = msg(b'C', b"SELECT 1\0");
        done.extend(msg(b'Z', b"I"));
        assert!(whole(&done));
        assert!(whole(&msg(b'Z', b"I")));
        let mut ext = msg(b'1', b"");
        ext.extend(msg(b'2', b""));
        assert!(whole(&ext));
        assert!(whole(&msg(
            b'T',
            b"\0\x01abalance\0\0\0@\x18\0\x03\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0"
        )));
        assert!(whole(&msg(
            b'E',
            b"SERROR\0VERROR\0C42601\0Msyntax error\0\0"
        )));
        assert!(whole(&msg(b'N', b"SNOTICE\0VNOTICE\0C00000\0Mx\0\0")));
    }

    #[test]
    fn other_protocols_are_not_postgres() {
        let h2_settings = [0u8, 0, 18, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100, 0];
        let mysql_query = [
            0x21u8, 0, 0, 0, 3, b'S', b'E', b'L', b'E', b'C', b'T', b' ', b'1', b' ', b'+', b' ',
        ];
        let mysql_81 = [
            0x51u8, 0, 0, 0, 0x03, b'S', b'E', b'L', b'E', b'C', b'T', b' ', b'1', b' ', b'+', b' ',
        ];
        let mysql_81_prepare = [
            0x51u8, 0, 0, 0, 0x16, b'S', b'E', b'L', b'E', b'C', b'T', b' ', b'1', b' ', b'+', b' ',
        ];
        let redis = *b"*3\r\n$3\r\nSET\r\n$1\r\n";
        let tls = [0x16u8, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3, 0, 0, 0, 0, 0];
        let dns = [0u8, 29, 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e'];
        let kafka = [0u8, 0, 0, 40, 0, 18, 0, 3, 0, 0, 0, 1, 0, 9, b'c', b'l'];
        for (name, bytes, total) in [
            ("http", &b"GET / HTTP/1.1\r\nHost: x\r\n"[..], 64u64),
            ("http response", b"HTTP/1.1 200 OK\r\n", 64),
            ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24),
            ("h2 settings", &h2_settings, 27),
            ("mysql", &mysql_query, 37),
            ("mysql 81-byte query", &mysql_81, 85),
            ("ssh", b"SSH-2.0-OpenSSH_9.2\r\n", 21),
            ("redis", &redis, 64),
            ("tls", &tls, 517),
            ("dns", &dns, 31),
            ("kafka", &kafka, 44),
            ("json", b"{\"jsonrpc\":\"2.0\"}", 17),
            ("zeros", &[0u8; 16], 16),
        ] {
            assert!(!classify(bytes, total), "{name}");
        }
        // A MySQL COM_STMT_PREPARE whose payload length happens to be 81
        // (0x51 = 'Q') and whose command byte makes a plausible length is
        // the shape of a Query: classified, then rejected by userspace
        // (the message after it does not follow). Documented, not hidden.
        assert!(classify(&mysql_81_prepare, 85));
    }

    #[test]
    fn never_reads_past_len() {
        let q = msg(b'Q', b"SELECT 1\0");
        let mut b = [0xffu8; CLASSIFY_BYTES];
        b[..q.len()].copy_from_slice(&q);
        assert!(postgres(&b, q.len(), q.len() as u64));
        assert!(!postgres(&b, 4, q.len() as u64));
    }
}
