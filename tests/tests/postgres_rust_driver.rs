//! tokio-postgres (the `pg_client` binary) → a private PostgreSQL 15: named
//! prepared statements, 20 pipelined INSERTs, a unique violation, a failed
//! Parse (no statement), a portal read 7 rows at a time (PortalSuspended),
//! COPY in/out through the extended protocol, a 4 MB result and a query
//! cancelled through a CancelRequest. Spans equal the statements executed,
//! on both sides.

use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan, StatusCode};
use agent_tests::postgres::{PgClient, PostgresServer, count_by_name};
use agent_tests::semconv::assert_no_problems;
use agent_tests::{SETTLE, SPAN_WAIT};

/// (name, operation, rows, error, suspended) of a statement.
type Expected = (
    &'static str,
    Option<&'static str>,
    i64,
    Option<&'static str>,
    bool,
);

/// Each statement, in order.
fn expected() -> Vec<Expected> {
    let mut v = vec![
        ("DROP TABLE rs_items", Some("DROP TABLE"), 0, None, false),
        (
            "CREATE TABLE rs_items",
            Some("CREATE TABLE"),
            0,
            None,
            false,
        ),
    ];
    v.extend(std::iter::repeat_n(
        ("INSERT rs_items", Some("INSERT"), 0, None, false),
        20,
    ));
    v.extend([
        ("INSERT rs_items", None, 0, Some("23505"), false),
        ("SELECT rs_items", Some("SELECT"), 5, None, false),
        (
            "START TRANSACTION",
            Some("START TRANSACTION"),
            0,
            None,
            false,
        ),
        ("SELECT rs_items", None, 7, None, true),
        ("SELECT rs_items", None, 7, None, true),
        ("SELECT rs_items", Some("SELECT"), 6, None, false),
        ("COMMIT", Some("COMMIT"), 0, None, false),
        ("COPY rs_items", Some("COPY"), 0, None, false),
        ("COPY SELECT rs_items", Some("COPY"), 70, None, false),
        ("SELECT", Some("SELECT"), 4000, None, false),
        ("SELECT", None, 0, Some("57014"), false),
    ]);
    v
}

fn check(spans: &[ReceivedSpan], side: &str, problems: &mut Vec<String>) {
    let want = expected();
    if spans.len() != want.len() {
        problems.push(format!(
            "{side}: {} spans, want {}: {:?}",
            spans.len(),
            want.len(),
            count_by_name(spans)
        ));
        return;
    }
    for (i, (s, (name, op, rows, err, suspended))) in spans.iter().zip(want).enumerate() {
        let mut bad = |ok: bool, what: String| {
            if !ok {
                problems.push(format!("{side} span {i} ({name}): {what}"));
            }
        };
        bad(s.name == name, format!("name {:?}", s.name));
        bad(
            s.attr_str("db.operation.name") == op,
            format!("operation {:?}", s.attr_str("db.operation.name")),
        );
        bad(
            s.attr_int("db.response.returned_rows") == Some(rows),
            format!("rows {:?}", s.attr_int("db.response.returned_rows")),
        );
        bad(
            s.attr_str("error.type") == err,
            format!("error.type {:?}", s.attr_str("error.type")),
        );
        bad(
            (s.status_code == StatusCode::Error) == err.is_some(),
            format!("status {:?}", s.status_code),
        );
        bad(
            s.attr_bool("db.postgresql.portal.suspended") == suspended.then_some(true),
            "portal.suspended".into(),
        );
        bad(
            s.attr_str("db.namespace") == Some("postgres"),
            "db.namespace".into(),
        );
        bad(
            s.attr_str("db.postgresql.application_name") == Some("pg_client"),
            "application_name".into(),
        );
    }
}

#[test]
fn tokio_postgres_extended_protocol() {
    if !require_bpf() {
        return;
    }
    let pg = PostgresServer::start();
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));

    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_pg_client"));
    let client = PgClient::start(&bin, &pg.conninfo("pg_client"), "suite", &[]);
    let pid = client.pid;
    let executed = client.finish(Duration::from_secs(120));
    let n = expected().len();
    assert_eq!(executed, n, "pg_client's own count of statements");

    rx.try_wait_for(
        |s| pg.client_spans(s, pid).len() >= n && pg.server_spans(s).len() >= n,
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    let all = rx.spans();
    let mut clients = pg.client_spans(&all, pid);
    let mut servers = pg.server_spans(&all);
    clients.sort_by_key(|s| s.start_ns);
    servers.sort_by_key(|s| s.start_ns);
    let mut problems = Vec::new();
    check(&clients, "CLIENT", &mut problems);
    check(&servers, "SERVER", &mut problems);
    // Parameterized texts are exported as sent, with their placeholders.
    if !clients.iter().any(|s| {
        s.attr_str("db.query.text") == Some("INSERT INTO rs_items (id, name) VALUES ($1, $2)")
    }) {
        problems.push("the parameterized INSERT text is missing".into());
    }
    let mut involved = clients.clone();
    involved.extend(servers.iter().cloned());
    assert_no_problems("tokio-postgres → PostgreSQL", &problems, &involved);

    agent.assert_ready();
    let metrics = agent.metrics_text();
    let cancels = agent_tests::prom::sum_with_labels(
        &metrics,
        "agent_postgres_events_total",
        &[("event", "cancel_request")],
    );
    // The CancelRequest is read by a new backend and sent by pg_client.
    assert!(
        cancels.is_some_and(|v| v >= 2.0),
        "cancel requests: {cancels:?}"
    );
}
