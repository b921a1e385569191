//! gRPC peers: the tonic `grpc_echo` binary and its grpcio twin
//! (`src/grpc_echo.py`, run with the Python of the venv `cargo xtask setup`
//! creates), as servers and clients, one-shot or interactive.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::agent::AgentProcess;
use crate::otlp::{OtlpReceiver, ReceivedSpan, SpanKind};
use crate::semconv::spans_of;
use crate::servers::ServerProcess;
use crate::{SETTLE, SPAN_WAIT};

/// Where `cargo xtask setup` installs grpcio: `$GRPC_PYTHON`, else
/// `<workspace>/target/grpc-venv/bin/python`.
pub fn grpc_python() -> PathBuf {
    match std::env::var_os("GRPC_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => crate::workspace_dir().join("target/grpc-venv/bin/python"),
    }
}

/// Panics with how to get grpcio when the venv is missing.
pub fn require_grpcio() -> PathBuf {
    require_python_module("grpc")
}

/// The venv's Python, once it imports `module` (panics with how to get it
/// otherwise).
pub fn require_python_module(module: &str) -> PathBuf {
    let py = grpc_python();
    let ok = Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import {module}: run `cargo xtask setup` (or set GRPC_PYTHON)",
        py.display()
    );
    py
}

fn script(dir: &Path) -> PathBuf {
    let p = dir.join("grpc_echo.py");
    std::fs::write(&p, include_str!("grpc_echo.py")).expect("write grpc_echo.py");
    p
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// Which gRPC stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// tonic (Rust, h2): `grpc_echo`.
    Tonic,
    /// grpcio (Python on gRPC C core): `grpc_echo.py`.
    Grpcio,
}

/// Starts the tonic echo server with its `echo.Echo/Query` method backed by
/// a PostgreSQL connection (`conninfo`, made at start).
pub fn start_tonic_with_postgres(bin: &Path, conninfo: &str) -> ServerProcess {
    let dir = tempdir("agent-tests-grpc-server-");
    let mut cmd = Command::new(bin);
    cmd.args(["server", "--pg", conninfo]);
    cmd.env_remove("OTEL_SERVICE_NAME");
    ServerProcess::spawn_listening(cmd, "tonic grpc_echo server (PostgreSQL)", dir)
}

/// Starts an echo server of `stack` (`bin` is the `grpc_echo` binary).
pub fn start_server(stack: Stack, bin: &Path) -> ServerProcess {
    let dir = tempdir("agent-tests-grpc-server-");
    let mut cmd = match stack {
        Stack::Tonic => {
            let mut c = Command::new(bin);
            c.arg("server");
            c
        }
        Stack::Grpcio => {
            let mut c = Command::new(require_grpcio());
            c.arg("-u").arg(script(dir.path())).arg("server");
            c
        }
    };
    cmd.env_remove("OTEL_SERVICE_NAME");
    let what = match stack {
        Stack::Tonic => "tonic grpc_echo server",
        Stack::Grpcio => "grpcio grpc_echo.py server",
    };
    ServerProcess::spawn_listening(cmd, what, dir)
}

fn client_cmd(stack: Stack, bin: &Path, port: u16, dir: &Path) -> Command {
    let addr = format!("127.0.0.1:{port}");
    match stack {
        Stack::Tonic => {
            let mut c = Command::new(bin);
            c.args(["client", "--addr", &addr]);
            c
        }
        Stack::Grpcio => {
            let mut c = Command::new(require_grpcio());
            c.arg("-u").arg(script(dir)).arg("client").arg(addr);
            c
        }
    }
}

/// What a one-shot client run did.
#[derive(Debug)]
pub struct ClientResult {
    pub pid: u32,
    pub calls: u64,
    pub failures: u64,
}

/// Runs `plan` (steps separated by `,`) on one connection to `port`.
pub fn run_client(stack: Stack, bin: &Path, port: u16, plan: &str) -> ClientResult {
    let dir = tempdir("agent-tests-grpc-client-");
    let mut cmd = client_cmd(stack, bin, port, dir.path());
    cmd.args(plan.split_whitespace());
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {stack:?} client: {e}"));
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let done = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DONE "))
        .unwrap_or_else(|| {
            panic!(
                "{stack:?} client printed no DONE ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut it = done
        .split_whitespace()
        .map(|n| n.parse::<u64>().expect("count"));
    ClientResult {
        pid,
        calls: it.next().expect("calls"),
        failures: it.next().expect("failures"),
    }
}

/// A client keeping one connection open, running steps on request.
pub struct InteractiveClient {
    child: Child,
    pub pid: u32,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl InteractiveClient {
    /// Connects (waits for `CONNECTED`).
    pub fn start(stack: Stack, bin: &Path, port: u16) -> Self {
        let dir = tempdir("agent-tests-grpc-client-");
        let mut child = client_cmd(stack, bin, port, dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {stack:?} client: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.id();
        let mut c = Self {
            child,
            pid,
            stdin,
            lines,
            _dir: dir,
        };
        let first = c.next_line(Duration::from_secs(20));
        assert_eq!(first, "CONNECTED", "{stack:?} client did not connect");
        c
    }

    fn next_line(&mut self, timeout: Duration) -> String {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("gRPC client (pid {}) silent: {e}", self.pid))
    }

    /// Runs steps (separated by `,`); returns the totals so far (calls,
    /// failures).
    pub fn step(&mut self, steps: &str) -> (u64, u64) {
        let mut totals = (0, 0);
        for step in steps.split(',') {
            totals = self.one_step(step.trim());
        }
        totals
    }

    fn one_step(&mut self, step: &str) -> (u64, u64) {
        writeln!(self.stdin, "{step}").expect("write step");
        self.stdin.flush().expect("flush");
        let line = self.next_line(Duration::from_secs(60));
        let rest = line
            .strip_prefix("OK ")
            .unwrap_or_else(|| panic!("unexpected client output {line:?}"));
        let mut it = rest
            .split_whitespace()
            .map(|n| n.parse::<u64>().expect("count"));
        (it.next().expect("calls"), it.next().expect("failures"))
    }

    /// Closes the connection and waits for the client to exit.
    pub fn finish(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = crate::poll_until(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `n` SERVER spans of `server_pids` and `n` CLIENT spans of
/// `client_pids` arrived (at most [`SPAN_WAIT`]), watches [`SETTLE`] longer
/// for duplicates, and returns them (sorted by start) with a problem when
/// either count is not exactly `n` (naming the agent's loss counters).
pub fn exact_spans(
    rx: &OtlpReceiver,
    agent: &AgentProcess,
    server_pids: &[u32],
    client_pids: &[u32],
    n: usize,
) -> (Vec<ReceivedSpan>, Vec<ReceivedSpan>, Vec<String>) {
    let _ = rx.try_wait_for(
        |s: &[ReceivedSpan]| {
            spans_of(s, SpanKind::Server, server_pids).len() >= n
                && spans_of(s, SpanKind::Client, client_pids).len() >= n
        },
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    let all = rx.spans();
    let servers = spans_of(&all, SpanKind::Server, server_pids);
    let clients = spans_of(&all, SpanKind::Client, client_pids);
    let mut problems = Vec::new();
    if servers.len() != n || clients.len() != n {
        problems.push(format!(
            "{} server and {} client spans for {n} calls; agent counters: {}",
            servers.len(),
            clients.len(),
            crate::prom::interesting(&agent.metrics_text())
        ));
    }
    (servers, clients, problems)
}
