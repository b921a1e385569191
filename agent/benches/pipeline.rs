//! Userspace cost per HTTP/1.1 request, or per PostgreSQL statement, ring
//! record to OTLP bytes (`cargo bench -p agent --bench pipeline`;
//! `PIPELINE_BENCH_PROTOCOL=postgres` for the statements only).
//!
//! What one request observed at both ends costs the agent's pipeline
//! thread and exporter, without the kernel and without the noise of a
//! saturated machine: four data records (client write, server read,
//! server write, client read) through [`Pipeline::on_record`] (HTTP/1
//! parsing, two spans, RED, stitching, sampling), the export queue, and
//! the OTLP encoding of every batch. The records are those of wrk against
//! nginx in `cargo xtask bench http`, plus a `User-Agent`, as most clients
//! send one. The PostgreSQL statements are those of `pgbench -S -M simple`
//! (`cargo xtask bench postgres`), from the captured
//! `protocol/postgres/fixtures/pgbench_simple.bin`: its start-up exchange
//! once per connection, then one `Query` with a literal that changes every
//! time and its answer (RowDescription, DataRow, CommandComplete,
//! ReadyForQuery).

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

const PGBENCH_SIMPLE: &[u8] =
    include_bytes!("../src/protocol/postgres/fixtures/pgbench_simple.bin");

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

/// What one connection carries: its start-up records (`true`: client to
/// server), then the same exchange again and again, the request's bytes
/// written by `request(i, buf)`.
struct Scenario {
    name: &'static str,
    unit: &'static str,
    protocol: Protocol,
    port: u16,
    setup: Vec<(bool, Vec<u8>)>,
    request: fn(u64, &mut Vec<u8>),
    response: Vec<u8>,
}

fn http() -> Scenario {
    Scenario {
        name: "HTTP/1.1 request",
        unit: "request",
        protocol: Protocol::Http1,
        port: 8080,
        setup: Vec::new(),
        request: |_, buf| {
            buf.clear();
            buf.extend_from_slice(REQUEST);
        },
        response: RESPONSE.to_vec(),
    }
}

/// The fixture's relay records: (`true`: frontend, bytes).
fn fixture_records(mut d: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    while d.len() >= 5 {
        let n = u32::from_be_bytes([d[1], d[2], d[3], d[4]]) as usize;
        out.push((d[0] == b'F', d[5..5 + n].to_vec()));
        d = &d[5 + n..];
    }
    out
}

fn postgres() -> Scenario {
    let records = fixture_records(PGBENCH_SIMPLE);
    let first_query = records
        .iter()
        .position(|(f, b)| *f && b.first() == Some(&b'Q'))
        .expect("a Query in the fixture");
    Scenario {
        name: "PostgreSQL statement (pgbench -S -M simple)",
        unit: "statement",
        protocol: Protocol::Postgres,
        port: 5432,
        setup: records[..first_query].to_vec(),
        request: |i, buf| {
            // `Q`, length, text, NUL: the fixture's query with a literal
            // of five digits like pgbench's.
            let aid = 10_000 + (i * 7_919) % 90_000;
            let text = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};");
            buf.clear();
            buf.push(b'Q');
            buf.extend_from_slice(&(text.len() as u32 + 5).to_be_bytes());
            buf.extend_from_slice(text.as_bytes());
            buf.push(0);
        },
        response: records[first_query + 1].1.clone(),
    }
}

fn main() {
    let which = std::env::var("PIPELINE_BENCH_PROTOCOL").unwrap_or_default();
    let scenarios: Vec<Scenario> = match which.as_str() {
        "http" => vec![http()],
        "postgres" => vec![postgres()],
        _ => vec![http(), postgres()],
    };
    for sc in &scenarios {
        bench(sc);
    }
}

fn bench(sc: &Scenario) {
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
    let server = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), sc.port);
    let mut t = monotonic_ns();
    for c in 0..CONNS {
        let client = (client_ip, 40_000 + c as u16);
        for (tgid, role, sk, local, remote) in [
            (CLIENT_PID, Role::Client, 1000 + c, client, server),
            (SERVER_PID, Role::Server, 2000 + c, server, client),
        ] {
            pipeline.on_record(Record::ConnOpen(ConnOpen {
                role,
                protocol: sc.protocol,
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
        for (from_client, bytes) in &sc.setup {
            // The writer's record, then the reader's.
            let (client, server) = ((CLIENT_PID, 1000 + c), (SERVER_PID, 2000 + c));
            let (writer, reader) = if *from_client {
                (client, server)
            } else {
                (server, client)
            };
            let times = [(t, t + 1_000), (t + 2_000, t + 3_000)];
            pipeline.on_record(data(writer.0, writer.1, Direction::Egress, bytes, times[0]));
            pipeline.on_record(data(
                reader.0,
                reader.1,
                Direction::Ingress,
                bytes,
                times[1],
            ));
            t += 5_000;
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
    let mut request = Vec::new();
    let response = sc.response.as_slice();
    let mut run = |n: u64, t: &mut u64| {
        for i in 0..n {
            (sc.request)(i, &mut request);
            let c = i % CONNS;
            let (csk, ssk) = (1000 + c, 2000 + c);
            let s = *t;
            pipeline.on_record(data(
                CLIENT_PID,
                csk,
                Direction::Egress,
                &request,
                (s, s + 2_000),
            ));
            pipeline.on_record(data(
                SERVER_PID,
                ssk,
                Direction::Ingress,
                &request,
                (s + 3_000, s + 4_000),
            ));
            pipeline.on_record(data(
                SERVER_PID,
                ssk,
                Direction::Egress,
                response,
                (s + 9_000, s + 11_000),
            ));
            pipeline.on_record(data(
                CLIENT_PID,
                csk,
                Direction::Ingress,
                response,
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
        "{} seen at both ends, record to OTLP bytes: {best:>7.0} ns/{} \
         ({exported} spans, {encoded} bytes encoded)",
        sc.name, sc.unit
    );
}
