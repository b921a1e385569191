//! A counting OTLP/gRPC trace sink for benchmarks: accepts every export,
//! keeps only counts per (service.name, span kind), and rewrites them to a
//! file every 200 ms (`service kind count` lines), so the benchmark can read
//! them without making network requests of its own.
//!
//! Usage: `otlp_sink <listen addr> <counts file>`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value,
};

type Counts = Arc<Mutex<BTreeMap<(String, i32), u64>>>;

struct Sink(Counts);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let mut counts = self.0.lock().expect("not poisoned");
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
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
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
        .add_service(TraceServiceServer::new(Sink(counts)).max_decoding_message_size(64 << 20))
        .serve(addr)
        .await
        .expect("serve");
}
