//! The correlation stage, between the protocol sessions and the export
//! queue: every finished span is measured (RED metrics, `crate::red`),
//! then placed in its local trace tree, sampled with its tree, and queued.
//!
//! - `stitch`: a SERVER span is the child of the CLIENT span that sent its
//!   request when both ends are on this host (socket pair and request
//!   order, verified by times and trace context);
//! - `nest`: a CLIENT span is the child of the SERVER span its process was
//!   handling (same thread for thread-per-request servers, else the sole
//!   request in flight);
//! - `sample`: one decision per local tree.
//!
//! Spans complete inside out: a backend's SERVER span before the CLIENT
//! span that called it (the client reads the response after the server
//! wrote it), a client call before the server request that made it. So a
//! span whose parent may still come is **held**: a SERVER span whose peer
//! connection is traced here waits for its CLIENT span (at most
//! `stitch_timeout`), a CLIENT span of a process that serves requests
//! waits until no request that could enclose it is in flight (at most
//! `hold_timeout`). When a tree's root is known, trace ids are propagated
//! from it down (an incoming `traceparent` of the root is joined; the agent
//! never adds one), the tree is sampled and released. Children arriving
//! after their parent's release get its trace id and decision (released
//! spans are remembered for `hold_timeout`). Everything held is bounded
//! (`max_held_spans`; beyond, the oldest tree is released as it is) and
//! counted in `agent_correlation_events_total{event}`.

pub mod nest;
mod nodes;
pub mod sample;
pub mod stitch;

use std::{collections::VecDeque, sync::Arc, time::Duration};

use foldhash::{HashMap, HashSet};
use opentelemetry::KeyValue;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use self::{
    nest::{Call, Placement, Proc, Window},
    sample::{Policy, Sampler, SamplingConfig},
    stitch::{EndpointKey, StitchKey},
};
use crate::{
    export::SpanQueue,
    protocol::PendingRequest,
    red::RedRecorder,
    resource::ProcessResource,
    span::{SpanKind, SpanRecord},
};

pub type SpanId = [u8; 8];

/// Attribute naming the rule that gave a span its parent.
pub const PARENT_ATTR: &str = "agent.correlation.parent";

#[derive(Clone, Copy, Debug)]
pub struct CorrelationConfig {
    pub enabled: bool,
    /// How long a SERVER span waits for the CLIENT span of its peer.
    pub stitch_timeout: Duration,
    /// How long a CLIENT span waits for its enclosing server request.
    pub hold_timeout: Duration,
    pub max_held_spans: usize,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            stitch_timeout: Duration::from_secs(2),
            hold_timeout: Duration::from_secs(5),
            max_held_spans: 65_536,
        }
    }
}

#[derive(Debug)]
enum Link {
    /// The parent may still come.
    Unknown,
    /// The local root of its tree.
    Root,
    /// Parent known (its span id); waits for the root's trace id.
    Child(SpanId),
}

struct Node {
    span: SpanRecord,
    link: Link,
    children: Vec<SpanId>,
    /// Agent monotonic time when it arrived.
    arrived_ns: u64,
    /// A SERVER span waiting for its CLIENT span under this key.
    awaiting: Option<StitchKey>,
    method: Option<&'static str>,
}

/// A released span, for children arriving later.
#[derive(Clone, Copy)]
struct Released {
    trace_id: [u8; 16],
    trace_flags: u8,
    keep: bool,
}

/// A CLIENT span whose server span has not come yet (the client's end was
/// seen first).
struct EarlyClient {
    span_id: SpanId,
    seq: u64,
    times: stitch::Times,
    ctx: Option<stitch::Joined>,
    resource: Arc<ProcessResource>,
    error: bool,
    facts: crate::span::model::Facts,
}

/// Counters of the stage (children resolved once).
struct Counters {
    events: IntCounterVec,
    stitched: IntCounter,
    sampled: [[IntCounter; 4]; 2],
    held: IntGauge,
}

/// Events counted in `agent_correlation_events_total{event}`.
pub const EVENTS: &[&str] = &[
    "stitched",
    "stitch_timeout",
    "stitch_refused_times",
    "stitch_refused_trace_context",
    "stitch_duplicate",
    "stitch_unmatched",
    "nested_same_thread",
    "nested_sole_request_in_flight",
    "nest_ambiguous",
    "nest_no_request",
    "nest_forgotten",
    "nest_timeout",
    "nest_explicit_context",
    "parent_forgotten",
    "hold_overflow",
];

impl Counters {
    fn new(registry: &Registry) -> Self {
        let events = IntCounterVec::new(
            Opts::new(
                "agent_correlation_events_total",
                "Correlation of spans into traces, by event: stitched (a server span made the \
                 child of the client span on this host that sent its request), nested_* (a \
                 client call made the child of the request its process handled, by rule), \
                 stitch_timeout / nest_timeout (released without the parent it waited for), \
                 stitch_refused_*, stitch_unmatched (a span waiting for its other end let go: a \
                 later request on the connection showed that end was lost), nest_ambiguous, nest_no_request, nest_forgotten (no parent \
                 given), nest_explicit_context (a call that carried its own traceparent keeps \
                 it), parent_forgotten, stitch_duplicate, hold_overflow (too many spans held: \
                 released early).",
            ),
            &["event"],
        )
        .expect("valid metric");
        let sampled = IntCounterVec::new(
            Opts::new(
                "agent_spans_sampled_total",
                "Sampling decisions, in spans: decision kept or dropped, by the policy that \
                 decided (error, slow, parent: the incoming traceparent's flag, ratio).",
            ),
            &["decision", "policy"],
        )
        .expect("valid metric");
        let held = IntGauge::new(
            "agent_correlation_held_spans",
            "Spans held waiting for their parent or their trace's root.",
        )
        .expect("valid metric");
        // A second pipeline in one process (tests) registers again: ignore.
        let _ = registry.register(Box::new(events.clone()));
        let _ = registry.register(Box::new(sampled.clone()));
        let _ = registry.register(Box::new(held.clone()));
        for e in EVENTS {
            events.with_label_values(&[e]);
        }
        let by = |d: &str| Policy::ALL.map(|p| sampled.with_label_values(&[d, p.name()]));
        Self {
            stitched: events.with_label_values(&["stitched"]),
            sampled: [by("kept"), by("dropped")],
            events,
            held,
        }
    }

    fn event(&self, e: &str) {
        self.events.with_label_values(&[e]).inc();
    }
}

pub struct Correlator {
    cfg: CorrelationConfig,
    pub red: RedRecorder,
    sampler: Sampler,
    queue: SpanQueue,
    counters: Counters,
    nodes: nodes::Slab<Node>,
    arrivals: VecDeque<(u64, SpanId)>,
    /// Roots to release at the next flush.
    ready: Vec<SpanId>,
    /// SERVER spans waiting for their CLIENT span, by key (one per stream
    /// id; for ordered protocols those of the connection, oldest first).
    awaiting: HashMap<StitchKey, VecDeque<(SpanId, u64)>>,
    awaiting_order: VecDeque<(u64, StitchKey, SpanId)>,
    /// CLIENT spans whose SERVER span has not come, by key likewise.
    early: HashMap<StitchKey, VecDeque<EarlyClient>>,
    early_order: VecDeque<(u64, StitchKey, SpanId)>,
    endpoints: HashMap<EndpointKey, u32>,
    procs: HashMap<u32, Proc>,
    /// Processes with client spans waiting to be placed.
    holding: HashSet<u32>,
    released: HashMap<SpanId, Released>,
    released_order: VecDeque<(u64, SpanId)>,
    /// Most recent monotonic time seen (span ends, ticks).
    now_ns: u64,
    pending_buf: Vec<PendingRequest>,
    /// Scratch of `release_tree`.
    tree_buf: Vec<(SpanId, Node)>,
}

impl Correlator {
    pub fn new(
        cfg: CorrelationConfig,
        sampling: SamplingConfig,
        red: RedRecorder,
        queue: SpanQueue,
        registry: &Registry,
    ) -> Self {
        Self {
            cfg,
            red,
            sampler: Sampler::new(sampling),
            queue,
            counters: Counters::new(registry),
            nodes: nodes::Slab::default(),
            arrivals: VecDeque::new(),
            ready: Vec::new(),
            awaiting: HashMap::default(),
            awaiting_order: VecDeque::new(),
            early: HashMap::default(),
            early_order: VecDeque::new(),
            endpoints: HashMap::default(),
            procs: HashMap::default(),
            holding: HashSet::default(),
            released: HashMap::default(),
            released_order: VecDeque::new(),
            now_ns: 0,
            pending_buf: Vec::new(),
            tree_buf: Vec::new(),
        }
    }

    /// A traced connection opened (its endpoints tell a server span that
    /// its client is traced here too).
    pub fn conn_opened(&mut self, netns: u32, local: stitch::Addr, remote: stitch::Addr) {
        *self
            .endpoints
            .entry(stitch::endpoint(netns, local, remote))
            .or_default() += 1;
    }

    pub fn conn_closed(&mut self, netns: u32, local: stitch::Addr, remote: stitch::Addr) {
        let k = stitch::endpoint(netns, local, remote);
        if let Some(n) = self.endpoints.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.endpoints.remove(&k);
            }
        }
    }

    /// A process exited: its state and its RED series go.
    pub fn process_exited(&mut self, pid: u32, resource_key: Option<u64>) {
        if let Some(p) = self.procs.get(&pid)
            && p.held.is_empty()
        {
            self.procs.remove(&pid);
        }
        if let Some(k) = resource_key {
            self.red.process_exited(k);
        }
    }

    /// One finished span. `write_tid`: the thread whose write completed it
    /// (when a write did).
    pub fn accept(&mut self, mut span: SpanRecord, write_tid: Option<u32>) {
        self.now_ns = self.now_ns.max(span.correlation.end_ns);
        let now_ns = self.now_ns;
        self.red.record(&mut span);
        if !self.cfg.enabled {
            self.release_alone(span);
            return;
        }
        let id = span.span_id;
        if self.nodes.contains_key(&id) {
            // A span id drawn twice (2^-64): release it alone.
            self.release_alone(span);
            return;
        }
        let key = stitch::key_of(&span);
        let mut node = Node {
            span,
            link: Link::Unknown,
            children: Vec::new(),
            arrived_ns: now_ns,
            awaiting: None,
            method: None,
        };
        match node.span.kind {
            SpanKind::Server => self.accept_server(&mut node, key, write_tid, now_ns),
            SpanKind::Client => self.accept_client(&mut node, key, now_ns),
        }
        let root = matches!(node.link, Link::Root);
        self.nodes.insert(id, node);
        self.arrivals.push_back((now_ns, id));
        if root {
            self.ready.push(id);
        }
        if self.nodes.len() > self.cfg.max_held_spans {
            self.evict();
        }
    }

    fn accept_server(
        &mut self,
        node: &mut Node,
        key: StitchKey,
        write_tid: Option<u32>,
        now_ns: u64,
    ) {
        let span = &node.span;
        let c = &span.correlation;
        let pid = span.resource.info.pid;
        let p = self.procs.entry(pid).or_default();
        let window = Window {
            span: span.span_id,
            start_ns: c.start_ns,
            end_ns: c.end_ns,
            tid: c.tid,
            joined: stitch::joined(span),
        };
        // Windows are kept for processes that make calls (a call completes
        // before the request that made it: it is seen first).
        if p.calls {
            p.server_done(window, write_tid);
        } else {
            p.server_done_unkept(&window, write_tid);
        }
        // The client's end came first.
        if let Some(early) = self.take_early(&key, span) {
            self.counters.stitched.inc();
            self.red.edge_pair_parts(
                &early.resource,
                early.times.end_ns.saturating_sub(early.times.start_ns),
                early.error,
                span,
            );
            node.method = Some("socket_pair");
            self.link_to(node, early.span_id);
            return;
        }
        if self
            .endpoints
            .contains_key(&stitch::peer_endpoint(&key, SpanKind::Server))
        {
            node.awaiting = Some(key);
            let q = self.awaiting.entry(key).or_default();
            q.push_back((span.span_id, span.correlation.seq));
            let exact = key.seq != stitch::ORDERED;
            let mut gone = Vec::new();
            while q.len()
                > if exact {
                    1
                } else {
                    stitch::MAX_WAITING_PER_KEY
                }
            {
                if let Some((old, _)) = q.pop_front() {
                    gone.push(old);
                }
            }
            for old in gone {
                self.counters.event(if exact {
                    "stitch_duplicate"
                } else {
                    "stitch_unmatched"
                });
                self.make_root(old);
            }
            self.awaiting_order.push_back((
                now_ns + self.cfg.stitch_timeout.as_nanos() as u64,
                key,
                span.span_id,
            ));
            return;
        }
        node.link = Link::Root;
    }

    fn accept_client(&mut self, node: &mut Node, key: StitchKey, now_ns: u64) {
        let id = node.span.span_id;
        let (server, refused) = self.take_awaiting(&key, &node.span);
        if let Some(server_id) = server {
            self.counters.stitched.inc();
            if let Some(s) = self.nodes.get_mut(&server_id) {
                s.awaiting = None;
                s.link = Link::Child(id);
                s.method = Some("socket_pair");
            }
            node.children.push(server_id);
            if let Some(s) = self.nodes.get(&server_id) {
                self.red.edge_pair(&node.span, &s.span);
            }
        } else if refused {
            // The server span of this very stream did not fit.
            self.red.edge_virtual(&node.span);
        } else if self
            .endpoints
            .contains_key(&stitch::peer_endpoint(&key, SpanKind::Client))
        {
            // The server span may come next.
            let span = &node.span;
            let q = self.early.entry(key).or_default();
            q.push_back(EarlyClient {
                span_id: id,
                seq: span.correlation.seq,
                times: stitch::times(span),
                ctx: stitch::joined(span),
                resource: Arc::clone(&span.resource),
                error: span.is_error(),
                facts: span.facts.clone(),
            });
            let cap = if key.seq != stitch::ORDERED {
                1
            } else {
                stitch::MAX_WAITING_PER_KEY
            };
            let mut gone = Vec::new();
            while q.len() > cap {
                gone.extend(q.pop_front());
            }
            for e in gone {
                self.counters.event("stitch_unmatched");
                self.early_gone(&e);
            }
            self.early_order.push_back((
                now_ns + self.cfg.stitch_timeout.as_nanos() as u64,
                key,
                id,
            ));
        } else {
            self.red.edge_virtual(&node.span);
        }
        let pid = node.span.resource.info.pid;
        let p = self.procs.entry(pid).or_default();
        p.held.push(id);
        p.calls = true;
        self.holding.insert(pid);
    }

    /// The SERVER span waiting on `key` that pairs with the CLIENT `span`,
    /// if one does; stale waiters are let go (roots). Also tells whether
    /// an exact key's waiter was refused.
    fn take_awaiting(&mut self, key: &StitchKey, span: &SpanRecord) -> (Option<SpanId>, bool) {
        let Some(q) = self.awaiting.get_mut(key) else {
            return (None, false);
        };
        let exact = key.seq != stitch::ORDERED;
        let nodes = &self.nodes;
        let picked = stitch::pick(
            SpanKind::Client,
            span.correlation.seq,
            stitch::times(span),
            stitch::joined(span),
            exact,
            q.iter().map(|&(sid, seq)| match nodes.get(&sid) {
                Some(s) => stitch::Candidate {
                    seq,
                    times: stitch::times(&s.span),
                    ctx: stitch::joined(&s.span),
                },
                // Released already: never fits.
                None => stitch::Candidate {
                    seq,
                    times: stitch::Times {
                        start_ns: 0,
                        end_ns: 0,
                    },
                    ctx: None,
                },
            }),
        );
        let chosen = picked.chosen.map(|i| q[i].0);
        let stale: Vec<(SpanId, stitch::Refused)> =
            picked.stale.iter().map(|&(i, r)| (q[i].0, r)).collect();
        q.retain(|(sid, _)| Some(*sid) != chosen && !stale.iter().any(|(s, _)| s == sid));
        if q.is_empty() {
            self.awaiting.remove(key);
        }
        let refused = exact && !stale.is_empty();
        for (sid, r) in stale {
            if exact {
                self.refused(r);
            } else {
                self.counters.event("stitch_unmatched");
            }
            if let Some(n) = self.nodes.get_mut(&sid) {
                n.awaiting = None;
            }
            self.make_root(sid);
        }
        (chosen, refused)
    }

    /// The early CLIENT span on `key` that pairs with the SERVER `span`,
    /// if one does; stale ones are let go.
    fn take_early(&mut self, key: &StitchKey, span: &SpanRecord) -> Option<EarlyClient> {
        let q = self.early.get_mut(key)?;
        let exact = key.seq != stitch::ORDERED;
        let picked = stitch::pick(
            SpanKind::Server,
            span.correlation.seq,
            stitch::times(span),
            stitch::joined(span),
            exact,
            q.iter().map(|e| stitch::Candidate {
                seq: e.seq,
                times: e.times,
                ctx: e.ctx,
            }),
        );
        let mut chosen = None;
        let mut stale = Vec::new();
        let mut kept = VecDeque::with_capacity(q.len());
        for (i, e) in q.drain(..).enumerate() {
            if picked.chosen == Some(i) {
                chosen = Some(e);
            } else if let Some(&(_, r)) = picked.stale.iter().find(|(j, _)| *j == i) {
                stale.push((e, r));
            } else {
                kept.push_back(e);
            }
        }
        if kept.is_empty() {
            self.early.remove(key);
        } else {
            *q = kept;
        }
        for (e, r) in stale {
            if exact {
                self.refused(r);
            } else {
                self.counters.event("stitch_unmatched");
            }
            self.early_gone(&e);
        }
        chosen
    }

    /// An early CLIENT span whose server span will not come: its edge.
    fn early_gone(&mut self, e: &EarlyClient) {
        self.red.edge_virtual_parts(
            &e.resource,
            &e.facts,
            e.times.end_ns.saturating_sub(e.times.start_ns),
            e.error,
        );
    }

    /// Takes `id` out of the servers waiting on `key`.
    fn unawait(&mut self, key: &StitchKey, id: &SpanId) -> bool {
        let Some(q) = self.awaiting.get_mut(key) else {
            return false;
        };
        let Some(i) = q.iter().position(|(s, _)| s == id) else {
            return false;
        };
        q.remove(i);
        if q.is_empty() {
            self.awaiting.remove(key);
        }
        true
    }

    fn refused(&self, r: stitch::Refused) {
        self.counters.event(match r {
            stitch::Refused::Times => "stitch_refused_times",
            stitch::Refused::TraceContext => "stitch_refused_trace_context",
        });
    }

    /// Makes `node` (not yet inserted) the child of `parent`.
    fn link_to(&mut self, node: &mut Node, parent: SpanId) {
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.push(node.span.span_id);
            node.link = Link::Child(parent);
        } else if self.released.contains_key(&parent) {
            node.link = Link::Child(parent);
            // Released with its parent's decision at the next flush.
            self.ready.push(node.span.span_id);
        } else {
            self.counters.event("parent_forgotten");
            node.link = Link::Root;
        }
    }

    /// A held span `child` (already in `nodes`) gets `parent`.
    fn attach(&mut self, child: SpanId, parent: SpanId, method: &'static str) {
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.push(child);
        } else if !self.released.contains_key(&parent) {
            self.counters.event("parent_forgotten");
            self.make_root(child);
            return;
        }
        let released = !self.nodes.contains_key(&parent);
        if let Some(c) = self.nodes.get_mut(&child) {
            c.link = Link::Child(parent);
            c.method = Some(method);
        }
        if released {
            self.ready.push(child);
        }
    }

    /// Ends the wait of a held span: it becomes the root of its tree (or,
    /// when its parent was released already, follows it), released at the
    /// next flush.
    fn make_root(&mut self, id: SpanId) {
        let parent_released = matches!(
            self.nodes.get(&id).map(|n| &n.link),
            Some(Link::Child(p)) if !self.nodes.contains_key(p)
        );
        if let Some(n) = self.nodes.get_mut(&id) {
            let awaiting = n.awaiting.take();
            if !parent_released {
                n.link = Link::Root;
            }
            self.ready.push(id);
            if let Some(k) = awaiting {
                self.unawait(&k, &id);
            }
        }
    }

    /// Places the client spans held by processes, with `pending(pid, out)`:
    /// the server requests of the process still in flight.
    pub fn place_held(&mut self, pending: &dyn Fn(u32, &mut Vec<PendingRequest>)) {
        if self.holding.is_empty() {
            return;
        }
        let hold_ns = self.cfg.hold_timeout.as_nanos() as u64;
        let pids: Vec<u32> = self.holding.drain().collect();
        let mut decisions: Vec<(SpanId, Placement)> = Vec::new();
        for pid in pids {
            let Some(p) = self.procs.get_mut(&pid) else {
                continue;
            };
            let mut since = std::mem::take(&mut self.pending_buf);
            since.clear();
            pending(pid, &mut since);
            let now = self.now_ns;
            let held = std::mem::take(&mut p.held);
            for id in held {
                let Some(n) = self.nodes.get(&id) else {
                    continue;
                };
                if !matches!(n.link, Link::Unknown) {
                    continue;
                }
                let c = &n.span.correlation;
                let call = Call {
                    start_ns: c.start_ns,
                    end_ns: c.end_ns,
                    tid: c.tid,
                };
                match p.place(call, &since) {
                    Placement::Wait if now.saturating_sub(n.arrived_ns) < hold_ns => {
                        p.held.push(id);
                    }
                    Placement::Wait => decisions.push((id, Placement::Root("nest_timeout"))),
                    // A call with its own traceparent keeps the parent it
                    // names, unless the enclosing request carried the same
                    // (forwarded by a proxy).
                    Placement::Parent(parent, _)
                        if n.span.parent_is_remote
                            && p.joined_of(parent) != stitch::joined(&n.span) =>
                    {
                        decisions.push((id, Placement::Root("nest_explicit_context")));
                    }
                    other => decisions.push((id, other)),
                }
            }
            if !p.held.is_empty() {
                self.holding.insert(pid);
            }
            self.pending_buf = since;
        }
        for (id, d) in decisions {
            match d {
                Placement::Parent(parent, method) => {
                    self.counters.event(match method {
                        "same_thread" => "nested_same_thread",
                        _ => "nested_sole_request_in_flight",
                    });
                    self.attach(id, parent, method);
                }
                Placement::Root(why) => {
                    if why != "nest_no_request" || self.procs_have_windows(id) {
                        self.counters.event(why);
                    }
                    self.make_root(id);
                }
                Placement::Wait => {}
            }
        }
    }

    /// Whether the process of a span serves requests at all (a client that
    /// never serves is not a failed nesting).
    fn procs_have_windows(&self, id: SpanId) -> bool {
        self.nodes
            .get(&id)
            .and_then(|n| self.procs.get(&n.span.resource.info.pid))
            .is_some_and(|p| !p.windows.is_empty())
    }

    /// Releases the trees whose root is known.
    pub fn release_ready(&mut self) {
        let ready = std::mem::take(&mut self.ready);
        for id in ready {
            let Some(n) = self.nodes.get(&id) else {
                continue;
            };
            match n.link {
                Link::Root => self.release_tree(id, None),
                Link::Child(p) => {
                    if let Some(r) = self.released.get(&p).copied() {
                        self.release_tree(id, Some(r));
                    }
                }
                Link::Unknown => {}
            }
        }
        self.counters.held.set(self.nodes.len() as i64);
    }

    /// Releases `root` and its subtree; `inherited`: the released parent's
    /// trace (else `root` is the local root).
    fn release_tree(&mut self, root: SpanId, inherited: Option<Released>) {
        // The tree's held nodes, taken out once (root first, then breadth
        // first); the buffer is kept between calls.
        let mut tree = std::mem::take(&mut self.tree_buf);
        tree.clear();
        let Some(r) = self.nodes.remove(&root) else {
            self.tree_buf = tree;
            return;
        };
        tree.push((root, r));
        let mut i = 0;
        while i < tree.len() {
            for k in 0..tree[i].1.children.len() {
                let c = tree[i].1.children[k];
                if let Some(n) = self.nodes.remove(&c) {
                    tree.push((c, n));
                }
            }
            i += 1;
        }
        let r = &tree[0].1;
        let (trace_id, trace_flags) = match inherited {
            Some(p) => (p.trace_id, p.trace_flags),
            None => (r.span.trace_id, r.span.trace_flags),
        };
        let joined = (inherited.is_none() && r.span.parent_is_remote).then_some(r.span.trace_flags);
        let (mut keep, policy) =
            self.sampler
                .decide(&trace_id, joined, tree.iter().map(|(_, n)| &n.span));
        if let Some(p) = inherited {
            // A late part follows its trace's decision, unless it holds an
            // error or is slow itself.
            keep = p.keep || (keep && matches!(policy, Policy::Error | Policy::Slow));
        }
        let flags = if keep { trace_flags | 1 } else { trace_flags };
        let released = Released {
            trace_id,
            trace_flags: flags,
            keep,
        };
        let now = self.now_ns;
        let counter = self.counters.sampled[usize::from(!keep)][policy as usize].clone();
        for (id, mut n) in tree.drain(..) {
            if let Some(k) = n.awaiting.take() {
                self.unawait(&k, &id);
            }
            n.span.trace_id = trace_id;
            n.span.trace_flags = flags;
            if let Link::Child(p) = n.link {
                n.span.parent_span_id = p;
                n.span.parent_is_remote = false;
                n.span.trace_state = None;
            }
            if let Some(m) = n.method {
                n.span.attributes.push(KeyValue::new(PARENT_ATTR, m));
            }
            // Remembered only when a child may still come: a server span
            // of a process that makes calls (a call placed late), a client
            // span whose server span has not come yet.
            let remember = match n.span.kind {
                SpanKind::Server => self
                    .procs
                    .get(&n.span.resource.info.pid)
                    .is_some_and(|p| p.calls),
                SpanKind::Client => {
                    !self.early.is_empty()
                        && self
                            .early
                            .get(&stitch::key_of(&n.span))
                            .is_some_and(|q| q.iter().any(|e| e.span_id == id))
                }
            };
            if remember {
                self.released.insert(id, released);
                self.released_order.push_back((now, id));
            }
            counter.inc();
            if keep {
                self.queue.push(n.span);
            }
        }
        self.tree_buf = tree;
    }

    /// A span that takes no part in correlation.
    fn release_alone(&mut self, span: SpanRecord) {
        let joined = span.parent_is_remote.then_some(span.trace_flags);
        let (keep, policy) = self
            .sampler
            .decide(&span.trace_id, joined, std::iter::once(&span));
        self.counters.sampled[usize::from(!keep)][policy as usize].inc();
        if keep {
            self.queue.push(span);
        }
    }

    /// Releases the oldest tree when too many spans are held.
    fn evict(&mut self) {
        while self.nodes.len() > self.cfg.max_held_spans {
            let Some((_, id)) = self.arrivals.pop_front() else {
                return;
            };
            if self.nodes.contains_key(&id) {
                self.counters.event("hold_overflow");
                let top = self.top_of(id);
                self.make_root(top);
                self.release_ready();
            }
        }
    }

    /// The highest held ancestor of `id`.
    fn top_of(&self, mut id: SpanId) -> SpanId {
        for _ in 0..64 {
            match self.nodes.get(&id).map(|n| &n.link) {
                Some(Link::Child(p)) if self.nodes.contains_key(p) => id = *p,
                _ => break,
            }
        }
        id
    }

    /// Timeouts and forgetting (every pipeline tick).
    pub fn expire(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        let now = self.now_ns;
        while let Some(&(deadline, key, id)) = self.awaiting_order.front() {
            if deadline > now {
                break;
            }
            self.awaiting_order.pop_front();
            if self.unawait(&key, &id) {
                self.counters.event("stitch_timeout");
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.awaiting = None;
                }
                self.make_root(id);
            }
        }
        while let Some(&(deadline, key, id)) = self.early_order.front() {
            if deadline > now {
                break;
            }
            self.early_order.pop_front();
            let Some(q) = self.early.get_mut(&key) else {
                continue;
            };
            let Some(i) = q.iter().position(|e| e.span_id == id) else {
                continue;
            };
            let e = q.remove(i);
            if q.is_empty() {
                self.early.remove(&key);
            }
            if let Some(e) = e {
                self.early_gone(&e);
            }
        }
        let keep_ns = (self.cfg.hold_timeout + self.cfg.stitch_timeout).as_nanos() as u64;
        while let Some(&(at, id)) = self.released_order.front() {
            if now.saturating_sub(at) < keep_ns
                && self.released.len() <= 4 * self.cfg.max_held_spans
            {
                break;
            }
            self.released_order.pop_front();
            self.released.remove(&id);
        }
        while let Some(&(at, id)) = self.arrivals.front() {
            if self.nodes.contains_key(&id) && now.saturating_sub(at) < keep_ns {
                break;
            }
            self.arrivals.pop_front();
            if self.nodes.contains_key(&id) {
                // Held beyond every timeout (a tree waiting on a parent that
                // never resolved): release it.
                let top = self.top_of(id);
                self.make_root(top);
            }
        }
        self.red.tick();
        // Windows older than any call still placeable.
        let horizon = now.saturating_sub(keep_ns);
        // A process that served within the horizon stays (its learnt mode,
        // and the windows it did not keep, `forgotten_until`).
        self.procs.retain(|_, p| {
            p.prune(horizon);
            !(p.windows.is_empty() && p.held.is_empty() && p.forgotten_until < horizon)
        });
        self.release_ready();
    }

    /// Hands what is released to the exporter.
    pub fn flush_queue(&mut self) {
        self.queue.flush();
    }

    /// Releases everything held (shutdown).
    pub fn release_all(&mut self) {
        if self.nodes.is_empty() {
            self.queue.flush();
            return;
        }
        let ids: Vec<SpanId> = self.nodes.keys().copied().collect();
        for id in ids {
            if self.nodes.contains_key(&id) {
                let top = self.top_of(id);
                self.make_root(top);
                self.release_ready();
            }
        }
        self.queue.flush();
    }

    pub fn held(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
#[path = "correlate_tests.rs"]
mod tests;
