//! A tokio-postgres connection opened and its statements prepared BEFORE
//! the agent starts, then executed after: every Execute still yields a
//! CLIENT and a SERVER span (the backend's socket is first seen in a data
//! syscall, with role Unknown: the role comes from who reads the frontend
//! messages), marked as having unknown text — no `db.query.text`, the
//! statement name, `db.postgresql.query_text.unknown = true`, the operation
//! from CommandComplete. A statement prepared after the agent started is
//! known again.

use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan};
use agent_tests::postgres::{PgClient, PostgresServer, count_by_name};
use agent_tests::semconv::assert_no_problems;
use agent_tests::{SETTLE, SPAN_WAIT};

const ROUNDS: usize = 3;

fn check(spans: &[ReceivedSpan], side: &str, problems: &mut Vec<String>) {
    let want = 2 * ROUNDS + 1;
    if spans.len() != want {
        problems.push(format!(
            "{side}: {} spans, want {want}: {:?}",
            spans.len(),
            count_by_name(spans)
        ));
        return;
    }
    for (i, s) in spans.iter().enumerate() {
        let last = i == want - 1;
        let mut bad = |ok: bool, what: String| {
            if !ok {
                problems.push(format!("{side} span {i}: {what}"));
            }
        };
        bad(s.name == "SELECT", format!("name {:?}", s.name));
        bad(
            s.attr_str("db.operation.name") == Some("SELECT"),
            "db.operation.name".into(),
        );
        bad(
            s.attr_int("db.response.returned_rows") == Some(1),
            "returned_rows".into(),
        );
        if last {
            bad(
                s.attr_str("db.query.text") == Some("SELECT ?"),
                format!("text {:?}", s.attr_str("db.query.text")),
            );
            bad(
                s.attr_bool("db.postgresql.query_text.unknown").is_none(),
                "marked unknown".into(),
            );
        } else {
            bad(s.attr_str("db.query.text").is_none(), "has a text".into());
            bad(
                s.attr_bool("db.postgresql.query_text.unknown") == Some(true),
                "not marked unknown".into(),
            );
            let want_name = if i % 2 == 0 { "s0" } else { "s1" };
            bad(
                s.attr_str("db.postgresql.statement.name") == Some(want_name),
                format!(
                    "statement name {:?}",
                    s.attr_str("db.postgresql.statement.name")
                ),
            );
        }
        bad(
            s.attr_str("server.address") == Some("127.0.0.1"),
            "server.address".into(),
        );
    }
}

#[test]
fn statements_prepared_before_the_agent_started() {
    if !require_bpf() {
        return;
    }
    let pg = PostgresServer::start();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_pg_client"));
    let mut client = PgClient::start(&bin, &pg.conninfo("pg_client_late"), "late", &[]);
    client.wait_line(|l| l == "READY", Duration::from_secs(30));

    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));
    std::thread::sleep(Duration::from_millis(200));
    client.send_line(&ROUNDS.to_string());
    let pid = client.pid;
    let executed = client.finish(Duration::from_secs(60));
    let n = 2 * ROUNDS + 1;
    assert_eq!(executed, n);

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
    for s in &servers {
        if s.service_name() != Some("postgres") {
            problems.push(format!("SERVER span from {:?}", s.service_name()));
        }
    }
    let mut involved = clients.clone();
    involved.extend(servers.iter().cloned());
    assert_no_problems("connection prepared before the agent", &problems, &involved);

    agent.assert_ready();
    let metrics = agent.metrics_text();
    let unknown = agent_tests::prom::sum_with_labels(
        &metrics,
        "agent_postgres_events_total",
        &[("event", "unknown_statement")],
    );
    assert!(
        unknown.is_some_and(|v| v >= (2 * 2 * ROUNDS) as f64),
        "unknown statements: {unknown:?}"
    );
}
