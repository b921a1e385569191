//! Self-tests of the harness: no agent, no root needed.
//!
//! The receiver is fed by a real tonic client and by HTTP POSTs; the peers
//! (nginx, Python, Rust server and client) are started and probed with curl;
//! `AgentProcess` is exercised against a fake agent (a Python script that
//! serves /readyz and /metrics).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess};
use agent_tests::client::{self, CURL_WRITE_OUT, RawConn, curl, parse_curl_transfers, plan_line};
use agent_tests::otlp::{OtlpReceiver, SpanKind, StatusCode, Transport, Value};
use agent_tests::servers::{
    self, Nginx, PythonHttpServer, PythonMode, PythonOptions, RustHttpServer,
};
use agent_tests::{prom, test_bins};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message as _;

fn kv_str(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}
fn kv_int(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

fn sample_request(name: &str, n: usize) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![0xab; 16],
            span_id: vec![i as u8 + 1; 8],
            parent_span_id: vec![],
            name: name.into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 1_000 + i as u64,
            end_time_unix_nano: 2_000 + i as u64,
            attributes: vec![
                kv_str("http.request.method", "GET"),
                kv_int("http.response.status_code", 503),
            ],
            status: Some(Status {
                message: "boom".into(),
                code: status::StatusCode::Error as i32,
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "svc"), kv_int("process.pid", 42)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "agent".into(),
                    version: "0.1.0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> client::SimpleResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    client::parse_response(&out).expect("response")
}

#[test]
fn receiver_grpc_roundtrip_failing_and_restart() {
    let mut rx = OtlpReceiver::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let endpoint = rx.grpc_endpoint();
    let send = |req: ExportTraceServiceRequest| {
        let endpoint = endpoint.clone();
        rt.block_on(async move {
            let mut c = TraceServiceClient::connect(endpoint)
                .await
                .map_err(|e| e.to_string())?;
            c.export(req)
                .await
                .map(|_| ())
                .map_err(|s| format!("{:?}", s.code()))
        })
    };

    send(sample_request("GET", 3)).expect("export ok");
    let spans = rx.wait_for(|s| s.len() == 3, Duration::from_secs(5));
    let s = &spans[0];
    assert_eq!(s.transport, Transport::Grpc);
    assert_eq!(s.name, "GET");
    assert_eq!(s.kind, SpanKind::Server);
    assert_eq!(s.scope_name, "agent");
    assert_eq!(s.trace_id, "ab".repeat(16));
    assert_eq!(s.span_id, "01".repeat(8));
    assert_eq!(s.parent_span_id, "");
    assert_eq!((s.start_ns, s.end_ns), (1000, 2000));
    assert_eq!(s.attr_str("http.request.method"), Some("GET"));
    assert_eq!(s.attr_int("http.response.status_code"), Some(503));
    assert_eq!(s.resource_str("service.name"), Some("svc"));
    assert_eq!(s.pid(), Some(42));
    assert_eq!(s.status_code, StatusCode::Error);
    assert_eq!(s.status_message, "boom");

    // Metrics service accepts and stores too.
    rt.block_on(async {
        let mut c = MetricsServiceClient::connect(rx.grpc_endpoint())
            .await
            .unwrap();
        c.export(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m1".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    });
    assert_eq!(rx.metric_names(), vec!["m1".to_string()]);

    rx.set_failing(true);
    assert_eq!(
        send(sample_request("POST", 1)),
        Err("Unavailable".to_string())
    );
    assert_eq!(rx.spans().len(), 3);
    assert_eq!(rx.requests().iter().filter(|r| !r.accepted).count(), 1);
    rx.set_failing(false);

    rx.stop();
    assert!(
        TcpStream::connect(rx.grpc_addr()).is_err(),
        "stopped receiver still accepts"
    );
    assert!(send(sample_request("PUT", 1)).is_err());
    rx.restart();
    send(sample_request("PUT", 1)).expect("export after restart");
    rx.wait_for(
        |s| s.iter().any(|s| s.name == "PUT"),
        Duration::from_secs(5),
    );

    rx.clear();
    assert!(rx.spans().is_empty());
    assert!(
        rx.try_wait_for(|s| !s.is_empty(), Duration::from_millis(200))
            .is_none()
    );
}

#[test]
fn receiver_http_protobuf_gzip_and_errors() {
    let mut rx = OtlpReceiver::start();
    let body = sample_request("GET", 2).encode_to_vec();
    let r = post(
        rx.http_addr(),
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&sample_request("HEAD", 1).encode_to_vec())
        .unwrap();
    let gz = gz.finish().unwrap();
    let r = post(
        rx.http_addr(),
        "/v1/traces",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "gzip"),
            ("X-Custom", "abc"),
        ],
        &gz,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = rx.wait_for(|s| s.len() == 3, Duration::from_secs(5));
    assert!(spans.iter().all(|s| s.transport == Transport::HttpProtobuf));
    assert_eq!(spans.iter().filter(|s| s.name == "HEAD").count(), 1);
    assert!(
        rx.requests()
            .iter()
            .any(|r| r.headers.contains(&("x-custom".into(), "abc".into())))
    );

    let r = post(
        rx.http_addr(),
        "/v1/traces",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 415);
    let r = post(
        rx.http_addr(),
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        b"\xff\xff\xff",
    );
    assert_eq!(r.status, 400);

    rx.set_failing(true);
    let r = post(
        rx.http_addr(),
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &body,
    );
    assert_eq!(r.status, 503);
    rx.set_failing(false);

    rx.stop();
    assert!(TcpStream::connect(rx.http_addr()).is_err());
    rx.restart();
    let r = post(
        rx.http_addr(),
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &body,
    );
    assert_eq!(r.status, 200);
    assert_eq!(rx.spans().len(), 5);
    assert_eq!(
        rx.spans()[0].attr("http.request.method"),
        Some(&Value::Str("GET".into()))
    );
}

#[test]
fn nginx_answers_curl() {
    let nginx = Nginx::start("");
    assert_eq!(nginx.worker_pids().len(), 2, "worker pids");
    let out = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        CURL_WRITE_OUT,
        &nginx.url("/"),
        &nginx.url("/"),
        &nginx.url("/status/500"),
    ]);
    out.assert_success();
    let t = parse_curl_transfers(&out.stdout);
    assert_eq!(
        t.iter().map(|t| t.code).collect::<Vec<_>>(),
        vec![200, 200, 500]
    );
    assert_eq!(
        t.iter().map(|t| t.connects).collect::<Vec<_>>(),
        vec![1, 0, 0],
        "keep-alive reuse"
    );
    assert!(t.iter().all(|x| x.local_port == t[0].local_port));

    let out = curl(&["-sS", &nginx.url("/")]);
    assert_eq!(out.assert_success().stdout, servers::NGINX_HELLO);
    let out = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &nginx.url("/big"),
    ]);
    assert_eq!(
        out.assert_success().stdout,
        servers::NGINX_BIG_BYTES.to_string()
    );
    let out = curl(&["-sS", "-I", &nginx.url("/")]);
    assert!(
        out.assert_success().stdout.starts_with("HTTP/1.1 200"),
        "{}",
        out.stdout
    );
    let out = curl(&["-sS", "-D", "-", "-o", "/dev/null", &nginx.url("/chunked")]);
    assert!(
        out.assert_success()
            .stdout
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "nginx /chunked is not chunked:\n{}",
        out.stdout
    );
}

#[test]
fn python_server_routes_and_blackhole() {
    let py = PythonHttpServer::start_with(PythonOptions {
        env: vec![("OTEL_SERVICE_NAME".into(), "my-python-svc".into())],
        ..Default::default()
    });
    let env = std::fs::read(format!("/proc/{}/environ", py.pid)).unwrap();
    assert!(
        env.split(|b| *b == 0)
            .any(|e| e == b"OTEL_SERVICE_NAME=my-python-svc")
    );
    let exe = agent_tests::procs::exe_name(py.pid).unwrap();
    assert!(
        agent_tests::semconv::PYTHON_EXE_NAMES.contains(&exe.as_str()),
        "python exe {exe}"
    );

    assert_eq!(
        curl(&["-sS", &py.url("/")]).assert_success().stdout,
        servers::PYTHON_HELLO
    );
    let out = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &py.url("/status/404"),
    ]);
    assert_eq!(out.stdout, "404");
    assert_eq!(
        curl(&["-sS", "-d", "echo-me", &py.url("/echo")])
            .assert_success()
            .stdout,
        "echo-me"
    );
    assert_eq!(
        curl(&["-sS", &py.url("/slow?ms=50")])
            .assert_success()
            .stdout,
        "slow 50\n"
    );
    let out = curl(&["-sS", "-D", "-", &py.url("/chunked")]);
    assert!(
        out.assert_success()
            .stdout
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    );
    assert!(out.stdout.ends_with("chunk-three\n"));
    let out = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        CURL_WRITE_OUT,
        &py.url("/"),
        &py.url("/a"),
        &py.url("/b"),
    ]);
    let t = parse_curl_transfers(&out.stdout);
    assert_eq!(
        t.iter().map(|t| t.connects).collect::<Vec<_>>(),
        vec![1, 0, 0],
        "python keep-alive"
    );

    let hole = PythonHttpServer::start_with(PythonOptions {
        mode: PythonMode::Blackhole,
        ..Default::default()
    });
    let mut c = RawConn::connect(hole.addr()).unwrap();
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        c.read_for(Duration::from_millis(500)).is_empty(),
        "blackhole answered"
    );
}

#[test]
fn rust_server_and_client() {
    let bins = test_bins!();
    let srv = RustHttpServer::start(&bins.rust_http_server);
    assert_eq!(
        curl(&["-sS", &srv.url("/")]).assert_success().stdout,
        servers::RUST_HELLO
    );
    let out = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &srv.url("/status/503"),
    ]);
    assert_eq!(out.stdout, "503");
    assert_eq!(
        curl(&["-sS", "-d", "abc", &srv.url("/x")])
            .assert_success()
            .stdout,
        "abc"
    );
    let out = curl(&["-sS", "-D", "-", &srv.url("/chunked")]);
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{}",
        out.stdout
    );
    let out = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        CURL_WRITE_OUT,
        &srv.url("/"),
        &srv.url("/"),
        &srv.url("/"),
    ]);
    let t = parse_curl_transfers(&out.stdout);
    assert_eq!(
        t.iter().map(|t| t.connects).collect::<Vec<_>>(),
        vec![1, 0, 0],
        "rust server keep-alive"
    );

    let plan = vec![
        plan_line("GET", "/", None),
        plan_line("POST", "/echo", Some("hello body")),
        plan_line("GET", "/status/404", None),
        plan_line("GET", "/big?bytes=100000", None),
        plan_line("HEAD", "/", None),
    ];
    let run = client::run_rust_client(&bins.rust_http_client, &srv.base_url(), &plan, &[]);
    run.assert_success();
    assert_eq!(run.responses, vec![200, 200, 404, 200, 200]);
    assert!(run.stdout.contains("RESPONSE 200 10\n"), "{}", run.stdout);
    assert!(run.stdout.contains("completed 5"));
    assert!(run.local_addr.is_some());

    // Interactive: same connection across stdin-driven requests.
    let py = PythonHttpServer::start();
    let mut ic = client::InteractiveClient::start(
        &bins.rust_http_client,
        &py.base_url(),
        &[plan_line("GET", "/", None)],
    );
    let local = ic.local_addr.expect("local addr");
    for _ in 0..3 {
        assert_eq!(ic.request("GET /again"), 200);
    }
    assert_eq!(ic.request("GET /status/500"), 500);
    assert_eq!(ic.local_addr, Some(local));
    assert!(ic.finish().success());
}

const FAKE_AGENT: &str = r##"
import sys
from http.server import HTTPServer, BaseHTTPRequestHandler
args = sys.argv[1:]
addr = args[args.index("--metrics-address") + 1]
host, port = addr.rsplit(":", 1)
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = {"/readyz": b"ready\n", "/healthz": b"ok\n",
                "/metrics": b"# TYPE agent_spans_exported counter\nagent_spans_exported_total 7\nagent_events_lost_total{reason=\"ring\"} 2\n# EOF\n"}.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")
print("fake agent args:", args, flush=True)
sys.stderr.write("fake agent stderr line\n"); sys.stderr.flush()
HTTPServer((host, int(port)), H).serve_forever()
"##;

#[test]
fn agent_process_against_fake_agent() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fake_agent.py");
    std::fs::write(
        &script,
        format!("#!{}\n{FAKE_AGENT}", servers::python_bin().display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .bin(&script)
            .otlp(&rx, agent_tests::otlp::Protocol::HttpProtobuf)
            .capture_bytes(1024)
            .request_timeout("2s"),
    );
    agent.assert_ready();
    assert_eq!(agent.healthz(), Some(200));
    assert_eq!(agent.counter(prom::names::SPANS_EXPORTED), Some(7.0));
    assert_eq!(agent.counter(prom::names::RECORDS_LOST), Some(2.0));
    assert_eq!(agent.counter("nope"), None);
    assert!(agent.rss_kib().unwrap() > 0);
    let out = agent.stdout_text();
    for needle in [
        "--capture-bytes', '1024'",
        "--request-timeout', '2s'",
        "--metrics-address",
    ] {
        assert!(out.contains(needle), "fake agent args: {out}");
    }
    assert!(agent.stderr_text().contains("fake agent stderr line"));
    let pid = agent.pid;
    drop(agent);
    assert!(
        !agent_tests::procs::is_alive(pid),
        "agent still alive after drop"
    );

    // An agent that exits before it is ready fails with its stderr.
    let bad = dir.path().join("bad_agent.sh");
    std::fs::write(
        &bad,
        "#!/bin/sh\necho 'cannot load BPF: EPERM' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = AgentProcess::try_start(AgentOptions::new().bin(&bad))
        .err()
        .expect("must fail");
    assert!(
        err.contains("cannot load BPF: EPERM") && err.contains("exit status: 3"),
        "{err}"
    );
}
