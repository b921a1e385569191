//! The result users see (issue 6): a Python web API calling an HTTP
//! service written in another language, which queries PostgreSQL, all on
//! one host and none of them instrumented, yields exactly one trace per
//! request whose tree matches the calls.
//!
//! curl → the threaded Python `http.server` (`GET /api/orders/<id>`), whose
//! handler thread calls `GET /db/orders/<id>` on the Rust hyper server
//! (`http.client`) → the Rust server (tokio current-thread runtime), whose
//! handler runs one statement on its tokio-postgres connection → the
//! PostgreSQL backend. Every request is exactly one trace of six spans with
//! the exact parents: curl's CLIENT span (root), Python's SERVER span
//! (stitched: socket pair), Python's CLIENT span (nested in the request
//! its thread handles), Rust's SERVER span (stitched), Rust's PostgreSQL
//! CLIENT span (nested: the runtime's sole request in flight), the
//! backend's SERVER span (stitched by statement order); each trace's spans
//! are of the same order id end to end. The HTTP and database duration
//! histograms count exactly the requests, on `/metrics` and over OTLP, and
//! the service graph has the three edges.
//!
//! Python calls the Rust service over one new connection per call, or (the
//! second test) over one keep-alive connection of its handler thread; the
//! two run one at a time (service-graph edges are per service name).

use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::{CURL_WRITE_OUT, curl, parse_curl_transfers};
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan, SpanKind};
use agent_tests::postgres::PostgresServer;
use agent_tests::prom;
use agent_tests::semconv::{assert_no_problems, is_harness_probe};
use agent_tests::servers::{PythonHttpServer, PythonOptions, RustHttpServer};
use agent_tests::traces::{Hop, by_trace, check_chain, otlp_histogram_count, prom_sum_for};
use agent_tests::{SETTLE, SPAN_WAIT, poll_until, test_bins};

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const API: &str = "orders-api";
const STORE: &str = "orders-store";
/// Requests, sequential, on one curl connection.
const N: usize = 20;
/// The first order id.
const FIRST_ID: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Upstream {
    /// One new connection per call.
    ConnectionPerCall,
    /// One keep-alive connection per Python handler thread.
    KeepAlive,
}

#[test]
fn python_rust_postgres_one_trace_per_request_new_connections() {
    python_rust_postgres(Upstream::ConnectionPerCall);
}

#[test]
fn python_rust_postgres_one_trace_per_request_keep_alive() {
    python_rust_postgres(Upstream::KeepAlive);
}

/// The order id at the end of a path or URL (`.../orders/<id>`).
fn order_id(s: Option<&str>) -> Option<usize> {
    s?.rsplit_once("/orders/")?.1.parse().ok()
}

fn python_rust_postgres(upstream: Upstream) {
    if !require_bpf() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let bins = test_bins!();
    let pg = PostgresServer::start();
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .env("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
    );
    // Started after the agent: the Rust server's PostgreSQL connection is
    // seen from its startup message on.
    let conninfo = pg.conninfo(STORE);
    let store = RustHttpServer::start_with(
        &bins.rust_http_server,
        &["--pg", &conninfo],
        &[("OTEL_SERVICE_NAME", STORE)],
    );
    let mut args = vec![
        "--upstream".to_string(),
        format!("127.0.0.1:{}", store.port),
    ];
    if upstream == Upstream::KeepAlive {
        args.push("--upstream-keepalive".into());
    }
    let api = PythonHttpServer::start_with(PythonOptions {
        env: vec![("OTEL_SERVICE_NAME".into(), API.into())],
        args,
        ..Default::default()
    });

    let urls: Vec<String> = (0..N)
        .map(|i| api.url(&format!("/api/orders/{}", FIRST_ID + i)))
        .collect();
    let mut curl_args: Vec<&str> = vec!["-sS", "-w", CURL_WRITE_OUT];
    curl_args.extend(urls.iter().map(String::as_str));
    let out = curl(&curl_args);
    out.assert_success();
    let transfers = parse_curl_transfers(&out.stdout);
    assert_eq!(
        transfers.iter().map(|t| t.code).collect::<Vec<_>>(),
        vec![200; N],
        "curl: {}",
        out.stdout
    );
    assert_eq!(
        transfers.iter().map(|t| t.connects).sum::<u32>(),
        1,
        "curl used one connection: {}",
        out.stdout
    );
    // Python answered what the Rust service read from PostgreSQL.
    for i in FIRST_ID..FIRST_ID + N {
        let want = format!("order {i} total_cents {}", i * 100);
        assert!(
            out.stdout.lines().any(|l| l == want),
            "no {want:?} in curl's output:\n{}",
            out.stdout
        );
    }

    let (cp, ap, sp) = ([out.pid], [api.pid], [store.pid]);
    // The spans of the requests: curl's, the two servers' (without the
    // harness's readiness probes `GET /`), the PostgreSQL backends'.
    let involved = |spans: &[ReceivedSpan]| -> Vec<ReceivedSpan> {
        spans
            .iter()
            .filter(|s| {
                let pid = s.pid();
                pid == Some(out.pid)
                    || ((pid == Some(api.pid) || pid == Some(store.pid)) && !is_harness_probe(s))
                    || (s.kind == SpanKind::Server
                        && s.attr_str("db.system.name") == Some("postgresql")
                        && s.attr_int("server.port") == Some(i64::from(pg.port)))
            })
            .cloned()
            .collect()
    };
    rx.wait_for(|spans| involved(spans).len() >= 6 * N, SPAN_WAIT);
    std::thread::sleep(SETTLE);
    let spans = involved(&rx.spans());
    let backends: Vec<u32> = pg
        .server_spans(&spans)
        .iter()
        .filter_map(ReceivedSpan::pid)
        .collect();
    let mut problems = Vec::new();
    let traces = by_trace(&spans);
    if traces.len() != N {
        problems.push(format!(
            "{} traces for {N} requests ({} spans)",
            traces.len(),
            spans.len()
        ));
    }
    let hops = [
        Hop {
            kind: SpanKind::Client,
            pids: &cp,
            what: "curl CLIENT",
        },
        Hop {
            kind: SpanKind::Server,
            pids: &ap,
            what: "python SERVER",
        },
        Hop {
            kind: SpanKind::Client,
            pids: &ap,
            what: "python CLIENT (to the Rust service)",
        },
        Hop {
            kind: SpanKind::Server,
            pids: &sp,
            what: "rust SERVER",
        },
        Hop {
            kind: SpanKind::Client,
            pids: &sp,
            what: "rust PostgreSQL CLIENT (the handler's statement)",
        },
        Hop {
            kind: SpanKind::Server,
            pids: &backends,
            what: "PostgreSQL SERVER (backend)",
        },
    ];
    let mut ids_seen = Vec::new();
    for t in traces.values() {
        let chain = check_chain(t, &hops, "");
        let whole = chain.is_empty();
        problems.extend(chain);
        if !whole {
            continue;
        }
        // One order end to end: curl's URL, Python's path, Rust's path.
        let span = |kind: SpanKind, pid: u32| {
            t.iter()
                .find(|s| s.kind == kind && s.pid() == Some(pid))
                .expect("checked chain")
        };
        let ids = [
            order_id(span(SpanKind::Client, out.pid).attr_str("url.full")),
            order_id(span(SpanKind::Server, api.pid).attr_str("url.path")),
            order_id(span(SpanKind::Client, api.pid).attr_str("url.full")),
            order_id(span(SpanKind::Server, store.pid).attr_str("url.path")),
        ];
        if ids.iter().any(|i| *i != ids[0]) || ids[0].is_none() {
            problems.push(format!(
                "one trace, several orders (curl, python server, python client, rust \
                 server): {ids:?}"
            ));
        }
        ids_seen.extend(ids[0]);
    }
    ids_seen.sort_unstable();
    if traces.len() == N && ids_seen != (FIRST_ID..FIRST_ID + N).collect::<Vec<_>>() {
        problems.push(format!("orders of the whole traces: {ids_seen:?}"));
    }

    // Names, attributes, and the rule that gave each span its parent.
    let db_statement = "SELECT $1::int4 * 100";
    const ROOT: &[&str] = &[];
    const STITCHED: &[&str] = &["socket_pair"];
    const NESTED: &[&str] = &["same_thread", "sole_request_in_flight"];
    for s in &spans {
        let pid = s.pid();
        let (name_ok, want_parent) = match s.kind {
            SpanKind::Client if pid == Some(out.pid) => (s.name == "GET", ROOT),
            SpanKind::Server if pid == Some(api.pid) => (
                s.name == "GET /api/orders/{id}"
                    && s.attr_str("http.route") == Some("/api/orders/{id}")
                    && s.attr_int("http.response.status_code") == Some(200),
                STITCHED,
            ),
            SpanKind::Client if pid == Some(api.pid) => (
                s.name == "GET"
                    && s.attr_int("server.port") == Some(i64::from(store.port))
                    && s.attr_int("http.response.status_code") == Some(200),
                NESTED,
            ),
            SpanKind::Server if pid == Some(store.pid) => (
                s.name == "GET /db/orders/{id}"
                    && s.attr_str("http.route") == Some("/db/orders/{id}")
                    && s.attr_int("http.response.status_code") == Some(200),
                STITCHED,
            ),
            SpanKind::Client if pid == Some(store.pid) => (
                s.attr_str("db.system.name") == Some("postgresql")
                    && s.attr_str("db.operation.name") == Some("SELECT")
                    && s.attr_str("db.namespace") == Some("postgres")
                    && s.attr_str("db.query.text") == Some(db_statement)
                    && s.attr_int("server.port") == Some(i64::from(pg.port)),
                NESTED,
            ),
            // The backend's.
            _ => (s.attr_str("db.operation.name") == Some("SELECT"), STITCHED),
        };
        if !name_ok {
            problems.push(format!("unexpected span {}", s.summary()));
        }
        let got = s.attr_str("agent.correlation.parent");
        let ok = match got {
            None => want_parent.is_empty(),
            Some(g) => want_parent.contains(&g),
        };
        if !ok {
            problems.push(format!(
                "{:?} {} (pid {pid:?}) agent.correlation.parent {got:?}, want one of \
                 {want_parent:?}",
                s.kind, s.name
            ));
        }
    }
    // The Python server is learnt thread-per-request after its first 8
    // requests (the readiness probe is one): its later calls nest by the
    // exact rule, the thread that read the request.
    let by_thread = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client && s.pid() == Some(api.pid))
        .filter(|s| s.attr_str("agent.correlation.parent") == Some("same_thread"))
        .count();
    if by_thread < N - 8 {
        problems.push(format!(
            "{by_thread} of Python's {N} calls nested by same_thread, want at least {}",
            N - 8
        ));
    }
    // How Python reached the Rust service: the Rust server saw one client
    // port per call, or one for all.
    let mut ports: Vec<i64> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server && s.pid() == Some(store.pid))
        .filter_map(|s| s.attr_int("client.port"))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let want_ports = match upstream {
        Upstream::ConnectionPerCall => N,
        Upstream::KeepAlive => 1,
    };
    if ports.len() != want_ports {
        problems.push(format!(
            "{} client ports of Python's calls ({upstream:?}), want {want_ports}",
            ports.len()
        ));
    }
    let backend_service = pg
        .server_spans(&spans)
        .first()
        .and_then(|s| s.service_name().map(str::to_string))
        .unwrap_or_default();

    // RED metrics on /metrics: exactly the requests.
    let count = |t: &str, m: &str, pids: &[u32], l: &[(&str, &str)]| {
        prom_sum_for(t, &format!("{m}_count"), pids, l) as usize
    };
    let text = poll_until(Duration::from_secs(10), || {
        let t = agent.metrics_text();
        (count(&t, "db_client_operation_duration_seconds", &sp, &[]) >= N
            && count(&t, "http_server_request_duration_seconds", &ap, &[]) >= N)
            .then_some(t)
    })
    .unwrap_or_else(|| agent.metrics_text());
    let api_port = api.port.to_string();
    let store_port = store.port.to_string();
    let get_200 = [
        ("http_request_method", "GET"),
        ("http_response_status_code", "200"),
    ];
    // (metric, processes, labels, what)
    type Count<'a> = (&'a str, &'a [u32], Vec<(&'a str, &'a str)>, &'a str);
    let checks: [Count<'_>; 5] = [
        (
            "http_server_request_duration_seconds",
            &ap,
            [("service_name", API), ("http_route", "/api/orders/{id}")]
                .into_iter()
                .chain(get_200)
                .collect(),
            "python server",
        ),
        (
            "http_server_request_duration_seconds",
            &sp,
            [("service_name", STORE), ("http_route", "/db/orders/{id}")]
                .into_iter()
                .chain(get_200)
                .collect(),
            "rust server",
        ),
        (
            "http_client_request_duration_seconds",
            &cp,
            [("server_port", api_port.as_str())]
                .into_iter()
                .chain(get_200)
                .collect(),
            "curl client",
        ),
        (
            "http_client_request_duration_seconds",
            &ap,
            [("service_name", API), ("server_port", store_port.as_str())]
                .into_iter()
                .chain(get_200)
                .collect(),
            "python client",
        ),
        (
            "db_client_operation_duration_seconds",
            &sp,
            vec![
                ("service_name", STORE),
                ("db_system_name", "postgresql"),
                ("db_operation_name", "SELECT"),
                ("db_namespace", "postgres"),
            ],
            "rust db client",
        ),
    ];
    for (m, pids, labels, what) in &checks {
        // The labelled series, and the process's whole metric: nothing
        // else counted (the readiness probes have route `/`).
        let got = count(&text, m, pids, labels);
        let route_free = count(&text, m, pids, &[]);
        let probes = if m.starts_with("http_server") {
            count(&text, m, pids, &[("http_route", "/")])
        } else {
            0
        };
        if got != N || route_free - probes != N {
            problems.push(format!(
                "{what}: {m}_count {got} (all series {route_free}, probes {probes}), want {N}:\n{}",
                prom::grep(&text, &format!("{m}_count"))
            ));
        }
    }
    for (c, s) in [
        ("curl", API),
        (API, STORE),
        (STORE, backend_service.as_str()),
    ] {
        let got = prom::sum_with_labels(
            &text,
            "traces_service_graph_request_total",
            &[("client", c), ("server", s)],
        )
        .unwrap_or(0.0) as usize;
        if got != N {
            problems.push(format!(
                "service graph {c} -> {s}: {got}, want {N}:\n{}",
                prom::grep(&text, "traces_service_graph_request_total")
            ));
        }
    }
    // The same histograms over OTLP (cumulative, per process resource).
    let otlp = |name: &str, pids: &[u32], labels: &[(&str, &str)]| {
        otlp_histogram_count(&rx.metrics_requests(), name, pids, labels)
    };
    let db_otlp = poll_until(Duration::from_secs(15), || {
        let c = otlp(
            "db.client.operation.duration",
            &sp,
            &[("db.operation.name", "SELECT")],
        )?;
        (c as usize >= N).then_some(c)
    });
    for (got, what) in [
        (db_otlp, "rust db.client.operation.duration"),
        (
            otlp(
                "http.server.request.duration",
                &sp,
                &[("http.route", "/db/orders/{id}")],
            ),
            "rust http.server.request.duration",
        ),
        (
            otlp(
                "http.server.request.duration",
                &ap,
                &[("http.route", "/api/orders/{id}")],
            ),
            "python http.server.request.duration",
        ),
    ] {
        if got != Some(N as u64) {
            problems.push(format!("OTLP {what} count {got:?}, want {N}"));
        }
    }
    agent.assert_alive();
    assert_no_problems(
        &format!("curl -> python -> rust -> PostgreSQL ({upstream:?})"),
        &problems,
        &spans,
    );
}
