//! Session tests over message streams captured from a real PostgreSQL 15
//! server (psql, pgbench, tokio-postgres through a recording relay; see
//! `fixtures/README.md`), fed whole, split at every byte boundary, and cut
//! the way the kernel captures them (a 4096-byte prefix of each syscall of
//! at most 8192 bytes, the rest a gap), from the client's and from the
//! server's side.

use super::*;

/// One recorded read of the relay: which side sent it and the bytes.
type Record = (Stream, Vec<u8>);

fn fixture(bytes: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 5 <= bytes.len() {
        let stream = if bytes[i] == b'F' {
            Stream::Frontend
        } else {
            Stream::Backend
        };
        let n = u32::from_be_bytes(bytes[i + 1..i + 5].try_into().unwrap()) as usize;
        out.push((stream, bytes[i + 5..i + 5 + n].to_vec()));
        i += 5 + n;
    }
    out
}

macro_rules! fx {
    ($name:literal) => {
        fixture(include_bytes!(concat!("fixtures/", $name)))
    };
}

/// A syscall as the session sees it: direction, captured bytes, gap, and
/// the gap's last bytes (the kernel's tail copy).
struct Call {
    stream: Stream,
    data: Vec<u8>,
    gap: u64,
    tail: Vec<u8>,
}

fn whole(records: &[Record]) -> Vec<Call> {
    records
        .iter()
        .map(|(s, d)| Call {
            stream: *s,
            data: d.clone(),
            gap: 0,
            tail: Vec::new(),
        })
        .collect()
}

/// Syscalls of at most `chunk` bytes, each captured up to `cap` bytes,
/// with the kernel's tail of at most `tail` bytes.
fn captured_with_tail(records: &[Record], chunk: usize, cap: usize, tail: usize) -> Vec<Call> {
    let mut out = Vec::new();
    for (s, d) in records {
        for piece in d.chunks(chunk) {
            let keep = piece.len().min(cap);
            let t = (piece.len() - keep).min(tail);
            out.push(Call {
                stream: *s,
                data: piece[..keep].to_vec(),
                gap: (piece.len() - keep) as u64,
                tail: piece[piece.len() - t..].to_vec(),
            });
        }
    }
    out
}

/// As the kernel captures: prefix and a 64-byte tail.
fn captured(records: &[Record], chunk: usize, cap: usize) -> Vec<Call> {
    captured_with_tail(records, chunk, cap, agent_common::TAIL_BYTES)
}

/// The whole stream with record `r` cut at byte `at`.
fn split_at(records: &[Record], r: usize, at: usize) -> Vec<Call> {
    let mut out = Vec::new();
    for (i, (s, d)) in records.iter().enumerate() {
        if i == r && at > 0 && at < d.len() {
            out.push(Call {
                stream: *s,
                data: d[..at].to_vec(),
                gap: 0,
                tail: Vec::new(),
            });
            out.push(Call {
                stream: *s,
                data: d[at..].to_vec(),
                gap: 0,
                tail: Vec::new(),
            });
        } else {
            out.push(Call {
                stream: *s,
                data: d.clone(),
                gap: 0,
                tail: Vec::new(),
            });
        }
    }
    out
}

struct Run {
    statements: Vec<PgStatement>,
    counts: Counts,
    desyncs: Vec<(Stream, &'static str)>,
    stop: Option<Stop>,
    info: ConnInfo,
    idle: bool,
    max_buffered: usize,
}

fn run_with(calls: &[Call], is_server: bool, limits: Limits) -> Run {
    let mut s = PgSession::new(is_server, limits);
    let mut out = Vec::new();
    let mut counts = Counts::default();
    let mut desyncs = Vec::new();
    let mut max_buffered = 0;
    for (i, c) in calls.iter().enumerate() {
        let direction = match (c.stream, is_server) {
            (Stream::Frontend, true) | (Stream::Backend, false) => Direction::Ingress,
            _ => Direction::Egress,
        };
        let t = 1_000 * (i as u64 + 1);
        let times = EventTimes {
            enter_ns: t,
            exit_ns: t + 10,
            tid: 7,
        };
        s.on_data(direction, &c.data, c.gap, &c.tail, times, &mut out);
        max_buffered = max_buffered.max(s.buffered());
        let c = s.take_counts();
        add(&mut counts, &c);
        desyncs.extend(s.take_desyncs());
    }
    let idle = s.pending() == 0;
    let stop = s.stopped();
    let info = s.info().clone();
    s.close(1_000_000_000, &mut out);
    add(&mut counts, &s.take_counts());
    desyncs.extend(s.take_desyncs());
    Run {
        statements: out,
        counts,
        desyncs,
        stop,
        info,
        idle,
        max_buffered,
    }
}

fn run(calls: &[Call], is_server: bool) -> Run {
    run_with(calls, is_server, Limits::default())
}

fn add(a: &mut Counts, b: &Counts) {
    a.startups += b.startups;
    a.startup_errors += b.startup_errors;
    a.ssl_refused += b.ssl_refused;
    a.cancel_requests += b.cancel_requests;
    a.notifications += b.notifications;
    a.not_executed += b.not_executed;
    a.orphan_responses += b.orphan_responses;
    a.unknown_statements += b.unknown_statements;
    a.prepared_evicted += b.prepared_evicted;
    a.pending_overflow += b.pending_overflow;
}

/// A compact, comparable description of a statement:
/// `summary|text|operation|rows|error|outcome` (`-` for none).
fn describe(st: &PgStatement) -> String {
    let (summary, text) = match &st.text {
        StatementText::Known(q) => (
            q.summary.as_deref().unwrap_or("-").to_string(),
            q.text.to_string(),
        ),
        StatementText::Unknown { statement, portal } => (
            "?".into(),
            format!(
                "unknown statement={} portal={}",
                statement.as_deref().unwrap_or("-"),
                portal.as_deref().unwrap_or("-")
            ),
        ),
    };
    let error = st
        .error
        .as_ref()
        .and_then(|e| e.code.clone())
        .or_else(|| st.warning.as_ref().map(|w| format!("warning {w}")))
        .unwrap_or_else(|| "-".into());
    format!(
        "{summary}|{text}|{}|{}|{error}|{}{}",
        st.operation.as_deref().unwrap_or("-"),
        st.rows.map_or("-".to_string(), |r| r.to_string()),
        st.outcome.name(),
        if st.suspended { "|suspended" } else { "" }
    )
}

fn described(r: &Run) -> Vec<String> {
    r.statements.iter().map(describe).collect()
}

/// Every view of a fixture gives `expected`: whole, both sides, and every
/// single split point (fixtures up to `exhaustive_limit` bytes).
fn check_all_ways(records: &[Record], expected: &[&str]) {
    for is_server in [false, true] {
        let r = run(&whole(records), is_server);
        assert_eq!(described(&r), expected, "whole, server={is_server}");
        assert!(r.desyncs.is_empty(), "desyncs {:?}", r.desyncs);
        assert!(r.idle, "not idle at the end");
        // Sequence numbers in order and unique; times ordered.
        for (i, st) in r.statements.iter().enumerate() {
            assert_eq!(st.seq, i as u64);
            assert!(st.end_ns >= st.start_ns);
        }
    }
    for (ri, (_, d)) in records.iter().enumerate() {
        for at in 1..d.len() {
            let r = run(&split_at(records, ri, at), true);
            assert_eq!(
                described(&r),
                expected,
                "record {ri} split at {at} (server side)"
            );
            assert!(
                r.desyncs.is_empty(),
                "record {ri} split at {at}: {:?}",
                r.desyncs
            );
        }
    }
    // Byte by byte.
    let mut calls = Vec::new();
    for (s, d) in records {
        for b in d {
            calls.push(Call {
                stream: *s,
                data: vec![*b],
                gap: 0,
                tail: Vec::new(),
            });
        }
    }
    assert_eq!(described(&run(&calls, false)), expected, "byte by byte");
}

#[test]
fn psql_simple_protocol_session() {
    let records = fx!("psql_simple.bin");
    let expected = [
        "DROP TABLE users|DROP TABLE IF EXISTS users|DROP TABLE|0|-|complete",
        "CREATE TABLE users|CREATE TABLE users(id int primary key, name text)|CREATE TABLE|0|-|complete",
        "INSERT users|INSERT INTO users VALUES (?, ?), (?, ?)|INSERT|0|-|complete",
        "SELECT users|SELECT name FROM users WHERE id = ?|SELECT|1|-|complete",
        // One Query, three statements: one span each.
        "SELECT users|SELECT count(*) FROM users|SELECT|1|-|complete",
        "SELECT|SELECT ? AS \"x;y\"|SELECT|1|-|complete",
        "SELECT|SELECT ?|SELECT|1|-|complete",
        // A syntax error in the second statement fails the whole string
        // before the first one runs: one span, for the statement at fault.
        "SELEC|SELEC ?|-|0|42601|complete",
        "INSERT users|INSERT INTO users VALUES (?, ?)|-|0|23505|complete",
        "COPY users|COPY users FROM STDIN|COPY|0|-|complete",
        "COPY users|COPY users TO STDOUT|COPY|4|-|complete",
        "LISTEN|LISTEN ch|LISTEN|0|-|complete",
        "NOTIFY|NOTIFY ch, ?|NOTIFY|0|-|complete",
        "SELECT|SELECT ? / ?|-|0|22012|complete",
        "BEGIN|BEGIN|BEGIN|0|-|complete",
        "SELECT|SELECT ?|SELECT|1|-|complete",
        "SELECT|SELECT ? / ?|-|0|22012|complete",
        "SELECT|SELECT ?|-|0|25P02|complete",
        "COMMIT|COMMIT|ROLLBACK|0|-|complete",
        "DO|DO ?|DO|0|warning 01000|complete",
    ];
    check_all_ways(&records, &expected);
    let r = run(&whole(&records), true);
    assert_eq!(r.counts.ssl_refused, 1);
    assert_eq!(r.counts.startups, 1);
    assert_eq!(r.counts.notifications, 1);
    assert_eq!(
        r.counts.not_executed, 1,
        "SELECT count(*) before the syntax error"
    );
    assert_eq!(
        r.info,
        ConnInfo {
            database: Some("postgres".into()),
            user: Some("postgres".into()),
            application_name: Some("fixture".into()),
        }
    );
}

#[test]
fn sanitization_can_be_turned_off() {
    let records = fx!("psql_simple.bin");
    let limits = Limits {
        sanitize: false,
        ..Limits::default()
    };
    let r = run_with(&whole(&records), false, limits);
    let texts: Vec<String> = r
        .statements
        .iter()
        .filter_map(|s| match &s.text {
            StatementText::Known(q) => Some(q.text.to_string()),
            StatementText::Unknown { .. } => None,
        })
        .collect();
    assert!(texts.contains(&"INSERT INTO users VALUES (1, 'alice'), (2, 'bob')".to_string()));
    assert!(texts.contains(&"SELECT 'a;b' AS \"x;y\"".to_string()));
}

#[test]
fn pgbench_simple() {
    check_all_ways(
        &fx!("pgbench_simple.bin"),
        &["SELECT pgbench_accounts|SELECT abalance FROM pgbench_accounts WHERE aid = ?|SELECT|1|-|complete";
            3],
    );
}

#[test]
fn pgbench_extended_unnamed_statements() {
    check_all_ways(
        &fx!("pgbench_extended.bin"),
        &["SELECT pgbench_accounts|SELECT abalance FROM pgbench_accounts WHERE aid = $1;|SELECT|1|-|complete";
            3],
    );
}

#[test]
fn pgbench_prepared_named_statements() {
    let upd_a = "UPDATE pgbench_accounts|UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;|UPDATE|0|-|complete";
    let sel = "SELECT pgbench_accounts|SELECT abalance FROM pgbench_accounts WHERE aid = $1;|SELECT|1|-|complete";
    let upd_t = "UPDATE pgbench_tellers|UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;|UPDATE|0|-|complete";
    let upd_b = "UPDATE pgbench_branches|UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;|UPDATE|0|-|complete";
    let ins = "INSERT pgbench_history|INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);|INSERT|0|-|complete";
    let tx = [
        "BEGIN|BEGIN;|BEGIN|0|-|complete",
        upd_a,
        sel,
        upd_t,
        upd_b,
        ins,
        "END|END;|COMMIT|0|-|complete",
    ];
    let expected: Vec<&str> = tx.iter().chain(tx.iter()).copied().collect();
    check_all_ways(&fx!("pgbench_prepared.bin"), &expected);
}

#[test]
fn pgbench_pipeline_before_one_sync() {
    let tx = [
        "SELECT pgbench_accounts|SELECT abalance FROM pgbench_accounts WHERE aid = $1;|SELECT|1|-|complete",
        "SELECT pgbench_accounts|SELECT abalance FROM pgbench_accounts WHERE aid = $1 + 1;|SELECT|1|-|complete",
        "UPDATE pgbench_accounts|UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1;|UPDATE|0|-|complete",
    ];
    let expected: Vec<&str> = tx.iter().chain(tx.iter()).copied().collect();
    check_all_ways(&fx!("pgbench_pipeline.bin"), &expected);
}

#[test]
fn pgbench_pipeline_error_skips_to_sync() {
    let records = fx!("pgbench_pipeline_error.bin");
    let expected = [
        "SELECT pgbench_accounts|SELECT abalance FROM pgbench_accounts WHERE aid = $1;|SELECT|1|-|complete",
        "SELECT pgbench_accounts|SELECT abalance FROM pgbench_accounts WHERE aid = $1 + 1;|SELECT|1|-|complete",
        "UPDATE pgbench_accounts|UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1;|UPDATE|0|-|complete",
        // Not parameterized: sanitized. The error answers the Bind (the
        // planner folds 1/0): the Execute it prepared carries it.
        "SELECT|SELECT ?/?;|-|0|22012|complete",
    ];
    check_all_ways(&records, &expected);
    let r = run(&whole(&records), false);
    assert_eq!(r.counts.not_executed, 1, "SELECT 5 after the error");
}

#[test]
fn pgbench_setup_queries() {
    let r = run(&whole(&fx!("pgbench_setup.bin")), false);
    assert_eq!(r.statements.len(), 2);
    assert_eq!(
        describe(&r.statements[0]),
        "select pgbench_branches|select count(*) from pgbench_branches|SELECT|1|-|complete"
    );
}

#[test]
fn tokio_postgres_suite() {
    let records = fx!("tokio_postgres_suite.bin");
    let insert =
        "INSERT rs_items|INSERT INTO rs_items (id, name) VALUES ($1, $2)|INSERT|0|-|complete";
    let mut expected = vec![
        "DROP TABLE rs_items|DROP TABLE IF EXISTS rs_items|DROP TABLE|0|-|complete",
        "CREATE TABLE rs_items|CREATE TABLE rs_items (id int PRIMARY KEY, name text NOT NULL)|CREATE TABLE|0|-|complete",
    ];
    expected.extend([insert; 20]);
    expected.extend([
        "INSERT rs_items|INSERT INTO rs_items (id, name) VALUES ($1, $2)|-|0|23505|complete",
        // The failed Parse (syntax error) executed nothing: no statement.
        "SELECT rs_items|SELECT id, name FROM rs_items WHERE id < $1 ORDER BY id|SELECT|5|-|complete",
        "START TRANSACTION|START TRANSACTION|START TRANSACTION|0|-|complete",
        "SELECT rs_items|SELECT id FROM rs_items ORDER BY id|-|7|-|complete|suspended",
        "SELECT rs_items|SELECT id FROM rs_items ORDER BY id|-|7|-|complete|suspended",
        "SELECT rs_items|SELECT id FROM rs_items ORDER BY id|SELECT|6|-|complete",
        "COMMIT|COMMIT|COMMIT|0|-|complete",
        "COPY rs_items|COPY rs_items (id, name) FROM STDIN|COPY|0|-|complete",
        "COPY SELECT rs_items|COPY (SELECT id, name FROM rs_items ORDER BY id) TO STDOUT|COPY|70|-|complete",
        // Parameterized: exported as sent (the conventions' rule).
        "SELECT|SELECT g, repeat('x', 1000) FROM generate_series(1, $1) AS g|SELECT|300|-|complete",
        "SELECT|SELECT pg_sleep(?)|-|0|57014|complete",
    ]);
    for is_server in [false, true] {
        let r = run(&whole(&records), is_server);
        let got = described(&r);
        for (i, (g, e)) in got.iter().zip(expected.iter()).enumerate() {
            assert_eq!(g, e, "statement {i}, server={is_server}");
        }
        assert_eq!(got.len(), expected.len());
        assert!(r.desyncs.is_empty());
        assert_eq!(r.counts.not_executed, 0);
    }
    // As the kernel captures it: 4096 bytes of each syscall of up to 8192.
    let r = run(&captured(&records, 8192, 4096), false);
    let got = described(&r);
    for (i, (g, e)) in got.iter().zip(expected.iter()).enumerate() {
        assert_eq!(g, e, "statement {i}, captured prefixes");
    }
    assert_eq!(got.len(), expected.len(), "captured prefixes");
    // Without the kernel's tail copy, the big result's CommandComplete and
    // ReadyForQuery sit in the uncaptured end of the last read: the
    // statement ends, truncated, when the next one starts.
    let r = run(&captured_with_tail(&records, 8192, 4096, 0), false);
    let got = described(&r);
    for (g, e) in got.iter().zip(expected.iter()) {
        if e.contains("generate_series") {
            assert!(g == e || g.ends_with("|truncated"), "{g}");
        } else {
            assert_eq!(g, e);
        }
    }
    assert!(!r.desyncs.is_empty(), "the big result loses framing");
    assert!(r.max_buffered <= 8192);
    // Random splits of the whole stream.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..40 {
        let mut calls = Vec::new();
        for (s, d) in &records {
            let mut rest = &d[..];
            while !rest.is_empty() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let n = (rng % 700 + 1) as usize;
                let n = n.min(rest.len());
                calls.push(Call {
                    stream: *s,
                    data: rest[..n].to_vec(),
                    gap: 0,
                    tail: Vec::new(),
                });
                rest = &rest[n..];
            }
        }
        assert_eq!(described(&run(&calls, true)), expected, "random split");
    }
}

#[test]
fn big_result_is_counted_not_buffered() {
    let records = fx!("psql_big_result.bin");
    let expected = [
        "SELECT|SELECT repeat(?, ?) FROM generate_series(?, ?)|SELECT|300|-|complete",
        "SELECT|SELECT ?|SELECT|1|-|complete",
    ];
    for is_server in [false, true] {
        let r = run(&whole(&records), is_server);
        assert_eq!(described(&r), expected);
        assert!(r.max_buffered < 4096, "buffered {}", r.max_buffered);
    }
    for (chunk, cap) in [
        (8192, 4096),
        (8192, 1024),
        (4096, 4096),
        (8192, 8192),
        (2000, 1500),
    ] {
        for is_server in [false, true] {
            let r = run(&captured(&records, chunk, cap), is_server);
            assert_eq!(described(&r), expected, "chunk {chunk} cap {cap}");
        }
    }
    // 64 KiB reads captured to 4096 bytes: the tail ends the result.
    let r = run(&captured(&records, 65536, 4096), false);
    assert_eq!(described(&r), expected);
    // Without a tail the first answer's end is never seen; the statement
    // still ends (truncated) when the next one starts, and the next one
    // pairs with its own answer.
    let r = run(&captured_with_tail(&records, 65536, 4096, 0), false);
    let d = described(&r);
    assert!(d[0].ends_with("|truncated"), "{d:?}");
    assert_eq!(d[1], expected[1]);
}

#[test]
fn cancel_request_connection() {
    let r = run(&whole(&fx!("tokio_postgres_cancel.bin")), true);
    assert!(r.statements.is_empty());
    assert_eq!(r.counts.cancel_requests, 1);
    assert!(r.stop.is_none());
}

#[test]
fn scram_authentication() {
    let records = fx!("scram_auth.bin");
    check_all_ways(
        &records,
        &["SELECT|SELECT current_user|SELECT|1|-|complete"],
    );
    let r = run(&whole(&fx!("scram_auth_failed.bin")), true);
    assert!(r.statements.is_empty());
    assert_eq!(r.counts.startup_errors, 1);
    assert_eq!(r.info.user.as_deref(), Some("scram_user"));
}

#[test]
fn encrypted_sessions_stop_parsing() {
    for (records, why) in [
        (fx!("ssl_encrypted.bin"), "tls"),
        (fx!("gssenc_encrypted.bin"), "gssapi"),
    ] {
        for is_server in [false, true] {
            let r = run(&whole(&records), is_server);
            assert!(r.statements.is_empty());
            assert_eq!(r.stop, Some(Stop::Encrypted(why)));
            assert!(r.desyncs.is_empty(), "ciphertext is never parsed");
        }
    }
}

#[test]
fn statements_prepared_before_the_agent() {
    // Join the tokio-postgres stream after its prepares: from the first
    // Bind of the pipelined inserts on, statement s0 is unknown.
    let records = fx!("tokio_postgres_suite.bin");
    let all: Vec<u8> = records
        .iter()
        .filter(|(s, _)| *s == Stream::Frontend)
        .flat_map(|(_, d)| d.clone())
        .collect();
    let first_bind = all.windows(4).position(|w| w == b"B\0\0\0").unwrap();
    // Rebuild the record list starting at the record holding that Bind.
    let mut seen = 0;
    let mut start = 0;
    for (i, (s, d)) in records.iter().enumerate() {
        if *s == Stream::Frontend {
            if seen + d.len() > first_bind {
                assert_eq!(seen, first_bind, "the relay read starts at the Bind");
                start = i;
                break;
            }
            seen += d.len();
        }
    }
    let late = &records[start..];
    for is_server in [false, true] {
        let r = run(&whole(late), is_server);
        let first = describe(&r.statements[0]);
        assert_eq!(first, "?|unknown statement=s0 portal=-|INSERT|0|-|complete");
        assert_eq!(
            r.counts.unknown_statements, 21,
            "20 inserts + the duplicate"
        );
        // Statements prepared later are known again.
        assert!(
            described(&r)
                .iter()
                .any(|d| d.starts_with("SELECT rs_items|SELECT id, name"))
        );
    }
}

#[test]
fn bounded_prepared_statements_and_queue() {
    let records = fx!("pgbench_prepared.bin");
    let limits = Limits {
        max_prepared: 2,
        ..Limits::default()
    };
    let r = run_with(&whole(&records), false, limits);
    assert!(r.counts.prepared_evicted > 0);
    assert_eq!(
        r.statements.len(),
        14,
        "evicted statements still yield spans"
    );
    assert!(
        r.statements
            .iter()
            .any(|s| matches!(s.text, StatementText::Unknown { .. }))
    );
    let limits = Limits {
        max_pending: 3,
        ..Limits::default()
    };
    let r = run_with(&whole(&fx!("pgbench_pipeline.bin")), false, limits);
    assert!(r.counts.pending_overflow > 0);
}

#[test]
fn connection_closed_mid_statement() {
    let records = fx!("pgbench_simple.bin");
    // Drop the last backend answer and the Terminate.
    let cut: Vec<Record> = records[..records.len() - 2].to_vec();
    let r = run(&whole(&cut), false);
    assert_eq!(r.statements.len(), 3);
    assert_eq!(r.statements[2].outcome, Outcome::ConnectionClosed);
}

#[test]
fn not_postgres_is_rejected() {
    let calls = [Call {
        stream: Stream::Frontend,
        data: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        gap: 0,
        tail: Vec::new(),
    }];
    let r = run(&calls, true);
    assert_eq!(r.stop, Some(Stop::NotPostgres));
}

#[test]
fn timeouts() {
    let records = fx!("pgbench_simple.bin");
    let mut s = PgSession::new(false, Limits::default());
    let mut out = Vec::new();
    // Up to the last query, unanswered.
    for (i, (stream, d)) in records[..records.len() - 2].iter().enumerate() {
        let dir = if *stream == Stream::Frontend {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let t = (i as u64 + 1) * 1000;
        s.on_data(
            dir,
            d,
            0,
            &[],
            EventTimes {
                enter_ns: t,
                exit_ns: t,
                tid: 1,
            },
            &mut out,
        );
    }
    assert_eq!(out.len(), 2);
    s.expire(10_000, 1_000_000, &mut out);
    assert_eq!(out.len(), 2);
    s.expire(10_000_000, 1_000_000, &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(out[2].outcome, Outcome::Timeout);
    assert!(s.is_idle());
}
