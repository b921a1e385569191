//! One HTTP/1.x connection seen from one process: two [`Parser`]s (request
//! stream, response stream) and the queue of requests awaiting their
//! response (pipelining), producing [`HttpExchange`]s.
//!
//! Timestamps: a message starts at the *entry* of the write that sent its
//! first byte (client side) or the *exit* of the read that received it
//! (server side), and ends at the exit of the syscall that moved its last
//! byte. So a client span encloses the server span of the same request.

use std::collections::VecDeque;

use agent_common::Direction;

use super::parser::{BodyHint, DesyncReason, Head, Limits, MessageKind, Method, Parser, Sink};

pub use crate::protocol::{EventTimes, Outcome};

/// What an upgraded connection speaks now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// HTTP/2 over cleartext (`101 Switching Protocols` to `h2c`).
    H2c,
    /// Anything else (WebSocket, a CONNECT tunnel, ...): not parsed.
    Opaque,
}

/// The request of an `Upgrade: h2c` exchange answered with 101: its
/// response comes in HTTP/2, on stream 1.
#[derive(Debug)]
pub struct UpgradedRequest {
    pub head: Box<Head>,
    pub start_ns: u64,
    pub tid: u32,
    pub seq: u64,
    pub body_bytes: u64,
}

/// A request and (if any) its response.
#[derive(Debug)]
pub struct HttpExchange {
    pub request: Box<Head>,
    pub response: Option<Box<Head>>,
    /// Kernel monotonic nanoseconds.
    pub start_ns: u64,
    pub end_ns: u64,
    pub outcome: Outcome,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    /// Thread that read (server) or wrote (client) the request.
    pub tid: u32,
    /// Order of the request on the connection, from 0.
    pub seq: u64,
}

/// Things worth counting that are not exchanges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounts {
    /// Responses with no request waiting (the agent joined mid-exchange).
    pub orphan_responses: u64,
    /// Requests dropped because too many were waiting on one connection
    /// (their responses are still consumed, so pairing stays aligned).
    pub pending_overflow: u64,
}

/// One side's desync, reported to the caller for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desync {
    pub stream: MessageKind,
    pub reason: &'static str,
}

struct Pending {
    head: Box<Head>,
    start_ns: u64,
    tid: u32,
    seq: u64,
    body_bytes: u64,
}

/// A message seen to have begun whose head is not parsed yet.
#[derive(Clone, Copy)]
struct Begun {
    start_ns: u64,
    tid: u32,
}

struct ResponseInProgress {
    head: Option<Box<Head>>,
}

/// Everything except the two parsers, so a parser can feed a sink that
/// borrows this mutably.
struct State {
    pending: VecDeque<Pending>,
    max_pending: usize,
    /// Requests dropped from the front of `pending` whose responses have
    /// not been seen yet.
    dropped_front: u64,
    next_seq: u64,
    request_begun: Option<Begun>,
    response: Option<ResponseInProgress>,
    upgraded: bool,
    /// The 101 response switched to HTTP/2 (`Upgrade: h2c`).
    upgraded_to_h2c: bool,
    /// The h2c request awaiting its HTTP/2 response.
    h2c_request: Option<UpgradedRequest>,
    /// Bytes after the 101 in the syscall that carried it (HTTP/2 frames).
    h2c_rest: Vec<u8>,
    now: EventTimes,
    /// Start timestamp rule for the stream being fed.
    start_at_enter: bool,
    last_ns: u64,
    counts: SessionCounts,
    desyncs: Vec<Desync>,
}

pub struct Http1Session {
    requests: Parser,
    responses: Parser,
    /// The process accepted the connection (reads requests).
    is_server: bool,
    state: State,
}

impl Http1Session {
    pub fn new(is_server: bool, limits: Limits, max_pending: usize) -> Self {
        Self {
            requests: Parser::new(MessageKind::Request, limits),
            responses: Parser::new(MessageKind::Response, limits),
            is_server,
            state: State {
                pending: VecDeque::new(),
                max_pending: max_pending.max(1),
                dropped_front: 0,
                next_seq: 0,
                request_begun: None,
                response: None,
                upgraded: false,
                upgraded_to_h2c: false,
                h2c_request: None,
                h2c_rest: Vec::new(),
                now: EventTimes::default(),
                start_at_enter: false,
                last_ns: 0,
                counts: SessionCounts::default(),
                desyncs: Vec::new(),
            },
        }
    }

    /// Feeds the bytes of one syscall. Completed exchanges go to `out`.
    pub fn on_data(
        &mut self,
        direction: Direction,
        data: &[u8],
        gap: u64,
        times: EventTimes,
        out: &mut Vec<HttpExchange>,
    ) {
        if self.state.upgraded {
            return;
        }
        let st = &mut self.state;
        st.now = times;
        st.last_ns = st.last_ns.max(times.exit_ns);
        st.start_at_enter = direction == Direction::Egress;
        let requests = (direction == Direction::Ingress) == self.is_server;
        if requests {
            self.requests.feed(data, gap, &mut RequestSink { st });
        } else {
            let used = self
                .responses
                .feed(data, gap, &mut ResponseSink { st, out });
            if st.upgraded_to_h2c && used < data.len() {
                st.h2c_rest = data[used..].to_vec();
            }
        }
    }

    /// After an h2c upgrade: the upgrading request and the HTTP/2 bytes
    /// that followed the 101 in its syscall.
    pub fn take_h2c(&mut self) -> (Option<UpgradedRequest>, Vec<u8>) {
        (
            self.state.h2c_request.take(),
            std::mem::take(&mut self.state.h2c_rest),
        )
    }

    /// Reports requests that have waited longer than `timeout_ns` for a
    /// response as timed out (at `now_ns`).
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64, out: &mut Vec<HttpExchange>) {
        let st = &mut self.state;
        loop {
            // A response under way belongs to the oldest request: let it run.
            if st.response.as_ref().is_some_and(|r| r.head.is_some()) {
                return;
            }
            let Some(front) = st.pending.front() else {
                return;
            };
            if now_ns.saturating_sub(front.start_ns) < timeout_ns {
                return;
            }
            let p = st.pending.pop_front().expect("front exists");
            // Requests older than this one will not be answered either.
            st.dropped_front = 0;
            out.push(finish(p, None, now_ns, 0, Outcome::Timeout));
        }
    }

    /// The connection ended at `now_ns`: bodies delimited by the close end
    /// here; requests still waiting end as [`Outcome::ConnectionClosed`].
    pub fn close(&mut self, now_ns: u64, out: &mut Vec<HttpExchange>) {
        let st = &mut self.state;
        st.now = EventTimes {
            enter_ns: now_ns,
            exit_ns: now_ns,
            tid: st.now.tid,
        };
        if !st.upgraded {
            self.requests.close(&mut RequestSink { st });
            self.responses.close(&mut ResponseSink { st, out });
        }
        let response = st.response.take().and_then(|r| r.head);
        if response.is_some() && st.pending.is_empty() {
            // A response cut by the close, with no request waiting.
            st.counts.orphan_responses += 1;
        }
        let mut response = response;
        while let Some(p) = st.pending.pop_front() {
            out.push(finish(
                p,
                response.take(),
                st.last_ns.max(now_ns),
                0,
                Outcome::ConnectionClosed,
            ));
        }
    }

    /// The requests awaiting (the end of) their responses.
    pub fn pending_requests(&self, out: &mut Vec<crate::protocol::PendingRequest>) {
        use crate::protocol::PendingRequest;
        out.extend(self.state.pending.iter().map(|p| PendingRequest {
            start_ns: p.start_ns,
            tid: p.tid,
        }));
        if let Some(b) = self.state.request_begun {
            out.push(PendingRequest {
                start_ns: b.start_ns,
                tid: b.tid,
            });
        }
    }

    /// Nothing in flight (safe to forget after an idle period).
    pub fn is_idle(&self) -> bool {
        self.state.pending.is_empty()
            && self.state.response.is_none()
            && self.requests.is_idle()
            && self.responses.is_idle()
    }

    /// The stream switched protocols (101, CONNECT tunnel): nothing more to
    /// parse on this connection.
    pub fn is_upgraded(&self) -> bool {
        self.state.upgraded
    }

    /// What the connection switched to, once it has.
    pub fn upgrade(&self) -> Option<Upgrade> {
        match (self.state.upgraded, self.state.upgraded_to_h2c) {
            (false, _) => None,
            (true, true) => Some(Upgrade::H2c),
            (true, false) => Some(Upgrade::Opaque),
        }
    }

    /// Counts since the last call.
    pub fn take_counts(&mut self) -> SessionCounts {
        std::mem::take(&mut self.state.counts)
    }

    /// Desyncs since the last call.
    pub fn take_desyncs(&mut self) -> Vec<Desync> {
        std::mem::take(&mut self.state.desyncs)
    }

    /// Bytes buffered by the two parsers.
    pub fn buffered(&self) -> usize {
        self.requests.buffered() + self.responses.buffered()
    }
}

fn finish(
    p: Pending,
    response: Option<Box<Head>>,
    end_ns: u64,
    response_body_bytes: u64,
    outcome: Outcome,
) -> HttpExchange {
    HttpExchange {
        request: p.head,
        response,
        start_ns: p.start_ns,
        end_ns: end_ns.max(p.start_ns),
        outcome,
        request_body_bytes: p.body_bytes,
        response_body_bytes,
        tid: p.tid,
        seq: p.seq,
    }
}

impl State {
    fn start_ns(&self) -> u64 {
        if self.start_at_enter {
            self.now.enter_ns
        } else {
            self.now.exit_ns
        }
    }
}

struct RequestSink<'a> {
    st: &'a mut State,
}

impl Sink for RequestSink<'_> {
    fn begin(&mut self) {
        self.st.request_begun = Some(Begun {
            start_ns: self.st.start_ns(),
            tid: self.st.now.tid,
        });
    }

    fn head(&mut self, head: Box<Head>) -> BodyHint {
        let begun = self.st.request_begun.take().unwrap_or(Begun {
            start_ns: self.st.start_ns(),
            tid: self.st.now.tid,
        });
        if self.st.pending.len() >= self.st.max_pending {
            // Drop the oldest but remember it: its response must still be
            // consumed for the later requests to pair with theirs.
            self.st.pending.pop_front();
            self.st.dropped_front += 1;
            self.st.counts.pending_overflow += 1;
        }
        let seq = self.st.next_seq;
        self.st.next_seq += 1;
        self.st.pending.push_back(Pending {
            head,
            start_ns: begun.start_ns,
            tid: begun.tid,
            seq,
            body_bytes: 0,
        });
        BodyHint::Normal
    }

    fn end(&mut self, body_bytes: u64) {
        if let Some(p) = self.st.pending.back_mut() {
            p.body_bytes = body_bytes;
        }
    }

    fn desync(&mut self, reason: DesyncReason) {
        self.st.request_begun = None;
        self.st.desyncs.push(Desync {
            stream: MessageKind::Request,
            reason: reason.as_str(),
        });
    }

    fn upgraded(&mut self, _upgrade: Option<&str>) {
        self.st.upgraded = true;
    }
}

struct ResponseSink<'a> {
    st: &'a mut State,
    out: &'a mut Vec<HttpExchange>,
}

impl ResponseSink<'_> {
    /// Completes the oldest waiting request with the response in progress.
    fn complete(&mut self, body_bytes: u64, outcome: Outcome) {
        let Some(resp) = self.st.response.take() else {
            return;
        };
        let Some(head) = resp.head else {
            return;
        };
        if self.st.dropped_front > 0 {
            // The response of a request dropped on overflow.
            self.st.dropped_front -= 1;
            return;
        }
        match self.st.pending.pop_front() {
            Some(p) => self.out.push(finish(
                p,
                Some(head),
                self.st.now.exit_ns,
                body_bytes,
                outcome,
            )),
            None => self.st.counts.orphan_responses += 1,
        }
    }
}

fn is_interim(head: &Head) -> bool {
    matches!(head.status, Some(s) if (100..200).contains(&s) && s != 101)
}

impl Sink for ResponseSink<'_> {
    fn begin(&mut self) {
        self.st.response = Some(ResponseInProgress { head: None });
    }

    fn head(&mut self, head: Box<Head>) -> BodyHint {
        let request_method = self.st.pending.front().and_then(|p| p.head.method.as_ref());
        let status = head.status.unwrap_or(0);
        let hint = match request_method {
            Some(Method::Head) => BodyHint::NoBody,
            Some(Method::Connect) if (200..300).contains(&status) => BodyHint::Tunnel,
            _ => BodyHint::Normal,
        };
        let resp = self
            .st
            .response
            .get_or_insert(ResponseInProgress { head: None });
        resp.head = Some(head);
        hint
    }

    fn end(&mut self, body_bytes: u64) {
        let interim = self
            .st
            .response
            .as_ref()
            .and_then(|r| r.head.as_deref())
            .is_some_and(is_interim);
        if interim {
            // 100 Continue and friends: the final response follows.
            self.st.response = None;
            return;
        }
        self.complete(body_bytes, Outcome::Complete);
    }

    fn desync(&mut self, reason: DesyncReason) {
        self.st.desyncs.push(Desync {
            stream: MessageKind::Response,
            reason: reason.as_str(),
        });
        let has_final_head = self
            .st
            .response
            .as_ref()
            .and_then(|r| r.head.as_ref())
            .is_some_and(|h| !is_interim(h));
        if has_final_head && reason == DesyncReason::ClosedMidMessage {
            // The connection ended mid-response: `close()` reports it as
            // ConnectionClosed, with this head.
            return;
        }
        if has_final_head {
            self.complete(0, Outcome::Truncated);
        } else {
            self.st.response = None;
        }
    }

    fn upgraded(&mut self, upgrade: Option<&str>) {
        let h2c = upgrade.is_some_and(|u| u.trim().eq_ignore_ascii_case("h2c"))
            && self
                .st
                .response
                .as_ref()
                .and_then(|r| r.head.as_ref())
                .is_some_and(|h| h.status == Some(101));
        if h2c && self.st.dropped_front == 0 {
            // The request is answered in HTTP/2 (stream 1): hand it over
            // instead of ending it with the 101.
            self.st.response = None;
            self.st.h2c_request = self.st.pending.pop_front().map(|p| UpgradedRequest {
                head: p.head,
                start_ns: p.start_ns,
                tid: p.tid,
                seq: p.seq,
                body_bytes: p.body_bytes,
            });
        } else {
            // The 101 (or CONNECT 2xx) response completes its request.
            self.complete(0, Outcome::Complete);
        }
        self.st.upgraded = true;
        self.st.upgraded_to_h2c = h2c;
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
