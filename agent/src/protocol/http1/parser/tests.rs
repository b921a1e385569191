//! Tests of the HTTP/1.x parser: real captured fixtures (see
//! `../fixtures/README.md`) fed whole, split at every byte, one byte at a
//! time and with gaps; hand-written malformed input.

use std::collections::VecDeque;

use super::*;

/// One event the parser emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Begin,
    Head(Box<Head>),
    End(u64),
    Desync(DesyncReason),
    Upgraded(Option<String>),
}

/// Records events, checks that they follow the sink contract, and answers
/// final response heads with queued hints (then `Normal`).
#[derive(Debug, Default)]
struct Recorder {
    events: Vec<Event>,
    hints: VecDeque<BodyHint>,
    in_message: bool,
    head_seen: bool,
    stopped: bool,
}

impl Recorder {
    fn with_hints(hints: &[BodyHint]) -> Self {
        Self {
            hints: hints.iter().copied().collect(),
            ..Self::default()
        }
    }

    fn push(&mut self, event: Event) {
        assert!(!self.stopped, "{event:?} after upgraded");
        self.events.push(event);
    }
}

impl Sink for Recorder {
    fn begin(&mut self) {
        assert!(!self.in_message, "begin inside a message");
        self.in_message = true;
        self.head_seen = false;
        self.push(Event::Begin);
    }

    fn head(&mut self, head: Box<Head>) -> BodyHint {
        assert!(self.in_message && !self.head_seen, "head outside a message");
        self.head_seen = true;
        let interim = matches!(head.status, Some(100..=199));
        self.push(Event::Head(head));
        if interim {
            BodyHint::Normal
        } else {
            self.hints.pop_front().unwrap_or_default()
        }
    }

    fn end(&mut self, body_bytes: u64) {
        assert!(self.in_message && self.head_seen, "end without head");
        self.in_message = false;
        self.push(Event::End(body_bytes));
    }

    fn desync(&mut self, reason: DesyncReason) {
        self.in_message = false;
        self.push(Event::Desync(reason));
    }

    fn upgraded(&mut self, upgrade: Option<&str>) {
        assert!(self.in_message && self.head_seen, "upgraded without head");
        self.in_message = false;
        self.push(Event::Upgraded(upgrade.map(str::to_owned)));
        self.stopped = true;
    }
}

/// Feeds `(data, gap)` pairs then closes; checks the buffer bound after
/// every feed.
fn run_with<'a>(
    kind: MessageKind,
    limits: Limits,
    hints: &[BodyHint],
    feeds: impl IntoIterator<Item = (&'a [u8], u64)>,
) -> Vec<Event> {
    let mut parser = Parser::new(kind, limits);
    let mut sink = Recorder::with_hints(hints);
    for (data, gap) in feeds {
        parser.feed(data, gap, &mut sink);
        assert!(parser.buffered() <= parser.limits().max_head_bytes);
    }
    parser.close(&mut sink);
    assert!(parser.is_idle());
    sink.events
}

fn run<'a>(
    kind: MessageKind,
    hints: &[BodyHint],
    feeds: impl IntoIterator<Item = (&'a [u8], u64)>,
) -> Vec<Event> {
    run_with(kind, Limits::default(), hints, feeds)
}

fn whole(kind: MessageKind, hints: &[BodyHint], bytes: &[u8]) -> Vec<Event> {
    run(kind, hints, [(bytes, 0)])
}

/// Events in a compact, readable form.
fn summary(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| match event {
            Event::Begin => "begin".to_owned(),
            Event::Head(h) => {
                let partial = if h.complete { "" } else { " partial" };
                match (&h.method, &h.target, h.status) {
                    (Some(m), Some(t), _) => format!("head {} {t}{partial}", m.as_str()),
                    (_, _, Some(status)) => format!("head {status}{partial}"),
                    _ => format!("head ?{partial}"),
                }
            }
            Event::End(n) => format!("end {n}"),
            Event::Desync(reason) => format!("desync {}", reason.as_str()),
            Event::Upgraded(u) => format!("upgraded {}", u.as_deref().unwrap_or("-")),
        })
        .collect()
}

fn heads(events: &[Event]) -> Vec<&Head> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Head(h) => Some(&**h),
            _ => None,
        })
        .collect()
}

const REQ: MessageKind = MessageKind::Request;
const RESP: MessageKind = MessageKind::Response;

/// A recorded connection: both streams and the hints the session would give
/// the response parser.
struct Fixture {
    name: &'static str,
    req: &'static [u8],
    resp: &'static [u8],
    hints: &'static [BodyHint],
}

macro_rules! fixture {
    ($name:literal $(, $hint:expr)*) => {
        Fixture {
            name: $name,
            req: include_bytes!(concat!("../fixtures/", $name, ".req")),
            resp: include_bytes!(concat!("../fixtures/", $name, ".resp")),
            hints: &[$($hint),*],
        }
    };
}

const N: BodyHint = BodyHint::Normal;
const NO_BODY: BodyHint = BodyHint::NoBody;

fn fixtures() -> [Fixture; 11] {
    [
        fixture!("nginx_keepalive"),
        fixture!("nginx_head", NO_BODY),
        fixture!("nginx_304"),
        fixture!("nginx_close"),
        fixture!("nginx_pipelined", N, NO_BODY, N),
        fixture!("nginx_tls_to_plain"),
        fixture!("node_post"),
        fixture!("node_chunked"),
        fixture!("node_continue"),
        fixture!("node_upgrade"),
        fixture!("python_http10"),
    ]
}

fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .expect("fixture exists")
}

/// Both streams of every fixture, with their kind and hints.
fn streams() -> Vec<(String, MessageKind, &'static [u8], &'static [BodyHint])> {
    fixtures()
        .into_iter()
        .flat_map(|f| {
            [
                (format!("{}.req", f.name), REQ, f.req, &[][..]),
                (format!("{}.resp", f.name), RESP, f.resp, f.hints),
            ]
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Fixtures, whole.

#[test]
fn fixture_events() {
    let expect: &[(&str, &[&str], &[&str])] = &[
        (
            "nginx_keepalive",
            &[
                "begin",
                "head GET /index.html",
                "end 0",
                "begin",
                "head GET /a.txt",
                "end 0",
                "begin",
                "head GET /missing",
                "end 0",
                "begin",
                "head GET /",
                "end 0",
            ],
            &[
                "begin", "head 200", "end 61", "begin", "head 200", "end 670", "begin", "head 404",
                "end 153", "begin", "head 200", "end 61",
            ],
        ),
        (
            "nginx_head",
            &["begin", "head HEAD /a.txt", "end 0"],
            &["begin", "head 200", "end 0"],
        ),
        (
            "nginx_304",
            &[
                "begin",
                "head GET /index.html",
                "end 0",
                "begin",
                "head GET /index.html",
                "end 0",
            ],
            &["begin", "head 200", "end 61", "begin", "head 304", "end 0"],
        ),
        (
            "nginx_close",
            &["begin", "head GET /a.txt", "end 0"],
            &["begin", "head 200", "end 670"],
        ),
        (
            "nginx_pipelined",
            &[
                "begin",
                "head GET /index.html",
                "end 0",
                "begin",
                "head HEAD /a.txt",
                "end 0",
                "begin",
                "head GET /missing",
                "end 0",
            ],
            &[
                "begin", "head 200", "end 61", "begin", "head 200", "end 0", "begin", "head 404",
                "end 153",
            ],
        ),
        (
            "nginx_tls_to_plain",
            &["desync garbage"],
            &["begin", "head 400", "end 157"],
        ),
        (
            "node_post",
            &["begin", "head POST /echo", "end 34"],
            &["begin", "head 200", "end 46"],
        ),
        (
            "node_chunked",
            &[
                "begin",
                "head GET /chunked",
                "end 0",
                "begin",
                "head GET /trailers",
                "end 0",
            ],
            &["begin", "head 200", "end 56", "begin", "head 200", "end 20"],
        ),
        (
            "node_continue",
            &["begin", "head POST /upload", "end 2280"],
            &["begin", "head 100", "end 0", "begin", "head 200", "end 50"],
        ),
        (
            // The session stops the request parser on the 101; left alone it
            // sees the client's WebSocket frame as garbage.
            "node_upgrade",
            &["begin", "head GET /ws", "end 0", "desync garbage"],
            &["begin", "head 101", "upgraded websocket"],
        ),
        (
            "python_http10",
            &["begin", "head GET /", "end 0"],
            &["begin", "head 200", "end 108"],
        ),
    ];
    assert_eq!(expect.len(), fixtures().len());
    for &(name, req, resp) in expect {
        let f = fixture(name);
        assert_eq!(summary(&whole(REQ, &[], f.req)), req, "{name}.req");
        assert_eq!(summary(&whole(RESP, f.hints, f.resp)), resp, "{name}.resp");
    }
}

#[test]
fn fixture_request_fields() {
    let events = whole(REQ, &[], fixture("node_continue").req);
    let head = heads(&events)[0];
    assert_eq!(head.kind, REQ);
    assert_eq!(head.method, Some(Method::Post));
    assert_eq!(head.target.as_deref(), Some("/upload"));
    assert!(!head.target_truncated);
    assert_eq!(head.version_minor, 1);
    assert_eq!(head.status, None);
    assert!(head.host.as_deref().unwrap().starts_with("127.0.0.1:"));
    assert!(head.user_agent.as_deref().unwrap().starts_with("curl/"));
    assert_eq!(head.content_length, Some(2280));
    assert_eq!(
        head.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert!(!head.chunked && !head.connection_close && head.complete);
    let head_len = fixture("node_continue").req.len() - 2280;
    assert_eq!(head.head_bytes, head_len);

    let events = whole(REQ, &[], fixture("node_upgrade").req);
    assert_eq!(heads(&events)[0].upgrade.as_deref(), Some("websocket"));

    let events = whole(REQ, &[], fixture("nginx_close").req);
    assert!(heads(&events)[0].connection_close);

    let events = whole(REQ, &[], fixture("python_http10").req);
    let head = heads(&events)[0];
    assert_eq!(head.version_minor, 0);
    assert!(head.connection_close, "HTTP/1.0 without keep-alive");
}

#[test]
fn fixture_response_fields() {
    let events = whole(RESP, &[], fixture("node_chunked").resp);
    let head = heads(&events)[0];
    assert_eq!(head.status, Some(200));
    assert!(head.chunked);
    assert_eq!(head.content_length, None);
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));
    assert_eq!(head.method, None);

    let events = whole(RESP, &[], fixture("nginx_close").resp);
    let head = heads(&events)[0];
    assert!(head.connection_close);
    assert_eq!(head.content_length, Some(670));

    let events = whole(RESP, &[], fixture("python_http10").resp);
    let head = heads(&events)[0];
    assert_eq!((head.version_minor, head.content_length), (0, None));
    assert!(head.connection_close);

    let events = whole(RESP, &[], fixture("node_upgrade").resp);
    assert_eq!(heads(&events)[0].upgrade.as_deref(), Some("websocket"));

    let events = whole(RESP, &[NO_BODY], fixture("nginx_head").resp);
    assert_eq!(heads(&events)[0].content_length, Some(670));
}

// ---------------------------------------------------------------------------
// Fixtures, split.

#[test]
fn fixtures_split_at_every_byte() {
    for (name, kind, bytes, hints) in streams() {
        let expected = whole(kind, hints, bytes);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            let got = run(kind, hints, [(a, 0), (b, 0)]);
            assert_eq!(got, expected, "{name} split at {at}");
        }
    }
}

#[test]
fn fixtures_one_byte_per_feed() {
    for (name, kind, bytes, hints) in streams() {
        let expected = whole(kind, hints, bytes);
        let got = run(kind, hints, bytes.chunks(1).map(|c| (c, 0)));
        assert_eq!(got, expected, "{name} byte by byte");
    }
}

#[test]
fn fixtures_split_with_small_limits() {
    // Heads larger than the buffer, or with more fields than kept: the same
    // events whatever the split, up to the first desync (after which a feed
    // boundary may offer a resynchronization point the whole feed lacks).
    let limits = Limits {
        max_head_bytes: 100,
        max_headers: 3,
        max_target_len: 4,
    };
    let until_desync = |events: &[Event]| {
        let end = events
            .iter()
            .position(|e| matches!(e, Event::Desync(_)))
            .map_or(events.len(), |i| i + 1);
        events[..end].to_vec()
    };
    let mut cut_heads = 0;
    for (name, kind, bytes, hints) in streams() {
        let expected = run_with(kind, limits, hints, [(bytes, 0)]);
        cut_heads += heads(&expected).iter().filter(|h| !h.complete).count();
        let got = run_with(kind, limits, hints, bytes.chunks(1).map(|c| (c, 0)));
        assert_eq!(got, expected, "{name} byte by byte");
        let expected = until_desync(&expected);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            let got = run_with(kind, limits, hints, [(a, 0), (b, 0)]);
            assert_eq!(got[..expected.len()], expected, "{name} split at {at}");
        }
    }
    assert!(cut_heads > 10);
}

/// Small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Marks the bytes of `bytes` that are body data (Content-Length body, chunk
/// data, body until close): where a gap must not change the events.
fn body_mask(kind: MessageKind, hints: &[BodyHint], bytes: &[u8]) -> Vec<bool> {
    let mut parser = Parser::new(kind, Limits::default());
    let mut sink = Recorder::with_hints(hints);
    bytes
        .iter()
        .map(|b| {
            let in_body = matches!(
                parser.state,
                State::Body(
                    Body::Length { .. }
                        | Body::UntilClose { .. }
                        | Body::Chunked(ChunkDecoder {
                            state: ChunkState::Data { .. },
                            ..
                        })
                )
            );
            parser.feed(std::slice::from_ref(b), 0, &mut sink);
            in_body
        })
        .collect()
}

/// Cuts `bytes` into random syscalls: captured data then, when body bytes
/// follow, a random gap over some of them.
fn random_feeds<'a>(rng: &mut Rng, bytes: &'a [u8], mask: &[bool]) -> Vec<(&'a [u8], u64)> {
    let mut feeds = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = 1 + rng.below(64.min(bytes.len() - at));
        let data = &bytes[at..at + len];
        at += len;
        let run = mask[at..].iter().take_while(|&&b| b).count();
        let gap = if run > 0 && rng.below(2) == 0 {
            1 + rng.below(run)
        } else {
            0
        };
        at += gap;
        feeds.push((data, gap as u64));
    }
    feeds
}

#[test]
fn fixtures_random_splits_with_gaps_in_bodies() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut gaps = 0;
    for (name, kind, bytes, hints) in streams() {
        let expected = whole(kind, hints, bytes);
        let mask = body_mask(kind, hints, bytes);
        for round in 0..200 {
            let feeds = random_feeds(&mut rng, bytes, &mask);
            gaps += feeds.iter().filter(|(_, gap)| *gap > 0).count();
            let got = run(kind, hints, feeds.iter().copied());
            assert_eq!(got, expected, "{name} round {round}: {feeds:?}");
        }
    }
    assert!(gaps > 1000, "only {gaps} gaps exercised");
}

// ---------------------------------------------------------------------------
// Gaps.

#[test]
fn gap_in_content_length_body_is_skipped() {
    let bytes = fixture("node_continue").req;
    let head_len = bytes.len() - 2280;
    let expected = whole(REQ, &[], bytes);
    // Capture cut 10 bytes into the body, the rest a gap.
    let got = run(REQ, &[], [(&bytes[..head_len + 10], 2270)]);
    assert_eq!(got, expected);
    // A sendfile-like syscall: no data at all, only a count.
    let got = run(REQ, &[], [(&bytes[..head_len], 0), (&[][..], 2280)]);
    assert_eq!(got, expected);
}

#[test]
fn gap_past_the_body_loses_the_next_message() {
    let resp = fixture("nginx_keepalive").resp;
    let first = find(resp, b"</p>\n").unwrap() + 5;
    // The syscall carried the first response and the start of the second;
    // only 10 bytes of the body were captured.
    let events = run(
        RESP,
        &[],
        [(&resp[..first - 51], 60), (&resp[first + 9..], 0)],
    );
    assert_eq!(
        summary(&events),
        ["begin", "head 200", "end 61", "desync gap_in_framing"]
    );
}

#[test]
fn gap_in_chunk_data_is_skipped() {
    let resp = fixture("node_chunked").resp;
    let data = find(resp, b"second").unwrap();
    let expected = whole(RESP, &[], resp);
    let got = run(
        RESP,
        &[],
        [(&resp[..data + 3], 10), (&resp[data + 13..], 0)],
    );
    assert_eq!(got, expected);
}

#[test]
fn gap_over_chunk_framing_desyncs_then_resyncs() {
    let resp = fixture("node_chunked").resp;
    let data = find(resp, b"second").unwrap();
    let second = find(&resp[1..], b"HTTP/1.1").unwrap() + 1;
    // The gap runs past the end of the chunk data into its CRLF and the next
    // size line; the next syscall starts with the second response.
    let events = run(RESP, &[], [(&resp[..data], 50), (&resp[second..], 0)]);
    assert_eq!(
        summary(&events),
        [
            "begin",
            "head 200",
            "desync gap_in_framing",
            "begin",
            "head 200",
            "end 20"
        ]
    );
}

#[test]
fn gap_in_head_reports_partial_head_then_desyncs() {
    let req = fixture("nginx_keepalive").req;
    let second = find(req, b"GET /a.txt").unwrap();
    let cut = find(req, b"User-Agent").unwrap() + 4;
    let events = run(
        REQ,
        &[],
        [(&req[..cut], (second - cut) as u64), (&req[second..], 0)],
    );
    assert_eq!(
        summary(&events)[..4],
        [
            "begin",
            "head GET /index.html partial",
            "desync gap_in_framing",
            "begin"
        ]
    );
    let head = heads(&events)[0];
    assert!(head.host.is_some() && head.user_agent.is_none());
    assert_eq!(head.head_bytes, cut);
    assert_eq!(heads(&events).len(), 4);

    // Cut inside the request line: method and target prefix.
    let events = run(REQ, &[], [(&b"GET /very/long/pa"[..], 500)]);
    let head = heads(&events)[0];
    assert_eq!(head.target.as_deref(), Some("/very/long/pa"));
    assert!(head.target_truncated && !head.complete);
    assert_eq!(summary(&events)[2], "desync gap_in_framing");

    // Cut before the target: no head.
    let events = run(REQ, &[], [(&b"GET"[..], 500)]);
    assert_eq!(summary(&events), ["begin", "desync gap_in_framing"]);
}

#[test]
fn gap_in_101_head_still_upgrades() {
    let resp = fixture("node_upgrade").resp;
    let events = run(RESP, &[], [(&resp[..60], resp.len() as u64 - 60)]);
    assert_eq!(
        summary(&events),
        ["begin", "head 101 partial", "upgraded websocket"]
    );
}

#[test]
fn gap_between_messages_desyncs_without_begin() {
    let req = fixture("node_post").req;
    let events = run(REQ, &[], [(req, 0), (&[][..], 100), (req, 0)]);
    assert_eq!(
        summary(&events),
        [
            "begin",
            "head POST /echo",
            "end 34",
            "desync gap_in_framing",
            "begin",
            "head POST /echo",
            "end 34"
        ]
    );
}

#[test]
fn gap_in_body_until_close_is_counted() {
    let resp = fixture("python_http10").resp;
    let events = run(RESP, &[], [(&resp[..150], (resp.len() - 150) as u64)]);
    assert_eq!(summary(&events), ["begin", "head 200", "end 108"]);
}

// ---------------------------------------------------------------------------
// Resynchronization.

#[test]
fn resync_only_at_syscall_start() {
    let good = b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut garbage_then_good = b"\x00\x01garbage".to_vec();
    garbage_then_good.extend_from_slice(good);
    let events = run(
        REQ,
        &[],
        [
            (&garbage_then_good[..], 0),
            (&b"body bytes of something"[..], 0),
            (&good[..], 0),
        ],
    );
    assert_eq!(
        summary(&events),
        ["desync garbage", "begin", "head GET /ok", "end 0"]
    );
}

#[test]
fn resync_requires_a_plausible_start() {
    assert!(plausible_start(REQ, b"GET / HTTP/1.1\r\n"));
    assert!(plausible_start(REQ, b"M-SEARCH * HTTP/1.1\r\n"));
    assert!(plausible_start(
        REQ,
        b"CONNECT example.com:443 HTTP/1.1\r\n"
    ));
    assert!(plausible_start(REQ, b"POST /upload?x=1"));
    assert!(!plausible_start(REQ, b"hello world"));
    assert!(!plausible_start(REQ, b"GET"));
    assert!(!plausible_start(REQ, b"GET / HTTP/2.0\r\n"));
    assert!(!plausible_start(REQ, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    assert!(plausible_start(RESP, b"HTTP/1.1 200 OK\r\n"));
    assert!(plausible_start(RESP, b"HTTP/1.0 404"));
    assert!(!plausible_start(RESP, b"HTTP/1."));
    assert!(!plausible_start(RESP, b"HTTP/2 200"));
    assert!(!plausible_start(RESP, b"HTTP/1.1 OK"));
}

#[test]
fn after_desync_body_bytes_are_skipped() {
    // A response whose framing is invalid; its body follows in another
    // syscall and must not be taken for a message.
    let events = run(
        RESP,
        &[],
        [
            (&b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..], 0),
            (&b"HTTP/1.1 is in this body"[..], 0),
            (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], 0),
        ],
    );
    assert_eq!(
        summary(&events),
        [
            "begin",
            "head 200",
            "desync invalid_framing",
            "begin",
            "head 204",
            "end 0"
        ]
    );
}

// ---------------------------------------------------------------------------
// Framing rules.

fn resp_events(bytes: &[u8], hints: &[BodyHint]) -> Vec<String> {
    summary(&whole(RESP, hints, bytes))
}

fn req_events(bytes: &[u8]) -> Vec<String> {
    summary(&whole(REQ, &[], bytes))
}

#[test]
fn response_without_body_statuses() {
    let bytes = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n\
                  HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n\
                  HTTP/1.1 102 Processing\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(
        resp_events(bytes, &[]),
        [
            "begin",
            "head 204",
            "end 0",
            "begin",
            "head 304",
            "end 0",
            "begin",
            "head 102",
            "end 0",
            "begin",
            "head 200",
            "desync closed_mid_message"
        ]
    );
}

#[test]
fn tunnel_hint_applies_to_2xx_only() {
    let ok = b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01";
    assert_eq!(
        resp_events(ok, &[BodyHint::Tunnel]),
        ["begin", "head 200", "upgraded -"]
    );
    let denied = b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno";
    assert_eq!(
        resp_events(denied, &[BodyHint::Tunnel]),
        ["begin", "head 407", "end 2"]
    );
}

#[test]
fn request_body_framing() {
    assert_eq!(
        req_events(b"PUT /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),
        ["begin", "head PUT /a", "end 3"]
    );
    assert_eq!(
        req_events(b"PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        ["begin", "head PUT /a", "desync invalid_framing"]
    );
    // Transfer-Encoding wins over Content-Length.
    assert_eq!(
        req_events(b"POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ["begin", "head POST /", "end 0"]
    );
    assert_eq!(
        req_events(b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nhi"),
        ["begin", "head POST /", "end 2"]
    );
}

#[test]
fn response_transfer_encoding_not_chunked_reads_until_close() {
    assert_eq!(
        resp_events(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabcdef",
            &[]
        ),
        ["begin", "head 200", "end 6"]
    );
}

#[test]
fn invalid_content_length_desyncs() {
    for value in [
        "-5",
        "99999999999999999999999",
        "5, 6",
        "",
        "0x10",
        "+5",
        "1 2",
    ] {
        let req = format!("POST / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
        assert_eq!(
            req_events(req.as_bytes()),
            ["begin", "head POST /", "desync invalid_framing"],
            "{value:?}"
        );
        let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n");
        assert_eq!(
            resp_events(resp.as_bytes(), &[]),
            ["begin", "head 200", "desync invalid_framing"],
            "{value:?}"
        );
    }
    let max = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", u64::MAX);
    let events = whole(REQ, &[], max.as_bytes());
    assert_eq!(heads(&events)[0].content_length, Some(u64::MAX));
}

#[test]
fn chunked_variants() {
    // Upper-case hex, extensions, whitespace, bare LF line ends, trailers.
    let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n\
                  A ; name=\"v\"\r\n0123456789\r\n1\n!\n0\nA: b\nC: d\r\n\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        resp_events(bytes, &[]),
        ["begin", "head 200", "end 11", "begin", "head 200", "end 0"]
    );
}

#[test]
fn bad_chunks_desync() {
    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases: &[&[u8]] = &[
        b"zz\r\n",
        b"\r\n",
        b";ext\r\n",
        b"5\r\nhello!!",
        b"5\r\nhello\rX",
        b"5x\r\n",
        b"fffffffffffffffff\r\n",
        b"0\r\n\rX",
    ];
    for &body in cases {
        let bytes = [&head[..], body].concat();
        let expected = ["begin", "head 200", "desync bad_chunk"];
        assert_eq!(resp_events(&bytes, &[]), expected, "{body:?}");
    }
    // Whitespace before an extension is accepted, and stray CRLFs between
    // messages are skipped.
    let bytes = [&head[..], b"5 ;x\r\nhello\r\n0\r\n\r\n\r\n"].concat();
    assert_eq!(resp_events(&bytes, &[]), ["begin", "head 200", "end 5"]);
}

#[test]
fn oversized_trailers_and_size_lines_desync() {
    let limits = Limits {
        max_head_bytes: 256,
        ..Limits::default()
    };
    let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    for i in 0..100 {
        bytes.extend_from_slice(format!("X-Trailer-{i}: value\r\n").as_bytes());
    }
    let events = summary(&run_with(RESP, limits, &[], [(&bytes[..], 0)]));
    assert_eq!(events, ["begin", "head 200", "desync bad_chunk"]);

    let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 1000));
    let events = summary(&run_with(RESP, limits, &[], [(&bytes[..], 0)]));
    assert_eq!(events, ["begin", "head 200", "desync bad_chunk"]);
}

#[test]
fn close_mid_body_and_until_close() {
    assert_eq!(
        resp_events(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", &[]),
        ["begin", "head 200", "desync closed_mid_message"]
    );
    assert_eq!(
        resp_events(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
            &[]
        ),
        ["begin", "head 200", "desync closed_mid_message"]
    );
    assert_eq!(
        resp_events(b"HTTP/1.1 200 OK\r\n\r\nabc", &[]),
        ["begin", "head 200", "end 3"]
    );
    assert_eq!(
        resp_events(b"HTTP/1.1 200 OK\r\nServer: x\r\nDa", &[]),
        ["begin", "head 200 partial", "desync closed_mid_message"]
    );
    assert_eq!(
        resp_events(b"HTTP/1.", &[]),
        ["begin", "desync closed_mid_message"]
    );
}

#[test]
fn head_field_details() {
    let bytes = b"\r\nOPTIONS * HTTP/1.0\r\nConnection: Keep-Alive\r\nhost: Example.COM \r\n\
                  TraceParent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
                  tracestate: a=1\r\nTracestate: b=2\r\nUser-Agent: x\r\nUser-Agent: y\r\n\r\n";
    let events = whole(REQ, &[], bytes);
    assert_eq!(summary(&events), ["begin", "head OPTIONS *", "end 0"]);
    let head = heads(&events)[0];
    assert_eq!(head.version_minor, 0);
    assert!(!head.connection_close, "HTTP/1.0 with keep-alive");
    assert_eq!(head.host.as_deref(), Some("Example.COM"));
    assert_eq!(
        head.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(head.tracestate.as_deref(), Some("a=1,b=2"));
    assert_eq!(head.user_agent.as_deref(), Some("x"));

    let events = whole(
        REQ,
        &[],
        b"PROPFIND /d HTTP/1.1\nConnection: keep-alive, Close\n\n",
    );
    let head = heads(&events)[0];
    assert_eq!(head.method, Some(Method::Other("PROPFIND".to_owned())));
    assert_eq!(head.method.as_ref().unwrap().as_str(), "PROPFIND");
    assert!(head.connection_close);
    assert_eq!(head.head_bytes, 52);
}

#[test]
fn methods_round_trip() {
    for m in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "get",
    ] {
        assert_eq!(Method::from_token(m).as_str(), m);
    }
    assert_eq!(Method::from_token("get"), Method::Other("get".to_owned()));
}

#[test]
fn long_target_is_truncated() {
    let limits = Limits {
        max_target_len: 8,
        ..Limits::default()
    };
    let bytes = "GET /abcdefghijkl HTTP/1.1\r\n\r\n".as_bytes();
    let events = run_with(REQ, limits, &[], [(bytes, 0)]);
    let head = heads(&events)[0];
    assert_eq!(head.target.as_deref(), Some("/abcdefg"));
    assert!(head.target_truncated && head.complete);
    // Non-ASCII target: cut on a character boundary.
    let bytes = "GET /ééééé HTTP/1.1\r\n\r\n".as_bytes();
    let events = run_with(REQ, limits, &[], [(bytes, 0)]);
    assert_eq!(heads(&events)[0].target.as_deref(), Some("/ééé"));
}

#[test]
fn desync_reason_names() {
    let all = [
        DesyncReason::InvalidHead,
        DesyncReason::HeadTooLarge,
        DesyncReason::TooManyHeaders,
        DesyncReason::InvalidFraming,
        DesyncReason::GapInFraming,
        DesyncReason::BadChunk,
        DesyncReason::Garbage,
        DesyncReason::ClosedMidMessage,
    ];
    let names: std::collections::HashSet<_> = all.iter().map(DesyncReason::as_str).collect();
    assert_eq!(names.len(), all.len());
    assert!(
        names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
}

#[test]
fn stop_ignores_everything() {
    let mut parser = Parser::new(REQ, Limits::default());
    let mut sink = Recorder::default();
    parser.feed(b"GET / HTTP/1.1\r\n\r\n", 0, &mut sink);
    parser.stop();
    parser.feed(b"GET / HTTP/1.1\r\n\r\n", 10, &mut sink);
    parser.close(&mut sink);
    assert!(parser.is_stopped());
    assert_eq!(summary(&sink.events), ["begin", "head GET /", "end 0"]);
}

// ---------------------------------------------------------------------------
// Malformed input.

#[test]
fn tls_client_hello_is_garbage() {
    let hello = fixture("nginx_tls_to_plain").req;
    for kind in [REQ, RESP] {
        assert_eq!(summary(&whole(kind, &[], hello)), ["desync garbage"]);
    }
}

#[test]
fn invalid_heads_desync() {
    let cases: &[(MessageKind, &[u8])] = &[
        (REQ, b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n"),
        (REQ, b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n"),
        (REQ, b"GET /\x00 HTTP/1.1\r\n\r\n"),
        (REQ, b"GET / HTTP/2.0\r\n\r\n"),
        (REQ, b"GET / HTTP/1.1\r\n Folded: no\r\n\r\n"),
        (REQ, b"GET\r\n\r\n"),
        (
            REQ,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ / HTTP/1.1\r\n\r\n",
        ),
        (RESP, b"HTTP/1.1 2000 OK\r\n\r\n"),
        (RESP, b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"),
        (RESP, b"HTTP/1.2 200 OK\r\n\r\n"),
        (RESP, b"HTTPS/1.1 200 OK\r\n\r\n"),
    ];
    for &(kind, bytes) in cases {
        let expected = ["begin", "desync invalid_head"];
        assert_eq!(summary(&whole(kind, &[], bytes)), expected, "{bytes:?}");
        let by_byte = run(kind, &[], bytes.chunks(1).map(|c| (c, 0)));
        assert_eq!(summary(&by_byte), expected, "{bytes:?} byte by byte");
    }
    // Not even a first byte of a message.
    assert_eq!(
        summary(&whole(RESP, &[], b"\x00HTTP/1.1")),
        ["desync garbage"]
    );
    assert_eq!(
        summary(&whole(REQ, &[], b" GET / HTTP/1.1\r\n\r\n")),
        ["desync garbage"]
    );
}

#[test]
fn obsolete_line_folding_is_accepted_in_responses() {
    let bytes = b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(resp_events(bytes, &[]), ["begin", "head 200", "end 1"]);
}

#[test]
fn huge_head_with_known_framing_continues() {
    let big = "a".repeat(20_000);
    let req = format!(
        "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nCookie: {big}\r\nUser-Agent: late\r\n\r\nhello\
         GET /next HTTP/1.1\r\n\r\n"
    );
    let expected = [
        "begin",
        "head POST /big partial",
        "end 5",
        "begin",
        "head GET /next",
        "end 0",
    ];
    let events = whole(REQ, &[], req.as_bytes());
    assert_eq!(summary(&events), expected);
    let head = heads(&events)[0];
    assert_eq!(head.host.as_deref(), Some("h"));
    assert_eq!(head.content_length, Some(5));
    assert_eq!(head.user_agent, None, "after the cut");
    assert_eq!(head.head_bytes, Limits::default().max_head_bytes);
    let chunks = run(REQ, &[], req.as_bytes().chunks(1000).map(|c| (c, 0)));
    assert_eq!(chunks, events);
}

#[test]
fn huge_response_head_without_framing_desyncs() {
    let big = "a".repeat(20_000);
    let resp = format!("HTTP/1.1 200 OK\r\nSet-Cookie: {big}\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(
        resp_events(resp.as_bytes(), &[]),
        ["begin", "head 200 partial", "desync head_too_large"]
    );
    // With a bodiless status the framing is known: the parser goes on.
    let resp =
        format!("HTTP/1.1 304 Not Modified\r\nSet-Cookie: {big}\r\n\r\nHTTP/1.1 204 No\r\n\r\n");
    assert_eq!(
        resp_events(resp.as_bytes(), &[]),
        [
            "begin",
            "head 304 partial",
            "end 0",
            "begin",
            "head 204",
            "end 0"
        ]
    );
}

#[test]
fn huge_request_line_reports_method_and_target_prefix() {
    let target = format!("/{}", "x".repeat(20_000));
    let req = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
    let events = whole(REQ, &[], req.as_bytes());
    let kept = &target[..2048];
    assert_eq!(
        summary(&events),
        [
            "begin".to_owned(),
            format!("head GET {kept} partial"),
            "end 0".to_owned(),
            "begin".to_owned(),
            "head GET /next".to_owned(),
            "end 0".to_owned(),
        ]
    );
    let head = heads(&events)[0];
    assert!(head.target_truncated && !head.complete);
}

#[test]
fn too_many_headers() {
    let mut req = "GET /many HTTP/1.1\r\n".to_owned();
    for i in 0..150 {
        req.push_str(&format!("X-H-{i}: v\r\n"));
    }
    req.push_str("Host: late\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
    let events = whole(REQ, &[], req.as_bytes());
    assert_eq!(
        summary(&events),
        [
            "begin",
            "head GET /many partial",
            "end 0",
            "begin",
            "head GET /next",
            "end 0"
        ]
    );
    assert_eq!(heads(&events)[0].host, None);
    assert_eq!(heads(&events)[0].head_bytes, req.find("GET /next").unwrap());
    for chunk in [1, 7, 100] {
        let got = run(REQ, &[], req.as_bytes().chunks(chunk).map(|c| (c, 0)));
        assert_eq!(got, events, "chunks of {chunk}");
    }

    let mut resp = "HTTP/1.1 200 OK\r\n".to_owned();
    for i in 0..150 {
        resp.push_str(&format!("X-H-{i}: v\r\n"));
    }
    resp.push_str("Content-Length: 1\r\n\r\nx");
    assert_eq!(
        resp_events(resp.as_bytes(), &[]),
        ["begin", "head 200 partial", "desync too_many_headers"]
    );
}

#[test]
fn random_bytes_never_panic_and_stay_bounded() {
    let mut rng = Rng(42);
    let limits = Limits {
        max_head_bytes: 512,
        max_headers: 8,
        max_target_len: 32,
    };
    // Random bytes, and random bytes salted with HTTP-looking pieces.
    let pieces: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"5\r\n",
        b"0\r\n\r\n",
        b"HTTP/1.1 101 S\r\n",
    ];
    for round in 0..2000 {
        let mut bytes = Vec::new();
        while bytes.len() < 2000 {
            if round % 2 == 0 || rng.below(3) == 0 {
                bytes.push(rng.next() as u8);
            } else {
                bytes.extend_from_slice(pieces[rng.below(pieces.len())]);
            }
        }
        for kind in [REQ, RESP] {
            let mut feeds = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                let len = rng.below(300).min(bytes.len() - at);
                let gap = if rng.below(4) == 0 {
                    rng.below(50) as u64
                } else {
                    0
                };
                feeds.push((&bytes[at..at + len], gap));
                at += len;
            }
            let hints = [BodyHint::Normal, BodyHint::NoBody, BodyHint::Tunnel];
            run_with(kind, limits, &hints[..1 + round % 3], feeds);
        }
    }
}

#[test]
fn idle_and_buffered_track_progress() {
    let mut parser = Parser::new(REQ, Limits::default());
    let mut sink = Recorder::default();
    assert!(parser.is_idle());
    parser.feed(b"POST / HTTP/1.1\r\nContent-Le", 0, &mut sink);
    assert!(!parser.is_idle());
    assert_eq!(parser.buffered(), 27);
    parser.feed(b"ngth: 2\r\n\r\nh", 0, &mut sink);
    assert_eq!(parser.buffered(), 0);
    assert!(!parser.is_idle());
    parser.feed(b"i", 0, &mut sink);
    assert!(parser.is_idle());
    parser.feed(b"\x16\x03", 0, &mut sink);
    assert!(parser.is_desynced() && parser.is_idle());
    assert_eq!(parser.kind(), REQ);
}

#[test]
fn tiny_limits_are_raised() {
    let parser = Parser::new(
        REQ,
        Limits {
            max_head_bytes: 0,
            max_headers: 0,
            max_target_len: 0,
        },
    );
    assert_eq!(parser.limits().max_head_bytes, MIN_HEAD_BYTES);
    let events = run_with(
        REQ,
        *parser.limits(),
        &[],
        [(&b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"[..], 0)],
    );
    assert_eq!(summary(&events), ["begin", "head GET  partial", "end 0"]);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn cut_heads_validate_all_bytes_seen() {
    // Found by the fuzzer: an invalid byte in an unfinished last line must
    // make the head invalid whether or not a LF arrived in the same feed.
    let first = &b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n"[..];
    let second = &b"\x81\x05hello"[..];
    let whole = run(RESP, &[], [(&[first, second].concat()[..], 0)]);
    let split = run(RESP, &[], [(first, 0), (second, 0)]);
    assert_eq!(summary(&whole), ["begin", "desync invalid_head"]);
    assert_eq!(split, whole);
    let gap = run(RESP, &[], [(first, 0), (second, 100)]);
    assert_eq!(gap, whole);
}
