//! The real Debian `prometheus-node-exporter`, `prometheus` and `promtool`,
//! run by the node-metrics tests on loopback ports of their own, and
//! exposition parsing by family (name, HELP, TYPE, series).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::client::http_get;

/// The collectors the agent implements (node_exporter's names).
pub use agent_common::node::COLLECTORS;

fn find_bin(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// A child process killed on drop, with its log file.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        crate::tail_file(&self.log, 30)
    }

    /// `GET path`, the body as text.
    pub fn get(&self, path: &str) -> Result<String, String> {
        let r = http_get(self.addr, path, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("{path}: HTTP {}: {}", r.status, r.text()));
        }
        Ok(r.text())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        crate::procs::terminate(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!("{} log tail:\n{}", self.addr, self.log_tail());
        }
    }
}

fn spawn(bin: &Path, args: &[String], dir: tempfile::TempDir, addr: SocketAddr) -> Daemon {
    let log = dir.path().join("daemon.log");
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = Command::new(bin)
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (run `cargo xtask setup`)",
                bin.display()
            )
        });
    let d = Daemon {
        child,
        addr,
        log,
        _dir: dir,
    };
    let up = crate::poll_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            .ok()
            .map(|_| ())
    });
    assert!(
        up.is_some(),
        "{} did not listen on {addr}:\n{}",
        bin.display(),
        d.log_tail()
    );
    d
}

/// node_exporter with only `collectors`, plus `extra` flags.
pub fn start_node_exporter(collectors: &[&str], extra: &[String]) -> Daemon {
    let addr = crate::free_addr();
    let dir = tempfile::Builder::new()
        .prefix("agent-tests-node-exporter-")
        .tempdir()
        .expect("temp dir");
    let mut args = vec![
        format!("--web.listen-address={addr}"),
        "--collector.disable-defaults".to_string(),
    ];
    args.extend(collectors.iter().map(|c| format!("--collector.{c}")));
    args.extend(extra.iter().cloned());
    spawn(&find_bin("prometheus-node-exporter"), &args, dir, addr)
}

/// Prometheus scraping `target` every second, with its own data directory.
pub fn start_prometheus(target: SocketAddr) -> Daemon {
    let addr = crate::free_addr();
    let dir = tempfile::Builder::new()
        .prefix("agent-tests-prometheus-")
        .tempdir()
        .expect("temp dir");
    let config = dir.path().join("prometheus.yml");
    let mut f = std::fs::File::create(&config).expect("config");
    write!(
        f,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: agent\n    static_configs:\n      - targets: ['{target}']\n"
    )
    .expect("config");
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address={addr}"),
    ];
    spawn(&find_bin("prometheus"), &args, dir, addr)
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An instant PromQL query: the result's (metric labels JSON, value) pairs.
pub fn promql(prometheus: &Daemon, query: &str) -> Result<Vec<(String, f64)>, String> {
    let body = prometheus.get(&format!("/api/v1/query?query={}", url_encode(query)))?;
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    if json["status"] != "success" {
        return Err(body);
    }
    let result = json["data"]["result"].as_array().ok_or(body.clone())?;
    result
        .iter()
        .map(|r| {
            let v = r["value"][1].as_str().ok_or("no value")?;
            Ok((
                r["metric"].to_string(),
                v.parse::<f64>().map_err(|e| e.to_string())?,
            ))
        })
        .collect()
}

/// What `promtool check metrics` says about an exposition (one finding a
/// line; empty when it is clean).
pub fn promtool_findings(text: &str) -> BTreeSet<String> {
    let mut child = Command::new(find_bin("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (run `cargo xtask setup`)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// One family of an exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Family {
    pub help: String,
    pub kind: String,
    /// Series (`name{sorted labels}`) → value.
    pub series: BTreeMap<String, f64>,
    /// Label names of each series (sorted, comma-joined).
    pub labels: BTreeSet<String>,
}

impl Family {
    /// The label names of each series (sorted, comma-joined), deduplicated.
    pub fn label_sets(&self) -> BTreeSet<String> {
        self.labels.iter().cloned().collect()
    }
}

/// Families by name; series keys have their labels sorted.
pub fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            current = name.to_string();
            out.entry(current.clone()).or_default().help = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            current = name.to_string();
            out.entry(current.clone()).or_default().kind = kind.to_string();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let Some(s) = crate::prom::parse(line).pop() else {
                continue;
            };
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            let key = if labels.is_empty() {
                s.name.clone()
            } else {
                format!("{}{{{}}}", s.name, labels.join(","))
            };
            let family = if s.name.starts_with(&current) && !current.is_empty() {
                current.clone()
            } else {
                s.name.clone()
            };
            let names: Vec<&str> = s.labels.keys().map(String::as_str).collect();
            let f = out.entry(family).or_default();
            f.labels.insert(names.join(","));
            f.series.insert(key, s.value);
        }
    }
    out
}
