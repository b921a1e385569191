//! Fuzzes the HTTP/2 frame parser and HPACK decoder, through the session
//! that drives them, with arbitrary syscalls in both directions.
//!
//! Input layout:
//! * byte 0: settings. Bit 0: server side (else client); bit 1: small
//!   limits (few streams, tiny HPACK table and header blocks); bit 2: start
//!   the request stream with the client preface.
//! * then syscalls, each `[ctl, len, len bytes of data]`: `ctl` bit 7 is the
//!   direction (set: ingress); bits 0-6 encode the uncaptured count after
//!   the data (0: none; 0x7f: 2^40; else n^2).
//!
//! Checks: no panic; `buffered()` within the limits after every syscall;
//! streams bounded by `max_streams`; exchanges well formed (end >= start);
//! nothing open after `close()`. The HPACK decoder is also fed the raw
//! data of every syscall as a header block, whole and as a cut prefix,
//! checking its table stays within its cap.
#![no_main]

use agent::protocol::{
    EventTimes,
    http2::{
        frame::PREFACE,
        hpack::Decoder,
        session::{Http2Session, Limits},
    },
};
use agent_common::Direction;
use libfuzzer_sys::fuzz_target;

fn syscalls(mut input: &[u8]) -> Vec<(Direction, &[u8], u64)> {
    let mut out = Vec::new();
    while let [ctl, len, rest @ ..] = input {
        let len = usize::from(*len).min(rest.len());
        let dir = if ctl & 0x80 != 0 {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        let gap = match ctl & 0x7f {
            0 => 0,
            0x7f => 1 << 40,
            n => u64::from(n) * u64::from(n),
        };
        out.push((dir, &rest[..len], gap));
        input = &rest[len..];
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&settings, rest)) = input.split_first() else {
        return;
    };
    let is_server = settings & 1 != 0;
    let limits = if settings & 2 != 0 {
        Limits {
            max_streams: 3,
            max_header_table_bytes: 64,
            max_header_block_bytes: 256,
        }
    } else {
        Limits::default()
    };
    let mut s = Http2Session::new(is_server, limits);
    let mut out = Vec::new();
    let mut t = 0u64;
    if settings & 4 != 0 {
        let dir = if is_server {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        s.on_data(dir, PREFACE, 0, EventTimes::default(), &mut out);
    }
    let mut hpack = Decoder::new(limits.max_header_table_bytes);
    for (dir, data, gap) in syscalls(rest) {
        t += 1000;
        let times = EventTimes {
            enter_ns: t,
            exit_ns: t + 10,
            tid: 1,
        };
        s.on_data(dir, data, gap, times, &mut out);
        // Two parsers' header + payload bounds, and two pending blocks.
        let bound = 2 * (9 + limits.max_header_block_bytes.max(256)) + 2 * limits.max_header_block_bytes.max(256);
        assert!(s.buffered() <= bound, "buffered {} > {bound}", s.buffered());
        assert!(s.open_streams() <= limits.max_streams);
        if t % 7000 == 0 {
            s.expire(t, 5000, &mut out);
        }
        hpack.decode(data, true, &mut |_| {});
        hpack.decode(&data[..data.len() / 2], false, &mut |_| {});
        assert!(hpack.table().size() <= limits.max_header_table_bytes);
    }
    s.close(t + 1, &mut out);
    assert_eq!(s.open_streams(), 0);
    for e in &out {
        assert!(e.end_ns >= e.start_ns);
        let _ = e.is_grpc();
    }
    let _ = s.take_counts();
    let _ = s.take_problems();
});
