//! curl → nginx over one keep-alive connection, exported over OTLP/gRPC.
//!
//! 5 × `GET /`, `GET /status/500`, `HEAD /`, `GET /big` (200 KiB static file,
//! sent with sendfile): exactly one SERVER span (nginx worker) and one CLIENT
//! span (curl) per request, with the contract's attributes, resource and timing.

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::{CURL_WRITE_OUT, curl, parse_curl_transfers};
use agent_tests::otlp::{OtlpReceiver, Protocol, SpanKind, Transport};
use agent_tests::prom::names;
use agent_tests::semconv::{
    Exchange, Req, ResourceExpect, assert_no_problems, check_sequence, spans_of,
};
use agent_tests::servers::Nginx;
use agent_tests::{SETTLE, SPAN_WAIT, TestClock};

const UA: &str = "agent-tests-curl/1.0";

#[test]
fn curl_to_nginx_keepalive_error_head_and_sendfile() {
    if !require_bpf() {
        return;
    }
    let clock = TestClock::start();
    let nginx = Nginx::start("");
    let workers = nginx.worker_pids();
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .env("OTEL_EXPORTER_OTLP_HEADERS", "x-agent-tests=nginx-grpc"),
    );

    let root = nginx.url("/");
    let w = CURL_WRITE_OUT;
    let mut args: Vec<&str> = vec!["-sS", "-A", UA, "-o", "/dev/null", "-w", w];
    args.extend([root.as_str(); 5]);
    let err = nginx.url("/status/500");
    let big = nginx.url("/big");
    args.extend(["--next", "-sS", "-A", UA, "-o", "/dev/null", "-w", w, &err]);
    args.extend([
        "--next",
        "-sS",
        "-A",
        UA,
        "-I",
        "-o",
        "/dev/null",
        "-w",
        w,
        &root,
    ]);
    args.extend(["--next", "-sS", "-A", UA, "-o", "/dev/null", "-w", w, &big]);
    let out = curl(&args);
    out.assert_success();
    let transfers = parse_curl_transfers(&out.stdout);
    assert_eq!(
        transfers.iter().map(|t| t.code).collect::<Vec<_>>(),
        vec![200, 200, 200, 200, 200, 500, 200, 200],
        "curl output:\n{}",
        out.stdout
    );
    // Precondition: all 8 requests on one connection.
    assert_eq!(
        transfers.iter().map(|t| t.connects).sum::<u32>(),
        1,
        "curl opened more than one connection:\n{}",
        out.stdout
    );
    let local_port = transfers[0].local_port;
    assert!(transfers.iter().all(|t| t.local_port == local_port));

    let reqs = [
        Req::new("GET", "/", 200),
        Req::new("GET", "/", 200),
        Req::new("GET", "/", 200),
        Req::new("GET", "/", 200),
        Req::new("GET", "/", 200),
        Req::new("GET", "/status/500", 500),
        Req::new("HEAD", "/", 200),
        Req::new("GET", "/big", 200),
    ];
    let n = reqs.len();
    let curl_pid = out.pid;
    rx.wait_for(
        |s| {
            spans_of(s, SpanKind::Server, &workers).len() >= n
                && spans_of(s, SpanKind::Client, &[curl_pid]).len() >= n
        },
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    let all = rx.spans();
    let servers = spans_of(&all, SpanKind::Server, &workers);
    let clients = spans_of(&all, SpanKind::Client, &[curl_pid]);

    // All server spans come from one worker (one connection), never the master.
    let worker_pid = servers.first().and_then(|s| s.pid()).unwrap_or(0);
    let mut problems = Vec::new();
    if servers.iter().any(|s| s.pid() != Some(worker_pid)) {
        problems.push("SERVER spans of one connection come from different pids".to_string());
    }
    if all
        .iter()
        .any(|s| s.pid() == Some(nginx.master_pid()) && s.kind == SpanKind::Server)
    {
        problems.push(format!(
            "SERVER span attributed to the nginx master {}",
            nginx.master_pid()
        ));
    }
    for s in servers.iter().chain(&clients) {
        if s.transport != Transport::Grpc {
            problems.push(format!("span arrived via {:?}, want Grpc", s.transport));
        }
    }
    let ex = Exchange {
        host: "127.0.0.1",
        server_port: nginx.port,
        client_port: Some(local_port),
        user_agent: Some(UA),
        protocol_version: "1.1",
        server_resource: ResourceExpect {
            pid: worker_pid,
            service_name: "nginx",
            executable_names: &["nginx"],
            command_line_contains: &["nginx"],
        },
        client_resource: ResourceExpect {
            pid: curl_pid,
            service_name: "curl",
            executable_names: &["curl"],
            command_line_contains: &["curl", "/status/500"],
        },
    };
    problems.extend(check_sequence(&clients, &servers, &reqs, &ex, &clock));
    // OTEL_EXPORTER_OTLP_HEADERS reaches the backend on every export request.
    for r in rx.requests() {
        if !r
            .headers
            .contains(&("x-agent-tests".to_string(), "nginx-grpc".to_string()))
        {
            problems.push(format!(
                "export request to {} lacks header x-agent-tests=nginx-grpc: {:?}",
                r.path, r.headers
            ));
        }
    }
    let mut involved = servers.clone();
    involved.extend(clients.iter().cloned());
    assert_no_problems("curl → nginx", &problems, &involved);

    // Agent health and its own counters.
    agent.assert_ready();
    let metrics = agent.metrics_text();
    for name in [names::EVENTS_READ, names::SPANS_EXPORTED] {
        let v = agent_tests::prom::sum(&metrics, name);
        assert!(
            v.is_some_and(|v| v > 0.0),
            "counter *{name}* should be > 0, got {v:?}; /metrics:\n{metrics}"
        );
    }
}
