use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

type Fields = Vec<(Option<String>, Option<String>)>;

fn decode(d: &mut Decoder, block: &[u8], complete: bool) -> (Fields, BlockStats) {
    let mut out = Vec::new();
    let stats = d.decode(block, complete, &mut |f: Field<'_>| {
        let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        out.push((s(f.name), s(f.value)));
    });
    (out, stats)
}

fn known(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(n, v)| (Some((*n).to_string()), Some((*v).to_string())))
        .collect()
}

/// RFC 7541 C.3 (requests, no Huffman) and C.4 (the same with Huffman):
/// three blocks on one connection sharing the dynamic table.
#[test]
fn rfc_7541_request_examples() {
    for blocks in [
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
    ] {
        let mut d = Decoder::new(4096);
        let (f, s) = decode(&mut d, &hex(blocks[0]), true);
        assert_eq!(
            f,
            known(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        assert_eq!((s.fields, s.unresolved, s.error), (4, 0, None));
        assert_eq!(d.table().size(), 57);
        let (f, _) = decode(&mut d, &hex(blocks[1]), true);
        assert_eq!(f[3], known(&[(":authority", "www.example.com")])[0]);
        assert_eq!(f[4], known(&[("cache-control", "no-cache")])[0]);
        assert_eq!(d.table().size(), 110);
        let (f, s) = decode(&mut d, &hex(blocks[2]), true);
        assert_eq!(
            f,
            known(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
        assert_eq!(s.unresolved, 0);
        assert_eq!(d.table().size(), 164);
        assert_eq!(d.table().len(), 3);
    }
}

/// RFC 7541 C.5: responses with a 256-byte table, evictions included.
#[test]
fn rfc_7541_response_examples_with_eviction() {
    let mut d = Decoder::new(4096);
    // The decoding side allowed only 256 bytes.
    d.set_limit(256);
    let (f, _) = decode(
        &mut d,
        &hex(
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 \
              3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 \
              7861 6d70 6c65 2e63 6f6d",
        ),
        true,
    );
    assert_eq!(f[0], known(&[(":status", "302")])[0]);
    assert_eq!(f[3], known(&[("location", "https://www.example.com")])[0]);
    assert_eq!(d.table().size(), 222);
    let (f, _) = decode(&mut d, &hex("4803 3330 37c1 c0bf"), true);
    assert_eq!(
        f,
        known(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com")
        ])
    );
    assert_eq!(d.table().size(), 222);
    assert_eq!(d.table().len(), 4);
}

/// The agent joined late: entries the peer inserted before are unresolved,
/// the fields around them still decode, and entries inserted from then on
/// resolve.
#[test]
fn dynamic_table_miss() {
    let mut d = Decoder::new(4096);
    // :method POST, :scheme http, <dyn 62>, <dyn 63>, content-type with a
    // literal value inserted ("application/grpc"), te: trailers (literal,
    // name te, not indexed).
    let mut block = hex("83 86 be bf 5f 10");
    block.extend_from_slice(b"application/grpc");
    block.extend_from_slice(&hex("00 02"));
    block.extend_from_slice(b"te");
    block.extend_from_slice(&hex("08"));
    block.extend_from_slice(b"trailers");
    let (f, s) = decode(&mut d, &block, true);
    assert_eq!(s.fields, 6);
    assert_eq!(s.unresolved, 2);
    assert_eq!(s.error, None);
    assert_eq!(f[0], known(&[(":method", "POST")])[0]);
    assert_eq!(f[2], (None, None));
    assert_eq!(f[3], (None, None));
    assert_eq!(f[4], known(&[("content-type", "application/grpc")])[0]);
    assert_eq!(f[5], known(&[("te", "trailers")])[0]);
    // The next block refers to the new entry (62) and to an old one (63).
    let (f, s) = decode(&mut d, &hex("be bf"), true);
    assert_eq!(f[0], known(&[("content-type", "application/grpc")])[0]);
    assert_eq!(f[1], (None, None));
    assert_eq!(s.unresolved, 1);
    // A literal whose name is an unresolved entry keeps its value, and is
    // inserted as a placeholder: index 62 now has no name but a value.
    let mut block = hex("7f 01 03");
    block.extend_from_slice(b"abc");
    let (f, s) = decode(&mut d, &block, true);
    assert_eq!(f[0], (None, Some("abc".to_string())));
    assert_eq!(s.unresolved, 1);
    let (f, _) = decode(&mut d, &hex("be bf"), true);
    assert_eq!(f[0], (None, Some("abc".to_string())));
    assert_eq!(f[1], known(&[("content-type", "application/grpc")])[0]);
}

#[test]
fn cut_and_malformed_blocks_forget_the_table() {
    let mut d = Decoder::new(4096);
    let mut block = hex("40 01");
    block.extend_from_slice(b"k");
    block.extend_from_slice(&hex("01"));
    block.extend_from_slice(b"v");
    decode(&mut d, &block, true);
    assert_eq!(d.table().len(), 1);
    // A block cut inside a literal: fields before the cut are reported.
    let (f, s) = decode(&mut d, &hex("82 be 40 05 61"), false);
    assert_eq!(f.len(), 2);
    assert_eq!(s.error, Some(HpackError::Truncated));
    assert!(d.table().is_empty());
    // Index 0, an endless integer, a bad Huffman string (value unknown,
    // decoding goes on).
    let (_, s) = decode(&mut d, &hex("80"), true);
    assert_eq!(s.error, Some(HpackError::InvalidIndex));
    let (_, s) = decode(&mut d, &hex("ff ff ff ff ff ff ff"), true);
    assert_eq!(s.error, Some(HpackError::IntegerOverflow));
    let (f, s) = decode(&mut d, &hex("00 01 61 81 00 82"), true);
    assert_eq!(f[0], (Some("a".to_string()), None));
    assert_eq!(f[1], known(&[(":method", "GET")])[0]);
    assert_eq!((s.bad_huffman, s.error), (1, None));
}

#[test]
fn size_update_evicts_and_is_clamped_to_the_limit() {
    let mut d = Decoder::new(4096);
    let mut block = hex("40 01");
    block.extend_from_slice(b"k");
    block.extend_from_slice(&hex("01"));
    block.extend_from_slice(b"v");
    decode(&mut d, &block, true);
    // Size update to 0 then back to 4096 (two updates): the table empties.
    decode(&mut d, &hex("20 3f e1 1f"), true);
    assert!(d.table().is_empty());
}
