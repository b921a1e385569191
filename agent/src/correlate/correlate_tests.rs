//! The correlator over hand-built spans: stitching (both orders, refusals,
//! timeouts), nesting (holding, waiting, ambiguity), whole trees, bounds
//! and sampling.

use std::{net::IpAddr, sync::Arc, time::Duration};

use super::*;
use crate::{
    export::{SpanQueue, SpanReceiver},
    red::{
        RedLimits, RedShared,
        red_tests::{http, resource, span},
    },
    span::SpanStatus,
    telemetry::Metrics,
};

const MS: u64 = 1_000_000;
/// Monotonic times of the tests start here.
const T0: u64 = 1_000_000_000_000;

struct H {
    c: Correlator,
    rx: SpanReceiver,
    pending: std::collections::HashMap<u32, u64>,
}

fn lo() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

impl H {
    fn new() -> Self {
        Self::with(CorrelationConfig::default(), SamplingConfig::default())
    }

    fn with(cfg: CorrelationConfig, sampling: SamplingConfig) -> Self {
        let metrics = Metrics::new();
        let (queue, rx) = SpanQueue::new(1 << 16, Arc::clone(&metrics));
        let red = RedRecorder::new(RedShared::new(), RedLimits::default());
        Self {
            c: Correlator::new(cfg, sampling, red, queue, &metrics.registry),
            rx,
            pending: Default::default(),
        }
    }

    fn flush(&mut self) -> Vec<SpanRecord> {
        let pending = self.pending.clone();
        self.c.place_held(&|pid, out| {
            if let Some(&start_ns) = pending.get(&pid) {
                out.push(PendingRequest { start_ns, tid: 99 });
            }
        });
        self.c.release_ready();
        self.c.flush_queue();
        let mut out = Vec::new();
        while let Some(b) = self.rx.try_recv() {
            out.extend(b);
        }
        out
    }

    fn event(&self, e: &str) -> u64 {
        self.c.counters.events.with_label_values(&[e]).get()
    }

    fn sampled(&self, decision: &str, policy: &str) -> u64 {
        let i = usize::from(decision == "dropped");
        let p = Policy::ALL.iter().position(|p| p.name() == policy).unwrap();
        self.c.counters.sampled[i][p].get()
    }
}

/// A span of `pid` on the connection `local` ↔ `remote` (loopback ports),
/// request `seq`, from `start` to `end` (ms after T0), thread `tid`.
fn sp(
    pid: u32,
    name: &str,
    kind: SpanKind,
    (local, remote): (u16, u16),
    seq: u64,
    (start, end): (u64, u64),
    tid: u32,
) -> SpanRecord {
    let mut s = span(&resource(pid, name), kind, http("/", 200), 1);
    s.correlation.local = (lo(), local);
    s.correlation.remote = (lo(), remote);
    s.correlation.seq = seq;
    s.correlation.start_ns = T0 + start * MS;
    s.correlation.end_ns = T0 + end * MS;
    s.start_unix_ns = s.correlation.start_ns;
    s.end_unix_ns = s.correlation.end_ns;
    s.correlation.tid = tid;
    s
}

fn by_name<'a>(spans: &'a [SpanRecord], kind: SpanKind, service: &str) -> &'a SpanRecord {
    spans
        .iter()
        .find(|s| s.kind == kind && s.resource.info.service_name == service)
        .unwrap_or_else(|| panic!("no {kind:?} span of {service} in {spans:#?}"))
}

fn attr(s: &SpanRecord, k: &str) -> Option<String> {
    s.attr(k).map(|v| v.as_str().into_owned())
}

#[test]
fn server_first_then_its_client() {
    let mut h = H::new();
    // curl (pid 1) port 40000 → nginx (pid 2) port 80.
    h.c.conn_opened(1, (lo(), 40_000), (lo(), 80));
    h.c.conn_opened(1, (lo(), 80), (lo(), 40_000));
    let server = sp(2, "nginx", SpanKind::Server, (80, 40_000), 0, (2, 8), 20);
    let client = sp(1, "curl", SpanKind::Client, (40_000, 80), 0, (1, 9), 10);
    let (sid, cid, ctrace) = (server.span_id, client.span_id, client.trace_id);
    h.c.accept(server, Some(20));
    assert!(h.flush().is_empty(), "the server span waits for its client");
    h.c.accept(client, None);
    let out = h.flush();
    assert_eq!(out.len(), 2);
    let s = out.iter().find(|s| s.span_id == sid).unwrap();
    let c = out.iter().find(|s| s.span_id == cid).unwrap();
    assert_eq!(s.parent_span_id, cid);
    assert_eq!(s.trace_id, ctrace);
    assert_eq!(c.trace_id, ctrace);
    assert_eq!(c.parent_span_id, [0; 8]);
    assert_eq!(attr(s, PARENT_ATTR).as_deref(), Some("socket_pair"));
    assert_eq!(h.event("stitched"), 1);
    assert_eq!(h.c.held(), 0);
}

#[test]
fn client_first_then_its_server() {
    let mut h = H::new();
    h.c.conn_opened(1, (lo(), 40_000), (lo(), 80));
    h.c.conn_opened(1, (lo(), 80), (lo(), 40_000));
    let client = sp(1, "curl", SpanKind::Client, (40_000, 80), 3, (1, 9), 10);
    // The server's write returned a little after the client read.
    let server = sp(2, "nginx", SpanKind::Server, (80, 40_000), 3, (2, 10), 20);
    let (cid, ctrace) = (client.span_id, client.trace_id);
    h.c.accept(client, None);
    let first = h.flush();
    assert_eq!(first.len(), 1, "a root client is released at once");
    h.c.accept(server, Some(20));
    let out = h.flush();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].parent_span_id, cid);
    assert_eq!(out[0].trace_id, ctrace);
}

/// An HTTP/2 span (its `seq` is the stream id, the key).
fn h2(mut s: SpanRecord) -> SpanRecord {
    s.correlation.seq_is_stream_id = true;
    s
}

#[test]
fn stitch_refused_and_timed_out() {
    let mut h = H::new();
    h.c.conn_opened(1, (lo(), 40_000), (lo(), 80));
    // Stream 1 at both ends, with times that cannot be the same request:
    // the server started after the client ended.
    let server = h2(sp(
        2,
        "nginx",
        SpanKind::Server,
        (80, 40_000),
        1,
        (20, 25),
        20,
    ));
    let client = h2(sp(1, "curl", SpanKind::Client, (40_000, 80), 1, (1, 9), 10));
    h.c.accept(server, Some(20));
    h.c.accept(client, None);
    let out = h.flush();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|s| s.parent_span_id == [0; 8]));
    assert_ne!(out[0].trace_id, out[1].trace_id);
    assert_eq!(h.event("stitch_refused_times"), 1);

    // A server span whose client never comes: released after the timeout.
    let server = sp(2, "nginx", SpanKind::Server, (80, 40_000), 1, (30, 35), 20);
    h.c.accept(server, Some(20));
    assert!(h.flush().is_empty());
    h.c.expire(T0 + 35 * MS + 2_000 * MS);
    let out = h.flush();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].parent_span_id, [0; 8]);
    assert_eq!(h.event("stitch_timeout"), 1);
}

#[test]
fn a_lost_record_does_not_unpair_the_rest_of_the_connection() {
    let mut h = H::new();
    h.c.conn_opened(1, (lo(), 40_000), (lo(), 80));
    h.c.conn_opened(1, (lo(), 80), (lo(), 40_000));
    // Request 0's client end was lost (a full ring buffer): the server
    // counts one more request than the client from then on.
    let lost = sp(2, "nginx", SpanKind::Server, (80, 40_000), 0, (2, 8), 20);
    h.c.accept(lost, Some(20));
    assert!(h.flush().is_empty(), "waits for its client");
    let mut pairs = Vec::new();
    for k in 1..4u64 {
        let t = k * 10;
        let server = sp(
            2,
            "nginx",
            SpanKind::Server,
            (80, 40_000),
            k,
            (t + 2, t + 8),
            20,
        );
        let client = sp(
            1,
            "wrk",
            SpanKind::Client,
            (40_000, 80),
            k - 1,
            (t + 1, t + 9),
            10,
        );
        pairs.push((server.span_id, client.span_id));
        h.c.accept(server, Some(20));
        h.c.accept(client, None);
    }
    let out = h.flush();
    assert_eq!(out.len(), 7, "everything released, no timeout needed");
    for (sid, cid) in pairs {
        let s = out.iter().find(|s| s.span_id == sid).unwrap();
        assert_eq!(s.parent_span_id, cid, "paired by times despite the counts");
    }
    assert_eq!(h.event("stitched"), 3);
    assert_eq!(
        h.event("stitch_unmatched"),
        1,
        "the lost one let go at once"
    );
    assert_eq!(h.event("stitch_timeout"), 0);
    assert_eq!(h.c.held(), 0);
}

#[test]
fn waiting_per_connection_is_bounded() {
    let mut h = H::new();
    h.c.conn_opened(1, (lo(), 40_000), (lo(), 80));
    // Server spans whose clients never come, more than one key may hold.
    let n = stitch::MAX_WAITING_PER_KEY as u64 + 10;
    for k in 0..n {
        let t = k * 10;
        h.c.accept(
            sp(
                2,
                "nginx",
                SpanKind::Server,
                (80, 40_000),
                k,
                (t + 2, t + 8),
                20,
            ),
            Some(20),
        );
    }
    assert_eq!(h.flush().len(), 10, "the oldest let go");
    assert_eq!(h.event("stitch_unmatched"), 10);
    assert_eq!(h.c.held(), stitch::MAX_WAITING_PER_KEY);
}

#[test]
fn loopback_pairs_match_only_in_their_namespace() {
    let mut h = H::new();
    // The client's connection is in namespace 2: the server's (1) loopback
    // is another host's.
    h.c.conn_opened(2, (lo(), 40_000), (lo(), 80));
    let server = sp(2, "nginx", SpanKind::Server, (80, 40_000), 0, (2, 8), 20);
    h.c.accept(server, Some(20));
    assert_eq!(h.flush().len(), 1, "no traced peer: released at once");
}

#[test]
fn nesting_sole_request_in_flight() {
    let mut h = H::new();
    // app (pid 5) serves on 8080 and calls a database on 5432 (not traced).
    let call = sp(5, "app", SpanKind::Client, (41_000, 5432), 0, (3, 6), 7);
    let server = sp(5, "app", SpanKind::Server, (8080, 42_000), 0, (1, 10), 8);
    let (cid, sid, strace) = (call.span_id, server.span_id, server.trace_id);
    h.pending.insert(5, T0 + MS);
    h.c.accept(call, None);
    assert!(
        h.flush().is_empty(),
        "a request is in flight: the call waits"
    );
    h.pending.remove(&5);
    h.c.accept(server, Some(8));
    let out = h.flush();
    assert_eq!(out.len(), 2);
    let c = out.iter().find(|s| s.span_id == cid).unwrap();
    assert_eq!(c.parent_span_id, sid);
    assert_eq!(c.trace_id, strace);
    assert_eq!(
        attr(c, PARENT_ATTR).as_deref(),
        Some("sole_request_in_flight")
    );
    assert_eq!(h.event("nested_sole_request_in_flight"), 1);
}

#[test]
fn nesting_refused_when_two_requests_overlap() {
    let mut h = H::new();
    // The call completes first (it is seen first), then both requests.
    let call = sp(5, "app", SpanKind::Client, (41_000, 5432), 0, (3, 6), 8);
    let cid = call.span_id;
    h.pending.insert(5, T0 + MS);
    h.c.accept(call, None);
    assert!(h.flush().is_empty(), "a request in flight may enclose it");
    h.pending.clear();
    h.c.accept(
        sp(5, "app", SpanKind::Server, (8080, 42_000), 0, (1, 10), 8),
        Some(8),
    );
    h.c.accept(
        sp(5, "app", SpanKind::Server, (8080, 42_001), 0, (2, 11), 8),
        Some(8),
    );
    let out = h.flush();
    assert_eq!(out.len(), 3);
    assert_eq!(
        out.iter()
            .find(|s| s.span_id == cid)
            .unwrap()
            .parent_span_id,
        [0; 8]
    );
    assert_eq!(h.event("nest_ambiguous"), 1);
}

#[test]
fn requests_before_the_first_call_are_not_kept_but_never_mislead() {
    let mut h = H::new();
    // Two requests served before the process ever made a call: their
    // windows are not kept...
    h.c.accept(
        sp(5, "app", SpanKind::Server, (8080, 42_000), 0, (1, 10), 8),
        Some(8),
    );
    // ...so a call seen late (out of order) inside both cannot be given
    // to the one kept, the other one unknown.
    let call = sp(5, "app", SpanKind::Client, (41_000, 5432), 0, (3, 6), 9);
    h.c.accept(call, None);
    h.c.accept(
        sp(5, "app", SpanKind::Server, (8080, 42_001), 0, (2, 11), 9),
        Some(9),
    );
    let out = h.flush();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|s| s.parent_span_id == [0; 8]));
    assert_eq!(h.event("nest_forgotten"), 1);
}

#[test]
fn a_serving_process_is_remembered_between_ticks() {
    let mut h = H::new();
    // A request served before the process made any call (not kept), a
    // tick, then a call seen late inside it and inside a second request:
    // the first one still makes the call undecidable.
    h.c.accept(
        sp(5, "app", SpanKind::Server, (8080, 42_000), 0, (1, 10), 8),
        Some(8),
    );
    assert_eq!(h.flush().len(), 1);
    h.c.expire(T0 + 20 * MS);
    let call = sp(5, "app", SpanKind::Client, (41_000, 5432), 0, (3, 6), 9);
    h.c.accept(call, None);
    h.c.accept(
        sp(5, "app", SpanKind::Server, (8080, 42_001), 0, (2, 11), 9),
        Some(9),
    );
    let out = h.flush();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|s| s.parent_span_id == [0; 8]));
    assert_eq!(h.event("nest_forgotten"), 1);
}

#[test]
fn nest_timeout_releases_the_call() {
    let mut h = H::with(
        CorrelationConfig {
            hold_timeout: Duration::from_millis(100),
            ..CorrelationConfig::default()
        },
        SamplingConfig::default(),
    );
    h.pending.insert(5, T0);
    h.c.accept(
        sp(5, "app", SpanKind::Client, (41_000, 5432), 0, (3, 6), 7),
        None,
    );
    assert!(h.flush().is_empty());
    h.c.expire(T0 + 500 * MS);
    let out = h.flush();
    assert_eq!(out.len(), 1);
    assert_eq!(h.event("nest_timeout"), 1);
}

/// curl → nginx → nginx's upstream call → python: four spans arriving
/// inside out, one trace.
#[test]
fn whole_chain_one_trace() {
    let mut h = H::new();
    for (l, r) in [(40_000, 80), (80, 40_000), (41_000, 8000), (8000, 41_000)] {
        h.c.conn_opened(1, (lo(), l), (lo(), r));
    }
    let c0 = sp(1, "curl", SpanKind::Client, (40_000, 80), 0, (0, 20), 1);
    let s1 = sp(2, "nginx", SpanKind::Server, (80, 40_000), 0, (1, 19), 2);
    let c1 = sp(2, "nginx", SpanKind::Client, (41_000, 8000), 0, (3, 15), 2);
    let s2 = sp(3, "python", SpanKind::Server, (8000, 41_000), 0, (4, 14), 3);
    let ids = [c0.span_id, s1.span_id, c1.span_id, s2.span_id];
    let trace = c0.trace_id;
    // nginx has its request in flight while the backend answers.
    h.pending.insert(2, T0 + MS);
    h.c.accept(s2, Some(3));
    assert!(h.flush().is_empty());
    h.c.accept(c1, None);
    assert!(h.flush().is_empty());
    h.pending.remove(&2);
    h.c.accept(s1, Some(2));
    assert!(h.flush().is_empty(), "nginx's server span waits for curl's");
    h.c.accept(c0, None);
    let out = h.flush();
    assert_eq!(out.len(), 4, "{out:#?}");
    let get = |id: [u8; 8]| out.iter().find(|s| s.span_id == id).unwrap();
    assert!(out.iter().all(|s| s.trace_id == trace));
    assert_eq!(get(ids[0]).parent_span_id, [0; 8]);
    assert_eq!(get(ids[1]).parent_span_id, ids[0]);
    assert_eq!(get(ids[2]).parent_span_id, ids[1]);
    assert_eq!(get(ids[3]).parent_span_id, ids[2]);
    assert_eq!(h.c.held(), 0);
    let _ = by_name(&out, SpanKind::Server, "python");
}

#[test]
fn an_incoming_traceparent_is_the_root() {
    let mut h = H::new();
    let mut s = sp(5, "app", SpanKind::Server, (8080, 42_000), 0, (1, 10), 8);
    s.trace_id = [9; 16];
    s.parent_span_id = [4; 8];
    s.parent_is_remote = true;
    s.trace_flags = 1;
    let call = sp(5, "app", SpanKind::Client, (41_000, 5432), 0, (3, 6), 8);
    let cid = call.span_id;
    h.c.accept(call, None);
    h.c.accept(s, Some(8));
    let out = h.flush();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|s| s.trace_id == [9; 16]));
    let c = out.iter().find(|s| s.span_id == cid).unwrap();
    assert!(!c.parent_is_remote);
    let server = out.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!(server.parent_span_id, [4; 8], "the remote parent is kept");
    assert!(server.parent_is_remote);
}

#[test]
fn held_spans_are_bounded() {
    let mut h = H::with(
        CorrelationConfig {
            max_held_spans: 4,
            ..CorrelationConfig::default()
        },
        SamplingConfig::default(),
    );
    h.pending.insert(5, T0);
    for i in 0..10 {
        h.c.accept(
            sp(5, "app", SpanKind::Client, (41_000 + i, 5432), 0, (3, 6), 7),
            None,
        );
    }
    assert!(h.c.held() <= 4);
    assert_eq!(h.event("hold_overflow"), 6);
    assert_eq!(h.flush().len(), 6);
}

#[test]
fn sampling_keeps_errors_and_slow_trees_whole() {
    let mut h = H::with(
        CorrelationConfig::default(),
        SamplingConfig {
            ratio: 0.0,
            ..SamplingConfig::default()
        },
    );
    for (l, r) in [(40_000, 80), (80, 40_000)] {
        h.c.conn_opened(1, (lo(), l), (lo(), r));
    }
    // An error in the backend keeps the client span too.
    let mut s = sp(2, "nginx", SpanKind::Server, (80, 40_000), 0, (2, 8), 2);
    s.status = SpanStatus::Error {
        description: String::new(),
    };
    h.c.accept(s, Some(2));
    h.c.accept(
        sp(1, "curl", SpanKind::Client, (40_000, 80), 0, (1, 9), 1),
        None,
    );
    assert_eq!(h.flush().len(), 2);
    assert_eq!(h.sampled("kept", "error"), 2);
    // Slow: 1.5 s.
    h.c.accept(
        sp(1, "curl", SpanKind::Client, (40_001, 80), 0, (0, 1_500), 1),
        None,
    );
    assert_eq!(h.flush().len(), 1);
    assert_eq!(h.sampled("kept", "slow"), 1);
    // The rest: ratio 0.
    h.c.accept(
        sp(1, "curl", SpanKind::Client, (40_002, 80), 0, (0, 5), 1),
        None,
    );
    assert!(h.flush().is_empty());
    assert_eq!(h.sampled("dropped", "ratio"), 1);
    // A joined trace that its caller did not sample.
    let mut j = sp(1, "curl", SpanKind::Client, (40_003, 80), 0, (0, 5), 1);
    j.parent_is_remote = true;
    j.parent_span_id = [1; 8];
    j.trace_flags = 0;
    h.c.accept(j, None);
    assert!(h.flush().is_empty());
    assert_eq!(h.sampled("dropped", "parent"), 1);
}

#[test]
fn disabled_passes_spans_through() {
    let mut h = H::with(
        CorrelationConfig {
            enabled: false,
            ..CorrelationConfig::default()
        },
        SamplingConfig::default(),
    );
    h.c.conn_opened(1, (lo(), 40_000), (lo(), 80));
    h.c.accept(
        sp(2, "nginx", SpanKind::Server, (80, 40_000), 0, (2, 8), 2),
        Some(2),
    );
    assert_eq!(h.flush().len(), 1);
}

#[test]
fn a_call_with_its_own_traceparent_keeps_it_a_forwarded_one_nests() {
    let mut h = H::new();
    let joined = |s: &mut SpanRecord, parent: u8| {
        s.trace_id = [9; 16];
        s.parent_span_id = [parent; 8];
        s.parent_is_remote = true;
    };
    let mut server = sp(5, "proxy", SpanKind::Server, (8080, 42_000), 0, (1, 10), 8);
    joined(&mut server, 4);
    let sid = server.span_id;
    // Forwarded by a proxy: the same header on the outgoing request.
    let mut forwarded = sp(5, "proxy", SpanKind::Client, (41_000, 9000), 0, (3, 6), 8);
    joined(&mut forwarded, 4);
    let fid = forwarded.span_id;
    h.c.accept(forwarded, None);
    h.c.accept(server, Some(8));
    let out = h.flush();
    let f = out.iter().find(|s| s.span_id == fid).unwrap();
    assert_eq!(f.parent_span_id, sid);
    assert!(!f.parent_is_remote);
    // An instrumented application's own context: kept.
    let mut server = sp(6, "app", SpanKind::Server, (8080, 42_001), 0, (20, 30), 8);
    joined(&mut server, 4);
    let mut own = sp(6, "app", SpanKind::Client, (41_001, 9000), 0, (22, 25), 8);
    joined(&mut own, 7);
    let oid = own.span_id;
    h.c.accept(own, None);
    h.c.accept(server, Some(8));
    let out = h.flush();
    let o = out.iter().find(|s| s.span_id == oid).unwrap();
    assert_eq!(o.parent_span_id, [7; 8]);
    assert!(o.parent_is_remote);
    assert_eq!(o.trace_id, [9; 16]);
    assert_eq!(h.event("nest_explicit_context"), 1);
}
