//! OTLP/gRPC: the encoded request sent as is through a tonic channel
//! (`TraceService/Export`), the response decoded with the
//! `opentelemetry-proto` types.

use bytes::{Buf as _, BufMut as _, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use tonic::{
    Code, Request, Status,
    client::Grpc,
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Channel, ClientTlsConfig, Endpoint},
};

use super::Sent;
use crate::{
    config::{OtlpCompression, OtlpConfig},
    export::ExportError,
};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

pub struct GrpcClient {
    grpc: Grpc<Channel>,
    metadata: MetadataMap,
}

impl GrpcClient {
    pub fn new(cfg: &OtlpConfig) -> Result<Self, ExportError> {
        let url = cfg.traces_endpoint.clone();
        let bad = |e: &dyn std::fmt::Display| ExportError::Build(format!("endpoint {url:?}: {e}"));
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| bad(&e))?
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("agent/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| bad(&e))?;
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(|e| bad(&e))?;
        }
        let mut grpc = Grpc::new(endpoint.connect_lazy());
        if cfg.compression == OtlpCompression::Gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        grpc = grpc.accept_compressed(CompressionEncoding::Gzip);
        let mut metadata = MetadataMap::new();
        for (k, v) in &cfg.headers {
            let key = MetadataKey::from_bytes(k.as_bytes())
                .map_err(|e| ExportError::Build(format!("header {k:?}: {e}")))?;
            let value = MetadataValue::try_from(v.as_str())
                .map_err(|e| ExportError::Build(format!("header {k:?}: {e}")))?;
            metadata.insert(key, value);
        }
        Ok(Self { grpc, metadata })
    }

    pub async fn send(&mut self, body: &Bytes) -> Sent {
        if let Err(e) = self.grpc.ready().await {
            return Sent::Retryable(format!("connecting: {e}"));
        }
        let mut request = Request::new(body.clone());
        *request.metadata_mut() = self.metadata.clone();
        let result = self
            .grpc
            .unary(request, PathAndQuery::from_static(EXPORT_PATH), ExportCodec)
            .await;
        match result {
            Ok(response) => {
                let partial = response.into_inner().partial_success.unwrap_or_default();
                Sent::Accepted {
                    rejected: partial.rejected_spans.max(0) as u64,
                    message: partial.error_message,
                }
            }
            Err(status) => classify(&status),
        }
    }
}

/// Retryable codes per the OTLP specification (RESOURCE_EXHAUSTED too:
/// collectors use it for a full queue).
fn classify(status: &Status) -> Sent {
    let text = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss
        | Code::ResourceExhausted
        | Code::Unknown => Sent::Retryable(text),
        _ => Sent::Permanent(text),
    }
}

/// Sends pre-encoded bytes, decodes the OTLP response.
#[derive(Clone, Copy, Default)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ResponseDecoder
    }
}

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let len = src.remaining();
        ExportTraceServiceResponse::decode(src.copy_to_bytes(len))
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable OTLP response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes() {
        assert!(matches!(
            classify(&Status::unavailable("x")),
            Sent::Retryable(_)
        ));
        assert!(matches!(
            classify(&Status::resource_exhausted("x")),
            Sent::Retryable(_)
        ));
        assert!(matches!(
            classify(&Status::invalid_argument("x")),
            Sent::Permanent(_)
        ));
        assert!(matches!(
            classify(&Status::unauthenticated("x")),
            Sent::Permanent(_)
        ));
    }
}
