//! The span contract, as reusable checks.
//!
//! Each `check_*` returns a list of problems (empty = fine) so a test can
//! report every mismatch of every span at once via [`assert_no_problems`].

use crate::TestClock;
use crate::otlp::{ReceivedSpan, SpanKind, StatusCode, Value, dump};

/// Instrumentation scope name of every span the agent exports.
pub const SCOPE_NAME: &str = "agent";
/// What query values are replaced with.
pub const REDACTED: &str = "REDACTED";
/// User-Agent of the harness's own readiness probes / metric scrapes.
pub const HARNESS_USER_AGENT: &str = "agent-tests-harness";
/// Slack allowed between the test's wall clock and span timestamps when
/// checking that spans fall inside the test's time window (the agent converts
/// kernel monotonic time to Unix time; the conversion may be off by a little).
pub const CLOCK_SLACK_NS: u64 = 1_000_000_000;

/// `a=1&b=&c` → `a=REDACTED&b=REDACTED&REDACTED`: keys kept, values
/// redacted; a bare segment (no `=`) may itself be a token, so it is replaced
/// whole; empty segments stay empty.
pub fn redact_query(q: &str) -> String {
    q.split('&')
        .map(|kv| match kv.split_once('=') {
            Some((key, _)) => format!("{key}={REDACTED}"),
            None if kv.is_empty() => String::new(),
            None => REDACTED.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Spans of `kind` whose resource `process.pid` is in `pids`, sorted by start
/// time, excluding the harness's own probes.
pub fn spans_of(spans: &[ReceivedSpan], kind: SpanKind, pids: &[u32]) -> Vec<ReceivedSpan> {
    let mut v: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| {
            s.kind == kind && s.pid().is_some_and(|p| pids.contains(&p)) && !is_harness_probe(s)
        })
        .cloned()
        .collect();
    v.sort_by_key(|s| (s.start_ns, s.end_ns));
    v
}

/// True for spans of the harness's readiness probes (by User-Agent).
pub fn is_harness_probe(s: &ReceivedSpan) -> bool {
    s.attr_str("user_agent.original") == Some(HARNESS_USER_AGENT)
}

/// Panics listing every problem (and the spans involved) if there is any.
pub fn assert_no_problems(what: &str, problems: &[String], spans: &[ReceivedSpan]) {
    if !problems.is_empty() {
        panic!(
            "{what}: {} problem(s):\n  - {}\nspans involved:\n{}",
            problems.len(),
            problems.join("\n  - "),
            dump(spans)
        );
    }
}

struct Checker<'a> {
    span: &'a ReceivedSpan,
    ctx: String,
    problems: Vec<String>,
}

impl<'a> Checker<'a> {
    fn new(span: &'a ReceivedSpan, ctx: &str) -> Self {
        Checker {
            span,
            ctx: ctx.to_string(),
            problems: Vec::new(),
        }
    }
    fn fail(&mut self, msg: String) {
        self.problems.push(format!("[{}] {msg}", self.ctx));
    }
    fn str_eq(&mut self, key: &str, want: &str) {
        match self.span.attr(key) {
            Some(Value::Str(s)) if s == want => {}
            Some(v) => self.fail(format!(
                "{key}: want string {want:?}, got {} {v:?}",
                v.type_name()
            )),
            None => self.fail(format!("{key}: missing (want {want:?})")),
        }
    }
    fn int_eq(&mut self, key: &str, want: i64) {
        match self.span.attr(key) {
            Some(Value::Int(i)) if *i == want => {}
            Some(v) => self.fail(format!(
                "{key}: want int {want}, got {} {v:?}",
                v.type_name()
            )),
            None => self.fail(format!("{key}: missing (want {want})")),
        }
    }
    fn int_present(&mut self, key: &str) {
        match self.span.attr(key) {
            Some(Value::Int(i)) if *i > 0 => {}
            Some(v) => self.fail(format!(
                "{key}: want positive int, got {} {v:?}",
                v.type_name()
            )),
            None => self.fail(format!("{key}: missing")),
        }
    }
    fn absent(&mut self, key: &str) {
        if let Some(v) = self.span.attr(key) {
            self.fail(format!("{key}: should be absent, got {v:?}"));
        }
    }
    fn res_str_eq(&mut self, key: &str, want: &str) {
        match self.span.resource(key) {
            Some(Value::Str(s)) if s == want => {}
            Some(v) => self.fail(format!(
                "resource {key}: want {want:?}, got {} {v:?}",
                v.type_name()
            )),
            None => self.fail(format!("resource {key}: missing (want {want:?})")),
        }
    }
    fn res_nonempty(&mut self, key: &str) {
        match self.span.resource(key) {
            Some(Value::Str(s)) if !s.is_empty() => {}
            Some(v) => self.fail(format!(
                "resource {key}: want non-empty string, got {} {v:?}",
                v.type_name()
            )),
            None => self.fail(format!("resource {key}: missing")),
        }
    }
}

/// What a SERVER span should say.
#[derive(Debug, Clone)]
pub struct ServerExpect<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Expected `url.query` (already redacted), `None` = attribute absent.
    pub query: Option<String>,
    pub status: i64,
    /// From the Host header (else the local address).
    pub server_address: &'a str,
    pub server_port: u16,
    /// The peer socket (client side of the connection).
    pub client_address: &'a str,
    /// The client's port when the test knows it.
    pub client_port: Option<u16>,
    pub protocol_version: &'a str,
    /// `None` = the request sent no User-Agent (attribute absent).
    pub user_agent: Option<&'a str>,
}

/// The agent's `http.route` for a path (its heuristic template: numbers,
/// UUIDs, hashes and id-like tokens folded), for the paths the tests use.
pub fn route_template(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}".to_string()
            } else {
                s.to_string()
            }
        })
        .collect();
    if segments.is_empty() {
        return "/".to_string();
    }
    let mut out = format!("/{}", segments.join("/"));
    if path.len() > 1 && path.ends_with('/') && !out.ends_with('}') {
        out.push('/');
    }
    out
}

/// Checks one SERVER span against the contract.
pub fn check_server_span(span: &ReceivedSpan, want: &ServerExpect<'_>, ctx: &str) -> Vec<String> {
    let mut c = Checker::new(span, ctx);
    if span.kind != SpanKind::Server {
        c.fail(format!("kind: want Server, got {:?}", span.kind));
    }
    // `{method} {http.route}`: the route is the agent's path template.
    let route = route_template(want.path);
    let name = format!("{} {route}", want.method);
    if span.name != name {
        c.fail(format!("name: want {name:?}, got {:?}", span.name));
    }
    c.str_eq("http.route", &route);
    if span.scope_name != SCOPE_NAME {
        c.fail(format!(
            "scope name: want {SCOPE_NAME:?}, got {:?}",
            span.scope_name
        ));
    }
    c.str_eq("http.request.method", want.method);
    c.str_eq("url.path", want.path);
    c.str_eq("url.scheme", "http");
    match &want.query {
        Some(q) => c.str_eq("url.query", q),
        None => c.absent("url.query"),
    }
    if let Some(p) = span.attr_str("url.path")
        && p.contains('?')
    {
        c.fail(format!("url.path contains a query: {p:?}"));
    }
    c.int_eq("http.response.status_code", want.status);
    c.str_eq("server.address", want.server_address);
    c.int_eq("server.port", want.server_port as i64);
    c.str_eq("client.address", want.client_address);
    c.str_eq("network.peer.address", want.client_address);
    match want.client_port {
        Some(p) => {
            c.int_eq("client.port", p as i64);
            c.int_eq("network.peer.port", p as i64);
        }
        None => {
            c.int_present("client.port");
            c.int_present("network.peer.port");
        }
    }
    if span.attr_int("client.port") != span.attr_int("network.peer.port") {
        c.fail(format!(
            "client.port {:?} != network.peer.port {:?}",
            span.attr("client.port"),
            span.attr("network.peer.port")
        ));
    }
    c.str_eq("network.protocol.version", want.protocol_version);
    match want.user_agent {
        Some(ua) => c.str_eq("user_agent.original", ua),
        None => c.absent("user_agent.original"),
    }
    if want.status >= 500 {
        c.str_eq("error.type", &want.status.to_string());
        if span.status_code != StatusCode::Error {
            c.fail(format!(
                "status: want Error for {}, got {:?}",
                want.status, span.status_code
            ));
        }
    } else {
        c.absent("error.type");
        if span.status_code != StatusCode::Unset {
            c.fail(format!(
                "status: want Unset for {}, got {:?}",
                want.status, span.status_code
            ));
        }
    }
    c.problems
}

/// What a CLIENT span should say.
#[derive(Debug, Clone)]
pub struct ClientExpect<'a> {
    pub method: &'a str,
    /// `http://host:port/path?query` with query values redacted.
    pub url_full: String,
    pub server_address: &'a str,
    pub server_port: u16,
    pub peer_address: &'a str,
    pub peer_port: u16,
    pub status: i64,
    pub protocol_version: &'a str,
    pub user_agent: Option<&'a str>,
}

/// Checks one CLIENT span against the contract.
pub fn check_client_span(span: &ReceivedSpan, want: &ClientExpect<'_>, ctx: &str) -> Vec<String> {
    let mut c = Checker::new(span, ctx);
    if span.kind != SpanKind::Client {
        c.fail(format!("kind: want Client, got {:?}", span.kind));
    }
    if span.name != want.method {
        c.fail(format!("name: want {:?}, got {:?}", want.method, span.name));
    }
    if span.scope_name != SCOPE_NAME {
        c.fail(format!(
            "scope name: want {SCOPE_NAME:?}, got {:?}",
            span.scope_name
        ));
    }
    c.str_eq("http.request.method", want.method);
    c.str_eq("url.full", &want.url_full);
    c.str_eq("server.address", want.server_address);
    c.int_eq("server.port", want.server_port as i64);
    c.str_eq("network.peer.address", want.peer_address);
    c.int_eq("network.peer.port", want.peer_port as i64);
    c.int_eq("http.response.status_code", want.status);
    c.str_eq("network.protocol.version", want.protocol_version);
    match want.user_agent {
        Some(ua) => c.str_eq("user_agent.original", ua),
        None => c.absent("user_agent.original"),
    }
    if want.status >= 400 {
        c.str_eq("error.type", &want.status.to_string());
        if span.status_code != StatusCode::Error {
            c.fail(format!(
                "status: want Error for {}, got {:?}",
                want.status, span.status_code
            ));
        }
    } else {
        c.absent("error.type");
        if span.status_code != StatusCode::Unset {
            c.fail(format!(
                "status: want Unset for {}, got {:?}",
                want.status, span.status_code
            ));
        }
    }
    c.problems
}

/// A span for a request that failed without a response (`timeout`,
/// `connection_closed`): status Error, `error.type`, no status code.
pub fn check_failed_request_span(
    span: &ReceivedSpan,
    kind: SpanKind,
    method: &str,
    error_type: &str,
    ctx: &str,
) -> Vec<String> {
    let mut c = Checker::new(span, ctx);
    if span.kind != kind {
        c.fail(format!("kind: want {kind:?}, got {:?}", span.kind));
    }
    // Server spans: `{method} {http.route}`.
    let name_ok = match kind {
        SpanKind::Server => span
            .name
            .strip_prefix(method)
            .is_some_and(|r| r.starts_with(" /")),
        _ => span.name == method,
    };
    if !name_ok {
        c.fail(format!("name: want {method:?}, got {:?}", span.name));
    }
    c.str_eq("http.request.method", method);
    c.str_eq("error.type", error_type);
    c.absent("http.response.status_code");
    if span.status_code != StatusCode::Error {
        c.fail(format!("status: want Error, got {:?}", span.status_code));
    }
    c.problems
}

/// What the resource of a process's spans should say.
#[derive(Debug, Clone)]
pub struct ResourceExpect<'a> {
    pub pid: u32,
    /// Exact `service.name`.
    pub service_name: &'a str,
    /// Acceptable `process.executable.name`s (e.g. `python3` or `python3.11`).
    pub executable_names: &'a [&'a str],
    /// Substrings `process.command_line` must contain.
    pub command_line_contains: &'a [&'a str],
}

/// `service.name` accepted for a Python interpreter (the executable name).
pub const PYTHON_EXE_NAMES: &[&str] = &[
    "python3",
    "python3.11",
    "python3.12",
    "python3.13",
    "python",
];

/// Checks the resource attributes of one span.
pub fn check_resource(span: &ReceivedSpan, want: &ResourceExpect<'_>, ctx: &str) -> Vec<String> {
    let mut c = Checker::new(span, ctx);
    c.res_str_eq("service.name", want.service_name);
    match span.resource("process.pid") {
        Some(Value::Int(p)) if *p == want.pid as i64 => {}
        other => c.fail(format!(
            "resource process.pid: want int {}, got {other:?}",
            want.pid
        )),
    }
    match span.resource_str("process.executable.name") {
        Some(n) if want.executable_names.contains(&n) => {}
        other => c.fail(format!(
            "resource process.executable.name: want one of {:?}, got {other:?}",
            want.executable_names
        )),
    }
    c.res_nonempty("process.command_line");
    if let Some(cl) = span.resource_str("process.command_line") {
        for needle in want.command_line_contains {
            if !cl.contains(needle) {
                c.fail(format!(
                    "resource process.command_line {cl:?} lacks {needle:?}"
                ));
            }
        }
    }
    let host = crate::procs::hostname();
    c.res_str_eq("host.name", &host);
    // host.id on Linux is the machine id; without one it may be absent.
    match crate::procs::machine_id() {
        Some(id) => c.res_str_eq("host.id", &id),
        None => {
            if let Some(v) = span.resource("host.id") {
                eprintln!("[{ctx}] host.id = {v} although this host has no machine id");
            }
        }
    }
    c.res_str_eq("os.type", "linux");
    c.problems
}

/// Timing of one span: positive duration shorter than the test so far, and
/// inside the test's wall-clock window (± [`CLOCK_SLACK_NS`]).
pub fn check_timing(span: &ReceivedSpan, clock: &TestClock, ctx: &str) -> Vec<String> {
    let mut p = Vec::new();
    let dur = span.duration_ns();
    let wall = clock.elapsed_ns() as i128;
    if dur <= 0 {
        p.push(format!(
            "[{ctx}] duration {dur} ns is not > 0 (start {} end {})",
            span.start_ns, span.end_ns
        ));
    }
    if dur >= wall {
        p.push(format!(
            "[{ctx}] duration {dur} ns is not < the test's wall time {wall} ns"
        ));
    }
    let lo = clock.start_unix_ns.saturating_sub(CLOCK_SLACK_NS);
    let hi = crate::unix_now_ns() + CLOCK_SLACK_NS;
    if span.start_ns < lo || span.end_ns > hi {
        p.push(format!(
            "[{ctx}] span [{}, {}] outside the test window [{}, {}] (slack {CLOCK_SLACK_NS} ns): off by {} ns / {} ns",
            span.start_ns,
            span.end_ns,
            clock.start_unix_ns,
            hi - CLOCK_SLACK_NS,
            lo as i128 - span.start_ns as i128 - CLOCK_SLACK_NS as i128,
            span.end_ns as i128 - hi as i128 + CLOCK_SLACK_NS as i128,
        ));
    }
    p
}

/// How much later than the client's end the server's may be: the server
/// span ends when its last write returns, and on loopback the bytes are
/// delivered (and the client's read can return, on the other CPU) before
/// that write's own return, e.g. when the writer is preempted in between.
/// Seen once in CI: 1.8 µs.
pub const END_ORDER_SLACK_NS: i128 = 50_000;

/// The server span of a request lies within its client span (the start
/// strictly; the end within [`END_ORDER_SLACK_NS`]; the message gives the
/// offsets).
pub fn check_nesting(client: &ReceivedSpan, server: &ReceivedSpan, ctx: &str) -> Vec<String> {
    let mut p = Vec::new();
    let ds = server.start_ns as i128 - client.start_ns as i128;
    let de = client.end_ns as i128 - server.end_ns as i128;
    if ds < 0 || de < -END_ORDER_SLACK_NS {
        p.push(format!(
            "[{ctx}] server span not within client span: server.start - client.start = {ds} ns, client.end - server.end = {de} ns (must be >= 0 and >= -{END_ORDER_SLACK_NS})"
        ));
    } else {
        eprintln!("[{ctx}] nesting margins: start {ds} ns, end {de} ns");
    }
    p
}

/// Every attribute (span and resource) of `spans` whose value contains `needle`.
pub fn values_containing(spans: &[ReceivedSpan], needle: &str) -> Vec<String> {
    spans
        .iter()
        .flat_map(|s| {
            s.all_values()
                .filter(|(_, v)| v.contains(needle))
                .map(|(k, v)| format!("{} {:?} pid {:?}: {k}={v}", s.name, s.kind, s.pid()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One request of a sequence on one connection.
#[derive(Debug, Clone)]
pub struct Req<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query as sent (values are expected redacted in spans).
    pub query: Option<&'a str>,
    pub status: i64,
}

impl<'a> Req<'a> {
    pub fn new(method: &'a str, path: &'a str, status: i64) -> Self {
        Req {
            method,
            path,
            query: None,
            status,
        }
    }
    pub fn with_query(method: &'a str, path: &'a str, query: &'a str, status: i64) -> Self {
        Req {
            method,
            path,
            query: Some(query),
            status,
        }
    }
}

/// What is common to all requests of one client→server connection.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    /// Address the client dialled / put in the Host header (e.g. `127.0.0.1`).
    pub host: &'a str,
    pub server_port: u16,
    /// The client's local port, when known.
    pub client_port: Option<u16>,
    pub user_agent: Option<&'a str>,
    pub protocol_version: &'a str,
    pub server_resource: ResourceExpect<'a>,
    pub client_resource: ResourceExpect<'a>,
}

/// Checks a sequence of requests made on one connection: `clients[i]` and
/// `servers[i]` (both sorted by start time) must be the i-th request of
/// `reqs`, with every attribute, resource, timing and nesting rule of the
/// contract. Counts must match exactly.
pub fn check_sequence(
    clients: &[ReceivedSpan],
    servers: &[ReceivedSpan],
    reqs: &[Req<'_>],
    ex: &Exchange<'_>,
    clock: &TestClock,
) -> Vec<String> {
    let mut p = Vec::new();
    if servers.len() != reqs.len() {
        p.push(format!(
            "want exactly {} SERVER spans, got {}",
            reqs.len(),
            servers.len()
        ));
    }
    if clients.len() != reqs.len() {
        p.push(format!(
            "want exactly {} CLIENT spans, got {}",
            reqs.len(),
            clients.len()
        ));
    }
    for (i, r) in reqs.iter().enumerate() {
        let ctx = format!(
            "#{i} {} {}{}",
            r.method,
            r.path,
            r.query.map(|q| format!("?{q}")).unwrap_or_default()
        );
        let query = r.query.map(redact_query);
        if let Some(s) = servers.get(i) {
            let want = ServerExpect {
                method: r.method,
                path: r.path,
                query: query.clone(),
                status: r.status,
                server_address: ex.host,
                server_port: ex.server_port,
                client_address: "127.0.0.1",
                client_port: ex.client_port,
                protocol_version: ex.protocol_version,
                user_agent: ex.user_agent,
            };
            let sctx = format!("{ctx} SERVER");
            p.extend(check_server_span(s, &want, &sctx));
            p.extend(check_resource(s, &ex.server_resource, &sctx));
            p.extend(check_timing(s, clock, &sctx));
            p.extend(check_ids(s, &sctx));
        }
        if let Some(c) = clients.get(i) {
            let url_full = format!(
                "http://{}:{}{}{}",
                ex.host,
                ex.server_port,
                r.path,
                query.as_ref().map(|q| format!("?{q}")).unwrap_or_default()
            );
            let want = ClientExpect {
                method: r.method,
                url_full,
                server_address: ex.host,
                server_port: ex.server_port,
                peer_address: "127.0.0.1",
                peer_port: ex.server_port,
                status: r.status,
                protocol_version: ex.protocol_version,
                user_agent: ex.user_agent,
            };
            let cctx = format!("{ctx} CLIENT");
            p.extend(check_client_span(c, &want, &cctx));
            p.extend(check_resource(c, &ex.client_resource, &cctx));
            p.extend(check_timing(c, clock, &cctx));
            p.extend(check_ids(c, &cctx));
        }
        if let (Some(c), Some(s)) = (clients.get(i), servers.get(i)) {
            p.extend(check_nesting(c, s, &ctx));
        }
    }
    p
}

/// Trace id 16 bytes and span id 8 bytes, both non-zero.
pub fn check_ids(span: &ReceivedSpan, ctx: &str) -> Vec<String> {
    let mut p = Vec::new();
    if span.trace_id.len() != 32 || span.trace_id.chars().all(|c| c == '0') {
        p.push(format!("[{ctx}] invalid trace_id {:?}", span.trace_id));
    }
    if span.span_id.len() != 16 || span.span_id.chars().all(|c| c == '0') {
        p.push(format!("[{ctx}] invalid span_id {:?}", span.span_id));
    }
    p
}

/// HTTP methods a span may carry (`_OTHER` is semconv's bucket for unknown ones).
pub const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts() {
        assert_eq!(
            redact_query("token=secret&q=1"),
            "token=REDACTED&q=REDACTED"
        );
        assert_eq!(redact_query("flag&b="), "REDACTED&b=REDACTED");
    }
}
