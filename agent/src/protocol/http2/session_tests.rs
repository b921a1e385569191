//! Sessions over real captured connections (`fixtures/*.h2`, see
//! `fixtures/README.md`), fed whole, split at every byte boundary, joined
//! late, and with capture gaps.

use super::*;
use crate::protocol::http2::fixtures::chunks;

/// What the tests compare of an exchange (times aside).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    stream: u32,
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    status: Option<u16>,
    grpc: bool,
    grpc_status: Option<u32>,
    outcome: Outcome,
    unresolved: u32,
    request_bytes: u64,
    response_bytes: u64,
    seq: u64,
}

fn summary(e: &H2Exchange) -> Summary {
    Summary {
        stream: e.stream_id,
        method: e.request.method.as_ref().map(|m| m.as_str().to_string()),
        path: e.request.path.as_deref().map(str::to_owned),
        authority: e.request.authority.as_deref().map(str::to_owned),
        status: e.response.as_ref().and_then(|r| r.status),
        grpc: e.is_grpc(),
        grpc_status: e.grpc_status,
        outcome: e.outcome,
        unresolved: e.unresolved,
        request_bytes: e.request_body_bytes,
        response_bytes: e.response_body_bytes,
        seq: e.seq,
    }
}

fn times(i: usize) -> EventTimes {
    EventTimes {
        enter_ns: 1_000_000 * (i as u64 + 1),
        exit_ns: 1_000_000 * (i as u64 + 1) + 500,
        tid: 42,
    }
}

fn direction(is_server: bool, to_server: bool) -> Direction {
    if to_server == is_server {
        Direction::Ingress
    } else {
        Direction::Egress
    }
}

/// Feeds the chunks (from `from` on), chunk `split.0` cut at `split.1`.
fn run(
    name: &str,
    is_server: bool,
    from: usize,
    split: Option<(usize, usize)>,
) -> (Vec<H2Exchange>, Http2Session) {
    let mut s = Http2Session::new(is_server, Limits::default());
    let mut out = Vec::new();
    for (i, (to_server, data)) in chunks(name).into_iter().enumerate().skip(from) {
        let dir = direction(is_server, to_server);
        match split {
            Some((at, cut)) if at == i => {
                s.on_data(dir, &data[..cut], 0, times(i), &mut out);
                s.on_data(dir, &data[cut..], 0, times(i), &mut out);
            }
            _ => s.on_data(dir, &data, 0, times(i), &mut out),
        }
    }
    (out, s)
}

fn grpc(stream: u32, path: &str, grpc_status: u32, seq: u64, bytes: (u64, u64)) -> Summary {
    Summary {
        stream,
        method: Some("POST".into()),
        path: Some(path.into()),
        authority: None,
        status: Some(200),
        grpc: true,
        grpc_status: Some(grpc_status),
        outcome: Outcome::Complete,
        unresolved: 0,
        request_bytes: bytes.0,
        response_bytes: bytes.1,
        seq,
    }
}

fn without_authority(v: Vec<Summary>) -> Vec<Summary> {
    v.into_iter()
        .map(|mut s| {
            assert!(
                s.authority
                    .as_deref()
                    .is_some_and(|a| a.starts_with("127.0.0.1:")),
                "{s:?}"
            );
            s.authority = None;
            s
        })
        .collect()
}

fn check_whole_and_split(name: &str, want: &[Summary]) {
    for is_server in [true, false] {
        let (out, s) = run(name, is_server, 0, None);
        let got: Vec<Summary> = out.iter().map(summary).collect();
        assert_eq!(
            without_authority(got.clone()),
            want,
            "{name} server={is_server}"
        );
        assert!(s.is_idle() || !s.st.hpack.iter().all(|d| d.table().is_empty()));
        assert_eq!(s.open_streams(), 0);
        let mut ch = chunks(name);
        for (i, (_, data)) in ch.drain(..).enumerate() {
            for cut in 1..data.len() {
                let (split, _) = run(name, is_server, 0, Some((i, cut)));
                let split: Vec<Summary> = split.iter().map(summary).collect();
                assert_eq!(
                    split, got,
                    "{name} server={is_server} chunk {i} cut at {cut}"
                );
            }
        }
    }
}

#[test]
fn grpcio_client_to_tonic_server() {
    let u = "/echo.Echo/Unary";
    check_whole_and_split(
        "grpcio_to_tonic",
        &[
            grpc(1, u, 0, 0, (14, 14)),
            grpc(3, u, 0, 1, (14, 14)),
            grpc(5, u, 0, 2, (14, 14)),
            grpc(7, "/echo.Echo/ServerStream", 0, 3, (14, 42)),
            grpc(9, "/echo.Echo/ClientStream", 0, 4, (42, 16)),
            grpc(11, "/echo.Echo/Bidi", 0, 5, (42, 42)),
            // Trailers-Only responses.
            grpc(13, "/echo.Echo/Fail", 5, 6, (14, 0)),
            grpc(15, "/echo.Echo/Missing", 12, 7, (14, 0)),
        ],
    );
}

#[test]
fn tonic_client_to_grpcio_server_with_concurrent_streams() {
    let u = "/echo.Echo/Unary";
    let mut want = vec![
        grpc(1, u, 0, 0, (14, 14)),
        grpc(3, u, 0, 1, (14, 14)),
        grpc(5, u, 0, 2, (14, 14)),
        grpc(7, "/echo.Echo/ServerStream", 0, 3, (14, 42)),
        grpc(9, "/echo.Echo/ClientStream", 0, 4, (42, 14)),
        grpc(11, "/echo.Echo/Bidi", 0, 5, (42, 42)),
        grpc(13, "/echo.Echo/Fail", 5, 6, (14, 0)),
        grpc(15, "/echo.Echo/Missing", 12, 7, (14, 0)),
    ];
    // Five interleaved streams, answered out of order.
    for (stream, seq) in [(19, 9), (21, 10), (17, 8), (23, 11), (25, 12)] {
        want.push(grpc(stream, u, 0, seq, (14, 14)));
    }
    check_whole_and_split("tonic_to_grpcio", &want);
}

fn get(stream: u32, path: &str, status: u16, seq: u64, response_bytes: u64) -> Summary {
    Summary {
        stream,
        method: Some("GET".into()),
        path: Some(path.into()),
        authority: None,
        status: Some(status),
        grpc: false,
        grpc_status: None,
        outcome: Outcome::Complete,
        unresolved: 0,
        request_bytes: 0,
        response_bytes,
        seq,
    }
}

#[test]
fn h2load_to_nginx_multiplexed() {
    let want: Vec<Summary> = (0..12)
        .map(|i| get(1 + 2 * i, "/", 200, u64::from(i), 6))
        .collect();
    check_whole_and_split("h2load_nginx", &want);
}

#[test]
fn nghttp_to_nginx_with_priority_frames() {
    check_whole_and_split(
        "nghttp_nginx_prior_knowledge",
        &[
            get(13, "/a?x=1", 200, 0, 6),
            get(15, "/missing", 404, 1, 153),
        ],
    );
}

/// The agent joins after the first calls: their dynamic-table entries are
/// unknown, yet every later call gets its exchange, with what could be
/// decoded and the rest counted unresolved; nothing is poisoned.
#[test]
fn joined_late_dynamic_table_miss() {
    for name in ["grpcio_to_tonic", "tonic_to_grpcio"] {
        let all = chunks(name);
        // Join at the request chunk of the 3rd call (its HEADERS first).
        let from = all
            .iter()
            .position(|(to_server, d)| *to_server && d.len() > 9 && d[3] == 1 && d[8] == 5)
            .expect("stream 5 HEADERS");
        for is_server in [true, false] {
            let (out, mut s) = run(name, is_server, from, None);
            let got: Vec<Summary> = out.iter().map(summary).collect();
            let (full, _) = run(name, is_server, 0, None);
            let expected = full.iter().filter(|e| e.stream_id >= 5).count();
            assert_eq!(got.len(), expected, "{name}: {got:#?}");
            assert!(
                got.iter().all(|g| g.outcome == Outcome::Complete),
                "{got:#?}"
            );
            assert!(
                got.iter().all(|g| g.method.as_deref() == Some("POST")),
                "{got:#?}"
            );
            // Referring to entries inserted before the join.
            assert!(got.iter().any(|g| g.unresolved > 0), "{name}: {got:#?}");
            // gRPC is still recognised (content type, framing or status).
            assert!(got.iter().all(|g| g.grpc), "{name}: {got:#?}");
            assert!(s.take_counts().unresolved_fields > 0);
            assert!(s.take_problems().is_empty());
        }
    }
}

/// A gap covering frame headers: the desync is reported, the framing
/// resynchronises at a later syscall, and later streams still pair.
#[test]
fn gap_over_frame_headers_resynchronises() {
    let name = "tonic_to_grpcio";
    let all = chunks(name);
    let mut s = Http2Session::new(true, Limits::default());
    let mut out = Vec::new();
    // Chunk 5 (the responses of stream 1) loses all but its first 5 bytes.
    for (i, (to_server, data)) in all.iter().enumerate() {
        let dir = direction(true, *to_server);
        if i == 5 {
            s.on_data(dir, &data[..5], data.len() as u64 - 5, times(i), &mut out);
        } else {
            s.on_data(dir, data, 0, times(i), &mut out);
        }
    }
    let problems = s.take_problems();
    assert!(
        problems
            .iter()
            .any(|p| p.reason == "gap_in_framing" && p.side == Side::Response),
        "{problems:?}"
    );
    // Stream 1's end was lost; it stays open until it times out.
    assert!(out.iter().all(|e| e.stream_id != 1));
    assert!(
        out.len() >= 10,
        "{:#?}",
        out.iter().map(summary).collect::<Vec<_>>()
    );
    let mut left = Vec::new();
    s.expire(u64::MAX, 1, &mut left);
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].stream_id, left[0].outcome), (1, Outcome::Timeout));
}

#[test]
fn reset_goaway_and_close_end_streams() {
    use crate::protocol::http2::frame::PREFACE;
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }
    // GET / on streams 1, 3, 5 (static-table fields only).
    let mut req = PREFACE.to_vec();
    for id in [1, 3, 5, 7] {
        req.extend(frame(h2::HEADERS, 0x5, id, &[0x82, 0x86, 0x84]));
    }
    let mut s = Http2Session::new(
        true,
        Limits {
            max_streams: 3,
            ..Limits::default()
        },
    );
    let mut out = Vec::new();
    s.on_data(Direction::Ingress, &req, 0, times(0), &mut out);
    assert_eq!(s.take_counts().stream_overflow, 1);
    // The client cancels 1; the server's GOAWAY (last stream 3) drops 5.
    s.on_data(
        Direction::Ingress,
        &frame(h2::RST_STREAM, 0, 1, &[0, 0, 0, 8]),
        0,
        times(1),
        &mut out,
    );
    s.on_data(
        Direction::Egress,
        &frame(h2::GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]),
        0,
        times(2),
        &mut out,
    );
    let got: Vec<(u32, Outcome, Option<u32>)> = out
        .iter()
        .map(|e| (e.stream_id, e.outcome, e.reset_code))
        .collect();
    assert_eq!(
        got,
        vec![(1, Outcome::Reset, Some(8)), (5, Outcome::Reset, Some(0))]
    );
    out.clear();
    s.close(10_000_000, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].stream_id, out[0].outcome),
        (3, Outcome::ConnectionClosed)
    );
}

/// An upgraded (h2c) connection: stream 1 is the HTTP/1 request.
#[test]
fn upgraded_stream_one_gets_its_response() {
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }
    let request = Headers {
        method: Some(Method::Get),
        path: Some("/index.html".into()),
        ..Headers::default()
    };
    let mut s = Http2Session::upgraded(true, Limits::default(), request, 5, 7, 0, 0);
    let mut out = Vec::new();
    let mut resp = frame(h2::SETTINGS, 0, 0, &[]);
    resp.extend(frame(h2::HEADERS, 0x4, 1, &[0x88]));
    resp.extend(frame(h2::DATA, 0x1, 1, b"hello"));
    s.on_data(Direction::Egress, &resp, 0, times(3), &mut out);
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(
        (e.stream_id, e.outcome, e.start_ns, e.tid),
        (1, Outcome::Complete, 5, 7)
    );
    assert_eq!(e.response.as_ref().and_then(|r| r.status), Some(200));
    assert_eq!(e.response_body_bytes, 5);
}
