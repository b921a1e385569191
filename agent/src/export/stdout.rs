//! Spans printed one per line, for `cargo xtask run` and a curl in another
//! terminal.

use std::io::Write as _;

use opentelemetry::Value;

use crate::span::{SpanKind, SpanRecord, SpanStatus, context::hex};

#[derive(Default)]
pub struct StdoutSink;

impl StdoutSink {
    pub fn print(&mut self, batch: &[&SpanRecord]) {
        let mut out = std::io::stdout().lock();
        for span in batch {
            let _ = writeln!(out, "{}", format_span(span));
        }
        let _ = out.flush();
    }
}

fn value(v: &Value) -> String {
    match v {
        Value::String(s) => s.as_str().to_string(),
        other => other.to_string(),
    }
}

/// `2026-01-01T00:00:00.000Z SERVER GET /p -> 200 1.234ms python3[42] ...`
pub fn format_span(span: &SpanRecord) -> String {
    let kind = match span.kind {
        SpanKind::Server => "SERVER",
        SpanKind::Client => "CLIENT",
    };
    let time = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(span.start_unix_ns),
    );
    let target = span
        .attr("url.path")
        .or_else(|| span.attr("url.full"))
        .or_else(|| span.attr("db.namespace"))
        .map(value)
        .unwrap_or_default();
    let status = span
        .attr("http.response.status_code")
        .map(value)
        .or_else(|| span.attr("error.type").map(value))
        .or_else(|| {
            span.attr("db.response.returned_rows")
                .map(|r| format!("{} rows", value(r)))
        })
        .unwrap_or_else(|| "-".to_string());
    let error = match &span.status {
        SpanStatus::Error { .. } => " ERROR",
        SpanStatus::Unset => "",
    };
    let mut line = format!(
        "{time} {kind} {} {target} -> {status}{error} {:.3}ms {}[{}] trace={} span={}",
        span.name,
        span.duration_ns() as f64 / 1e6,
        span.resource.info.service_name,
        span.resource.info.pid,
        hex(&span.trace_id),
        hex(&span.span_id),
    );
    if span.parent_span_id != [0; 8] {
        line.push_str(&format!(" parent={}", hex(&span.parent_span_id)));
    }
    for kv in &span.attributes {
        let k = kv.key.as_str();
        if k == "url.path" || k == "url.full" || k == "http.response.status_code" {
            continue;
        }
        line.push_str(&format!(" {k}={}", value(&kv.value)));
    }
    line
}
