//! Database statement → span, per the stable OpenTelemetry database
//! conventions (PostgreSQL).
//!
//! Name: `{db.query.summary}`, else `{db.operation.name}` (no collection is
//! known without parsing), else `postgresql`. Attributes:
//! `db.system.name`, `db.namespace` (the database of the StartupMessage; the
//! schema is not known without a query of its own), `db.query.text`
//! (sanitized unless `postgres.sanitize_queries: false`; parameterized
//! Parse texts are exported as they are, as the conventions say),
//! `db.query.summary`, `db.operation.name` (the CommandComplete tag — the
//! server's own word, never parsed from the text), `db.response.status_code`
//! (SQLSTATE of an error, or of a warning), `error.type` (the SQLSTATE, or
//! `timeout` / `connection_closed`), `db.response.returned_rows`,
//! `server.*`, `network.peer.*`, and `client.*` on SERVER spans. Agent
//! specific, under `db.postgresql.*`: the user and application name of the
//! connection, and for a statement prepared before the agent saw it the
//! statement / portal name with `db.postgresql.query_text.unknown = true`.

use std::{borrow::Cow, sync::Arc};

use opentelemetry::KeyValue;

use super::{
    context::{new_span_id, new_trace_id},
    model::{Correlation, DbFacts, ErrorKind, Facts, SpanKind, SpanName, SpanRecord, SpanStatus},
};
use crate::{
    clock::Clock,
    protocol::{
        ConnContext, Outcome,
        postgres::session::{ConnInfo, PgStatement, StatementText},
    },
};

/// Longest status description exported.
const MAX_DESCRIPTION: usize = 256;

/// Builds the span of one executed statement.
pub fn statement_span(
    st: &PgStatement,
    info: &ConnInfo,
    conn: &ConnContext<'_>,
    clock: &Clock,
    sanitize: bool,
) -> SpanRecord {
    let mut attrs = Vec::with_capacity(16);
    attrs.push(KeyValue::new("db.system.name", "postgresql"));
    if let Some(db) = &info.database {
        attrs.push(KeyValue::new("db.namespace", Arc::clone(db)));
    }
    let mut summary_value = None;
    match &st.text {
        StatementText::Known(q) => {
            attrs.push(KeyValue::new("db.query.text", Arc::clone(&q.text)));
            if let Some(s) = &q.summary {
                attrs.push(KeyValue::new("db.query.summary", Arc::clone(s)));
                summary_value = Some(Arc::clone(s));
            }
            if q.truncated {
                attrs.push(KeyValue::new("db.postgresql.query_text.truncated", true));
            }
        }
        StatementText::Unknown { statement, portal } => {
            attrs.push(KeyValue::new("db.postgresql.query_text.unknown", true));
            if let Some(s) = statement {
                attrs.push(KeyValue::new("db.postgresql.statement.name", s.clone()));
            }
            if let Some(p) = portal {
                attrs.push(KeyValue::new("db.postgresql.portal.name", p.clone()));
            }
        }
    }
    let mut operation = None;
    if let Some(op) = &st.operation {
        attrs.push(KeyValue::new(
            "db.operation.name",
            operation_value(op.clone()),
        ));
        operation = Some(op.clone());
    }
    if let Some(rows) = st.rows {
        attrs.push(KeyValue::new(
            "db.response.returned_rows",
            i64::try_from(rows).unwrap_or(i64::MAX),
        ));
    }
    if st.suspended {
        attrs.push(KeyValue::new("db.postgresql.portal.suspended", true));
    }
    if let Some(user) = &info.user {
        attrs.push(KeyValue::new("db.postgresql.user", Arc::clone(user)));
    }
    if let Some(app) = info.application_name.as_ref().filter(|a| !a.is_empty()) {
        attrs.push(KeyValue::new(
            "db.postgresql.application_name",
            Arc::clone(app),
        ));
    }
    let (server_ip, server_port) = match conn.kind {
        SpanKind::Client => (Arc::clone(conn.remote_ip), conn.remote.1),
        SpanKind::Server => (Arc::clone(conn.local_ip), conn.local.1),
    };
    attrs.push(KeyValue::new("server.address", Arc::clone(&server_ip)));
    attrs.push(KeyValue::new("server.port", i64::from(server_port)));
    attrs.push(KeyValue::new(
        "network.peer.address",
        Arc::clone(conn.remote_ip),
    ));
    attrs.push(KeyValue::new("network.peer.port", i64::from(conn.remote.1)));
    if conn.kind == SpanKind::Server {
        attrs.push(KeyValue::new("client.address", Arc::clone(conn.remote_ip)));
        attrs.push(KeyValue::new("client.port", i64::from(conn.remote.1)));
    }
    let status = status(st, sanitize, &mut attrs);
    let error = match st.outcome {
        Outcome::Timeout => ErrorKind::Timeout,
        Outcome::ConnectionClosed => ErrorKind::ConnectionClosed,
        _ if matches!(status, SpanStatus::Error { .. }) => ErrorKind::Status,
        _ => ErrorKind::None,
    };
    let status_code = st
        .error
        .as_ref()
        .map(|e| Arc::from(e.code.as_deref().unwrap_or("_OTHER")))
        .or_else(|| st.warning.as_deref().map(Arc::from));
    let name = match (summary_value.clone(), &operation) {
        (Some(s), _) => SpanName::Shared(s),
        (None, Some(Cow::Borrowed(op))) => SpanName::Static(op),
        (None, Some(Cow::Owned(op))) => SpanName::Owned(op.clone()),
        (None, None) => SpanName::Static("postgresql"),
    };
    let facts = Facts::Db(DbFacts {
        namespace: info.database.clone(),
        operation,
        summary: summary_value,
        status_code,
        server_address: server_ip,
        server_port,
        error,
    });
    SpanRecord {
        trace_id: new_trace_id(),
        span_id: new_span_id(),
        parent_span_id: [0; 8],
        parent_is_remote: false,
        trace_flags: 1,
        trace_state: None,
        kind: conn.kind,
        name,
        start_unix_ns: clock.unix_ns(st.start_ns),
        end_unix_ns: clock.unix_ns(st.end_ns),
        attributes: attrs,
        status,
        resource: Arc::clone(conn.resource),
        correlation: Correlation {
            netns: conn.netns,
            local: conn.local,
            remote: conn.remote,
            seq: st.seq,
            seq_is_stream_id: false,
            tid: st.tid,
            start_ns: st.start_ns,
            end_ns: st.end_ns,
        },
        facts,
    }
}

/// The operation as an attribute value: the common ones are static
/// (`backend::command_tag`), so neither it nor the metric label allocates.
fn operation_value(op: Cow<'static, str>) -> opentelemetry::StringValue {
    match op {
        Cow::Borrowed(s) => s.into(),
        Cow::Owned(s) => s.into(),
    }
}

/// SQLSTATE classes 00 (success) and 01 (warning) are not errors; every
/// other class is (the PostgreSQL conventions: "Class 02 or higher").
fn is_error_class(code: &str) -> bool {
    !(code.starts_with("00") || code.starts_with("01"))
}

fn status(st: &PgStatement, sanitize: bool, attrs: &mut Vec<KeyValue>) -> SpanStatus {
    match st.outcome {
        Outcome::Timeout => {
            attrs.push(KeyValue::new("error.type", "timeout"));
            return SpanStatus::Error {
                description: "no answer before postgres.query_timeout".into(),
            };
        }
        Outcome::ConnectionClosed => {
            attrs.push(KeyValue::new("error.type", "connection_closed"));
            return SpanStatus::Error {
                description: "the connection closed before the statement completed".into(),
            };
        }
        Outcome::Complete | Outcome::Truncated | Outcome::Reset => {}
    }
    if let Some(e) = &st.error {
        let code = e.code.clone().unwrap_or_else(|| "_OTHER".to_string());
        attrs.push(KeyValue::new("db.response.status_code", code.clone()));
        if is_error_class(&code) {
            attrs.push(KeyValue::new("error.type", code.clone()));
            let message = e.message.as_deref().unwrap_or("");
            return SpanStatus::Error {
                description: describe(&code, message, sanitize),
            };
        }
        return SpanStatus::Unset;
    }
    if let Some(w) = &st.warning {
        attrs.push(KeyValue::new("db.response.status_code", w.clone()));
    }
    SpanStatus::Unset
}

/// The error message as the status description. With sanitization on,
/// messages of the classes that quote user data (22: data exception, e.g.
/// `invalid input syntax for type integer: "abc"`; 42601: syntax error at or
/// near a token of the query) have their quoted parts replaced by `?`.
fn describe(code: &str, message: &str, sanitize: bool) -> String {
    let quotes_data = code.starts_with("22") || code == "42601";
    let mut out = String::with_capacity(message.len().min(MAX_DESCRIPTION));
    if sanitize && quotes_data {
        let mut in_quote = false;
        for c in message.chars() {
            if c == '"' {
                if !in_quote {
                    out.push_str("\"?\"");
                }
                in_quote = !in_quote;
            } else if !in_quote {
                out.push(c);
            }
        }
    } else {
        out.push_str(message);
    }
    if out.len() > MAX_DESCRIPTION {
        let cut = out.floor_char_boundary(MAX_DESCRIPTION);
        out.truncate(cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions() {
        assert_eq!(
            describe(
                "22P02",
                "invalid input syntax for type integer: \"abc\"",
                true
            ),
            "invalid input syntax for type integer: \"?\""
        );
        assert_eq!(
            describe("42601", "syntax error at or near \"SELEC\"", true),
            "syntax error at or near \"?\""
        );
        assert_eq!(
            describe(
                "23505",
                "duplicate key value violates unique constraint \"users_pkey\"",
                true
            ),
            "duplicate key value violates unique constraint \"users_pkey\""
        );
        assert_eq!(
            describe("22P02", "invalid input syntax: \"abc\"", false),
            "invalid input syntax: \"abc\""
        );
    }

    #[test]
    fn error_classes() {
        assert!(!is_error_class("00000"));
        assert!(!is_error_class("01000"));
        assert!(is_error_class("02000"));
        assert!(is_error_class("23505"));
    }
}
