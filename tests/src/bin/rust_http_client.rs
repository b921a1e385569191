//! Small HTTP/1.1 client (hyper 1) used as a real peer by the agent's tests.
//!
//! `rust_http_client BASE_URL [--plan FILE] [--count N] [--interactive] [--user-agent UA] [REQ...]`
//!
//! All requests go over ONE keep-alive connection to BASE_URL
//! (`http://host:port`). A request is `METHOD PATH [BODY]` (one per line in
//! the plan file, or one per positional argument). Without any request it
//! does `GET /` N times (`--count`, default 1).
//!
//! Output (stdout): `CONNECTED local=<addr> peer=<addr>`, then one
//! `RESPONSE <status> <body-bytes>` per request, then — in interactive mode —
//! `READY`, after which each stdin line is one more request on the same
//! connection (EOF ends); finally `completed <n>`. On error: `ERROR <msg>` and
//! exit status 1.

use std::io::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncBufReadExt;

struct Spec {
    method: String,
    path: String,
    body: Option<String>,
}

fn parse_spec(line: &str) -> Option<Spec> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return None;
    }
    let mut it = line.splitn(3, ' ');
    let method = it.next()?.to_string();
    let path = it.next().unwrap_or("/").to_string();
    let body = it.next().map(str::to_string);
    Some(Spec { method, path, body })
}

fn fail(msg: String) -> ! {
    println!("ERROR {msg}");
    let _ = std::io::stdout().flush();
    std::process::exit(1);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut base: Option<String> = None;
    let mut plan: Vec<Spec> = Vec::new();
    let mut count: usize = 1;
    let mut interactive = false;
    let mut user_agent = String::from("agent-tests-rust-client/1.0");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--plan" => {
                let path = args.next().expect("--plan FILE");
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| fail(format!("read {path}: {e}")));
                plan.extend(text.lines().filter_map(parse_spec));
            }
            "--count" => count = args.next().and_then(|n| n.parse().ok()).expect("--count N"),
            "--interactive" => interactive = true,
            "--user-agent" => user_agent = args.next().expect("--user-agent UA"),
            _ if base.is_none() => base = Some(a),
            _ => plan.extend(parse_spec(&a)),
        }
    }
    let base = base
        .unwrap_or_else(|| fail("usage: rust_http_client BASE_URL [--plan FILE] [REQ...]".into()));
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if plan.is_empty() && !interactive {
        plan = (0..count)
            .map(|_| Spec {
                method: "GET".into(),
                path: "/".into(),
                body: None,
            })
            .collect();
    }

    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .unwrap_or_else(|e| fail(format!("connect {authority}: {e}")));
    let _ = stream.set_nodelay(true);
    println!(
        "CONNECTED local={} peer={}",
        stream
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let (mut sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .unwrap_or_else(|e| fail(format!("handshake: {e}")));
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("connection error: {e}");
        }
    });

    let mut completed = 0usize;
    let mut run = async |spec: Spec| {
        if let Err(e) = sender.ready().await {
            fail(format!("connection not ready: {e}"));
        }
        let body = spec.body.unwrap_or_default();
        let mut req = Request::builder()
            .method(spec.method.as_str())
            .uri(spec.path.as_str())
            .header("host", authority.as_str())
            .header("user-agent", user_agent.as_str());
        if !body.is_empty() {
            req = req.header("content-type", "text/plain");
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|e| fail(format!("bad request: {e}")));
        let resp = sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| fail(format!("request: {e}")));
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| fail(format!("body: {e}")))
            .to_bytes();
        println!("RESPONSE {status} {}", bytes.len());
        let _ = std::io::stdout().flush();
        completed += 1;
    };

    for spec in plan {
        run(spec).await;
    }
    if interactive {
        println!("READY");
        let _ = std::io::stdout().flush();
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(spec) = parse_spec(&line) {
                run(spec).await;
            }
        }
    }
    println!("completed {completed}");
}
