//! psql → a private PostgreSQL 15 over TCP loopback (simple protocol):
//! DDL, DML, one Query holding three statements, a syntax error, a unique
//! violation, COPY FROM STDIN and TO STDOUT, a NOTICE, a 5 MB result. One
//! CLIENT span (psql) and one SERVER span (the backend process) per
//! statement executed, with the database conventions' attributes.

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan, StatusCode};
use agent_tests::postgres::{PostgresServer, count_by_name};
use agent_tests::semconv::assert_no_problems;
use agent_tests::{SETTLE, SPAN_WAIT, TestClock};

const SCRIPT: &str = "\
CREATE TABLE users (id int PRIMARY KEY, name text);
INSERT INTO users VALUES (1, 'alice'), (2, 'bob');
SELECT name FROM users WHERE id = 1 \\; SELECT count(*) FROM users \\; SELECT 'a;b' AS x;
SELEC 1;
INSERT INTO users VALUES (1, 'again');
COPY users FROM STDIN;
3\tcarol
4\tdave
\\.
COPY users TO STDOUT;
DROP TABLE IF EXISTS nope;
\\o /dev/null
SELECT repeat('x', 1000) FROM generate_series(1, 5000);
\\o
SELECT 42;
";

/// (span name, db.operation.name, returned rows, SQLSTATE error) per statement.
const EXPECTED: &[(&str, Option<&str>, i64, Option<&str>)] = &[
    ("CREATE TABLE users", Some("CREATE TABLE"), 0, None),
    ("INSERT users", Some("INSERT"), 0, None),
    ("SELECT users", Some("SELECT"), 1, None),
    ("SELECT users", Some("SELECT"), 1, None),
    ("SELECT", Some("SELECT"), 1, None),
    ("SELEC", None, 0, Some("42601")),
    ("INSERT users", None, 0, Some("23505")),
    ("COPY users", Some("COPY"), 0, None),
    ("COPY users", Some("COPY"), 4, None),
    ("DROP TABLE nope", Some("DROP TABLE"), 0, None),
    ("SELECT", Some("SELECT"), 5000, None),
    ("SELECT", Some("SELECT"), 1, None),
];

fn check(spans: &[ReceivedSpan], side: &str, pg: &PostgresServer, problems: &mut Vec<String>) {
    if spans.len() != EXPECTED.len() {
        problems.push(format!(
            "{side}: {} spans, want {}: {:?}",
            spans.len(),
            EXPECTED.len(),
            count_by_name(spans)
        ));
        return;
    }
    for (i, (s, (name, op, rows, err))) in spans.iter().zip(EXPECTED).enumerate() {
        let ctx = format!("{side} span {i} ({name})");
        let mut want = |ok: bool, what: String| {
            if !ok {
                problems.push(format!("{ctx}: {what}"));
            }
        };
        want(s.name == *name, format!("name {:?}", s.name));
        want(
            s.attr_str("db.system.name") == Some("postgresql"),
            "db.system.name".into(),
        );
        want(
            s.attr_str("db.namespace") == Some("postgres"),
            "db.namespace".into(),
        );
        want(
            s.attr_str("db.operation.name") == *op,
            format!("db.operation.name {:?}", s.attr_str("db.operation.name")),
        );
        want(
            s.attr_int("db.response.returned_rows") == Some(*rows),
            format!(
                "returned_rows {:?}",
                s.attr_int("db.response.returned_rows")
            ),
        );
        want(
            s.attr_str("db.response.status_code") == *err,
            format!("status_code {:?}", s.attr_str("db.response.status_code")),
        );
        want(
            s.attr_str("error.type") == *err,
            format!("error.type {:?}", s.attr_str("error.type")),
        );
        let is_error = s.status_code == StatusCode::Error;
        want(
            is_error == err.is_some(),
            format!("status {:?}", s.status_code),
        );
        want(
            s.attr_str("db.query.summary").is_some_and(|q| q == *name),
            "db.query.summary".into(),
        );
        want(
            s.attr_str("db.query.text").is_some(),
            "db.query.text".into(),
        );
        want(
            s.attr_str("server.address") == Some("127.0.0.1"),
            "server.address".into(),
        );
        want(
            s.attr_int("server.port") == Some(i64::from(pg.port)),
            "server.port".into(),
        );
        want(
            s.attr_str("network.peer.address") == Some("127.0.0.1"),
            "network.peer.address".into(),
        );
        want(
            s.attr_int("network.peer.port").is_some(),
            "network.peer.port".into(),
        );
        want(
            s.attr_str("db.postgresql.user") == Some("postgres"),
            "db.postgresql.user".into(),
        );
        want(
            s.attr_str("db.postgresql.application_name") == Some("agent-tests-psql"),
            "application_name".into(),
        );
        want(s.end_ns >= s.start_ns, "end before start".into());
    }
    // Literals never leave the host by default.
    for s in spans {
        for (k, v) in s.all_values() {
            if v.contains("alice") || v.contains("again") || v.contains("a;b") {
                problems.push(format!("{side}: literal in {k}={v}"));
            }
        }
    }
    let texts: Vec<&str> = spans
        .iter()
        .filter_map(|s| s.attr_str("db.query.text"))
        .collect();
    if !texts.contains(&"INSERT INTO users VALUES (?, ?), (?, ?)") {
        problems.push(format!("{side}: sanitized INSERT text missing: {texts:?}"));
    }
}

#[test]
fn psql_simple_protocol_statements() {
    if !require_bpf() {
        return;
    }
    let pg = PostgresServer::start();
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));
    let clock = TestClock::start();

    let (out, psql_pid) = pg.psql(&["-v", "ON_ERROR_STOP=0"], SCRIPT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("4\tdave"),
        "COPY TO output missing:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("syntax error") && stderr.contains("duplicate key"),
        "{stderr}"
    );

    let n = EXPECTED.len();
    rx.try_wait_for(
        |s| pg.server_spans(s).len() >= n && pg.client_spans(s, psql_pid).len() >= n,
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    let all = rx.spans();
    let mut servers = pg.server_spans(&all);
    let mut clients = pg.client_spans(&all, psql_pid);
    servers.sort_by_key(|s| s.start_ns);
    clients.sort_by_key(|s| s.start_ns);
    let mut problems = Vec::new();
    check(&clients, "CLIENT", &pg, &mut problems);
    check(&servers, "SERVER", &pg, &mut problems);
    for s in servers.iter().chain(&clients) {
        if s.start_ns < clock.start_unix_ns {
            problems.push(format!("{} starts before the test", s.name));
        }
    }
    // The server side belongs to the backend process, not the postmaster.
    for s in &servers {
        if s.pid() == Some(pg.pid) || s.service_name() != Some("postgres") {
            problems.push(format!(
                "SERVER span {} from pid {:?} service {:?}",
                s.name,
                s.pid(),
                s.service_name()
            ));
        }
    }
    for s in &clients {
        if s.service_name() != Some("psql") {
            problems.push(format!("CLIENT span service {:?}", s.service_name()));
        }
    }
    // Client spans enclose their server spans.
    for (c, s) in clients.iter().zip(&servers) {
        problems.extend(agent_tests::semconv::check_nesting(c, s, &c.name));
    }
    let mut involved = servers.clone();
    involved.extend(clients.iter().cloned());
    assert_no_problems("psql → PostgreSQL", &problems, &involved);

    agent.assert_ready();
    let metrics = agent.metrics_text();
    let refused = agent_tests::prom::sum_with_labels(
        &metrics,
        "agent_postgres_events_total",
        &[("event", "ssl_refused")],
    );
    assert!(
        refused.is_some_and(|v| v >= 1.0),
        "psql's SSLRequest answered N: {metrics}"
    );
}
