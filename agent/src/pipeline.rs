//! From ring-buffer records to spans: the single-threaded heart of the
//! agent.
//!
//! `ConnOpen` creates a [`Conn`] (resource resolved at once, while the
//! process surely exists); `Data` feeds the connection's protocol session;
//! completed exchanges become spans pushed to the export queue; `ConnClose`
//! and `ProcExit` end sessions; [`Pipeline::tick`] times out requests,
//! forgets idle connections and sweeps the kernel map.

use std::{sync::Arc, time::Duration};

use agent_common::Role;

use crate::{
    bpf::conns::ConnMap,
    capture::{ConnClose, ConnOpen, DataEvent, ProcExit, ProcInfo, Record},
    clock::{Clock, monotonic_ns},
    config::Config,
    conn::{Conn, ConnTable, own_sockets::OwnSockets},
    export::SpanQueue,
    protocol::http1::{
        parser::{Limits, MessageKind},
        session::{EventTimes, Http1Session, HttpExchange, Outcome},
    },
    resource::{ProcessSnapshot, ResourceCache},
    span::{
        SpanKind,
        http::{ConnContext, exchange_span},
        redact::Redactor,
    },
    telemetry::{Metrics, metrics::UserLoss},
};

/// How often the kernel connection map is swept for exited processes.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How often the monotonic→wall clock offset is re-sampled.
const CLOCK_REFRESH: Duration = Duration::from_secs(10);

pub struct Pipeline {
    conns: ConnTable,
    resources: ResourceCache,
    own: OwnSockets,
    kernel_conns: Option<ConnMap>,
    clock: Clock,
    redactor: Redactor,
    limits: Limits,
    max_pending: usize,
    request_timeout_ns: u64,
    idle_timeout_ns: u64,
    queue: SpanQueue,
    metrics: Arc<Metrics>,
    exchanges: Vec<HttpExchange>,
    last_sweep_ns: u64,
    clock_refreshed_ns: u64,
    /// Processes with traced connections, for their process metrics.
    traced: Option<Arc<crate::node::process::TracedProcesses>>,
}

impl Pipeline {
    pub fn new(
        cfg: &Config,
        resources: ResourceCache,
        kernel_conns: Option<ConnMap>,
        queue: SpanQueue,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            conns: ConnTable::new(cfg.connections.max_tracked),
            resources,
            own: OwnSockets::default(),
            kernel_conns,
            clock: Clock::new(),
            redactor: Redactor::new(cfg.http.redact_query, &cfg.http.sensitive_query_keys),
            limits: Limits {
                max_head_bytes: cfg.http.max_head_bytes,
                ..Limits::default()
            },
            max_pending: cfg.http.max_pending_requests,
            request_timeout_ns: cfg.http.request_timeout.as_nanos() as u64,
            idle_timeout_ns: cfg.connections.idle_timeout.as_nanos() as u64,
            queue,
            metrics,
            exchanges: Vec::new(),
            last_sweep_ns: monotonic_ns(),
            clock_refreshed_ns: monotonic_ns(),
            traced: None,
        }
    }

    /// Registers the processes of traced connections (for process metrics).
    pub fn set_traced(&mut self, traced: Arc<crate::node::process::TracedProcesses>) {
        self.traced = Some(traced);
    }

    /// Handles one raw ring-buffer record.
    pub fn on_bytes(&mut self, bytes: &[u8]) {
        match Record::decode(bytes) {
            Ok(record) => self.on_record(record),
            Err(e) => {
                tracing::debug!("undecodable record: {e}");
                self.metrics.lost(UserLoss::DecodeError);
            }
        }
    }

    pub fn on_record(&mut self, record: Record<'_>) {
        let m = &self.metrics;
        match &record {
            Record::Data(_) => m.read_data.inc(),
            Record::ConnOpen(_) => m.read_conn_open.inc(),
            Record::ConnClose(_) => m.read_conn_close.inc(),
            Record::ProcExit(_) => m.read_proc_exit.inc(),
            Record::ProcInfo(_) => m.read_proc_info.inc(),
        }
        match record {
            Record::Data(d) => self.on_data(&d),
            Record::ConnOpen(c) => self.on_open(c),
            Record::ConnClose(c) => self.on_close(&c),
            Record::ProcExit(p) => self.on_exit(&p),
            Record::ProcInfo(p) => self.on_proc_info(&p),
        }
    }

    /// The kernel describes a process before its first connection: resolve
    /// its resource now, while it surely exists, with the snapshot as a
    /// fallback for what /proc no longer has.
    fn on_proc_info(&mut self, p: &ProcInfo<'_>) {
        let snapshot = ProcessSnapshot {
            comm: String::from_utf8_lossy(p.comm).into_owned(),
            cmdline: p.cmdline.to_vec(),
            environ: p.environ.to_vec(),
            environ_truncated: p.environ_truncated,
        };
        self.resources.observe(p.tgid, &snapshot);
        self.metrics
            .processes_cached
            .set(self.resources.len() as i64);
    }

    fn on_open(&mut self, open: ConnOpen) {
        if self.own.contains(open.remote, open.ts_ns) {
            self.ignore_in_kernel(open.tgid, open.fd, open.sk, "agent_own_traffic");
            return;
        }
        let resource = self.resources.get_or_load(open.tgid, &open.comm);
        if let Some(traced) = &self.traced {
            traced.insert(open.tgid, Arc::clone(&resource));
        }
        self.metrics
            .processes_cached
            .set(self.resources.len() as i64);
        let conn = Conn {
            fd: open.fd,
            role: open.role,
            protocol: open.protocol,
            netns: open.netns,
            local: open.local,
            remote: open.remote,
            local_ip: open.local.0.to_string().into(),
            remote_ip: open.remote.0.to_string().into(),
            resource,
            http1: None,
            last_ns: open.ts_ns,
        };
        match self.conns.insert(open.tgid, open.sk, conn) {
            Ok(replaced) => {
                self.metrics.connections_opened.inc();
                if let Some(old) = replaced {
                    // The same socket announced again (the kernel forgot
                    // it): finish what the old state had.
                    self.finish_conn(old, open.ts_ns);
                }
            }
            Err(_) => {
                self.metrics.lost(UserLoss::ConnTableFull);
                self.ignore_in_kernel(open.tgid, open.fd, open.sk, "conn_table_full");
            }
        }
        self.metrics
            .connections_tracked
            .set(self.conns.len() as i64);
    }

    fn on_data(&mut self, d: &DataEvent<'_>) {
        let Some(conn) = self.conns.get_mut(d.tgid, d.sk) else {
            self.metrics.lost(UserLoss::UnknownConnection);
            return;
        };
        conn.last_ns = d.ts_exit_ns;
        if conn.http1.is_none() {
            let Some(kind) = conn.span_kind(d.direction, d.payload) else {
                return;
            };
            conn.http1 = Some(Box::new(Http1Session::new(
                kind == SpanKind::Server,
                self.limits,
                self.max_pending,
            )));
            conn.role = match kind {
                SpanKind::Server => Role::Server,
                SpanKind::Client => Role::Client,
            };
        }
        let session = conn.http1.as_mut().expect("created above");
        session.on_data(
            d.direction,
            d.payload,
            d.uncaptured(),
            EventTimes {
                enter_ns: d.ts_enter_ns,
                exit_ns: d.ts_exit_ns,
                tid: d.tid,
            },
            &mut self.exchanges,
        );
        account_session(session, &self.metrics);
        let upgraded = session.is_upgraded();
        emit_spans(
            conn,
            &mut self.exchanges,
            &self.redactor,
            &self.clock,
            &mut self.queue,
            &self.metrics,
        );
        if upgraded {
            // Upgraded (WebSocket, h2c) and tunnelled streams are not HTTP/1
            // any more: stop the kernel sending them.
            let fd = conn.fd;
            self.conns.remove(d.tgid, d.sk);
            self.ignore_in_kernel(d.tgid, fd, d.sk, "upgraded");
            self.metrics
                .connections_tracked
                .set(self.conns.len() as i64);
        }
    }

    fn on_close(&mut self, c: &ConnClose) {
        if let Some(conn) = self.conns.remove(c.tgid, c.sk) {
            self.finish_conn(conn, c.ts_ns);
        }
        self.metrics
            .connections_tracked
            .set(self.conns.len() as i64);
    }

    fn on_exit(&mut self, p: &ProcExit) {
        for (_, conn) in self.conns.remove_process(p.tgid) {
            self.finish_conn(conn, p.ts_ns);
        }
        self.resources.remove(p.tgid);
        if let Some(traced) = &self.traced {
            traced.remove(p.tgid);
        }
        self.metrics
            .connections_tracked
            .set(self.conns.len() as i64);
        self.metrics
            .processes_cached
            .set(self.resources.len() as i64);
    }

    /// Periodic work: request timeouts, idle connections, kernel map sweep.
    pub fn tick(&mut self) {
        let now = monotonic_ns();
        let timeout = self.request_timeout_ns;
        let idle = self.idle_timeout_ns;
        let mut forget: Vec<(u32, i32, u64)> = Vec::new();
        let (exchanges, redactor, clock, queue, metrics) = (
            &mut self.exchanges,
            &self.redactor,
            &self.clock,
            &mut self.queue,
            &self.metrics,
        );
        self.conns.retain(
            |tgid, sk, conn| {
                let idle_for = now.saturating_sub(conn.last_ns);
                let Some(session) = conn.http1.as_mut() else {
                    let keep = idle_for < idle;
                    if !keep {
                        forget.push((tgid, conn.fd, sk));
                    }
                    return keep;
                };
                session.expire(now, timeout, exchanges);
                emit_spans(conn, exchanges, redactor, clock, queue, metrics);
                let keep = !(conn.http1.as_ref().is_some_and(|s| s.is_idle()) && idle_for >= idle);
                if !keep {
                    forget.push((tgid, conn.fd, sk));
                }
                keep
            },
            |_, _, _| {},
        );
        for (tgid, fd, sk) in forget {
            // The kernel re-announces the connection if it talks again.
            if let Some(map) = self.kernel_conns.as_mut() {
                map.forget(tgid, fd, sk);
            }
        }
        self.metrics
            .connections_tracked
            .set(self.conns.len() as i64);
        if now.saturating_sub(self.last_sweep_ns) >= SWEEP_EVERY.as_nanos() as u64 {
            self.last_sweep_ns = now;
            self.sweep_kernel_map();
        }
        if now.saturating_sub(self.clock_refreshed_ns) >= CLOCK_REFRESH.as_nanos() as u64 {
            self.clock = Clock::new();
            self.clock_refreshed_ns = now;
        }
    }

    fn sweep_kernel_map(&mut self) {
        if let Some(map) = self.kernel_conns.as_mut() {
            let removed = map.sweep(|tgid| std::path::Path::new(&format!("/proc/{tgid}")).exists());
            if removed > 0 {
                tracing::debug!("removed {removed} kernel connection entries of exited processes");
            }
        }
    }

    /// Ends a connection's session and emits what that completes.
    fn finish_conn(&mut self, mut conn: Conn, now_ns: u64) {
        if let Some(session) = conn.http1.as_mut() {
            session.close(now_ns, &mut self.exchanges);
            account_session(session, &self.metrics);
        }
        emit_spans(
            &conn,
            &mut self.exchanges,
            &self.redactor,
            &self.clock,
            &mut self.queue,
            &self.metrics,
        );
    }

    fn ignore_in_kernel(&mut self, tgid: u32, fd: i32, sk: u64, reason: &str) {
        self.metrics
            .connections_ignored
            .with_label_values(&[reason])
            .inc();
        if let Some(map) = self.kernel_conns.as_mut() {
            map.ignore(tgid, fd, sk);
        }
    }

    /// Hands the spans produced so far to the exporter (call after each
    /// batch of records).
    pub fn flush(&mut self) {
        self.queue.flush();
    }

    /// Ends every session (shutdown) and emits what they complete.
    pub fn close_all(&mut self) {
        let now = monotonic_ns();
        let mut all = Vec::new();
        self.conns
            .retain(|_, _, _| false, |tgid, sk, conn| all.push((tgid, sk, conn)));
        for (_, _, conn) in all {
            self.finish_conn(conn, now);
        }
    }
}

/// Moves a session's counters into the metrics.
fn account_session(session: &mut Http1Session, metrics: &Metrics) {
    let counts = session.take_counts();
    if counts.orphan_responses > 0 {
        metrics
            .http_orphan_responses
            .inc_by(counts.orphan_responses);
    }
    if counts.pending_overflow > 0 {
        metrics
            .http_pending_overflow
            .inc_by(counts.pending_overflow);
    }
    for d in session.take_desyncs() {
        let stream = match d.stream {
            MessageKind::Request => "request",
            MessageKind::Response => "response",
        };
        metrics
            .parse_errors
            .with_label_values(&["http1", stream, d.reason])
            .inc();
    }
}

/// Turns completed exchanges (drained from `exchanges`) into spans.
fn emit_spans(
    conn: &Conn,
    exchanges: &mut Vec<HttpExchange>,
    redactor: &Redactor,
    clock: &Clock,
    queue: &mut SpanQueue,
    metrics: &Metrics,
) {
    let kind = match conn.role {
        Role::Server => SpanKind::Server,
        _ => SpanKind::Client,
    };
    let ctx = ConnContext {
        kind,
        netns: conn.netns,
        local: conn.local,
        remote: conn.remote,
        local_ip: &conn.local_ip,
        remote_ip: &conn.remote_ip,
        resource: &conn.resource,
    };
    if exchanges.is_empty() {
        return;
    }
    for ex in exchanges.drain(..) {
        match ex.outcome {
            Outcome::Complete => metrics.exchanges_complete.inc(),
            Outcome::Truncated => metrics.exchanges_truncated.inc(),
            Outcome::Timeout => metrics.exchanges_timeout.inc(),
            Outcome::ConnectionClosed => metrics.exchanges_closed.inc(),
        }
        queue.push(exchange_span(&ex, &ctx, redactor, clock));
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
