//! One PostgreSQL connection seen from one process: two [`Framer`]s
//! (frontend and backend streams) and the queue of frontend messages
//! awaiting their responses, producing one [`PgStatement`] per statement
//! the server executed.
//!
//! Pairing follows the protocol's own rule that the server answers every
//! frontend message in order: a simple `Query` is answered by one
//! completion (`CommandComplete`, `EmptyQueryResponse`, `ErrorResponse`)
//! per statement then `ReadyForQuery`; in the extended protocol `Parse`,
//! `Bind`, `Describe`, `Execute`, `Close` and `Sync` each get their own
//! answer, and after an error the server skips everything up to the next
//! `Sync`. So pipelined Executes before one Sync, portals read in pages
//! (`PortalSuspended`), statements never executed after an error (no
//! statement, counted) and COPY sub-protocols all pair exactly.
//!
//! Timestamps: a statement starts at the *entry* of the write that sent its
//! first message (client side; for the extended protocol, the first of the
//! Parse/Bind/Describe messages that prepared the Execute) or the *exit* of
//! the read that received it (server side), and ends at the exit of the
//! syscall that moved the last byte of its completion.
//!
//! `requests` turns frontend messages into units, `answers` completes them
//! with backend messages; this file holds the state both work on.
//!
//! Recovery: responses are matched by kind (a `BindComplete` completes the
//! first waiting Bind, earlier units whose answers were lost end as
//! [`Outcome::Truncated`]); after a desync of either stream, the next
//! `ReadyForQuery` ends everything still waiting, so pairing can never stay
//! shifted.

use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use agent_common::Direction;

use super::{
    backend::ErrorFields,
    framing::{self, Framer},
    frontend, sql, texts,
    wire::Stream,
};
pub use crate::protocol::{EventTimes, Outcome};

/// Bounds and choices of the PostgreSQL parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest query text kept (bytes); longer texts are cut and marked.
    pub max_query_bytes: usize,
    /// Prepared statements remembered per connection (oldest evicted).
    pub max_prepared: usize,
    /// Frontend messages awaiting an answer per connection.
    pub max_pending: usize,
    /// Replace literals in `db.query.text` by `?`.
    pub sanitize: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_query_bytes: 4096,
            max_prepared: 1024,
            max_pending: 1024,
            sanitize: true,
        }
    }
}

/// The text of a statement, as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryText {
    /// Sanitized (or, with sanitization off, trimmed) statement text.
    pub text: Arc<str>,
    pub summary: Option<Arc<str>>,
    /// The text was longer than captured or kept.
    pub truncated: bool,
}

/// What is known about a statement's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementText {
    Known(Arc<QueryText>),
    /// Prepared (or bound) before the agent saw it: only names are known.
    Unknown {
        statement: Option<String>,
        portal: Option<String>,
    },
}

/// One executed statement.
#[derive(Debug, Clone)]
pub struct PgStatement {
    pub text: StatementText,
    /// The CommandComplete tag's operation (`SELECT`, `CREATE TABLE`).
    pub operation: Option<Cow<'static, str>>,
    pub error: Option<ErrorFields>,
    /// SQLSTATE of a warning (class 01) raised by the statement.
    pub warning: Option<String>,
    /// Rows returned (DataRows, or the tag's count for SELECT/FETCH/COPY TO).
    pub rows: Option<u64>,
    /// Ended by PortalSuspended (a portal read with a row limit).
    pub suspended: bool,
    /// Simple-query protocol (`Query`) rather than `Execute`.
    pub simple: bool,
    /// Kernel monotonic nanoseconds.
    pub start_ns: u64,
    pub end_ns: u64,
    pub outcome: Outcome,
    /// Thread that read (server) or wrote (client) the statement.
    pub tid: u32,
    /// Order of the statement on the connection, from 0.
    pub seq: u64,
}

/// What the StartupMessage said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    pub database: Option<Arc<str>>,
    pub user: Option<Arc<str>>,
    pub application_name: Option<Arc<str>>,
}

/// Things worth counting that are not statements (`agent_postgres_events_total`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub startups: u64,
    pub startup_errors: u64,
    pub ssl_refused: u64,
    pub cancel_requests: u64,
    pub notifications: u64,
    /// Statements the server skipped after an earlier error.
    pub not_executed: u64,
    /// Responses with nothing waiting for them (joined mid-exchange).
    pub orphan_responses: u64,
    /// Executes of statements prepared before the agent saw them.
    pub unknown_statements: u64,
    pub prepared_evicted: u64,
    pub pending_overflow: u64,
}

impl Counts {
    /// `(event label, count)` pairs.
    pub fn labelled(&self) -> [(&'static str, u64); 10] {
        [
            ("startup", self.startups),
            ("startup_error", self.startup_errors),
            ("ssl_refused", self.ssl_refused),
            ("cancel_request", self.cancel_requests),
            ("notification", self.notifications),
            ("not_executed", self.not_executed),
            ("orphan_response", self.orphan_responses),
            ("unknown_statement", self.unknown_statements),
            ("prepared_evicted", self.prepared_evicted),
            ("pending_overflow", self.pending_overflow),
        ]
    }
}

/// Why the connection stopped being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SSL or GSSAPI encryption was accepted: the rest is ciphertext.
    Encrypted(&'static str),
    /// The first bytes are not PostgreSQL after all.
    NotPostgres,
    /// A replication (CopyBoth) stream.
    Replication,
}

/// A statement of a simple Query.
#[derive(Debug)]
struct Stmt {
    text: StatementText,
    /// Byte range in the query string (error positions map to it).
    range: (usize, usize),
    rows: u64,
    copy_out: bool,
    warning: Option<String>,
}

#[derive(Debug)]
struct QueryCycle {
    stmts: VecDeque<Stmt>,
    /// The query string as kept (for error positions, in characters).
    raw: Option<Arc<str>>,
    /// Statements finished so far.
    done: usize,
    /// An error ended the cycle: the remaining statements do not run.
    failed: bool,
    start_ns: u64,
    /// End of the last finished statement.
    last_end_ns: u64,
    tid: u32,
}

#[derive(Debug)]
struct Exec {
    text: StatementText,
    start_ns: u64,
    tid: u32,
    rows: u64,
    copy_out: bool,
    warning: Option<String>,
}

#[derive(Debug)]
enum Unit {
    Startup,
    Query(QueryCycle),
    Parse(Box<str>),
    Bind,
    Describe,
    Execute(Exec),
    Close,
    Sync,
    FunctionCall,
}

impl Unit {
    /// Answered by ReadyForQuery.
    fn is_terminator(&self) -> bool {
        matches!(
            self,
            Unit::Startup | Unit::Query(_) | Unit::Sync | Unit::FunctionCall
        )
    }
}

/// Prepared statements by name, oldest evicted first.
#[derive(Debug, Default)]
struct Prepared {
    map: HashMap<Box<str>, (Arc<QueryText>, u64)>,
    order: VecDeque<(Box<str>, u64)>,
    next: u64,
}

impl Prepared {
    fn insert(&mut self, name: Box<str>, text: Arc<QueryText>, max: usize) -> bool {
        let id = self.next;
        self.next += 1;
        self.order.push_back((name.clone(), id));
        self.map.insert(name, (text, id));
        let mut evicted = false;
        while self.map.len() > max.max(1) {
            let Some((old, old_id)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|(_, i)| *i == old_id) {
                self.map.remove(&old);
                evicted = true;
            }
        }
        // Stale order entries (replaced names) are bounded by `max` too.
        if self.order.len() > 2 * max.max(1) {
            let map = &self.map;
            self.order
                .retain(|(n, i)| map.get(n).is_some_and(|(_, id)| id == i));
        }
        evicted
    }

    fn get(&self, name: &str) -> Option<&Arc<QueryText>> {
        self.map.get(name).map(|(t, _)| t)
    }

    fn remove(&mut self, name: &str) {
        self.map.remove(name);
    }
}

/// Everything but the two framers, so a framer can feed a sink borrowing it.
struct State {
    limits: Limits,
    is_server: bool,
    info: ConnInfo,
    prepared: Prepared,
    /// Portal → statement text (unnamed portal included), bounded.
    portals: HashMap<Box<str>, StatementText>,
    units: VecDeque<Unit>,
    /// Start of the first extended-protocol message since the last
    /// Execute/Sync: an Execute's statement starts there.
    group_start: Option<(u64, u32)>,
    /// The server skips extended-protocol messages until the next Sync.
    skip_until_sync: bool,
    /// A stream desynced: the next ReadyForQuery ends everything waiting.
    realign: bool,
    /// The server is in copy-in mode: it ignores Sync and Flush until the
    /// client's CopyDone or CopyFail.
    copy_in: bool,
    /// Exit time of the last backend syscall.
    last_backend_ns: u64,
    now: EventTimes,
    next_seq: u64,
    counts: Counts,
    desyncs: Vec<(Stream, &'static str)>,
    stop: Option<Stop>,
    /// Effects on the framers requested while one was feeding.
    frontend_untyped: bool,
    backend_answer: bool,
    row_hint: Option<Option<u16>>,
    done: Vec<PgStatement>,
}

/// Most portals remembered per connection.
const MAX_PORTALS: usize = 64;

pub struct PgSession {
    frontend: Framer,
    backend: Framer,
    started: bool,
    /// The first bytes, while fewer than [`FIRST_BYTES`] (too few to tell
    /// whether they are PostgreSQL), with their stream and times.
    first: Vec<u8>,
    first_stream: Stream,
    first_times: EventTimes,
    st: State,
}

/// Bytes needed before the first data is validated.
const FIRST_BYTES: usize = 8;

impl PgSession {
    pub fn new(is_server: bool, limits: Limits) -> Self {
        let max_query = limits.max_query_bytes;
        Self {
            frontend: Framer::new(Stream::Frontend, max_query),
            backend: Framer::new(Stream::Backend, max_query),
            started: false,
            first: Vec::new(),
            first_stream: Stream::Frontend,
            first_times: EventTimes::default(),
            st: State {
                limits,
                is_server,
                info: ConnInfo::default(),
                prepared: Prepared::default(),
                portals: HashMap::new(),
                units: VecDeque::new(),
                group_start: None,
                skip_until_sync: false,
                realign: false,
                copy_in: false,
                last_backend_ns: 0,
                now: EventTimes::default(),
                next_seq: 0,
                counts: Counts::default(),
                desyncs: Vec::new(),
                stop: None,
                frontend_untyped: false,
                backend_answer: false,
                row_hint: None,
                done: Vec::new(),
            },
        }
    }

    /// Which stream a syscall in `direction` carries.
    fn stream_of(&self, direction: Direction) -> Stream {
        if (direction == Direction::Ingress) == self.st.is_server {
            Stream::Frontend
        } else {
            Stream::Backend
        }
    }

    /// Feeds one syscall (`tail`: the last bytes of its `gap`, if the
    /// kernel copied them); finished statements go to `out`.
    pub fn on_data(
        &mut self,
        direction: Direction,
        data: &[u8],
        gap: u64,
        tail: &[u8],
        times: EventTimes,
        out: &mut Vec<PgStatement>,
    ) {
        if self.st.stop.is_some() {
            return;
        }
        let stream = self.stream_of(direction);
        if !self.started {
            if data.is_empty() {
                return;
            }
            let same = self.first.is_empty() || self.first_stream == stream;
            if same && gap == 0 && self.first.len() + data.len() < FIRST_BYTES {
                self.first.extend_from_slice(data);
                self.first_stream = stream;
                self.first_times = times;
                return;
            }
            self.started = true;
            let first = std::mem::take(&mut self.first);
            let (probe_stream, probe) = if first.is_empty() {
                (stream, data.to_vec())
            } else if same {
                (stream, [&first[..], data].concat())
            } else {
                (self.first_stream, first.clone())
            };
            let probe_gap = if probe_stream == stream { gap } else { 0 };
            if probe_stream == Stream::Frontend && frontend::starts_untyped(&probe) {
                self.frontend.expect_untyped();
            } else if framing::find_sync(probe_stream, &probe, probe_gap, None) != Some(0) {
                self.st.stop = Some(Stop::NotPostgres);
                return;
            }
            if !first.is_empty() {
                let (s, t) = (self.first_stream, self.first_times);
                self.feed(s, &first, 0, &[], t);
            }
        }
        self.feed(stream, data, gap, tail, times);
        out.append(&mut self.st.done);
    }

    fn feed(&mut self, stream: Stream, data: &[u8], gap: u64, tail: &[u8], times: EventTimes) {
        self.st.now = times;
        match stream {
            Stream::Frontend => {
                self.frontend.feed(
                    data,
                    gap,
                    tail,
                    times,
                    &mut FrontendSink { st: &mut self.st },
                );
            }
            Stream::Backend => {
                self.st.last_backend_ns = times.exit_ns;
                self.backend.feed(
                    data,
                    gap,
                    tail,
                    times,
                    &mut BackendSink { st: &mut self.st },
                );
            }
        }
        self.apply_effects();
    }

    fn apply_effects(&mut self) {
        let st = &mut self.st;
        if std::mem::take(&mut st.frontend_untyped) {
            self.frontend.expect_untyped();
        }
        if std::mem::take(&mut st.backend_answer) {
            self.backend.expect_answer();
        }
        if let Some(hint) = st.row_hint.take() {
            self.backend.set_row_hint(hint);
        }
        if st.stop.is_some() {
            self.frontend.stop();
            self.backend.stop();
        }
    }

    /// Ends statements waiting longer than `timeout_ns` (at `now_ns`) as
    /// timed out; their late answers will be orphans.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64, out: &mut Vec<PgStatement>) {
        let st = &mut self.st;
        let oldest = st.units.iter().find_map(|u| match u {
            Unit::Execute(e) => Some(e.start_ns),
            Unit::Query(q) if q.stmts.len() > q.done => Some(q.last_end_ns.max(q.start_ns)),
            _ => None,
        });
        if oldest.is_some_and(|t| now_ns.saturating_sub(t) >= timeout_ns) {
            st.drain(Outcome::Timeout, now_ns);
            st.realign = true;
            out.append(&mut st.done);
        }
    }

    /// The connection ended at `now_ns`: statements still waiting end as
    /// [`Outcome::ConnectionClosed`].
    pub fn close(&mut self, now_ns: u64, out: &mut Vec<PgStatement>) {
        let st = &mut self.st;
        self.frontend.close(&mut FrontendSink { st });
        self.backend.close(&mut BackendSink { st });
        let end = st.now.exit_ns.max(now_ns);
        st.drain(Outcome::ConnectionClosed, end);
        st.prepared = Prepared::default();
        st.portals.clear();
        out.append(&mut st.done);
    }

    /// Nothing in flight and nothing worth keeping: a connection that
    /// holds prepared statements is not idle (forgetting it would turn
    /// their later Executes into unknown-text statements).
    /// The statements awaiting their answers.
    pub fn pending_requests(&self, out: &mut Vec<crate::protocol::PendingRequest>) {
        out.extend(self.st.units.iter().filter_map(|u| match u {
            Unit::Execute(e) => Some(crate::protocol::PendingRequest {
                start_ns: e.start_ns,
                tid: e.tid,
            }),
            Unit::Query(q) if q.stmts.len() > q.done => Some(crate::protocol::PendingRequest {
                start_ns: q.start_ns,
                tid: q.tid,
            }),
            _ => None,
        }));
    }

    pub fn is_idle(&self) -> bool {
        self.st.units.is_empty()
            && self.st.prepared.map.keys().all(|k| k.is_empty())
            && self.frontend.is_idle()
            && self.backend.is_idle()
    }

    pub fn stopped(&self) -> Option<Stop> {
        self.st.stop
    }

    pub fn info(&self) -> &ConnInfo {
        &self.st.info
    }

    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.st.counts)
    }

    pub fn take_desyncs(&mut self) -> Vec<(Stream, &'static str)> {
        std::mem::take(&mut self.st.desyncs)
    }

    /// Bytes buffered by the framers.
    pub fn buffered(&self) -> usize {
        self.frontend.buffered() + self.backend.buffered()
    }

    /// Frontend messages awaiting an answer.
    pub fn pending(&self) -> usize {
        self.st.units.len()
    }
}

impl State {
    fn start_ns(&self, t: &EventTimes) -> u64 {
        if self.is_server {
            t.exit_ns
        } else {
            t.enter_ns
        }
    }

    /// What else than its bytes a text's [`QueryText`] depends on.
    fn shape(&self, query: bool) -> texts::Shape {
        texts::Shape {
            query,
            sanitize: self.limits.sanitize,
            max_query_bytes: self.limits.max_query_bytes,
        }
    }

    fn query_text(&self, s: &str, cut: bool, parameterized_exempt: bool) -> Arc<QueryText> {
        let max = self.limits.max_query_bytes;
        let sanitize = self.limits.sanitize && !(parameterized_exempt && sql::has_parameters(s));
        let truncated = cut || s.len() > max;
        let summary = || sql::summarize(s).map(Arc::from);
        if sanitize {
            let text = sql::sanitize(s, max);
            if !truncated {
                return texts::sanitized(text, summary);
            }
            return Arc::new(QueryText {
                text: text.into(),
                summary: summary(),
                truncated,
            });
        }
        Arc::new(QueryText {
            text: sql::trimmed(s, max).into(),
            summary: summary(),
            truncated,
        })
    }

    fn push(&mut self, unit: Unit) {
        if self.units.len() >= self.limits.max_pending {
            self.counts.pending_overflow += 1;
            self.realign = true;
            return;
        }
        self.units.push_back(unit);
    }

    fn seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn finish_exec(&mut self, e: Exec, end: FinishAs) {
        let seq = self.seq();
        let (operation, rows, error, suspended, outcome) = end.resolve(e.rows, e.copy_out);
        self.done.push(PgStatement {
            text: e.text,
            operation,
            error,
            warning: e.warning,
            rows,
            suspended,
            simple: false,
            start_ns: e.start_ns,
            end_ns: self.now.exit_ns.max(e.start_ns),
            outcome,
            tid: e.tid,
            seq,
        });
    }

    /// Finishes the current statement of the Query unit at `idx`.
    fn finish_query_stmt(&mut self, idx: usize, end: FinishAs) {
        let now = self.now.exit_ns;
        let seq = self.next_seq;
        let Some(Unit::Query(q)) = self.units.get_mut(idx) else {
            return;
        };
        let Some(stmt) = q.stmts.pop_front() else {
            return;
        };
        q.done += 1;
        // Every statement of a Query starts when the Query was sent: the
        // server answers them in one write for small results, so a
        // statement's own start is not on the wire; this keeps client spans
        // enclosing server spans.
        let start = q.start_ns;
        q.last_end_ns = now.max(start);
        let (operation, rows, error, suspended, outcome) = end.resolve(stmt.rows, stmt.copy_out);
        let tid = q.tid;
        self.next_seq = seq + 1;
        self.done.push(PgStatement {
            text: stmt.text,
            operation,
            error,
            warning: stmt.warning,
            rows,
            suspended,
            simple: true,
            start_ns: start,
            end_ns: now.max(start),
            outcome,
            tid,
            seq,
        });
    }

    /// Ends every waiting unit: statements sent (and not skipped) become
    /// spans with `outcome`, ending at `end_ns`.
    fn drain(&mut self, outcome: Outcome, end_ns: u64) {
        let saved = self.now;
        self.now.exit_ns = end_ns;
        let skipping = self.skip_until_sync;
        while let Some(unit) = self.units.pop_front() {
            match unit {
                Unit::Execute(e) if !skipping => self.finish_exec(e, FinishAs::Outcome(outcome)),
                Unit::Execute(_) => self.counts.not_executed += 1,
                Unit::Query(q) if q.failed => self.counts.not_executed += q.stmts.len() as u64,
                Unit::Query(q) => {
                    self.units.push_front(Unit::Query(q));
                    while matches!(self.units.front(), Some(Unit::Query(q)) if !q.stmts.is_empty())
                    {
                        self.finish_query_stmt(0, FinishAs::Outcome(outcome));
                    }
                    self.units.pop_front();
                }
                _ => {}
            }
        }
        self.skip_until_sync = false;
        self.now = saved;
    }

    /// The index of the first unit, up to the first terminator, that
    /// `matches`; earlier non-terminator units lost their answers and end.
    fn take_matching(&mut self, matches: impl Fn(&Unit) -> bool) -> Option<usize> {
        let idx = self
            .units
            .iter()
            .position(|u| matches(u) || u.is_terminator())
            .filter(|&i| matches(&self.units[i]));
        let Some(idx) = idx else {
            self.counts.orphan_responses += 1;
            return None;
        };
        for _ in 0..idx {
            if let Some(Unit::Execute(e)) = self.units.pop_front() {
                self.finish_exec(e, FinishAs::Outcome(Outcome::Truncated));
            }
        }
        Some(0)
    }

    /// The statement currently answered: the front Execute or the front
    /// Query's current statement.
    fn current_rows(&mut self) -> Option<(&mut u64, &mut bool, &mut Option<String>)> {
        match self.units.front_mut()? {
            Unit::Execute(e) => Some((&mut e.rows, &mut e.copy_out, &mut e.warning)),
            Unit::Query(q) => q
                .stmts
                .front_mut()
                .map(|s| (&mut s.rows, &mut s.copy_out, &mut s.warning)),
            _ => None,
        }
    }

    /// After an extended-protocol error: the server skips until Sync.
    fn skip_to_sync(&mut self) {
        let sync = self.units.iter().position(Unit::is_terminator);
        let upto = sync.unwrap_or(self.units.len());
        for _ in 0..upto {
            if let Some(Unit::Execute(_)) = self.units.pop_front() {
                self.counts.not_executed += 1;
            }
        }
        if sync.is_none() {
            self.skip_until_sync = true;
        }
    }
}

/// How a statement ended.
enum FinishAs {
    Tag(Cow<'static, str>, Option<u64>),
    Error(ErrorFields),
    Suspended,
    Empty,
    Outcome(Outcome),
}

type Resolved = (
    Option<Cow<'static, str>>,
    Option<u64>,
    Option<ErrorFields>,
    bool,
    Outcome,
);

impl FinishAs {
    fn resolve(self, rows_seen: u64, copy_out: bool) -> Resolved {
        match self {
            FinishAs::Tag(op, count) => {
                let reports_rows = matches!(&*op, "SELECT" | "FETCH")
                    || (op == "COPY" && copy_out)
                    || rows_seen > 0;
                let rows = if reports_rows {
                    count.unwrap_or(rows_seen)
                } else {
                    0
                };
                let op = (!op.is_empty()).then_some(op);
                (op, Some(rows), None, false, Outcome::Complete)
            }
            FinishAs::Error(e) => (None, Some(rows_seen), Some(e), false, Outcome::Complete),
            FinishAs::Suspended => (None, Some(rows_seen), None, true, Outcome::Complete),
            FinishAs::Empty => (None, Some(0), None, false, Outcome::Complete),
            FinishAs::Outcome(o) => (None, (rows_seen > 0).then_some(rows_seen), None, false, o),
        }
    }
}

mod answers;
mod requests;

use answers::BackendSink;
use requests::FrontendSink;

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
