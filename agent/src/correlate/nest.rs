//! In-process nesting: the client calls a process makes while it handles a
//! server request become children of that request's server span.
//!
//! The facts: every SERVER span of a process (its window: start, end, the
//! thread that read the request), the CLIENT span's window and thread, and
//! — from the sessions ([`crate::protocol::Session::oldest_pending_start`])
//! — whether a server request of the process is still in flight. Two
//! rules, never a guess:
//!
//! - **same thread** (thread-per-request servers: the thread that read a
//!   request handles it to the end): the one server request read by the
//!   client call's thread whose window contains the call. Used only for a
//!   process learnt to be thread-per-request: its last [`TRUST_AFTER`]
//!   server requests were each answered by the thread that read them, and
//!   no thread ever had two requests in flight at once. One request
//!   answered by another thread, or two overlapping on one thread (an event
//!   loop, an async runtime), and the process uses the second rule for good.
//! - **sole request in flight** (event loops, async runtimes, and processes
//!   not learnt yet): exactly one server request of the process was in
//!   flight at any moment of the call, and its window contains the call.
//!   With two or more, there is no parent (counted `nest_ambiguous`).
//!
//! A client call that carries a `traceparent` keeps the parent it names
//! (an instrumented application made it), unless its enclosing request
//! carried the very same one (a proxy forwarded the header): then it nests
//! like the others.
//!
//! Limits, stated: a call made by background work of the process (a pool's
//! health check, a timer) while exactly one request is in flight is taken
//! for that request's; a request handed to another thread inside a
//! thread-per-request server is not followed. A child's parent carries
//! `agent.correlation.parent` (`same_thread` / `sole_request_in_flight`)
//! saying which rule made it.

use std::collections::VecDeque;

use foldhash::HashMap;

use super::SpanId;
use crate::protocol::PendingRequest;

/// Clean server requests before a process is trusted as thread-per-request.
pub const TRUST_AFTER: u32 = 8;
/// Server windows kept per process.
pub const MAX_WINDOWS: usize = 4096;
/// Threads whose last server request is remembered for learning.
const MAX_THREADS: usize = 4096;
/// Windows arrive in about end order; a later one may end this much
/// earlier than one before it.
const ORDER_SLACK_NS: u64 = 100_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Not enough server requests seen yet.
    Learning(u32),
    ThreadPerRequest,
    /// Requests interleave on threads, or move between them.
    Shared,
}

/// A completed server request of the process.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub span: SpanId,
    pub start_ns: u64,
    pub end_ns: u64,
    pub tid: u32,
    /// The request's incoming trace context, if it carried one.
    pub joined: Option<super::stitch::Joined>,
}

/// A client call to place.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub start_ns: u64,
    pub end_ns: u64,
    pub tid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Parent(SpanId, &'static str),
    /// Not decidable yet: a server request in flight may enclose it.
    Wait,
    /// No parent: why (a counter's label).
    Root(&'static str),
}

#[derive(Debug)]
pub struct Proc {
    pub windows: VecDeque<Window>,
    /// Client spans waiting to be placed.
    pub held: Vec<SpanId>,
    /// The process made client calls (its released server spans are
    /// remembered for calls placed late).
    pub calls: bool,
    pub mode: Mode,
    /// End of the latest window dropped (bound or age): calls starting
    /// before it cannot be decided.
    pub forgotten_until: u64,
    /// The last server request (start, end) of each thread, while the
    /// mode is still learnt.
    last_by_thread: HashMap<u32, (u64, u64)>,
}

impl Default for Proc {
    fn default() -> Self {
        Self {
            windows: VecDeque::new(),
            held: Vec::new(),
            calls: false,
            mode: Mode::Learning(0),
            forgotten_until: 0,
            last_by_thread: HashMap::default(),
        }
    }
}

impl Proc {
    /// A server request of the process completed; `write_tid`: the thread
    /// whose write completed it (when a write did).
    pub fn server_done(&mut self, w: Window, write_tid: Option<u32>) {
        self.learn(&w, write_tid);
        if self.windows.len() >= MAX_WINDOWS
            && let Some(old) = self.windows.pop_front()
        {
            self.forgotten_until = self.forgotten_until.max(old.end_ns);
        }
        self.windows.push_back(w);
    }

    /// A completed server request whose window is not kept (the process
    /// never made a call yet): the mode is learnt, and a call starting
    /// before its end can no longer be decided (`forgotten_until`), so the
    /// window missing never makes another one look like the sole request.
    pub fn server_done_unkept(&mut self, w: &Window, write_tid: Option<u32>) {
        self.learn(w, write_tid);
        self.forgotten_until = self.forgotten_until.max(w.end_ns);
    }

    /// What a completed server request tells of the mode (without keeping
    /// its window: a process that never made a call needs none). Shared is
    /// final: nothing more to learn. O(1): the request is compared with the
    /// last one of its thread.
    pub fn learn(&mut self, w: &Window, write_tid: Option<u32>) {
        if self.mode == Mode::Shared {
            return;
        }
        if self.last_by_thread.len() >= MAX_THREADS {
            self.last_by_thread.clear();
        }
        let same_thread_overlap = self
            .last_by_thread
            .insert(w.tid, (w.start_ns, w.end_ns))
            .is_some_and(|(start, end)| start < w.end_ns && w.start_ns < end);
        let moved = write_tid.is_some_and(|t| t != w.tid);
        self.mode = match self.mode {
            _ if same_thread_overlap || moved => Mode::Shared,
            Mode::Learning(n) if write_tid.is_some() => {
                if n + 1 >= TRUST_AFTER {
                    Mode::ThreadPerRequest
                } else {
                    Mode::Learning(n + 1)
                }
            }
            m => m,
        };
        if self.mode == Mode::Shared {
            self.last_by_thread = HashMap::default();
        }
    }

    /// The incoming trace context of the server request `span`.
    pub fn joined_of(&self, span: SpanId) -> Option<super::stitch::Joined> {
        self.windows
            .iter()
            .rev()
            .find(|w| w.span == span)
            .and_then(|w| w.joined)
    }

    /// Forgets windows that ended before `horizon_ns`.
    pub fn prune(&mut self, horizon_ns: u64) {
        while let Some(w) = self.windows.front() {
            if w.end_ns >= horizon_ns {
                break;
            }
            self.forgotten_until = self.forgotten_until.max(w.end_ns);
            self.windows.pop_front();
        }
    }

    /// Where `call` goes; `pending`: the server requests of the process
    /// still in flight.
    pub fn place(&mut self, call: Call, pending: &[PendingRequest]) -> Placement {
        if call.start_ns <= self.forgotten_until {
            return Placement::Root("nest_forgotten");
        }
        let pending_overlaps = pending.iter().any(|p| p.start_ns <= call.end_ns);
        let pending_on_thread = pending
            .iter()
            .any(|p| p.tid == call.tid && p.start_ns <= call.end_ns);
        let overlapping = || {
            self.windows
                .iter()
                .rev()
                .take_while(move |w| w.end_ns.saturating_add(ORDER_SLACK_NS) >= call.start_ns)
                .filter(move |w| w.start_ns <= call.end_ns && w.end_ns >= call.start_ns)
        };
        let contains = |w: &Window| w.start_ns <= call.start_ns && call.end_ns <= w.end_ns;
        if self.mode == Mode::ThreadPerRequest {
            let mut same = overlapping().filter(|w| w.tid == call.tid && contains(w));
            let placement = match (same.next(), same.next()) {
                // Two requests at once on one thread: not thread-per-request.
                (Some(_), _) if pending_on_thread => None,
                (Some(w), None) => Some(Placement::Parent(w.span, "same_thread")),
                (Some(_), Some(_)) => None,
                (None, _) if pending_on_thread => Some(Placement::Wait),
                (None, _) => Some(Placement::Root("nest_no_request")),
            };
            return placement.unwrap_or_else(|| {
                self.mode = Mode::Shared;
                Placement::Root("nest_ambiguous")
            });
        }
        let mut it = overlapping();
        match (it.next(), it.next()) {
            (Some(_), Some(_)) => Placement::Root("nest_ambiguous"),
            (Some(_), None) if pending_overlaps => Placement::Root("nest_ambiguous"),
            (Some(w), None) if contains(w) => Placement::Parent(w.span, "sole_request_in_flight"),
            (Some(_), None) => Placement::Root("nest_no_request"),
            (None, _) if pending_overlaps => Placement::Wait,
            (None, _) => Placement::Root("nest_no_request"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: u8, start_ns: u64, end_ns: u64, tid: u32) -> Window {
        Window {
            span: [id; 8],
            start_ns,
            end_ns,
            tid,
            joined: None,
        }
    }

    fn pr(start_ns: u64, tid: u32) -> PendingRequest {
        PendingRequest { start_ns, tid }
    }

    fn call(start_ns: u64, end_ns: u64, tid: u32) -> Call {
        Call {
            start_ns,
            end_ns,
            tid,
        }
    }

    #[test]
    fn sole_request_in_flight() {
        let mut p = Proc::default();
        p.server_done(w(1, 100, 200, 7), None);
        assert_eq!(
            p.place(call(120, 150, 9), &[]),
            Placement::Parent([1; 8], "sole_request_in_flight")
        );
        // Another request still in flight that started during the call.
        assert_eq!(
            p.place(call(120, 150, 9), &[pr(140, 3)]),
            Placement::Root("nest_ambiguous")
        );
        // One that starts after the call ended does not matter.
        assert_eq!(
            p.place(call(120, 150, 9), &[pr(160, 3)]),
            Placement::Parent([1; 8], "sole_request_in_flight")
        );
        // Outside every request.
        assert_eq!(
            p.place(call(250, 260, 9), &[]),
            Placement::Root("nest_no_request")
        );
        // Overlapping only partly: not the cause.
        assert_eq!(
            p.place(call(190, 230, 9), &[]),
            Placement::Root("nest_no_request")
        );
    }

    #[test]
    fn waits_for_the_enclosing_request() {
        let mut p = Proc::default();
        assert_eq!(p.place(call(120, 150, 9), &[pr(100, 7)]), Placement::Wait);
        p.server_done(w(1, 100, 200, 7), None);
        assert_eq!(
            p.place(call(120, 150, 9), &[]),
            Placement::Parent([1; 8], "sole_request_in_flight")
        );
    }

    #[test]
    fn two_in_flight_is_no_parent() {
        let mut p = Proc::default();
        p.server_done(w(1, 100, 200, 7), None);
        p.server_done(w(2, 110, 210, 8), None);
        assert_eq!(
            p.place(call(120, 150, 7), &[]),
            Placement::Root("nest_ambiguous")
        );
    }

    #[test]
    fn thread_per_request_learnt_then_exact() {
        let mut p = Proc::default();
        assert_eq!(p.mode, Mode::Learning(0));
        for i in 0..TRUST_AFTER as u64 {
            p.server_done(w(9, i * 10, i * 10 + 5, 7), Some(7));
        }
        assert_eq!(p.mode, Mode::ThreadPerRequest);
        p.server_done(w(1, 100, 200, 7), Some(7));
        p.server_done(w(2, 110, 210, 8), Some(8));
        assert_eq!(
            p.place(call(120, 150, 8), &[]),
            Placement::Parent([2; 8], "same_thread")
        );
        // A thread without a request: its enclosing one may still come.
        assert_eq!(p.place(call(120, 150, 5), &[pr(115, 5)]), Placement::Wait);
        // A request of another thread in flight does not matter.
        assert_eq!(
            p.place(call(120, 150, 8), &[pr(115, 9)]),
            Placement::Parent([2; 8], "same_thread")
        );
        assert_eq!(
            p.place(call(120, 150, 5), &[]),
            Placement::Root("nest_no_request")
        );
    }

    #[test]
    fn shared_threads_are_detected() {
        let mut p = Proc::default();
        for i in 0..TRUST_AFTER as u64 {
            p.server_done(w(9, i * 10, i * 10 + 5, 7), Some(7));
        }
        // Answered by another thread than the reader: an async runtime.
        p.server_done(w(1, 100, 200, 7), Some(8));
        assert_eq!(p.mode, Mode::Shared);
        let mut q = Proc::default();
        q.server_done(w(1, 100, 200, 7), Some(7));
        q.server_done(w(2, 150, 250, 7), Some(7));
        assert_eq!(q.mode, Mode::Shared, "two requests at once on one thread");
        // Learnt as thread-per-request (sequential requests on one event
        // loop look so), then a request in flight on the call's thread
        // beside the completed one: no parent, and never again by thread.
        let mut r = Proc::default();
        for i in 0..TRUST_AFTER as u64 {
            r.server_done(w(9, i * 10, i * 10 + 5, 7), Some(7));
        }
        r.server_done(w(1, 100, 200, 7), Some(7));
        assert_eq!(
            r.place(call(120, 150, 7), &[pr(130, 7)]),
            Placement::Root("nest_ambiguous")
        );
        assert_eq!(r.mode, Mode::Shared);
    }

    #[test]
    fn forgotten_windows_make_calls_undecidable() {
        let mut p = Proc::default();
        p.server_done(w(1, 100, 200, 7), None);
        p.prune(300);
        assert_eq!(
            p.place(call(150, 160, 7), &[]),
            Placement::Root("nest_forgotten")
        );
    }
}
