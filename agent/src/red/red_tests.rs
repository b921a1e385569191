//! RED recorder: series per typed key, labels, routes, caps and overflow,
//! the exposition and the OTLP form.

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use opentelemetry::KeyValue;

use super::*;
use crate::{
    node::{expo::Exposition, scrape::ExtraFamilies},
    resource::{ProcessInfo, ProcessResource},
    span::{
        SpanStatus,
        model::{Correlation, DbFacts, HttpFacts, RpcFacts},
    },
};

pub fn resource(pid: u32, name: &str) -> Arc<ProcessResource> {
    let mut r = ProcessResource::for_tests(vec![
        KeyValue::new("service.name", name.to_string()),
        KeyValue::new("process.pid", i64::from(pid)),
        KeyValue::new("host.name", "node-1"),
    ]);
    r.info = ProcessInfo::fallback(pid, name);
    Arc::new(r)
}

pub fn span(res: &Arc<ProcessResource>, kind: SpanKind, facts: Facts, ms: u64) -> SpanRecord {
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    SpanRecord {
        trace_id: crate::span::context::new_trace_id(),
        span_id: crate::span::context::new_span_id(),
        parent_span_id: [0; 8],
        parent_is_remote: false,
        trace_flags: 1,
        trace_state: None,
        kind,
        name: "GET".into(),
        start_unix_ns: 1_000,
        end_unix_ns: 1_000 + ms * 1_000_000,
        attributes: Vec::new(),
        status: SpanStatus::Unset,
        resource: Arc::clone(res),
        correlation: Correlation {
            netns: 1,
            local: (lo, 80),
            remote: (lo, 40_000),
            seq: 0,
            seq_is_stream_id: false,
            tid: 1,
            start_ns: 1_000,
            end_ns: 1_000 + ms * 1_000_000,
        },
        facts,
    }
}

pub fn http(path: &str, status: u16) -> Facts {
    Facts::Http(HttpFacts {
        method: 0,
        status: Some(status),
        version: "1.1",
        https: false,
        path: Some(Arc::from(path)),
        server_address: Arc::from("127.0.0.1"),
        server_port: 80,
        error: if status >= 500 {
            ErrorKind::Status
        } else {
            ErrorKind::None
        },
    })
}

fn page(shared: &RedShared) -> String {
    let mut out = Exposition::new();
    shared.prometheus(&mut out);
    out.into_string()
}

#[test]
fn server_requests_by_route_method_status() {
    let shared = RedShared::new();
    let mut rec = RedRecorder::new(Arc::clone(&shared), RedLimits::default());
    let web = resource(100, "web");
    for (path, status, ms) in [
        ("/users/1", 200, 3),
        ("/users/2", 200, 30),
        ("/users/3", 500, 2),
        ("/", 200, 1),
    ] {
        let mut s = span(&web, SpanKind::Server, http(path, status), ms);
        rec.record(&mut s);
        if path.starts_with("/users") {
            assert_eq!(s.name, "GET /users/{id}");
            assert_eq!(
                s.attr("http.route").map(|v| v.as_str().into_owned()),
                Some("/users/{id}".to_string())
            );
        }
    }
    assert_eq!(rec.series_count(Metric::HttpServer), 3);
    let text = page(&shared);
    let ok = r#"http_server_request_duration_seconds_count{service_name="web",service_instance_id="node-1:100",http_request_method="GET",url_scheme="http",network_protocol_name="http",network_protocol_version="1.1",http_response_status_code="200",http_route="/users/{id}"} 2"#;
    assert!(text.contains(ok), "{text}");
    let err = r#"http_response_status_code="500",http_route="/users/{id}",error_type="500"} 1"#;
    assert!(text.contains(err), "{text}");
    // Cumulative buckets: 3 ms and 30 ms are under 0.05 s, only 3 ms under 0.005.
    assert!(
        text.contains(r#"http_route="/users/{id}",le="0.005"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_route="/users/{id}",le="0.05"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_route="/users/{id}",le="+Inf"} 2"#),
        "{text}"
    );
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"));
    assert!(text.contains(r#"agent_red_measurements_total{metric="http_server"} 4"#));
}

#[test]
fn client_rpc_and_db_series() {
    let shared = RedShared::new();
    let mut rec = RedRecorder::new(Arc::clone(&shared), RedLimits::default());
    let app = resource(7, "app");
    let mut c = span(&app, SpanKind::Client, http("/x", 404), 5);
    if let Facts::Http(f) = &mut c.facts {
        f.path = None;
        f.error = ErrorKind::Status;
    }
    rec.record(&mut c);
    let mut r = span(
        &app,
        SpanKind::Client,
        Facts::Rpc(RpcFacts {
            method: Some(Arc::from("echo.Echo/Unary")),
            status: Some(5),
            server_address: Arc::from("10.0.0.9"),
            server_port: 50051,
            error: ErrorKind::Status,
        }),
        5,
    );
    rec.record(&mut r);
    let mut d = span(
        &app,
        SpanKind::Client,
        Facts::Db(DbFacts {
            namespace: Some(Arc::from("shop")),
            operation: Some(Cow::Borrowed("SELECT")),
            summary: Some(Arc::from("SELECT users")),
            status_code: None,
            server_address: Arc::from("127.0.0.1"),
            server_port: 5432,
            error: ErrorKind::None,
        }),
        2,
    );
    rec.record(&mut d);
    let text = page(&shared);
    assert!(
        text.contains(r#"http_response_status_code="404",server_address="127.0.0.1",server_port="80",error_type="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rpc_system_name="grpc",rpc_method="echo.Echo/Unary",rpc_response_status_code="NOT_FOUND",server_address="10.0.0.9",server_port="50051",error_type="NOT_FOUND"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"db_system_name="postgresql",db_namespace="shop",db_operation_name="SELECT",db_query_summary="SELECT users",server_address="127.0.0.1",server_port="5432"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"db_client_operation_duration_seconds_bucket{"#));
    assert!(text.contains(r#"le="0.001"}"#), "db buckets start at 1 ms");
    // OTLP: one resource, three metrics, cumulative histograms.
    let otlp = shared.otlp(2_000);
    assert_eq!(otlp.len(), 1);
    let mut names: Vec<&str> = otlp[0].1.iter().map(|m| m.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "db.client.operation.duration",
            "http.client.request.duration",
            "rpc.client.call.duration"
        ]
    );
    for m in &otlp[0].1 {
        assert_eq!(m.unit, "s");
        let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Histogram(h)) = &m.data
        else {
            panic!("histogram")
        };
        assert_eq!(h.aggregation_temporality, 2, "cumulative");
        assert_eq!(h.data_points[0].count, 1);
    }
}

#[test]
fn series_cap_goes_to_the_overflow_series() {
    let shared = RedShared::new();
    let mut rec = RedRecorder::new(
        Arc::clone(&shared),
        RedLimits {
            max_series: 3,
            max_routes: 1000,
        },
    );
    let web = resource(100, "web");
    for i in 0..10 {
        let mut s = span(&web, SpanKind::Server, http(&format!("/p{i}"), 200), 1);
        rec.record(&mut s);
    }
    assert_eq!(rec.series_count(Metric::HttpServer), 3);
    let text = page(&shared);
    assert!(
        text.contains(r#"http_server_request_duration_seconds_count{service_name="web",service_instance_id="node-1:100",otel_metric_overflow="true"} 7"#),
        "{text}"
    );
    assert!(text.contains(r#"agent_red_series_overflow_total{metric="http_server"} 7"#));
    // A known series still counts as itself.
    let mut s = span(&web, SpanKind::Server, http("/p0", 200), 1);
    rec.record(&mut s);
    assert!(page(&shared).contains(r#"http_route="/p0"} 2"#));
}

#[test]
fn route_cap_per_service() {
    let shared = RedShared::new();
    let mut rec = RedRecorder::new(
        Arc::clone(&shared),
        RedLimits {
            max_series: 1000,
            max_routes: 2,
        },
    );
    let web = resource(100, "web");
    let mut names = Vec::new();
    for p in ["/a", "/b", "/c", "/d"] {
        let mut s = span(&web, SpanKind::Server, http(p, 200), 1);
        rec.record(&mut s);
        names.push(s.name.to_string());
    }
    assert_eq!(
        names,
        ["GET /a", "GET /b", "GET /{overflow}", "GET /{overflow}"]
    );
    assert!(page(&shared).contains("agent_http_route_overflow_total 2"));
}

#[test]
fn process_exit_removes_its_series() {
    let shared = RedShared::new();
    let mut rec = RedRecorder::new(Arc::clone(&shared), RedLimits::default());
    let a = resource(1, "a");
    let b = resource(2, "b");
    for r in [&a, &b] {
        let mut s = span(r, SpanKind::Server, http("/", 200), 1);
        rec.record(&mut s);
    }
    rec.forget_process(a.key);
    assert_eq!(rec.series_count(Metric::HttpServer), 1);
    let text = page(&shared);
    assert!(!text.contains(r#"service_name="a""#));
    assert!(text.contains(r#"service_name="b""#));
}

#[test]
fn service_graph_edges() {
    let shared = RedShared::new();
    let mut rec = RedRecorder::new(Arc::clone(&shared), RedLimits::default());
    let front = resource(1, "front");
    let back = resource(2, "back");
    let c = span(&front, SpanKind::Client, http("/", 200), 10);
    let mut s = span(&back, SpanKind::Server, http("/", 500), 8);
    s.status = SpanStatus::Error {
        description: String::new(),
    };
    rec.edge_pair(&c, &s);
    rec.edge_pair(&c, &span(&back, SpanKind::Server, http("/", 200), 8));
    rec.edge_virtual(&c);
    let text = page(&shared);
    assert!(
        text.contains(r#"traces_service_graph_request_total{client="front",server="back"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"traces_service_graph_request_failed_total{client="front",server="back"} 1"#
        )
    );
    assert!(text.contains(
        r#"traces_service_graph_request_total{client="front",server="127.0.0.1",connection_type="virtual_node"} 1"#
    ));
    assert!(text.contains(
        r#"traces_service_graph_request_server_seconds_count{client="front",server="back"} 2"#
    ));
    let m = shared.graph_otlp(5);
    assert_eq!(m.len(), 4);
}
