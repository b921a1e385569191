//! Cost per span of the RED recorder and of the correlation stage, on the
//! hot path of every span (`cargo bench -p agent --bench red`).
//!
//! Spans are built once and cloned per iteration (a clone is measured
//! alone and subtracted), so the numbers are the stage's own cost: series
//! lookup by typed key (route template, interned strings) and histogram
//! increment for RED; endpoint lookups, holding, matching, tree release,
//! sampling and queueing for a stitched client/server pair.

use std::{
    hint::black_box,
    net::IpAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use agent::{
    correlate::{CorrelationConfig, Correlator, sample::SamplingConfig},
    export::SpanQueue,
    red::{RedLimits, RedRecorder, RedShared},
    resource::{HostInfo, ProcessInfo, ProcessResource},
    span::{
        SpanKind, SpanRecord, SpanStatus,
        context::{new_span_id, new_trace_id},
        model::{Correlation, ErrorKind, Facts, HttpFacts},
    },
    telemetry::Metrics,
};

fn resource(pid: u32, name: &str) -> Arc<ProcessResource> {
    let host = HostInfo::detect(Path::new("/"));
    Arc::new(ProcessResource::new(
        ProcessInfo::fallback(pid, name),
        &host,
    ))
}

fn span(res: &Arc<ProcessResource>, kind: SpanKind, path: &str, port: u16, seq: u64) -> SpanRecord {
    let lo: IpAddr = "127.0.0.1".parse().expect("ip");
    let (local, remote) = match kind {
        SpanKind::Server => ((lo, 80), (lo, port)),
        SpanKind::Client => ((lo, port), (lo, 80)),
    };
    let t = 1_000_000_000 + seq * 1_000_000;
    let (start, end) = match kind {
        SpanKind::Client => (t, t + 900_000),
        SpanKind::Server => (t + 100_000, t + 800_000),
    };
    SpanRecord {
        trace_id: new_trace_id(),
        span_id: new_span_id(),
        parent_span_id: [0; 8],
        parent_is_remote: false,
        trace_flags: 1,
        trace_state: None,
        kind,
        name: "GET".into(),
        start_unix_ns: start,
        end_unix_ns: end,
        attributes: Vec::with_capacity(16),
        status: SpanStatus::Unset,
        resource: Arc::clone(res),
        correlation: Correlation {
            netns: 1,
            local,
            remote,
            seq,
            seq_is_stream_id: false,
            tid: 7,
            start_ns: start,
            end_ns: end,
        },
        facts: Facts::Http(HttpFacts {
            method: 0,
            status: Some(200),
            version: "1.1",
            https: false,
            path: (kind == SpanKind::Server).then(|| Arc::from(path)),
            server_address: Arc::from("127.0.0.1"),
            server_port: 80,
            error: ErrorKind::None,
        }),
    }
}

fn time(what: &str, n: u64, baseline_ns: f64, mut f: impl FnMut(u64)) -> f64 {
    // Warm-up.
    for i in 0..n / 10 {
        f(i);
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for i in 0..n {
            f(i);
        }
        best = best.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    println!(
        "{what:<58} {:>8.1} ns/op (minus {baseline_ns:.1} ns of cloning: {:.1})",
        best,
        best - baseline_ns
    );
    best
}

fn main() {
    let n = 200_000;
    let web = resource(100, "web");
    let curl = resource(200, "wrk");
    let server_spans: Vec<SpanRecord> = (0..64)
        .map(|i| {
            span(
                &web,
                SpanKind::Server,
                &format!("/users/{}/orders", 1000 + i),
                40_000,
                i,
            )
        })
        .collect();
    let client_spans: Vec<SpanRecord> = (0..64)
        .map(|i| span(&curl, SpanKind::Client, "", 40_000, i))
        .collect();

    let clone = time("clone a span (baseline)", n, 0.0, |i| {
        black_box(server_spans[(i % 64) as usize].clone());
    });

    let mut red = RedRecorder::new(RedShared::new(), RedLimits::default());
    time(
        "RED: HTTP server span (route template + series)",
        n,
        clone,
        |i| {
            let mut s = server_spans[(i % 64) as usize].clone();
            red.record(&mut s);
            black_box(s);
        },
    );
    time(
        "RED: HTTP client span (interned address + series)",
        n,
        clone,
        |i| {
            let mut s = client_spans[(i % 64) as usize].clone();
            red.record(&mut s);
            black_box(s);
        },
    );

    // A stitched pair through the whole stage: the server span held, the
    // client span matched, the tree released to the queue.
    let metrics = Metrics::new();
    let (queue, mut rx) = SpanQueue::new(1 << 24, Arc::clone(&metrics));
    let mut corr = Correlator::new(
        CorrelationConfig {
            stitch_timeout: Duration::from_secs(3600),
            ..CorrelationConfig::default()
        },
        SamplingConfig::default(),
        RedRecorder::new(RedShared::new(), RedLimits::default()),
        queue,
        &metrics.registry,
    );
    let lo: IpAddr = "127.0.0.1".parse().expect("ip");
    let conns = 64u16;
    for c in 0..conns {
        corr.conn_opened(1, (lo, 40_000 + c), (lo, 80));
        corr.conn_opened(1, (lo, 80), (lo, 40_000 + c));
    }
    let pairs: Vec<(SpanRecord, SpanRecord)> = (0..1024u64)
        .map(|i| {
            let port = 40_000 + (i % u64::from(conns)) as u16;
            let mut s = span(&web, SpanKind::Server, "/users/1/orders", port, i);
            let mut c = span(&curl, SpanKind::Client, "", port, i);
            s.correlation.local.1 = 80;
            c.correlation.remote.1 = 80;
            (s, c)
        })
        .collect();
    let mut seq = 0u64;
    let per_pair = time(
        "correlation + RED: stitched pair (2 spans), released",
        n / 2,
        2.0 * clone,
        |i| {
            let (s, c) = &pairs[(i % 1024) as usize];
            let (mut s, mut c) = (s.clone(), c.clone());
            // Fresh request numbers and ids each time (a new request).
            seq += 1;
            s.correlation.seq = seq;
            c.correlation.seq = seq;
            s.span_id = new_span_id();
            c.span_id = new_span_id();
            corr.accept(s, Some(7));
            corr.accept(c, None);
            if i % 256 == 0 {
                corr.place_held(&|_, _| {});
                corr.release_ready();
                corr.flush_queue();
                while rx.try_recv().is_some() {}
            }
        },
    );
    corr.place_held(&|_, _| {});
    corr.release_ready();
    println!(
        "  = {:.0} ns per span; held at the end: {}",
        (per_pair - 2.0 * clone) / 2.0,
        corr.held()
    );
}
