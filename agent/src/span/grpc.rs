//! gRPC call → span, per the OpenTelemetry RPC semantic conventions
//! (release candidate names: `rpc.system.name`, a fully-qualified
//! `rpc.method`, `rpc.response.status_code` as the status name).
//!
//! The span name is the method (`package.Service/Method`), or `grpc` when
//! the method is not known (an HPACK entry the agent never saw). Server
//! spans fail on UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
//! UNAVAILABLE and DATA_LOSS; client spans on every status but OK. A stream
//! reset without a status gets the status gRPC derives from the HTTP/2
//! error code (CANCEL → CANCELLED, REFUSED_STREAM → UNAVAILABLE, ...).

use std::{borrow::Cow, sync::Arc};

use opentelemetry::KeyValue;

use super::{
    http::{assemble, endpoint_attrs, error_kind, peer_attrs, transport_error},
    model::{ErrorKind, Facts, RpcFacts, SpanKind, SpanName, SpanRecord, SpanStatus},
    redact::cut,
};
use crate::{
    clock::Clock,
    intern::intern,
    protocol::{ConnContext, Outcome, http2::session::H2Exchange},
};

/// Longest `rpc.method` exported.
const MAX_METHOD_LEN: usize = 256;

/// Attribute naming how many header fields HPACK could not resolve (the
/// agent joined the connection after those entries were inserted).
pub const UNRESOLVED_ATTR: &str = "agent.hpack.unresolved_fields";

/// gRPC status code names (grpc/doc/statuscodes.md).
pub fn status_name(code: u32) -> Cow<'static, str> {
    Cow::Borrowed(match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        other => return Cow::Owned(other.to_string()),
    })
}

/// The status a gRPC client reports for a stream reset with this HTTP/2
/// error code (gRPC's PROTOCOL-HTTP2 mapping).
pub fn status_of_reset(h2_code: u32) -> u32 {
    match h2_code {
        0x7 => 14, // REFUSED_STREAM → UNAVAILABLE
        0x8 => 1,  // CANCEL → CANCELLED
        0xb => 8,  // ENHANCE_YOUR_CALM → RESOURCE_EXHAUSTED
        0xc => 7,  // INADEQUATE_SECURITY → PERMISSION_DENIED
        _ => 13,   // everything else → INTERNAL
    }
}

/// Whether `code` makes a span of `kind` an error.
pub fn is_error(kind: SpanKind, code: u32) -> bool {
    match kind {
        SpanKind::Client => code != 0,
        SpanKind::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
    }
}

/// HTTP/2 error code names (RFC 9113 §7).
pub fn h2_error_name(code: u32) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "unknown error code",
    }
}

/// `/package.Service/Method` → `package.Service/Method` when well formed.
fn method_of(path: &str) -> Option<&str> {
    let m = path.strip_prefix('/')?;
    let (service, method) = m.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some(m)
}

/// Builds the span of one gRPC call.
pub fn grpc_span(ex: &H2Exchange, conn: &ConnContext<'_>, clock: &Clock) -> SpanRecord {
    let req = &ex.request;
    let mut attrs = Vec::with_capacity(16);
    attrs.push(KeyValue::new("rpc.system.name", "grpc"));
    let method = req
        .path
        .as_deref()
        .and_then(method_of)
        .map(|m| cut(m, MAX_METHOD_LEN));
    let mut method_value = None;
    let name = match method {
        Some(m) => {
            let value = intern(m);
            attrs.push(KeyValue::new("rpc.method", Arc::clone(&value)));
            method_value = Some(Arc::clone(&value));
            SpanName::Shared(value)
        }
        None => {
            attrs.push(KeyValue::new("rpc.method", "_OTHER"));
            if let Some(p) = &req.path {
                attrs.push(KeyValue::new(
                    "rpc.method_original",
                    cut(p, MAX_METHOD_LEN).to_string(),
                ));
            }
            SpanName::Static("grpc")
        }
    };
    attrs.push(KeyValue::new("network.protocol.name", "http"));
    attrs.push(KeyValue::new("network.protocol.version", "2"));
    attrs.push(KeyValue::new("network.transport", "tcp"));
    peer_attrs(conn, &mut attrs);
    let (server_address, server_port) =
        endpoint_attrs(conn, req.authority.as_deref(), 80, &mut attrs);
    attrs.push(KeyValue::new(
        "http.request.body.size",
        ex.request_body_bytes as i64,
    ));
    if ex.response.is_some() {
        attrs.push(KeyValue::new(
            "http.response.body.size",
            ex.response_body_bytes as i64,
        ));
    }

    // The status: from grpc-status; for a reset stream without one, what
    // the client derives from the HTTP/2 error code.
    let code = ex.grpc_status.or(match (ex.outcome, ex.reset_code) {
        (Outcome::Reset, Some(c)) => Some(status_of_reset(c)),
        _ => None,
    });
    let mut status = SpanStatus::Unset;
    let mut error = ErrorKind::None;
    if let Some(code) = code {
        attrs.push(KeyValue::new("rpc.response.status_code", status_name(code)));
        if is_error(conn.kind, code) {
            error = ErrorKind::Status;
            attrs.push(KeyValue::new("error.type", status_name(code)));
            status = SpanStatus::Error {
                description: match (ex.outcome, ex.reset_code) {
                    (Outcome::Reset, Some(c)) => {
                        format!("stream reset ({})", h2_error_name(c))
                    }
                    _ => String::new(),
                },
            };
        }
    } else if let Some((error_type, description)) = transport_error(ex.outcome) {
        error = error_kind(ex.outcome);
        attrs.push(KeyValue::new("error.type", error_type));
        status = SpanStatus::Error {
            description: description.to_string(),
        };
    }
    if ex.unresolved > 0 {
        attrs.push(KeyValue::new(UNRESOLVED_ATTR, i64::from(ex.unresolved)));
    }
    assemble(
        conn,
        clock,
        name,
        req.traceparent.as_deref(),
        req.tracestate.as_deref(),
        (ex.start_ns, ex.end_ns),
        // The stream id: the same at both ends of the connection.
        (u64::from(ex.stream_id), ex.tid),
        attrs,
        status,
        Facts::Rpc(RpcFacts {
            method: method_value,
            status: code,
            server_address,
            server_port,
            error,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        assert_eq!(method_of("/echo.Echo/Unary"), Some("echo.Echo/Unary"));
        assert_eq!(method_of("/Echo/X"), Some("Echo/X"));
        assert_eq!(method_of("/"), None);
        assert_eq!(method_of("/a/b/c"), None);
        assert_eq!(method_of("x/y"), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(status_name(4), "DEADLINE_EXCEEDED");
        assert_eq!(status_name(99), "99");
        assert!(is_error(SpanKind::Client, 5));
        assert!(!is_error(SpanKind::Server, 5));
        assert!(is_error(SpanKind::Server, 13));
        assert!(!is_error(SpanKind::Server, 1));
        assert_eq!(status_of_reset(0x8), 1);
        assert_eq!(status_of_reset(0x2), 13);
    }
}
