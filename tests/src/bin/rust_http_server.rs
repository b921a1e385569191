//! Small HTTP/1.1 server (hyper 1) used as a real peer by the agent's tests.
//!
//! `rust_http_server [--port N] [--pg CONNINFO]` (default port 0 = any free
//! port) on 127.0.0.1; prints `LISTENING <port>` once bound (and, with
//! `--pg`, connected). Keep-alive on. Routes, as in the Python server:
//!   GET  /status/<code>  -> <code>
//!   GET  /slow?ms=N      -> 200 after N ms
//!   GET  /chunked        -> 200, chunked body (3 chunks)
//!   GET  /big?bytes=N    -> 200 with N bytes
//!   GET  anything else   -> 200 "hello from rust"
//!   POST/PUT anything    -> 200 echoing the body
//!   GET  /db/orders/<id> -> only with `--pg`: runs
//!                           `SELECT $1::int4 * 100` with `<id>` on the
//!                           server's one PostgreSQL connection
//!                           (tokio-postgres, connected at start) and
//!                           answers `order <id> total_cents <n>`; 400 for
//!                           an id that is no int4, 500 if the statement
//!                           fails

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

type Body = BoxBody<Bytes, Infallible>;

fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .header("server", "agent-tests-rust/1.0")
        .body(Full::new(body.into()).boxed())
        .expect("valid response")
}

fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

/// `GET /db/orders/<id>`: one statement on the server's connection.
async fn order(pg: &tokio_postgres::Client, id: &str) -> Response<Body> {
    let Ok(id) = id.parse::<i32>() else {
        return full(400, "bad order id\n");
    };
    match pg.query_one("SELECT $1::int4 * 100", &[&id]).await {
        Ok(row) => {
            let total: i32 = row.get(0);
            full(200, format!("order {id} total_cents {total}\n"))
        }
        Err(e) => full(500, format!("statement failed: {e}\n")),
    }
}

async fn handle(
    req: Request<Incoming>,
    pg: Option<Arc<tokio_postgres::Client>>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    if method == Method::POST || method == Method::PUT || method == Method::PATCH {
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(full(400, "bad body\n")),
        };
        return Ok(full(200, body));
    }
    let resp = if let (Some(pg), Some(id)) = (&pg, path.strip_prefix("/db/orders/")) {
        order(pg, id).await
    } else if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(400);
        match StatusCode::from_u16(code) {
            Ok(_) => full(code, format!("status {code}\n")),
            Err(_) => full(400, "bad status\n"),
        }
    } else if path == "/slow" {
        let ms: u64 = query_param(query.as_deref(), "ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        full(200, format!("slow {ms}\n"))
    } else if path == "/chunked" {
        let chunks: Vec<Result<Frame<Bytes>, Infallible>> =
            ["chunk-one\n", "chunk-two\n", "chunk-three\n"]
                .into_iter()
                .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
                .collect();
        Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(BodyExt::boxed(StreamBody::new(stream::iter(chunks))))
            .expect("valid response")
    } else if path == "/big" {
        let n: usize = query_param(query.as_deref(), "bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        full(200, vec![b'x'; n])
    } else {
        full(200, "hello from rust\n")
    };
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut port: u16 = 0;
    let mut conninfo = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).expect("--port N"),
            "--pg" => conninfo = Some(args.next().expect("--pg CONNINFO")),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let pg = match conninfo {
        Some(conninfo) => {
            let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .expect("connect to PostgreSQL");
            // Driven on this (the only) thread, like the connections.
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("PostgreSQL connection: {e}");
                }
            });
            Some(Arc::new(client))
        }
        None => None,
    };
    println!("LISTENING {}", listener.local_addr().expect("addr").port());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let pg = pg.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, pg.clone()));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
