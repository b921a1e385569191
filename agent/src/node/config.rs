//! The node-metrics part of the configuration (`node:` in the file,
//! `--node-*` flags / `AGENT_NODE_*` variables) and the OTLP metrics
//! destination (the agent's OTLP settings and the standard
//! `OTEL_EXPORTER_OTLP_[METRICS_]*`, `OTEL_METRIC_EXPORT_*`,
//! `OTEL_METRICS_EXPORTER` variables). `config.rs` calls [`resolve`] with
//! the same layering as everything else: defaults < file < environment <
//! flags.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::{COLLECTORS, NodeOptions, NodePaths, defaults, filter_regex};
use crate::config::{ConfigError, OtlpProtocol};

/// Flags (and `AGENT_*` variables) of the node metrics.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct NodeFlags {
    /// Node collectors to switch on or off, over the file's `node.collectors`:
    /// comma-separated names (`cpu,meminfo`), `-name` to switch one off,
    /// `all` or `none` to start from everything or nothing
    /// (e.g. `none,cpu,meminfo` or `-textfile,-filesystem`).
    #[arg(long, env = "AGENT_NODE_COLLECTORS", global = true)]
    pub node_collectors: Option<String>,
    /// Directory of `*.prom` files for the textfile collector.
    #[arg(long, env = "AGENT_NODE_TEXTFILE_DIRECTORY", global = true)]
    pub node_textfile_directory: Option<PathBuf>,
    /// How often node and process metrics are exported over OTLP (e.g.
    /// `60s`; `OTEL_METRIC_EXPORT_INTERVAL` in milliseconds works too).
    #[arg(long, env = "AGENT_METRICS_EXPORT_INTERVAL", value_parser = parse_duration, global = true)]
    pub metrics_export_interval: Option<Duration>,
    /// The host's root directory (`node.root`; `/host/root` in a container).
    #[arg(long, env = "AGENT_NODE_ROOT", global = true)]
    pub node_root: Option<PathBuf>,
    /// The host's procfs (`node.proc`; default `<root>/proc`).
    #[arg(long, env = "AGENT_NODE_PROC", global = true)]
    pub node_proc: Option<PathBuf>,
    /// The host's sysfs (`node.sys`; default `<root>/sys`).
    #[arg(long, env = "AGENT_NODE_SYS", global = true)]
    pub node_sys: Option<PathBuf>,
    /// Mount points the filesystem collector skips, a regex
    /// (`node.filesystem.mount_points_exclude`).
    #[arg(
        long,
        env = "AGENT_NODE_FILESYSTEM_MOUNT_POINTS_EXCLUDE",
        global = true
    )]
    pub node_filesystem_mount_points_exclude: Option<String>,
    /// Filesystem types it skips, a regex (`node.filesystem.fs_types_exclude`).
    #[arg(long, env = "AGENT_NODE_FILESYSTEM_FS_TYPES_EXCLUDE", global = true)]
    pub node_filesystem_fs_types_exclude: Option<String>,
    /// Longest wait for one `statfs` (`node.filesystem.mount_timeout`).
    #[arg(long, env = "AGENT_NODE_FILESYSTEM_MOUNT_TIMEOUT", value_parser = parse_duration, global = true)]
    pub node_filesystem_mount_timeout: Option<Duration>,
    /// Block devices the diskstats collector skips, a regex
    /// (`node.diskstats.device_exclude`).
    #[arg(long, env = "AGENT_NODE_DISKSTATS_DEVICE_EXCLUDE", global = true)]
    pub node_diskstats_device_exclude: Option<String>,
    /// Network devices the netdev collector skips, a regex
    /// (`node.netdev.device_exclude`).
    #[arg(long, env = "AGENT_NODE_NETDEV_DEVICE_EXCLUDE", global = true)]
    pub node_netdev_device_exclude: Option<String>,
    /// netstat fields exported, a regex (`node.netstat.fields`).
    #[arg(long, env = "AGENT_NODE_NETSTAT_FIELDS", global = true)]
    pub node_netstat_fields: Option<String>,
    /// vmstat fields exported, a regex (`node.vmstat.fields`).
    #[arg(long, env = "AGENT_NODE_VMSTAT_FIELDS", global = true)]
    pub node_vmstat_fields: Option<String>,
    /// `process.*` metrics of the traced processes over OTLP
    /// (`node.process_metrics`).
    #[arg(long, env = "AGENT_NODE_PROCESS_METRICS", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub node_process_metrics: Option<bool>,
    /// Full OTLP metrics URL, used as is (`export.otlp.metrics_endpoint`).
    #[arg(long, env = "AGENT_OTLP_METRICS_ENDPOINT", global = true)]
    pub otlp_metrics_endpoint: Option<String>,
    /// Experimental run-queue delay programs (`node.runqueue_latency`).
    #[arg(long, env = "AGENT_NODE_RUNQUEUE_LATENCY", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub node_runqueue_latency: Option<bool>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// `node:` in the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileNode {
    /// `collector: true|false`; collectors not named keep their default (on).
    pub collectors: Option<BTreeMap<String, bool>>,
    pub textfile_directory: Option<PathBuf>,
    /// The host's root, procfs and sysfs (e.g. `/host`, `/host/proc`,
    /// `/host/sys` in a container).
    pub root: Option<PathBuf>,
    pub proc: Option<PathBuf>,
    pub sys: Option<PathBuf>,
    pub filesystem: FileFilesystem,
    pub diskstats: FileDevices,
    pub netdev: FileDevices,
    pub netstat: FileFields,
    pub vmstat: FileFields,
    /// Per-process metrics of the traced processes (OTLP).
    pub process_metrics: Option<bool>,
    /// Experimental: attach the run-queue delay programs (on every context
    /// switch; see BENCHMARKS.md for the measured cost).
    pub runqueue_latency: Option<bool>,
    #[serde(default, deserialize_with = "de_duration")]
    pub export_interval: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileFilesystem {
    pub mount_points_exclude: Option<String>,
    pub fs_types_exclude: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub mount_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileDevices {
    pub device_exclude: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileFields {
    pub fields: Option<String>,
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

fn ser_duration<S: serde::Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*v).to_string())
}

/// The OTLP metrics variables of the process environment.
#[derive(Debug, Default, Clone)]
pub struct MetricsEnv {
    pub endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub metrics_protocol: Option<String>,
    pub headers: Option<String>,
    pub metrics_headers: Option<String>,
    pub timeout: Option<String>,
    pub metrics_timeout: Option<String>,
    pub compression: Option<String>,
    pub metrics_compression: Option<String>,
    /// `OTEL_METRIC_EXPORT_INTERVAL`, milliseconds.
    pub interval: Option<String>,
    /// `OTEL_METRICS_EXPORTER` (`none` switches OTLP metrics off).
    pub exporter: Option<String>,
}

impl MetricsEnv {
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self {
            endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            metrics_endpoint: get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
            protocol: get("OTEL_EXPORTER_OTLP_PROTOCOL"),
            metrics_protocol: get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"),
            headers: get("OTEL_EXPORTER_OTLP_HEADERS"),
            metrics_headers: get("OTEL_EXPORTER_OTLP_METRICS_HEADERS"),
            timeout: get("OTEL_EXPORTER_OTLP_TIMEOUT"),
            metrics_timeout: get("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"),
            compression: get("OTEL_EXPORTER_OTLP_COMPRESSION"),
            metrics_compression: get("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"),
            interval: get("OTEL_METRIC_EXPORT_INTERVAL"),
            exporter: get("OTEL_METRICS_EXPORTER"),
        }
    }
}

/// Where node and process metrics go over OTLP.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsExport {
    /// The full metrics URL; `None`: no OTLP metrics (`/metrics` still
    /// serves them).
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    pub gzip: bool,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
}

/// The effective node configuration.
#[derive(Debug, Clone, Serialize)]
pub struct NodeConfig {
    pub collectors: Vec<&'static str>,
    pub root: PathBuf,
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub textfile_directory: Option<PathBuf>,
    pub filesystem_mount_points_exclude: String,
    pub filesystem_fs_types_exclude: String,
    #[serde(serialize_with = "ser_duration")]
    pub filesystem_mount_timeout: Duration,
    pub diskstats_device_exclude: String,
    pub netdev_device_exclude: String,
    pub netstat_fields: String,
    pub vmstat_fields: String,
    pub process_metrics: bool,
    pub runqueue_latency: bool,
    pub otlp: MetricsExport,
}

impl NodeConfig {
    /// What the collectors need.
    pub fn options(&self) -> NodeOptions {
        NodeOptions {
            collectors: self.collectors.clone(),
            paths: NodePaths {
                proc: self.proc.clone(),
                sys: self.sys.clone(),
                root: self.root.clone(),
            },
            textfile_directory: self.textfile_directory.clone(),
            filesystem_mount_points_exclude: self.filesystem_mount_points_exclude.clone(),
            filesystem_fs_types_exclude: self.filesystem_fs_types_exclude.clone(),
            filesystem_mount_timeout: self.filesystem_mount_timeout,
            diskstats_device_exclude: self.diskstats_device_exclude.clone(),
            netdev_device_exclude: self.netdev_device_exclude.clone(),
            netstat_fields: self.netstat_fields.clone(),
            vmstat_fields: self.vmstat_fields.clone(),
        }
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

fn collector_name(key: &'static str, name: &str) -> Result<&'static str, ConfigError> {
    COLLECTORS
        .iter()
        .copied()
        .find(|c| *c == name)
        .ok_or_else(|| {
            invalid(
                key,
                format!(
                    "unknown collector {name:?} (known: {})",
                    COLLECTORS.join(", ")
                ),
            )
        })
}

/// Applies `--node-collectors` to `enabled`.
fn apply_list(enabled: &mut Vec<&'static str>, list: &str) -> Result<(), ConfigError> {
    const KEY: &str = "--node-collectors";
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "all" => *enabled = COLLECTORS.to_vec(),
            "none" => enabled.clear(),
            _ => {
                if let Some(name) = item.strip_prefix('-') {
                    let name = collector_name(KEY, name)?;
                    enabled.retain(|c| *c != name);
                } else {
                    let name = collector_name(KEY, item.trim_start_matches('+'))?;
                    if !enabled.contains(&name) {
                        enabled.push(name);
                    }
                }
            }
        }
    }
    enabled.sort_unstable();
    Ok(())
}

fn regex_setting(
    key: &'static str,
    file: Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    let value = file.unwrap_or_else(|| default.to_string());
    filter_regex(key, &value).map_err(|e| invalid(key, e.to_string()))?;
    Ok(value)
}

/// Milliseconds of an `OTEL_*` variable.
fn env_millis(key: &'static str, v: &str) -> Result<Duration, ConfigError> {
    let ms: u64 = v
        .trim()
        .parse()
        .map_err(|_| invalid(key, format!("{v:?} is not a number of milliseconds")))?;
    if ms == 0 {
        return Err(invalid(key, "must be positive"));
    }
    Ok(Duration::from_millis(ms))
}

/// `k1=v1,k2=v2` with percent-encoded values (as the specification
/// defines `OTEL_EXPORTER_OTLP_HEADERS`).
fn parse_headers(
    key: &'static str,
    text: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| invalid(key, format!("{pair:?} is not key=value")))?;
        let v = crate::resource::percent_decode(v.trim())
            .ok_or_else(|| invalid(key, format!("bad percent-encoding in {pair:?}")))?;
        out.insert(k.trim().to_ascii_lowercase(), v);
    }
    Ok(())
}

/// What the rest of the configuration contributes.
pub struct Shared<'a> {
    /// `--otlp-endpoint` (a base URL).
    pub flag_endpoint: Option<&'a str>,
    pub flag_protocol: Option<OtlpProtocol>,
    /// `export.otlp.endpoint` of the file (a base URL).
    pub file_endpoint: Option<&'a str>,
    /// `export.otlp.metrics_endpoint` of the file (the full URL).
    pub file_metrics_endpoint: Option<&'a str>,
    pub file_protocol: Option<OtlpProtocol>,
    pub file_headers: &'a BTreeMap<String, String>,
    pub file_timeout: Option<Duration>,
}

pub fn resolve(
    flags: &NodeFlags,
    file: FileNode,
    env: &MetricsEnv,
    shared: Shared<'_>,
) -> Result<NodeConfig, ConfigError> {
    let mut collectors: Vec<&'static str> = COLLECTORS.to_vec();
    if let Some(map) = &file.collectors {
        for (name, on) in map {
            let name = collector_name("node.collectors", name)?;
            collectors.retain(|c| *c != name);
            if *on {
                collectors.push(name);
            }
        }
        collectors.sort_unstable();
    }
    if let Some(list) = &flags.node_collectors {
        apply_list(&mut collectors, list)?;
    }
    let root = flags
        .node_root
        .clone()
        .or(file.root)
        .unwrap_or_else(|| PathBuf::from("/"));
    let proc = flags
        .node_proc
        .clone()
        .or(file.proc)
        .unwrap_or_else(|| root.join("proc"));
    let sys = flags
        .node_sys
        .clone()
        .or(file.sys)
        .unwrap_or_else(|| root.join("sys"));
    let mount_timeout = flags
        .node_filesystem_mount_timeout
        .or(file.filesystem.mount_timeout)
        .unwrap_or(defaults::FILESYSTEM_MOUNT_TIMEOUT);
    if mount_timeout.is_zero() {
        return Err(invalid("node.filesystem.mount_timeout", "must be positive"));
    }
    let otlp = resolve_otlp(flags, file.export_interval, env, shared)?;
    Ok(NodeConfig {
        collectors,
        root,
        proc,
        sys,
        textfile_directory: flags
            .node_textfile_directory
            .clone()
            .or(file.textfile_directory),
        filesystem_mount_points_exclude: regex_setting(
            "node.filesystem.mount_points_exclude",
            flags
                .node_filesystem_mount_points_exclude
                .clone()
                .or(file.filesystem.mount_points_exclude),
            defaults::FILESYSTEM_MOUNT_POINTS_EXCLUDE,
        )?,
        filesystem_fs_types_exclude: regex_setting(
            "node.filesystem.fs_types_exclude",
            flags
                .node_filesystem_fs_types_exclude
                .clone()
                .or(file.filesystem.fs_types_exclude),
            defaults::FILESYSTEM_FS_TYPES_EXCLUDE,
        )?,
        filesystem_mount_timeout: mount_timeout,
        diskstats_device_exclude: regex_setting(
            "node.diskstats.device_exclude",
            flags
                .node_diskstats_device_exclude
                .clone()
                .or(file.diskstats.device_exclude),
            defaults::DISKSTATS_DEVICE_EXCLUDE,
        )?,
        netdev_device_exclude: regex_setting(
            "node.netdev.device_exclude",
            flags
                .node_netdev_device_exclude
                .clone()
                .or(file.netdev.device_exclude),
            defaults::NETDEV_DEVICE_EXCLUDE,
        )?,
        netstat_fields: regex_setting(
            "node.netstat.fields",
            flags.node_netstat_fields.clone().or(file.netstat.fields),
            defaults::NETSTAT_FIELDS,
        )?,
        vmstat_fields: regex_setting(
            "node.vmstat.fields",
            flags.node_vmstat_fields.clone().or(file.vmstat.fields),
            defaults::VMSTAT_FIELDS,
        )?,
        process_metrics: flags
            .node_process_metrics
            .or(file.process_metrics)
            .unwrap_or(true),
        runqueue_latency: flags
            .node_runqueue_latency
            .or(file.runqueue_latency)
            .unwrap_or(false),
        otlp,
    })
}

fn resolve_otlp(
    flags: &NodeFlags,
    file_interval: Option<Duration>,
    env: &MetricsEnv,
    shared: Shared<'_>,
) -> Result<MetricsExport, ConfigError> {
    let parse_protocol = |key: &'static str, p: &str| {
        OtlpProtocol::parse_env(p)
            .ok_or_else(|| invalid(key, format!("{p:?}: supported are grpc and http/protobuf")))
    };
    let protocol = match (shared.flag_protocol, &env.metrics_protocol, &env.protocol) {
        (Some(p), _, _) => p,
        (None, Some(p), _) => parse_protocol("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", p)?,
        (None, None, Some(p)) => parse_protocol("OTEL_EXPORTER_OTLP_PROTOCOL", p)?,
        (None, None, None) => shared.file_protocol.unwrap_or(OtlpProtocol::Grpc),
    };
    let from_base = |base: &str| match protocol {
        OtlpProtocol::Grpc => base.to_string(),
        OtlpProtocol::HttpProtobuf => format!("{}/v1/metrics", base.trim_end_matches('/')),
    };
    let (key, endpoint) = if let Some(base) = shared.flag_endpoint {
        ("--otlp-endpoint", Some(from_base(base)))
    } else if let Some(url) = &flags.otlp_metrics_endpoint {
        ("--otlp-metrics-endpoint", Some(url.clone()))
    } else if let Some(url) = &env.metrics_endpoint {
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", Some(url.clone()))
    } else if let Some(base) = &env.endpoint {
        ("OTEL_EXPORTER_OTLP_ENDPOINT", Some(from_base(base)))
    } else if let Some(url) = shared.file_metrics_endpoint {
        ("export.otlp.metrics_endpoint", Some(url.to_string()))
    } else {
        ("export.otlp.endpoint", shared.file_endpoint.map(from_base))
    };
    if let Some(url) = &endpoint
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(
            key,
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    let endpoint = match env.exporter.as_deref().map(str::trim) {
        Some("none") => None,
        Some("otlp") | None => endpoint,
        Some(other) => {
            return Err(invalid(
                "OTEL_METRICS_EXPORTER",
                format!("{other:?}: supported are otlp and none"),
            ));
        }
    };
    let mut headers = shared.file_headers.clone();
    if let Some(h) = &env.headers {
        parse_headers("OTEL_EXPORTER_OTLP_HEADERS", h, &mut headers)?;
    }
    if let Some(h) = &env.metrics_headers {
        parse_headers("OTEL_EXPORTER_OTLP_METRICS_HEADERS", h, &mut headers)?;
    }
    let timeout = match (&env.metrics_timeout, &env.timeout) {
        (Some(v), _) => env_millis("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", v)?,
        (None, Some(v)) => env_millis("OTEL_EXPORTER_OTLP_TIMEOUT", v)?,
        (None, None) => shared.file_timeout.unwrap_or(Duration::from_secs(10)),
    };
    let gzip = match (&env.metrics_compression, &env.compression) {
        (Some(v), _) | (None, Some(v)) => match v.trim() {
            "gzip" => true,
            "none" => false,
            other => {
                let key = if env.metrics_compression.is_some() {
                    "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"
                } else {
                    "OTEL_EXPORTER_OTLP_COMPRESSION"
                };
                return Err(invalid(
                    key,
                    format!("{other:?}: supported are gzip and none"),
                ));
            }
        },
        (None, None) => false,
    };
    let interval = match (&flags.metrics_export_interval, &env.interval) {
        (Some(d), _) => *d,
        (None, Some(v)) => env_millis("OTEL_METRIC_EXPORT_INTERVAL", v)?,
        (None, None) => file_interval.unwrap_or(Duration::from_secs(60)),
    };
    if interval < Duration::from_millis(100) {
        return Err(invalid("node.export_interval", "must be at least 100ms"));
    }
    Ok(MetricsExport {
        endpoint,
        protocol,
        headers,
        timeout,
        gzip,
        interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared<'static> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        Shared {
            flag_endpoint: None,
            flag_protocol: None,
            file_endpoint: None,
            file_metrics_endpoint: None,
            file_protocol: None,
            file_headers: &EMPTY,
            file_timeout: None,
        }
    }

    #[test]
    fn defaults_everything_on_no_otlp() {
        let c = resolve(
            &NodeFlags::default(),
            FileNode::default(),
            &MetricsEnv::default(),
            shared(),
        )
        .unwrap();
        assert_eq!(c.collectors, COLLECTORS.to_vec());
        assert_eq!(c.otlp.endpoint, None);
        assert_eq!(c.otlp.interval, Duration::from_secs(60));
        assert_eq!(c.proc, PathBuf::from("/proc"));
    }

    #[test]
    fn collectors_from_file_and_flags() {
        let file = FileNode {
            collectors: Some([("textfile".to_string(), false), ("cpu".to_string(), false)].into()),
            ..FileNode::default()
        };
        let flags = NodeFlags {
            node_collectors: Some("cpu,-meminfo".into()),
            ..NodeFlags::default()
        };
        let c = resolve(&flags, file, &MetricsEnv::default(), shared()).unwrap();
        assert!(c.collectors.contains(&"cpu"));
        assert!(!c.collectors.contains(&"meminfo"));
        assert!(!c.collectors.contains(&"textfile"));
        let flags = NodeFlags {
            node_collectors: Some("none,loadavg".into()),
            ..NodeFlags::default()
        };
        let c = resolve(
            &flags,
            FileNode::default(),
            &MetricsEnv::default(),
            shared(),
        )
        .unwrap();
        assert_eq!(c.collectors, vec!["loadavg"]);
    }

    #[test]
    fn errors_name_the_key() {
        let file = FileNode {
            collectors: Some([("cpux".to_string(), true)].into()),
            ..FileNode::default()
        };
        let e = resolve(
            &NodeFlags::default(),
            file,
            &MetricsEnv::default(),
            shared(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("node.collectors: unknown collector \"cpux\""),
            "{e}"
        );
        let flags = NodeFlags {
            node_collectors: Some("-bogus".into()),
            ..NodeFlags::default()
        };
        let e = resolve(
            &flags,
            FileNode::default(),
            &MetricsEnv::default(),
            shared(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("--node-collectors:"), "{e}");
        let file = FileNode {
            netstat: FileFields {
                fields: Some("(".into()),
            },
            ..FileNode::default()
        };
        let e = resolve(
            &NodeFlags::default(),
            file,
            &MetricsEnv::default(),
            shared(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("node.netstat.fields:"), "{e}");
        let env = MetricsEnv {
            interval: Some("soon".into()),
            ..MetricsEnv::default()
        };
        let e = resolve(&NodeFlags::default(), FileNode::default(), &env, shared()).unwrap_err();
        assert!(
            e.to_string().starts_with("OTEL_METRIC_EXPORT_INTERVAL:"),
            "{e}"
        );
    }

    #[test]
    fn otlp_endpoint_precedence() {
        let env = MetricsEnv {
            endpoint: Some("http://base:4318/".into()),
            protocol: Some("http/protobuf".into()),
            headers: Some("a=1,b=x%20y".into()),
            interval: Some("1500".into()),
            compression: Some("gzip".into()),
            ..MetricsEnv::default()
        };
        let c = resolve(&NodeFlags::default(), FileNode::default(), &env, shared()).unwrap();
        assert_eq!(
            c.otlp.endpoint.as_deref(),
            Some("http://base:4318/v1/metrics")
        );
        assert_eq!(c.otlp.headers["b"], "x y");
        assert_eq!(c.otlp.interval, Duration::from_millis(1500));
        assert!(c.otlp.gzip);
        let env = MetricsEnv {
            metrics_endpoint: Some("http://m:4318/custom".into()),
            ..env
        };
        let c = resolve(&NodeFlags::default(), FileNode::default(), &env, shared()).unwrap();
        assert_eq!(c.otlp.endpoint.as_deref(), Some("http://m:4318/custom"));
        let off = MetricsEnv {
            exporter: Some("none".into()),
            ..env
        };
        let c = resolve(&NodeFlags::default(), FileNode::default(), &off, shared()).unwrap();
        assert_eq!(c.otlp.endpoint, None);
        let grpc = Shared {
            file_endpoint: Some("http://collector:4317"),
            ..shared()
        };
        let c = resolve(
            &NodeFlags::default(),
            FileNode::default(),
            &MetricsEnv::default(),
            grpc,
        )
        .unwrap();
        assert_eq!(c.otlp.endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(c.otlp.protocol, OtlpProtocol::Grpc);
    }
}
