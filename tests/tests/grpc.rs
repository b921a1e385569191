//! gRPC between two stacks (grpcio on gRPC C core, tonic on h2), both ways,
//! over HTTP/2 cleartext with prior knowledge: unary, server-, client- and
//! bidirectional streaming calls, error statuses (NOT_FOUND from the
//! handler, UNIMPLEMENTED for an unknown method, both Trailers-Only) and
//! many concurrent streams on one connection. Exactly one SERVER and one
//! CLIENT span per call, with the RPC semantic conventions.

use std::collections::BTreeMap;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::grpc::{Stack, exact_spans, require_grpcio, run_client, start_server};
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan, SpanKind, StatusCode};
use agent_tests::semconv::assert_no_problems;
use agent_tests::test_bins;

const PLAN: &str =
    "unary 5, server_stream 2, client_stream 2, bidi 2, fail 1, missing 1, concurrent 60";

/// (method, calls, status) the plan makes.
const CALLS: &[(&str, usize, &str)] = &[
    // 60 calls at once: gRPC's C core coalesces them into writes of
    // hundreds of iovecs.
    ("echo.Echo/Unary", 65, "OK"),
    ("echo.Echo/ServerStream", 2, "OK"),
    ("echo.Echo/ClientStream", 2, "OK"),
    ("echo.Echo/Bidi", 2, "OK"),
    ("echo.Echo/Fail", 1, "NOT_FOUND"),
    ("echo.Echo/Missing", 1, "UNIMPLEMENTED"),
];

fn total_calls() -> usize {
    CALLS.iter().map(|c| c.1).sum()
}

/// Checks one side's spans against the plan; returns problems.
pub fn check_rpc_spans(spans: &[ReceivedSpan], kind: SpanKind, server_port: u16) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_method: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in spans {
        let ctx = format!("{kind:?} span {}", s.summary());
        let method = s.attr_str("rpc.method").unwrap_or("<none>").to_string();
        let status = s
            .attr_str("rpc.response.status_code")
            .unwrap_or("<none>")
            .to_string();
        *by_method
            .entry((method.clone(), status.clone()))
            .or_default() += 1;
        if s.attr_str("rpc.system.name") != Some("grpc") {
            problems.push(format!("{ctx}: rpc.system.name != grpc"));
        }
        if s.name != method {
            problems.push(format!("{ctx}: name {:?} != rpc.method {method:?}", s.name));
        }
        if s.attr_str("network.protocol.version") != Some("2") {
            problems.push(format!("{ctx}: network.protocol.version != 2"));
        }
        if s.attr_str("server.address") != Some("127.0.0.1")
            || s.attr_int("server.port") != Some(i64::from(server_port))
        {
            problems.push(format!("{ctx}: server.address/port"));
        }
        if s.attr_str("network.peer.address") != Some("127.0.0.1") {
            problems.push(format!("{ctx}: network.peer.address"));
        }
        let is_error = match (kind, status.as_str()) {
            (_, "OK") => false,
            (SpanKind::Client, _) => true,
            (_, s) => matches!(
                s,
                "UNKNOWN"
                    | "DEADLINE_EXCEEDED"
                    | "UNIMPLEMENTED"
                    | "INTERNAL"
                    | "UNAVAILABLE"
                    | "DATA_LOSS"
            ),
        };
        let want_status = if is_error {
            StatusCode::Error
        } else {
            StatusCode::Unset
        };
        if s.status_code != want_status {
            problems.push(format!(
                "{ctx}: status {:?}, want {want_status:?}",
                s.status_code
            ));
        }
        let error_type = s.attr_str("error.type");
        if is_error != (error_type == Some(status.as_str())) {
            problems.push(format!(
                "{ctx}: error.type {error_type:?} with status {status}"
            ));
        }
        if s.attr("agent.hpack.unresolved_fields").is_some() {
            problems.push(format!(
                "{ctx}: unresolved header fields on a connection seen from its start"
            ));
        }
        if s.start_ns > s.end_ns {
            problems.push(format!("{ctx}: ends before it starts"));
        }
        // A request body (5-byte message prefix at least), unless the
        // server answered before it (UNIMPLEMENTED, Trailers-Only).
        let body = s.attr_int("http.request.body.size").unwrap_or(-1);
        if body < 5 && status == "OK" {
            problems.push(format!("{ctx}: http.request.body.size {body}"));
        }
    }
    let want: BTreeMap<(String, String), usize> = CALLS
        .iter()
        .map(|(m, n, st)| ((m.to_string(), st.to_string()), *n))
        .collect();
    if by_method != want {
        problems.push(format!(
            "{kind:?} spans by (method, status): {by_method:?}, want {want:?}"
        ));
    }
    problems
}

fn run(server_stack: Stack, client_stack: Stack) {
    if !require_bpf() {
        return;
    }
    require_grpcio();
    let bins = test_bins!();
    let rx = OtlpReceiver::start();
    let agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));
    let server = start_server(server_stack, &bins.grpc_echo);
    let client = run_client(client_stack, &bins.grpc_echo, server.port, PLAN);
    let n = total_calls();
    assert_eq!(client.calls as usize, n, "calls made");
    assert_eq!(client.failures, 2, "Fail and Missing fail");

    let (spid, cpid) = (server.pid, client.pid);
    let (servers, clients, mut problems) = exact_spans(&rx, &agent, &[spid], &[cpid], n);
    problems.extend(check_rpc_spans(&servers, SpanKind::Server, server.port));
    problems.extend(check_rpc_spans(&clients, SpanKind::Client, server.port));
    let mut involved = servers.clone();
    involved.extend(clients);
    assert_no_problems(
        &format!("{client_stack:?} client → {server_stack:?} server"),
        &problems,
        &involved,
    );
}

#[test]
fn grpcio_client_to_tonic_server() {
    run(Stack::Tonic, Stack::Grpcio);
}

#[test]
fn tonic_client_to_grpcio_server() {
    run(Stack::Grpcio, Stack::Tonic);
}
