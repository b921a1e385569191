//! Harness for the agent's end-to-end tests.
//!
//! The tests in `tests/tests/*.rs` start the real agent binary (which loads the
//! real eBPF programs, so they need root), real HTTP peers (nginx, a Python
//! server, a Rust server and client built from this crate, curl) and an
//! in-test OTLP receiver, then check the spans that arrive.
//!
//! Everything here is blocking from the test's point of view: the receiver runs
//! its own tokio runtime on background threads, so tests are plain `#[test]`s.
//!
//! Modules:
//! - [`otlp`] — OTLP/gRPC + OTLP/HTTP receiver, flattened [`otlp::ReceivedSpan`]s.
//! - [`agent`] — `AgentProcess` (spawn, wait for /readyz, SIGTERM on drop)
//!   and [`agent::require_bpf`].
//! - [`prom`] — Prometheus text parsing and the agent's metric names (one place).
//! - [`servers`] — nginx, Python and Rust HTTP servers on free loopback ports.
//! - [`postgres`] — a private PostgreSQL server, psql, pgbench and the
//!   tokio-postgres client binary.
//! - [`client`] — curl, the Rust client binary, raw sockets, malformed inputs.
//! - [`grpc`] — gRPC echo servers and clients on tonic and grpcio.
//! - [`semconv`] — the span contract as reusable checks.
//! - [`traces`] — connected traces (parent chains) and RED histograms over OTLP.
//! - [`procs`] — /proc helpers (RSS, children, rlimits).
//! - [`node_exporter`] — the real node_exporter, Prometheus and promtool;
//!   expositions by family.

pub mod agent;
pub mod client;
pub mod grpc;
pub mod node_exporter;
pub mod otlp;
pub mod postgres;
pub mod procs;
pub mod prom;
pub mod semconv;
pub mod servers;
pub mod traces;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Paths of this package's own binaries. Must be expanded inside an
/// integration test of this package (that is where cargo sets
/// `CARGO_BIN_EXE_*`): `let bins = agent_tests::test_bins!();`.
#[macro_export]
macro_rules! test_bins {
    () => {
        $crate::Bins {
            rust_http_server: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_rust_http_server")),
            rust_http_client: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_rust_http_client")),
            grpc_echo: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_grpc_echo")),
        }
    };
}

/// See [`test_bins!`].
#[derive(Debug, Clone)]
pub struct Bins {
    pub rust_http_server: PathBuf,
    pub rust_http_client: PathBuf,
    pub grpc_echo: PathBuf,
}

/// The workspace root (parent of this crate's directory).
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent")
        .to_path_buf()
}

/// True when running under CI (`CI=true`): missing prerequisites fail instead of skip.
pub fn is_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// A port that was free a moment ago on 127.0.0.1 (bind :0, read, drop).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Now as Unix nanoseconds.
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wall-clock window of one test, for checking span timestamps.
#[derive(Debug, Clone, Copy)]
pub struct TestClock {
    pub start_unix_ns: u64,
    pub start: Instant,
}

impl TestClock {
    pub fn start() -> Self {
        Self {
            start_unix_ns: unix_now_ns(),
            start: Instant::now(),
        }
    }
    /// Elapsed wall time since the test started, in ns.
    pub fn elapsed_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// A loud skip line, easy to grep for in test output.
pub fn skip(reason: &str) {
    eprintln!("\n==================== SKIPPED: {reason} ====================\n");
}

/// Tail (last `lines` lines) of a text file, for failure reports.
pub fn tail_file(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            all[from..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// How long BPF tests wait for expected spans to arrive.
pub const SPAN_WAIT: Duration = Duration::from_secs(20);
/// How long BPF tests keep watching after the expected spans arrived, so that
/// duplicates would be seen ("exactly N").
pub const SETTLE: Duration = Duration::from_millis(1500);
