//! h2load → nginx over HTTP/2 cleartext with prior knowledge (`listen ...
//! http2`): many multiplexed requests on few connections. One SERVER span
//! (nginx worker) and one CLIENT span (h2load) per request, with the same
//! HTTP attributes as HTTP/1 plus `network.protocol.version = 2`.

use std::process::{Command, Stdio};

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::free_port;
use agent_tests::grpc::exact_spans;
use agent_tests::otlp::{OtlpReceiver, Protocol, SpanKind};
use agent_tests::semconv::assert_no_problems;
use agent_tests::servers::Nginx;

const REQUESTS: usize = 300;

#[test]
fn h2load_to_nginx_prior_knowledge() {
    if !require_bpf() {
        return;
    }
    let h2_port = free_port();
    let nginx = Nginx::start(&format!("listen 127.0.0.1:{h2_port} http2;"));
    let workers = nginx.worker_pids();
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::HttpProtobuf));

    let child = Command::new("h2load")
        .args([
            "-n",
            &REQUESTS.to_string(),
            "-c",
            "2",
            "-m",
            "10",
            &format!("http://127.0.0.1:{h2_port}/status/404"),
            &format!("http://127.0.0.1:{h2_port}/"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("h2load (apt-get install nghttp2-client)");
    let h2load = child.id();
    let out = child.wait_with_output().expect("h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h2load failed:\n{text}");
    // h2load counts the 404s as "failed": every request must be done, none
    // errored.
    assert!(
        text.contains(&format!("{REQUESTS} done")) && text.contains(" 0 errored"),
        "h2load did not complete every request:\n{text}"
    );

    let (servers, clients, mut problems) = exact_spans(&rx, &agent, &workers, &[h2load], REQUESTS);
    let mut not_found = [0, 0];
    for (i, spans) in [&servers, &clients].into_iter().enumerate() {
        for s in spans.iter() {
            let ctx = format!("{:?} span {}", s.kind, s.summary());
            let status = s.attr_int("http.response.status_code");
            let path = match s.kind {
                SpanKind::Server => s.attr_str("url.path").map(str::to_string),
                _ => s
                    .attr_str("url.full")
                    .and_then(|u| u.strip_prefix(&format!("http://127.0.0.1:{h2_port}")))
                    .map(str::to_string),
            };
            match (path.as_deref(), status) {
                (Some("/"), Some(200)) => {}
                (Some("/status/404"), Some(404)) => not_found[i] += 1,
                other => problems.push(format!("{ctx}: path/status {other:?}")),
            }
            for (k, v) in [
                ("http.request.method", "GET"),
                ("network.protocol.version", "2"),
                ("server.address", "127.0.0.1"),
                ("network.peer.address", "127.0.0.1"),
            ] {
                if s.attr_str(k) != Some(v) {
                    problems.push(format!("{ctx}: {k} = {:?}, want {v}", s.attr_str(k)));
                }
            }
            if s.attr_int("server.port") != Some(i64::from(h2_port)) {
                problems.push(format!("{ctx}: server.port"));
            }
            let name_ok = match s.kind {
                SpanKind::Server => s.name.starts_with("GET /"),
                _ => s.name == "GET",
            };
            if !name_ok {
                problems.push(format!("{ctx}: name {:?}", s.name));
            }
            if s.kind == SpanKind::Server && s.attr_str("url.scheme") != Some("http") {
                problems.push(format!("{ctx}: url.scheme"));
            }
            if s.attr_str("user_agent.original")
                .is_none_or(|ua| !ua.starts_with("h2load"))
            {
                problems.push(format!("{ctx}: user_agent.original"));
            }
            if s.attr("rpc.system.name").is_some() {
                problems.push(format!("{ctx}: plain HTTP/2 reported as gRPC"));
            }
        }
    }
    // h2load alternates the two URIs.
    if not_found != [REQUESTS / 2, REQUESTS / 2] {
        problems.push(format!("404 spans (server, client): {not_found:?}"));
    }
    let mut involved = servers.clone();
    involved.extend(clients);
    assert_no_problems("h2load → nginx (h2c prior knowledge)", &problems, &involved);
    agent.assert_ready();
}
