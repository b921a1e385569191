//! The Rust (hyper) server as a peer: curl → Rust server and Rust client →
//! Rust server, one keep-alive connection each, over OTLP/gRPC.

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::{CURL_WRITE_OUT, curl, parse_curl_transfers, plan_line, run_rust_client};
use agent_tests::otlp::{OtlpReceiver, Protocol, SpanKind};
use agent_tests::semconv::{
    Exchange, Req, ResourceExpect, assert_no_problems, check_sequence, spans_of,
};
use agent_tests::servers::RustHttpServer;
use agent_tests::{SETTLE, SPAN_WAIT, TestClock, test_bins};

const UA: &str = "agent-tests-curl/1.0";

#[test]
fn curl_to_rust_server() {
    if !require_bpf() {
        return;
    }
    let clock = TestClock::start();
    let bins = test_bins!();
    let srv = RustHttpServer::start(&bins.rust_http_server);
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
    );

    let reqs = [
        Req::new("GET", "/", 200),
        Req::new("GET", "/status/404", 404),
        Req::new("POST", "/echo", 200),
        Req::new("GET", "/chunked", 200),
        Req::with_query("GET", "/q", "a=1&b=2", 200),
    ];
    let (u0, u1, u2, u3, u4) = (
        srv.url("/"),
        srv.url("/status/404"),
        srv.url("/echo"),
        srv.url("/chunked"),
        srv.url("/q?a=1&b=2"),
    );
    let w = CURL_WRITE_OUT;
    let out = curl(&[
        "-sS",
        "-A",
        UA,
        "-o",
        "/dev/null",
        "-w",
        w,
        &u0,
        "--next",
        "-sS",
        "-A",
        UA,
        "-o",
        "/dev/null",
        "-w",
        w,
        &u1,
        "--next",
        "-sS",
        "-A",
        UA,
        "-o",
        "/dev/null",
        "-w",
        w,
        "-d",
        "posted-body",
        &u2,
        "--next",
        "-sS",
        "-A",
        UA,
        "-o",
        "/dev/null",
        "-w",
        w,
        &u3,
        "--next",
        "-sS",
        "-A",
        UA,
        "-o",
        "/dev/null",
        "-w",
        w,
        &u4,
    ]);
    out.assert_success();
    let t = parse_curl_transfers(&out.stdout);
    assert_eq!(
        t.iter().map(|t| t.code).collect::<Vec<_>>(),
        vec![200, 404, 200, 200, 200],
        "{}",
        out.stdout
    );
    assert_eq!(
        t.iter().map(|t| t.connects).sum::<u32>(),
        1,
        "one connection expected:\n{}",
        out.stdout
    );

    let n = reqs.len();
    rx.wait_for(
        |s| {
            spans_of(s, SpanKind::Server, &[srv.pid]).len() >= n
                && spans_of(s, SpanKind::Client, &[out.pid]).len() >= n
        },
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    // OTEL_EXPORTER_OTLP_COMPRESSION=gzip: every gRPC message compressed.
    for r in rx.requests() {
        assert!(
            r.headers
                .contains(&("grpc-encoding".to_string(), "gzip".to_string())),
            "export request to {} is not gzip-compressed: {:?}",
            r.path,
            r.headers
        );
    }
    let all = rx.spans();
    let servers = spans_of(&all, SpanKind::Server, &[srv.pid]);
    let clients = spans_of(&all, SpanKind::Client, &[out.pid]);
    let ex = Exchange {
        host: "127.0.0.1",
        server_port: srv.port,
        client_port: Some(t[0].local_port),
        user_agent: Some(UA),
        protocol_version: "1.1",
        server_resource: ResourceExpect {
            pid: srv.pid,
            service_name: "rust_http_server",
            executable_names: &["rust_http_server"],
            command_line_contains: &["rust_http_server"],
        },
        client_resource: ResourceExpect {
            pid: out.pid,
            service_name: "curl",
            executable_names: &["curl"],
            command_line_contains: &["curl"],
        },
    };
    let problems = check_sequence(&clients, &servers, &reqs, &ex, &clock);
    let mut involved = servers.clone();
    involved.extend(clients.iter().cloned());
    assert_no_problems("curl → rust server", &problems, &involved);
    agent.assert_ready();
}

#[test]
fn rust_client_to_rust_server() {
    if !require_bpf() {
        return;
    }
    let clock = TestClock::start();
    let bins = test_bins!();
    let srv = RustHttpServer::start(&bins.rust_http_server);
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));

    let paths: Vec<String> = (0..6).map(|i| format!("/n/{i}")).collect();
    let mut reqs: Vec<Req<'_>> = paths.iter().map(|p| Req::new("GET", p, 200)).collect();
    reqs.push(Req::new("GET", "/status/503", 503));
    reqs.push(Req::new("GET", "/chunked", 200));
    reqs.push(Req::with_query("GET", "/big", "bytes=300000", 200));
    reqs.push(Req::new("POST", "/echo", 200));
    let plan: Vec<String> = reqs
        .iter()
        .map(|r| {
            let path = r
                .query
                .map(|q| format!("{}?{q}", r.path))
                .unwrap_or_else(|| r.path.to_string());
            plan_line(
                r.method,
                &path,
                (r.method == "POST").then_some("a body of some bytes"),
            )
        })
        .collect();
    let run = run_rust_client(&bins.rust_http_client, &srv.base_url(), &plan, &[]);
    run.assert_success();
    assert_eq!(
        run.responses,
        reqs.iter().map(|r| r.status as u16).collect::<Vec<_>>(),
        "{}",
        run.stdout
    );

    let n = reqs.len();
    rx.wait_for(
        |s| {
            spans_of(s, SpanKind::Server, &[srv.pid]).len() >= n
                && spans_of(s, SpanKind::Client, &[run.pid]).len() >= n
        },
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    let all = rx.spans();
    let servers = spans_of(&all, SpanKind::Server, &[srv.pid]);
    let clients = spans_of(&all, SpanKind::Client, &[run.pid]);
    let ex = Exchange {
        host: "127.0.0.1",
        server_port: srv.port,
        client_port: run.local_addr.map(|a| a.port()),
        user_agent: Some("agent-tests-rust-client/1.0"),
        protocol_version: "1.1",
        server_resource: ResourceExpect {
            pid: srv.pid,
            service_name: "rust_http_server",
            executable_names: &["rust_http_server"],
            command_line_contains: &["rust_http_server"],
        },
        client_resource: ResourceExpect {
            pid: run.pid,
            service_name: "rust_http_client",
            executable_names: &["rust_http_client"],
            command_line_contains: &["rust_http_client"],
        },
    };
    let problems = check_sequence(&clients, &servers, &reqs, &ex, &clock);
    let mut involved = servers.clone();
    involved.extend(clients.iter().cloned());
    assert_no_problems("rust client → rust server", &problems, &involved);
    agent.assert_ready();
}
