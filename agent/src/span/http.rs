//! HTTP exchange → span, per the stable OpenTelemetry HTTP semantic
//! conventions (v1.26+ names).

use std::{fmt::Write as _, net::IpAddr, sync::Arc};

use opentelemetry::KeyValue;

use super::{
    context::{TraceParent, new_span_id, new_trace_id},
    model::{
        Correlation, ErrorKind, Facts, HTTP_METHODS, HttpFacts, SpanKind, SpanName, SpanRecord,
        SpanStatus,
    },
    redact::{Redactor, cut, strip_userinfo},
};
use crate::{
    clock::Clock,
    intern::{intern, intern_built},
    protocol::{
        ConnContext, Outcome,
        http1::{
            parser::{Head, Method},
            session::HttpExchange,
        },
    },
};

/// Longest `user_agent.original` / `url.full` exported.
const MAX_VALUE_LEN: usize = 1024;

/// Methods the conventions know; others are reported as `_OTHER`. Returns
/// the span name and the index into [`HTTP_METHODS`].
fn method_attrs(method: Option<&Method>, attrs: &mut Vec<KeyValue>) -> (&'static str, u8) {
    let index = match method {
        Some(Method::Get) => 0,
        Some(Method::Head) => 1,
        Some(Method::Post) => 2,
        Some(Method::Put) => 3,
        Some(Method::Delete) => 4,
        Some(Method::Connect) => 5,
        Some(Method::Options) => 6,
        Some(Method::Trace) => 7,
        Some(Method::Patch) => 8,
        Some(Method::Other(m)) => {
            attrs.push(KeyValue::new("http.request.method", "_OTHER"));
            attrs.push(KeyValue::new(
                "http.request.method_original",
                cut(m, 64).to_string(),
            ));
            return ("HTTP", OTHER_METHOD);
        }
        None => {
            attrs.push(KeyValue::new("http.request.method", "_OTHER"));
            return ("HTTP", OTHER_METHOD);
        }
    };
    let known = HTTP_METHODS[usize::from(index)];
    attrs.push(KeyValue::new("http.request.method", known));
    (known, index)
}

/// Index of `_OTHER` in [`HTTP_METHODS`].
const OTHER_METHOD: u8 = 9;

/// Splits a request target into (path, query, authority for absolute form).
fn split_target(target: &str) -> (&str, Option<&str>, Option<&str>) {
    let (authority, rest) = match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        Some(after_scheme) => match after_scheme.find('/') {
            Some(i) => (Some(&after_scheme[..i]), &after_scheme[i..]),
            None => (Some(after_scheme), "/"),
        },
        None => (None, target),
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    match rest.split_once('?') {
        Some((path, query)) => (path, Some(query), authority),
        None => (rest, None, authority),
    }
}

/// `host[:port]` → (host, port); IPv6 literals keep no brackets.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let authority = strip_userinfo(authority);
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (host, port);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

fn version(head: &Head) -> &'static str {
    if head.version_minor == 0 {
        "1.0"
    } else {
        "1.1"
    }
}

/// A request as far as it is known, whatever the HTTP version carried it.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: Option<&'a Method>,
    /// `:scheme` (HTTP/2); HTTP/1 is always `http` here (cleartext).
    pub scheme: Option<&'a str>,
    /// Request target (origin or absolute form, HTTP/1) or `:path`
    /// (HTTP/2). `None`: not known (an unresolved HTTP/2 header).
    pub target: Option<&'a str>,
    /// `Host` or `:authority`.
    pub authority: Option<&'a str>,
    /// Already shared by the parsers (no second lookup per span).
    pub user_agent: Option<&'a Arc<str>>,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
    /// `network.protocol.version`: `1.0`, `1.1`, `2`.
    pub version: &'static str,
}

/// One finished HTTP exchange, protocol-neutral.
#[derive(Debug, Clone, Copy)]
pub struct HttpCall<'a> {
    pub request: HttpRequest<'a>,
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// Kernel monotonic nanoseconds.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Order of the exchange on its connection.
    pub seq: u64,
    pub tid: u32,
}

/// Builds the span of one HTTP/1 exchange.
pub fn exchange_span(
    ex: &HttpExchange,
    conn: &ConnContext<'_>,
    redactor: &Redactor,
    clock: &Clock,
) -> SpanRecord {
    let req = &ex.request;
    let call = HttpCall {
        request: HttpRequest {
            method: req.method.as_ref(),
            scheme: None,
            target: Some(req.target.as_deref().unwrap_or("")),
            authority: req.host.as_deref(),
            user_agent: req.user_agent.as_ref(),
            traceparent: req.traceparent.as_deref(),
            tracestate: req.tracestate.as_deref(),
            version: version(req),
        },
        status: ex.response.as_ref().and_then(|r| r.status),
        outcome: ex.outcome,
        start_ns: ex.start_ns,
        end_ns: ex.end_ns,
        seq: ex.seq,
        tid: ex.tid,
    };
    http_span(&call, conn, redactor, clock, Vec::new())
}

/// `network.peer.*` of the connection.
pub(crate) fn peer_attrs(conn: &ConnContext<'_>, attrs: &mut Vec<KeyValue>) {
    attrs.push(KeyValue::new(
        "network.peer.address",
        Arc::clone(conn.remote_ip),
    ));
    attrs.push(KeyValue::new("network.peer.port", i64::from(conn.remote.1)));
}

/// `server.address`/`server.port` from the authority (else the socket),
/// and for server spans `client.address`/`client.port`. Returns the server
/// address and port.
pub(crate) fn endpoint_attrs(
    conn: &ConnContext<'_>,
    authority: Option<&str>,
    default_port: u16,
    attrs: &mut Vec<KeyValue>,
) -> (Arc<str>, u16) {
    let (host, port) = match authority {
        Some(a) => {
            let (h, p) = split_authority(a);
            (intern(h), p.unwrap_or(default_port))
        }
        None => match conn.kind {
            SpanKind::Server => (Arc::clone(conn.local_ip), conn.local.1),
            SpanKind::Client => (Arc::clone(conn.remote_ip), conn.remote.1),
        },
    };
    attrs.push(KeyValue::new("server.address", Arc::clone(&host)));
    attrs.push(KeyValue::new("server.port", i64::from(port)));
    if conn.kind == SpanKind::Server {
        attrs.push(KeyValue::new("client.address", Arc::clone(conn.remote_ip)));
        attrs.push(KeyValue::new("client.port", i64::from(conn.remote.1)));
    }
    (host, port)
}

/// The finished span: trace context from an incoming `traceparent` (else a
/// new trace), times, resource and correlation facts.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    conn: &ConnContext<'_>,
    clock: &Clock,
    name: SpanName,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
    (start_ns, end_ns): (u64, u64),
    (seq, tid): (u64, u32),
    attributes: Vec<KeyValue>,
    status: SpanStatus,
    facts: Facts,
) -> SpanRecord {
    let parent = traceparent.and_then(TraceParent::parse);
    let (trace_id, parent_span_id, parent_is_remote, trace_flags) = match parent {
        Some(tp) => (tp.trace_id, tp.parent_id, true, tp.flags),
        None => (new_trace_id(), [0; 8], false, 1),
    };
    let trace_state = parent.and(tracestate).map(|s| cut(s, 512).to_string());
    SpanRecord {
        trace_id,
        span_id: new_span_id(),
        parent_span_id,
        parent_is_remote,
        trace_flags,
        trace_state,
        kind: conn.kind,
        name,
        start_unix_ns: clock.unix_ns(start_ns),
        end_unix_ns: clock.unix_ns(end_ns),
        attributes,
        status,
        resource: Arc::clone(conn.resource),
        correlation: Correlation {
            netns: conn.netns,
            local: conn.local,
            remote: conn.remote,
            seq,
            seq_is_stream_id: false,
            tid,
            start_ns,
            end_ns,
        },
        facts,
    }
}

/// Builds the span of one exchange, any HTTP version. `extra` attributes
/// are appended (e.g. what HTTP/2 could not resolve).
pub fn http_span(
    call: &HttpCall<'_>,
    conn: &ConnContext<'_>,
    redactor: &Redactor,
    clock: &Clock,
    extra: Vec<KeyValue>,
) -> SpanRecord {
    let req = &call.request;
    let mut attrs = Vec::with_capacity(14 + extra.len());
    let (method, method_index) = method_attrs(req.method, &mut attrs);
    let (path, query, target_authority) = match req.target {
        Some(t) => {
            let (p, q, a) = split_target(t);
            (Some(p), q, a)
        }
        None => (None, None, None),
    };
    let authority = target_authority.or(req.authority).map(strip_userinfo);
    let scheme = match req.scheme {
        Some(s) if s.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let default_port = if scheme == "https" { 443 } else { 80 };

    attrs.push(KeyValue::new("network.protocol.version", req.version));
    peer_attrs(conn, &mut attrs);
    if let Some(ua) = req.user_agent {
        let ua = if ua.len() <= MAX_VALUE_LEN {
            Arc::clone(ua)
        } else {
            intern(cut(ua, MAX_VALUE_LEN))
        };
        attrs.push(KeyValue::new("user_agent.original", ua));
    }

    let mut server_path = None;
    match conn.kind {
        SpanKind::Server => {
            attrs.push(KeyValue::new("url.scheme", scheme));
            if let Some(path) = path {
                let path = intern(cut(path, MAX_VALUE_LEN));
                attrs.push(KeyValue::new("url.path", Arc::clone(&path)));
                server_path = Some(path);
            }
            if let Some(q) = query {
                attrs.push(KeyValue::new("url.query", redactor.query(q)));
            }
        }
        SpanKind::Client => {
            let url = intern_built(|url| {
                url.push_str(scheme);
                url.push_str("://");
                match authority {
                    Some(a) => url.push_str(a),
                    None => {
                        let _ = match conn.remote.0 {
                            IpAddr::V6(_) => write!(url, "[{}]:{}", conn.remote_ip, conn.remote.1),
                            IpAddr::V4(_) => write!(url, "{}:{}", conn.remote_ip, conn.remote.1),
                        };
                    }
                }
                url.push_str(path.unwrap_or(""));
                if let Some(q) = query {
                    url.push('?');
                    url.push_str(&redactor.query(q));
                }
                url.truncate(cut(url, MAX_VALUE_LEN).len());
            });
            attrs.push(KeyValue::new("url.full", url));
        }
    }
    let (server_address, server_port) = endpoint_attrs(conn, authority, default_port, &mut attrs);

    if let Some(code) = call.status {
        attrs.push(KeyValue::new("http.response.status_code", i64::from(code)));
    }
    let status = span_status(conn.kind, call.status, call.outcome, &mut attrs);
    let error = match transport_error(call.outcome) {
        Some(_) => error_kind(call.outcome),
        None if matches!(status, SpanStatus::Error { .. }) => ErrorKind::Status,
        None => ErrorKind::None,
    };
    attrs.extend(extra);
    let facts = Facts::Http(HttpFacts {
        method: method_index,
        status: call.status,
        version: req.version,
        https: scheme == "https",
        path: server_path,
        server_address,
        server_port,
        error,
    });
    assemble(
        conn,
        clock,
        SpanName::Static(method),
        req.traceparent,
        req.tracestate,
        (call.start_ns, call.end_ns),
        (call.seq, call.tid),
        attrs,
        status,
        facts,
    )
}

/// The [`ErrorKind`] of a transport-level failure.
pub(crate) fn error_kind(outcome: Outcome) -> ErrorKind {
    match outcome {
        Outcome::Timeout => ErrorKind::Timeout,
        Outcome::ConnectionClosed => ErrorKind::ConnectionClosed,
        Outcome::Reset => ErrorKind::Reset,
        Outcome::Complete | Outcome::Truncated => ErrorKind::None,
    }
}

/// `error.type` and description of an exchange that did not end normally.
pub(crate) fn transport_error(outcome: Outcome) -> Option<(&'static str, &'static str)> {
    match outcome {
        Outcome::Timeout => Some(("timeout", "no response before the request timeout")),
        Outcome::ConnectionClosed => Some((
            "connection_closed",
            "the connection closed before the response completed",
        )),
        Outcome::Reset => Some(("reset", "the peer reset the exchange")),
        Outcome::Complete | Outcome::Truncated => None,
    }
}

/// Span status and `error.type` per the conventions: server spans fail on
/// 5xx, client spans on 4xx and 5xx; transport-level failures name
/// themselves.
fn span_status(
    kind: SpanKind,
    status_code: Option<u16>,
    outcome: Outcome,
    attrs: &mut Vec<KeyValue>,
) -> SpanStatus {
    let transport_error = transport_error(outcome);
    if let Some((error_type, description)) = transport_error {
        attrs.push(KeyValue::new("error.type", error_type));
        return SpanStatus::Error {
            description: description.to_string(),
        };
    }
    let threshold = match kind {
        SpanKind::Server => 500,
        SpanKind::Client => 400,
    };
    match status_code {
        Some(code) if code >= threshold => {
            attrs.push(KeyValue::new("error.type", code.to_string()));
            SpanStatus::Error {
                description: String::new(),
            }
        }
        _ => SpanStatus::Unset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target("/a/b?x=1"), ("/a/b", Some("x=1"), None));
        assert_eq!(split_target("/a#frag"), ("/a", None, None));
        assert_eq!(
            split_target("http://h:8080/p?q"),
            ("/p", Some("q"), Some("h:8080"))
        );
        assert_eq!(split_target("http://h"), ("/", None, Some("h")));
        assert_eq!(split_target("*"), ("*", None, None));
    }

    #[test]
    fn authorities() {
        assert_eq!(
            split_authority("example.com:8080"),
            ("example.com", Some(8080))
        );
        assert_eq!(split_authority("example.com"), ("example.com", None));
        assert_eq!(split_authority("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_authority("u:p@h:1"), ("h", Some(1)));
        assert_eq!(split_authority("::1"), ("::1", None));
    }

    #[test]
    fn statuses() {
        let mut a = vec![];
        assert_eq!(
            span_status(SpanKind::Server, Some(404), Outcome::Complete, &mut a),
            SpanStatus::Unset
        );
        assert!(a.is_empty());
        assert!(matches!(
            span_status(SpanKind::Client, Some(404), Outcome::Complete, &mut a),
            SpanStatus::Error { .. }
        ));
        assert_eq!(a[0].value.as_str(), "404");
        let mut a = vec![];
        assert!(matches!(
            span_status(SpanKind::Server, None, Outcome::Timeout, &mut a),
            SpanStatus::Error { .. }
        ));
        assert_eq!(a[0].value.as_str(), "timeout");
    }
}
