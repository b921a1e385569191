//! Counters of everything the agent reads, loses, parses and exports.
//!
//! Losses are one family, `agent_events_lost_total{reason}`, whether the
//! kernel counted them (ring buffer full, map full, truncation, faults) or
//! userspace did (undecodable records, connection table full), so one alert
//! covers "we are missing data".

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use agent_common::{Counter, Protocol};
use prometheus::{
    IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    core::{Collector, Desc},
    proto::{Counter as PCounter, LabelPair, Metric, MetricFamily, MetricType},
};

use crate::{bpf::counters::KernelCounters, protocol::Outcome};

/// Userspace loss reasons (kernel ones come from [`Counter`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserLoss {
    /// A ring-buffer record could not be decoded.
    DecodeError = 0,
    /// The userspace connection table was full; a connection was not traced.
    ConnTableFull = 1,
    /// Data arrived for a connection userspace does not know.
    UnknownConnection = 2,
}

const USER_LOSSES: [(UserLoss, &str); 3] = [
    (UserLoss::DecodeError, "decode_error"),
    (UserLoss::ConnTableFull, "conn_table_full"),
    (UserLoss::UnknownConnection, "unknown_connection"),
];

pub struct Metrics {
    pub registry: Registry,
    pub events_read: IntCounterVec,
    pub parse_errors: IntCounterVec,
    pub exchanges_vec: IntCounterVec,
    pub http_orphan_responses: IntCounter,
    pub http_pending_overflow: IntCounter,
    pub http2_orphan_frames: IntCounter,
    pub http2_stream_overflow: IntCounter,
    pub hpack_unresolved_fields: IntCounter,
    pub postgres_events: IntCounterVec,
    pub connections_opened: IntCounter,
    pub connections_ignored: IntCounterVec,
    /// Data records of connections the agent had just told the kernel to
    /// ignore (already in the ring buffer): discarded on purpose.
    pub records_of_ignored: IntCounter,
    pub connections_tracked: IntGauge,
    pub processes_cached: IntGauge,
    pub spans_produced: IntCounterVec,
    pub spans_exported: IntCounter,
    pub spans_dropped: IntCounterVec,
    pub export_requests: IntCounterVec,
    pub export_queue_length: IntGauge,
    // Children of the vectors above, resolved once (hot paths).
    pub spans_client: IntCounter,
    pub spans_server: IntCounter,
    pub read_data: IntCounter,
    pub read_conn_open: IntCounter,
    pub read_conn_close: IntCounter,
    pub read_proc_exit: IntCounter,
    pub read_proc_info: IntCounter,
    /// `agent_exchanges_total` children by [`Protocol`] then [`Outcome`].
    exchanges: Vec<[IntCounter; Outcome::COUNT]>,
    losses: Arc<LossCollector>,
}

impl Metrics {
    /// Counts one exchange of `protocol` that ended with `outcome`.
    pub fn exchange(&self, protocol: Protocol, outcome: Outcome) {
        if let Some(by_outcome) = self.exchanges.get(protocol as usize) {
            by_outcome[outcome as usize].inc();
        }
    }

    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let losses = Arc::new(LossCollector::new());
        registry
            .register(Box::new(SharedLosses(Arc::clone(&losses))))
            .expect("unique metric");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(super::self_process::SelfProcess::new()))
            .expect("unique metric");
        let info = IntGauge::with_opts(
            Opts::new("agent_build_info", "Agent build information (always 1).")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        info.set(1);
        registry.register(Box::new(info)).expect("unique metric");

        let events_read = counter_vec(
            "agent_events_read_total",
            "Records read from the kernel ring buffer, by kind.",
            &["kind"],
        );
        let spans_produced = counter_vec(
            "agent_spans_produced_total",
            "Spans produced, by span kind.",
            &["kind"],
        );
        let exchanges = counter_vec(
            "agent_exchanges_total",
            "Request/response exchanges assembled (HTTP requests, RPCs, database \
             statements), by protocol and outcome.",
            &["protocol", "outcome"],
        );
        Arc::new(Self {
            spans_client: spans_produced.with_label_values(&["client"]),
            spans_server: spans_produced.with_label_values(&["server"]),
            read_data: events_read.with_label_values(&["data"]),
            read_conn_open: events_read.with_label_values(&["conn_open"]),
            read_conn_close: events_read.with_label_values(&["conn_close"]),
            read_proc_exit: events_read.with_label_values(&["proc_exit"]),
            read_proc_info: events_read.with_label_values(&["proc_info"]),
            exchanges: Protocol::ALL
                .iter()
                .map(|p| Outcome::ALL.map(|o| exchanges.with_label_values(&[p.name(), o.name()])))
                .collect(),
            events_read,
            spans_produced,
            exchanges_vec: exchanges,
            parse_errors: counter_vec(
                "agent_parse_errors_total",
                "Protocol framing lost (desynchronisations), by protocol, stream and reason.",
                &["protocol", "stream", "reason"],
            ),
            http_orphan_responses: counter(
                "agent_http_orphan_responses_total",
                "HTTP responses seen without their request (joined mid-exchange).",
            ),
            http_pending_overflow: counter(
                "agent_http_pending_overflow_total",
                "HTTP requests dropped because too many awaited a response on one connection.",
            ),
            http2_orphan_frames: counter(
                "agent_http2_orphan_frames_total",
                "HTTP/2 response frames on streams the agent did not see begin (joined mid-stream).",
            ),
            http2_stream_overflow: counter(
                "agent_http2_stream_overflow_total",
                "HTTP/2 streams not traced because http2.max_streams were open on the connection.",
            ),
            hpack_unresolved_fields: counter(
                "agent_hpack_unresolved_fields_total",
                "HTTP/2 header fields whose HPACK dynamic-table entry the agent never saw \
                 (exported spans lack them and carry agent.hpack.unresolved_fields).",
            ),
            postgres_events: counter_vec(
                "agent_postgres_events_total",
                "PostgreSQL protocol events that are not statements (startup, startup_error, \
                 ssl_refused, cancel_request, notification, not_executed, orphan_response, \
                 unknown_statement, prepared_evicted, pending_overflow).",
                &["event"],
            ),
            connections_opened: counter(
                "agent_connections_opened_total",
                "Connections whose traffic started to be traced.",
            ),
            connections_ignored: counter_vec(
                "agent_connections_ignored_total",
                "Connections the agent stopped tracing, by reason.",
                &["reason"],
            ),
            records_of_ignored: counter(
                "agent_ignored_connection_records_total",
                "Data records discarded because their connection had just been ignored \
                 (written by the kernel before it learnt so).",
            ),
            connections_tracked: gauge(
                "agent_connections_tracked",
                "Connections with protocol state in the agent.",
            ),
            processes_cached: gauge(
                "agent_processes_cached",
                "Processes whose resource attributes are cached.",
            ),
            spans_exported: counter(
                "agent_spans_exported_total",
                "Spans accepted by the exporter's backend (or printed).",
            ),
            spans_dropped: counter_vec(
                "agent_spans_dropped_total",
                "Spans dropped before export, by reason (queue_full, export_failed).",
                &["reason"],
            ),
            export_requests: counter_vec(
                "agent_export_requests_total",
                "Export requests, by result.",
                &["result"],
            ),
            export_queue_length: gauge(
                "agent_export_queue_length",
                "Spans waiting in the export queue.",
            ),
            losses,
            registry,
        })
    }

    /// Counts a userspace loss.
    pub fn lost(&self, reason: UserLoss) {
        self.losses.user[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Lets `/metrics` read the kernel's counters.
    pub fn set_kernel_counters(&self, counters: KernelCounters) {
        *self.losses.kernel.lock().expect("not poisoned") = Some(counters);
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut buf = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut buf) {
            buf = format!("# encoding failed: {e}\n");
        }
        buf
    }
}

/// `agent_events_lost_total` plus the kernel's work counters, read at
/// scrape time.
#[derive(Debug)]
struct LossCollector {
    user: [AtomicU64; USER_LOSSES.len()],
    kernel: Mutex<Option<KernelCounters>>,
    descs: Vec<Desc>,
}

const LOST: &str = "agent_events_lost_total";
const LOST_HELP: &str = "Events lost, by reason (kernel: ringbuf_full, conn_map_full, \
    inflight_map_full, read_fault, payload_truncated, iovecs_skipped; agent: decode_error, \
    conn_table_full, unknown_connection).";
const KERNEL: &str = "agent_kernel_events_total";
const KERNEL_HELP: &str = "Work counted by the eBPF programs, by counter (data_records, \
    conn_records, proc_records, unclassified, payload_bytes).";

impl LossCollector {
    fn new() -> Self {
        let descs = vec![
            Desc::new(
                LOST.into(),
                LOST_HELP.into(),
                vec!["reason".into()],
                Default::default(),
            )
            .expect("valid desc"),
            Desc::new(
                KERNEL.into(),
                KERNEL_HELP.into(),
                vec!["counter".into()],
                Default::default(),
            )
            .expect("valid desc"),
        ];
        Self {
            user: Default::default(),
            kernel: Mutex::new(None),
            descs,
        }
    }
}

fn counter_metric(label: &str, value: &str, v: u64) -> Metric {
    let mut lp = LabelPair::default();
    lp.set_name(label.to_string());
    lp.set_value(value.to_string());
    let mut c = PCounter::default();
    c.set_value(v as f64);
    let mut m = Metric::default();
    m.set_label(vec![lp]);
    m.set_counter(c);
    m
}

fn family(name: &str, help: &str, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(MetricType::COUNTER);
    f.set_metric(metrics);
    f
}

/// Registers the shared collector (the registry wants an owned box).
struct SharedLosses(Arc<LossCollector>);

impl Collector for SharedLosses {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

impl Collector for LossCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let kernel = self
            .kernel
            .lock()
            .map(|k| k.as_ref().map(KernelCounters::read).unwrap_or_default())
            .unwrap_or_default();
        let mut lost = Vec::new();
        let mut work = Vec::new();
        for &c in &Counter::ALL {
            let v = kernel.iter().find(|(k, _)| *k == c).map_or(0, |(_, v)| *v);
            if c.is_loss() {
                lost.push(counter_metric("reason", c.name(), v));
            } else {
                work.push(counter_metric("counter", c.name(), v));
            }
        }
        for (reason, name) in USER_LOSSES {
            let v = self.user[reason as usize].load(Ordering::Relaxed);
            lost.push(counter_metric("reason", name, v));
        }
        vec![
            family(LOST, LOST_HELP, lost),
            family(KERNEL, KERNEL_HELP, work),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_losses_without_kernel() {
        let m = Metrics::new();
        m.lost(UserLoss::DecodeError);
        m.spans_dropped.with_label_values(&["queue_full"]).inc();
        let text = m.render();
        assert!(
            text.contains("agent_events_lost_total{reason=\"decode_error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("agent_events_lost_total{reason=\"ringbuf_full\"} 0"),
            "{text}"
        );
        assert!(text.contains("agent_spans_dropped_total{reason=\"queue_full\"} 1"));
        assert!(text.contains("# TYPE agent_events_lost_total counter"));
    }
}
