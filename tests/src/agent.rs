//! Running the agent binary under test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::client::{SimpleResponse, http_get};
use crate::otlp::{OtlpReceiver, Protocol};
use crate::{procs, prom};

/// Call at the top of every test that runs the agent:
///
/// ```ignore
/// if !agent_tests::agent::require_bpf() { return; }
/// ```
///
/// Needs root and `/sys/kernel/btf/vmlinux`. When either is missing: under
/// `CI=true` this panics (the test fails); otherwise it prints a loud
/// `SKIPPED:` line and returns false.
pub fn require_bpf() -> bool {
    let mut missing = Vec::new();
    if !procs::is_root() {
        missing.push("not running as root (the agent loads eBPF programs)");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        missing.push("/sys/kernel/btf/vmlinux is missing (kernel without BTF)");
    }
    if missing.is_empty() {
        return true;
    }
    let reason = missing.join("; ");
    if crate::is_ci() {
        panic!("CI=true and the eBPF tests cannot run: {reason}");
    }
    crate::skip(&reason);
    false
}

/// Path of the agent binary: `$AGENT_BIN`, else `<workspace>/target/debug/agent`.
pub fn agent_bin() -> PathBuf {
    match std::env::var_os("AGENT_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| crate::workspace_dir().join("target"));
            target.join("debug").join("agent")
        }
    }
}

/// How to start the agent. Builder-style; `Default` = no OTLP destination.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `--config FILE`: written to the agent's temp dir.
    pub config_yaml: Option<String>,
    /// `--capture-bytes N`.
    pub capture_bytes: Option<u32>,
    /// `--request-timeout DURATION` (e.g. `2s`, `500ms`).
    pub request_timeout: Option<String>,
    /// `--export auto|otlp|stdout|none`.
    pub export: Option<String>,
    /// `--log-level LEVEL`.
    pub log_level: Option<String>,
    /// Extra arguments, appended last.
    pub args: Vec<String>,
    /// Environment for the agent (added after the inherited environment minus
    /// every `OTEL_*` and `AGENT_*` variable).
    pub env: Vec<(String, String)>,
    /// How long to wait for `/readyz` = 200.
    pub ready_timeout: Duration,
    /// Binary to run instead of [`agent_bin`] (harness self-tests use a fake).
    pub bin: Option<PathBuf>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            config_yaml: None,
            capture_bytes: None,
            request_timeout: None,
            export: None,
            log_level: Some("info".into()),
            args: Vec::new(),
            env: vec![("RUST_BACKTRACE".into(), "1".into())],
            ready_timeout: Duration::from_secs(30),
            bin: None,
        }
    }
}

impl AgentOptions {
    pub fn new() -> Self {
        Self::default()
    }
    /// Export to `rx` with `protocol` (sets `OTEL_EXPORTER_OTLP_ENDPOINT` and
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`; `--export` stays `auto` unless set).
    pub fn otlp(mut self, rx: &OtlpReceiver, protocol: Protocol) -> Self {
        self.env.extend(rx.agent_env(protocol));
        self
    }
    pub fn capture_bytes(mut self, n: u32) -> Self {
        self.capture_bytes = Some(n);
        self
    }
    pub fn request_timeout(mut self, d: &str) -> Self {
        self.request_timeout = Some(d.into());
        self
    }
    pub fn export(mut self, mode: &str) -> Self {
        self.export = Some(mode.into());
        self
    }
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = Some(level.into());
        self
    }
    pub fn config_yaml(mut self, yaml: &str) -> Self {
        self.config_yaml = Some(yaml.into());
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn ready_timeout(mut self, d: Duration) -> Self {
        self.ready_timeout = d;
        self
    }
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }
}

/// A running agent. On drop: SIGTERM, wait up to 5 s, then SIGKILL; on a
/// panicking thread, the tails of its stdout/stderr are printed and its temp
/// dir is kept.
pub struct AgentProcess {
    child: Child,
    pub pid: u32,
    pub metrics_addr: SocketAddr,
    dir: Option<tempfile::TempDir>,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    started: Instant,
    exit: Option<ExitStatus>,
}

impl AgentProcess {
    /// Starts the agent and waits for `/readyz` = 200. Panics (with the
    /// agent's stderr) if it exits first, times out, or the binary is missing.
    pub fn start(opts: AgentOptions) -> Self {
        match Self::try_start(opts) {
            Ok(a) => a,
            Err(e) => panic!("agent failed to start: {e}"),
        }
    }

    pub fn try_start(opts: AgentOptions) -> Result<Self, String> {
        let bin = opts.bin.clone().unwrap_or_else(agent_bin);
        if !bin.exists() {
            return Err(format!(
                "agent binary {} not found: build it first (`cargo build -p agent`) or set AGENT_BIN",
                bin.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("agent-tests-agent-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let stdout_path = dir.path().join("agent.stdout");
        let stderr_path = dir.path().join("agent.stderr");
        let metrics_addr = crate::free_addr();

        let mut cmd = Command::new(&bin);
        if let Some(yaml) = &opts.config_yaml {
            let p = dir.path().join("agent.yaml");
            std::fs::write(&p, yaml).map_err(|e| e.to_string())?;
            cmd.arg("--config").arg(p);
        }
        cmd.arg("--metrics-address").arg(metrics_addr.to_string());
        if let Some(n) = opts.capture_bytes {
            cmd.arg("--capture-bytes").arg(n.to_string());
        }
        if let Some(t) = &opts.request_timeout {
            cmd.arg("--request-timeout").arg(t);
        }
        if let Some(e) = &opts.export {
            cmd.arg("--export").arg(e);
        }
        if let Some(l) = &opts.log_level {
            cmd.arg("--log-level").arg(l);
        }
        cmd.args(&opts.args);
        for (k, _) in std::env::vars_os() {
            let k_str = k.to_string_lossy();
            // The agent reads OTEL_* and AGENT_* (AGENT_CONFIG, AGENT_EXPORT, ...).
            if k_str.starts_with("OTEL_") || k_str.starts_with("AGENT_") {
                cmd.env_remove(&k);
            }
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let stdout = std::fs::File::create(&stdout_path).map_err(|e| e.to_string())?;
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let pid = child.id();
        eprintln!(
            "agent pid {pid}: {:?}\n  metrics http://{metrics_addr}\n  stdout {}\n  stderr {}",
            cmd_line(&cmd),
            stdout_path.display(),
            stderr_path.display()
        );
        let mut agent = AgentProcess {
            child,
            pid,
            metrics_addr,
            dir: Some(dir),
            stdout_path,
            stderr_path,
            started: Instant::now(),
            exit: None,
        };
        agent.wait_ready(opts.ready_timeout)?;
        eprintln!("agent pid {pid} ready after {:?}", agent.started.elapsed());
        Ok(agent)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(st) = self.exit_status() {
                return Err(format!(
                    "agent exited before it was ready ({st}).\n--- stderr ({}) ---\n{}\n--- stdout ({}) ---\n{}",
                    self.stderr_path.display(),
                    crate::tail_file(&self.stderr_path, 60),
                    self.stdout_path.display(),
                    crate::tail_file(&self.stdout_path, 20)
                ));
            }
            match self.get("/readyz") {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("/readyz answered {}: {}", r.status, r.text().trim()),
                Err(e) => last = format!("/readyz: {e}"),
            }
            if Instant::now() >= deadline {
                let tail = self.logs_tail(60);
                return Err(format!(
                    "agent not ready within {timeout:?} (last: {last}).\n{tail}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` on the metrics address.
    pub fn get(&self, path: &str) -> std::io::Result<SimpleResponse> {
        http_get(self.metrics_addr, path, Duration::from_secs(5))
    }
    /// Status of `/readyz` (None when it does not answer).
    pub fn readyz(&self) -> Option<u16> {
        self.get("/readyz").ok().map(|r| r.status)
    }
    /// Status of `/healthz` (None when it does not answer).
    pub fn healthz(&self) -> Option<u16> {
        self.get("/healthz").ok().map(|r| r.status)
    }
    /// Body of `GET /metrics` (panics unless 200).
    pub fn metrics_text(&self) -> String {
        let r = self
            .get("/metrics")
            .unwrap_or_else(|e| panic!("GET /metrics: {e}\n{}", self.logs_tail(30)));
        assert_eq!(r.status, 200, "GET /metrics status; body:\n{}", r.text());
        r.text()
    }
    /// Sum of the counters whose name contains `substr` (see [`prom::names`]);
    /// `None` when no such series is exposed.
    pub fn counter(&self, substr: &str) -> Option<f64> {
        prom::sum(&self.metrics_text(), substr)
    }
    /// Like [`counter`](Self::counter) but 0 when absent.
    pub fn counter_or_zero(&self, substr: &str) -> f64 {
        self.counter(substr).unwrap_or(0.0)
    }

    /// Exit status if the agent has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }
    pub fn is_alive(&mut self) -> bool {
        self.exit_status().is_none()
    }
    /// Panics with the agent's logs if it has exited.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.exit_status() {
            panic!(
                "agent (pid {}) exited unexpectedly: {st}\n{}",
                self.pid,
                self.logs_tail(60)
            );
        }
    }
    /// Asserts alive and `/readyz` = 200.
    pub fn assert_ready(&mut self) {
        self.assert_alive();
        let r = self.readyz();
        assert_eq!(r, Some(200), "agent /readyz; logs:\n{}", self.logs_tail(30));
    }
    /// VmRSS in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        procs::rss_kib(self.pid)
    }

    /// Last `lines` lines of stderr and stdout.
    pub fn logs_tail(&self, lines: usize) -> String {
        format!(
            "--- agent stderr ({}) ---\n{}\n--- agent stdout ({}) ---\n{}",
            self.stderr_path.display(),
            crate::tail_file(&self.stderr_path, lines),
            self.stdout_path.display(),
            crate::tail_file(&self.stdout_path, lines)
        )
    }
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// SIGTERM, wait (SIGKILL after 5 s); returns how it exited.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = procs::terminate(&mut self.child, Duration::from_secs(5));
        }
        self.exit
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let st = self.stop();
        if std::thread::panicking() {
            eprintln!(
                "agent pid {} ended: {st:?}\n{}",
                self.pid,
                self.logs_tail(40)
            );
            if let Some(d) = self.dir.take() {
                eprintln!("agent logs kept in {}", d.keep().display());
            }
        }
    }
}

fn cmd_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
