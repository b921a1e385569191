//! The service graph, named as the OpenTelemetry servicegraph connector and
//! Tempo's metrics generator name it (so Grafana's service map reads it):
//! `traces_service_graph_request_total{client,server}`,
//! `traces_service_graph_request_failed_total`,
//! `traces_service_graph_request_server_seconds` and
//! `traces_service_graph_request_client_seconds` (histograms).
//!
//! Edges come from stitched pairs (a CLIENT span on this host and the
//! SERVER span it caused: `client` and `server` are their `service.name`s,
//! durations from both, failed when either span failed), and from CLIENT
//! spans whose server is not traced on this host (or whose server span
//! never matched): `server` is the peer's `server.address`, with
//! `connection_type="virtual_node"` (`"database"` for database clients, as
//! the connector marks them); only the client duration is known.

use std::sync::{Arc, Mutex};

use foldhash::HashMap;

use super::{
    RedShared,
    histogram::{Bounds, Counter, GRAPH_BUCKETS, Histogram},
    labels::Interner,
};

/// One edge's measurements.
#[derive(Debug)]
pub struct Edge {
    pub total: Counter,
    pub failed: Counter,
    pub server_seconds: Histogram,
    pub client_seconds: Histogram,
}

/// A registered edge.
#[derive(Debug)]
pub struct EdgeEntry {
    pub client: Arc<str>,
    pub server: Arc<str>,
    pub connection_type: Option<&'static str>,
    /// The overflow edge (`otel.metric.overflow="true"`, no client/server).
    pub overflow: bool,
    pub edge: Arc<Edge>,
}

#[derive(Debug)]
pub struct GraphShared {
    pub edges: Mutex<Vec<EdgeEntry>>,
    pub bounds: Bounds,
    pub overflowed: Counter,
}

impl Default for GraphShared {
    fn default() -> Self {
        Self {
            edges: Mutex::default(),
            bounds: Bounds::new(GRAPH_BUCKETS),
            overflowed: Counter::default(),
        }
    }
}

/// What the connector calls the kind of a virtual edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// Both ends traced (a stitched pair).
    Direct,
    VirtualNode,
    Database,
}

impl EdgeKind {
    fn label(self) -> Option<&'static str> {
        match self {
            EdgeKind::Direct => None,
            EdgeKind::VirtualNode => Some("virtual_node"),
            EdgeKind::Database => Some("database"),
        }
    }
}

/// The pipeline's side of the graph.
pub struct GraphRecorder {
    shared: Arc<RedShared>,
    names: Interner,
    edges: HashMap<(u32, u32, EdgeKind), Arc<Edge>>,
    overflow: Option<Arc<Edge>>,
    max_edges: usize,
}

/// One measurement of an edge.
pub struct EdgeSample<'a> {
    pub client: &'a str,
    pub server: &'a str,
    pub kind: EdgeKind,
    pub failed: bool,
    pub client_ns: Option<u64>,
    pub server_ns: Option<u64>,
}

impl GraphRecorder {
    pub fn new(shared: Arc<RedShared>, max_edges: usize) -> Self {
        Self {
            shared,
            names: Interner::new(1 << 16),
            edges: HashMap::default(),
            overflow: None,
            max_edges: max_edges.max(1),
        }
    }

    pub fn record(&mut self, s: &EdgeSample<'_>) {
        let key = self
            .names
            .get(s.client)
            .zip(self.names.get(s.server))
            .map(|(c, v)| (c, v, s.kind));
        let edge = match key.and_then(|k| self.edges.get(&k)) {
            Some(e) => Arc::clone(e),
            None => self.create(s),
        };
        let g = &self.shared.graph;
        edge.total.inc();
        if s.failed {
            edge.failed.inc();
        }
        if let Some(ns) = s.client_ns {
            edge.client_seconds.record(&g.bounds, ns);
        }
        if let Some(ns) = s.server_ns {
            edge.server_seconds.record(&g.bounds, ns);
        }
    }

    fn new_edge(&self) -> Arc<Edge> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let b = &self.shared.graph.bounds;
        Arc::new(Edge {
            total: Counter::default(),
            failed: Counter::default(),
            server_seconds: Histogram::new(b, now),
            client_seconds: Histogram::new(b, now),
        })
    }

    fn create(&mut self, s: &EdgeSample<'_>) -> Arc<Edge> {
        let ids = if self.edges.len() < self.max_edges {
            self.names.intern(s.client).zip(self.names.intern(s.server))
        } else {
            None
        };
        let registry = |entry: EdgeEntry| {
            self.shared
                .graph
                .edges
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(entry);
        };
        let Some((c, v)) = ids else {
            self.shared.graph.overflowed.inc();
            if let Some(o) = &self.overflow {
                return Arc::clone(o);
            }
            let edge = self.new_edge();
            registry(EdgeEntry {
                client: Arc::from(""),
                server: Arc::from(""),
                connection_type: None,
                overflow: true,
                edge: Arc::clone(&edge),
            });
            self.overflow = Some(Arc::clone(&edge));
            return edge;
        };
        let edge = self.new_edge();
        registry(EdgeEntry {
            client: Arc::from(s.client),
            server: Arc::from(s.server),
            connection_type: s.kind.label(),
            overflow: false,
            edge: Arc::clone(&edge),
        });
        self.edges.insert((c, v, s.kind), Arc::clone(&edge));
        edge
    }

    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }
}
