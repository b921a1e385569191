//! A counting OTLP/gRPC trace sink for benchmarks: accepts every export,
//! keeps only counts per (service.name, span kind), and rewrites them to a
//! file every 200 ms (`service kind count` lines), so the benchmark can read
//! them without making network requests of its own.
//!
//! Usage: `otlp_sink <listen addr> <counts file>`.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceResponse, common::v1::any_value, resource::v1::Resource,
};
use tonic::codec::CompressionEncoding;

type Counts = Arc<Mutex<BTreeMap<(String, i32), u64>>>;

// A benchmark sink must cost little next to the agent it measures: these
// messages decode only the resource and each span's kind, and prost skips
// every other field without allocating (a full decode of the spans cost
// ~0.4 of a core at 180k spans/s, taken from the processes under test).

/// `ExportTraceServiceRequest`, resource and span kinds only.
#[derive(Clone, PartialEq, prost::Message)]
struct LiteRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<LiteResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LiteResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<LiteScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LiteScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<LiteSpan>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LiteSpan {
    #[prost(int32, tag = "6")]
    kind: i32,
}

fn count(counts: &Counts, req: &LiteRequest) {
    let mut counts = counts.lock().expect("not poisoned");
    for rs in &req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                *counts.entry((service.clone(), span.kind)).or_default() += 1;
            }
        }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// `TraceService/Export` over tonic's server machinery, with the lite
/// request type.
#[derive(Clone)]
struct TraceSink(Counts);

impl tonic::server::NamedService for TraceSink {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

struct Export(Counts);

impl tonic::server::UnaryService<LiteRequest> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<LiteRequest>) -> Self::Future {
        count(&self.0, request.get_ref());
        Box::pin(async { Ok(tonic::Response::new(ExportTraceServiceResponse::default())) })
    }
}

impl<B> tower_service::Service<http::Request<B>> for TraceSink
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let counts = Arc::clone(&self.0);
        Box::pin(async move {
            if req.uri().path() != "/opentelemetry.proto.collector.trace.v1.TraceService/Export" {
                return Ok(tonic::Status::unimplemented("only TraceService/Export").into_http());
            }
            let codec =
                tonic_prost::ProstCodec::<ExportTraceServiceResponse, LiteRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(64 << 20);
            Ok(grpc.unary(Export(counts), req).await)
        })
    }
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        2 => "server",
        3 => "client",
        _ => "other",
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: otlp_sink <listen addr> <counts file>");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("listen address");
    let file = PathBuf::from(file);
    let counts: Counts = Arc::default();
    let writer = Arc::clone(&counts);
    tokio::spawn(async move {
        loop {
            let text: String = writer
                .lock()
                .expect("not poisoned")
                .iter()
                .map(|((service, kind), n)| format!("{service} {} {n}\n", kind_name(*kind)))
                .collect();
            let tmp = file.with_extension("tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &file);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    tonic::transport::Server::builder()
        .add_service(TraceSink(counts))
        .serve(addr)
        .await
        .expect("serve");
}
