//! gRPC echo server and client (tonic, HTTP/2 cleartext) used as a real
//! peer by the agent's tests and the `cargo xtask bench grpc` benchmark.
//! No codegen: one hand-written prost message and tonic's `Grpc` codec.
//!
//! `grpc_echo server [--port N]` on 127.0.0.1, prints `LISTENING <port>`.
//! Methods of service `echo.Echo` (the Python server in `grpc_echo.py`
//! has the same):
//!   Unary         echoes the message
//!   ServerStream  answers with 3 copies
//!   ClientStream  answers with the last message and the count in `n`
//!   Bidi          echoes every message
//!   Fail          fails with NOT_FOUND ("no such thing")
//!   Query         (with `--pg CONNINFO`) runs `SELECT $1::int4 + 1` with
//!                 the message's `n` on the server's PostgreSQL connection
//!                 (tokio-postgres) and answers the result in `n`; a
//!                 negative-looking `n` (>= 2^31) divides by zero: INTERNAL
//! and every other method is UNIMPLEMENTED (tonic's default).
//!
//! `grpc_echo client --addr HOST:PORT [PLAN...]` runs plan steps on ONE
//! connection, then prints `DONE <calls> <failures>`; with no plan it reads
//! steps from stdin, one per line, answering `OK <calls> <failures>` after
//! each (so a test can keep the connection open). Steps:
//!   unary N | server_stream N | client_stream N | bidi N | fail N |
//!   missing N | query N | concurrent N (N unary calls at once) | sleep MS
//!
//! `grpc_echo load --addr HOST:PORT --concurrency C --seconds S
//! [--connections K]` runs unary calls at maximum rate and prints
//! `LOAD <calls> <errors> <seconds>`.

use std::convert::Infallible;
use std::io::{BufRead as _, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::{self, Stream, StreamExt as _};
use tonic::codegen::{BoxFuture, Context, Poll, Service};
use tonic::server::{
    ClientStreamingService, Grpc, NamedService, ServerStreamingService, StreamingService,
    UnaryService,
};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoMsg {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub n: u32,
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<EchoMsg, Status>> + Send + 'static>>;

struct Unary;
impl UnaryService<EchoMsg> for Unary {
    type Response = EchoMsg;
    type Future = BoxFuture<Response<EchoMsg>, Status>;
    fn call(&mut self, req: Request<EchoMsg>) -> Self::Future {
        Box::pin(async move { Ok(Response::new(req.into_inner())) })
    }
}

struct Fail;
impl UnaryService<EchoMsg> for Fail {
    type Response = EchoMsg;
    type Future = BoxFuture<Response<EchoMsg>, Status>;
    fn call(&mut self, _req: Request<EchoMsg>) -> Self::Future {
        Box::pin(async move { Err(Status::new(Code::NotFound, "no such thing")) })
    }
}

struct ServerStream;
impl ServerStreamingService<EchoMsg> for ServerStream {
    type Response = EchoMsg;
    type ResponseStream = MsgStream;
    type Future = BoxFuture<Response<MsgStream>, Status>;
    fn call(&mut self, req: Request<EchoMsg>) -> Self::Future {
        let m = req.into_inner();
        Box::pin(async move {
            let items: Vec<Result<EchoMsg, Status>> = (0..3).map(|_| Ok(m.clone())).collect();
            Ok(Response::new(
                Box::pin(tokio_stream::iter(items)) as MsgStream
            ))
        })
    }
}

struct ClientStream;
impl ClientStreamingService<EchoMsg> for ClientStream {
    type Response = EchoMsg;
    type Future = BoxFuture<Response<EchoMsg>, Status>;
    fn call(&mut self, req: Request<Streaming<EchoMsg>>) -> Self::Future {
        Box::pin(async move {
            let mut s = req.into_inner();
            let mut last = EchoMsg::default();
            let mut n = 0;
            while let Some(m) = s.next().await {
                last = m?;
                n += 1;
            }
            last.n = n;
            Ok(Response::new(last))
        })
    }
}

struct Bidi;
impl StreamingService<EchoMsg> for Bidi {
    type Response = EchoMsg;
    type ResponseStream = MsgStream;
    type Future = BoxFuture<Response<MsgStream>, Status>;
    fn call(&mut self, req: Request<Streaming<EchoMsg>>) -> Self::Future {
        Box::pin(async move {
            let s = req.into_inner();
            Ok(Response::new(Box::pin(s) as MsgStream))
        })
    }
}

/// `echo.Echo/Query`: one statement on the server's PostgreSQL connection.
struct Query(Arc<tokio_postgres::Client>);
impl UnaryService<EchoMsg> for Query {
    type Response = EchoMsg;
    type Future = BoxFuture<Response<EchoMsg>, Status>;
    fn call(&mut self, req: Request<EchoMsg>) -> Self::Future {
        let pg = Arc::clone(&self.0);
        Box::pin(async move {
            let n = req.into_inner().n;
            let sql = if n >= 1 << 31 {
                "SELECT $1::int4 / 0"
            } else {
                "SELECT $1::int4 + 1"
            };
            let row = pg
                .query_one(sql, &[&((n & 0x7fff_ffff) as i32)])
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            let v: i32 = row.get(0);
            Ok(Response::new(EchoMsg {
                payload: Vec::new(),
                n: v as u32,
            }))
        })
    }
}

/// The `echo.Echo` service, routed by path as tonic's codegen would.
#[derive(Clone)]
struct EchoServer {
    pg: Option<Arc<tokio_postgres::Client>>,
}

impl NamedService for EchoServer {
    const NAME: &'static str = "echo.Echo";
}

impl<B> Service<http::Request<B>> for EchoServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let pg = self.pg.clone();
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<EchoMsg, EchoMsg>::default());
            Ok(match path.as_str() {
                "/echo.Echo/Unary" => grpc.unary(Unary, req).await,
                "/echo.Echo/Fail" => grpc.unary(Fail, req).await,
                "/echo.Echo/ServerStream" => grpc.server_streaming(ServerStream, req).await,
                "/echo.Echo/ClientStream" => grpc.client_streaming(ClientStream, req).await,
                "/echo.Echo/Bidi" => grpc.streaming(Bidi, req).await,
                "/echo.Echo/Query" if pg.is_some() => {
                    let pg = pg.expect("checked");
                    grpc.unary(Query(pg), req).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

async fn server(args: &[String]) {
    let port: u16 = arg(args, "--port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let pg = match arg(args, "--pg") {
        Some(conninfo) => {
            let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
                .await
                .expect("connect to PostgreSQL");
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("PostgreSQL connection: {e}");
                }
            });
            Some(Arc::new(client))
        }
        None => None,
    };
    println!("LISTENING {port}");
    let _ = std::io::stdout().flush();
    let incoming = tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener);
    Server::builder()
        .add_service(EchoServer { pg })
        .serve_with_incoming(incoming)
        .await
        .expect("serve");
}

type Client = tonic::client::Grpc<Channel>;

fn msg(i: usize) -> EchoMsg {
    EchoMsg {
        payload: format!("hello {i}").into_bytes(),
        n: 0,
    }
}

async fn unary(c: &mut Client, path: &'static str, i: usize) -> Result<(), Status> {
    c.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    c.unary(
        Request::new(msg(i)),
        PathAndQuery::from_static(path),
        ProstCodec::default(),
    )
    .await
    .map(|_: Response<EchoMsg>| ())
}

/// Runs one step; returns (calls, failures).
async fn step(c: &mut Client, line: &str) -> (u64, u64) {
    let mut parts = line.split_whitespace();
    let what = parts.next().unwrap_or("");
    let n: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let mut calls = 0;
    let mut failures = 0;
    let mut count = |r: Result<(), Status>| {
        calls += 1;
        if r.is_err() {
            failures += 1;
        }
    };
    match what {
        "unary" => {
            for i in 0..n {
                count(unary(c, "/echo.Echo/Unary", i).await);
            }
        }
        "fail" => {
            for i in 0..n {
                count(unary(c, "/echo.Echo/Fail", i).await);
            }
        }
        "missing" => {
            for i in 0..n {
                count(unary(c, "/echo.Echo/Missing", i).await);
            }
        }
        "query" | "query_fail" => {
            for i in 0..n {
                let mut m = msg(i);
                m.n = if what == "query" { i as u32 } else { 1 << 31 };
                let r = async {
                    c.ready()
                        .await
                        .map_err(|e| Status::unknown(e.to_string()))?;
                    c.unary(
                        Request::new(m),
                        PathAndQuery::from_static("/echo.Echo/Query"),
                        ProstCodec::<EchoMsg, EchoMsg>::default(),
                    )
                    .await
                    .map(|_: Response<EchoMsg>| ())
                }
                .await;
                count(r);
            }
        }
        "server_stream" => {
            for i in 0..n {
                let r = async {
                    c.ready()
                        .await
                        .map_err(|e| Status::unknown(e.to_string()))?;
                    let mut s = c
                        .server_streaming(
                            Request::new(msg(i)),
                            PathAndQuery::from_static("/echo.Echo/ServerStream"),
                            ProstCodec::<EchoMsg, EchoMsg>::default(),
                        )
                        .await?
                        .into_inner();
                    while s.message().await?.is_some() {}
                    Ok(())
                }
                .await;
                count(r);
            }
        }
        "client_stream" => {
            for i in 0..n {
                let r = async {
                    c.ready()
                        .await
                        .map_err(|e| Status::unknown(e.to_string()))?;
                    let out = tokio_stream::iter((0..3).map(move |j| msg(i * 10 + j)));
                    c.client_streaming(
                        Request::new(out),
                        PathAndQuery::from_static("/echo.Echo/ClientStream"),
                        ProstCodec::<EchoMsg, EchoMsg>::default(),
                    )
                    .await
                    .map(|_| ())
                }
                .await;
                count(r);
            }
        }
        "bidi" => {
            for i in 0..n {
                let r = async {
                    c.ready()
                        .await
                        .map_err(|e| Status::unknown(e.to_string()))?;
                    let out = tokio_stream::iter((0..3).map(move |j| msg(i * 10 + j)));
                    let mut s = c
                        .streaming(
                            Request::new(out),
                            PathAndQuery::from_static("/echo.Echo/Bidi"),
                            ProstCodec::<EchoMsg, EchoMsg>::default(),
                        )
                        .await?
                        .into_inner();
                    while s.message().await?.is_some() {}
                    Ok(())
                }
                .await;
                count(r);
            }
        }
        "concurrent" => {
            let mut tasks = Vec::new();
            for i in 0..n {
                let mut c = c.clone();
                tasks.push(tokio::spawn(async move {
                    unary(&mut c, "/echo.Echo/Unary", i).await
                }));
            }
            for t in tasks {
                count(
                    t.await
                        .unwrap_or_else(|e| Err(Status::unknown(e.to_string()))),
                );
            }
        }
        "sleep" => tokio::time::sleep(Duration::from_millis(n as u64)).await,
        "" => {}
        other => {
            eprintln!("unknown step {other:?}");
            failures += 1;
        }
    }
    (calls, failures)
}

async fn connect(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

async fn client(args: &[String]) {
    let addr = arg(args, "--addr").expect("--addr HOST:PORT");
    let plan: Vec<String> = args
        .iter()
        .skip_while(|a| *a != "--addr")
        .skip(2)
        .cloned()
        .collect();
    let mut c = tonic::client::Grpc::new(connect(addr).await);
    let (mut calls, mut failures) = (0, 0);
    if plan.is_empty() {
        println!("CONNECTED");
        let _ = std::io::stdout().flush();
        let stdin = std::io::stdin();
        let mut line = String::new();
        while {
            line.clear();
            stdin.lock().read_line(&mut line).unwrap_or(0) > 0
        } {
            if line.trim() == "quit" {
                break;
            }
            let (a, b) = step(&mut c, line.trim()).await;
            calls += a;
            failures += b;
            println!("OK {calls} {failures}");
            let _ = std::io::stdout().flush();
        }
    } else {
        for s in plan.join(" ").split(',') {
            let (a, b) = step(&mut c, s.trim()).await;
            calls += a;
            failures += b;
        }
    }
    println!("DONE {calls} {failures}");
}

async fn load(args: &[String]) {
    let addr = arg(args, "--addr").expect("--addr HOST:PORT");
    let concurrency: usize = arg(args, "--concurrency")
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let connections: usize = arg(args, "--connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let seconds: f64 = arg(args, "--seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let mut channels = Vec::new();
    for _ in 0..connections.max(1) {
        channels.push(connect(addr).await);
    }
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut c = tonic::client::Grpc::new(channels[i % channels.len()].clone());
        let (calls, errors) = (Arc::clone(&calls), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let mut j = 0;
            while Instant::now() < deadline {
                match unary(&mut c, "/echo.Echo/Unary", j).await {
                    Ok(()) => calls.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                j += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "LOAD {} {} {elapsed:.3}",
        calls.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("server") => rt.block_on(server(&args[1..])),
        Some("client") => rt.block_on(client(&args[1..])),
        Some("load") => rt.block_on(load(&args[1..])),
        _ => {
            eprintln!("usage: grpc_echo server|client|load ...");
            std::process::exit(2);
        }
    }
}
