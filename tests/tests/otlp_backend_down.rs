//! The OTLP backend fails (UNAVAILABLE), then is down (connection refused),
//! then recovers: the agent stays alive and ready, counts the spans it could
//! not deliver, and delivers new spans once the backend is back.

use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::curl;
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan, SpanKind};
use agent_tests::prom::{self, names};
use agent_tests::semconv::spans_of;
use agent_tests::servers::Nginx;
use agent_tests::{SETTLE, SPAN_WAIT, poll_until};

/// Time allowed for the agent to notice a failed export (retries with backoff
/// may come first).
const EXPORT_FAIL_WAIT: Duration = Duration::from_secs(30);

fn failures(agent: &AgentProcess) -> f64 {
    prom::export_failures(&agent.metrics_text())
}

fn requests(nginx: &Nginx, phase: &str, n: usize) -> u32 {
    let urls: Vec<String> = (0..n)
        .map(|i| nginx.url(&format!("/{phase}/{i}")))
        .collect();
    let mut args = vec!["-sS", "-o", "/dev/null"];
    args.extend(urls.iter().map(String::as_str));
    let out = curl(&args);
    out.assert_success();
    out.pid
}

fn with_path_prefix(spans: &[ReceivedSpan], prefix: &str) -> usize {
    spans
        .iter()
        .filter(|s| {
            s.attr_str("url.path")
                .is_some_and(|p| p.starts_with(prefix))
        })
        .count()
}

fn wait_failures_above(agent: &mut AgentProcess, floor: f64, what: &str) -> f64 {
    let got = poll_until(EXPORT_FAIL_WAIT, || {
        agent.assert_alive();
        let f = failures(agent);
        (f > floor).then_some(f)
    });
    match got {
        Some(f) => f,
        None => panic!(
            "{what}: dropped/failed-export counters (*{}* + *{}*) did not rise above {floor} within {EXPORT_FAIL_WAIT:?}.\n/metrics:\n{}",
            names::SPANS_DROPPED,
            names::EXPORT_REQUESTS,
            agent.metrics_text()
        ),
    }
}

#[test]
fn backend_failing_then_down_then_recovered() {
    if !require_bpf() {
        return;
    }
    let nginx = Nginx::start("");
    let workers = nginx.worker_pids();
    let mut rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));

    // Phase 0: the pipeline works.
    requests(&nginx, "phase0", 2);
    rx.wait_for(
        |s| with_path_prefix(&spans_of(s, SpanKind::Server, &workers), "/phase0/") >= 2,
        SPAN_WAIT,
    );

    // Phase 1: the backend answers UNAVAILABLE.
    let f0 = failures(&agent);
    rx.set_failing(true);
    requests(&nginx, "phase1", 5);
    let f1 = wait_failures_above(&mut agent, f0, "receiver failing");
    assert!(
        rx.requests().iter().any(|r| !r.accepted),
        "the agent never tried to export while the receiver failed"
    );
    agent.assert_ready();
    eprintln!("failures counter: {f0} → {f1} while failing");

    // Phase 2: the backend is down (connection refused).
    rx.set_failing(false);
    rx.stop();
    requests(&nginx, "phase2", 5);
    let f2 = wait_failures_above(&mut agent, f1, "receiver stopped");
    agent.assert_ready();
    eprintln!("failures counter: {f1} → {f2} while stopped");

    // Phase 3: the backend is back on the same port; new spans arrive.
    rx.restart();
    let curl_pid = requests(&nginx, "phase3", 3);
    // Generous: the exporter may be in a reconnect backoff.
    rx.wait_for(
        |s| {
            with_path_prefix(&spans_of(s, SpanKind::Server, &workers), "/phase3/") >= 3
                && spans_of(s, SpanKind::Client, &[curl_pid]).len() >= 3
        },
        Duration::from_secs(45),
    );
    std::thread::sleep(SETTLE);
    let spans = rx.spans();
    assert_eq!(
        spans_of(&spans, SpanKind::Client, &[curl_pid]).len(),
        3,
        "CLIENT spans of phase 3"
    );
    assert_eq!(
        with_path_prefix(&spans_of(&spans, SpanKind::Server, &workers), "/phase3/"),
        3,
        "SERVER spans of phase 3"
    );
    agent.assert_ready();
}
