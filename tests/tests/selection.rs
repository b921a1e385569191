//! Selection: a selected and an unselected server side by side. Spans come
//! only from the selected one, and the unselected one costs no ring-buffer
//! record: the kernel's `data_records` counter does not move while it
//! serves (ports are rejected when a connection would be announced;
//! excluded processes are skipped at the top of the programs).
//!
//! The client is this test process itself (one long-lived process, decided
//! once), so that only the servers' side is under test.

use std::sync::Mutex;
use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::http_get_whole as http_get;
use agent_tests::otlp::{OtlpReceiver, Protocol, SpanKind};
use agent_tests::servers::{PythonHttpServer, RustHttpServer};
use agent_tests::{SETTLE, SPAN_WAIT, poll_until, prom, test_bins};

/// The scenarios use process-wide facts (this process as the client,
/// kernel counters of "everything else is quiet"): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn kernel(agent: &AgentProcess, counter: &str) -> f64 {
    prom::sum_with_labels(
        &agent.metrics_text(),
        "agent_kernel_events_total",
        &[("counter", counter)],
    )
    .unwrap_or(0.0)
}

fn decisions(agent: &AgentProcess, verdict: &str) -> f64 {
    prom::sum_with_labels(
        &agent.metrics_text(),
        "agent_selection_decisions_total",
        &[("verdict", verdict)],
    )
    .unwrap_or(0.0)
}

fn get_n(addr: std::net::SocketAddr, path: &str, n: usize) {
    for i in 0..n {
        let r = http_get(addr, &format!("{path}{i}"), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET {addr}{path}{i}: {e}"));
        assert_eq!(r.status, 200, "GET {addr}{path}{i}");
    }
}

/// Waits until `data_records` has not moved for a while (the selected
/// server's traffic is all in), and returns it.
fn quiet_data_records(agent: &AgentProcess) -> f64 {
    let mut last = kernel(agent, "data_records");
    poll_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(500));
        let now = kernel(agent, "data_records");
        let stable = now == last;
        last = now;
        stable.then_some(now)
    })
    .expect("data_records settles")
}

#[test]
fn ports_selected_in_the_kernel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !require_bpf() {
        return;
    }
    let bins = test_bins!();
    let selected = RustHttpServer::start(&bins.rust_http_server);
    let unselected = PythonHttpServer::start();
    let excluded = RustHttpServer::start(&bins.rust_http_server);
    let rx = OtlpReceiver::start();
    let include = format!("{},{}", selected.port, excluded.port);
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .env("AGENT_INCLUDE_PORTS", &include)
            .arg("--exclude-ports")
            .arg(&excluded.port.to_string()),
    );

    get_n(selected.addr(), "/selected/", 5);
    rx.wait_for_count(
        |s| s.kind == SpanKind::Server && s.pid() == Some(selected.pid),
        5,
        SPAN_WAIT,
        Duration::ZERO,
    );
    let before = quiet_data_records(&agent);
    let ignored_before = kernel(&agent, "selection_ignored_connections");

    get_n(unselected.addr(), "/unselected/", 20);
    get_n(excluded.addr(), "/excluded/", 20);
    std::thread::sleep(SETTLE);

    let after = kernel(&agent, "data_records");
    assert_eq!(
        after,
        before,
        "records were written for unselected ports\n{}",
        agent.logs_tail(20)
    );
    // Both ends of each connection (the server's and this client's).
    let ignored = kernel(&agent, "selection_ignored_connections") - ignored_before;
    assert!(ignored >= 40.0, "ignored connections counted: {ignored}");
    let spans = rx.spans();
    assert!(
        spans
            .iter()
            .all(|s| s.pid() != Some(unselected.pid) && s.pid() != Some(excluded.pid)),
        "spans of unselected servers"
    );
    assert!(
        spans.iter().all(
            |s| !s.attr_str("url.path").unwrap_or("").contains("selected/")
                || s.attr_str("url.path")
                    .unwrap_or("")
                    .starts_with("/selected/")
        ),
        "spans of unselected paths"
    );
    let clients = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client && s.pid() == Some(std::process::id()))
        .count();
    assert_eq!(clients, 5, "client spans of the selected port only");
    agent.assert_ready();
}

#[test]
fn processes_selected_by_executable() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !require_bpf() {
        return;
    }
    let bins = test_bins!();
    // Running before the agent: decided at its start.
    let selected = RustHttpServer::start(&bins.rust_http_server);
    let unselected = PythonHttpServer::start();
    let rx = OtlpReceiver::start();
    let pattern = "*/rust_http_server";
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .config_yaml(&format!(
                "selection:\n  include:\n    executables: [\"{pattern}\"]\n  exclude:\n    executables: [\"python*\"]\n"
            )),
    );
    // This process (the client) is neither: decided at its first
    // connection, then skipped in the kernel.
    get_n(selected.addr(), "/selected/", 5);
    rx.wait_for_count(
        |s| s.kind == SpanKind::Server && s.pid() == Some(selected.pid),
        5,
        SPAN_WAIT,
        Duration::ZERO,
    );
    let before = quiet_data_records(&agent);
    let skipped_before = kernel(&agent, "selection_skipped_syscalls");

    get_n(unselected.addr(), "/unselected/", 20);
    std::thread::sleep(SETTLE);
    assert_eq!(
        kernel(&agent, "data_records"),
        before,
        "records were written for an excluded process\n{}",
        agent.logs_tail(20)
    );
    assert!(
        kernel(&agent, "selection_skipped_syscalls") > skipped_before,
        "skipped syscalls are counted"
    );

    // A server started after the agent: decided at its first connection
    // (whose records are discarded), then skipped in the kernel.
    let late = PythonHttpServer::start();
    let excluded_before = decisions(&agent, "excluded");
    get_n(late.addr(), "/late-first/", 1);
    poll_until(SPAN_WAIT, || {
        (decisions(&agent, "excluded") > excluded_before).then_some(())
    })
    .expect("the late server is decided");
    let before = quiet_data_records(&agent);
    get_n(late.addr(), "/late/", 20);
    std::thread::sleep(SETTLE);
    assert_eq!(
        kernel(&agent, "data_records"),
        before,
        "records after the late process was excluded"
    );

    let spans = rx.spans();
    let bad: Vec<String> = spans
        .iter()
        .filter(|s| s.pid() != Some(selected.pid))
        .map(|s| format!("{:?} {} pid {:?}", s.kind, s.name, s.pid()))
        .collect();
    assert!(bad.is_empty(), "spans of unselected processes: {bad:?}");
    let text = agent.metrics_text();
    assert!(
        prom::sum_with_labels(
            &text,
            "agent_selection_decisions_total",
            &[("verdict", "selected")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    agent.assert_ready();
}
