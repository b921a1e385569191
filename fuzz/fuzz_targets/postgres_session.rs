//! Fuzzes the PostgreSQL session (framing, message decoding, pairing, SQL
//! splitting/sanitizing/summarizing) with arbitrary two-way streams cut into
//! arbitrary syscalls with arbitrary gaps and tails.
//!
//! Input layout:
//! * byte 0: settings. Bit 0: server side (else client side); bit 1:
//!   sanitization off; bit 2: small limits (64-byte query texts, 2 prepared
//!   statements, 4 pending messages).
//! * then syscalls, each `[head, len, gap, len bytes of data]`: `head` bit 0
//!   is the direction (ingress/egress), bits 1-7 the tail length (0..=64,
//!   capped by the gap); `len` is the data length (cut short at the end of
//!   the input); `gap` encodes the uncaptured count (high bit clear: none;
//!   0xff: 2^40; else (gap & 0x7f)^2), the tail being its last bytes (taken
//!   from the data, cyclically).
//!
//! Checks: no panic; bounded buffering and queue; statements with ordered
//! times and unique increasing sequence numbers; idle after `close()`. Then,
//! without gaps, the statements of the stream with consecutive same-side
//! syscalls merged must equal those of the split stream when neither run
//! lost framing. The SQL helpers are also run on the raw input as text.
#![no_main]

use agent::protocol::postgres::{
    session::{Limits, PgSession, PgStatement, StatementText},
    sql,
};
use agent::protocol::{EventTimes, Outcome};
use agent_common::Direction;
use libfuzzer_sys::fuzz_target;

struct Call {
    direction: Direction,
    data: Vec<u8>,
    gap: u64,
    tail: Vec<u8>,
}

fn syscalls(mut input: &[u8]) -> Vec<Call> {
    let mut out = Vec::new();
    while let [head, len, gap, rest @ ..] = input {
        let len = usize::from(*len).min(rest.len());
        let data = rest[..len].to_vec();
        let gap = match *gap {
            g if g & 0x80 == 0 => 0,
            0xff => 1 << 40,
            g => u64::from(g & 0x7f).pow(2),
        };
        let want_tail = usize::from(head >> 1).min(64);
        let tail_len = (want_tail as u64).min(gap) as usize;
        let tail = if data.is_empty() {
            vec![0; tail_len]
        } else {
            (0..tail_len).map(|i| data[i % data.len()]).collect()
        };
        out.push(Call {
            direction: if head & 1 == 0 {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            data,
            gap,
            tail,
        });
        input = &rest[len..];
    }
    out
}

/// What is compared between runs.
fn key(s: &PgStatement) -> (String, Option<String>, Option<u64>, Option<String>, bool) {
    let text = match &s.text {
        StatementText::Known(q) => q.text.to_string(),
        StatementText::Unknown { statement, portal } => format!("?{statement:?}{portal:?}"),
    };
    (
        text,
        s.operation.clone(),
        s.rows,
        s.error.as_ref().and_then(|e| e.code.clone()),
        s.suspended,
    )
}

struct Run {
    statements: Vec<PgStatement>,
    desynced: bool,
}

fn run(calls: &[Call], is_server: bool, limits: Limits, expire: bool) -> Run {
    let mut s = PgSession::new(is_server, limits);
    let mut out = Vec::new();
    let mut desynced = false;
    for (i, c) in calls.iter().enumerate() {
        let t = 1000 * (i as u64 + 1);
        let times = EventTimes {
            enter_ns: t,
            exit_ns: t + 5,
            tid: 1,
        };
        s.on_data(c.direction, &c.data, c.gap, &c.tail, times, &mut out);
        assert!(s.buffered() <= 2 * (limits.max_query_bytes + 256 + 10_000));
        assert!(s.pending() <= limits.max_pending);
        desynced |= !s.take_desyncs().is_empty();
        let _ = s.take_counts();
        if expire && i % 7 == 6 {
            s.expire(t, 1_000_000, &mut out);
        }
    }
    s.close(1_000_000_000, &mut out);
    desynced |= !s.take_desyncs().is_empty();
    assert!(s.is_idle());
    for (i, st) in out.iter().enumerate() {
        assert!(st.end_ns >= st.start_ns);
        assert_eq!(st.seq, i as u64);
        if let StatementText::Known(q) = &st.text {
            assert!(q.text.len() <= limits.max_query_bytes + 4);
            assert!(q.summary.as_ref().is_none_or(|s| s.len() <= sql::MAX_SUMMARY_LEN));
        }
        let _ = matches!(st.outcome, Outcome::Complete);
    }
    Run {
        statements: out,
        desynced: desynced || s.stopped().is_some(),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&settings, rest)) = input.split_first() else {
        return;
    };
    let is_server = settings & 1 != 0;
    let mut limits = Limits {
        sanitize: settings & 2 == 0,
        ..Limits::default()
    };
    if settings & 4 != 0 {
        limits.max_query_bytes = 64;
        limits.max_prepared = 2;
        limits.max_pending = 4;
    }
    let calls = syscalls(rest);
    run(&calls, is_server, limits, true);

    // Split invariance without gaps.
    let gapless: Vec<Call> = calls
        .iter()
        .map(|c| Call {
            direction: c.direction,
            data: c.data.clone(),
            gap: 0,
            tail: Vec::new(),
        })
        .collect();
    let mut merged: Vec<Call> = Vec::new();
    for c in &gapless {
        match merged.last_mut() {
            Some(m) if m.direction == c.direction => m.data.extend_from_slice(&c.data),
            _ => merged.push(Call {
                direction: c.direction,
                data: c.data.clone(),
                gap: 0,
                tail: Vec::new(),
            }),
        }
    }
    let split = run(&gapless, is_server, limits, false);
    let whole = run(&merged, is_server, limits, false);
    if !split.desynced && !whole.desynced {
        let a: Vec<_> = split.statements.iter().map(key).collect();
        let b: Vec<_> = whole.statements.iter().map(key).collect();
        assert_eq!(a, b, "split differs from merged");
    }

    // The SQL helpers on arbitrary text.
    let text = String::from_utf8_lossy(rest);
    let _ = sql::split_statements(&text);
    assert!(sql::sanitize(&text, 128).len() <= 128 + 4);
    let _ = sql::summarize(&text);
});
