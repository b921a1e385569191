//! A long-lived gRPC connection opened (and used) before the agent started:
//! the kernel joins it mid-stream (HTTP/2 frame-header check), userspace
//! infers client and server from the first HEADERS, and every call made
//! after the start gets its SERVER and CLIENT span, even though the HPACK
//! dynamic-table entries inserted before the start are unknown (those
//! fields are reported unresolved, never wrong).

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::grpc::{InteractiveClient, Stack, exact_spans, require_grpcio, start_server};
use agent_tests::otlp::{OtlpReceiver, Protocol};
use agent_tests::semconv::assert_no_problems;
use agent_tests::test_bins;

fn run(server_stack: Stack, client_stack: Stack) {
    if !require_bpf() {
        return;
    }
    require_grpcio();
    let bins = test_bins!();
    let server = start_server(server_stack, &bins.grpc_echo);
    let mut client = InteractiveClient::start(client_stack, &bins.grpc_echo, server.port);
    // Warm the connection (and its HPACK tables) before the agent exists.
    assert_eq!(client.step("unary 3"), (3, 0));
    assert_eq!(client.step("fail 1"), (4, 1));

    let rx = OtlpReceiver::start();
    let agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));
    // Same methods as before the start, then one never called before.
    let (calls, failures) = client.step("unary 4, fail 1, server_stream 2");
    let steps_after = 4 + 1 + 2;
    assert_eq!((calls, failures), (4 + steps_after as u64, 2));
    // ... and a few more on the same connection.
    let (calls, _) = client.step("concurrent 5");
    assert_eq!(calls, 4 + steps_after as u64 + 5);
    let n = steps_after + 5;

    let (spid, cpid) = (server.pid, client.pid);
    let (servers, clients, mut problems) = exact_spans(&rx, &agent, &[spid], &[cpid], n);
    for s in servers.iter().chain(&clients) {
        let ctx = format!("{:?} span {}", s.kind, s.summary());
        if s.attr_str("rpc.system.name") != Some("grpc") {
            problems.push(format!("{ctx}: not recognised as gRPC"));
        }
        let method = s.attr_str("rpc.method").unwrap_or("<none>");
        let known = [
            "echo.Echo/Unary",
            "echo.Echo/Fail",
            "echo.Echo/ServerStream",
            "_OTHER",
        ];
        if !known.contains(&method) {
            problems.push(format!("{ctx}: rpc.method {method:?}"));
        }
        if method == "_OTHER" && s.attr_int("agent.hpack.unresolved_fields").unwrap_or(0) == 0 {
            problems.push(format!(
                "{ctx}: unknown method without the unresolved marker"
            ));
        }
        if s.attr_str("network.protocol.version") != Some("2") {
            problems.push(format!("{ctx}: network.protocol.version"));
        }
    }
    // A method first called after the start is inserted into the dynamic
    // table in front of the agent: it is always resolved.
    for (side, spans) in [("server", &servers), ("client", &clients)] {
        let streams = spans
            .iter()
            .filter(|s| s.attr_str("rpc.method") == Some("echo.Echo/ServerStream"))
            .count();
        if streams != 2 {
            problems.push(format!(
                "{side}: {streams} ServerStream spans with their method, want 2"
            ));
        }
    }
    let mut involved = servers.clone();
    involved.extend(clients);
    assert_no_problems(
        &format!("{client_stack:?} client → {server_stack:?} server, agent started late"),
        &problems,
        &involved,
    );
    client.finish();
}

#[test]
fn grpcio_client_tonic_server_joined_late() {
    run(Stack::Tonic, Stack::Grpcio);
}

#[test]
fn tonic_client_grpcio_server_joined_late() {
    run(Stack::Grpcio, Stack::Tonic);
}
