//! pgbench → a private PostgreSQL 15 in the three query modes and in
//! pipeline mode: one CLIENT span (pgbench) and one SERVER span (backend)
//! per statement, `-M simple` (literals sanitized), `-M extended` (unnamed
//! statements), `-M prepared` (named statements prepared once per
//! connection), and `\startpipeline` (three Executes before one Sync).

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan, StatusCode};
use agent_tests::postgres::{PostgresServer, count_by_name};
use agent_tests::semconv::assert_no_problems;
use agent_tests::{SETTLE, SPAN_WAIT, unix_now_ns};

const CLIENTS: usize = 2;
const TRANSACTIONS: usize = 25;
const PIPELINES: usize = 10;

const PIPELINE_SCRIPT: &str = "\\set aid random(1, 100000)
\\startpipeline
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid + 1;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
\\endpipeline
";

struct Run {
    name: &'static str,
    pid: u32,
    from_ns: u64,
    to_ns: u64,
}

/// Pause between runs, so that their windows are well apart.
const BETWEEN_RUNS: std::time::Duration = std::time::Duration::from_millis(400);

/// Spans inside a run's wall-clock window, with a margin (well below
/// [`BETWEEN_RUNS`]) for the monotonic-to-wall conversion.
fn in_window(spans: &[ReceivedSpan], r: &Run) -> Vec<ReceivedSpan> {
    const MARGIN_NS: u64 = 50_000_000;
    spans
        .iter()
        .filter(|s| s.start_ns + MARGIN_NS >= r.from_ns && s.end_ns <= r.to_ns + MARGIN_NS)
        .cloned()
        .collect()
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[test]
fn pgbench_simple_extended_prepared_and_pipelined() {
    if !require_bpf() {
        return;
    }
    let pg = PostgresServer::start();
    let (init, _) = pg.pgbench(&["-i", "-s", "1", "-q"]);
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let script = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(script.path(), PIPELINE_SCRIPT).expect("write script");

    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));

    let c = CLIENTS.to_string();
    let t = TRANSACTIONS.to_string();
    let mut runs = Vec::new();
    for mode in ["simple", "extended", "prepared"] {
        std::thread::sleep(BETWEEN_RUNS);
        let from_ns = unix_now_ns();
        let (out, pid) = pg.pgbench(&["-n", "-S", "-M", mode, "-c", &c, "-j", "1", "-t", &t]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && text.contains(&format!("processed: {}/", CLIENTS * TRANSACTIONS)),
            "pgbench -M {mode}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        runs.push(Run {
            name: mode,
            pid,
            from_ns,
            to_ns: unix_now_ns(),
        });
    }
    std::thread::sleep(BETWEEN_RUNS);
    let from_ns = unix_now_ns();
    let script_path = script.path().to_str().expect("utf-8 path");
    let (out, pid) = pg.pgbench(&[
        "-n",
        "-M",
        "extended",
        "-f",
        script_path,
        "-t",
        &PIPELINES.to_string(),
    ]);
    assert!(
        out.status.success(),
        "pgbench pipeline: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    runs.push(Run {
        name: "pipeline",
        pid,
        from_ns,
        to_ns: unix_now_ns(),
    });

    let selects = CLIENTS * TRANSACTIONS;
    rx.try_wait_for(
        |s| {
            runs.iter().all(|r| {
                let want = if r.name == "pipeline" {
                    2 * PIPELINES
                } else {
                    selects
                };
                named(&pg.client_spans(s, r.pid), "SELECT pgbench_accounts").len() >= want
            })
        },
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    let all = rx.spans();
    let servers = pg.server_spans(&all);
    let mut problems = Vec::new();
    let mut involved = Vec::new();
    for r in &runs {
        let clients = pg.client_spans(&all, r.pid);
        let server = in_window(&servers, r);
        let (want_select, want_update) = if r.name == "pipeline" {
            (2 * PIPELINES, PIPELINES)
        } else {
            (selects, 0)
        };
        for (side, spans) in [("CLIENT", &clients), ("SERVER", &server)] {
            let sel = named(spans, "SELECT pgbench_accounts");
            let upd = named(spans, "UPDATE pgbench_accounts");
            if sel.len() != want_select || upd.len() != want_update {
                problems.push(format!(
                    "{} {side}: {} SELECT / {} UPDATE spans, want {want_select} / {want_update}: {:?}",
                    r.name,
                    sel.len(),
                    upd.len(),
                    count_by_name(spans)
                ));
            }
            let want_text = match r.name {
                "simple" => "SELECT abalance FROM pgbench_accounts WHERE aid = ?",
                _ => "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            };
            for s in sel.iter().chain(&upd) {
                if s.status_code == StatusCode::Error {
                    problems.push(format!("{} {side}: error span {}", r.name, s.summary()));
                }
                if s.attr_str("db.operation.name") != s.name.split(' ').next() {
                    problems.push(format!(
                        "{} {side}: operation {:?}",
                        r.name,
                        s.attr_str("db.operation.name")
                    ));
                }
                let text = s.attr_str("db.query.text");
                if s.name.starts_with("SELECT") && !text.is_some_and(|t| t.starts_with(want_text)) {
                    problems.push(format!("{} {side}: text {text:?}", r.name));
                }
                if s.name == "SELECT pgbench_accounts"
                    && s.attr_int("db.response.returned_rows") != Some(1)
                {
                    problems.push(format!(
                        "{} {side}: rows {:?}",
                        r.name,
                        s.attr_int("db.response.returned_rows")
                    ));
                }
                if s.attr_str("db.namespace") != Some("postgres") {
                    problems.push(format!(
                        "{} {side}: namespace {:?}",
                        r.name,
                        s.attr_str("db.namespace")
                    ));
                }
            }
            if side == "CLIENT" && clients.iter().any(|s| s.service_name() != Some("pgbench")) {
                problems.push(format!("{}: client span not from pgbench", r.name));
            }
        }
        involved.extend(clients.into_iter().take(4));
    }
    assert_no_problems("pgbench → PostgreSQL", &problems, &involved);
    agent.assert_ready();
}
