//! Frontend messages becoming units awaiting their answers (the server
//! reading, or the client writing, them).

use std::sync::Arc;

use super::{ConnInfo, Exec, MAX_PORTALS, Outcome, QueryCycle, State, StatementText, Stmt, Unit};
use crate::protocol::postgres::{
    framing::{DesyncReason, Message, Sink},
    frontend::{self, MAX_NAME, Untyped},
    sql,
    texts::{self, Parsed, Statement},
    wire::{self, Stream},
};

pub(super) struct FrontendSink<'a> {
    pub(super) st: &'a mut State,
}

impl FrontendSink<'_> {
    fn on_query(&mut self, m: &Message<'_>) {
        let st = &mut *self.st;
        let (raw, cut) = frontend::query_text(m.body, m.len, m.complete);
        let build = |text: &str| Parsed {
            raw: Arc::from(text),
            statements: sql::split_statements(text)
                .into_iter()
                .map(|(a, b)| Statement {
                    range: (a, b),
                    text: st.query_text(&text[a..b], cut && b == text.len(), false),
                })
                .collect(),
        };
        let parsed = texts::parsed(raw, cut, st.shape(true), build);
        let stmts = parsed
            .statements
            .iter()
            .map(|s| Stmt {
                text: StatementText::Known(Arc::clone(&s.text)),
                range: s.range,
                rows: 0,
                copy_out: false,
                warning: None,
            })
            .collect();
        st.group_start = None;
        let start_ns = st.start_ns(&m.start);
        st.push(Unit::Query(QueryCycle {
            stmts,
            raw: Some(Arc::clone(&parsed.raw)),
            done: 0,
            failed: false,
            start_ns,
            last_end_ns: start_ns,
            tid: m.start.tid,
        }));
    }

    fn note_group_start(&mut self, m: &Message<'_>) {
        if self.st.group_start.is_none() {
            self.st.group_start = Some((self.st.start_ns(&m.start), m.start.tid));
        }
    }
}

impl Sink for FrontendSink<'_> {
    fn message(&mut self, m: &Message<'_>) {
        // A new cycle while realigning: the answers to what is still
        // waiting were lost (the client only sends on after them).
        let starts_cycle =
            m.tag == b'Q' || (matches!(m.tag, b'P' | b'B') && self.st.group_start.is_none());
        if starts_cycle && self.st.realign && self.st.units.iter().any(Unit::is_terminator) {
            let end = self.st.last_backend_ns.max(1);
            self.st.drain(Outcome::Truncated, end);
            self.st.realign = false;
        }
        if self.st.skip_until_sync && m.tag != b'S' {
            if m.tag == b'E' {
                self.st.counts.not_executed += 1;
            }
            if matches!(m.tag, b'P' | b'B' | b'D' | b'E' | b'C') {
                return;
            }
        }
        match m.tag {
            0 => match frontend::untyped(m.body) {
                Untyped::Startup(p) => {
                    self.st.info = ConnInfo {
                        database: p.database.map(Arc::from),
                        user: p.user.map(Arc::from),
                        application_name: p.application_name.map(Arc::from),
                    };
                    self.st.counts.startups += 1;
                    self.st.push(Unit::Startup);
                }
                Untyped::SslRequest | Untyped::GssEncRequest => self.st.backend_answer = true,
                Untyped::CancelRequest => self.st.counts.cancel_requests += 1,
                Untyped::Other(_) => {}
            },
            b'Q' => self.on_query(m),
            b'P' => {
                self.note_group_start(m);
                let Some((name, raw, cut)) = frontend::parse(m.body, m.len, m.complete) else {
                    return;
                };
                let name: Box<str> = wire::text(name, MAX_NAME).into_boxed_str();
                let st = &*self.st;
                let build = |text: &str| Parsed {
                    raw: Arc::from(text),
                    statements: Box::new([Statement {
                        range: (0, text.len()),
                        text: st.query_text(text, cut, true),
                    }]),
                };
                let parsed = texts::parsed(raw, cut, st.shape(false), build);
                let text = Arc::clone(&parsed.statements[0].text);
                let max = self.st.limits.max_prepared;
                if self.st.prepared.insert(name.clone(), text, max) {
                    self.st.counts.prepared_evicted += 1;
                }
                self.st.push(Unit::Parse(name));
            }
            b'B' => {
                self.note_group_start(m);
                let (portal, statement) = frontend::bind(m.body).unwrap_or((b"", b""));
                let statement = wire::text(statement, MAX_NAME);
                let text = match self.st.prepared.get(&statement) {
                    Some(t) => StatementText::Known(Arc::clone(t)),
                    None => StatementText::Unknown {
                        statement: Some(statement),
                        portal: None,
                    },
                };
                let portals = &mut self.st.portals;
                if portals.len() >= MAX_PORTALS {
                    portals.clear();
                }
                portals.insert(wire::text(portal, MAX_NAME).into_boxed_str(), text);
                self.st.push(Unit::Bind);
            }
            b'D' => {
                self.note_group_start(m);
                self.st.push(Unit::Describe);
            }
            b'E' => {
                let (portal, _limit) = frontend::execute(m.body).unwrap_or((b"", 0));
                let portal = wire::text(portal, MAX_NAME);
                let text = match self.st.portals.get(portal.as_str()) {
                    Some(t) => t.clone(),
                    None => StatementText::Unknown {
                        statement: None,
                        portal: Some(portal),
                    },
                };
                if matches!(text, StatementText::Unknown { .. }) {
                    self.st.counts.unknown_statements += 1;
                }
                let (start_ns, tid) = self
                    .st
                    .group_start
                    .take()
                    .unwrap_or((self.st.start_ns(&m.start), m.start.tid));
                self.st.push(Unit::Execute(Exec {
                    text,
                    start_ns,
                    tid,
                    rows: 0,
                    copy_out: false,
                    warning: None,
                }));
            }
            b'C' => {
                if let Some((kind, name)) = frontend::target(m.body) {
                    let name = wire::text(name, MAX_NAME);
                    if kind == b'S' {
                        self.st.prepared.remove(&name);
                    } else {
                        self.st.portals.remove(name.as_str());
                    }
                }
                self.st.push(Unit::Close);
            }
            b'S' if self.st.copy_in => {}
            b'S' => {
                self.st.group_start = None;
                self.st.push(Unit::Sync);
            }
            b'c' | b'f' => self.st.copy_in = false,
            b'F' => self.st.push(Unit::FunctionCall),
            // Flush, Terminate, COPY data from the client, passwords.
            _ => {}
        }
    }

    fn negotiation_answer(&mut self, _answer: u8) {}

    fn desync(&mut self, reason: DesyncReason) {
        self.st.desyncs.push((Stream::Frontend, reason.as_str()));
        self.st.realign = true;
        self.st.group_start = None;
    }
}
