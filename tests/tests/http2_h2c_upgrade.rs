//! curl `--http2` on cleartext → hypercorn (Python, h11 + h2): every
//! connection starts as HTTP/1.1 with `Upgrade: h2c`, gets `101`, and the
//! request is answered in HTTP/2 on stream 1. One SERVER span (hypercorn)
//! and one CLIENT span (curl) per request, `network.protocol.version = 2`,
//! the 101 itself not reported.

use std::process::Command;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::{CURL_WRITE_OUT, curl, parse_curl_transfers};
use agent_tests::grpc::{exact_spans, require_python_module};
use agent_tests::otlp::{OtlpReceiver, Protocol, SpanKind};
use agent_tests::semconv::assert_no_problems;
use agent_tests::servers::ServerProcess;

const APP: &str = r#"
import socket, sys
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    status = 404 if scope["path"].startswith("/missing") else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello from hypercorn\n"})

if __name__ == "__main__":
    import asyncio
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    config = Config()
    config.bind = ["127.0.0.1:%d" % port]
    print("LISTENING %d" % port, flush=True)
    asyncio.run(serve(app, config))
"#;

#[test]
fn curl_h2c_upgrade_to_hypercorn() {
    if !require_bpf() {
        return;
    }
    let python = require_python_module("hypercorn");
    let dir = tempfile::Builder::new()
        .prefix("agent-tests-hypercorn-")
        .tempdir()
        .expect("temp dir");
    let script = dir.path().join("app.py");
    std::fs::write(&script, APP).expect("write app");
    let mut cmd = Command::new(&python);
    cmd.arg("-u").arg(&script);
    let server = ServerProcess::spawn_listening(cmd, "hypercorn", dir);
    // Hypercorn binds after printing the port: wait until it accepts.
    agent_tests::poll_until(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(server.addr()).ok()
    })
    .expect("hypercorn listening");

    let rx = OtlpReceiver::start();
    let agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));
    let urls = [
        server.url("/a?x=1"),
        server.url("/b"),
        server.url("/missing"),
    ];
    let mut curl_pids = Vec::new();
    let mut codes = Vec::new();
    for url in &urls {
        let out = curl(&[
            "-sS",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            CURL_WRITE_OUT,
            url,
        ]);
        out.assert_success();
        curl_pids.push(out.pid);
        codes.extend(parse_curl_transfers(&out.stdout).iter().map(|t| t.code));
    }
    assert_eq!(codes, vec![200, 200, 404], "curl results");

    let n = urls.len();
    let (servers, clients, mut problems) = exact_spans(&rx, &agent, &[server.pid], &curl_pids, n);
    let mut paths: Vec<String> = Vec::new();
    for s in servers.iter().chain(&clients) {
        let ctx = format!("{:?} span {}", s.kind, s.summary());
        if s.attr_str("network.protocol.version") != Some("2") {
            problems.push(format!("{ctx}: network.protocol.version"));
        }
        let name_ok = match s.kind {
            SpanKind::Server => s.name.starts_with("GET /"),
            _ => s.name == "GET",
        };
        if !name_ok || s.attr_str("http.request.method") != Some("GET") {
            problems.push(format!("{ctx}: method"));
        }
        if s.attr_int("http.response.status_code") == Some(101) {
            problems.push(format!("{ctx}: the 101 reported as the response"));
        }
        if s.attr_str("user_agent.original")
            .is_none_or(|ua| !ua.starts_with("curl/"))
        {
            problems.push(format!("{ctx}: user_agent.original"));
        }
        if let Some(p) = s.attr_str("url.path") {
            paths.push(format!("{p} {:?}", s.attr_int("http.response.status_code")));
        }
    }
    paths.sort();
    if paths != ["/a Some(200)", "/b Some(200)", "/missing Some(404)"] {
        problems.push(format!("server paths/statuses: {paths:?}"));
    }
    let mut involved = servers.clone();
    involved.extend(clients);
    assert_no_problems(
        "curl --http2 → hypercorn (h2c upgrade)",
        &problems,
        &involved,
    );
}
