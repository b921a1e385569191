//! The Python `http.server` as a peer.
//!
//! - Rust client → Python server (`OTEL_SERVICE_NAME=my-python-svc`), 20
//!   requests on one keep-alive connection including a POST with a body and a
//!   query `?token=secret&q=1`, exported over OTLP/HTTP-protobuf. `secret`
//!   must appear in no exported attribute value.
//! - A server that never answers: a request that outlives `--request-timeout`
//!   gives `error.type=timeout`, one whose connection is closed first gives
//!   `error.type=connection_closed`, on both the SERVER and the CLIENT side.

use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::{RawConn, plan_line, run_rust_client};
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan, SpanKind, Transport, dump};
use agent_tests::semconv::{
    Exchange, PYTHON_EXE_NAMES, Req, ResourceExpect, assert_no_problems, check_failed_request_span,
    check_sequence, spans_of, values_containing,
};
use agent_tests::servers::{PythonHttpServer, PythonMode, PythonOptions};
use agent_tests::{SETTLE, SPAN_WAIT, TestClock, test_bins};

#[test]
fn rust_client_to_python_keepalive_over_http_protobuf() {
    if !require_bpf() {
        return;
    }
    let clock = TestClock::start();
    let bins = test_bins!();
    let py = PythonHttpServer::start_with(PythonOptions {
        env: vec![("OTEL_SERVICE_NAME".into(), "my-python-svc".into())],
        ..Default::default()
    });
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::HttpProtobuf)
            .env("OTEL_EXPORTER_OTLP_HEADERS", "x-agent-tests=python-http")
            .env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
    );

    // 20 requests: GET /items/<i>, a POST with a body at #5, a query at #10.
    let paths: Vec<String> = (0..20).map(|i| format!("/items/{i}")).collect();
    let mut reqs: Vec<Req<'_>> = paths.iter().map(|p| Req::new("GET", p, 200)).collect();
    reqs[5] = Req::new("POST", "/echo", 200);
    reqs[10] = Req::with_query("GET", "/search", "token=secret&q=1", 200);
    let plan: Vec<String> = reqs
        .iter()
        .map(|r| {
            let path = match r.query {
                Some(q) => format!("{}?{q}", r.path),
                None => r.path.to_string(),
            };
            plan_line(
                r.method,
                &path,
                (r.method == "POST").then_some("hello-post-body"),
            )
        })
        .collect();
    let run = run_rust_client(&bins.rust_http_client, &py.base_url(), &plan, &[]);
    run.assert_success();
    assert_eq!(
        run.responses,
        vec![200; 20],
        "client output:\n{}",
        run.stdout
    );
    let local_port = run
        .local_addr
        .expect("client printed its local address")
        .port();

    rx.wait_for(
        |s| {
            spans_of(s, SpanKind::Server, &[py.pid]).len() >= 20
                && spans_of(s, SpanKind::Client, &[run.pid]).len() >= 20
        },
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    let all = rx.spans();
    let servers = spans_of(&all, SpanKind::Server, &[py.pid]);
    let clients = spans_of(&all, SpanKind::Client, &[run.pid]);

    let ex = Exchange {
        host: "127.0.0.1",
        server_port: py.port,
        client_port: Some(local_port),
        user_agent: Some("agent-tests-rust-client/1.0"),
        protocol_version: "1.1",
        server_resource: ResourceExpect {
            pid: py.pid,
            service_name: "my-python-svc",
            executable_names: PYTHON_EXE_NAMES,
            command_line_contains: &["python_server.py"],
        },
        client_resource: ResourceExpect {
            pid: run.pid,
            service_name: "rust_http_client",
            executable_names: &["rust_http_client"],
            command_line_contains: &["rust_http_client"],
        },
    };
    let mut problems = check_sequence(&clients, &servers, &reqs, &ex, &clock);
    for s in servers.iter().chain(&clients) {
        if s.transport != Transport::HttpProtobuf {
            problems.push(format!(
                "span arrived via {:?}, want HttpProtobuf",
                s.transport
            ));
        }
    }
    // The secret query value must not leak anywhere, in any span received.
    for leak in values_containing(&all, "secret") {
        problems.push(format!("'secret' leaked: {leak}"));
    }
    // OTEL_EXPORTER_OTLP_HEADERS reaches the backend on every export request.
    for r in rx.requests() {
        if !r
            .headers
            .contains(&("x-agent-tests".to_string(), "python-http".to_string()))
        {
            problems.push(format!(
                "export request to {} lacks header x-agent-tests=python-http: {:?}",
                r.path, r.headers
            ));
        }
        // OTEL_EXPORTER_OTLP_COMPRESSION=gzip compresses every body.
        if !r
            .headers
            .contains(&("content-encoding".to_string(), "gzip".to_string()))
        {
            problems.push(format!(
                "export request to {} is not gzip-compressed: {:?}",
                r.path, r.headers
            ));
        }
    }
    let mut involved = servers.clone();
    involved.extend(clients.iter().cloned());
    assert_no_problems("rust client → python", &problems, &involved);
    agent.assert_ready();
}

fn raw_request(path: &str, port: u16) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: agent-tests-raw/1.0\r\n\r\n"
    )
    .into_bytes()
}

fn by_path<'a>(spans: &'a [ReceivedSpan], path: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| {
            s.attr_str("url.path") == Some(path)
                || s.attr_str("url.full").is_some_and(|u| u.contains(path))
        })
        .collect()
}

#[test]
fn unanswered_request_times_out_and_closed_connection_is_reported() {
    if !require_bpf() {
        return;
    }
    let hole = PythonHttpServer::start_with(PythonOptions {
        mode: PythonMode::Blackhole,
        ..Default::default()
    });
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .request_timeout("2s"),
    );
    let me = std::process::id();

    // A: sent, then held open well past the 2 s timeout, then closed.
    let mut a = RawConn::connect(hole.addr()).expect("connect A");
    a.send(&raw_request("/never", hole.port)).unwrap();
    // B: sent, then closed after 300 ms (before the timeout).
    let mut b = RawConn::connect(hole.addr()).expect("connect B");
    b.send(&raw_request("/closed", hole.port)).unwrap();
    assert!(
        b.read_for(Duration::from_millis(300)).is_empty(),
        "blackhole answered"
    );
    b.close();
    assert!(
        a.read_for(Duration::from_millis(4500)).is_empty(),
        "blackhole answered"
    );
    a.close();

    let is_ours = |s: &ReceivedSpan| {
        (s.kind == SpanKind::Server && s.pid() == Some(hole.pid))
            || (s.kind == SpanKind::Client
                && s.pid() == Some(me)
                && s.attr_int("network.peer.port") == Some(hole.port as i64))
    };
    rx.wait_for(|s| s.iter().filter(|s| is_ours(s)).count() >= 4, SPAN_WAIT);
    std::thread::sleep(SETTLE);
    let ours = rx.spans_where(is_ours);

    let mut problems = Vec::new();
    for (path, error_type) in [("/never", "timeout"), ("/closed", "connection_closed")] {
        let spans = by_path(&ours, path);
        for kind in [SpanKind::Server, SpanKind::Client] {
            let of_kind: Vec<&&ReceivedSpan> = spans.iter().filter(|s| s.kind == kind).collect();
            if of_kind.len() != 1 {
                problems.push(format!(
                    "{path}: want exactly one {kind:?} span, got {}",
                    of_kind.len()
                ));
            }
            for s in of_kind {
                problems.extend(check_failed_request_span(
                    s,
                    kind,
                    "GET",
                    error_type,
                    &format!("{path} {kind:?}"),
                ));
                eprintln!(
                    "{path} {kind:?} span duration {} ms",
                    s.duration_ns() / 1_000_000
                );
            }
        }
    }
    if !problems.is_empty() {
        panic!(
            "{} problem(s):\n  - {}\nspans:\n{}",
            problems.len(),
            problems.join("\n  - "),
            dump(&ours)
        );
    }
    agent.assert_ready();
}
