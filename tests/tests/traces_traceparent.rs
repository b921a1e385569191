//! An incoming W3C `traceparent` is joined: a client instrumented with the
//! OpenTelemetry SDK (Python `opentelemetry-sdk`) → nginx (proxy, which
//! forwards the header) → the Python backend. The agent's spans of each
//! request land in the SDK's trace: the agent's CLIENT span of the SDK
//! process is the child of the SDK's span, nginx's SERVER span of it, and
//! so on down, with exact parents; the agent never adds a `traceparent`
//! (the backend sees the SDK's). A request the SDK did not sample (flags
//! 00) is not exported (`sampling.parent_based`), yet counted in the RED
//! metrics.

use std::process::{Command, Stdio};
use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::grpc::require_python_module;
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan, SpanKind};
use agent_tests::semconv::assert_no_problems;
use agent_tests::servers::{Nginx, PythonHttpServer};
use agent_tests::traces::{Hop, by_trace, check_chain, prom_sum_for};
use agent_tests::{SETTLE, SPAN_WAIT, poll_until};

struct Sent {
    trace_id: String,
    span_id: String,
    status: u16,
}

/// Runs the SDK client; returns its pid and what it sent.
fn otel_client(urls: &[String], sampled: bool) -> (u32, Vec<Sent>) {
    let py = require_python_module("opentelemetry.sdk.trace");
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("otel_client.py");
    std::fs::write(&script, include_str!("../src/otel_client.py")).expect("write script");
    let mut cmd = Command::new(py);
    cmd.arg("-u").arg(&script);
    if !sampled {
        cmd.arg("--unsampled");
    }
    let child = cmd
        .args(urls)
        .env_remove("OTEL_SERVICE_NAME")
        .env("OTEL_SERVICE_NAME", "otel-client")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the SDK client");
    let pid = child.id();
    let out = child.wait_with_output().expect("SDK client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SENT "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Sent {
                trace_id: f[0].to_string(),
                span_id: f[1].to_string(),
                status: f[2].parse().expect("status"),
            }
        })
        .collect();
    (pid, sent)
}

#[test]
fn sdk_traceparent_is_joined_through_the_proxy() {
    if !require_bpf() {
        return;
    }
    let backend = PythonHttpServer::start();
    let nginx = Nginx::start(&format!(
        "location /api/ {{ proxy_pass http://127.0.0.1:{}/; }}",
        backend.port
    ));
    let workers = nginx.worker_pids();
    let rx = OtlpReceiver::start();
    let agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));
    let urls: Vec<String> = (1..=3)
        .map(|i| nginx.url(&format!("/api/orders/{i}")))
        .collect();
    let (client_pid, sent) = otel_client(&urls, true);
    let (unsampled_pid, unsent) = otel_client(&urls[..2], false);
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().chain(&unsent).all(|s| s.status == 200));
    let pids: Vec<u32> = workers
        .iter()
        .copied()
        .chain([backend.pid, client_pid, unsampled_pid])
        .collect();
    let ours = |spans: &[ReceivedSpan]| -> Vec<ReceivedSpan> {
        spans
            .iter()
            .filter(|s| s.pid().is_some_and(|p| pids.contains(&p)))
            .cloned()
            .collect()
    };
    rx.wait_for(|s| ours(s).len() >= 4 * sent.len(), SPAN_WAIT);
    std::thread::sleep(SETTLE);
    let spans = ours(&rx.spans());
    let traces = by_trace(&spans);
    let mut problems = Vec::new();
    let cp = [client_pid];
    let bp = [backend.pid];
    let hops = [
        Hop {
            kind: SpanKind::Client,
            pids: &cp,
            what: "the SDK process's CLIENT span (agent)",
        },
        Hop {
            kind: SpanKind::Server,
            pids: &workers,
            what: "nginx SERVER",
        },
        Hop {
            kind: SpanKind::Client,
            pids: &workers,
            what: "nginx CLIENT (upstream, forwarded traceparent)",
        },
        Hop {
            kind: SpanKind::Server,
            pids: &bp,
            what: "python SERVER",
        },
    ];
    for s in &sent {
        match traces.get(&s.trace_id) {
            Some(t) => problems.extend(check_chain(t, &hops, &s.span_id)),
            None => problems.push(format!("no span in the SDK's trace {}", s.trace_id)),
        }
    }
    if traces.len() != sent.len() {
        problems.push(format!(
            "{} traces, want only the {} SDK ones",
            traces.len(),
            sent.len()
        ));
    }
    for s in &unsent {
        if traces.contains_key(&s.trace_id) {
            problems.push(format!("the unsampled trace {} was exported", s.trace_id));
        }
    }
    // Counted all the same: 3 + 2 requests through nginx.
    let counted = poll_until(Duration::from_secs(10), || {
        let c = prom_sum_for(
            &agent.metrics_text(),
            "http_server_request_duration_seconds_count",
            &workers,
            &[("http_route", "/api/orders/{id}")],
        ) as usize;
        (c >= 5).then_some(c)
    });
    if counted != Some(5) {
        problems.push(format!("nginx requests counted {counted:?}, want 5"));
    }
    assert_no_problems("SDK traceparent through nginx", &problems, &spans);
}
