//! Connected traces and RED metrics through a reverse proxy: curl → nginx
//! (`proxy_pass`) → a threaded Python `http.server` backend, all on
//! loopback, none instrumented.
//!
//! Every request is exactly one trace of four spans — curl's CLIENT span
//! (root), nginx's SERVER span (stitched: socket pair), nginx's CLIENT span
//! to the backend (nested: the worker's sole request in flight), Python's
//! SERVER span (stitched) — with the exact parent ids. The duration
//! histograms count every request on `/metrics` and over OTLP, the service
//! graph has the curl → nginx and nginx → python edges; with a 1 %
//! sampling ratio, errors and slow requests keep their whole traces while
//! most others are dropped, and the metrics still count everything.

use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::{CURL_WRITE_OUT, curl, parse_curl_transfers};
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan, SpanKind};
use agent_tests::prom;
use agent_tests::semconv::assert_no_problems;
use agent_tests::servers::{Nginx, PythonHttpServer, ServerProcess};
use agent_tests::traces::{Hop, by_trace, check_chain, otlp_histogram_count, prom_sum_for};
use agent_tests::{SETTLE, SPAN_WAIT, poll_until};

/// The two tests run one at a time: service-graph edges are per service
/// name, and each test's agent sees the other's nginx and curl.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Setup {
    backend: ServerProcess,
    nginx: Nginx,
}

fn setup() -> Setup {
    let backend = PythonHttpServer::start();
    let nginx = Nginx::start(&format!(
        "location /api/ {{ proxy_pass http://127.0.0.1:{}/; }}",
        backend.port
    ));
    Setup { backend, nginx }
}

/// curl with `urls` on one connection; returns its pid and the codes.
fn run_curl(urls: &[String]) -> (u32, Vec<u16>) {
    let mut args: Vec<&str> = vec!["-sS", "-o", "/dev/null", "-w", CURL_WRITE_OUT];
    for u in urls {
        args.push(u);
    }
    let out = curl(&args);
    out.assert_success();
    let codes = parse_curl_transfers(&out.stdout)
        .iter()
        .map(|t| t.code)
        .collect();
    (out.pid, codes)
}

fn hops<'a>(curl: &'a [u32], nginx: &'a [u32], backend: &'a [u32]) -> [Hop<'a>; 4] {
    [
        Hop {
            kind: SpanKind::Client,
            pids: curl,
            what: "curl CLIENT",
        },
        Hop {
            kind: SpanKind::Server,
            pids: nginx,
            what: "nginx SERVER",
        },
        Hop {
            kind: SpanKind::Client,
            pids: nginx,
            what: "nginx CLIENT (upstream)",
        },
        Hop {
            kind: SpanKind::Server,
            pids: backend,
            what: "python SERVER",
        },
    ]
}

fn of(spans: &[ReceivedSpan], pids: &[u32]) -> Vec<ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.pid().is_some_and(|p| pids.contains(&p)))
        .cloned()
        .collect()
}

#[test]
fn curl_nginx_python_one_trace_per_request_and_red_metrics() {
    if !require_bpf() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let s = setup();
    let workers = s.nginx.worker_pids();
    let backend = [s.backend.pid];
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .env("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
    );
    let n = 6;
    let urls: Vec<String> = (0..n)
        .map(|i| s.nginx.url(&format!("/api/users/{}", 100 + i)))
        .collect();
    let (curl_pid, codes) = run_curl(&urls);
    assert_eq!(codes, vec![200; n]);
    let curl_pids = [curl_pid];
    let all_pids: Vec<u32> = workers
        .iter()
        .chain(&backend)
        .chain(&curl_pids)
        .copied()
        .collect();
    rx.wait_for(|spans| of(spans, &all_pids).len() >= 4 * n, SPAN_WAIT);
    std::thread::sleep(SETTLE);
    let spans = of(&rx.spans(), &all_pids);
    let mut problems = Vec::new();
    let traces = by_trace(&spans);
    if traces.len() != n {
        problems.push(format!(
            "{} traces for {n} requests ({} spans)",
            traces.len(),
            spans.len()
        ));
    }
    for trace in traces.values() {
        problems.extend(check_chain(
            trace,
            &hops(&curl_pids, &workers, &backend),
            "",
        ));
    }
    // The nested and stitched spans say how they got their parent.
    for s in &spans {
        let want = match (s.kind, s.pid() == Some(curl_pid)) {
            (SpanKind::Client, true) => None,
            (SpanKind::Server, _) => Some("socket_pair"),
            (SpanKind::Client, false) => Some("sole_request_in_flight"),
            _ => None,
        };
        let got = s.attr_str("agent.correlation.parent");
        if got != want && !(want == Some("sole_request_in_flight") && got == Some("same_thread")) {
            problems.push(format!(
                "{:?} {} agent.correlation.parent {got:?}, want {want:?}",
                s.kind, s.name
            ));
        }
    }
    let nginx_server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server && s.pid().is_some_and(|p| workers.contains(&p)));
    if let Some(s) = nginx_server
        && (s.name != "GET /api/users/{id}" || s.attr_str("http.route") != Some("/api/users/{id}"))
    {
        problems.push(format!(
            "nginx span name {:?} route {:?}",
            s.name,
            s.attr_str("http.route")
        ));
    }
    let backend_name = spans
        .iter()
        .find(|s| s.pid() == Some(backend[0]))
        .and_then(|s| s.service_name().map(str::to_string))
        .unwrap_or_default();

    // RED metrics on /metrics: every request counted.
    let count = |text: &str, metric: &str, pids: &[u32], labels: &[(&str, &str)]| {
        prom_sum_for(text, &format!("{metric}_count"), pids, labels) as usize
    };
    let text = poll_until(Duration::from_secs(10), || {
        let t = agent.metrics_text();
        (count(&t, "http_server_request_duration_seconds", &backend, &[]) >= n).then_some(t)
    })
    .unwrap_or_else(|| agent.metrics_text());
    let nginx_port = s.nginx.port.to_string();
    let backend_port = s.backend.port.to_string();
    for (metric, pids, labels, what) in [
        (
            "http_server_request_duration_seconds",
            &workers[..],
            vec![
                ("service_name", "nginx"),
                ("http_route", "/api/users/{id}"),
                ("http_request_method", "GET"),
                ("http_response_status_code", "200"),
            ],
            "nginx server",
        ),
        (
            "http_server_request_duration_seconds",
            &backend[..],
            vec![
                ("service_name", backend_name.as_str()),
                ("http_route", "/users/{id}"),
            ],
            "python server",
        ),
        (
            "http_client_request_duration_seconds",
            &curl_pids[..],
            vec![
                ("service_name", "curl"),
                ("server_port", nginx_port.as_str()),
            ],
            "curl client",
        ),
        (
            "http_client_request_duration_seconds",
            &workers[..],
            vec![("server_port", backend_port.as_str())],
            "nginx client",
        ),
    ] {
        let got = count(&text, metric, pids, &labels);
        if got != n {
            problems.push(format!(
                "{what}: {metric}_count {got}, want {n}:\n{}",
                prom::grep(&text, &format!("{metric}_count"))
            ));
        }
    }
    for (client, server) in [("curl", "nginx"), ("nginx", backend_name.as_str())] {
        let got = prom::sum_with_labels(
            &text,
            "traces_service_graph_request_total",
            &[("client", client), ("server", server)],
        )
        .unwrap_or(0.0) as usize;
        if got != n {
            problems.push(format!(
                "service graph {client} -> {server}: {got}, want {n}:\n{}",
                prom::grep(&text, "traces_service_graph")
            ));
        }
    }
    // The same counts over OTLP (cumulative, per process resource).
    let otlp = poll_until(Duration::from_secs(15), || {
        let c = otlp_histogram_count(
            &rx.metrics_requests(),
            "http.server.request.duration",
            &workers,
            &[("http.route", "/api/users/{id}")],
        )?;
        (c as usize >= n).then_some(c)
    });
    if otlp != Some(n as u64) {
        problems.push(format!(
            "OTLP http.server.request.duration count {otlp:?}, want {n}"
        ));
    }
    let otlp_backend = otlp_histogram_count(
        &rx.metrics_requests(),
        "http.server.request.duration",
        &backend,
        &[("http.route", "/users/{id}")],
    );
    if otlp_backend != Some(n as u64) {
        problems.push(format!(
            "OTLP python http.server.request.duration count {otlp_backend:?}, want {n}"
        ));
    }
    agent.assert_alive();
    assert_no_problems("curl -> nginx -> python", &problems, &spans);
}

#[test]
fn errors_and_slow_requests_survive_one_percent_sampling() {
    if !require_bpf() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let s = setup();
    let workers = s.nginx.worker_pids();
    let backend = [s.backend.pid];
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .arg("--sampling-ratio")
            .arg("0.01"),
    );
    let fast = 200;
    let mut urls: Vec<String> = (0..fast)
        .map(|i| s.nginx.url(&format!("/api/items/{i}")))
        .collect();
    urls.extend((0..3).map(|_| s.nginx.url("/api/status/500")));
    urls.extend((0..2).map(|_| s.nginx.url("/api/slow?ms=1100")));
    let (curl_pid, codes) = run_curl(&urls);
    assert_eq!(codes.len(), fast + 5);
    assert_eq!(&codes[fast..fast + 3], &[500, 500, 500]);
    let curl_pids = [curl_pid];
    let all_pids: Vec<u32> = workers
        .iter()
        .chain(&backend)
        .chain(&curl_pids)
        .copied()
        .collect();
    let path_of = |t: &[ReceivedSpan]| {
        t.iter()
            .find(|s| s.kind == SpanKind::Server && s.pid() == Some(backend[0]))
            .and_then(|s| s.attr_str("url.path").map(str::to_string))
            .unwrap_or_default()
    };
    let kept = |spans: &[ReceivedSpan], p: &str| {
        by_trace(&of(spans, &all_pids))
            .values()
            .filter(|t| path_of(t) == p && t.len() == 4)
            .count()
    };
    rx.wait_for(
        |spans| kept(spans, "/status/500") >= 3 && kept(spans, "/slow") >= 2,
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    let spans = of(&rx.spans(), &all_pids);
    let mut problems = Vec::new();
    let traces = by_trace(&spans);
    for t in traces.values() {
        problems.extend(check_chain(t, &hops(&curl_pids, &workers, &backend), ""));
    }
    let fast_kept = traces
        .values()
        .filter(|t| path_of(t).starts_with("/items/"))
        .count();
    if fast_kept > 20 {
        problems.push(format!(
            "{fast_kept} of {fast} fast, successful traces kept at a 1 % ratio"
        ));
    }
    for (p, want) in [("/status/500", 3), ("/slow", 2)] {
        let got = kept(&spans, p);
        if got != want {
            problems.push(format!("{got} whole traces of {p}, want {want}"));
        }
    }
    // Metrics count every request, sampled or not.
    let items_of = |t: &str| {
        prom_sum_for(
            t,
            "http_server_request_duration_seconds_count",
            &workers,
            &[("http_route", "/api/items/{id}")],
        ) as usize
    };
    let text = poll_until(Duration::from_secs(10), || {
        let t = agent.metrics_text();
        (items_of(&t) >= fast).then_some(t)
    })
    .unwrap_or_else(|| agent.metrics_text());
    let items = items_of(&text);
    if items != fast {
        problems.push(format!(
            "nginx /api/items/{{id}} count {items}, want {fast}"
        ));
    }
    let errors = prom_sum_for(
        &text,
        "http_server_request_duration_seconds_count",
        &workers,
        &[("error_type", "500")],
    ) as usize;
    if errors != 3 {
        problems.push(format!("nginx 5xx count {errors}, want 3"));
    }
    let dropped = prom::sum_with_labels(
        &text,
        "agent_spans_sampled_total",
        &[("decision", "dropped")],
    )
    .unwrap_or(0.0);
    if dropped < 4.0 * (fast as f64) * 0.9 {
        problems.push(format!(
            "agent_spans_sampled_total{{decision=\"dropped\"}} {dropped}:\n{}",
            prom::grep(&text, "agent_spans_sampled_total")
        ));
    }
    agent.assert_alive();
    assert_no_problems("1 % sampling", &problems, &spans);
}
