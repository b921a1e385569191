//! Node and process metrics over OTLP: `system.*` metrics on the host
//! resource and `process.*` metrics of a traced process on its own resource
//! (the one its spans carry), over gRPC and over HTTP/protobuf with gzip;
//! `OTEL_METRICS_EXPORTER=none` switches them off while spans still flow.

use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::curl;
use agent_tests::otlp::{OtlpReceiver, Protocol};
use agent_tests::servers::RustHttpServer;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// (resource attributes, metric) of every metric received.
fn metrics(requests: &[ExportMetricsServiceRequest]) -> Vec<(Vec<KeyValue>, Metric)> {
    let mut out = Vec::new();
    for r in requests {
        for rm in &r.resource_metrics {
            let res = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    out.push((res.clone(), m.clone()));
                }
            }
        }
    }
    out
}

fn point_values(m: &Metric) -> Vec<(Vec<KeyValue>, f64)> {
    let points = match &m.data {
        Some(metric::Data::Sum(s)) => &s.data_points,
        Some(metric::Data::Gauge(g)) => &g.data_points,
        _ => return Vec::new(),
    };
    points
        .iter()
        .map(|p| {
            let v = match p.value {
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                Some(number_data_point::Value::AsDouble(d)) => d,
                None => f64::NAN,
            };
            (p.attributes.clone(), v)
        })
        .collect()
}

fn check_export(protocol: Protocol, gzip: bool) {
    let bins = agent_tests::test_bins!();
    let rx = OtlpReceiver::start();
    let mut opts = AgentOptions::new()
        .otlp(&rx, protocol)
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .env("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=node%20test");
    if gzip {
        opts = opts.env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip");
    }
    let agent = AgentProcess::start(opts);
    let server = RustHttpServer::start(&bins.rust_http_server);
    curl(&["-s", "-o", "/dev/null", &server.url("/")]).assert_success();

    // Host metrics with semantic-convention names on the host resource.
    let wanted = [
        "system.cpu.time",
        "system.memory.usage",
        "system.disk.io",
        "system.filesystem.usage",
        "system.network.io",
        "system.cpu.load_average.1m",
        "system.paging.faults",
        "system.process.count",
        "system.uptime",
    ];
    let all = agent_tests::poll_until(Duration::from_secs(30), || {
        let m = metrics(&rx.metrics_requests());
        wanted
            .iter()
            .all(|w| m.iter().any(|(_, metric)| metric.name == *w))
            .then_some(m)
    });
    let all = all.unwrap_or_else(|| {
        panic!(
            "host metrics missing; received names: {:?}\n{}",
            rx.metric_names(),
            agent.logs_tail(30)
        )
    });
    let (res, cpu) = all
        .iter()
        .find(|(_, m)| m.name == "system.cpu.time")
        .unwrap();
    assert_eq!(
        attr_str(res, "host.name"),
        Some(agent_tests::procs::hostname().as_str())
    );
    assert_eq!(attr_str(res, "os.type"), Some("linux"));
    assert_eq!(cpu.unit, "s");
    let Some(metric::Data::Sum(sum)) = &cpu.data else {
        panic!("system.cpu.time is not a sum")
    };
    assert!(sum.is_monotonic);
    let points = point_values(cpu);
    assert!(
        points
            .iter()
            .any(|(a, v)| attr_str(a, "cpu.mode") == Some("idle") && *v > 0.0)
    );
    assert!(
        points
            .iter()
            .all(|(a, _)| attr_int(a, "cpu.logical_number").is_some())
    );
    let (_, mem) = all
        .iter()
        .find(|(_, m)| m.name == "system.memory.usage")
        .unwrap();
    let used = point_values(mem)
        .into_iter()
        .find(|(a, _)| attr_str(a, "system.memory.state") == Some("used"))
        .map(|(_, v)| v);
    assert!(used.is_some_and(|v| v > 0.0), "{mem:?}");

    // Process metrics of the traced server, on the resource of its spans.
    let pid = i64::from(server.pid);
    let proc_metrics = agent_tests::poll_until(Duration::from_secs(30), || {
        let m = metrics(&rx.metrics_requests());
        let ours: Vec<_> = m
            .into_iter()
            .filter(|(res, _)| attr_int(res, "process.pid") == Some(pid))
            .collect();
        [
            "process.cpu.time",
            "process.memory.usage",
            "process.thread.count",
            "process.unix.file_descriptor.count",
        ]
        .iter()
        .all(|w| ours.iter().any(|(_, m)| m.name == *w))
        .then_some(ours)
    })
    .unwrap_or_else(|| {
        panic!(
            "no process metrics for pid {pid}; names: {:?}\n{}",
            rx.metric_names(),
            agent.logs_tail(30)
        )
    });
    let (res, rss) = proc_metrics
        .iter()
        .find(|(_, m)| m.name == "process.memory.usage")
        .unwrap();
    assert_eq!(attr_str(res, "service.name"), Some("rust_http_server"));
    assert!(point_values(rss)[0].1 > 1e5, "{rss:?}");
    let threads = proc_metrics
        .iter()
        .find(|(_, m)| m.name == "process.thread.count")
        .map(|(_, m)| point_values(m)[0].1)
        .unwrap();
    assert!(threads >= 1.0);

    // Every metrics request carried the header.
    let reqs: Vec<_> = rx
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("etrics"))
        .collect();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter().all(|r| r
            .headers
            .iter()
            .any(|(k, v)| k == "x-tenant" && v == "node test")),
        "{reqs:?}"
    );
    assert!(
        agent
            .counter("agent_node_metrics_exports_total")
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[test]
fn otlp_grpc_system_and_process_metrics() {
    if !require_bpf() {
        return;
    }
    check_export(Protocol::Grpc, false);
}

#[test]
fn otlp_http_gzip_system_and_process_metrics() {
    if !require_bpf() {
        return;
    }
    check_export(Protocol::HttpProtobuf, true);
}

#[test]
fn metrics_exporter_none_sends_no_metrics() {
    if !require_bpf() {
        return;
    }
    let bins = agent_tests::test_bins!();
    let rx = OtlpReceiver::start();
    let agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
            .env("OTEL_METRICS_EXPORTER", "none"),
    );
    let server = RustHttpServer::start(&bins.rust_http_server);
    curl(&["-s", "-o", "/dev/null", &server.url("/")]).assert_success();
    let pid = server.pid;
    rx.wait_for(
        |spans| spans.iter().any(|s| s.pid() == Some(pid)),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(rx.metrics_requests().is_empty(), "metrics were exported");
    // /metrics still serves the node metrics.
    assert!(agent.metrics_text().contains("node_cpu_seconds_total{"));
}
