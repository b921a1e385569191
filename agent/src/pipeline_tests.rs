//! Tests of the [`Pipeline`] without BPF: records built by hand go in,
//! spans come out of the export queue.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, TcpListener},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use agent_common::{CloseReason, Direction, Protocol, Role};
use opentelemetry::{Key, Value};

use super::*;
use crate::{
    capture::{ConnClose, ConnOpen, DataEvent, ProcExit, ProcInfo, Record},
    clock::monotonic_ns,
    config::{Config, FileConfig, FileConnections, FileHttp, Flags, OtelEnv},
    export::{SpanQueue, SpanReceiver},
    resource::{HostPaths, ResourceCache},
    span::{SpanKind, SpanRecord, SpanStatus},
    telemetry::Metrics,
};

/// The traced process's end of every connection, and its peer. Not on
/// loopback, so no socket of this test process can have these addresses.
const LOCAL: (IpAddr, u16) = (IpAddr::V4(Ipv4Addr::new(10, 9, 8, 7)), 8080);
const PEER: (IpAddr, u16) = (IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 51234);
const NETNS: u32 = 4_026_531_840;
/// A pid that does not exist (below the largest `pid_max`, 2^22).
const FAKE_PID: u32 = 4_000_000;

struct Harness {
    pipeline: Pipeline,
    rx: SpanReceiver,
    metrics: Arc<Metrics>,
    /// Monotonic time when the harness was built: records are stamped
    /// relative to it, as the kernel would.
    base: u64,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(FileConfig::default())
    }

    fn with_config(file: FileConfig) -> Self {
        let cfg =
            Config::resolve(&Flags::default(), file, &OtelEnv::default()).expect("valid config");
        let metrics = Metrics::new();
        let (queue, rx) = SpanQueue::new(1024, Arc::clone(&metrics));
        let pipeline = Pipeline::new(
            &cfg,
            ResourceCache::new(HostPaths::default(), 16),
            None,
            queue,
            Arc::clone(&metrics),
        );
        Self {
            pipeline,
            rx,
            metrics,
            base: monotonic_ns(),
        }
    }

    fn open(&mut self, tgid: u32, sk: u64, role: Role, ts_ns: u64) {
        self.open_to(tgid, sk, role, PEER, ts_ns);
    }

    fn open_to(&mut self, tgid: u32, sk: u64, role: Role, remote: (IpAddr, u16), ts_ns: u64) {
        self.pipeline.on_record(Record::ConnOpen(ConnOpen {
            role,
            protocol: Protocol::Http1,
            tcp_state: 1,
            tgid,
            tid: tgid,
            fd: 7,
            sk,
            ts_ns,
            netns: NETNS,
            local: LOCAL,
            remote,
            comm: "testcomm".to_owned(),
        }));
    }

    /// One syscall on connection `(tgid, sk)`, run by thread `tid` from
    /// `enter_ns` to `exit_ns`.
    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        tgid: u32,
        sk: u64,
        tid: u32,
        direction: Direction,
        payload: &[u8],
        enter_ns: u64,
        exit_ns: u64,
    ) {
        self.pipeline.on_record(Record::Data(DataEvent::whole(
            direction,
            (tgid, tid, sk),
            payload,
            (enter_ns, exit_ns),
        )));
    }

    fn close(&mut self, tgid: u32, sk: u64, ts_ns: u64) {
        self.pipeline.on_record(Record::ConnClose(ConnClose {
            reason: CloseReason::Close,
            old_tcp_state: 1,
            tgid,
            fd: 7,
            sk,
            ts_ns,
        }));
    }

    /// Everything the pipeline handed to the exporter so far.
    fn spans(&mut self) -> Vec<SpanRecord> {
        self.pipeline.flush();
        let mut spans = Vec::new();
        while let Some(batch) = self.rx.try_recv() {
            spans.extend(batch);
        }
        spans
    }

    fn one_span(&mut self) -> SpanRecord {
        let mut spans = self.spans();
        assert_eq!(spans.len(), 1, "{spans:#?}");
        spans.pop().expect("one")
    }

    /// The value of one series of the Prometheus exposition (0 if
    /// absent), e.g. `name{a="x",b="y"}`; labels in any order.
    fn metric(&self, series: &str) -> u64 {
        let want = parse_series(series);
        self.metrics
            .render()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                (parse_series(series) == want).then(|| value.parse::<f64>().expect("number") as u64)
            })
            .unwrap_or(0)
    }
}

/// A series name and its sorted labels.
fn parse_series(series: &str) -> (String, Vec<String>) {
    match series.split_once('{') {
        Some((name, labels)) => {
            let mut labels: Vec<String> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            labels.sort();
            (name.to_owned(), labels)
        }
        None => (series.to_owned(), Vec::new()),
    }
}

/// All attributes as text.
fn attrs(span: &SpanRecord) -> BTreeMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.as_str().to_owned(), kv.value.as_str().into_owned()))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn resource_attr(span: &SpanRecord, key: &'static str) -> Option<Value> {
    span.resource.resource.get(&Key::from_static_str(key))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

fn hex<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

const OK_HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

// ---------------------------------------------------------------------------
// Spans and their attributes.

#[test]
fn server_connection_gives_server_spans() {
    let mut h = Harness::new();
    let pid = std::process::id();
    let t = h.base;
    h.open(pid, 1, Role::Server, t);
    let req = b"GET /search?q=shoes&page=2 HTTP/1.1\r\nHost: shop.example:8443\r\n\
                User-Agent: test-client/1.0\r\nAccept: */*\r\n\r\n";
    h.data(pid, 1, 11, Direction::Ingress, req, t + 1_000, t + 2_000);
    assert!(h.spans().is_empty());
    h.data(
        pid,
        1,
        12,
        Direction::Egress,
        OK_HELLO,
        t + 5_000,
        t + 7_000,
    );
    let span = h.one_span();
    assert_eq!(span.kind, SpanKind::Server);
    assert_eq!(span.name, "GET /search");
    assert_eq!(span.status, SpanStatus::Unset);
    assert_eq!(
        attrs(&span),
        map(&[
            ("http.request.method", "GET"),
            ("network.protocol.version", "1.1"),
            ("network.peer.address", "10.1.2.3"),
            ("network.peer.port", "51234"),
            ("user_agent.original", "test-client/1.0"),
            ("url.scheme", "http"),
            ("url.path", "/search"),
            ("url.query", "q=REDACTED&page=REDACTED"),
            ("server.address", "shop.example"),
            ("server.port", "8443"),
            ("client.address", "10.1.2.3"),
            ("client.port", "51234"),
            ("http.response.status_code", "200"),
            ("http.route", "/search"),
        ])
    );
    assert_eq!(span.attr("server.port"), Some(&Value::I64(8443)));
    assert_eq!(
        span.attr("http.response.status_code"),
        Some(&Value::I64(200))
    );
    // Starts at the exit of the read of the request, ends at the exit of
    // the write of the response.
    assert_eq!(span.end_unix_ns - span.start_unix_ns, 5_000);
    assert!(span.start_unix_ns.abs_diff(unix_now()) < 5_000_000_000);
    // A new trace: nothing came in.
    assert_eq!(span.parent_span_id, [0; 8]);
    assert!(!span.parent_is_remote);
    assert_ne!(span.trace_id, [0; 16]);
    assert_eq!(span.correlation.seq, 0);
    assert_eq!(span.correlation.tid, 11);
    assert_eq!(
        (span.correlation.local, span.correlation.remote),
        (LOCAL, PEER)
    );
    assert_eq!(span.correlation.netns, NETNS);
    assert_eq!(span.resource.info.pid, pid);
    assert_eq!(
        resource_attr(&span, "process.pid"),
        Some(Value::I64(i64::from(pid)))
    );

    // 5xx fails a server span; the Host without port means port 80.
    let req = b"POST /fail HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 2\r\n\r\n{}";
    h.data(pid, 1, 13, Direction::Ingress, req, t + 10_000, t + 11_000);
    let resp = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    h.data(pid, 1, 12, Direction::Egress, resp, t + 12_000, t + 13_000);
    let span = h.one_span();
    assert_eq!(span.name, "POST /fail");
    assert!(matches!(span.status, SpanStatus::Error { .. }));
    let a = attrs(&span);
    assert_eq!(a["error.type"], "503");
    assert_eq!(a["server.port"], "80");
    assert_eq!(a["url.path"], "/fail");
    assert!(!a.contains_key("url.query"));
    assert!(!a.contains_key("user_agent.original"));
    assert_eq!(span.correlation.seq, 1);
    assert_eq!(span.end_unix_ns - span.start_unix_ns, 2_000);

    // 4xx does not; HTTP/1.0 without Host: the local address.
    let req = b"GET /nope HTTP/1.0\r\n\r\n";
    h.data(pid, 1, 13, Direction::Ingress, req, t + 20_000, t + 21_000);
    let resp = b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    h.data(pid, 1, 12, Direction::Egress, resp, t + 22_000, t + 23_000);
    let span = h.one_span();
    assert_eq!(span.status, SpanStatus::Unset);
    let a = attrs(&span);
    assert!(!a.contains_key("error.type"));
    assert_eq!(a["network.protocol.version"], "1.0");
    assert_eq!(a["server.address"], "10.9.8.7");
    assert_eq!(a["server.port"], "8080");

    assert_eq!(h.metric("agent_spans_produced_total{kind=\"server\"}"), 3);
    assert_eq!(
        h.metric("agent_exchanges_total{outcome=\"complete\",protocol=\"http1\"}"),
        3
    );
    assert_eq!(h.metric("agent_connections_tracked"), 1);
}

#[test]
fn client_connection_gives_client_spans() {
    let mut h = Harness::new();
    let pid = std::process::id();
    let t = h.base;
    h.open(pid, 2, Role::Client, t);
    let req = b"GET /items/42?token=abc&x HTTP/1.1\r\nHost: api.example:9000\r\n\
                User-Agent: curl/8.0\r\n\r\n";
    h.data(pid, 2, 21, Direction::Egress, req, t + 1_000, t + 2_000);
    let resp = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!";
    h.data(pid, 2, 21, Direction::Ingress, resp, t + 3_000, t + 9_000);
    let span = h.one_span();
    assert_eq!(span.kind, SpanKind::Client);
    assert_eq!(span.name, "GET");
    assert!(matches!(span.status, SpanStatus::Error { .. }));
    assert_eq!(
        attrs(&span),
        map(&[
            ("http.request.method", "GET"),
            ("network.protocol.version", "1.1"),
            ("network.peer.address", "10.1.2.3"),
            ("network.peer.port", "51234"),
            ("user_agent.original", "curl/8.0"),
            (
                "url.full",
                "http://api.example:9000/items/42?token=REDACTED&REDACTED"
            ),
            ("server.address", "api.example"),
            ("server.port", "9000"),
            ("http.response.status_code", "404"),
            ("error.type", "404"),
        ])
    );
    // From the entry of the write to the exit of the read.
    assert_eq!(span.end_unix_ns - span.start_unix_ns, 8_000);
    assert_eq!(span.correlation.tid, 21);

    // No Host: the URL names the peer.
    let req = b"DELETE /x HTTP/1.1\r\n\r\n";
    h.data(pid, 2, 22, Direction::Egress, req, t + 10_000, t + 11_000);
    let resp = b"HTTP/1.1 204 No Content\r\n\r\n";
    h.data(pid, 2, 22, Direction::Ingress, resp, t + 12_000, t + 13_000);
    let span = h.one_span();
    assert_eq!(span.status, SpanStatus::Unset);
    let a = attrs(&span);
    assert_eq!(a["url.full"], "http://10.1.2.3:51234/x");
    assert_eq!(a["server.address"], "10.1.2.3");
    assert_eq!(a["server.port"], "51234");
    assert_eq!(span.correlation.seq, 1);
    assert_eq!(h.metric("agent_spans_produced_total{kind=\"client\"}"), 2);
}

#[test]
fn unknown_role_is_inferred_from_the_first_bytes() {
    let mut h = Harness::new();
    let pid = std::process::id();
    let t = h.base;
    let req = b"GET /r HTTP/1.1\r\nHost: h\r\n\r\n";
    // A request read: the process serves.
    h.open(pid, 1, Role::Unknown, t);
    h.data(pid, 1, 1, Direction::Ingress, req, t + 10, t + 20);
    h.data(pid, 1, 1, Direction::Egress, OK_HELLO, t + 30, t + 40);
    assert_eq!(h.one_span().kind, SpanKind::Server);
    // A request written: the process is a client.
    h.open(pid, 2, Role::Unknown, t);
    h.data(pid, 2, 1, Direction::Egress, req, t + 10, t + 20);
    h.data(pid, 2, 1, Direction::Ingress, OK_HELLO, t + 30, t + 40);
    let span = h.one_span();
    assert_eq!(span.kind, SpanKind::Client);
    assert_eq!(span.end_unix_ns - span.start_unix_ns, 30);
    // A response read first (its request was sent before the agent
    // started): a client; that response is an orphan, the next exchange
    // is a client span.
    h.open(pid, 3, Role::Unknown, t);
    h.data(pid, 3, 1, Direction::Ingress, OK_HELLO, t + 10, t + 20);
    assert!(h.spans().is_empty());
    assert_eq!(h.metric("agent_http_orphan_responses_total"), 1);
    h.data(pid, 3, 1, Direction::Egress, req, t + 30, t + 40);
    h.data(pid, 3, 1, Direction::Ingress, OK_HELLO, t + 50, t + 60);
    let span = h.one_span();
    assert_eq!(span.kind, SpanKind::Client);
    assert_eq!(span.correlation.seq, 0);
    // A response written first: a server.
    h.open(pid, 4, Role::Unknown, t);
    h.data(pid, 4, 1, Direction::Egress, OK_HELLO, t + 10, t + 20);
    h.data(pid, 4, 1, Direction::Ingress, req, t + 30, t + 40);
    h.data(pid, 4, 1, Direction::Egress, OK_HELLO, t + 50, t + 60);
    assert_eq!(h.one_span().kind, SpanKind::Server);
    assert_eq!(h.metric("agent_http_orphan_responses_total"), 2);
}

#[test]
fn traceparent_joins_the_incoming_trace() {
    let mut h = Harness::new();
    let pid = std::process::id();
    let t = h.base;
    h.open(pid, 1, Role::Server, t);
    let req = b"GET / HTTP/1.1\r\nHost: h\r\n\
                traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
                tracestate: congo=t61rcWkgMzE\r\n\r\n";
    h.data(pid, 1, 1, Direction::Ingress, req, t + 10, t + 20);
    h.data(pid, 1, 1, Direction::Egress, OK_HELLO, t + 30, t + 40);
    let span = h.one_span();
    assert_eq!(span.trace_id, hex::<16>("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(span.parent_span_id, hex::<8>("00f067aa0ba902b7"));
    assert!(span.parent_is_remote);
    assert_eq!(span.trace_flags, 1);
    assert_eq!(span.trace_state.as_deref(), Some("congo=t61rcWkgMzE"));
    assert_ne!(span.span_id, span.parent_span_id);
    assert_ne!(span.span_id, [0; 8]);
}

// ---------------------------------------------------------------------------
// Ends of connections.

#[test]
fn process_exit_ends_its_connections() {
    let mut h = Harness::new();
    let pid = std::process::id();
    let other = FAKE_PID + 1;
    let t = h.base;
    h.open(pid, 1, Role::Server, t);
    h.open(pid, 2, Role::Server, t);
    h.open(other, 3, Role::Server, t);
    let req = b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n";
    h.data(pid, 1, 5, Direction::Ingress, req, t + 10, t + 20);
    h.data(other, 3, 6, Direction::Ingress, req, t + 10, t + 20);
    assert_eq!(h.metric("agent_connections_tracked"), 3);
    h.pipeline.on_record(Record::ProcExit(ProcExit {
        tgid: pid,
        ts_ns: t + 1_020,
    }));
    let span = h.one_span();
    assert_eq!(span.kind, SpanKind::Server);
    assert!(matches!(span.status, SpanStatus::Error { .. }));
    let a = attrs(&span);
    assert_eq!(a["error.type"], "connection_closed");
    assert!(!a.contains_key("http.response.status_code"));
    assert_eq!(span.end_unix_ns - span.start_unix_ns, 1_000);
    assert_eq!(h.metric("agent_connections_tracked"), 1);
    assert_eq!(
        h.metric("agent_exchanges_total{outcome=\"connection_closed\",protocol=\"http1\"}"),
        1
    );
    // The connections are gone; the other process's is not.
    h.data(pid, 1, 5, Direction::Egress, OK_HELLO, t + 2_000, t + 2_010);
    assert_eq!(
        h.metric("agent_events_lost_total{reason=\"unknown_connection\"}"),
        1
    );
    h.data(
        other,
        3,
        6,
        Direction::Egress,
        OK_HELLO,
        t + 2_000,
        t + 2_010,
    );
    let span = h.one_span();
    assert_eq!(span.status, SpanStatus::Unset);
    assert_eq!(span.resource.info.pid, other);
}

#[test]
fn close_mid_request_ends_it() {
    let mut h = Harness::new();
    let pid = std::process::id();
    let t = h.base;
    h.open(pid, 1, Role::Server, t);
    let req = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789";
    h.data(pid, 1, 5, Direction::Ingress, req, t + 10, t + 20);
    h.close(pid, 1, t + 520);
    let span = h.one_span();
    assert_eq!(span.name, "POST /upload");
    assert_eq!(attrs(&span)["error.type"], "connection_closed");
    assert_eq!(span.end_unix_ns - span.start_unix_ns, 500);
    assert_eq!(
        h.metric(
            "agent_parse_errors_total{protocol=\"http1\",reason=\"closed_mid_message\",stream=\"request\"}"
        ),
        1
    );
    assert_eq!(h.metric("agent_connections_tracked"), 0);
}

#[test]
fn close_mid_response_is_connection_closed() {
    let mut h = Harness::new();
    let pid = std::process::id();
    let t = h.base;
    h.open(pid, 1, Role::Client, t);
    h.data(
        pid,
        1,
        5,
        Direction::Egress,
        b"GET / HTTP/1.1\r\n\r\n",
        t + 10,
        t + 20,
    );
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial";
    h.data(pid, 1, 5, Direction::Ingress, resp, t + 30, t + 40);
    h.close(pid, 1, t + 110);
    let span = h.one_span();
    assert!(matches!(span.status, SpanStatus::Error { .. }));
    let a = attrs(&span);
    assert_eq!(a["error.type"], "connection_closed");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(span.end_unix_ns - span.start_unix_ns, 100);
}

#[test]
fn tick_times_out_old_requests() {
    let mut h = Harness::with_config(FileConfig {
        http: FileHttp {
            request_timeout: Some(Duration::from_secs(1)),
            ..FileHttp::default()
        },
        ..FileConfig::default()
    });
    let pid = std::process::id();
    let req = b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n";
    // A request sent 10 s ago, and one just now.
    let old = monotonic_ns() - 10_000_000_000;
    h.open(pid, 1, Role::Client, old);
    h.data(pid, 1, 5, Direction::Egress, req, old + 10, old + 20);
    let now = monotonic_ns();
    h.open(pid, 2, Role::Client, now);
    h.data(pid, 2, 6, Direction::Egress, req, now + 10, now + 20);
    assert!(h.spans().is_empty());
    h.pipeline.tick();
    let span = h.one_span();
    assert_eq!(span.correlation.tid, 5);
    assert!(matches!(span.status, SpanStatus::Error { .. }));
    let a = attrs(&span);
    assert_eq!(a["error.type"], "timeout");
    assert!(!a.contains_key("http.response.status_code"));
    // From the request to the tick.
    let duration = span.end_unix_ns - span.start_unix_ns;
    assert!(
        (10_000_000_000..60_000_000_000).contains(&duration),
        "{duration}"
    );
    assert_eq!(
        h.metric("agent_exchanges_total{outcome=\"timeout\",protocol=\"http1\"}"),
        1
    );
    // Reported once.
    h.pipeline.tick();
    assert!(h.spans().is_empty());
    // The recent request still gets its response.
    h.data(pid, 2, 6, Direction::Ingress, OK_HELLO, now + 30, now + 40);
    let span = h.one_span();
    assert_eq!(span.status, SpanStatus::Unset);
    assert_eq!(span.end_unix_ns - span.start_unix_ns, 30);
    // Both connections are still tracked (not idle long enough).
    assert_eq!(h.metric("agent_connections_tracked"), 2);
}

#[test]
fn tick_forgets_idle_connections() {
    let mut h = Harness::with_config(FileConfig {
        connections: FileConnections {
            idle_timeout: Some(Duration::from_secs(5)),
            ..FileConnections::default()
        },
        ..FileConfig::default()
    });
    let pid = std::process::id();
    let old = monotonic_ns() - 10_000_000_000;
    let now = monotonic_ns();
    let req = b"GET / HTTP/1.1\r\n\r\n";
    // Idle for 10 s: without data, and after a complete exchange.
    h.open(pid, 1, Role::Server, old);
    h.open(pid, 2, Role::Server, old);
    h.data(pid, 2, 5, Direction::Ingress, req, old + 10, old + 20);
    h.data(pid, 2, 5, Direction::Egress, OK_HELLO, old + 30, old + 40);
    assert_eq!(h.spans().len(), 1);
    // Recent.
    h.open(pid, 3, Role::Server, now);
    assert_eq!(h.metric("agent_connections_tracked"), 3);
    h.pipeline.tick();
    assert_eq!(h.metric("agent_connections_tracked"), 1);
    assert!(h.spans().is_empty());
    // Forgotten: data is for an unknown connection until the kernel
    // announces it again.
    h.data(pid, 2, 5, Direction::Ingress, req, now + 10, now + 20);
    assert_eq!(
        h.metric("agent_events_lost_total{reason=\"unknown_connection\"}"),
        1
    );
    h.open(pid, 2, Role::Server, now + 30);
    h.data(pid, 2, 5, Direction::Ingress, req, now + 40, now + 50);
    h.data(pid, 2, 5, Direction::Egress, OK_HELLO, now + 60, now + 70);
    let span = h.one_span();
    assert_eq!(span.correlation.seq, 0);
    assert_eq!(span.end_unix_ns - span.start_unix_ns, 20);
}

// ---------------------------------------------------------------------------
// Losses, resources, the agent's own traffic.

#[test]
fn losses_are_counted() {
    let mut h = Harness::new();
    let t = h.base;
    h.data(
        std::process::id(),
        99,
        1,
        Direction::Ingress,
        b"GET / HTTP/1.1\r\n\r\n",
        t,
        t + 1,
    );
    assert_eq!(
        h.metric("agent_events_lost_total{reason=\"unknown_connection\"}"),
        1
    );
    h.pipeline.on_bytes(&[99]);
    h.pipeline.on_bytes(&[]);
    assert_eq!(
        h.metric("agent_events_lost_total{reason=\"decode_error\"}"),
        2
    );
    assert_eq!(h.metric("agent_events_read_total{kind=\"data\"}"), 1);
    assert!(h.spans().is_empty());
}

#[test]
fn proc_info_snapshot_describes_a_gone_process() {
    let mut h = Harness::new();
    let t = h.base;
    assert!(!std::path::Path::new(&format!("/proc/{FAKE_PID}")).exists());
    h.pipeline.on_record(Record::ProcInfo(ProcInfo {
        tgid: FAKE_PID,
        ts_ns: t,
        cgroup_id: 0,
        comm: b"fakesvc",
        cmdline: b"/opt/fake/bin/fakesvc\0--port\08080\0",
        cmdline_truncated: false,
        environ: b"PATH=/usr/bin\0OTEL_SERVICE_NAME=checkout\0",
        environ_truncated: false,
    }));
    h.open(FAKE_PID, 1, Role::Server, t);
    h.data(
        FAKE_PID,
        1,
        1,
        Direction::Ingress,
        b"GET / HTTP/1.1\r\n\r\n",
        t + 10,
        t + 20,
    );
    h.data(FAKE_PID, 1, 1, Direction::Egress, OK_HELLO, t + 30, t + 40);
    let span = h.one_span();
    assert_eq!(
        resource_attr(&span, "service.name"),
        Some(Value::from("checkout"))
    );
    assert_eq!(
        resource_attr(&span, "process.command_line"),
        Some(Value::from("/opt/fake/bin/fakesvc --port 8080"))
    );
    assert_eq!(
        resource_attr(&span, "process.pid"),
        Some(Value::I64(i64::from(FAKE_PID)))
    );
    assert_eq!(span.resource.info.comm, "fakesvc");
    assert_eq!(h.metric("agent_events_read_total{kind=\"proc_info\"}"), 1);
}

#[test]
fn agent_own_sockets_are_ignored() {
    let mut h = Harness::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let pid = std::process::id();
    let now = monotonic_ns();
    h.open_to(pid, 1, Role::Server, (addr.ip(), addr.port()), now);
    h.data(
        pid,
        1,
        1,
        Direction::Ingress,
        b"GET / HTTP/1.1\r\n\r\n",
        now + 10,
        now + 20,
    );
    h.data(pid, 1, 1, Direction::Egress, OK_HELLO, now + 30, now + 40);
    assert!(h.spans().is_empty());
    assert_eq!(
        h.metric("agent_connections_ignored_total{reason=\"agent_own_traffic\"}"),
        1
    );
    assert_eq!(h.metric("agent_connections_opened_total"), 0);
    assert_eq!(h.metric("agent_connections_tracked"), 0);
    // The records already in flight are discarded on purpose, not lost.
    assert_eq!(
        h.metric("agent_events_lost_total{reason=\"unknown_connection\"}"),
        0
    );
    assert_eq!(h.metric("agent_ignored_connection_records_total"), 2);
}

/// An HTTP/2 frame (for the h2c tests).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// `Upgrade: h2c`: the HTTP/1 session hands the upgrading request over to
/// the HTTP/2 session, which answers it on stream 1 (with the frames that
/// followed the 101 in the same write), then serves stream 3 in HTTP/2.
#[test]
fn h2c_upgrade_gives_the_upgraded_request_its_span() {
    let mut h = Harness::new();
    let pid = std::process::id();
    let t = h.base;
    h.open(pid, 1, Role::Server, t);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = format!(
        "GET /index.html HTTP/1.1\r\nHost: svc:8080\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nUser-Agent: curl/7.88.1\r\n\
         traceparent: {tp}\r\n\r\n"
    );
    h.data(
        pid,
        1,
        9,
        Direction::Ingress,
        req.as_bytes(),
        t + 10,
        t + 20,
    );
    let mut resp =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    resp.extend(h2_frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
    resp.extend(h2_frame(0x1, 0x4, 1, &[0x88]));
    h.data(pid, 1, 9, Direction::Egress, &resp, t + 30, t + 40);
    assert!(h.spans().is_empty(), "the 101 is not the answer");
    let mut preface = crate::protocol::http2::frame::PREFACE.to_vec();
    preface.extend(h2_frame(0x4, 0, 0, &[]));
    h.data(pid, 1, 9, Direction::Ingress, &preface, t + 50, t + 60);
    h.data(
        pid,
        1,
        9,
        Direction::Egress,
        &h2_frame(0x0, 0x1, 1, b"hello"),
        t + 70,
        t + 80,
    );
    let span = h.one_span();
    let a = attrs(&span);
    assert_eq!(span.name, "GET /index.html");
    assert_eq!(a["url.path"], "/index.html");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["network.protocol.version"], "2");
    assert_eq!(a["server.address"], "svc");
    assert_eq!(a["user_agent.original"], "curl/7.88.1");
    assert_eq!(a["http.response.body.size"], "5");
    assert_eq!(hex::<16>("4bf92f3577b34da6a3ce929d0e0e4736"), span.trace_id);
    assert_eq!(span.end_unix_ns - span.start_unix_ns, 60);
    // Stream 3, in HTTP/2 from the start: GET / → 404.
    h.data(
        pid,
        1,
        9,
        Direction::Ingress,
        &h2_frame(0x1, 0x5, 3, &[0x82, 0x86, 0x84]),
        t + 90,
        t + 100,
    );
    h.data(
        pid,
        1,
        9,
        Direction::Egress,
        &h2_frame(0x1, 0x5, 3, &[0x8d]),
        t + 110,
        t + 120,
    );
    let span = h.one_span();
    let a = attrs(&span);
    assert_eq!(a["url.path"], "/");
    assert_eq!(a["http.response.status_code"], "404");
    // HTTP/2: the stream id, the same at both ends.
    assert_eq!(span.correlation.seq, 3);
    assert_eq!(
        h.metric(r#"agent_exchanges_total{protocol="http2",outcome="complete"}"#),
        2
    );
    assert_eq!(
        h.metric(r#"agent_exchanges_total{protocol="http1",outcome="complete"}"#),
        0
    );
}

/// A real `Upgrade: h2c` (curl --http2 → hypercorn, fixture
/// `curl_h2c_upgrade_hypercorn`), seen from the server and from the
/// client, fed whole and with every syscall split at every byte: one span,
/// the upgrading request answered on stream 1 in HTTP/2.
#[test]
fn h2c_upgrade_real_capture_whole_and_split() {
    let chunks = crate::protocol::http2::fixtures::chunks("curl_h2c_upgrade_hypercorn");
    let run = |role: Role, split: Option<(usize, usize)>| -> SpanRecord {
        let mut h = Harness::new();
        let pid = std::process::id();
        let t = h.base;
        h.open(pid, 1, role, t);
        for (i, (to_server, data)) in chunks.iter().enumerate() {
            let dir = match (role, to_server) {
                (Role::Server, true) | (Role::Client, false) => Direction::Ingress,
                _ => Direction::Egress,
            };
            let at = t + 100 * (i as u64 + 1);
            match split {
                Some((c, cut)) if c == i => {
                    h.data(pid, 1, 5, dir, &data[..cut], at, at + 10);
                    h.data(pid, 1, 5, dir, &data[cut..], at, at + 10);
                }
                _ => h.data(pid, 1, 5, dir, data, at, at + 10),
            }
        }
        h.one_span()
    };
    for role in [Role::Server, Role::Client] {
        let whole = run(role, None);
        let a = attrs(&whole);
        let name = match role {
            Role::Server => "GET /index.html",
            _ => "GET",
        };
        assert_eq!(whole.name, name);
        assert_eq!(a["http.response.status_code"], "200");
        assert_eq!(a["network.protocol.version"], "2");
        assert_eq!(a["user_agent.original"], "fixture-curl/1.0");
        assert_eq!(a["http.response.body.size"], "21");
        match role {
            Role::Server => {
                assert_eq!(a["url.path"], "/index.html");
                assert_eq!(a["url.query"], "q=REDACTED");
            }
            _ => assert!(a["url.full"].ends_with("/index.html?q=REDACTED"), "{a:?}"),
        }
        for (i, (_, data)) in chunks.iter().enumerate() {
            for cut in 1..data.len() {
                let split = run(role, Some((i, cut)));
                assert_eq!(attrs(&split), a, "{role:?}: chunk {i} cut at {cut}");
                assert_eq!(split.duration_ns(), whole.duration_ns());
            }
        }
    }
}
