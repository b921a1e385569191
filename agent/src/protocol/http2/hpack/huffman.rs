//! The HPACK Huffman code (RFC 7541 Appendix B), decoding only.
//!
//! The code is canonical: codes of one length are consecutive and follow
//! symbol order, and shorter codes precede longer ones. So the table is
//! just the code length of each of the 257 symbols (256 octets and EOS);
//! the codes themselves are derived at compile time, and decoding walks
//! the input bit by bit comparing against the first code of each length.

/// Code length in bits of symbols 0..=255 and EOS (256), RFC 7541
/// Appendix B.
const LENGTHS: [u8; 257] = [
    // 0x00..=0x1f
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    // ' ' ! " # $ % & ' ( ) * + , - . /
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    // 0..9 : ; < = > ?
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    // @ A..O
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    // P..Z [ \ ] ^ _
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    // ` a..o
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    // p..z { | } ~ DEL
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    // 0x80..=0xff
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    // EOS
    30,
];

const MAX_LEN: usize = 30;
const EOS: u16 = 256;

/// Canonical-code tables: for each length, the first code, the number of
/// codes, and where its symbols start in [`Canonical::symbols`].
struct Canonical {
    first_code: [u32; MAX_LEN + 1],
    count: [u16; MAX_LEN + 1],
    offset: [u16; MAX_LEN + 1],
    /// Symbols ordered by (length, symbol).
    symbols: [u16; 257],
}

const fn canonical() -> Canonical {
    let mut count = [0u16; MAX_LEN + 1];
    let mut i = 0;
    while i < 257 {
        count[LENGTHS[i] as usize] += 1;
        i += 1;
    }
    let mut first_code = [0u32; MAX_LEN + 1];
    let mut offset = [0u16; MAX_LEN + 1];
    let mut code = 0u32;
    let mut at = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        first_code[len] = code;
        offset[len] = at;
        code = (code + count[len] as u32) << 1;
        at += count[len];
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut next = offset;
    let mut s = 0;
    while s < 257 {
        let l = LENGTHS[s] as usize;
        symbols[next[l] as usize] = s as u16;
        next[l] += 1;
        s += 1;
    }
    Canonical {
        first_code,
        count,
        offset,
        symbols,
    }
}

static CODE: Canonical = canonical();

/// Why a Huffman string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("the EOS symbol inside a string")]
    Eos,
    #[error("padding longer than 7 bits or not all ones")]
    Padding,
}

/// Decodes `src` (a complete Huffman-coded string) appending to `out`,
/// which is left with what was decoded before an error.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let mut code = 0u32;
    let mut len = 0usize;
    // Whether every bit of the code in progress is 1 (a valid padding).
    let mut all_ones = true;
    for &byte in src {
        for shift in (0..8).rev() {
            let bit = u32::from(byte >> shift & 1);
            code = code << 1 | bit;
            len += 1;
            all_ones &= bit == 1;
            let idx = code.wrapping_sub(CODE.first_code[len]);
            if idx < u32::from(CODE.count[len]) {
                let sym = CODE.symbols[(CODE.offset[len] as u32 + idx) as usize];
                if sym == EOS {
                    return Err(HuffmanError::Eos);
                }
                out.push(sym as u8);
                code = 0;
                len = 0;
                all_ones = true;
            } else if len >= MAX_LEN {
                // Unreachable for a complete code, kept as a guard.
                return Err(HuffmanError::Padding);
            }
        }
    }
    if len > 7 || !all_ones {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Code of `sym`, derived from the canonical tables.
    fn code_of(sym: u16) -> (u32, usize) {
        let len = LENGTHS[sym as usize] as usize;
        let start = CODE.offset[len] as usize;
        let pos = CODE.symbols[start..start + CODE.count[len] as usize]
            .iter()
            .position(|&s| s == sym)
            .unwrap();
        (CODE.first_code[len] + pos as u32, len)
    }

    #[test]
    fn codes_match_rfc_7541_appendix_b() {
        // (symbol, code, length) samples from the RFC's table.
        for (sym, code, len) in [
            (0u16, 0x1ff8u32, 13usize),
            (1, 0x7fffd8, 23),
            (10, 0x3ffffffc, 30),
            (22, 0x3ffffffe, 30),
            (b' ' as u16, 0x14, 6),
            (b'!' as u16, 0x3f8, 10),
            (b'0' as u16, 0x0, 5),
            (b'a' as u16, 0x3, 5),
            (b'X' as u16, 0xfc, 8),
            (b'\\' as u16, 0x7fff0, 19),
            (b'~' as u16, 0x1ffd, 13),
            (127, 0xffffffc, 28),
            (128, 0xfffe6, 20),
            (203, 0x7ffffde, 27),
            (225, 0xfffff3, 24),
            (255, 0x3ffffee, 26),
            (256, 0x3fffffff, 30),
        ] {
            assert_eq!(code_of(sym), (code, len), "symbol {sym}");
        }
    }

    #[test]
    fn code_is_complete() {
        // Kraft sum of a complete prefix code is exactly 1.
        let sum: u64 = LENGTHS
            .iter()
            .map(|&l| 1u64 << (MAX_LEN - l as usize))
            .sum();
        assert_eq!(sum, 1 << MAX_LEN);
    }

    fn dec(hex: &str) -> Result<String, HuffmanError> {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut out = Vec::new();
        decode(&bytes, &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn rfc_7541_examples() {
        // C.4.1 .. C.4.3 and C.6.1.
        assert_eq!(dec("f1e3c2e5f23a6ba0ab90f4ff").unwrap(), "www.example.com");
        assert_eq!(dec("a8eb10649cbf").unwrap(), "no-cache");
        assert_eq!(dec("25a849e95ba97d7f").unwrap(), "custom-key");
        assert_eq!(dec("25a849e95bb8e8b4bf").unwrap(), "custom-value");
        assert_eq!(dec("6402").unwrap(), "302");
        assert_eq!(dec("aec3771a4b").unwrap(), "private");
        assert_eq!(
            dec("d07abe941054d444a8200595040b8166e082a62d1bff").unwrap(),
            "Mon, 21 Oct 2013 20:13:21 GMT"
        );
        assert_eq!(
            dec("9d29ad171863c78f0b97c8e9ae82ae43d3").unwrap(),
            "https://www.example.com"
        );
        assert_eq!(dec("").unwrap(), "");
    }

    #[test]
    fn bad_padding_and_eos() {
        // 'a' (00011) padded with zeros.
        assert_eq!(dec("18"), Err(HuffmanError::Padding));
        // A whole byte of padding.
        assert_eq!(dec("1fff"), Err(HuffmanError::Padding));
        // EOS (30 ones) then padding.
        assert_eq!(dec("ffffffff"), Err(HuffmanError::Eos));
    }
}
