//! Connected traces across gRPC and PostgreSQL: a tonic gRPC client → the
//! tonic server, whose `echo.Echo/Query` handler runs a statement on its
//! PostgreSQL connection (tokio-postgres) → the PostgreSQL backend. All on
//! loopback, none instrumented.
//!
//! Every call is exactly one trace of four spans — the gRPC CLIENT span
//! (root), the gRPC SERVER span (stitched by the HTTP/2 stream id), the
//! server's PostgreSQL CLIENT span (nested: the async server's sole
//! request in flight), the backend's SERVER span (stitched by statement
//! order) — with the exact parents; the RPC and database duration
//! histograms count every call, and the service graph has both edges.

use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::grpc::{Stack, run_client, start_tonic_with_postgres};
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan, SpanKind};
use agent_tests::postgres::PostgresServer;
use agent_tests::prom;
use agent_tests::semconv::assert_no_problems;
use agent_tests::traces::{Hop, by_trace, check_chain, otlp_histogram_count, prom_sum_for};
use agent_tests::{SETTLE, SPAN_WAIT, poll_until, test_bins};

#[test]
fn grpc_client_server_postgres_one_trace_per_call() {
    if !require_bpf() {
        return;
    }
    let bins = test_bins!();
    let pg = PostgresServer::start();
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .env("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
    );
    // Started after the agent: its PostgreSQL connection is seen from the
    // start.
    let server = start_tonic_with_postgres(&bins.grpc_echo, &pg.conninfo("grpc-echo"));
    let n = 5;
    let client = run_client(
        Stack::Tonic,
        &bins.grpc_echo,
        server.port,
        &format!("query {n}"),
    );
    assert_eq!((client.calls, client.failures), (n as u64, 0));
    let (cp, sp) = ([client.pid], [server.pid]);
    let involved = |spans: &[ReceivedSpan]| -> Vec<ReceivedSpan> {
        spans
            .iter()
            .filter(|s| {
                s.pid() == Some(client.pid)
                    || s.pid() == Some(server.pid)
                    || (s.kind == SpanKind::Server
                        && s.attr_int("server.port") == Some(i64::from(pg.port)))
            })
            .cloned()
            .collect()
    };
    rx.wait_for(|spans| involved(spans).len() >= 4 * n, SPAN_WAIT);
    std::thread::sleep(SETTLE);
    let spans = involved(&rx.spans());
    let backends: Vec<u32> = pg
        .server_spans(&spans)
        .iter()
        .filter_map(ReceivedSpan::pid)
        .collect();
    let mut problems = Vec::new();
    let traces = by_trace(&spans);
    if traces.len() != n {
        problems.push(format!("{} traces for {n} calls", traces.len()));
    }
    let hops = [
        Hop {
            kind: SpanKind::Client,
            pids: &cp,
            what: "gRPC CLIENT",
        },
        Hop {
            kind: SpanKind::Server,
            pids: &sp,
            what: "gRPC SERVER",
        },
        Hop {
            kind: SpanKind::Client,
            pids: &sp,
            what: "PostgreSQL CLIENT (the handler's statement)",
        },
        Hop {
            kind: SpanKind::Server,
            pids: &backends,
            what: "PostgreSQL SERVER (backend)",
        },
    ];
    for t in traces.values() {
        problems.extend(check_chain(t, &hops, ""));
    }
    for s in &spans {
        let ok = match (s.kind, s.pid() == Some(client.pid)) {
            (SpanKind::Client, true) => s.name == "echo.Echo/Query",
            (SpanKind::Server, _) if s.pid() == Some(server.pid) => s.name == "echo.Echo/Query",
            _ => true,
        };
        if !ok {
            problems.push(format!("{:?} span named {:?}", s.kind, s.name));
        }
    }
    let backend_service = pg
        .server_spans(&spans)
        .first()
        .and_then(|s| s.service_name().map(str::to_string))
        .unwrap_or_default();

    // RED metrics: every call, on /metrics and over OTLP.
    let count = |t: &str, m: &str, pids: &[u32], l: &[(&str, &str)]| {
        prom_sum_for(t, &format!("{m}_count"), pids, l) as usize
    };
    let text = poll_until(Duration::from_secs(10), || {
        let t = agent.metrics_text();
        (count(&t, "db_client_operation_duration_seconds", &sp, &[]) >= n).then_some(t)
    })
    .unwrap_or_else(|| agent.metrics_text());
    let method = [
        ("rpc_method", "echo.Echo/Query"),
        ("rpc_response_status_code", "OK"),
    ];
    for (m, pids, labels, what) in [
        (
            "rpc_server_call_duration_seconds",
            &sp[..],
            &method[..],
            "rpc server",
        ),
        (
            "rpc_client_call_duration_seconds",
            &cp[..],
            &method[..],
            "rpc client",
        ),
        (
            "db_client_operation_duration_seconds",
            &sp[..],
            &[
                ("db_system_name", "postgresql"),
                ("db_operation_name", "SELECT"),
                ("db_namespace", "postgres"),
            ][..],
            "db client",
        ),
    ] {
        let got = count(&text, m, pids, labels);
        if got != n {
            problems.push(format!(
                "{what}: {m}_count {got}, want {n}:\n{}",
                prom::grep(&text, m)
            ));
        }
    }
    for (c, s) in [
        ("grpc_echo", "grpc_echo"),
        ("grpc_echo", backend_service.as_str()),
    ] {
        let got = prom::sum_with_labels(
            &text,
            "traces_service_graph_request_total",
            &[("client", c), ("server", s)],
        )
        .unwrap_or(0.0) as usize;
        if got != n {
            problems.push(format!(
                "service graph {c} -> {s}: {got}, want {n}:\n{}",
                prom::grep(&text, "traces_service_graph_request_total")
            ));
        }
    }
    let otlp = poll_until(Duration::from_secs(15), || {
        let c = otlp_histogram_count(
            &rx.metrics_requests(),
            "db.client.operation.duration",
            &sp,
            &[("db.operation.name", "SELECT")],
        )?;
        (c as usize >= n).then_some(c)
    });
    if otlp != Some(n as u64) {
        problems.push(format!(
            "OTLP db.client.operation.duration count {otlp:?}, want {n}"
        ));
    }
    let otlp_rpc = otlp_histogram_count(
        &rx.metrics_requests(),
        "rpc.server.call.duration",
        &sp,
        &[("rpc.method", "echo.Echo/Query")],
    );
    if otlp_rpc != Some(n as u64) {
        problems.push(format!(
            "OTLP rpc.server.call.duration count {otlp_rpc:?}, want {n}"
        ));
    }
    agent.assert_alive();
    assert_no_problems("gRPC -> server -> PostgreSQL", &problems, &spans);
}
