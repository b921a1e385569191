//! Tests of [`Http1Session`]: requests and responses of one connection,
//! from the server's side (requests read, responses written) and from the
//! client's (requests written, responses read), with the real captured
//! fixtures of `fixtures/` (see its README) and fake, increasing syscall
//! timestamps.

use std::collections::VecDeque;

use agent_common::Direction;

use super::*;
use crate::protocol::http1::parser::{
    self, BodyHint, DesyncReason, Head, Limits, MessageKind, Method,
};

const REQ: MessageKind = MessageKind::Request;
const RESP: MessageKind = MessageKind::Response;

/// Request timeout used with [`Http1Session::expire`].
const TIMEOUT: u64 = 1_000_000;

// ---------------------------------------------------------------------------
// Harness.

/// One session and a fake clock: every syscall starts 100 ns after the
/// previous one, lasts 10 ns and runs on a new thread id, so each timestamp
/// and tid tells which syscall it came from.
struct Harness {
    session: Http1Session,
    server: bool,
    clock: u64,
    tid: u32,
    out: Vec<HttpExchange>,
}

impl Harness {
    fn new(server: bool) -> Self {
        Self::with_max_pending(server, 64)
    }

    fn with_max_pending(server: bool, max_pending: usize) -> Self {
        Self {
            session: Http1Session::new(server, Limits::default(), max_pending),
            server,
            clock: 1_000,
            tid: 100,
            out: Vec::new(),
        }
    }

    fn side(&self) -> &'static str {
        if self.server { "server" } else { "client" }
    }

    fn feed(&mut self, direction: Direction, data: &[u8], gap: u64) -> EventTimes {
        self.clock += 100;
        self.tid += 1;
        let times = EventTimes {
            enter_ns: self.clock,
            exit_ns: self.clock + 10,
            tid: self.tid,
        };
        self.session
            .on_data(direction, data, gap, times, &mut self.out);
        times
    }

    /// The direction requests travel in, from this side.
    fn request_direction(&self) -> Direction {
        if self.server {
            Direction::Ingress
        } else {
            Direction::Egress
        }
    }

    fn response_direction(&self) -> Direction {
        if self.server {
            Direction::Egress
        } else {
            Direction::Ingress
        }
    }

    /// One syscall moving request bytes (a read on the server, a write on
    /// the client).
    fn request(&mut self, data: &[u8]) -> EventTimes {
        self.request_gap(data, 0)
    }

    fn request_gap(&mut self, data: &[u8], gap: u64) -> EventTimes {
        self.feed(self.request_direction(), data, gap)
    }

    /// One syscall moving response bytes.
    fn response(&mut self, data: &[u8]) -> EventTimes {
        self.response_gap(data, 0)
    }

    fn response_gap(&mut self, data: &[u8], gap: u64) -> EventTimes {
        self.feed(self.response_direction(), data, gap)
    }

    /// Closes the connection 100 ns after the last syscall; returns when.
    fn close(&mut self) -> u64 {
        self.clock += 100;
        let now = self.clock;
        self.session.close(now, &mut self.out);
        now
    }

    fn expire(&mut self, now: u64) -> Vec<HttpExchange> {
        self.session.expire(now, TIMEOUT, &mut self.out);
        self.take()
    }

    fn take(&mut self) -> Vec<HttpExchange> {
        std::mem::take(&mut self.out)
    }

    /// Exactly one exchange completed since the last take.
    fn one(&mut self) -> HttpExchange {
        let mut got = self.take();
        assert_eq!(got.len(), 1, "{}: {got:#?}", self.side());
        got.pop().expect("one")
    }

    fn none(&mut self) {
        let got = self.take();
        assert!(got.is_empty(), "{}: unexpected {got:#?}", self.side());
    }

    /// When a request whose first byte moved in syscall `t` starts: the
    /// entry of the write (client) or the exit of the read (server).
    fn start_of(&self, t: EventTimes) -> u64 {
        if self.server { t.exit_ns } else { t.enter_ns }
    }
}

/// What an exchange is, without timestamps and threads.
type Key = (u64, Head, Option<Head>, Outcome, u64, u64);

fn key(ex: &HttpExchange) -> Key {
    (
        ex.seq,
        (*ex.request).clone(),
        ex.response.as_deref().cloned(),
        ex.outcome,
        ex.request_body_bytes,
        ex.response_body_bytes,
    )
}

fn method(ex: &HttpExchange) -> &str {
    ex.request.method.as_ref().map_or("?", Method::as_str)
}

fn target(ex: &HttpExchange) -> &str {
    ex.request.target.as_deref().unwrap_or("?")
}

fn status(ex: &HttpExchange) -> Option<u16> {
    ex.response.as_ref().and_then(|r| r.status)
}

/// Checks everything but the timestamps.
#[track_caller]
fn check(
    ex: &HttpExchange,
    seq: u64,
    request: (&str, &str),
    status_code: Option<u16>,
    outcome: Outcome,
    request_body: u64,
    response_body: u64,
) {
    assert_eq!(
        (
            ex.seq,
            (method(ex), target(ex)),
            status(ex),
            ex.outcome,
            ex.request_body_bytes,
            ex.response_body_bytes
        ),
        (
            seq,
            request,
            status_code,
            outcome,
            request_body,
            response_body
        ),
        "{ex:#?}"
    );
}

// ---------------------------------------------------------------------------
// Fixtures.

struct Fixture {
    name: &'static str,
    req: &'static [u8],
    resp: &'static [u8],
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            req: include_bytes!(concat!("fixtures/", $name, ".req")),
            resp: include_bytes!(concat!("fixtures/", $name, ".resp")),
        }
    };
}

fn fixtures() -> [Fixture; 11] {
    [
        fixture!("nginx_keepalive"),
        fixture!("nginx_head"),
        fixture!("nginx_304"),
        fixture!("nginx_close"),
        fixture!("nginx_pipelined"),
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

/// Finds where messages end, to cut a stream into its messages.
struct Ends {
    pos: usize,
    ends: Vec<usize>,
    hints: VecDeque<BodyHint>,
}

impl parser::Sink for Ends {
    fn begin(&mut self) {}

    fn head(&mut self, head: Box<Head>) -> BodyHint {
        if matches!(head.status, Some(100..=199)) {
            BodyHint::Normal
        } else {
            self.hints.pop_front().unwrap_or_default()
        }
    }

    fn end(&mut self, _body_bytes: u64) {
        self.ends.push(self.pos);
    }

    /// Only the client's WebSocket frame after the upgrade request: it is
    /// left as the last piece.
    fn desync(&mut self, _reason: DesyncReason) {}

    fn upgraded(&mut self, _upgrade: Option<&str>) {
        self.ends.push(self.pos);
    }
}

/// The messages of a stream (with `hints` for its final responses), plus
/// what follows the last one (after an upgrade) if anything.
fn messages(kind: MessageKind, bytes: &'static [u8], hints: &[BodyHint]) -> Vec<&'static [u8]> {
    let mut parser = parser::Parser::new(kind, Limits::default());
    let mut sink = Ends {
        pos: 0,
        ends: Vec::new(),
        hints: hints.iter().copied().collect(),
    };
    for i in 0..bytes.len() {
        sink.pos = i + 1;
        parser.feed(&bytes[i..=i], 0, &mut sink);
    }
    let mut pieces = Vec::new();
    let mut from = 0;
    for &end in &sink.ends {
        pieces.push(&bytes[from..end]);
        from = end;
    }
    if from < bytes.len() {
        pieces.push(&bytes[from..]);
    }
    pieces
}

fn requests(f: &Fixture) -> Vec<&'static [u8]> {
    messages(REQ, f.req, &[])
}

fn responses(f: &Fixture, hints: &[BodyHint]) -> Vec<&'static [u8]> {
    messages(RESP, f.resp, hints)
}

/// Head and body of a message.
fn split_head(message: &'static [u8]) -> (&'static [u8], &'static [u8]) {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end")
        + 4;
    message.split_at(end)
}

#[test]
fn fixture_messages_are_cut_where_expected() {
    let f = fixture("nginx_keepalive");
    assert_eq!((requests(&f).len(), responses(&f, &[]).len()), (4, 4));
    let f = fixture("nginx_pipelined");
    let hints = [BodyHint::Normal, BodyHint::NoBody];
    assert_eq!((requests(&f).len(), responses(&f, &hints).len()), (3, 3));
    let f = fixture("node_continue");
    assert_eq!((requests(&f).len(), responses(&f, &[]).len()), (1, 2));
    let f = fixture("node_upgrade");
    // The request and the client's WebSocket frame; the 101 and the
    // server's frame.
    assert_eq!((requests(&f).len(), responses(&f, &[]).len()), (2, 2));
}

// ---------------------------------------------------------------------------
// Message sequences.

#[test]
fn keep_alive_sequence() {
    let f = fixture("nginx_keepalive");
    let (reqs, resps) = (requests(&f), responses(&f, &[]));
    let expect = [
        ("/index.html", 200, 61),
        ("/a.txt", 200, 670),
        ("/missing", 404, 153),
        ("/", 200, 61),
    ];
    for server in [true, false] {
        let mut h = Harness::new(server);
        for (i, &(path, code, body)) in expect.iter().enumerate() {
            let t_req = h.request(reqs[i]);
            h.none();
            assert!(!h.session.is_idle());
            let t_resp = h.response(resps[i]);
            let ex = h.one();
            check(
                &ex,
                i as u64,
                ("GET", path),
                Some(code),
                Outcome::Complete,
                0,
                body,
            );
            assert_eq!(ex.start_ns, h.start_of(t_req), "{}", h.side());
            assert_eq!(ex.end_ns, t_resp.exit_ns);
            assert_eq!(ex.tid, t_req.tid);
            assert!(
                ex.request
                    .host
                    .as_deref()
                    .unwrap()
                    .starts_with("127.0.0.1:")
            );
            assert!(h.session.is_idle());
            assert_eq!(h.session.buffered(), 0);
        }
        h.close();
        h.none();
        assert_eq!(h.session.take_counts(), SessionCounts::default());
        assert!(h.session.take_desyncs().is_empty());
    }
}

#[test]
fn start_is_the_first_syscall_of_the_request_end_the_last_of_the_response() {
    let f = fixture("node_post");
    let (head, body) = split_head(f.req);
    let (resp_head, resp_body) = split_head(f.resp);
    for server in [true, false] {
        let mut h = Harness::new(server);
        let (a, b) = head.split_at(10);
        let t_first = h.request(a);
        h.request(b);
        h.request(body);
        h.none();
        h.response(resp_head);
        h.none();
        h.response(&resp_body[..5]);
        h.none();
        let t_last = h.response(&resp_body[5..]);
        let ex = h.one();
        check(
            &ex,
            0,
            ("POST", "/echo"),
            Some(200),
            Outcome::Complete,
            34,
            46,
        );
        assert_eq!(ex.start_ns, h.start_of(t_first));
        assert_eq!(ex.end_ns, t_last.exit_ns);
        assert_eq!(ex.tid, t_first.tid);
        assert_eq!(ex.request.content_length, Some(34));
    }
}

#[test]
fn pipelined_requests_in_one_syscall() {
    let f = fixture("nginx_pipelined");
    let resps = responses(&f, &[BodyHint::Normal, BodyHint::NoBody]);
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(f.req);
        h.none();
        let t1 = h.response(resps[0]);
        let first = h.one();
        check(
            &first,
            0,
            ("GET", "/index.html"),
            Some(200),
            Outcome::Complete,
            0,
            61,
        );
        assert_eq!(
            (first.start_ns, first.end_ns, first.tid),
            (h.start_of(t_req), t1.exit_ns, t_req.tid)
        );
        // The HEAD response and the 404 in one syscall.
        let both: Vec<u8> = [resps[1], resps[2]].concat();
        let t2 = h.response(&both);
        let rest = h.take();
        assert_eq!(rest.len(), 2, "{rest:#?}");
        check(
            &rest[0],
            1,
            ("HEAD", "/a.txt"),
            Some(200),
            Outcome::Complete,
            0,
            0,
        );
        assert_eq!(rest[0].response.as_ref().unwrap().content_length, Some(670));
        check(
            &rest[1],
            2,
            ("GET", "/missing"),
            Some(404),
            Outcome::Complete,
            0,
            153,
        );
        assert!(rest[1].request.connection_close);
        for ex in &rest {
            assert_eq!(
                (ex.start_ns, ex.end_ns, ex.tid),
                (h.start_of(t_req), t2.exit_ns, t_req.tid)
            );
        }
        assert!(h.session.is_idle());
    }
}

#[test]
fn head_response_has_no_body() {
    let f = fixture("nginx_head");
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(f.req);
        let t_resp = h.response(f.resp);
        let ex = h.one();
        check(
            &ex,
            0,
            ("HEAD", "/a.txt"),
            Some(200),
            Outcome::Complete,
            0,
            0,
        );
        assert_eq!(ex.response.as_ref().unwrap().content_length, Some(670));
        assert_eq!(
            (ex.start_ns, ex.end_ns),
            (h.start_of(t_req), t_resp.exit_ns)
        );
        assert!(h.session.is_idle());
        // A next request is framed normally (the 670 body bytes were not
        // expected).
        let next = fixture("nginx_keepalive");
        h.request(requests(&next)[1]);
        h.response(responses(&next, &[])[1]);
        check(
            &h.one(),
            1,
            ("GET", "/a.txt"),
            Some(200),
            Outcome::Complete,
            0,
            670,
        );
    }
}

#[test]
fn not_modified_has_no_body() {
    let f = fixture("nginx_304");
    let (reqs, resps) = (requests(&f), responses(&f, &[]));
    for server in [true, false] {
        let mut h = Harness::new(server);
        h.request(reqs[0]);
        h.response(resps[0]);
        check(
            &h.one(),
            0,
            ("GET", "/index.html"),
            Some(200),
            Outcome::Complete,
            0,
            61,
        );
        let t_req = h.request(reqs[1]);
        let t_resp = h.response(resps[1]);
        let ex = h.one();
        check(
            &ex,
            1,
            ("GET", "/index.html"),
            Some(304),
            Outcome::Complete,
            0,
            0,
        );
        assert_eq!(
            (ex.start_ns, ex.end_ns),
            (h.start_of(t_req), t_resp.exit_ns)
        );
        assert!(h.session.is_idle());
    }
}

#[test]
fn continue_interim_response_does_not_complete_the_request() {
    let f = fixture("node_continue");
    let (head, body) = split_head(f.req);
    assert_eq!(body.len(), 2280);
    let resps = responses(&f, &[]);
    assert!(resps[0].starts_with(b"HTTP/1.1 100 Continue"));
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(head);
        h.response(resps[0]);
        h.none();
        assert!(!h.session.is_idle());
        let (a, b) = body.split_at(1000);
        h.request(a);
        h.request(b);
        h.none();
        let t_final = h.response(resps[1]);
        let ex = h.one();
        check(
            &ex,
            0,
            ("POST", "/upload"),
            Some(200),
            Outcome::Complete,
            2280,
            50,
        );
        assert_eq!(
            (ex.start_ns, ex.end_ns, ex.tid),
            (h.start_of(t_req), t_final.exit_ns, t_req.tid)
        );
        assert!(h.session.is_idle());

        // The 100 and the final response in one syscall.
        let mut h = Harness::new(server);
        h.request(f.req);
        let t_resp = h.response(f.resp);
        let ex = h.one();
        check(
            &ex,
            0,
            ("POST", "/upload"),
            Some(200),
            Outcome::Complete,
            2280,
            50,
        );
        assert_eq!(ex.end_ns, t_resp.exit_ns);
    }
}

#[test]
fn chunked_response_split_across_many_syscalls() {
    let f = fixture("node_chunked");
    let (reqs, resps) = (requests(&f), responses(&f, &[]));
    for server in [true, false] {
        let mut h = Harness::new(server);
        for (i, (path, body, piece)) in [("/chunked", 56, 5), ("/trailers", 20, 1)]
            .into_iter()
            .enumerate()
        {
            let t_req = h.request(reqs[i]);
            let mut last = None;
            for chunk in resps[i].chunks(piece) {
                h.none();
                last = Some(h.response(chunk));
            }
            let ex = h.one();
            check(
                &ex,
                i as u64,
                ("GET", path),
                Some(200),
                Outcome::Complete,
                0,
                body,
            );
            assert!(ex.response.as_ref().unwrap().chunked);
            assert_eq!(
                (ex.start_ns, ex.end_ns, ex.tid),
                (h.start_of(t_req), last.unwrap().exit_ns, t_req.tid)
            );
        }
        assert!(h.session.is_idle());
        assert!(h.session.take_desyncs().is_empty());
    }
}

#[test]
fn connection_close_response_with_length_ends_at_its_last_byte() {
    let f = fixture("nginx_close");
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(f.req);
        let t_resp = h.response(f.resp);
        let ex = h.one();
        check(
            &ex,
            0,
            ("GET", "/a.txt"),
            Some(200),
            Outcome::Complete,
            0,
            670,
        );
        assert!(ex.request.connection_close);
        assert!(ex.response.as_ref().unwrap().connection_close);
        assert_eq!(
            (ex.start_ns, ex.end_ns),
            (h.start_of(t_req), t_resp.exit_ns)
        );
        h.close();
        h.none();
    }
}

#[test]
fn connection_close_response_delimited_by_close() {
    let req = b"GET /stream HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nhello ";
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(req);
        h.response(head);
        h.response(b"world");
        h.none();
        // Not expired while the response runs.
        assert!(h.expire(u64::MAX).is_empty());
        let closed = h.close();
        let ex = h.one();
        check(
            &ex,
            0,
            ("GET", "/stream"),
            Some(200),
            Outcome::Complete,
            0,
            11,
        );
        assert!(ex.response.as_ref().unwrap().connection_close);
        assert_eq!((ex.start_ns, ex.end_ns), (h.start_of(t_req), closed));
        assert!(h.session.is_idle());
    }
}

#[test]
fn http10_response_until_close() {
    let f = fixture("python_http10");
    let (resp_head, resp_body) = split_head(f.resp);
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(f.req);
        h.response(resp_head);
        h.response(&resp_body[..50]);
        h.response(&resp_body[50..]);
        h.none();
        let closed = h.close();
        let ex = h.one();
        check(&ex, 0, ("GET", "/"), Some(200), Outcome::Complete, 0, 108);
        assert_eq!(ex.request.version_minor, 0);
        assert_eq!(ex.response.as_ref().unwrap().version_minor, 0);
        assert_eq!(
            (ex.start_ns, ex.end_ns, ex.tid),
            (h.start_of(t_req), closed, t_req.tid)
        );
    }
}

#[test]
fn upgrade_completes_the_request_and_stops_parsing() {
    let f = fixture("node_upgrade");
    let reqs = requests(&f);
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(reqs[0]);
        h.none();
        // The 101 and the server's first WebSocket frame in one syscall.
        let t_resp = h.response(f.resp);
        let ex = h.one();
        check(&ex, 0, ("GET", "/ws"), Some(101), Outcome::Complete, 0, 0);
        assert_eq!(ex.request.upgrade.as_deref(), Some("websocket"));
        assert_eq!(
            (ex.start_ns, ex.end_ns),
            (h.start_of(t_req), t_resp.exit_ns)
        );
        assert!(h.session.is_upgraded());
        // The client's frame, and anything after, is not HTTP any more.
        h.request(reqs[1]);
        h.request(b"GET / HTTP/1.1\r\n\r\n");
        h.response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        h.none();
        assert!(h.session.take_desyncs().is_empty());
        assert_eq!(h.session.take_counts(), SessionCounts::default());
        assert!(h.expire(u64::MAX).is_empty());
        h.close();
        h.none();
    }
}

// ---------------------------------------------------------------------------
// Timeouts.

#[test]
fn request_without_response_times_out() {
    let f = fixture("nginx_keepalive");
    let (reqs, resps) = (requests(&f), responses(&f, &[]));
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(reqs[0]);
        let start = h.start_of(t_req);
        assert!(h.expire(start + TIMEOUT - 1).is_empty());
        let expired = h.expire(start + TIMEOUT);
        assert_eq!(expired.len(), 1);
        let ex = &expired[0];
        check(ex, 0, ("GET", "/index.html"), None, Outcome::Timeout, 0, 0);
        assert_eq!(
            (ex.start_ns, ex.end_ns, ex.tid),
            (start, start + TIMEOUT, t_req.tid)
        );
        assert!(h.session.is_idle());
        // The late response has no request left: an orphan.
        h.response(resps[0]);
        h.none();
        assert_eq!(h.session.take_counts().orphan_responses, 1);
        // The connection goes on.
        h.request(reqs[1]);
        h.response(resps[1]);
        check(
            &h.one(),
            1,
            ("GET", "/a.txt"),
            Some(200),
            Outcome::Complete,
            0,
            670,
        );
    }
}

#[test]
fn response_under_way_is_not_expired() {
    let f = fixture("nginx_keepalive");
    let (reqs, resps) = (requests(&f), responses(&f, &[]));
    let (resp_head, resp_body) = split_head(resps[1]);
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(reqs[1]);
        // A second request waits behind the first.
        h.request(reqs[2]);
        h.response(resp_head);
        h.response(&resp_body[..100]);
        assert!(h.expire(u64::MAX).is_empty(), "{}", h.side());
        let t_end = h.response(&resp_body[100..]);
        let ex = h.one();
        check(
            &ex,
            0,
            ("GET", "/a.txt"),
            Some(200),
            Outcome::Complete,
            0,
            670,
        );
        assert_eq!((ex.start_ns, ex.end_ns), (h.start_of(t_req), t_end.exit_ns));
        // Now the second one can time out.
        let expired = h.expire(u64::MAX);
        assert_eq!(expired.len(), 1);
        check(
            &expired[0],
            1,
            ("GET", "/missing"),
            None,
            Outcome::Timeout,
            0,
            0,
        );
        assert_eq!(expired[0].end_ns, u64::MAX);
    }
}

#[test]
fn pipelined_queue_expires_in_order() {
    let f = fixture("nginx_keepalive");
    let (reqs, resps) = (requests(&f), responses(&f, &[]));
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t0 = h.request(reqs[0]);
        let t1 = h.request(reqs[1]);
        let t2 = h.request(reqs[2]);
        assert!(h.expire(h.start_of(t0) + TIMEOUT - 1).is_empty());
        let now = h.start_of(t1) + TIMEOUT;
        let expired = h.expire(now);
        assert_eq!(expired.len(), 2, "{expired:#?}");
        check(
            &expired[0],
            0,
            ("GET", "/index.html"),
            None,
            Outcome::Timeout,
            0,
            0,
        );
        check(
            &expired[1],
            1,
            ("GET", "/a.txt"),
            None,
            Outcome::Timeout,
            0,
            0,
        );
        assert_eq!(
            (expired[0].start_ns, expired[0].end_ns, expired[0].tid),
            (h.start_of(t0), now, t0.tid)
        );
        assert_eq!(
            (expired[1].start_ns, expired[1].end_ns, expired[1].tid),
            (h.start_of(t1), now, t1.tid)
        );
        assert!(h.expire(now).is_empty());
        // The next response pairs with the one request left.
        let t_resp = h.response(resps[2]);
        let ex = h.one();
        check(
            &ex,
            2,
            ("GET", "/missing"),
            Some(404),
            Outcome::Complete,
            0,
            153,
        );
        assert_eq!(
            (ex.start_ns, ex.end_ns, ex.tid),
            (h.start_of(t2), t_resp.exit_ns, t2.tid)
        );
    }
}

// ---------------------------------------------------------------------------
// Close.

#[test]
fn close_with_pending_requests() {
    let f = fixture("nginx_pipelined");
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(f.req);
        let closed = h.close();
        let got = h.take();
        assert_eq!(got.len(), 3, "{got:#?}");
        for (i, (ex, (m, path))) in got
            .iter()
            .zip([
                ("GET", "/index.html"),
                ("HEAD", "/a.txt"),
                ("GET", "/missing"),
            ])
            .enumerate()
        {
            check(
                ex,
                i as u64,
                (m, path),
                None,
                Outcome::ConnectionClosed,
                0,
                0,
            );
            assert_eq!(
                (ex.start_ns, ex.end_ns, ex.tid),
                (h.start_of(t_req), closed, t_req.tid)
            );
        }
        assert!(h.session.is_idle());
    }
}

#[test]
fn close_mid_request_head() {
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Le");
        let closed = h.close();
        let ex = h.one();
        check(
            &ex,
            0,
            ("POST", "/upload"),
            None,
            Outcome::ConnectionClosed,
            0,
            0,
        );
        assert!(!ex.request.complete);
        assert_eq!(ex.request.host.as_deref(), Some("example.com"));
        assert_eq!((ex.start_ns, ex.end_ns), (h.start_of(t_req), closed));
        let desyncs = h.session.take_desyncs();
        assert_eq!(
            desyncs,
            [Desync {
                stream: REQ,
                reason: "closed_mid_message"
            }]
        );
    }
}

#[test]
fn close_mid_response_keeps_the_response_head() {
    let f = fixture("nginx_pipelined");
    let resps = responses(&f, &[BodyHint::Normal, BodyHint::NoBody]);
    let (resp_head, resp_body) = split_head(resps[0]);
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(f.req);
        h.response(resp_head);
        h.response(&resp_body[..20]);
        h.none();
        let closed = h.close();
        let got = h.take();
        assert_eq!(got.len(), 3, "{}: {got:#?}", h.side());
        // The response under way is attached to its request.
        check(
            &got[0],
            0,
            ("GET", "/index.html"),
            Some(200),
            Outcome::ConnectionClosed,
            0,
            0,
        );
        assert_eq!(got[0].response.as_ref().unwrap().content_length, Some(61));
        check(
            &got[1],
            1,
            ("HEAD", "/a.txt"),
            None,
            Outcome::ConnectionClosed,
            0,
            0,
        );
        check(
            &got[2],
            2,
            ("GET", "/missing"),
            None,
            Outcome::ConnectionClosed,
            0,
            0,
        );
        for ex in &got {
            assert_eq!((ex.start_ns, ex.end_ns), (h.start_of(t_req), closed));
        }
        assert_eq!(
            h.session.take_desyncs(),
            [Desync {
                stream: RESP,
                reason: "closed_mid_message"
            }]
        );
        assert_eq!(h.session.take_counts(), SessionCounts::default());
    }
}

#[test]
fn orphan_response_cut_by_close_is_counted() {
    let f = fixture("nginx_keepalive");
    let (resp_head, resp_body) = split_head(responses(&f, &[])[1]);
    for server in [true, false] {
        let mut h = Harness::new(server);
        h.response(resp_head);
        h.response(&resp_body[..10]);
        h.close();
        h.none();
        assert_eq!(h.session.take_counts().orphan_responses, 1);
    }
}

#[test]
fn close_mid_response_head() {
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(b"GET / HTTP/1.1\r\n\r\n");
        h.response(b"HTTP/1.1 502 Bad Gateway\r\nContent-Len");
        let closed = h.close();
        let ex = h.one();
        check(
            &ex,
            0,
            ("GET", "/"),
            Some(502),
            Outcome::ConnectionClosed,
            0,
            0,
        );
        assert!(!ex.response.as_ref().unwrap().complete);
        assert_eq!((ex.start_ns, ex.end_ns), (h.start_of(t_req), closed));
    }
}

// ---------------------------------------------------------------------------
// Orphans, overflow, gaps.

#[test]
fn orphan_response_is_counted_then_the_connection_goes_on() {
    let f = fixture("nginx_keepalive");
    let (reqs, resps) = (requests(&f), responses(&f, &[]));
    for server in [true, false] {
        let mut h = Harness::new(server);
        // The agent joined after the first request was sent.
        h.response(resps[0]);
        h.none();
        assert_eq!(
            h.session.take_counts(),
            SessionCounts {
                orphan_responses: 1,
                pending_overflow: 0
            }
        );
        assert_eq!(h.session.take_counts(), SessionCounts::default());
        let t_req = h.request(reqs[1]);
        let t_resp = h.response(resps[1]);
        let ex = h.one();
        check(
            &ex,
            0,
            ("GET", "/a.txt"),
            Some(200),
            Outcome::Complete,
            0,
            670,
        );
        assert_eq!(
            (ex.start_ns, ex.end_ns, ex.tid),
            (h.start_of(t_req), t_resp.exit_ns, t_req.tid)
        );
        assert!(h.session.take_desyncs().is_empty());
    }
}

#[test]
fn tls_to_plain_port_gives_a_desync_and_an_orphan() {
    let f = fixture("nginx_tls_to_plain");
    for server in [true, false] {
        let mut h = Harness::new(server);
        h.request(f.req);
        h.response(f.resp);
        h.close();
        h.none();
        assert_eq!(h.session.take_counts().orphan_responses, 1);
        assert_eq!(
            h.session.take_desyncs(),
            [Desync {
                stream: REQ,
                reason: "garbage"
            }]
        );
    }
}

#[test]
fn pending_overflow_drops_the_oldest_and_keeps_pairing() {
    let f = fixture("nginx_keepalive");
    let (reqs, resps) = (requests(&f), responses(&f, &[]));
    for server in [true, false] {
        let mut h = Harness::with_max_pending(server, 2);
        h.request(reqs[0]);
        h.request(reqs[1]);
        assert_eq!(h.session.take_counts(), SessionCounts::default());
        h.request(reqs[2]);
        assert_eq!(
            h.session.take_counts(),
            SessionCounts {
                orphan_responses: 0,
                pending_overflow: 1
            }
        );
        // The first response belongs to the dropped request and is
        // consumed without a span; the kept requests take the next two.
        h.response(resps[0]);
        h.response(resps[1]);
        h.response(resps[2]);
        let got = h.take();
        let seqs: Vec<(u64, &str)> = got.iter().map(|ex| (ex.seq, target(ex))).collect();
        assert_eq!(seqs, [(1, "/a.txt"), (2, "/missing")]);
    }
}

#[test]
fn gap_inside_content_length_body_still_completes() {
    let f = fixture("nginx_keepalive");
    let (reqs, resps) = (requests(&f), responses(&f, &[]));
    let resp = resps[1];
    let (head, _) = split_head(resp);
    for server in [true, false] {
        let mut h = Harness::new(server);
        // One syscall whose data was cut after 100 body bytes.
        let captured = head.len() + 100;
        let t_req = h.request(reqs[1]);
        let t_resp = h.response_gap(&resp[..captured], (resp.len() - captured) as u64);
        let ex = h.one();
        check(
            &ex,
            0,
            ("GET", "/a.txt"),
            Some(200),
            Outcome::Complete,
            0,
            670,
        );
        assert_eq!(
            (ex.start_ns, ex.end_ns),
            (h.start_of(t_req), t_resp.exit_ns)
        );
        // A gap spanning syscalls: cut data, then the rest of the body.
        h.request(reqs[1]);
        h.response_gap(&resp[..captured], 300);
        h.none();
        let t_resp = h.response(&resp[captured + 300..]);
        let ex = h.one();
        check(
            &ex,
            1,
            ("GET", "/a.txt"),
            Some(200),
            Outcome::Complete,
            0,
            670,
        );
        assert_eq!(ex.end_ns, t_resp.exit_ns);
        assert!(h.session.take_desyncs().is_empty());
        // And the connection goes on.
        h.request(reqs[2]);
        h.response(resps[2]);
        check(
            &h.one(),
            2,
            ("GET", "/missing"),
            Some(404),
            Outcome::Complete,
            0,
            153,
        );
    }
}

#[test]
fn gap_over_chunk_framing_truncates_then_recovers() {
    let f = fixture("node_chunked");
    let (reqs, resps) = (requests(&f), responses(&f, &[]));
    let resp = resps[0];
    let (head, body) = split_head(resp);
    assert!(body.starts_with(b"b\r\nfirst part\n\r\n"));
    for server in [true, false] {
        let mut h = Harness::new(server);
        let t_req = h.request(reqs[0]);
        // Captured: the head, the first size line and 5 of the 11 chunk
        // bytes; the gap covers the rest, chunk framing included.
        let captured = head.len() + 3 + 5;
        let t_resp = h.response_gap(&resp[..captured], (resp.len() - captured) as u64);
        let ex = h.one();
        check(
            &ex,
            0,
            ("GET", "/chunked"),
            Some(200),
            Outcome::Truncated,
            0,
            0,
        );
        assert_eq!(
            (ex.start_ns, ex.end_ns, ex.tid),
            (h.start_of(t_req), t_resp.exit_ns, t_req.tid)
        );
        assert_eq!(
            h.session.take_desyncs(),
            [Desync {
                stream: RESP,
                reason: "gap_in_framing"
            }]
        );
        assert!(h.session.is_idle());
        // The next exchange starts a syscall: framing is found again.
        let t_req = h.request(reqs[1]);
        let t_resp = h.response(resps[1]);
        let ex = h.one();
        check(
            &ex,
            1,
            ("GET", "/trailers"),
            Some(200),
            Outcome::Complete,
            0,
            20,
        );
        assert_eq!(
            (ex.start_ns, ex.end_ns),
            (h.start_of(t_req), t_resp.exit_ns)
        );
        assert!(h.session.take_desyncs().is_empty());
    }
}

// ---------------------------------------------------------------------------
// Split invariance.

/// The syscalls of a fixture in a plausible order: `(is_request, bytes)`.
fn script(f: &Fixture) -> Vec<(bool, &'static [u8])> {
    let alternate = |reqs: Vec<&'static [u8]>, resps: Vec<&'static [u8]>| {
        assert_eq!(reqs.len(), resps.len(), "{}", f.name);
        reqs.into_iter()
            .zip(resps)
            .flat_map(|(q, r)| [(true, q), (false, r)])
            .collect::<Vec<_>>()
    };
    match f.name {
        "nginx_pipelined" => {
            let resps = responses(f, &[BodyHint::Normal, BodyHint::NoBody]);
            std::iter::once((true, f.req))
                .chain(resps.into_iter().map(|r| (false, r)))
                .collect()
        }
        "nginx_head" => alternate(requests(f), responses(f, &[BodyHint::NoBody])),
        "nginx_tls_to_plain" => vec![(true, f.req), (false, f.resp)],
        "node_continue" => {
            let (head, body) = split_head(f.req);
            let resps = responses(f, &[]);
            vec![
                (true, head),
                (false, resps[0]),
                (true, body),
                (false, resps[1]),
            ]
        }
        "node_upgrade" => {
            let reqs = requests(f);
            vec![(true, reqs[0]), (false, f.resp), (true, reqs[1])]
        }
        _ => alternate(requests(f), responses(f, &[])),
    }
}

/// Runs a script, then closes; returns the exchanges, counts and desyncs.
fn run_script(server: bool, steps: &[(bool, &[u8])]) -> (Vec<Key>, SessionCounts) {
    let mut h = Harness::new(server);
    for &(is_request, data) in steps {
        if is_request {
            h.request(data);
        } else {
            h.response(data);
        }
    }
    h.close();
    let exchanges = h.take().iter().map(key).collect();
    (exchanges, h.session.take_counts())
}

#[test]
fn fixture_scripts_give_the_expected_exchanges() {
    /// Target, status and outcome of each exchange.
    type Expected = &'static [(&'static str, Option<u16>, Outcome)];
    let expect: &[(&str, Expected)] = &[
        (
            "nginx_keepalive",
            &[
                ("/index.html", Some(200), Outcome::Complete),
                ("/a.txt", Some(200), Outcome::Complete),
                ("/missing", Some(404), Outcome::Complete),
                ("/", Some(200), Outcome::Complete),
            ],
        ),
        ("nginx_head", &[("/a.txt", Some(200), Outcome::Complete)]),
        (
            "nginx_304",
            &[
                ("/index.html", Some(200), Outcome::Complete),
                ("/index.html", Some(304), Outcome::Complete),
            ],
        ),
        ("nginx_close", &[("/a.txt", Some(200), Outcome::Complete)]),
        (
            "nginx_pipelined",
            &[
                ("/index.html", Some(200), Outcome::Complete),
                ("/a.txt", Some(200), Outcome::Complete),
                ("/missing", Some(404), Outcome::Complete),
            ],
        ),
        ("nginx_tls_to_plain", &[]),
        ("node_post", &[("/echo", Some(200), Outcome::Complete)]),
        (
            "node_chunked",
            &[
                ("/chunked", Some(200), Outcome::Complete),
                ("/trailers", Some(200), Outcome::Complete),
            ],
        ),
        (
            "node_continue",
            &[("/upload", Some(200), Outcome::Complete)],
        ),
        ("node_upgrade", &[("/ws", Some(101), Outcome::Complete)]),
        ("python_http10", &[("/", Some(200), Outcome::Complete)]),
    ];
    assert_eq!(expect.len(), fixtures().len());
    for &(name, exchanges) in expect {
        let f = fixture(name);
        for server in [true, false] {
            let (got, _) = run_script(server, &script(&f));
            let got: Vec<(u64, String, Option<u16>, Outcome)> = got
                .iter()
                .map(|(seq, req, resp, outcome, ..)| {
                    (
                        *seq,
                        req.target.clone().unwrap_or_default(),
                        resp.as_ref().and_then(|r| r.status),
                        *outcome,
                    )
                })
                .collect();
            let want: Vec<(u64, String, Option<u16>, Outcome)> = exchanges
                .iter()
                .enumerate()
                .map(|(i, &(path, code, outcome))| (i as u64, path.to_owned(), code, outcome))
                .collect();
            assert_eq!(got, want, "{name} server={server}");
        }
    }
}

#[test]
fn fixtures_split_at_every_byte() {
    for f in fixtures() {
        let steps = script(&f);
        for server in [true, false] {
            let expected = run_script(server, &steps);
            for (i, &(is_request, data)) in steps.iter().enumerate() {
                for at in 0..=data.len() {
                    let (a, b) = data.split_at(at);
                    let mut split: Vec<(bool, &[u8])> = steps[..i].to_vec();
                    split.push((is_request, a));
                    split.push((is_request, b));
                    split.extend_from_slice(&steps[i + 1..]);
                    let got = run_script(server, &split);
                    assert_eq!(
                        got, expected,
                        "{} server={server} syscall {i} split at {at}",
                        f.name
                    );
                }
            }
        }
    }
}
