//! A keep-alive connection opened (and used once) BEFORE the agent starts,
//! then used for 5 more requests after it is ready: exactly 5 SERVER and 5
//! CLIENT spans, all attributes as for a connection the agent saw open.

use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::{InteractiveClient, plan_line};
use agent_tests::otlp::{OtlpReceiver, Protocol, SpanKind};
use agent_tests::semconv::{
    Exchange, Req, ResourceExpect, assert_no_problems, check_sequence, spans_of,
};
use agent_tests::servers::RustHttpServer;
use agent_tests::{SETTLE, SPAN_WAIT, TestClock, test_bins};

#[test]
fn connection_opened_before_agent_is_traced_after() {
    if !require_bpf() {
        return;
    }
    let bins = test_bins!();
    let srv = RustHttpServer::start(&bins.rust_http_server);
    let mut client = InteractiveClient::start(
        &bins.rust_http_client,
        &srv.base_url(),
        &[plan_line("GET", "/before-agent", None)],
    );
    let local = client.local_addr.expect("client local address");

    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));
    // Spans must be inside the window that starts once the agent runs.
    let clock = TestClock::start();
    std::thread::sleep(Duration::from_millis(200));

    let paths: Vec<String> = (0..5).map(|i| format!("/after/{i}")).collect();
    for p in &paths {
        assert_eq!(client.request(&plan_line("GET", p, None)), 200);
    }
    assert_eq!(client.local_addr, Some(local), "client changed connection");

    rx.wait_for(
        |s| {
            spans_of(s, SpanKind::Server, &[srv.pid]).len() >= 5
                && spans_of(s, SpanKind::Client, &[client.pid]).len() >= 5
        },
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    let all = rx.spans();
    let servers = spans_of(&all, SpanKind::Server, &[srv.pid]);
    let clients = spans_of(&all, SpanKind::Client, &[client.pid]);
    let reqs: Vec<Req<'_>> = paths.iter().map(|p| Req::new("GET", p, 200)).collect();
    let ex = Exchange {
        host: "127.0.0.1",
        server_port: srv.port,
        client_port: Some(local.port()),
        user_agent: Some("agent-tests-rust-client/1.0"),
        protocol_version: "1.1",
        server_resource: ResourceExpect {
            pid: srv.pid,
            service_name: "rust_http_server",
            executable_names: &["rust_http_server"],
            command_line_contains: &["rust_http_server"],
        },
        client_resource: ResourceExpect {
            pid: client.pid,
            service_name: "rust_http_client",
            executable_names: &["rust_http_client"],
            command_line_contains: &["rust_http_client"],
        },
    };
    let problems = check_sequence(&clients, &servers, &reqs, &ex, &clock);
    let mut involved = servers.clone();
    involved.extend(clients.iter().cloned());
    assert_no_problems(
        "keep-alive connection opened before the agent",
        &problems,
        &involved,
    );

    assert!(client.finish().success());
    agent.assert_ready();
}
