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
    correlate::Correlator,
    export::SpanQueue,
    protocol::{
        ConnContext, DataIn, Emit, EventTimes, Next, ProtocolConfig, new_session, switch_session,
    },
    red::{RedLimits, RedRecorder, RedShared},
    resource::{ProcessSnapshot, ResourceCache},
    selection::{Verdict, gate::Gate},
    span::{SpanKind, redact::Redactor},
    telemetry::{Metrics, metrics::UserLoss},
};

/// How often the kernel connection map is swept for exited processes.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Connections remembered as ignored (their in-flight records are then
/// discarded, not counted as lost); cleared when full.
const MAX_RECENTLY_IGNORED: usize = 4096;

/// How often the monotonic→wall clock offset is re-sampled.
const CLOCK_REFRESH: Duration = Duration::from_secs(10);

pub struct Pipeline {
    conns: ConnTable,
    resources: ResourceCache,
    own: OwnSockets,
    kernel_conns: Option<ConnMap>,
    clock: Clock,
    redactor: Redactor,
    protocols: ProtocolConfig,
    request_timeout_ns: u64,
    idle_timeout_ns: u64,
    /// RED metrics, correlation, sampling, then the export queue.
    corr: Correlator,
    red_limits: RedLimits,
    metrics: Arc<Metrics>,
    last_sweep_ns: u64,
    clock_refreshed_ns: u64,
    /// (tgid, sk) of connections the kernel was told to ignore.
    recently_ignored: std::collections::HashSet<(u32, u64)>,
    /// Process selection (executables, cgroups, containers, pods), if set.
    gate: Option<Gate>,
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
        let red_limits = RedLimits {
            max_series: cfg.metrics.max_series_per_metric,
            max_routes: cfg.metrics.max_routes_per_service,
        };
        let corr = Correlator::new(
            cfg.correlation.settings(),
            cfg.sampling.settings(),
            RedRecorder::new(RedShared::new(), red_limits),
            queue,
            &metrics.registry,
        );
        Self {
            conns: ConnTable::new(cfg.connections.max_tracked),
            resources,
            own: OwnSockets::default(),
            kernel_conns,
            clock: Clock::new(),
            redactor: Redactor::new(cfg.http.redact_query, &cfg.http.sensitive_query_keys),
            protocols: ProtocolConfig::from_config(cfg),
            request_timeout_ns: cfg.http.request_timeout.as_nanos() as u64,
            idle_timeout_ns: cfg.connections.idle_timeout.as_nanos() as u64,
            corr,
            red_limits,
            metrics,
            last_sweep_ns: monotonic_ns(),
            clock_refreshed_ns: monotonic_ns(),
            recently_ignored: std::collections::HashSet::new(),
            gate: None,
            traced: None,
        }
    }

    /// Traces only the processes `gate` selects.
    pub fn with_selection(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Records RED metrics into `shared` (read by `/metrics` and the OTLP
    /// metrics export).
    pub fn with_red(mut self, shared: Arc<RedShared>) -> Self {
        self.corr.red = RedRecorder::new(shared, self.red_limits);
        self
    }

    /// The RED metrics' registry.
    pub fn red(&self) -> &Arc<RedShared> {
        self.corr.red.shared()
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
        if self.gate.is_some() {
            // Described again: a new program (exec) or a reused pid. The
            // selection must see what runs now.
            self.resources.remove(p.tgid);
        }
        let resource = self.resources.observe(p.tgid, &snapshot);
        if let Some(gate) = self.gate.as_mut() {
            gate.decide(p.tgid, &resource, self.resources.pods().map(|s| s.as_ref()));
        }
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
        if let Some(gate) = self.gate.as_mut() {
            let pods = self.resources.pods().map(|s| s.as_ref());
            match gate.verdict(open.tgid, &resource, pods) {
                Verdict::Selected => {}
                Verdict::Excluded => {
                    self.ignore_in_kernel(open.tgid, open.fd, open.sk, "selection_excluded");
                    return;
                }
                Verdict::Pending => {
                    self.ignore_in_kernel(open.tgid, open.fd, open.sk, "selection_pending");
                    return;
                }
            }
        }
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
            session: None,
            last_ns: open.ts_ns,
        };
        let (netns, local, remote) = (conn.netns, conn.local, conn.remote);
        match self.conns.insert(open.tgid, open.sk, conn) {
            Ok(replaced) => {
                self.metrics.connections_opened.inc();
                self.corr.conn_opened(netns, local, remote);
                if let Some(old) = replaced {
                    self.corr.conn_closed(old.netns, old.local, old.remote);
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
            if self.recently_ignored.contains(&(d.tgid, d.sk)) {
                self.metrics.records_of_ignored.inc();
            } else {
                self.metrics.lost(UserLoss::UnknownConnection);
            }
            return;
        };
        conn.last_ns = d.ts_exit_ns;
        if conn.session.is_none() {
            let Some(kind) = conn.span_kind(d.direction, d.payload) else {
                return;
            };
            let Some(session) = new_session(conn.protocol, kind, &self.protocols) else {
                let (fd, protocol) = (conn.fd, conn.protocol);
                self.metrics
                    .parse_errors
                    .with_label_values(&[protocol.name(), "connection", "unsupported_protocol"])
                    .inc();
                self.remove_conn(d.tgid, d.sk);
                self.ignore_in_kernel(d.tgid, fd, d.sk, "unsupported_protocol");
                return;
            };
            conn.session = Some(session);
            conn.role = match kind {
                SpanKind::Server => Role::Server,
                SpanKind::Client => Role::Client,
            };
        }
        let data = DataIn {
            direction: d.direction,
            payload: d.payload,
            uncaptured: d.uncaptured(),
            tail: d.tail,
            times: EventTimes {
                enter_ns: d.ts_enter_ns,
                exit_ns: d.ts_exit_ns,
                tid: d.tid,
            },
        };
        let next = with_session(
            conn,
            &self.redactor,
            &self.clock,
            &mut self.corr,
            &self.metrics,
            write_tid(&data),
            |s, emit| s.on_data(&data, emit),
        );
        match next {
            Some(Next::Continue) | None => {}
            Some(Next::Switch(protocol)) => {
                let kind = conn_kind(conn.role);
                let handover = conn
                    .session
                    .as_mut()
                    .and_then(|s| s.take_handover())
                    .unwrap_or_default();
                conn.protocol = protocol;
                conn.session = switch_session(protocol, kind, &self.protocols, &handover);
                // The rest of the switching syscall is the new protocol's.
                let next = if handover.rest.is_empty() && data.uncaptured == 0 {
                    Some(Next::Continue)
                } else {
                    let rest = DataIn {
                        payload: &handover.rest,
                        ..data
                    };
                    with_session(
                        conn,
                        &self.redactor,
                        &self.clock,
                        &mut self.corr,
                        &self.metrics,
                        write_tid(&rest),
                        |s, emit| s.on_data(&rest, emit),
                    )
                };
                match next {
                    Some(Next::Continue) => {}
                    Some(Next::Ignore(reason)) => {
                        let fd = conn.fd;
                        self.remove_conn(d.tgid, d.sk);
                        self.ignore_in_kernel(d.tgid, fd, d.sk, reason);
                    }
                    // No session (unsupported), or a second switch at once.
                    None | Some(Next::Switch(_)) => {
                        let fd = conn.fd;
                        self.remove_conn(d.tgid, d.sk);
                        self.ignore_in_kernel(d.tgid, fd, d.sk, "unsupported_protocol");
                    }
                }
            }
            Some(Next::Ignore(reason)) => {
                // Upgraded (WebSocket), tunnelled or encrypted streams: stop
                // the kernel sending them.
                let fd = conn.fd;
                self.remove_conn(d.tgid, d.sk);
                self.ignore_in_kernel(d.tgid, fd, d.sk, reason);
            }
        }
        self.metrics
            .connections_tracked
            .set(self.conns.len() as i64);
    }

    /// Removes a connection from the table (and the correlator's index).
    fn remove_conn(&mut self, tgid: u32, sk: u64) -> Option<Conn> {
        let conn = self.conns.remove(tgid, sk)?;
        self.corr.conn_closed(conn.netns, conn.local, conn.remote);
        Some(conn)
    }

    fn on_close(&mut self, c: &ConnClose) {
        self.recently_ignored.remove(&(c.tgid, c.sk));
        if let Some(conn) = self.remove_conn(c.tgid, c.sk) {
            self.finish_conn(conn, c.ts_ns);
        }
        self.metrics
            .connections_tracked
            .set(self.conns.len() as i64);
    }

    fn on_exit(&mut self, p: &ProcExit) {
        self.recently_ignored.retain(|&(tgid, _)| tgid != p.tgid);
        if let Some(gate) = self.gate.as_mut() {
            gate.forget(p.tgid);
        }
        let mut resource_key = None;
        for (_, conn) in self.conns.remove_process(p.tgid) {
            self.corr.conn_closed(conn.netns, conn.local, conn.remote);
            resource_key = Some(conn.resource.key);
            self.finish_conn(conn, p.ts_ns);
        }
        let cached = self.resources.remove(p.tgid).map(|r| r.key);
        self.corr.process_exited(p.tgid, cached.or(resource_key));
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
        let (redactor, clock, corr, metrics) =
            (&self.redactor, &self.clock, &mut self.corr, &self.metrics);
        let mut gone = Vec::new();
        self.conns.retain(
            |tgid, sk, conn| {
                let idle_for = now.saturating_sub(conn.last_ns);
                with_session(conn, redactor, clock, corr, metrics, None, |s, emit| {
                    s.expire(now, timeout, emit);
                });
                let quiet = conn.session.as_ref().is_none_or(|s| s.is_idle());
                let keep = !(quiet && idle_for >= idle);
                if !keep {
                    forget.push((tgid, conn.fd, sk));
                }
                keep
            },
            |_, _, conn| gone.push((conn.netns, conn.local, conn.remote)),
        );
        for (netns, local, remote) in gone {
            self.corr.conn_closed(netns, local, remote);
        }
        self.corr.expire(now);
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
        with_session(
            &mut conn,
            &self.redactor,
            &self.clock,
            &mut self.corr,
            &self.metrics,
            None,
            |s, emit| s.close(now_ns, emit),
        );
    }

    fn ignore_in_kernel(&mut self, tgid: u32, fd: i32, sk: u64, reason: &str) {
        if self.recently_ignored.len() >= MAX_RECENTLY_IGNORED {
            self.recently_ignored.clear();
        }
        self.recently_ignored.insert((tgid, sk));
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
        let conns = &self.conns;
        self.corr
            .place_held(&|tgid, out| conns.pending_server_requests(tgid, out));
        self.corr.release_ready();
        self.corr.flush_queue();
    }

    /// Ends every session (shutdown) and emits what they complete.
    pub fn close_all(&mut self) {
        let now = monotonic_ns();
        let mut all = Vec::new();
        self.conns
            .retain(|_, _, _| false, |tgid, sk, conn| all.push((tgid, sk, conn)));
        for (_, _, conn) in all {
            self.corr.conn_closed(conn.netns, conn.local, conn.remote);
            self.finish_conn(conn, now);
        }
        let conns = &self.conns;
        self.corr
            .place_held(&|tgid, out| conns.pending_server_requests(tgid, out));
        self.corr.release_all();
    }
}

/// The thread of a write syscall (the spans it completes were answered by
/// it).
fn write_tid(d: &DataIn<'_>) -> Option<u32> {
    (d.direction == agent_common::Direction::Egress).then_some(d.times.tid)
}

fn conn_kind(role: Role) -> SpanKind {
    match role {
        Role::Server => SpanKind::Server,
        _ => SpanKind::Client,
    }
}

/// Runs `f` on the connection's session (if it has one) with an [`Emit`]
/// describing the connection.
fn with_session<R>(
    conn: &mut Conn,
    redactor: &Redactor,
    clock: &Clock,
    corr: &mut Correlator,
    metrics: &Metrics,
    write_tid: Option<u32>,
    f: impl FnOnce(&mut dyn crate::protocol::Session, &mut Emit<'_>) -> R,
) -> Option<R> {
    let session = conn.session.as_mut()?;
    let ctx = ConnContext {
        kind: conn_kind(conn.role),
        netns: conn.netns,
        local: conn.local,
        remote: conn.remote,
        local_ip: &conn.local_ip,
        remote_ip: &conn.remote_ip,
        resource: &conn.resource,
    };
    let mut emit = Emit::new(
        conn.protocol,
        ctx,
        redactor,
        clock,
        metrics,
        corr,
        write_tid,
    );
    Some(f(session.as_mut(), &mut emit))
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
