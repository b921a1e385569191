//! PostgreSQL client (tokio-postgres) used as a real peer by the agent's
//! tests: the extended protocol as a production driver speaks it (named
//! prepared statements, Bind/Execute/Sync per query, pipelining, portals,
//! COPY, cancellation).
//!
//! `pg_client 'host=127.0.0.1 port=N user=postgres dbname=postgres' SCENARIO`
//!
//! Scenarios:
//! * `suite`: setup, a pipelined batch, errors, a portal read in pages, COPY
//!   in and out, a multi-megabyte result, a cancelled query.
//! * `late`: prepares two statements, prints `READY` and waits for a stdin
//!   line; then executes each statement `N` times (N from the line) on the
//!   same connection.
//!
//! Output (stdout): one `EXEC <kind> <detail>` line per statement the server
//! executed (the test counts them), `ERROR <sqlstate>` lines for expected
//! errors, then `DONE <n>` with the count of EXEC lines. Unexpected failures:
//! `FAIL <message>` and exit status 1.

use std::io::Write as _;

use futures_util::{SinkExt as _, StreamExt as _, TryStreamExt as _, future::join_all, pin_mut};
use tokio::io::AsyncBufReadExt as _;
use tokio_postgres::{Client, NoTls, error::SqlState};

struct Out {
    executed: usize,
}

impl Out {
    fn exec(&mut self, kind: &str, detail: impl std::fmt::Display) {
        self.executed += 1;
        println!("EXEC {kind} {detail}");
        let _ = std::io::stdout().flush();
    }
    fn error(&mut self, e: &tokio_postgres::Error) {
        // A statement that failed was executed too (it has a span).
        self.executed += 1;
        let code = e.code().map_or("none", SqlState::code);
        println!("ERROR {code}");
        let _ = std::io::stdout().flush();
    }
}

fn fail(msg: impl std::fmt::Display) -> ! {
    println!("FAIL {msg}");
    let _ = std::io::stdout().flush();
    std::process::exit(1);
}

trait OrFail<T> {
    fn or_fail(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> T {
        self.unwrap_or_else(|e| fail(format!("{what}: {e}")))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let conninfo = args
        .next()
        .unwrap_or_else(|| fail("usage: pg_client CONNINFO SCENARIO"));
    let scenario = args.next().unwrap_or_else(|| "suite".into());
    let (mut client, connection) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .or_fail("connect");
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection error: {e}");
        }
    });
    let mut out = Out { executed: 0 };
    match scenario.as_str() {
        "suite" => suite(&mut client, &mut out).await,
        "late" => late(&client, &mut out).await,
        other => fail(format!("unknown scenario {other}")),
    }
    println!("DONE {}", out.executed);
}

async fn suite(client: &mut Client, out: &mut Out) {
    // Setup through the simple protocol: one Query, two statements.
    client
        .batch_execute(
            "DROP TABLE IF EXISTS rs_items; \
             CREATE TABLE rs_items (id int PRIMARY KEY, name text NOT NULL)",
        )
        .await
        .or_fail("setup");
    out.exec("simple", "DROP TABLE");
    out.exec("simple", "CREATE TABLE");

    // Pipelined: 20 inserts in flight at once on one connection.
    let insert = client
        .prepare("INSERT INTO rs_items (id, name) VALUES ($1, $2)")
        .await
        .or_fail("prepare insert");
    let names: Vec<String> = (0..20).map(|i| format!("item-{i}")).collect();
    let shared: &Client = client;
    let futures = (0..20i32).map(|i| {
        let insert = &insert;
        let client = shared;
        let name = &names[i as usize];
        async move { client.execute(insert, &[&i, name]).await }
    });
    for r in join_all(futures).await {
        r.or_fail("pipelined insert");
        out.exec("pipelined", "INSERT");
    }

    // Errors: unique violation (extended protocol), syntax error (Parse).
    match client.execute(&insert, &[&1i32, &"dup"]).await {
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => out.error(&e),
        other => fail(format!("expected a unique violation, got {other:?}")),
    }
    match client.prepare("SELEC id FROM rs_items").await {
        // A Parse that fails executes no statement: no span expected.
        Err(e) if e.code() == Some(&SqlState::SYNTAX_ERROR) => {
            println!("ERROR {}", SqlState::SYNTAX_ERROR.code());
        }
        other => fail(format!("expected a syntax error, got {other:?}")),
    }

    // A query through an unnamed statement with a parameter.
    let rows = client
        .query(
            "SELECT id, name FROM rs_items WHERE id < $1 ORDER BY id",
            &[&5i32],
        )
        .await
        .or_fail("select");
    if rows.len() != 5 {
        fail(format!("expected 5 rows, got {}", rows.len()));
    }
    out.exec("extended", "SELECT 5");

    // A portal read 7 rows at a time inside a transaction: each Execute with
    // a row limit is one statement execution (PortalSuspended until the last
    // page, which ends with CommandComplete).
    {
        let txn = client.transaction().await.or_fail("begin");
        out.exec("simple", "BEGIN");
        let stmt = txn
            .prepare("SELECT id FROM rs_items ORDER BY id")
            .await
            .or_fail("prepare portal query");
        let portal = txn.bind(&stmt, &[]).await.or_fail("bind portal");
        loop {
            let rows = txn.query_portal(&portal, 7).await.or_fail("portal page");
            out.exec("portal", rows.len());
            if rows.len() < 7 {
                break;
            }
        }
        txn.commit().await.or_fail("commit");
        out.exec("simple", "COMMIT");
    }

    // COPY in and out.
    let sink = client
        .copy_in("COPY rs_items (id, name) FROM STDIN")
        .await
        .or_fail("copy in");
    pin_mut!(sink);
    let mut data = String::new();
    for i in 100..150 {
        data.push_str(&format!("{i}\tcopied-{i}\n"));
    }
    sink.send(bytes::Bytes::from(data))
        .await
        .or_fail("copy data");
    let n = sink.finish().await.or_fail("copy finish");
    out.exec("copy_in", n);
    let stream = client
        .copy_out("COPY (SELECT id, name FROM rs_items ORDER BY id) TO STDOUT")
        .await
        .or_fail("copy out");
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.or_fail("copy out data");
    out.exec("copy_out", chunks.len());

    // A multi-megabyte result: 4000 rows of 1000 bytes (PG_CLIENT_BIG_ROWS).
    let big_rows: i32 = std::env::var("PG_CLIENT_BIG_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let big = client
        .query(
            "SELECT g, repeat('x', 1000) FROM generate_series(1, $1) AS g",
            &[&big_rows],
        )
        .await
        .or_fail("big select");
    if big.len() != big_rows as usize {
        fail(format!("expected {big_rows} rows, got {}", big.len()));
    }
    out.exec("big", format!("SELECT {big_rows}"));

    // A cancelled query: the CancelRequest goes over its own connection.
    let token = client.cancel_token();
    let sleeper = client.simple_query("SELECT pg_sleep(30)");
    let cancel = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await
    };
    let (slept, cancelled) = tokio::join!(sleeper, cancel);
    cancelled.or_fail("cancel request");
    match slept {
        Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => out.error(&e),
        other => fail(format!("expected a cancelled query, got {other:?}")),
    }
}

async fn late(client: &Client, out: &mut Out) {
    let count = client
        .prepare("SELECT count(*) FROM pg_class WHERE relkind::text = $1")
        .await
        .or_fail("prepare count");
    let now = client.prepare("SELECT now()").await.or_fail("prepare now");
    println!("READY");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    stdin.read_line(&mut line).await.or_fail("read stdin");
    let n: usize = line.trim().parse().unwrap_or(1);
    for _ in 0..n {
        let rows = client.query(&count, &[&"r"]).await.or_fail("count");
        out.exec("late", format!("SELECT {}", rows.len()));
        let rows = client.query(&now, &[]).await.or_fail("now");
        out.exec("late", format!("SELECT {}", rows.len()));
    }
    let stream = client
        .query_raw("SELECT 1", std::iter::empty::<i32>())
        .await
        .or_fail("query_raw");
    pin_mut!(stream);
    while let Some(r) = stream.next().await {
        r.or_fail("row");
    }
    out.exec("late", "SELECT 1");
}
