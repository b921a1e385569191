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
    pub connections: FileConnections,
    pub export: FileExport,
    pub metrics: FileMetrics,
    pub node: crate::node::config::FileNode,
    pub log_level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileCapture {
    pub capture_bytes: Option<u32>,
    pub ring_buffer_bytes: Option<u32>,
    pub max_connections: Option<u32>,
    pub wakeup_bytes: Option<u64>,
    #[serde(with = "humantime_opt")]
    pub poll_interval: Option<Duration>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileMetrics {
    pub address: Option<String>,
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
    pub connections: ConnectionsConfig,
    pub export: ExportConfig,
    /// `None`: no metrics/health endpoint.
    pub metrics_address: Option<SocketAddr>,
    /// Node and process metrics (`node:`), and where they go over OTLP.
    pub node: crate::node::config::NodeConfig,
    pub log_level: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaptureConfig {
    pub capture_bytes: u32,
    pub ring_buffer_bytes: u32,
    pub max_connections: u32,
    pub wakeup_bytes: u64,
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub poll_interval: Duration,
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
    /// Full traces URL, when the agent's own settings give one. `None`
    /// lets the exporter read the `OTEL_EXPORTER_OTLP_*` variables.
    pub traces_endpoint: Option<String>,
    /// Extra headers from the file (the `OTEL_EXPORTER_OTLP_HEADERS`
    /// variable is read by the exporter itself).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(serialize_with = "humantime_opt::serialize")]
    pub timeout: Duration,
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
            wakeup_bytes: file.capture.wakeup_bytes.unwrap_or(256 * 1024),
            poll_interval: file
                .capture
                .poll_interval
                .unwrap_or(Duration::from_millis(20)),
        };
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
        if capture.wakeup_bytes >= u64::from(capture.ring_buffer_bytes) {
            return Err(invalid(
                "capture.wakeup_bytes",
                "must be smaller than capture.ring_buffer_bytes",
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
            max_pending_requests: file.http.max_pending_requests.unwrap_or(64),
            max_head_bytes: file.http.max_head_bytes.unwrap_or(16 * 1024),
            redact_query: flags
                .redact_query
                .or(file.http.redact_query)
                .unwrap_or(RedactQuery::All),
            sensitive_query_keys: file.http.sensitive_query_keys.unwrap_or_else(|| {
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

        let connections = ConnectionsConfig {
            max_tracked: file.connections.max_tracked.unwrap_or(65_536),
            idle_timeout: file
                .connections
                .idle_timeout
                .unwrap_or(Duration::from_secs(300)),
            max_processes: file.connections.max_processes.unwrap_or(4096),
        };
        if connections.max_tracked == 0 {
            return Err(invalid("connections.max_tracked", "must be positive"));
        }
        if connections.max_processes == 0 {
            return Err(invalid("connections.max_processes", "must be positive"));
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

        Ok(Self {
            capture,
            http,
            connections,
            export,
            metrics_address,
            node,
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
    // Where the traces go, in precedence order. `None` with an OTEL
    // variable set means "let the exporter read the variables".
    let env_has_endpoint = env.traces_endpoint.is_some() || env.endpoint.is_some();
    let traces_endpoint = if let Some(base) = &flags.otlp_endpoint {
        Some(signal_url(base, protocol))
    } else if env_has_endpoint {
        None
    } else if let Some(url) = &file.otlp.traces_endpoint {
        Some(url.clone())
    } else {
        file.otlp
            .endpoint
            .as_deref()
            .map(|b| signal_url(b, protocol))
    };
    if let Some(url) = &traces_endpoint
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(
            "export.otlp.endpoint",
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    let have_endpoint = traces_endpoint.is_some() || env_has_endpoint;
    let mode = match flags.export.or(file.mode).unwrap_or(ExportMode::Auto) {
        ExportMode::Auto if have_endpoint => ExportMode::Otlp,
        ExportMode::Auto => ExportMode::Stdout,
        m => m,
    };
    let export = ExportConfig {
        mode,
        queue_size: file.queue_size.unwrap_or(65_536),
        batch_size: file.batch_size.unwrap_or(1024),
        interval: file.interval.unwrap_or(Duration::from_secs(1)),
        otlp: OtlpConfig {
            protocol,
            traces_endpoint,
            headers: file.otlp.headers.unwrap_or_default(),
            timeout: otlp_timeout(env, file.otlp.timeout)?,
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
        assert_eq!(c.export.otlp.traces_endpoint, None, "env wins over file");

        let c = resolve(Flags::default(), yaml, OtelEnv::default()).unwrap();
        assert_eq!(
            c.export.otlp.traces_endpoint.as_deref(),
            Some("http://file:4317")
        );

        let flags = Flags {
            otlp_endpoint: Some("http://flag:4318/".into()),
            otlp_protocol: Some(OtlpProtocol::HttpProtobuf),
            ..Default::default()
        };
        let c = resolve(flags, "", OtelEnv::default()).unwrap();
        assert_eq!(
            c.export.otlp.traces_endpoint.as_deref(),
            Some("http://flag:4318/v1/traces")
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
