//! Configuration: defaults < YAML file < environment < command-line flags.
//!
//! Every file key has a flag and an `AGENT_*` environment variable (clap
//! reads both). The standard `OTEL_EXPORTER_OTLP_*` variables configure the
//! OTLP destination as in every OpenTelemetry SDK; they win over the file and
//! lose to explicit agent flags. `agent --print-config` shows the result.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use agent_common::{
    DEFAULT_CAPTURE_BYTES, DEFAULT_MAX_CONNS, DEFAULT_RING_BYTES, MAX_CAPTURE_BYTES,
};
use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

/// Zero-code telemetry agent: captures HTTP traffic of every process on this
/// host with eBPF and exports OpenTelemetry spans.
#[derive(Debug, Parser)]
#[command(name = "agent", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// YAML configuration file.
    #[arg(short, long, env = "AGENT_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (after file, environment and flags)
    /// and exit.
    #[arg(long, global = true)]
    pub print_config: bool,

    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default).
    Run,
    /// Check whether this host can run the agent (kernel, BTF, tracepoints,
    /// uprobes, bpffs, tracefs, capabilities, ring buffers, cgroup v2,
    /// memlock) and say how to fix what is missing. Exits non-zero when the
    /// agent cannot run.
    Doctor,
}

/// Settings as flags/environment; `None` means "not given here".
#[derive(Debug, Default, clap::Args)]
pub struct Flags {
    /// Payload bytes copied per socket syscall (1..=8192).
    #[arg(long, env = "AGENT_CAPTURE_BYTES", global = true)]
    pub capture_bytes: Option<u32>,
    /// Size of the kernel→agent ring buffer in bytes (power of two).
    #[arg(long, env = "AGENT_RING_BUFFER_BYTES", global = true)]
    pub ring_buffer_bytes: Option<u32>,
    /// Sockets the kernel tracks at once.
    #[arg(long, env = "AGENT_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<u32>,
    /// How long a request may wait for its response before it is reported
    /// as a timeout (e.g. `30s`).
    #[arg(long, env = "AGENT_REQUEST_TIMEOUT", value_parser = parse_duration, global = true)]
    pub request_timeout: Option<Duration>,
    /// Query-string redaction: `all` values, only `sensitive` keys, or `none`.
    #[arg(long, env = "AGENT_REDACT_QUERY", global = true)]
    pub redact_query: Option<RedactQuery>,
    /// HTTP/2 streams traced at once per connection (1..=65536).
    #[arg(long, env = "AGENT_HTTP2_MAX_STREAMS", global = true)]
    pub http2_max_streams: Option<usize>,
    /// HPACK dynamic-table bytes kept per connection direction (0..=1048576).
    #[arg(long, env = "AGENT_HTTP2_MAX_HEADER_TABLE_BYTES", global = true)]
    pub http2_max_header_table_bytes: Option<usize>,
    /// Replace literals in exported PostgreSQL query texts by `?`
    /// (`true`, the default) or export them as sent (`false`).
    #[arg(long, env = "AGENT_POSTGRES_SANITIZE_QUERIES", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub postgres_sanitize_queries: Option<bool>,
    /// How long a PostgreSQL statement may run before its span is ended as
    /// a timeout (e.g. `5m`).
    #[arg(long, env = "AGENT_POSTGRES_QUERY_TIMEOUT", value_parser = parse_duration, global = true)]
    pub postgres_query_timeout: Option<Duration>,
    /// Where spans go: `auto` (OTLP when an endpoint is configured, else
    /// stdout), `otlp`, `stdout` or `none`.
    #[arg(long, env = "AGENT_EXPORT", global = true)]
    pub export: Option<ExportMode>,
    /// OTLP endpoint (base URL; `/v1/traces` is appended for HTTP).
    #[arg(long, env = "AGENT_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
    /// OTLP protocol: `grpc` or `http/protobuf`.
    #[arg(long, env = "AGENT_OTLP_PROTOCOL", global = true)]
    pub otlp_protocol: Option<OtlpProtocol>,
    /// Address of the Prometheus `/metrics`, `/healthz` and `/readyz`
    /// endpoint, or `off`.
    #[arg(long, env = "AGENT_METRICS_ADDRESS", global = true)]
    pub metrics_address: Option<String>,
    /// Log filter (`info`, `debug`, `agent=debug,warn`, ...). `RUST_LOG`
    /// works too.
    #[arg(long, env = "AGENT_LOG_LEVEL", global = true)]
    pub log_level: Option<String>,

    // The remaining file keys, each as `--<section>-<key>` and
    // `AGENT_<SECTION>_<KEY>` (capture keys without the section, like the
    // flags above).
    /// Records one CPU writes between two wake-ups of the reader
    /// (`capture.wakeup_records`; 0: every record).
    #[arg(long, env = "AGENT_WAKEUP_RECORDS", global = true)]
    pub wakeup_records: Option<u64>,
    /// Data syscalls a connection may carry bytes of no supported protocol
    /// before the kernel stops looking at it (`capture.classify_attempts`,
    /// 0..=65535; 0: never stop).
    #[arg(long, env = "AGENT_CLASSIFY_ATTEMPTS", global = true)]
    pub classify_attempts: Option<u32>,
    /// The reader polls the ring buffer at least this often while records
    /// come (`capture.poll_interval`, e.g. `20ms`; an idle ring is polled
    /// less and less often, down to every 250 ms).
    #[arg(long, env = "AGENT_POLL_INTERVAL", value_parser = parse_duration, global = true)]
    pub poll_interval: Option<Duration>,
    /// Scheduling niceness of the agent's threads, -20..=19
    /// (`capture.nice`; 0 leaves it).
    #[arg(long, env = "AGENT_NICE", global = true, allow_hyphen_values = true)]
    pub nice: Option<i32>,
    /// Requests awaiting a response per connection (`http.max_pending_requests`).
    #[arg(long, env = "AGENT_HTTP_MAX_PENDING_REQUESTS", global = true)]
    pub http_max_pending_requests: Option<usize>,
    /// Longest HTTP head parsed (`http.max_head_bytes`).
    #[arg(long, env = "AGENT_HTTP_MAX_HEAD_BYTES", global = true)]
    pub http_max_head_bytes: Option<usize>,
    /// Query keys redacted in `sensitive` mode, comma-separated
    /// (`http.sensitive_query_keys`).
    #[arg(
        long,
        env = "AGENT_HTTP_SENSITIVE_QUERY_KEYS",
        value_delimiter = ',',
        global = true
    )]
    pub http_sensitive_query_keys: Option<Vec<String>>,
    /// Longest PostgreSQL statement text kept (`postgres.max_query_bytes`).
    #[arg(long, env = "AGENT_POSTGRES_MAX_QUERY_BYTES", global = true)]
    pub postgres_max_query_bytes: Option<usize>,
    /// Prepared statements remembered per PostgreSQL connection
    /// (`postgres.max_prepared_statements`).
    #[arg(long, env = "AGENT_POSTGRES_MAX_PREPARED_STATEMENTS", global = true)]
    pub postgres_max_prepared_statements: Option<usize>,
    /// PostgreSQL messages awaiting an answer per connection
    /// (`postgres.max_pending`).
    #[arg(long, env = "AGENT_POSTGRES_MAX_PENDING", global = true)]
    pub postgres_max_pending: Option<usize>,
    /// Connections with parser state in userspace (`connections.max_tracked`).
    #[arg(long, env = "AGENT_CONNECTIONS_MAX_TRACKED", global = true)]
    pub connections_max_tracked: Option<usize>,
    /// A quiet connection is forgotten after this long
    /// (`connections.idle_timeout`).
    #[arg(long, env = "AGENT_CONNECTIONS_IDLE_TIMEOUT", value_parser = parse_duration, global = true)]
    pub connections_idle_timeout: Option<Duration>,
    /// Processes whose resource is cached (`connections.max_processes`).
    #[arg(long, env = "AGENT_CONNECTIONS_MAX_PROCESSES", global = true)]
    pub connections_max_processes: Option<usize>,
    /// Spans waiting for export (`export.queue_size`).
    #[arg(long, env = "AGENT_EXPORT_QUEUE_SIZE", global = true)]
    pub export_queue_size: Option<usize>,
    /// Spans per export request (`export.batch_size`).
    #[arg(long, env = "AGENT_EXPORT_BATCH_SIZE", global = true)]
    pub export_batch_size: Option<usize>,
    /// A partial batch is exported after this long (`export.interval`).
    #[arg(long, env = "AGENT_EXPORT_INTERVAL", value_parser = parse_duration, global = true)]
    pub export_interval: Option<Duration>,
    /// Full OTLP traces URL, used as is (`export.otlp.traces_endpoint`).
    #[arg(long, env = "AGENT_OTLP_TRACES_ENDPOINT", global = true)]
    pub otlp_traces_endpoint: Option<String>,
    /// Headers of every export request, `key=value,...` with
    /// percent-encoded values (`export.otlp.headers`).
    #[arg(long, env = "AGENT_OTLP_HEADERS", global = true)]
    pub otlp_headers: Option<String>,
    /// Export request timeout (`export.otlp.timeout`, e.g. `10s`).
    #[arg(long, env = "AGENT_OTLP_TIMEOUT", value_parser = parse_duration, global = true)]
    pub otlp_timeout: Option<Duration>,
    /// `gzip` or `none` (`export.otlp.compression`).
    #[arg(long, env = "AGENT_OTLP_COMPRESSION", global = true)]
    pub otlp_compression: Option<OtlpCompression>,

    /// Trace only connections on these ports (local or remote), e.g.
    /// `8080,9000-9100` (`selection.include.ports`).
    #[arg(
        long,
        env = "AGENT_INCLUDE_PORTS",
        value_delimiter = ',',
        global = true
    )]
    pub include_ports: Option<Vec<String>>,
    /// Never trace connections on these ports (`selection.exclude.ports`).
    #[arg(
        long,
        env = "AGENT_EXCLUDE_PORTS",
        value_delimiter = ',',
        global = true
    )]
    pub exclude_ports: Option<Vec<String>>,
    /// Trace only processes whose executable name (or path, for a pattern
    /// with `/`) matches one of these globs (`selection.include.executables`).
    #[arg(
        long,
        env = "AGENT_INCLUDE_EXECUTABLES",
        value_delimiter = ',',
        global = true
    )]
    pub include_executables: Option<Vec<String>>,
    /// Never trace processes whose executable matches
    /// (`selection.exclude.executables`).
    #[arg(
        long,
        env = "AGENT_EXCLUDE_EXECUTABLES",
        value_delimiter = ',',
        global = true
    )]
    pub exclude_executables: Option<Vec<String>>,
    /// Trace only processes whose cgroup path matches one of these globs
    /// (`selection.include.cgroups`).
    #[arg(
        long,
        env = "AGENT_INCLUDE_CGROUPS",
        value_delimiter = ',',
        global = true
    )]
    pub include_cgroups: Option<Vec<String>>,
    /// Never trace processes whose cgroup path matches
    /// (`selection.exclude.cgroups`).
    #[arg(
        long,
        env = "AGENT_EXCLUDE_CGROUPS",
        value_delimiter = ',',
        global = true
    )]
    pub exclude_cgroups: Option<Vec<String>>,
    /// Trace only these containers (ids or id prefixes of at least 12 hex
    /// digits; `selection.include.containers`).
    #[arg(
        long,
        env = "AGENT_INCLUDE_CONTAINERS",
        value_delimiter = ',',
        global = true
    )]
    pub include_containers: Option<Vec<String>>,
    /// Never trace these containers (`selection.exclude.containers`).
    #[arg(
        long,
        env = "AGENT_EXCLUDE_CONTAINERS",
        value_delimiter = ',',
        global = true
    )]
    pub exclude_containers: Option<Vec<String>>,
    /// Trace only pods of these Kubernetes namespaces (globs;
    /// `selection.include.namespaces`).
    #[arg(
        long,
        env = "AGENT_INCLUDE_NAMESPACES",
        value_delimiter = ',',
        global = true
    )]
    pub include_namespaces: Option<Vec<String>>,
    /// Never trace pods of these namespaces (`selection.exclude.namespaces`).
    #[arg(
        long,
        env = "AGENT_EXCLUDE_NAMESPACES",
        value_delimiter = ',',
        global = true
    )]
    pub exclude_namespaces: Option<Vec<String>>,
    /// Trace only pods with one of these labels, `key=value-glob` or `key`
    /// (`selection.include.pod_labels`).
    #[arg(
        long,
        env = "AGENT_INCLUDE_POD_LABELS",
        value_delimiter = ',',
        global = true
    )]
    pub include_pod_labels: Option<Vec<String>>,
    /// Never trace pods with one of these labels
    /// (`selection.exclude.pod_labels`).
    #[arg(
        long,
        env = "AGENT_EXCLUDE_POD_LABELS",
        value_delimiter = ',',
        global = true
    )]
    pub exclude_pod_labels: Option<Vec<String>>,

    /// Kubernetes pod metadata: `auto` (when running in a cluster:
    /// KUBERNETES_SERVICE_HOST set), `on` or `off` (`kubernetes.enabled`).
    #[arg(long, env = "AGENT_KUBERNETES", global = true)]
    pub kubernetes: Option<KubernetesMode>,
    /// This node's name, whose pods are watched (`kubernetes.node_name`;
    /// default `$NODE_NAME`, else the host name).
    #[arg(long, env = "AGENT_KUBERNETES_NODE_NAME", global = true)]
    pub kubernetes_node_name: Option<String>,
    /// API server URL (`kubernetes.api_server`; default: in-cluster
    /// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, or the
    /// kubeconfig's).
    #[arg(long, env = "AGENT_KUBERNETES_API_SERVER", global = true)]
    pub kubernetes_api_server: Option<String>,
    /// A kubeconfig file to use instead of the in-cluster service account
    /// (`kubernetes.kubeconfig`).
    #[arg(long, env = "AGENT_KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Bearer token file (`kubernetes.token_file`).
    #[arg(long, env = "AGENT_KUBERNETES_TOKEN_FILE", global = true)]
    pub kubernetes_token_file: Option<PathBuf>,
    /// CA bundle of the API server (`kubernetes.ca_file`).
    #[arg(long, env = "AGENT_KUBERNETES_CA_FILE", global = true)]
    pub kubernetes_ca_file: Option<PathBuf>,
    /// Pods of this node kept in memory (`kubernetes.max_pods`).
    #[arg(long, env = "AGENT_KUBERNETES_MAX_PODS", global = true)]
    pub kubernetes_max_pods: Option<usize>,
    /// Same-host stitching and in-process nesting of spans into traces
    /// (`correlation.enabled`).
    #[arg(long, env = "AGENT_CORRELATION", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub correlation: Option<bool>,
    /// How long a server span waits for the client span of its peer on
    /// this host (`correlation.stitch_timeout`).
    #[arg(long, env = "AGENT_CORRELATION_STITCH_TIMEOUT", value_parser = parse_duration, global = true)]
    pub correlation_stitch_timeout: Option<Duration>,
    /// How long a client span waits for the server request enclosing it
    /// (`correlation.hold_timeout`).
    #[arg(long, env = "AGENT_CORRELATION_HOLD_TIMEOUT", value_parser = parse_duration, global = true)]
    pub correlation_hold_timeout: Option<Duration>,
    /// Spans held at once waiting for their parent
    /// (`correlation.max_held_spans`).
    #[arg(long, env = "AGENT_CORRELATION_MAX_HELD_SPANS", global = true)]
    pub correlation_max_held_spans: Option<usize>,
    /// Fraction of traces kept among those the other rules do not keep,
    /// 0..=1 (`sampling.ratio`).
    #[arg(long, env = "AGENT_SAMPLING_RATIO", global = true)]
    pub sampling_ratio: Option<f64>,
    /// Keep every trace with an error span (`sampling.keep_errors`).
    #[arg(long, env = "AGENT_SAMPLING_KEEP_ERRORS", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub sampling_keep_errors: Option<bool>,
    /// Keep every trace at least this long, `0s` for none
    /// (`sampling.slow_threshold`).
    #[arg(long, env = "AGENT_SAMPLING_SLOW_THRESHOLD", value_parser = parse_duration, global = true)]
    pub sampling_slow_threshold: Option<Duration>,
    /// A trace joined from an incoming traceparent follows its sampled flag
    /// (`sampling.parent_based`).
    #[arg(long, env = "AGENT_SAMPLING_PARENT_BASED", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub sampling_parent_based: Option<bool>,
    /// Series per RED metric; beyond, an overflow series
    /// (`metrics.max_series_per_metric`).
    #[arg(long, env = "AGENT_METRICS_MAX_SERIES_PER_METRIC", global = true)]
    pub metrics_max_series_per_metric: Option<usize>,
    /// `http.route` templates per service; beyond, `/{overflow}`
    /// (`metrics.max_routes_per_service`).
    #[arg(long, env = "AGENT_METRICS_MAX_ROUTES_PER_SERVICE", global = true)]
    pub metrics_max_routes_per_service: Option<usize>,
    #[command(flatten)]
    pub node: crate::node::config::NodeFlags,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedactQuery {
    /// Every query value becomes `REDACTED` (keys are kept).
    All,
    /// Only values of sensitive keys (password, token, api_key, ...).
    Sensitive,
    /// Query strings are exported as they are.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportMode {
    Auto,
    Otlp,
    Stdout,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[value(name = "grpc")]
    #[serde(rename = "grpc")]
    Grpc,
    #[value(name = "http/protobuf")]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// `OTEL_EXPORTER_OTLP_COMPRESSION`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum OtlpCompression {
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "gzip")]
    Gzip,
}

/// `kubernetes.enabled`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesMode {
    /// On when running in a cluster (`KUBERNETES_SERVICE_HOST` set) or a
    /// kubeconfig or API server is configured.
    #[default]
    Auto,
    #[value(alias = "true")]
    #[serde(alias = "true")]
    On,
    #[value(alias = "false")]
    #[serde(alias = "false")]
    Off,
}

impl OtlpCompression {
    pub fn parse_env(s: &str) -> Option<Self> {
        match s.trim() {
            "none" | "" => Some(Self::None),
            "gzip" => Some(Self::Gzip),
            _ => None,
        }
    }
}

impl OtlpProtocol {
    pub fn parse_env(s: &str) -> Option<Self> {
        match s.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }
}

/// The configuration file (YAML). Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub capture: FileCapture,
    pub http: FileHttp,
    pub http2: FileHttp2,
    pub postgres: FilePostgres,
    pub connections: FileConnections,
    pub export: FileExport,
    pub metrics: FileMetrics,
    pub node: crate::node::config::FileNode,
    pub log_level: Option<String>,
    pub selection: FileSelection,
    pub kubernetes: FileKubernetes,
    pub correlation: FileCorrelation,
    pub sampling: FileSampling,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileCorrelation {
    pub enabled: Option<bool>,
    #[serde(with = "humantime_opt")]
    pub stitch_timeout: Option<Duration>,
    #[serde(with = "humantime_opt")]
    pub hold_timeout: Option<Duration>,
    pub max_held_spans: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSampling {
    pub ratio: Option<f64>,
    pub keep_errors: Option<bool>,
    #[serde(with = "humantime_opt")]
    pub slow_threshold: Option<Duration>,
    pub parent_based: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSelection {
    pub include: FileSelectors,
    pub exclude: FileSelectors,
}

/// One side (include or exclude) of the selection.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSelectors {
    /// Ports (`8080`) or ranges (`"9000-9100"`).
    pub ports: Option<Vec<PortItem>>,
    pub executables: Option<Vec<String>>,
    pub cgroups: Option<Vec<String>>,
    pub containers: Option<Vec<String>>,
    pub namespaces: Option<Vec<String>>,
    pub pod_labels: Option<Vec<String>>,
}

/// A port in the file: a number or a `"from-to"` string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PortItem {
    Port(u32),
    Text(String),
}

impl PortItem {
    fn text(&self) -> String {
        match self {
            PortItem::Port(p) => p.to_string(),
            PortItem::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileKubernetes {
    pub enabled: Option<KubernetesMode>,
    pub node_name: Option<String>,
    pub api_server: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub max_pods: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileCapture {
    pub capture_bytes: Option<u32>,
    pub ring_buffer_bytes: Option<u32>,
    pub max_connections: Option<u32>,
    pub wakeup_records: Option<u64>,
    pub classify_attempts: Option<u32>,
    #[serde(with = "humantime_opt")]
    pub poll_interval: Option<Duration>,
    pub nice: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileHttp {
    #[serde(with = "humantime_opt")]
    pub request_timeout: Option<Duration>,
    pub max_pending_requests: Option<usize>,
    pub max_head_bytes: Option<usize>,
    pub redact_query: Option<RedactQuery>,
    pub sensitive_query_keys: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileHttp2 {
    pub max_streams: Option<usize>,
    pub max_header_table_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilePostgres {
    pub sanitize_queries: Option<bool>,
    pub max_query_bytes: Option<usize>,
    pub max_prepared_statements: Option<usize>,
    pub max_pending: Option<usize>,
    #[serde(with = "humantime_opt")]
    pub query_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConnections {
    pub max_tracked: Option<usize>,
    #[serde(with = "humantime_opt")]
    pub idle_timeout: Option<Duration>,
    pub max_processes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileExport {
    pub mode: Option<ExportMode>,
    pub queue_size: Option<usize>,
    pub batch_size: Option<usize>,
    #[serde(with = "humantime_opt")]
    pub interval: Option<Duration>,
    pub otlp: FileOtlp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileOtlp {
    pub endpoint: Option<String>,
    pub traces_endpoint: Option<String>,
    /// Full URL of the OTLP metrics endpoint (node and process metrics).
    pub metrics_endpoint: Option<String>,
    pub protocol: Option<OtlpProtocol>,
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(with = "humantime_opt")]
    pub timeout: Option<Duration>,
    pub compression: Option<OtlpCompression>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileMetrics {
    pub address: Option<String>,
    pub max_series_per_metric: Option<usize>,
    pub max_routes_per_service: Option<usize>,
}

mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*v).to_string())
    }
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub capture: CaptureConfig,
    pub http: HttpConfig,
    pub http2: Http2Config,
    pub postgres: PostgresConfig,
    pub connections: ConnectionsConfig,
    pub export: ExportConfig,
    /// `None`: no metrics/health endpoint.
    pub metrics_address: Option<SocketAddr>,
    /// Node and process metrics (`node:`), and where they go over OTLP.
    pub node: crate::node::config::NodeConfig,
    pub log_level: String,
    pub selection: SelectionConfig,
    pub kubernetes: KubernetesConfig,
    pub correlation: CorrelationSettings,
    pub sampling: SamplingSettings,
    /// RED metrics' cardinality bounds (`metrics.*` beside the address).
    pub metrics: MetricsLimits,
}

/// `correlation:`: stitching and nesting spans into traces.
#[derive(Debug, Clone, Serialize)]
pub struct CorrelationSettings {
    pub enabled: bool,
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub stitch_timeout: Duration,
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub hold_timeout: Duration,
    pub max_held_spans: usize,
}

impl CorrelationSettings {
    pub fn settings(&self) -> crate::correlate::CorrelationConfig {
        crate::correlate::CorrelationConfig {
            enabled: self.enabled,
            stitch_timeout: self.stitch_timeout,
            hold_timeout: self.hold_timeout,
            max_held_spans: self.max_held_spans,
        }
    }
}

/// `sampling:`.
#[derive(Debug, Clone, Serialize)]
pub struct SamplingSettings {
    pub ratio: f64,
    pub keep_errors: bool,
    /// Zero: no latency rule.
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub slow_threshold: Duration,
    pub parent_based: bool,
}

impl SamplingSettings {
    pub fn settings(&self) -> crate::correlate::sample::SamplingConfig {
        crate::correlate::sample::SamplingConfig {
            ratio: self.ratio,
            keep_errors: self.keep_errors,
            slow_threshold_ns: (!self.slow_threshold.is_zero())
                .then_some(self.slow_threshold.as_nanos() as u64),
            parent_based: self.parent_based,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsLimits {
    pub max_series_per_metric: usize,
    pub max_routes_per_service: usize,
}

/// What to trace: a connection is traced when it matches every non-empty
/// `include` list (any entry of each) and no `exclude` entry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SelectionConfig {
    pub include: Selectors,
    pub exclude: Selectors,
}

impl SelectionConfig {
    /// Whether anything is selected by process (executable, cgroup,
    /// container, Kubernetes) rather than by port.
    pub fn by_process(&self) -> bool {
        self.include.by_process() || self.exclude.by_process()
    }

    /// Whether any rule is set.
    pub fn is_active(&self) -> bool {
        self.by_process() || !self.include.ports.is_empty() || !self.exclude.ports.is_empty()
    }

    /// Whether a rule needs Kubernetes pod metadata.
    pub fn needs_kubernetes(&self) -> bool {
        [&self.include, &self.exclude]
            .iter()
            .any(|s| !s.namespaces.is_empty() || !s.pod_labels.is_empty())
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Selectors {
    /// Inclusive port ranges.
    pub ports: Vec<PortRange>,
    /// Globs on the executable name, or on its path for patterns with `/`.
    pub executables: Vec<String>,
    /// Globs on the cgroup (v2) path.
    pub cgroups: Vec<String>,
    /// Container ids or prefixes (12..=64 lowercase hex digits).
    pub containers: Vec<String>,
    /// Globs on the pod's namespace.
    pub namespaces: Vec<String>,
    /// `key=value-glob` or `key` (present with any value).
    pub pod_labels: Vec<String>,
}

impl Selectors {
    fn by_process(&self) -> bool {
        !(self.executables.is_empty()
            && self.cgroups.is_empty()
            && self.containers.is_empty()
            && self.namespaces.is_empty()
            && self.pod_labels.is_empty())
    }
}

/// An inclusive port range (`8080` is `8080-8080`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.from == self.to {
            s.serialize_u16(self.from)
        } else {
            s.serialize_str(&format!("{}-{}", self.from, self.to))
        }
    }
}

impl PortRange {
    /// `8080` or `9000-9100`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let port = |p: &str| -> Result<u16, String> {
            match p.trim().parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                _ => Err(format!(
                    "{text:?} is not a port (1..=65535) or a range from-to"
                )),
            }
        };
        let (from, to) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(text)?;
                (p, p)
            }
        };
        if from > to {
            return Err(format!("{text:?}: the range is empty"));
        }
        Ok(Self { from, to })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.from..=self.to).contains(&port)
    }
}

/// Pod metadata from the Kubernetes API server.
#[derive(Debug, Clone, Serialize)]
pub struct KubernetesConfig {
    /// Resolved: `auto` became on or off.
    pub enabled: bool,
    /// The node whose pods are watched.
    pub node_name: Option<String>,
    /// API server base URL; `None`: the kubeconfig's.
    pub api_server: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    /// Pods kept in memory (a node runs at most a few hundred).
    pub max_pods: usize,
}

/// Default niceness of the agent's threads: ahead of the workloads it
/// watches, so that a host whose cores are all busy starves the agent's
/// reader less than its ring buffer can absorb (measured: PostgreSQL at
/// saturation, capture 0.90 at 0 and 1.0000 at -10, same throughput ratio;
/// BENCHMARKS.md).
pub const DEFAULT_NICE: i32 = -10;

/// The service account files of an in-cluster pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Clone, Serialize)]
pub struct CaptureConfig {
    pub capture_bytes: u32,
    pub ring_buffer_bytes: u32,
    pub max_connections: u32,
    /// Records one CPU writes between two wake-ups of the reader (0: every
    /// record); the reader also polls every `poll_interval` (backing off
    /// to 250 ms while the ring stays empty).
    pub wakeup_records: u64,
    /// Data syscalls of no supported protocol after which the kernel gives
    /// up on an unclassified connection (0: never). Connections the agent
    /// joins mid-stream are classified at their next message start; TLS
    /// connections are given up at once.
    pub classify_attempts: u32,
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub poll_interval: Duration,
    /// Niceness of the agent's threads (set at start-up; 0: left as is).
    pub nice: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpConfig {
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub request_timeout: Duration,
    pub max_pending_requests: usize,
    pub max_head_bytes: usize,
    pub redact_query: RedactQuery,
    pub sensitive_query_keys: Vec<String>,
}

/// HTTP/2 and gRPC. Header blocks are bounded by `http.max_head_bytes`.
#[derive(Debug, Clone, Serialize)]
pub struct Http2Config {
    /// Streams traced at once per connection; more are counted, not traced.
    pub max_streams: usize,
    /// HPACK dynamic-table bytes kept per direction (entries beyond are
    /// reported unresolved).
    pub max_header_table_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PostgresConfig {
    /// Literals in `db.query.text` replaced by `?`.
    pub sanitize_queries: bool,
    /// Longest query text kept per statement (bytes).
    pub max_query_bytes: usize,
    /// Prepared statements remembered per connection.
    pub max_prepared_statements: usize,
    /// Messages awaiting an answer per connection (pipelining).
    pub max_pending: usize,
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub query_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsConfig {
    /// Connections with parser state in userspace.
    pub max_tracked: usize,
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub idle_timeout: Duration,
    /// Processes whose resource is cached.
    pub max_processes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportConfig {
    /// Resolved: never `Auto`.
    pub mode: ExportMode,
    pub queue_size: usize,
    pub batch_size: usize,
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub interval: Duration,
    pub otlp: OtlpConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct OtlpConfig {
    pub protocol: OtlpProtocol,
    /// Full traces URL (gRPC: the collector's address; HTTP: ending in
    /// `/v1/traces` unless given whole).
    pub traces_endpoint: String,
    /// Headers of every export request: the file's, then
    /// `OTEL_EXPORTER_OTLP_HEADERS`, then `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
    /// (later sources win per key). Values are not printed.
    #[serde(serialize_with = "redacted_headers")]
    pub headers: BTreeMap<String, String>,
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub timeout: Duration,
    pub compression: OtlpCompression,
}

/// `--print-config` shows header names only: values are often secrets.
fn redacted_headers<S: serde::Serializer>(
    headers: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut map = s.serialize_map(Some(headers.len()))?;
    for k in headers.keys() {
        map.serialize_entry(k, "REDACTED")?;
    }
    map.end()
}

/// Configuration errors name the key and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// Query keys whose values are always redacted in `sensitive` mode.
pub const DEFAULT_SENSITIVE_QUERY_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "auth",
    "authorization",
    "session",
    "sessionid",
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "client_secret",
    "code",
];

/// Reads the OTLP variables that decide whether an endpoint is configured.
#[derive(Debug, Default, Clone)]
pub struct OtelEnv {
    pub endpoint: Option<String>,
    pub traces_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub traces_protocol: Option<String>,
    /// Milliseconds, as the specification defines the variable.
    pub timeout: Option<String>,
    pub traces_timeout: Option<String>,
    /// `key=value,key=value`, values percent-encoded.
    pub headers: Option<String>,
    pub traces_headers: Option<String>,
    pub compression: Option<String>,
    pub traces_compression: Option<String>,
    /// `KUBERNETES_SERVICE_HOST` / `_PORT`: set in every pod.
    pub kubernetes_service_host: Option<String>,
    pub kubernetes_service_port: Option<String>,
    /// `NODE_NAME` (the DaemonSet sets it from `spec.nodeName`).
    pub node_name: Option<String>,
    /// The variables of the OTLP metrics export.
    pub metrics: crate::node::config::MetricsEnv,
}

impl OtelEnv {
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self {
            endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            traces_endpoint: get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            protocol: get("OTEL_EXPORTER_OTLP_PROTOCOL"),
            traces_protocol: get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
            timeout: get("OTEL_EXPORTER_OTLP_TIMEOUT"),
            traces_timeout: get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"),
            headers: get("OTEL_EXPORTER_OTLP_HEADERS"),
            traces_headers: get("OTEL_EXPORTER_OTLP_TRACES_HEADERS"),
            compression: get("OTEL_EXPORTER_OTLP_COMPRESSION"),
            traces_compression: get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"),
            kubernetes_service_host: get("KUBERNETES_SERVICE_HOST"),
            kubernetes_service_port: get("KUBERNETES_SERVICE_PORT"),
            node_name: get("NODE_NAME"),
            metrics: crate::node::config::MetricsEnv::from_process(),
        }
    }
}

impl Config {
    /// Loads the file named by `cli.config` (if any) and merges.
    pub fn load(cli: &Cli, env: &OtelEnv) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                parse_file(&text).map_err(|message| ConfigError::Parse {
                    path: path.display().to_string(),
                    message,
                })?
            }
            None => FileConfig::default(),
        };
        Self::resolve(&cli.flags, file, env)
    }

    pub fn resolve(flags: &Flags, file: FileConfig, env: &OtelEnv) -> Result<Self, ConfigError> {
        let capture = CaptureConfig {
            capture_bytes: flags
                .capture_bytes
                .or(file.capture.capture_bytes)
                .unwrap_or(DEFAULT_CAPTURE_BYTES),
            ring_buffer_bytes: flags
                .ring_buffer_bytes
                .or(file.capture.ring_buffer_bytes)
                .unwrap_or(DEFAULT_RING_BYTES),
            max_connections: flags
                .max_connections
                .or(file.capture.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNS),
            wakeup_records: flags
                .wakeup_records
                .or(file.capture.wakeup_records)
                .unwrap_or(1024),
            classify_attempts: flags
                .classify_attempts
                .or(file.capture.classify_attempts)
                .unwrap_or(agent_common::DEFAULT_CLASSIFY_ATTEMPTS),
            poll_interval: flags
                .poll_interval
                .or(file.capture.poll_interval)
                .unwrap_or(Duration::from_millis(20)),
            nice: flags.nice.or(file.capture.nice).unwrap_or(DEFAULT_NICE),
        };
        if !(-20..=19).contains(&capture.nice) {
            return Err(invalid(
                "capture.nice",
                format!("must be -20..=19, got {}", capture.nice),
            ));
        }
        if capture.capture_bytes == 0 || capture.capture_bytes as usize > MAX_CAPTURE_BYTES {
            return Err(invalid(
                "capture.capture_bytes",
                format!(
                    "must be 1..={MAX_CAPTURE_BYTES}, got {}",
                    capture.capture_bytes
                ),
            ));
        }
        if !capture.ring_buffer_bytes.is_power_of_two() || capture.ring_buffer_bytes < 4096 {
            return Err(invalid(
                "capture.ring_buffer_bytes",
                format!(
                    "must be a power of two >= 4096, got {}",
                    capture.ring_buffer_bytes
                ),
            ));
        }
        if capture.max_connections == 0 {
            return Err(invalid("capture.max_connections", "must be positive"));
        }
        // Even with the smallest records (a data header), the ring must hold
        // what every CPU writes between two wake-ups.
        let min_record = agent_common::record::DATA_HEADER_SIZE as u64 + 8;
        if capture.wakeup_records.saturating_mul(min_record) >= u64::from(capture.ring_buffer_bytes)
        {
            return Err(invalid(
                "capture.wakeup_records",
                "too large for capture.ring_buffer_bytes",
            ));
        }
        if capture.classify_attempts > u32::from(u16::MAX) {
            return Err(invalid(
                "capture.classify_attempts",
                format!("must be 0..=65535, got {}", capture.classify_attempts),
            ));
        }
        if capture.poll_interval.is_zero() || capture.poll_interval > Duration::from_secs(1) {
            return Err(invalid("capture.poll_interval", "must be in (0, 1s]"));
        }

        let http = HttpConfig {
            request_timeout: flags
                .request_timeout
                .or(file.http.request_timeout)
                .unwrap_or(Duration::from_secs(30)),
            max_pending_requests: flags
                .http_max_pending_requests
                .or(file.http.max_pending_requests)
                .unwrap_or(64),
            max_head_bytes: flags
                .http_max_head_bytes
                .or(file.http.max_head_bytes)
                .unwrap_or(16 * 1024),
            redact_query: flags
                .redact_query
                .or(file.http.redact_query)
                .unwrap_or(RedactQuery::All),
            sensitive_query_keys: flags
                .http_sensitive_query_keys
                .clone()
                .or(file.http.sensitive_query_keys)
                .unwrap_or_else(|| {
                    DEFAULT_SENSITIVE_QUERY_KEYS
                        .iter()
                        .map(|s| (*s).to_string())
                        .collect()
                }),
        };
        if http.request_timeout.is_zero() {
            return Err(invalid("http.request_timeout", "must be positive"));
        }
        if http.max_pending_requests == 0 || http.max_pending_requests > 4096 {
            return Err(invalid("http.max_pending_requests", "must be 1..=4096"));
        }
        if !(256..=1 << 20).contains(&http.max_head_bytes) {
            return Err(invalid("http.max_head_bytes", "must be 256..=1048576"));
        }

        let http2 = Http2Config {
            max_streams: flags
                .http2_max_streams
                .or(file.http2.max_streams)
                .unwrap_or(256),
            max_header_table_bytes: flags
                .http2_max_header_table_bytes
                .or(file.http2.max_header_table_bytes)
                .unwrap_or(64 * 1024),
        };
        if !(1..=65_536).contains(&http2.max_streams) {
            return Err(invalid("http2.max_streams", "must be 1..=65536"));
        }
        if http2.max_header_table_bytes > 1 << 20 {
            return Err(invalid(
                "http2.max_header_table_bytes",
                "must be 0..=1048576",
            ));
        }

        let postgres = PostgresConfig {
            sanitize_queries: flags
                .postgres_sanitize_queries
                .or(file.postgres.sanitize_queries)
                .unwrap_or(true),
            max_query_bytes: flags
                .postgres_max_query_bytes
                .or(file.postgres.max_query_bytes)
                .unwrap_or(4096),
            max_prepared_statements: flags
                .postgres_max_prepared_statements
                .or(file.postgres.max_prepared_statements)
                .unwrap_or(1024),
            max_pending: flags
                .postgres_max_pending
                .or(file.postgres.max_pending)
                .unwrap_or(1024),
            query_timeout: flags
                .postgres_query_timeout
                .or(file.postgres.query_timeout)
                .unwrap_or(Duration::from_secs(300)),
        };
        if !(64..=1 << 20).contains(&postgres.max_query_bytes) {
            return Err(invalid("postgres.max_query_bytes", "must be 64..=1048576"));
        }
        if !(1..=1 << 20).contains(&postgres.max_prepared_statements) {
            return Err(invalid(
                "postgres.max_prepared_statements",
                "must be 1..=1048576",
            ));
        }
        if !(1..=1 << 16).contains(&postgres.max_pending) {
            return Err(invalid("postgres.max_pending", "must be 1..=65536"));
        }
        if postgres.query_timeout.is_zero() {
            return Err(invalid("postgres.query_timeout", "must be positive"));
        }

        let connections = ConnectionsConfig {
            max_tracked: flags
                .connections_max_tracked
                .or(file.connections.max_tracked)
                .unwrap_or(65_536),
            idle_timeout: flags
                .connections_idle_timeout
                .or(file.connections.idle_timeout)
                .unwrap_or(Duration::from_secs(300)),
            max_processes: flags
                .connections_max_processes
                .or(file.connections.max_processes)
                .unwrap_or(4096),
        };
        if connections.max_tracked == 0 {
            return Err(invalid("connections.max_tracked", "must be positive"));
        }
        if connections.max_processes == 0 {
            return Err(invalid("connections.max_processes", "must be positive"));
        }
        if connections.idle_timeout.is_zero() {
            return Err(invalid("connections.idle_timeout", "must be positive"));
        }

        let node = crate::node::config::resolve(
            &flags.node,
            file.node,
            &env.metrics,
            crate::node::config::Shared {
                flag_endpoint: flags.otlp_endpoint.as_deref(),
                flag_protocol: flags.otlp_protocol,
                file_endpoint: file.export.otlp.endpoint.as_deref(),
                file_metrics_endpoint: file.export.otlp.metrics_endpoint.as_deref(),
                file_protocol: file.export.otlp.protocol,
                file_headers: file
                    .export
                    .otlp
                    .headers
                    .as_ref()
                    .unwrap_or(&BTreeMap::new()),
                file_timeout: file.export.otlp.timeout,
            },
        )?;
        let export = resolve_export(flags, file.export, env)?;

        let correlation = CorrelationSettings {
            enabled: flags
                .correlation
                .or(file.correlation.enabled)
                .unwrap_or(true),
            stitch_timeout: flags
                .correlation_stitch_timeout
                .or(file.correlation.stitch_timeout)
                .unwrap_or(Duration::from_secs(2)),
            hold_timeout: flags
                .correlation_hold_timeout
                .or(file.correlation.hold_timeout)
                .unwrap_or(Duration::from_secs(5)),
            max_held_spans: flags
                .correlation_max_held_spans
                .or(file.correlation.max_held_spans)
                .unwrap_or(65_536),
        };
        for (key, d) in [
            ("correlation.stitch_timeout", correlation.stitch_timeout),
            ("correlation.hold_timeout", correlation.hold_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(600) {
                return Err(invalid(key, "must be in (0, 10m]"));
            }
        }
        if !(1..=1 << 22).contains(&correlation.max_held_spans) {
            return Err(invalid("correlation.max_held_spans", "must be 1..=4194304"));
        }
        let sampling = SamplingSettings {
            ratio: flags.sampling_ratio.or(file.sampling.ratio).unwrap_or(1.0),
            keep_errors: flags
                .sampling_keep_errors
                .or(file.sampling.keep_errors)
                .unwrap_or(true),
            slow_threshold: flags
                .sampling_slow_threshold
                .or(file.sampling.slow_threshold)
                .unwrap_or(Duration::from_secs(1)),
            parent_based: flags
                .sampling_parent_based
                .or(file.sampling.parent_based)
                .unwrap_or(true),
        };
        if !(0.0..=1.0).contains(&sampling.ratio) {
            return Err(invalid(
                "sampling.ratio",
                format!("must be 0..=1, got {}", sampling.ratio),
            ));
        }
        let metrics = MetricsLimits {
            max_series_per_metric: flags
                .metrics_max_series_per_metric
                .or(file.metrics.max_series_per_metric)
                .unwrap_or(10_000),
            max_routes_per_service: flags
                .metrics_max_routes_per_service
                .or(file.metrics.max_routes_per_service)
                .unwrap_or(200),
        };
        if !(1..=1_000_000).contains(&metrics.max_series_per_metric) {
            return Err(invalid(
                "metrics.max_series_per_metric",
                "must be 1..=1000000",
            ));
        }
        if !(1..=100_000).contains(&metrics.max_routes_per_service) {
            return Err(invalid(
                "metrics.max_routes_per_service",
                "must be 1..=100000",
            ));
        }

        let metrics_address = match flags
            .metrics_address
            .clone()
            .or(file.metrics.address)
            .unwrap_or_else(|| "0.0.0.0:9464".to_string())
        {
            a if a.eq_ignore_ascii_case("off") || a.is_empty() => None,
            a => Some(a.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    "metrics.address",
                    format!("{a:?} is not host:port ({e}); use \"off\" to disable"),
                )
            })?),
        };

        let selection = resolve_selection(flags, file.selection)?;
        let kubernetes = resolve_kubernetes(flags, file.kubernetes, env)?;
        if selection.needs_kubernetes() && !kubernetes.enabled {
            return Err(invalid(
                "selection",
                "namespaces and pod_labels need Kubernetes metadata, but kubernetes.enabled \
                 is off (not in a cluster: set kubernetes.enabled: on with a kubeconfig or \
                 api_server)",
            ));
        }

        Ok(Self {
            capture,
            http,
            http2,
            postgres,
            connections,
            export,
            metrics_address,
            selection,
            kubernetes,
            node,
            correlation,
            sampling,
            metrics,
            log_level: flags
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_string()),
        })
    }

    /// The configuration as YAML (header values are not shown).
    pub fn to_yaml(&self) -> String {
        let mut shown = self.clone();
        for v in shown.export.otlp.headers.values_mut() {
            *v = "<hidden>".to_string();
        }
        for v in shown.node.otlp.headers.values_mut() {
            *v = "<hidden>".to_string();
        }
        serde_yaml_ng::to_string(&shown).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

fn parse_file(text: &str) -> Result<FileConfig, String> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

fn resolve_export(
    flags: &Flags,
    file: FileExport,
    env: &OtelEnv,
) -> Result<ExportConfig, ConfigError> {
    let protocol = match (&flags.otlp_protocol, &env.traces_protocol, &env.protocol) {
        (Some(p), _, _) => *p,
        (None, Some(p), _) => OtlpProtocol::parse_env(p).ok_or_else(|| {
            invalid(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                format!("{p:?}: supported are grpc and http/protobuf"),
            )
        })?,
        (None, None, Some(p)) => OtlpProtocol::parse_env(p).ok_or_else(|| {
            invalid(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                format!("{p:?}: supported are grpc and http/protobuf"),
            )
        })?,
        (None, None, None) => file.otlp.protocol.unwrap_or(OtlpProtocol::Grpc),
    };
    // Where the traces go, in precedence order: flag, the OTEL variables
    // (the signal-specific one is a full URL), the file, the default.
    let env_has_endpoint = env.traces_endpoint.is_some() || env.endpoint.is_some();
    let (endpoint_key, traces_endpoint) = if let Some(base) = &flags.otlp_endpoint {
        ("--otlp-endpoint", Some(signal_url(base, protocol)))
    } else if let Some(url) = &env.traces_endpoint {
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            Some(url.trim().to_string()),
        )
    } else if let Some(base) = &env.endpoint {
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            Some(signal_url(base.trim(), protocol)),
        )
    } else if let Some(url) = &flags.otlp_traces_endpoint {
        ("--otlp-traces-endpoint", Some(url.trim().to_string()))
    } else if let Some(url) = &file.otlp.traces_endpoint {
        ("export.otlp.traces_endpoint", Some(url.clone()))
    } else {
        (
            "export.otlp.endpoint",
            file.otlp
                .endpoint
                .as_deref()
                .map(|b| signal_url(b, protocol)),
        )
    };
    if let Some(url) = &traces_endpoint
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(
            endpoint_key,
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    let have_endpoint = traces_endpoint.is_some();
    let traces_endpoint = traces_endpoint.unwrap_or_else(|| match protocol {
        OtlpProtocol::Grpc => "http://localhost:4317".to_string(),
        OtlpProtocol::HttpProtobuf => "http://localhost:4318/v1/traces".to_string(),
    });
    debug_assert!(have_endpoint || !env_has_endpoint);
    let mut headers = file.otlp.headers.unwrap_or_default();
    if let Some(v) = &flags.otlp_headers {
        headers
            .extend(parse_headers(v).map_err(|problem| invalid("export.otlp.headers", problem))?);
    }
    for (key, value) in [
        ("OTEL_EXPORTER_OTLP_HEADERS", &env.headers),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", &env.traces_headers),
    ] {
        if let Some(v) = value {
            headers.extend(parse_headers(v).map_err(|problem| invalid(key, problem))?);
        }
    }
    let compression = match (&env.traces_compression, &env.compression) {
        _ if flags.otlp_compression.is_some() => flags.otlp_compression.unwrap_or_default(),
        (Some(c), _) => OtlpCompression::parse_env(c).ok_or_else(|| {
            invalid(
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                format!("{c:?}: supported are gzip and none"),
            )
        })?,
        (None, Some(c)) => OtlpCompression::parse_env(c).ok_or_else(|| {
            invalid(
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                format!("{c:?}: supported are gzip and none"),
            )
        })?,
        (None, None) => file.otlp.compression.unwrap_or_default(),
    };
    let mode = match flags.export.or(file.mode).unwrap_or(ExportMode::Auto) {
        ExportMode::Auto if have_endpoint => ExportMode::Otlp,
        ExportMode::Auto => ExportMode::Stdout,
        m => m,
    };
    let export = ExportConfig {
        mode,
        queue_size: flags
            .export_queue_size
            .or(file.queue_size)
            .unwrap_or(65_536),
        batch_size: flags.export_batch_size.or(file.batch_size).unwrap_or(1024),
        interval: flags
            .export_interval
            .or(file.interval)
            .unwrap_or(Duration::from_secs(1)),
        otlp: OtlpConfig {
            protocol,
            traces_endpoint,
            headers,
            timeout: match flags.otlp_timeout {
                Some(t) if t.is_zero() => {
                    return Err(invalid("export.otlp.timeout", "must be positive"));
                }
                Some(t) => t,
                None => otlp_timeout(env, file.otlp.timeout)?,
            },
            compression,
        },
    };
    if export.queue_size == 0 {
        return Err(invalid("export.queue_size", "must be positive"));
    }
    if export.batch_size == 0 || export.batch_size > export.queue_size {
        return Err(invalid(
            "export.batch_size",
            "must be 1..=export.queue_size",
        ));
    }
    if export.interval.is_zero() {
        return Err(invalid("export.interval", "must be positive"));
    }
    Ok(export)
}

/// Export timeout: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else the file, else 10 s.
fn otlp_timeout(env: &OtelEnv, file: Option<Duration>) -> Result<Duration, ConfigError> {
    for (key, value) in [
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &env.traces_timeout),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", &env.timeout),
    ] {
        if let Some(v) = value {
            let ms: u64 = v
                .trim()
                .parse()
                .map_err(|_| invalid(key, format!("{v:?} is not a number of milliseconds")))?;
            if ms == 0 {
                return Err(invalid(key, "must be positive"));
            }
            return Ok(Duration::from_millis(ms));
        }
    }
    Ok(file.unwrap_or(Duration::from_secs(10)))
}

/// Flags (comma-separated lists) replace the file's list.
fn resolve_selection(flags: &Flags, file: FileSelection) -> Result<SelectionConfig, ConfigError> {
    let side = |file: FileSelectors,
                f: [&Option<Vec<String>>; 6],
                keys: [&'static str; 6]|
     -> Result<Selectors, ConfigError> {
        let list = |flag: &Option<Vec<String>>, file: Option<Vec<String>>| -> Vec<String> {
            flag.clone()
                .or(file)
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let ports_text: Vec<String> = match f[0] {
            Some(v) => v.clone(),
            None => file
                .ports
                .unwrap_or_default()
                .iter()
                .map(PortItem::text)
                .collect(),
        };
        let mut ports = Vec::new();
        for p in ports_text
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
        {
            ports.push(PortRange::parse(p).map_err(|e| invalid(keys[0], e))?);
        }
        let out = Selectors {
            ports,
            executables: list(f[1], file.executables),
            cgroups: list(f[2], file.cgroups),
            containers: list(f[3], file.containers)
                .into_iter()
                .map(|c| c.to_ascii_lowercase())
                .collect(),
            namespaces: list(f[4], file.namespaces),
            pod_labels: list(f[5], file.pod_labels),
        };
        for c in &out.containers {
            let c = c.strip_prefix("containerd://").unwrap_or(c);
            if !(12..=64).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    keys[3],
                    format!("{c:?} is not a container id (12 to 64 hex digits)"),
                ));
            }
        }
        for l in &out.pod_labels {
            let key = l.split_once('=').map_or(l.as_str(), |(k, _)| k);
            if key.trim().is_empty() {
                return Err(invalid(
                    keys[5],
                    format!("{l:?}: expected key=value or key"),
                ));
            }
        }
        Ok(out)
    };
    Ok(SelectionConfig {
        include: side(
            file.include,
            [
                &flags.include_ports,
                &flags.include_executables,
                &flags.include_cgroups,
                &flags.include_containers,
                &flags.include_namespaces,
                &flags.include_pod_labels,
            ],
            [
                "selection.include.ports",
                "selection.include.executables",
                "selection.include.cgroups",
                "selection.include.containers",
                "selection.include.namespaces",
                "selection.include.pod_labels",
            ],
        )?,
        exclude: side(
            file.exclude,
            [
                &flags.exclude_ports,
                &flags.exclude_executables,
                &flags.exclude_cgroups,
                &flags.exclude_containers,
                &flags.exclude_namespaces,
                &flags.exclude_pod_labels,
            ],
            [
                "selection.exclude.ports",
                "selection.exclude.executables",
                "selection.exclude.cgroups",
                "selection.exclude.containers",
                "selection.exclude.namespaces",
                "selection.exclude.pod_labels",
            ],
        )?,
    })
}

fn resolve_kubernetes(
    flags: &Flags,
    file: FileKubernetes,
    env: &OtelEnv,
) -> Result<KubernetesConfig, ConfigError> {
    let kubeconfig = flags.kubeconfig.clone().or(file.kubeconfig);
    let api_server = flags
        .kubernetes_api_server
        .clone()
        .or(file.api_server)
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty());
    let in_cluster = env.kubernetes_service_host.is_some();
    let mode = flags.kubernetes.or(file.enabled).unwrap_or_default();
    let enabled = match mode {
        KubernetesMode::On => true,
        KubernetesMode::Off => false,
        KubernetesMode::Auto => in_cluster || kubeconfig.is_some() || api_server.is_some(),
    };
    let api_server = match (api_server, &env.kubernetes_service_host) {
        (Some(s), _) => Some(s),
        (None, Some(host)) if kubeconfig.is_none() => {
            let port = env.kubernetes_service_port.as_deref().unwrap_or("443");
            // An IPv6 service address needs brackets in a URL.
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            Some(format!("https://{host}:{port}"))
        }
        _ => None,
    };
    if let Some(url) = &api_server
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(
            "kubernetes.api_server",
            format!("{url:?} must start with https:// or http://"),
        ));
    }
    if enabled && api_server.is_none() && kubeconfig.is_none() {
        return Err(invalid(
            "kubernetes.enabled",
            "on, but not in a cluster (KUBERNETES_SERVICE_HOST unset) and no \
             kubernetes.api_server or kubernetes.kubeconfig given",
        ));
    }
    let node_name = flags
        .kubernetes_node_name
        .clone()
        .or(file.node_name)
        .or_else(|| env.node_name.clone())
        .filter(|s| !s.trim().is_empty());
    let sa = std::path::Path::new(SERVICE_ACCOUNT_DIR);
    let cfg = KubernetesConfig {
        enabled,
        node_name,
        api_server,
        kubeconfig,
        token_file: flags
            .kubernetes_token_file
            .clone()
            .or(file.token_file)
            .unwrap_or_else(|| sa.join("token")),
        ca_file: flags
            .kubernetes_ca_file
            .clone()
            .or(file.ca_file)
            .unwrap_or_else(|| sa.join("ca.crt")),
        max_pods: flags.kubernetes_max_pods.or(file.max_pods).unwrap_or(1024),
    };
    if !(1..=100_000).contains(&cfg.max_pods) {
        return Err(invalid("kubernetes.max_pods", "must be 1..=100000"));
    }
    Ok(cfg)
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs separated by commas,
/// values percent-decoded (W3C Baggage-like format of the specification).
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("{item:?} is not key=value"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        out.push((k.to_ascii_lowercase(), percent_decode(v.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The traces URL for a base OTLP endpoint (as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is defined: HTTP appends `/v1/traces`, gRPC uses it as is).
fn signal_url(base: &str, protocol: OtlpProtocol) -> String {
    match protocol {
        OtlpProtocol::Grpc => base.to_string(),
        OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(flags: Flags, yaml: &str, env: OtelEnv) -> Result<Config, ConfigError> {
        Config::resolve(&flags, parse_file(yaml).expect("yaml"), &env)
    }

    #[test]
    fn defaults() {
        let c = resolve(Flags::default(), "", OtelEnv::default()).unwrap();
        assert_eq!(c.capture.capture_bytes, DEFAULT_CAPTURE_BYTES);
        assert_eq!(c.export.mode, ExportMode::Stdout, "no endpoint: stdout");
        assert_eq!(c.http.redact_query, RedactQuery::All);
        assert_eq!(c.metrics_address, Some("0.0.0.0:9464".parse().unwrap()));
    }

    #[test]
    fn precedence_flag_env_file() {
        let yaml = "capture:\n  capture_bytes: 2048\nhttp:\n  request_timeout: 5s\n";
        let c = resolve(Flags::default(), yaml, OtelEnv::default()).unwrap();
        assert_eq!(c.capture.capture_bytes, 2048);
        assert_eq!(c.http.request_timeout, Duration::from_secs(5));
        let flags = Flags {
            capture_bytes: Some(1024),
            ..Default::default()
        };
        let c = resolve(flags, yaml, OtelEnv::default()).unwrap();
        assert_eq!(c.capture.capture_bytes, 1024);
    }

    #[test]
    fn otlp_endpoint_resolution() {
        let env = OtelEnv {
            endpoint: Some("http://collector:4318".into()),
            protocol: Some("http/protobuf".into()),
            ..Default::default()
        };
        let yaml = "export:\n  otlp:\n    endpoint: http://file:4317\n";
        let c = resolve(Flags::default(), yaml, env).unwrap();
        assert_eq!(c.export.mode, ExportMode::Otlp);
        assert_eq!(c.export.otlp.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(
            c.export.otlp.traces_endpoint, "http://collector:4318/v1/traces",
            "env wins over file"
        );

        let c = resolve(Flags::default(), yaml, OtelEnv::default()).unwrap();
        assert_eq!(c.export.otlp.traces_endpoint, "http://file:4317");

        let env = OtelEnv {
            endpoint: Some("http://collector:4318".into()),
            traces_endpoint: Some("http://traces:9999/custom".into()),
            protocol: Some("http/protobuf".into()),
            headers: Some("api-key=secret%20one, X-Tenant = a".into()),
            traces_headers: Some("x-tenant=b".into()),
            compression: Some("gzip".into()),
            ..Default::default()
        };
        let c = resolve(Flags::default(), "", env).unwrap();
        assert_eq!(c.export.otlp.traces_endpoint, "http://traces:9999/custom");
        assert_eq!(c.export.otlp.headers["api-key"], "secret one");
        assert_eq!(
            c.export.otlp.headers["x-tenant"], "b",
            "traces-specific wins"
        );
        assert_eq!(c.export.otlp.compression, OtlpCompression::Gzip);

        let c = resolve(Flags::default(), "", OtelEnv::default()).unwrap();
        assert_eq!(c.export.mode, ExportMode::Stdout);
        assert_eq!(c.export.otlp.traces_endpoint, "http://localhost:4317");

        let flags = Flags {
            otlp_endpoint: Some("http://flag:4318/".into()),
            otlp_protocol: Some(OtlpProtocol::HttpProtobuf),
            ..Default::default()
        };
        let c = resolve(flags, "", OtelEnv::default()).unwrap();
        assert_eq!(c.export.otlp.traces_endpoint, "http://flag:4318/v1/traces");

        let env = OtelEnv {
            headers: Some("novalue".into()),
            ..Default::default()
        };
        let e = resolve(Flags::default(), "", env).unwrap_err();
        assert!(
            e.to_string().starts_with("OTEL_EXPORTER_OTLP_HEADERS:"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = resolve(
            Flags::default(),
            "capture:\n  capture_bytes: 0\n",
            OtelEnv::default(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("capture.capture_bytes:"), "{e}");
        let e = parse_file("capture:\n  bogus: 1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = resolve(
            Flags {
                metrics_address: Some("nonsense".into()),
                ..Default::default()
            },
            "",
            OtelEnv::default(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("metrics.address:"), "{e}");
        let e = resolve(
            Flags::default(),
            "",
            OtelEnv {
                protocol: Some("http/json".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{e}");
        let e = parse_file("http:\n  request_timeout: soon\n").unwrap_err();
        assert!(e.starts_with("http.request_timeout:"), "{e}");
    }

    #[test]
    fn postgres_keys() {
        let c = resolve(Flags::default(), "", OtelEnv::default()).unwrap();
        assert!(c.postgres.sanitize_queries);
        assert_eq!(c.postgres.query_timeout, Duration::from_secs(300));
        let yaml =
            "postgres:\n  sanitize_queries: false\n  max_query_bytes: 1024\n  query_timeout: 1m\n";
        let c = resolve(Flags::default(), yaml, OtelEnv::default()).unwrap();
        assert!(!c.postgres.sanitize_queries);
        assert_eq!(c.postgres.max_query_bytes, 1024);
        assert_eq!(c.postgres.query_timeout, Duration::from_secs(60));
        let flags = Flags {
            postgres_sanitize_queries: Some(true),
            ..Default::default()
        };
        assert!(
            resolve(flags, yaml, OtelEnv::default())
                .unwrap()
                .postgres
                .sanitize_queries
        );
        let e = resolve(
            Flags::default(),
            "postgres:\n  max_query_bytes: 1\n",
            OtelEnv::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("postgres.max_query_bytes:"),
            "{e}"
        );
        let e = parse_file("postgres:\n  sanitize_queries: maybe\n").unwrap_err();
        assert!(e.starts_with("postgres.sanitize_queries:"), "{e}");
    }

    /// Every file key: (key, flag, variable). The test below checks that
    /// the flag exists with that variable, that the README documents the
    /// key, and that no key of the effective configuration is missing here.
    const KEYS: &[(&str, &str, &str)] = &[
        ("correlation.enabled", "correlation", "AGENT_CORRELATION"),
        (
            "correlation.stitch_timeout",
            "correlation-stitch-timeout",
            "AGENT_CORRELATION_STITCH_TIMEOUT",
        ),
        (
            "correlation.hold_timeout",
            "correlation-hold-timeout",
            "AGENT_CORRELATION_HOLD_TIMEOUT",
        ),
        (
            "correlation.max_held_spans",
            "correlation-max-held-spans",
            "AGENT_CORRELATION_MAX_HELD_SPANS",
        ),
        ("sampling.ratio", "sampling-ratio", "AGENT_SAMPLING_RATIO"),
        (
            "sampling.keep_errors",
            "sampling-keep-errors",
            "AGENT_SAMPLING_KEEP_ERRORS",
        ),
        (
            "sampling.slow_threshold",
            "sampling-slow-threshold",
            "AGENT_SAMPLING_SLOW_THRESHOLD",
        ),
        (
            "sampling.parent_based",
            "sampling-parent-based",
            "AGENT_SAMPLING_PARENT_BASED",
        ),
        (
            "metrics.max_series_per_metric",
            "metrics-max-series-per-metric",
            "AGENT_METRICS_MAX_SERIES_PER_METRIC",
        ),
        (
            "metrics.max_routes_per_service",
            "metrics-max-routes-per-service",
            "AGENT_METRICS_MAX_ROUTES_PER_SERVICE",
        ),
        (
            "capture.capture_bytes",
            "capture-bytes",
            "AGENT_CAPTURE_BYTES",
        ),
        (
            "node.collectors",
            "node-collectors",
            "AGENT_NODE_COLLECTORS",
        ),
        (
            "node.textfile_directory",
            "node-textfile-directory",
            "AGENT_NODE_TEXTFILE_DIRECTORY",
        ),
        ("node.root", "node-root", "AGENT_NODE_ROOT"),
        ("node.proc", "node-proc", "AGENT_NODE_PROC"),
        ("node.sys", "node-sys", "AGENT_NODE_SYS"),
        (
            "node.filesystem.mount_points_exclude",
            "node-filesystem-mount-points-exclude",
            "AGENT_NODE_FILESYSTEM_MOUNT_POINTS_EXCLUDE",
        ),
        (
            "node.filesystem.fs_types_exclude",
            "node-filesystem-fs-types-exclude",
            "AGENT_NODE_FILESYSTEM_FS_TYPES_EXCLUDE",
        ),
        (
            "node.filesystem.mount_timeout",
            "node-filesystem-mount-timeout",
            "AGENT_NODE_FILESYSTEM_MOUNT_TIMEOUT",
        ),
        (
            "node.diskstats.device_exclude",
            "node-diskstats-device-exclude",
            "AGENT_NODE_DISKSTATS_DEVICE_EXCLUDE",
        ),
        (
            "node.netdev.device_exclude",
            "node-netdev-device-exclude",
            "AGENT_NODE_NETDEV_DEVICE_EXCLUDE",
        ),
        (
            "node.netstat.fields",
            "node-netstat-fields",
            "AGENT_NODE_NETSTAT_FIELDS",
        ),
        (
            "node.vmstat.fields",
            "node-vmstat-fields",
            "AGENT_NODE_VMSTAT_FIELDS",
        ),
        (
            "node.process_metrics",
            "node-process-metrics",
            "AGENT_NODE_PROCESS_METRICS",
        ),
        (
            "node.runqueue_latency",
            "node-runqueue-latency",
            "AGENT_NODE_RUNQUEUE_LATENCY",
        ),
        (
            "node.export_interval",
            "metrics-export-interval",
            "AGENT_METRICS_EXPORT_INTERVAL",
        ),
        (
            "export.otlp.metrics_endpoint",
            "otlp-metrics-endpoint",
            "AGENT_OTLP_METRICS_ENDPOINT",
        ),
        (
            "capture.ring_buffer_bytes",
            "ring-buffer-bytes",
            "AGENT_RING_BUFFER_BYTES",
        ),
        (
            "capture.max_connections",
            "max-connections",
            "AGENT_MAX_CONNECTIONS",
        ),
        (
            "capture.wakeup_records",
            "wakeup-records",
            "AGENT_WAKEUP_RECORDS",
        ),
        (
            "capture.classify_attempts",
            "classify-attempts",
            "AGENT_CLASSIFY_ATTEMPTS",
        ),
        (
            "capture.poll_interval",
            "poll-interval",
            "AGENT_POLL_INTERVAL",
        ),
        ("capture.nice", "nice", "AGENT_NICE"),
        (
            "http.request_timeout",
            "request-timeout",
            "AGENT_REQUEST_TIMEOUT",
        ),
        (
            "http.max_pending_requests",
            "http-max-pending-requests",
            "AGENT_HTTP_MAX_PENDING_REQUESTS",
        ),
        (
            "http.max_head_bytes",
            "http-max-head-bytes",
            "AGENT_HTTP_MAX_HEAD_BYTES",
        ),
        (
            "http2.max_streams",
            "http2-max-streams",
            "AGENT_HTTP2_MAX_STREAMS",
        ),
        (
            "http2.max_header_table_bytes",
            "http2-max-header-table-bytes",
            "AGENT_HTTP2_MAX_HEADER_TABLE_BYTES",
        ),
        ("http.redact_query", "redact-query", "AGENT_REDACT_QUERY"),
        (
            "http.sensitive_query_keys",
            "http-sensitive-query-keys",
            "AGENT_HTTP_SENSITIVE_QUERY_KEYS",
        ),
        (
            "postgres.sanitize_queries",
            "postgres-sanitize-queries",
            "AGENT_POSTGRES_SANITIZE_QUERIES",
        ),
        (
            "postgres.max_query_bytes",
            "postgres-max-query-bytes",
            "AGENT_POSTGRES_MAX_QUERY_BYTES",
        ),
        (
            "postgres.max_prepared_statements",
            "postgres-max-prepared-statements",
            "AGENT_POSTGRES_MAX_PREPARED_STATEMENTS",
        ),
        (
            "postgres.max_pending",
            "postgres-max-pending",
            "AGENT_POSTGRES_MAX_PENDING",
        ),
        (
            "postgres.query_timeout",
            "postgres-query-timeout",
            "AGENT_POSTGRES_QUERY_TIMEOUT",
        ),
        (
            "connections.max_tracked",
            "connections-max-tracked",
            "AGENT_CONNECTIONS_MAX_TRACKED",
        ),
        (
            "connections.idle_timeout",
            "connections-idle-timeout",
            "AGENT_CONNECTIONS_IDLE_TIMEOUT",
        ),
        (
            "connections.max_processes",
            "connections-max-processes",
            "AGENT_CONNECTIONS_MAX_PROCESSES",
        ),
        ("export.mode", "export", "AGENT_EXPORT"),
        (
            "export.queue_size",
            "export-queue-size",
            "AGENT_EXPORT_QUEUE_SIZE",
        ),
        (
            "export.batch_size",
            "export-batch-size",
            "AGENT_EXPORT_BATCH_SIZE",
        ),
        (
            "export.interval",
            "export-interval",
            "AGENT_EXPORT_INTERVAL",
        ),
        (
            "export.otlp.endpoint",
            "otlp-endpoint",
            "AGENT_OTLP_ENDPOINT",
        ),
        (
            "export.otlp.traces_endpoint",
            "otlp-traces-endpoint",
            "AGENT_OTLP_TRACES_ENDPOINT",
        ),
        (
            "export.otlp.protocol",
            "otlp-protocol",
            "AGENT_OTLP_PROTOCOL",
        ),
        ("export.otlp.headers", "otlp-headers", "AGENT_OTLP_HEADERS"),
        ("export.otlp.timeout", "otlp-timeout", "AGENT_OTLP_TIMEOUT"),
        (
            "export.otlp.compression",
            "otlp-compression",
            "AGENT_OTLP_COMPRESSION",
        ),
        (
            "metrics.address",
            "metrics-address",
            "AGENT_METRICS_ADDRESS",
        ),
        ("log_level", "log-level", "AGENT_LOG_LEVEL"),
        (
            "selection.include.ports",
            "include-ports",
            "AGENT_INCLUDE_PORTS",
        ),
        (
            "selection.include.executables",
            "include-executables",
            "AGENT_INCLUDE_EXECUTABLES",
        ),
        (
            "selection.include.cgroups",
            "include-cgroups",
            "AGENT_INCLUDE_CGROUPS",
        ),
        (
            "selection.include.containers",
            "include-containers",
            "AGENT_INCLUDE_CONTAINERS",
        ),
        (
            "selection.include.namespaces",
            "include-namespaces",
            "AGENT_INCLUDE_NAMESPACES",
        ),
        (
            "selection.include.pod_labels",
            "include-pod-labels",
            "AGENT_INCLUDE_POD_LABELS",
        ),
        (
            "selection.exclude.ports",
            "exclude-ports",
            "AGENT_EXCLUDE_PORTS",
        ),
        (
            "selection.exclude.executables",
            "exclude-executables",
            "AGENT_EXCLUDE_EXECUTABLES",
        ),
        (
            "selection.exclude.cgroups",
            "exclude-cgroups",
            "AGENT_EXCLUDE_CGROUPS",
        ),
        (
            "selection.exclude.containers",
            "exclude-containers",
            "AGENT_EXCLUDE_CONTAINERS",
        ),
        (
            "selection.exclude.namespaces",
            "exclude-namespaces",
            "AGENT_EXCLUDE_NAMESPACES",
        ),
        (
            "selection.exclude.pod_labels",
            "exclude-pod-labels",
            "AGENT_EXCLUDE_POD_LABELS",
        ),
        ("kubernetes.enabled", "kubernetes", "AGENT_KUBERNETES"),
        (
            "kubernetes.node_name",
            "kubernetes-node-name",
            "AGENT_KUBERNETES_NODE_NAME",
        ),
        (
            "kubernetes.api_server",
            "kubernetes-api-server",
            "AGENT_KUBERNETES_API_SERVER",
        ),
        ("kubernetes.kubeconfig", "kubeconfig", "AGENT_KUBECONFIG"),
        (
            "kubernetes.token_file",
            "kubernetes-token-file",
            "AGENT_KUBERNETES_TOKEN_FILE",
        ),
        (
            "kubernetes.ca_file",
            "kubernetes-ca-file",
            "AGENT_KUBERNETES_CA_FILE",
        ),
        (
            "kubernetes.max_pods",
            "kubernetes-max-pods",
            "AGENT_KUBERNETES_MAX_PODS",
        ),
    ];

    fn leaves(prefix: &str, v: &serde_yaml_ng::Value, out: &mut Vec<String>) {
        match v {
            serde_yaml_ng::Value::Mapping(m) if !prefix.ends_with("headers") => {
                for (k, v) in m {
                    let k = k.as_str().unwrap_or_default();
                    let key = if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn every_key_has_a_flag_a_variable_and_documentation() {
        use clap::CommandFactory as _;
        let cmd = Cli::command();
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("## Configuration").expect("section")..];
        let yaml = section
            .split("```yaml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a yaml block");
        for (key, flag, var) in KEYS {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(*flag))
                .unwrap_or_else(|| panic!("{key}: no --{flag}"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(*var),
                "{key}: --{flag} has no {var}"
            );
            let last = key.rsplit('.').next().expect("key");
            assert!(
                yaml.contains(&format!("{last}:")) && yaml.contains(&format!("--{flag}")),
                "README does not document {key} (--{flag})"
            );
        }
        // The documented example is a valid configuration.
        let file = parse_file(yaml).expect("README example parses");
        let env = OtelEnv {
            kubernetes_service_host: Some("10.0.0.1".into()),
            ..OtelEnv::default()
        };
        let cfg = Config::resolve(&Flags::default(), file, &env).expect("README example resolves");
        // No effective key without an entry above.
        let mut found = Vec::new();
        leaves("", &serde_yaml_ng::to_value(&cfg).unwrap(), &mut found);
        for key in found {
            // Effective keys named apart from their file keys.
            let key = match key.as_str() {
                "metrics_address" => "metrics.address".to_string(),
                "node.otlp.endpoint" => "export.otlp.metrics_endpoint".to_string(),
                "node.otlp.protocol" => "export.otlp.protocol".to_string(),
                "node.otlp.timeout" => "export.otlp.timeout".to_string(),
                "node.otlp.gzip" => "export.otlp.compression".to_string(),
                "node.otlp.interval" => "node.export_interval".to_string(),
                k if k.starts_with("node.otlp.headers") => "export.otlp.headers".to_string(),
                k if k.starts_with("node.filesystem_")
                    || k.starts_with("node.diskstats_")
                    || k.starts_with("node.netdev_")
                    || k.starts_with("node.netstat_")
                    || k.starts_with("node.vmstat_") =>
                {
                    k.replacen('_', ".", 1)
                }
                _ => key,
            };
            assert!(
                KEYS.iter().any(|(k, _, _)| *k == key),
                "{key} has no flag/variable entry"
            );
        }
    }

    #[test]
    fn selection_and_kubernetes_keys() {
        let yaml = "selection:\n  include:\n    ports: [8080, \"9000-9002\"]\n  exclude:\n    executables: [sshd]\n";
        let c = resolve(Flags::default(), yaml, OtelEnv::default()).unwrap();
        assert_eq!(
            c.selection.include.ports,
            vec![
                PortRange {
                    from: 8080,
                    to: 8080
                },
                PortRange {
                    from: 9000,
                    to: 9002
                }
            ]
        );
        assert!(c.selection.by_process());
        let flags = Flags {
            include_ports: Some(vec!["80".into()]),
            ..Default::default()
        };
        let c = resolve(flags, yaml, OtelEnv::default()).unwrap();
        assert_eq!(
            c.selection.include.ports,
            vec![PortRange { from: 80, to: 80 }],
            "flag replaces"
        );
        for (yaml, key) in [
            (
                "selection:\n  include:\n    ports: [70000]\n",
                "selection.include.ports:",
            ),
            (
                "selection:\n  exclude:\n    ports: [\"9-1\"]\n",
                "selection.exclude.ports:",
            ),
            (
                "selection:\n  include:\n    containers: [xyz]\n",
                "selection.include.containers:",
            ),
            (
                "selection:\n  exclude:\n    pod_labels: [\"=v\"]\n",
                "selection.exclude.pod_labels:",
            ),
            (
                "selection:\n  include:\n    namespaces: [shop]\n",
                "selection:",
            ),
            ("kubernetes:\n  enabled: on\n", "kubernetes.enabled:"),
            (
                "kubernetes:\n  api_server: ftp://x\n",
                "kubernetes.api_server:",
            ),
            (
                "kubernetes:\n  api_server: https://x\n  max_pods: 0\n",
                "kubernetes.max_pods:",
            ),
        ] {
            let e = resolve(Flags::default(), yaml, OtelEnv::default()).unwrap_err();
            assert!(e.to_string().starts_with(key), "{yaml}: {e}");
        }
        let e = parse_file("selection:\n  include:\n    bogus: [1]\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");

        // Kubernetes: off outside a cluster, on inside, with the service
        // address as the API server.
        let c = resolve(Flags::default(), "", OtelEnv::default()).unwrap();
        assert!(!c.kubernetes.enabled);
        let env = OtelEnv {
            kubernetes_service_host: Some("fd00::1".into()),
            kubernetes_service_port: Some("6443".into()),
            node_name: Some("node-7".into()),
            ..Default::default()
        };
        let c = resolve(Flags::default(), "", env.clone()).unwrap();
        assert!(c.kubernetes.enabled);
        assert_eq!(
            c.kubernetes.api_server.as_deref(),
            Some("https://[fd00::1]:6443")
        );
        assert_eq!(c.kubernetes.node_name.as_deref(), Some("node-7"));
        let flags = Flags {
            kubernetes: Some(KubernetesMode::Off),
            ..Default::default()
        };
        assert!(!resolve(flags, "", env).unwrap().kubernetes.enabled);
    }

    #[test]
    fn export_flags_win_over_otel_variables() {
        let env = OtelEnv {
            compression: Some("gzip".into()),
            timeout: Some("500".into()),
            ..Default::default()
        };
        let c = resolve(Flags::default(), "", env.clone()).unwrap();
        assert_eq!(c.export.otlp.compression, OtlpCompression::Gzip);
        assert_eq!(c.export.otlp.timeout, Duration::from_millis(500));
        let flags = Flags {
            otlp_compression: Some(OtlpCompression::None),
            otlp_timeout: Some(Duration::from_secs(3)),
            otlp_headers: Some("a=1".into()),
            export_batch_size: Some(10),
            wakeup_records: Some(0),
            classify_attempts: Some(0),
            ..Default::default()
        };
        let c = resolve(flags, "", env).unwrap();
        assert_eq!(c.export.otlp.compression, OtlpCompression::None);
        assert_eq!(c.export.otlp.timeout, Duration::from_secs(3));
        assert_eq!(c.export.otlp.headers["a"], "1");
        assert_eq!(c.export.batch_size, 10);
        assert_eq!(c.capture.wakeup_records, 0);
        assert_eq!(c.capture.classify_attempts, 0);
        let too_many = Flags {
            classify_attempts: Some(70_000),
            ..Default::default()
        };
        let err = resolve(too_many, "", OtelEnv::default()).unwrap_err();
        assert!(
            err.to_string().contains("capture.classify_attempts"),
            "{err}"
        );
    }

    #[test]
    fn metrics_off() {
        let c = resolve(
            Flags {
                metrics_address: Some("off".into()),
                ..Default::default()
            },
            "",
            OtelEnv::default(),
        )
        .unwrap();
        assert_eq!(c.metrics_address, None);
    }
}
