//! Backend messages answering the units waiting for them.

use super::{FinishAs, Outcome, State, Stop, Unit};
use crate::protocol::postgres::{
    backend::{self, ErrorFields},
    framing::{DesyncReason, Message, Sink},
    wire::Stream,
};

pub(super) struct BackendSink<'a> {
    pub(super) st: &'a mut State,
}

impl BackendSink<'_> {
    /// A statement's completion (CommandComplete, PortalSuspended,
    /// EmptyQueryResponse).
    fn completion(&mut self, end: FinishAs) {
        let st = &mut *self.st;
        // Which unit this answers: the first Execute or unfinished Query.
        if st
            .take_matching(|u| match u {
                Unit::Execute(_) => true,
                Unit::Query(q) => !q.stmts.is_empty(),
                _ => false,
            })
            .is_none()
        {
            return;
        }
        match st.units.front() {
            Some(Unit::Execute(_)) => {
                if let Some(Unit::Execute(e)) = st.units.pop_front() {
                    st.finish_exec(e, end);
                }
            }
            Some(Unit::Query(_)) => st.finish_query_stmt(0, end),
            _ => {}
        }
    }

    /// An ErrorResponse: it answers the front unit.
    fn error(&mut self, fields: ErrorFields) {
        let st = &mut *self.st;
        match st.units.front() {
            Some(Unit::Execute(_)) => {
                if let Some(Unit::Execute(e)) = st.units.pop_front() {
                    st.finish_exec(e, FinishAs::Error(fields));
                }
                st.skip_to_sync();
            }
            Some(Unit::Query(q)) if !q.stmts.is_empty() => self.query_error(fields),
            Some(Unit::Query(_)) => {}
            Some(Unit::Startup) => {
                st.counts.startup_errors += 1;
                st.units.pop_front();
            }
            Some(Unit::Parse(_) | Unit::Bind | Unit::Describe | Unit::Close) => {
                if let Some(Unit::Parse(name)) = st.units.pop_front() {
                    st.prepared.remove(&name);
                }
                // The statement the group was going to execute failed: its
                // Execute carries the error (a bare prepare has none).
                let exec = st
                    .units
                    .iter()
                    .position(|u| matches!(u, Unit::Execute(_)) || u.is_terminator())
                    .filter(|&i| matches!(st.units[i], Unit::Execute(_)));
                if let Some(i) = exec {
                    st.units.drain(..i);
                    if let Some(Unit::Execute(e)) = st.units.pop_front() {
                        st.finish_exec(e, FinishAs::Error(fields));
                    }
                }
                st.skip_to_sync();
            }
            // A failed function call: ReadyForQuery follows.
            Some(Unit::FunctionCall) => {}
            // Asynchronous (FATAL at shutdown, idle timeout).
            Some(Unit::Sync) | None => st.counts.orphan_responses += 1,
        }
    }

    /// An error in a simple Query: it belongs to the statement holding the
    /// error position if one is given (a syntax error fails the whole
    /// string before any statement runs), else to the current one; the
    /// statements after it do not run.
    fn query_error(&mut self, fields: ErrorFields) {
        let st = &mut *self.st;
        let Some(Unit::Query(q)) = st.units.front_mut() else {
            return;
        };
        if let (Some(pos), Some(raw)) = (fields.position, q.raw.as_deref()) {
            let byte = raw
                .char_indices()
                .nth(pos.saturating_sub(1))
                .map(|(i, _)| i);
            if let Some(byte) = byte
                && let Some(k) = q
                    .stmts
                    .iter()
                    .position(|s| byte < s.range.1.max(s.range.0 + 1))
            {
                for _ in 0..k {
                    q.stmts.pop_front();
                    st.counts.not_executed += 1;
                }
            }
        }
        let Some(Unit::Query(q)) = st.units.front_mut() else {
            return;
        };
        q.failed = true;
        st.finish_query_stmt(0, FinishAs::Error(fields));
        if let Some(Unit::Query(q)) = st.units.front_mut() {
            st.counts.not_executed += q.stmts.len() as u64;
            q.stmts.clear();
        }
    }

    fn ready_for_query(&mut self) {
        let st = &mut *self.st;
        if std::mem::take(&mut st.realign) {
            let end = st.now.exit_ns;
            st.drain(Outcome::Truncated, end);
            return;
        }
        let Some(term) = st.units.iter().position(Unit::is_terminator) else {
            st.counts.orphan_responses += 1;
            return;
        };
        let skipping = st.skip_until_sync;
        for _ in 0..term {
            match st.units.pop_front() {
                Some(Unit::Execute(_)) if skipping => st.counts.not_executed += 1,
                Some(Unit::Execute(e)) => st.finish_exec(e, FinishAs::Outcome(Outcome::Truncated)),
                _ => {}
            }
        }
        if let Some(Unit::Query(q)) = st.units.pop_front() {
            // Statements without an answer: after an error they did not
            // run; otherwise the split did not match the server's (counted
            // as orphans, no span).
            if q.failed {
                st.counts.not_executed += q.stmts.len() as u64;
            } else if !q.stmts.is_empty() {
                st.counts.orphan_responses += q.stmts.len() as u64;
            }
        }
        st.skip_until_sync = false;
    }

    fn pop_if(&mut self, matches: impl Fn(&Unit) -> bool) {
        if self.st.take_matching(matches).is_some() {
            self.st.units.pop_front();
        }
    }
}

impl Sink for BackendSink<'_> {
    fn message(&mut self, m: &Message<'_>) {
        match m.tag {
            b'C' => {
                let (op, count) = backend::command_tag(m.body);
                self.st.row_hint = Some(None);
                self.completion(FinishAs::Tag(op, count));
            }
            b'E' => {
                let fields = backend::error_fields(m.body);
                self.st.row_hint = Some(None);
                self.error(fields);
            }
            b'D' => {
                if let Some((rows, _, _)) = self.st.current_rows() {
                    *rows += 1;
                }
            }
            b's' => {
                self.st.row_hint = Some(None);
                self.completion(FinishAs::Suspended);
            }
            b'I' => {
                let empty_query =
                    matches!(self.st.units.front(), Some(Unit::Query(q)) if q.stmts.is_empty());
                if !empty_query {
                    self.completion(FinishAs::Empty);
                }
            }
            b'Z' => self.ready_for_query(),
            b'1' => self.pop_if(|u| matches!(u, Unit::Parse(_))),
            b'2' => self.pop_if(|u| matches!(u, Unit::Bind)),
            b'3' => self.pop_if(|u| matches!(u, Unit::Close)),
            b'T' | b'n' => {
                if m.tag == b'T' {
                    self.st.row_hint = Some(backend::columns(m.body));
                }
                if self
                    .st
                    .units
                    .iter()
                    .take_while(|u| !u.is_terminator())
                    .any(|u| matches!(u, Unit::Describe))
                {
                    self.pop_if(|u| matches!(u, Unit::Describe));
                }
            }
            b'H' => {
                if let Some((_, copy_out, _)) = self.st.current_rows() {
                    *copy_out = true;
                }
            }
            b'G' => {
                // Copy-in mode: Syncs the client sent after the Execute are
                // ignored by the server (only the one after CopyDone counts).
                self.st.copy_in = true;
                if matches!(self.st.units.front(), Some(Unit::Execute(_))) {
                    let mut i = 1;
                    while i < self.st.units.len() {
                        if matches!(self.st.units[i], Unit::Sync) {
                            self.st.units.remove(i);
                        } else {
                            i += 1;
                        }
                    }
                }
            }
            b'W' => self.st.stop = Some(Stop::Replication),
            b'N' => {
                let f = backend::error_fields(m.body);
                let is_warning = f.code.as_deref().is_some_and(|c| c.starts_with("01"));
                if is_warning && let Some((_, _, warning)) = self.st.current_rows() {
                    *warning = f.code;
                }
            }
            b'A' => self.st.counts.notifications += 1,
            b'V' => self.pop_if(|u| matches!(u, Unit::FunctionCall)),
            // Authentication requests, ParameterDescription, ParameterStatus,
            // BackendKeyData, CopyIn/Out data and done,
            // NegotiateProtocolVersion.
            _ => {}
        }
    }

    fn negotiation_answer(&mut self, answer: u8) {
        match answer {
            b'N' => {
                self.st.counts.ssl_refused += 1;
                self.st.frontend_untyped = true;
            }
            b'S' => self.st.stop = Some(Stop::Encrypted("tls")),
            _ => self.st.stop = Some(Stop::Encrypted("gssapi")),
        }
    }

    fn desync(&mut self, reason: DesyncReason) {
        self.st.desyncs.push((Stream::Backend, reason.as_str()));
        self.st.realign = true;
    }
}
