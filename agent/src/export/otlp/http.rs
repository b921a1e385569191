//! OTLP/HTTP with binary protobuf: the encoded request POSTed to the traces
//! URL (optionally gzip-compressed), the response decoded with the
//! `opentelemetry-proto` types.

use std::io::Write as _;

use bytes::Bytes;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use reqwest::{
    StatusCode,
    header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};

use super::Sent;
use crate::{
    config::{OtlpCompression, OtlpConfig},
    export::ExportError,
};

pub struct HttpClient {
    client: reqwest::Client,
    url: String,
    gzip: bool,
}

impl HttpClient {
    pub fn new(cfg: &OtlpConfig) -> Result<Self, ExportError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ExportError::Build(format!("header {k:?}: {e}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|e| ExportError::Build(format!("header {k:?}: {e}")))?;
            headers.insert(name, value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let gzip = cfg.compression == OtlpCompression::Gzip;
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        reqwest::Url::parse(&cfg.traces_endpoint)
            .map_err(|e| ExportError::Build(format!("endpoint {:?}: {e}", cfg.traces_endpoint)))?;
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExportError::Build(e.to_string()))?;
        Ok(Self {
            client,
            url: cfg.traces_endpoint.clone(),
            gzip,
        })
    }

    pub async fn send(&mut self, body: &Bytes) -> Sent {
        let body = if self.gzip {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            match z.write_all(body).and_then(|()| z.finish()) {
                Ok(b) => Bytes::from(b),
                Err(e) => return Sent::Permanent(format!("gzip: {e}")),
            }
        } else {
            body.clone()
        };
        let response = match self.client.post(&self.url).body(body).send().await {
            Ok(r) => r,
            Err(e) => return Sent::Retryable(error_chain(&e)),
        };
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            let partial = ExportTraceServiceResponse::decode(bytes)
                .ok()
                .and_then(|r| r.partial_success)
                .unwrap_or_default();
            return Sent::Accepted {
                rejected: partial.rejected_spans.max(0) as u64,
                message: partial.error_message,
            };
        }
        let text = format!("HTTP {status}");
        if retryable(status) {
            Sent::Retryable(text)
        } else {
            Sent::Permanent(text)
        }
    }
}

/// Retryable statuses per the OTLP/HTTP specification.
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for code in [429, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 403, 404, 500] {
            assert!(!retryable(StatusCode::from_u16(code).unwrap()));
        }
    }
}
