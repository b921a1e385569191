//! Small HTTP/1.1 server (hyper 1) used as a real peer by the agent's tests.
//!
//! `rust_http_server [--port N]` (default 0 = any free port) on 127.0.0.1;
//! prints `LISTENING <port>` once bound. Keep-alive on. Routes, as in the
//! Python server:
//!   GET  /status/<code>  -> <code>
//!   GET  /slow?ms=N      -> 200 after N ms
//!   GET  /chunked        -> 200, chunked body (3 chunks)
//!   GET  /big?bytes=N    -> 200 with N bytes
//!   GET  anything else   -> 200 "hello from rust"
//!   POST/PUT anything    -> 200 echoing the body

use std::convert::Infallible;
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

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
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
    let resp = if let Some(code) = path.strip_prefix("/status/") {
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
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).expect("--port N"),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
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
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
