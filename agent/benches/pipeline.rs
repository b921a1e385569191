//! Userspace cost per HTTP/1.1 request, ring record to OTLP bytes
//! (`cargo bench -p agent --bench pipeline`).
//!
//! What one request observed at both ends costs the agent's pipeline
//! thread and exporter, without the kernel and without the noise of a
//! saturated machine: four data records (client write, server read,
//! server write, client read) through [`Pipeline::on_record`] (HTTP/1
//! parsing, two spans, RED, stitching, sampling), the export queue, and
//! the OTLP encoding of every batch. The records are those of wrk against
//! nginx in `cargo xtask bench http`, plus a `User-Agent`, as most clients
//! send one.

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Instant,
};

use agent::{
    capture::{ConnOpen, DataEvent, Record},
    clock::monotonic_ns,
    config::{Config, FileConfig, Flags, OtelEnv},
    export::{
        SpanQueue,
        otlp::encode::{ResourceBytes, Scope, encode_request},
    },
    pipeline::Pipeline,
    resource::{HostPaths, ResourceCache},
    span::SpanRecord,
    telemetry::Metrics,
};
use agent_common::{Direction, Protocol, Role};

const REQUEST: &[u8] = b"GET /users/42/orders HTTP/1.1\r\nHost: 10.0.0.2:8080\r\nUser-Agent: python-requests/2.31.0\r\nAccept: */*\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 21:17:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n";

/// Not existing pids: the resource cache falls back once per process.
const CLIENT_PID: u32 = 4_000_001;
const SERVER_PID: u32 = 4_000_002;
const CONNS: u64 = 64;
/// Records between flushes (the pipeline flushes once per ring drain).
const FLUSH_EVERY: u64 = 128;

fn data(tgid: u32, sk: u64, direction: Direction, payload: &[u8], times: (u64, u64)) -> Record<'_> {
    Record::Data(DataEvent::whole(
        direction,
        (tgid, tgid, sk),
        payload,
        times,
    ))
}

fn main() {
    let cfg = Config::resolve(
        &Flags::default(),
        FileConfig::default(),
        &OtelEnv::default(),
    )
    .expect("default config");
    let metrics = Metrics::new();
    let (queue, mut rx) = SpanQueue::new(1 << 24, Arc::clone(&metrics));
    let mut pipeline = Pipeline::new(
        &cfg,
        ResourceCache::new(HostPaths::default(), 16),
        None,
        queue,
        Arc::clone(&metrics),
    );
    let client_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let server = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 8080);
    let mut t = monotonic_ns();
    for c in 0..CONNS {
        let client = (client_ip, 40_000 + c as u16);
        for (tgid, role, sk, local, remote) in [
            (CLIENT_PID, Role::Client, 1000 + c, client, server),
            (SERVER_PID, Role::Server, 2000 + c, server, client),
        ] {
            pipeline.on_record(Record::ConnOpen(ConnOpen {
                role,
                protocol: Protocol::Http1,
                tcp_state: 1,
                tgid,
                tid: tgid,
                fd: 7,
                sk,
                ts_ns: t,
                netns: 1,
                local,
                remote,
                comm: "bench".to_owned(),
            }));
        }
    }

    let scope = Scope {
        name: "bench",
        version: "0",
    };
    let mut resources = ResourceBytes::new(64);
    let mut out = Vec::new();
    let mut encoded = 0usize;
    let mut exported = 0usize;
    let mut run = |n: u64, t: &mut u64| {
        for i in 0..n {
            let c = i % CONNS;
            let (csk, ssk) = (1000 + c, 2000 + c);
            let s = *t;
            pipeline.on_record(data(
                CLIENT_PID,
                csk,
                Direction::Egress,
                REQUEST,
                (s, s + 2_000),
            ));
            pipeline.on_record(data(
                SERVER_PID,
                ssk,
                Direction::Ingress,
                REQUEST,
                (s + 3_000, s + 4_000),
            ));
            pipeline.on_record(data(
                SERVER_PID,
                ssk,
                Direction::Egress,
                RESPONSE,
                (s + 9_000, s + 11_000),
            ));
            pipeline.on_record(data(
                CLIENT_PID,
                csk,
                Direction::Ingress,
                RESPONSE,
                (s + 12_000, s + 13_000),
            ));
            *t += 20_000;
            if (i + 1) % (FLUSH_EVERY / 4) == 0 {
                pipeline.flush();
                let mut batch: Vec<SpanRecord> = Vec::new();
                while let Some(spans) = rx.try_recv() {
                    batch.extend(spans);
                }
                exported += batch.len();
                if !batch.is_empty() {
                    encode_request(&batch, &scope, &mut resources, &mut out);
                    encoded += black_box(out.len());
                }
            }
        }
    };
    // Warm-up: series, routes, slabs and maps reach their working size.
    run(20_000, &mut t);
    // `PIPELINE_BENCH_N`/`_ROUNDS`: fewer for `valgrind --tool=callgrind`
    // (instructions per request from the difference of two runs).
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env("PIPELINE_BENCH_N", 200_000);
    let mut best = f64::MAX;
    for _ in 0..env("PIPELINE_BENCH_ROUNDS", 5) {
        let start = Instant::now();
        run(n, &mut t);
        best = best.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    println!(
        "HTTP/1.1 request seen at both ends, record to OTLP bytes: {best:>7.0} ns/request \
         ({exported} spans, {encoded} bytes encoded)"
    );
}
