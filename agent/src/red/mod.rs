//! RED metrics (rate, errors, duration) from every span, before any
//! sampling: the semantic conventions' duration histograms
//! (`http.server.request.duration`, `http.client.request.duration`,
//! `rpc.server.call.duration`, `rpc.client.call.duration`,
//! `db.client.operation.duration`), per process, on `/metrics` and over
//! OTLP; and the service graph (`graph.rs`).
//!
//! The pipeline owns a [`RedRecorder`]: it finds a span's series from the
//! span's typed [`Facts`] (indices, interned strings, numbers — no
//! formatting or allocation once the series exists) and increments a
//! histogram (`histogram.rs`). Series are created rarely and registered in
//! the [`RedShared`] registry that the `/metrics` page and the OTLP export
//! read (`expose.rs`).
//!
//! Cardinality is bounded twice: `http.route` is a heuristic template of
//! the path (`span::route`), capped per service (`/{overflow}` beyond); and
//! every metric holds at most `max_series` series: past that, the
//! measurements of a process go to one overflow series carrying
//! `otel.metric.overflow="true"` (as the OpenTelemetry SDKs' cardinality
//! limit does), counted in `agent_red_series_overflow_total{metric}`. A
//! process's series are removed five minutes after it exits.

pub mod expose;
pub mod graph;
pub mod histogram;
mod labels;

use std::{
    collections::HashMap as StdHashMap,
    sync::{Arc, Mutex},
};

use foldhash::HashMap;

use self::{
    histogram::{Bounds, Counter, DB_BUCKETS, HTTP_BUCKETS, Histogram},
    labels::{Interner, Key, Label, LabelValue, NONE},
};
use crate::{
    resource::ProcessResource,
    span::{
        SpanKind, SpanName, SpanRecord,
        model::{ErrorKind, Facts, HTTP_METHODS},
        route::RouteTable,
    },
};

/// How long the series of an exited process are kept.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(300);

/// The duration metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    HttpServer = 0,
    HttpClient = 1,
    RpcServer = 2,
    RpcClient = 3,
    DbClient = 4,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::HttpServer,
        Metric::HttpClient,
        Metric::RpcServer,
        Metric::RpcClient,
        Metric::DbClient,
    ];

    /// The OpenTelemetry name.
    pub const fn otel_name(self) -> &'static str {
        match self {
            Metric::HttpServer => "http.server.request.duration",
            Metric::HttpClient => "http.client.request.duration",
            Metric::RpcServer => "rpc.server.call.duration",
            Metric::RpcClient => "rpc.client.call.duration",
            Metric::DbClient => "db.client.operation.duration",
        }
    }

    /// The Prometheus family name (unit suffix as the OpenTelemetry
    /// Prometheus exporters write it).
    pub const fn prom_name(self) -> &'static str {
        match self {
            Metric::HttpServer => "http_server_request_duration_seconds",
            Metric::HttpClient => "http_client_request_duration_seconds",
            Metric::RpcServer => "rpc_server_call_duration_seconds",
            Metric::RpcClient => "rpc_client_call_duration_seconds",
            Metric::DbClient => "db_client_operation_duration_seconds",
        }
    }

    pub const fn description(self) -> &'static str {
        match self {
            Metric::HttpServer => "Duration of HTTP server requests.",
            Metric::HttpClient => "Duration of HTTP client requests.",
            Metric::RpcServer => {
                "Measures the duration of an incoming Remote Procedure Call (RPC)."
            }
            Metric::RpcClient => {
                "Measures the duration of an outgoing Remote Procedure Call (RPC)."
            }
            Metric::DbClient => "Duration of database client operations.",
        }
    }

    pub const fn buckets(self) -> &'static [f64] {
        match self {
            Metric::DbClient => DB_BUCKETS,
            _ => HTTP_BUCKETS,
        }
    }

    /// Label value in the agent's own metrics.
    pub const fn short(self) -> &'static str {
        match self {
            Metric::HttpServer => "http_server",
            Metric::HttpClient => "http_client",
            Metric::RpcServer => "rpc_server",
            Metric::RpcClient => "rpc_client",
            Metric::DbClient => "db_client",
        }
    }
}

/// How a process is identified on `/metrics`: `service_name`,
/// `service_namespace` (when set), `service_instance_id` (the process's own
/// `service.instance.id`, else `<host.name>:<pid>`), and the pod's
/// `k8s_namespace_name` / `k8s_pod_name` when known. (`job` and `instance`
/// are the agent's, set by Prometheus.)
#[derive(Debug)]
pub struct ProcessSeries {
    pub resource: Arc<ProcessResource>,
    pub prom_labels: Vec<(&'static str, String)>,
}

impl ProcessSeries {
    fn new(resource: &Arc<ProcessResource>) -> Self {
        let get = |k: &'static str| {
            resource
                .resource
                .get(&opentelemetry::Key::from_static_str(k))
                .map(|v| v.as_str().into_owned())
                .filter(|v| !v.is_empty())
        };
        let mut prom_labels = vec![(
            "service_name",
            get("service.name").unwrap_or_else(|| resource.info.service_name.clone()),
        )];
        if let Some(ns) = get("service.namespace") {
            prom_labels.push(("service_namespace", ns));
        }
        let instance = get("service.instance.id").unwrap_or_else(|| {
            format!(
                "{}:{}",
                get("host.name").unwrap_or_default(),
                resource.info.pid
            )
        });
        prom_labels.push(("service_instance_id", instance));
        for (k, p) in [
            ("k8s.namespace.name", "k8s_namespace_name"),
            ("k8s.pod.name", "k8s_pod_name"),
        ] {
            if let Some(v) = get(k) {
                prom_labels.push((p, v));
            }
        }
        Self {
            resource: Arc::clone(resource),
            prom_labels,
        }
    }

    pub fn service_name(&self) -> &str {
        &self.prom_labels[0].1
    }
}

/// One registered series.
#[derive(Debug)]
pub struct Series {
    pub metric: Metric,
    pub process: Arc<ProcessSeries>,
    pub labels: Vec<Label>,
    pub hist: Arc<Histogram>,
}

/// Counts of the recorder, read by `/metrics`.
#[derive(Debug, Default)]
pub struct RedStats {
    pub series_overflow: [Counter; 5],
    pub route_overflow: Counter,
    pub measured: [Counter; 5],
}

/// What readers see: every series, and the service graph.
#[derive(Debug)]
pub struct RedShared {
    series: Mutex<Vec<Series>>,
    pub graph: graph::GraphShared,
    pub stats: RedStats,
    bounds: [Bounds; 5],
}

impl Default for RedShared {
    fn default() -> Self {
        Self {
            series: Mutex::default(),
            graph: graph::GraphShared::default(),
            stats: RedStats::default(),
            bounds: Metric::ALL.map(|m| Bounds::new(m.buckets())),
        }
    }
}

impl RedShared {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Runs `f` over the registered series (under the registry's lock).
    pub fn with_series<R>(&self, f: impl FnOnce(&[Series]) -> R) -> R {
        let s = self.series.lock().unwrap_or_else(|p| p.into_inner());
        f(&s)
    }

    pub fn bounds(&self, m: Metric) -> &Bounds {
        &self.bounds[m as usize]
    }
}

/// Limits of the recorder.
#[derive(Clone, Copy, Debug)]
pub struct RedLimits {
    /// Series per metric (over all processes); past it, overflow series.
    pub max_series: usize,
    /// `http.route` templates per service; past it, `/{overflow}`.
    pub max_routes: usize,
}

impl Default for RedLimits {
    fn default() -> Self {
        Self {
            max_series: 10_000,
            max_routes: 200,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct HttpServerKey {
    proc: u64,
    method: u8,
    status: u16,
    route: u32,
    https: bool,
    version: u8,
    error: ErrorKind,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct HttpClientKey {
    proc: u64,
    method: u8,
    status: u16,
    address: u32,
    port: u16,
    https: bool,
    version: u8,
    error: ErrorKind,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RpcKey {
    proc: u64,
    method: u32,
    /// 0..=16 and beyond; `u32::MAX`: none.
    status: u32,
    address: u32,
    port: u16,
    error: ErrorKind,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct DbKey {
    proc: u64,
    namespace: u32,
    operation: u32,
    summary: u32,
    status: u32,
    address: u32,
    port: u16,
    error: ErrorKind,
}

fn version_index(v: &str) -> u8 {
    match v {
        "1.0" => 0,
        "1.1" => 1,
        _ => 2,
    }
}

const VERSIONS: [&str; 3] = ["1.0", "1.1", "2"];

/// Per-process state of the recorder.
struct Proc {
    series: Arc<ProcessSeries>,
    /// Hash of `service.name`: the route table's service.
    service: u64,
}

/// The pipeline's side: finds series by typed keys and records.
pub struct RedRecorder {
    shared: Arc<RedShared>,
    limits: RedLimits,
    routes: RouteTable,
    strings: Interner,
    procs: HashMap<u64, Proc>,
    http_server: HashMap<HttpServerKey, Arc<Histogram>>,
    http_client: HashMap<HttpClientKey, Arc<Histogram>>,
    rpc: [HashMap<RpcKey, Arc<Histogram>>; 2],
    db: HashMap<DbKey, Arc<Histogram>>,
    /// Overflow series per (metric, process).
    overflow: HashMap<(u8, u64), Arc<Histogram>>,
    counts: [usize; 5],
    route_overflow_seen: u64,
    /// Processes that exited, with when.
    exited: std::collections::VecDeque<(u64, u64)>,
    pub graph: graph::GraphRecorder,
    clock_unix_ns: fn() -> u64,
}

fn wall_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl RedRecorder {
    pub fn new(shared: Arc<RedShared>, limits: RedLimits) -> Self {
        Self {
            graph: graph::GraphRecorder::new(Arc::clone(&shared), limits.max_series),
            shared,
            limits,
            routes: RouteTable::new(limits.max_routes, 4096),
            strings: Interner::new(1 << 17),
            procs: HashMap::default(),
            http_server: HashMap::default(),
            http_client: HashMap::default(),
            rpc: [HashMap::default(), HashMap::default()],
            db: HashMap::default(),
            overflow: HashMap::default(),
            counts: [0; 5],
            route_overflow_seen: 0,
            exited: std::collections::VecDeque::new(),
            clock_unix_ns: wall_now_ns,
        }
    }

    pub fn shared(&self) -> &Arc<RedShared> {
        &self.shared
    }

    fn proc(&mut self, resource: &Arc<ProcessResource>) -> (u64, Arc<ProcessSeries>, u64) {
        let key = resource.key;
        let p = self.procs.entry(key).or_insert_with(|| {
            let series = Arc::new(ProcessSeries::new(resource));
            let service = labels::fnv(series.service_name());
            Proc { series, service }
        });
        (key, Arc::clone(&p.series), p.service)
    }

    /// The service (hash of `service.name`) of a process, for the route
    /// table and the service graph.
    pub fn service_of(&mut self, resource: &Arc<ProcessResource>) -> Arc<ProcessSeries> {
        self.proc(resource).1
    }

    /// Sets `http.route` (and the span name `{method} {route}`) of an HTTP
    /// SERVER span from its path template, then records the span's
    /// duration in its metric.
    pub fn record(&mut self, span: &mut SpanRecord) {
        let duration = span
            .correlation
            .end_ns
            .saturating_sub(span.correlation.start_ns);
        let (proc_key, process, service) = self.proc(&span.resource);
        let facts = std::mem::take(&mut span.facts);
        self.record_facts(span, &facts, proc_key, &process, service, duration);
        span.facts = facts;
    }

    fn record_facts(
        &mut self,
        span: &mut SpanRecord,
        facts: &Facts,
        proc_key: u64,
        process: &Arc<ProcessSeries>,
        service: u64,
        duration: u64,
    ) {
        match (facts, span.kind) {
            (Facts::Http(f), SpanKind::Server) => {
                let route = match &f.path {
                    Some(p) => {
                        let r = self.routes.route(service, p);
                        let overflowed = self.routes.overflowed();
                        if overflowed != self.route_overflow_seen {
                            self.route_overflow_seen = overflowed;
                            self.shared.stats.route_overflow.inc();
                        }
                        Some(r)
                    }
                    None => None,
                };
                let route_id = match &route {
                    Some(r) => self.strings.get(r),
                    None => Some(NONE),
                };
                if let Some(r) = &route {
                    span.attributes
                        .push(opentelemetry::KeyValue::new("http.route", Arc::clone(r)));
                    if f.method != 9 {
                        let method = HTTP_METHODS[usize::from(f.method)];
                        span.name = SpanName::Shared(crate::intern::intern_built(|b| {
                            b.push_str(method);
                            b.push(' ');
                            b.push_str(r);
                        }));
                    }
                }
                let key = route_id.map(|route| HttpServerKey {
                    proc: proc_key,
                    method: f.method,
                    status: f.status.unwrap_or(0),
                    route,
                    https: f.https,
                    version: version_index(f.version),
                    error: f.error,
                });
                let hist = match key.and_then(|k| self.http_server.get(&k)) {
                    Some(h) => Arc::clone(h),
                    None => {
                        let f = f.clone();
                        self.create(Metric::HttpServer, proc_key, process, |rec| {
                            let route = route.as_ref()?;
                            let route_id = rec.strings.intern(route)?;
                            let key = HttpServerKey {
                                proc: proc_key,
                                method: f.method,
                                status: f.status.unwrap_or(0),
                                route: route_id,
                                https: f.https,
                                version: version_index(f.version),
                                error: f.error,
                            };
                            let mut l = http_common(f.method, f.version, f.https);
                            if let Some(s) = f.status {
                                l.push(Label::int(Key::HTTP_STATUS, i64::from(s)));
                            }
                            l.push(Label::arc(Key::HTTP_ROUTE, Arc::clone(route)));
                            push_error_http(&mut l, f.error, f.status);
                            Some((l, move |rec: &mut Self, h| {
                                rec.http_server.insert(key, h);
                            }))
                        })
                    }
                };
                self.observe(Metric::HttpServer, &hist, duration);
            }
            (Facts::Http(f), SpanKind::Client) => {
                let key = self
                    .strings
                    .get(&f.server_address)
                    .map(|address| HttpClientKey {
                        proc: proc_key,
                        method: f.method,
                        status: f.status.unwrap_or(0),
                        address,
                        port: f.server_port,
                        https: f.https,
                        version: version_index(f.version),
                        error: f.error,
                    });
                let hist = match key.and_then(|k| self.http_client.get(&k)) {
                    Some(h) => Arc::clone(h),
                    None => {
                        let f = f.clone();
                        self.create(Metric::HttpClient, proc_key, process, |rec| {
                            let address = rec.strings.intern(&f.server_address)?;
                            let key = HttpClientKey {
                                proc: proc_key,
                                method: f.method,
                                status: f.status.unwrap_or(0),
                                address,
                                port: f.server_port,
                                https: f.https,
                                version: version_index(f.version),
                                error: f.error,
                            };
                            let mut l = http_common(f.method, f.version, f.https);
                            if let Some(s) = f.status {
                                l.push(Label::int(Key::HTTP_STATUS, i64::from(s)));
                            }
                            l.push(Label::arc(
                                Key::SERVER_ADDRESS,
                                Arc::clone(&f.server_address),
                            ));
                            l.push(Label::int(Key::SERVER_PORT, i64::from(f.server_port)));
                            push_error_http(&mut l, f.error, f.status);
                            Some((l, move |rec: &mut Self, h| {
                                rec.http_client.insert(key, h);
                            }))
                        })
                    }
                };
                self.observe(Metric::HttpClient, &hist, duration);
            }
            (Facts::Rpc(f), kind) => {
                let (metric, side) = match kind {
                    SpanKind::Server => (Metric::RpcServer, 0),
                    SpanKind::Client => (Metric::RpcClient, 1),
                };
                let method = match &f.method {
                    Some(m) => self.strings.get(m),
                    None => Some(NONE),
                };
                let address = match kind {
                    SpanKind::Server => Some(NONE),
                    SpanKind::Client => self.strings.get(&f.server_address),
                };
                let key = method.zip(address).map(|(method, address)| RpcKey {
                    proc: proc_key,
                    method,
                    status: f.status.unwrap_or(u32::MAX),
                    address,
                    port: if side == 1 { f.server_port } else { 0 },
                    error: f.error,
                });
                let hist = match key.and_then(|k| self.rpc[side].get(&k)) {
                    Some(h) => Arc::clone(h),
                    None => {
                        let f = f.clone();
                        self.create(metric, proc_key, process, |rec| {
                            let method = match &f.method {
                                Some(m) => rec.strings.intern(m)?,
                                None => NONE,
                            };
                            let address = match side {
                                0 => NONE,
                                _ => rec.strings.intern(&f.server_address)?,
                            };
                            let key = RpcKey {
                                proc: proc_key,
                                method,
                                status: f.status.unwrap_or(u32::MAX),
                                address,
                                port: if side == 1 { f.server_port } else { 0 },
                                error: f.error,
                            };
                            let mut l = vec![Label::fixed(Key::RPC_SYSTEM, "grpc")];
                            l.push(match &f.method {
                                Some(m) => Label::arc(Key::RPC_METHOD, Arc::clone(m)),
                                None => Label::fixed(Key::RPC_METHOD, "_OTHER"),
                            });
                            if let Some(code) = f.status {
                                l.push(Label::cow(
                                    Key::RPC_STATUS,
                                    crate::span::grpc::status_name(code),
                                ));
                            }
                            if side == 1 {
                                l.push(Label::arc(
                                    Key::SERVER_ADDRESS,
                                    Arc::clone(&f.server_address),
                                ));
                                l.push(Label::int(Key::SERVER_PORT, i64::from(f.server_port)));
                            }
                            match (f.error, f.status) {
                                (ErrorKind::Status, Some(code)) => l.push(Label::cow(
                                    Key::ERROR_TYPE,
                                    crate::span::grpc::status_name(code),
                                )),
                                (e, _) => {
                                    if let Some(t) = e.transport_name() {
                                        l.push(Label::fixed(Key::ERROR_TYPE, t));
                                    }
                                }
                            }
                            Some((l, move |rec: &mut Self, h| {
                                rec.rpc[side].insert(key, h);
                            }))
                        })
                    }
                };
                self.observe(metric, &hist, duration);
            }
            (Facts::Db(f), SpanKind::Client) => {
                let opt = |s: &Interner, v: Option<&str>| match v {
                    Some(v) => s.get(v),
                    None => Some(NONE),
                };
                let key = (|| {
                    Some(DbKey {
                        proc: proc_key,
                        namespace: opt(&self.strings, f.namespace.as_deref())?,
                        operation: opt(&self.strings, f.operation.as_deref())?,
                        summary: opt(&self.strings, f.summary.as_deref())?,
                        status: opt(&self.strings, f.status_code.as_deref())?,
                        address: self.strings.get(&f.server_address)?,
                        port: f.server_port,
                        error: f.error,
                    })
                })();
                let hist = match key.and_then(|k| self.db.get(&k)) {
                    Some(h) => Arc::clone(h),
                    None => {
                        let f = f.clone();
                        self.create(Metric::DbClient, proc_key, process, |rec| {
                            let mut intern = |v: Option<&str>| match v {
                                Some(v) => rec.strings.intern(v),
                                None => Some(NONE),
                            };
                            let key = DbKey {
                                proc: proc_key,
                                namespace: intern(f.namespace.as_deref())?,
                                operation: intern(f.operation.as_deref())?,
                                summary: intern(f.summary.as_deref())?,
                                status: intern(f.status_code.as_deref())?,
                                address: intern(Some(&f.server_address))?,
                                port: f.server_port,
                                error: f.error,
                            };
                            let mut l = vec![Label::fixed(Key::DB_SYSTEM, "postgresql")];
                            if let Some(v) = &f.namespace {
                                l.push(Label::arc(Key::DB_NAMESPACE, Arc::clone(v)));
                            }
                            if let Some(v) = &f.operation {
                                l.push(Label::cow(Key::DB_OPERATION, v.clone()));
                            }
                            if let Some(v) = &f.summary {
                                l.push(Label::arc(Key::DB_SUMMARY, Arc::clone(v)));
                            }
                            if let Some(v) = &f.status_code {
                                l.push(Label::arc(Key::DB_STATUS, Arc::clone(v)));
                            }
                            l.push(Label::arc(
                                Key::SERVER_ADDRESS,
                                Arc::clone(&f.server_address),
                            ));
                            l.push(Label::int(Key::SERVER_PORT, i64::from(f.server_port)));
                            match f.error {
                                ErrorKind::Status => {
                                    if let Some(v) = &f.status_code {
                                        l.push(Label::arc(Key::ERROR_TYPE, Arc::clone(v)));
                                    }
                                }
                                e => {
                                    if let Some(t) = e.transport_name() {
                                        l.push(Label::fixed(Key::ERROR_TYPE, t));
                                    }
                                }
                            }
                            Some((l, move |rec: &mut Self, h| {
                                rec.db.insert(key, h);
                            }))
                        })
                    }
                };
                self.observe(Metric::DbClient, &hist, duration);
            }
            // Database SERVER spans (the PostgreSQL backend) have no
            // duration metric in the conventions; hand-built spans none.
            (Facts::Db(_), SpanKind::Server) | (Facts::None, _) => {}
        }
    }

    fn observe(&self, metric: Metric, hist: &Histogram, duration_ns: u64) {
        hist.record(self.shared.bounds(metric), duration_ns);
        self.shared.stats.measured[metric as usize].inc();
    }

    /// Creates and registers a series; `build` returns its labels and how
    /// to insert it into the typed map (`None`: a string could not be
    /// interned, the overflow series is used). At the metric's cap, the
    /// overflow series of the process.
    fn create<F>(
        &mut self,
        metric: Metric,
        proc_key: u64,
        process: &Arc<ProcessSeries>,
        build: impl FnOnce(&mut Self) -> Option<(Vec<Label>, F)>,
    ) -> Arc<Histogram>
    where
        F: FnOnce(&mut Self, Arc<Histogram>),
    {
        let built = if self.counts[metric as usize] < self.limits.max_series {
            build(self)
        } else {
            None
        };
        let Some((labels, insert)) = built else {
            self.shared.stats.series_overflow[metric as usize].inc();
            return self.overflow_series(metric, proc_key, process);
        };
        let hist = Arc::new(Histogram::new(
            self.shared.bounds(metric),
            (self.clock_unix_ns)(),
        ));
        self.counts[metric as usize] += 1;
        insert(self, Arc::clone(&hist));
        self.register(metric, process, labels, Arc::clone(&hist));
        hist
    }

    fn overflow_series(
        &mut self,
        metric: Metric,
        proc_key: u64,
        process: &Arc<ProcessSeries>,
    ) -> Arc<Histogram> {
        if let Some(h) = self.overflow.get(&(metric as u8, proc_key)) {
            return Arc::clone(h);
        }
        let hist = Arc::new(Histogram::new(
            self.shared.bounds(metric),
            (self.clock_unix_ns)(),
        ));
        self.overflow
            .insert((metric as u8, proc_key), Arc::clone(&hist));
        self.register(
            metric,
            process,
            vec![Label::bool(Key::OVERFLOW, true)],
            Arc::clone(&hist),
        );
        hist
    }

    fn register(
        &self,
        metric: Metric,
        process: &Arc<ProcessSeries>,
        labels: Vec<Label>,
        hist: Arc<Histogram>,
    ) {
        let mut s = self.shared.series.lock().unwrap_or_else(|p| p.into_inner());
        s.push(Series {
            metric,
            process: Arc::clone(process),
            labels,
            hist,
        });
    }

    /// A process exited: its series are removed after [`LINGER`] (so that
    /// a short-lived client's last requests are still scraped and exported).
    pub fn process_exited(&mut self, resource_key: u64) {
        if self.procs.contains_key(&resource_key) {
            self.exited
                .push_back(((self.clock_unix_ns)(), resource_key));
        }
    }

    /// Removes the series of processes that exited [`LINGER`] ago.
    pub fn tick(&mut self) {
        let now = (self.clock_unix_ns)();
        while let Some(&(at, key)) = self.exited.front() {
            if now.saturating_sub(at) < LINGER.as_nanos() as u64 {
                break;
            }
            self.exited.pop_front();
            self.forget_process(key);
        }
    }

    /// Removes a process's series at once (they stop being exposed and
    /// exported).
    pub fn forget_process(&mut self, resource_key: u64) {
        if self.procs.remove(&resource_key).is_none() {
            return;
        }
        let mut removed = [0usize; 5];
        self.http_server.retain(|k, _| k.proc != resource_key);
        self.http_client.retain(|k, _| k.proc != resource_key);
        for m in &mut self.rpc {
            m.retain(|k, _| k.proc != resource_key);
        }
        self.db.retain(|k, _| k.proc != resource_key);
        self.overflow.retain(|(_, p), _| *p != resource_key);
        {
            let mut s = self.shared.series.lock().unwrap_or_else(|p| p.into_inner());
            s.retain(|series| {
                let gone = series.process.resource.key == resource_key;
                if gone
                    && !series
                        .labels
                        .iter()
                        .any(|l| l.key.otel == Key::OVERFLOW.otel)
                {
                    removed[series.metric as usize] += 1;
                }
                !gone
            });
        }
        for (c, r) in self.counts.iter_mut().zip(removed) {
            *c = c.saturating_sub(r);
        }
    }

    /// A stitched pair: an edge between the two spans' services.
    pub fn edge_pair(&mut self, client: &SpanRecord, server: &SpanRecord) {
        self.edge_pair_parts(&client.resource, span_ns(client), client.is_error(), server);
    }

    /// [`Self::edge_pair`] from what is kept of a client span.
    pub fn edge_pair_parts(
        &mut self,
        client: &Arc<ProcessResource>,
        client_ns: u64,
        client_error: bool,
        server: &SpanRecord,
    ) {
        let c = self.service_of(client);
        let s = self.service_of(&server.resource);
        self.graph.record(&graph::EdgeSample {
            client: c.service_name(),
            server: s.service_name(),
            kind: graph::EdgeKind::Direct,
            failed: client_error || server.is_error(),
            client_ns: Some(client_ns),
            server_ns: Some(span_ns(server)),
        });
    }

    /// A CLIENT span without a server span on this host: an edge to its
    /// `server.address`.
    pub fn edge_virtual(&mut self, client: &SpanRecord) {
        self.edge_virtual_parts(
            &client.resource,
            &client.facts,
            span_ns(client),
            client.is_error(),
        );
    }

    /// [`Self::edge_virtual`] from what is kept of a client span.
    pub fn edge_virtual_parts(
        &mut self,
        client: &Arc<ProcessResource>,
        facts: &Facts,
        client_ns: u64,
        error: bool,
    ) {
        let (address, kind) = match facts {
            Facts::Http(f) => (Arc::clone(&f.server_address), graph::EdgeKind::VirtualNode),
            Facts::Rpc(f) => (Arc::clone(&f.server_address), graph::EdgeKind::VirtualNode),
            Facts::Db(f) => (Arc::clone(&f.server_address), graph::EdgeKind::Database),
            Facts::None => return,
        };
        let c = self.service_of(client);
        self.graph.record(&graph::EdgeSample {
            client: c.service_name(),
            server: &address,
            kind,
            failed: error,
            client_ns: Some(client_ns),
            server_ns: None,
        });
    }

    /// Series per metric (the overflow ones excluded).
    pub fn series_count(&self, metric: Metric) -> usize {
        self.counts[metric as usize]
    }
}

fn span_ns(s: &SpanRecord) -> u64 {
    s.correlation.end_ns.saturating_sub(s.correlation.start_ns)
}

/// Labels every HTTP series has.
fn http_common(method: u8, version: &'static str, https: bool) -> Vec<Label> {
    vec![
        Label::fixed(
            Key::HTTP_METHOD,
            HTTP_METHODS[usize::from(method).min(HTTP_METHODS.len() - 1)],
        ),
        Label::fixed(Key::URL_SCHEME, if https { "https" } else { "http" }),
        Label::fixed(Key::NET_PROTOCOL_NAME, "http"),
        Label::fixed(
            Key::NET_PROTOCOL_VERSION,
            VERSIONS[usize::from(version_index(version))],
        ),
    ]
}

fn push_error_http(l: &mut Vec<Label>, error: ErrorKind, status: Option<u16>) {
    match (error, status) {
        (ErrorKind::Status, Some(s)) => l.push(Label {
            key: Key::ERROR_TYPE,
            value: LabelValue::Str(Arc::from(s.to_string())),
        }),
        (e, _) => {
            if let Some(t) = e.transport_name() {
                l.push(Label::fixed(Key::ERROR_TYPE, t));
            }
        }
    }
}

/// Labels of a series by key, for tests and the service graph.
pub fn label_map(labels: &[Label]) -> StdHashMap<&'static str, String> {
    labels
        .iter()
        .map(|l| (l.key.otel, l.value.to_string()))
        .collect()
}

#[cfg(test)]
pub(crate) mod red_tests;
