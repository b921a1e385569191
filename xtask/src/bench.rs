//! Benchmarks with and without the agent, interleaved in one run
//! (`cargo xtask bench metrics` is in `bench_metrics.rs`).
//!
//! `cargo xtask bench postgres`: see `bench_postgres.rs`.
//!
//! `cargo xtask bench http`: nginx answering a fixed small response, driven
//! by wrk at maximum rate on loopback. Each round runs "bare" and "agent"
//! back to back (the order alternates between rounds), the agent exporting
//! over OTLP/gRPC to a counting sink. Reported per round and as medians:
//! throughput and p99 ratios, agent CPU per 10k req/s, agent peak RSS,
//! events lost, and capture ratio (spans ÷ requests completed).

use std::{
    collections::HashMap,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;

use crate::run_cmd;

#[derive(Subcommand)]
pub enum Which {
    /// nginx + wrk, HTTP/1.1 keep-alive, fixed small response.
    Http {
        /// Interleaved rounds (each runs bare and with the agent).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Seconds of load per run.
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// wrk connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// wrk threads.
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// A second agent binary (an earlier build, say) run in every round
        /// too, so that two builds are compared in one interleaved run.
        #[arg(long)]
        baseline_agent: Option<PathBuf>,
        /// Where to write the markdown report.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// A private PostgreSQL + pgbench -S (select-only) at maximum rate.
    Postgres {
        /// Interleaved rounds (each runs bare and with the agent).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Seconds of load per run.
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// pgbench clients (connections).
        #[arg(long, default_value_t = 8)]
        clients: u32,
        /// pgbench threads.
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// pgbench query mode: simple, extended or prepared.
        #[arg(long, default_value = "simple")]
        mode: String,
        /// pgbench scale factor of the initialized tables.
        #[arg(long, default_value_t = 1)]
        scale: u32,
        /// Where to write the markdown report.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// The agent's /metrics against prometheus-node-exporter, same
    /// collectors, interleaved; then the agent's idle CPU at a 15 s scrape
    /// interval.
    Metrics {
        /// Interleaved rounds (each scrapes both).
        #[arg(long, default_value_t = 20)]
        rounds: u32,
        /// Scrapes per exporter per round.
        #[arg(long, default_value_t = 50)]
        scrapes: u32,
        /// Seconds of the idle measurement (0: skip).
        #[arg(long, default_value_t = 120)]
        idle_seconds: u32,
        /// Where to write the markdown report.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// tonic echo server + tonic load client, unary gRPC over HTTP/2
    /// cleartext, fixed concurrency at maximum rate.
    Grpc {
        /// Interleaved rounds (each runs bare and with the agent).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Seconds of load per run.
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: u32,
        /// HTTP/2 connections they share.
        #[arg(long, default_value_t = 2)]
        connections: u32,
        /// Where to write the markdown report.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Cost per syscall of the capture's hooks: no-op programs (tracepoints
    /// or raw tracepoints) and the agent on unparseable traffic, against
    /// bare, with `syscall_loop` (agent/examples).
    Hooks {
        /// Rounds (each runs every mode once).
        #[arg(long, default_value_t = 9)]
        rounds: u32,
        /// Write+read pairs (and getppid calls) per run.
        #[arg(long, default_value_t = 200_000)]
        loops: u32,
        /// Where to write the markdown report.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Cost per context switch of the run-queue delay programs
    /// (sched_switch/sched_wakeup), with `perf bench sched pipe`.
    Sched {
        /// Rounds (each runs bare, agent, agent with the programs).
        #[arg(long, default_value_t = 9)]
        rounds: u32,
        /// Ping-pong operations per run.
        #[arg(long, default_value_t = 200_000)]
        loops: u32,
        /// Where to write the markdown report.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

pub fn run(root: &Path, agent: &Path, which: Which) -> Result<()> {
    match which {
        Which::Http {
            rounds,
            duration,
            connections,
            threads,
            baseline_agent,
            output,
        } => {
            let sink = build_sink(root)?;
            let load = HttpLoad {
                rounds,
                duration,
                connections,
                threads,
            };
            let report = http(agent, baseline_agent.as_deref(), &sink, &load)?;
            println!("{report}");
            let out = output.unwrap_or_else(|| root.join("target/bench-http.md"));
            fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("report written to {}", out.display());
            Ok(())
        }
        Which::Postgres {
            rounds,
            duration,
            clients,
            threads,
            mode,
            scale,
            output,
        } => {
            let sink = build_sink(root)?;
            let settings = crate::bench_postgres::Settings {
                rounds,
                duration,
                clients,
                threads,
                mode,
                scale,
            };
            let report = crate::bench_postgres::run(agent, &sink, &settings)?;
            println!("{report}");
            let out = output.unwrap_or_else(|| root.join("target/bench-postgres.md"));
            fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("report written to {}", out.display());
            Ok(())
        }
        Which::Metrics {
            rounds,
            scrapes,
            idle_seconds,
            output,
        } => {
            let report = crate::bench_metrics::run(agent, rounds, scrapes, idle_seconds)?;
            println!("{report}");
            let out = output.unwrap_or_else(|| root.join("target/bench-metrics.md"));
            fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("report written to {}", out.display());
            Ok(())
        }
        Which::Grpc {
            rounds,
            duration,
            concurrency,
            connections,
            output,
        } => {
            let sink = build_sink(root)?;
            let load = crate::bench_grpc::GrpcLoad {
                echo: build_test_bin(root, "grpc_echo")?,
                concurrency,
                connections,
                duration,
            };
            let report = crate::bench_grpc::run(agent, &sink, &load, rounds)?;
            println!("{report}");
            let out = output.unwrap_or_else(|| root.join("target/bench-grpc.md"));
            fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("report written to {}", out.display());
            Ok(())
        }
        Which::Hooks {
            rounds,
            loops,
            output,
        } => {
            let report = crate::bench_hooks::run(root, agent, rounds, loops)?;
            println!("{report}");
            let out = output.unwrap_or_else(|| root.join("target/bench-hooks.md"));
            fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("report written to {}", out.display());
            Ok(())
        }
        Which::Sched {
            rounds,
            loops,
            output,
        } => {
            let report = crate::bench_sched::run(agent, rounds, loops)?;
            println!("{report}");
            let out = output.unwrap_or_else(|| root.join("target/bench-sched.md"));
            fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("report written to {}", out.display());
            Ok(())
        }
    }
}

fn build_sink(root: &Path) -> Result<PathBuf> {
    build_test_bin(root, "otlp_sink")
}

/// A release build of one of the agent-tests binaries.
fn build_test_bin(root: &Path, name: &str) -> Result<PathBuf> {
    run_cmd(crate::cargo().current_dir(root).args([
        "build",
        "--release",
        "--package",
        "agent-tests",
        "--bin",
        name,
    ]))?;
    Ok(root.join("target/release").join(name))
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed (SIGINT, then SIGKILL) on drop.
pub(crate) struct Proc(pub(crate) Child);

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    pub(crate) fn stop(&mut self) {
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

struct Nginx {
    /// Kept to stop nginx when dropped.
    _proc: Proc,
    port: u16,
    _dir: PathBuf,
}

fn start_nginx(dir: &Path) -> Result<Nginx> {
    let port = free_port()?;
    fs::create_dir_all(dir.join("logs"))?;
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n\
           client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
           uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
           server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"hello\\n\"; }}\n\
             location = /nginx_status {{ stub_status; }} }}\n}}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, conf)?;
    let child = Command::new("nginx")
        .args(["-c", path.to_str().unwrap_or_default(), "-p"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    let proc = Proc(child);
    wait_port(port)?;
    Ok(Nginx {
        _proc: proc,
        port,
        _dir: dir.to_path_buf(),
    })
}

/// nginx's own count of requests served (stub_status), which includes the
/// status request itself.
fn nginx_requests(port: u16) -> Result<u64> {
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/nginx_status")])
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "server accepts handled requests\n 1 1 1"
    text.lines()
        .skip_while(|l| !l.starts_with("server accepts"))
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .with_context(|| format!("cannot parse nginx stub_status:\n{text}"))
}

pub(crate) fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port}")
}

struct WrkResult {
    rps: f64,
    p99_ms: f64,
}

fn parse_latency_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

fn run_wrk(port: u16, threads: u32, connections: u32, duration: u32) -> Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{duration}s"),
            "--latency",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rps = None;
    let mut p99 = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("99%") {
            p99 = parse_latency_ms(rest);
        } else if let Some(rest) = t.strip_prefix("Requests/sec:") {
            rps = rest.trim().parse().ok();
        }
    }
    match (rps, p99) {
        (Some(rps), Some(p99_ms)) => Ok(WrkResult { rps, p99_ms }),
        _ => bail!("cannot parse wrk output:\n{text}"),
    }
}

/// utime + stime of a process, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the comm.
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

pub(crate) fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Counts of spans per (service, kind) written by the sink.
pub(crate) fn read_counts(file: &Path) -> HashMap<(String, String), u64> {
    let mut map = HashMap::new();
    if let Ok(text) = fs::read_to_string(file) {
        for line in text.lines() {
            let p: Vec<&str> = line.split_whitespace().collect();
            if let [service, kind, n] = p.as_slice()
                && let Ok(n) = n.parse()
            {
                map.insert(((*service).to_string(), (*kind).to_string()), n);
            }
        }
    }
    map
}

pub(crate) fn metric_sum(metrics: &str, name: &str, label: Option<&str>) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(name))
        .filter(|l| label.is_none_or(|lb| l.contains(lb)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What the agent did during one loaded run.
pub(crate) struct AgentStats {
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
    /// Losses, truncated payloads excluded (counted in `truncated`).
    pub lost: f64,
    pub truncated: f64,
    pub dropped: f64,
    /// Spans per (service, kind) the sink counted.
    pub counts: HashMap<(String, String), u64>,
}

impl AgentStats {
    pub fn spans(&self, service: &str, kind: &str) -> u64 {
        self.counts
            .get(&(service.to_string(), kind.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

/// Runs `load` with the agent exporting over OTLP/gRPC to a counting sink,
/// then waits for the spans to settle.
pub(crate) fn with_agent<T>(
    agent: &Path,
    sink_bin: &Path,
    dir: &Path,
    load: impl FnOnce() -> Result<T>,
) -> Result<(T, AgentStats)> {
    let sink_port = free_port()?;
    let counts = dir.join("counts.txt");
    let _ = fs::remove_file(&counts);
    let _sink = Proc(
        Command::new(sink_bin)
            .arg(format!("127.0.0.1:{sink_port}"))
            .arg(&counts)
            .stdout(Stdio::null())
            .spawn()
            .context("starting the OTLP sink")?,
    );
    wait_port(sink_port)?;
    let metrics_port = free_port()?;
    let stderr_path = dir.join("agent.stderr");
    let mut agent_proc = Proc(
        Command::new(agent)
            .args([
                "--export",
                "otlp",
                "--otlp-protocol",
                "grpc",
                "--otlp-endpoint",
                &format!("http://127.0.0.1:{sink_port}"),
                "--metrics-address",
                &format!("127.0.0.1:{metrics_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr_path)?)
            .spawn()
            .context("starting the agent")?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if fs::read_to_string(&stderr_path)?.contains("agent ready") {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "agent not ready after 30 s:\n{}",
                fs::read_to_string(&stderr_path)?
            );
        }
        sleep(Duration::from_millis(100));
    }
    let pid = agent_proc.pid();
    let cpu0 = cpu_seconds(pid)?;
    let result = load()?;
    let cpu1 = cpu_seconds(pid)?;
    // Let the last spans be exported: wait until the counts stop moving.
    let mut last = 0;
    let mut stable_since = Instant::now();
    let settle_deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < settle_deadline {
        let total: u64 = read_counts(&counts).values().sum();
        if total != last {
            last = total;
            stable_since = Instant::now();
        } else if stable_since.elapsed() > Duration::from_secs(2) {
            break;
        }
        sleep(Duration::from_millis(200));
    }
    let metrics = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{metrics_port}/metrics")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let peak_rss_kib = status_kib(pid, "VmHWM:");
    agent_proc.stop();
    let truncated = metric_sum(
        &metrics,
        "agent_events_lost_total",
        Some("payload_truncated"),
    );
    Ok((
        result,
        AgentStats {
            cpu_s: cpu1 - cpu0,
            peak_rss_kib,
            lost: metric_sum(&metrics, "agent_events_lost_total", None) - truncated,
            truncated,
            // `+ 0.0`: an empty f64 sum is -0.0, printed "-0".
            dropped: metric_sum(&metrics, "agent_spans_dropped_total", None) + 0.0,
            counts: read_counts(&counts),
        },
    ))
}

struct AgentRun {
    wrk: WrkResult,
    /// Requests nginx served during the run (stub_status), the reference
    /// of the capture ratio.
    served: u64,
    cpu_s: f64,
    peak_rss_kib: u64,
    lost: f64,
    server_spans: u64,
    client_spans: u64,
    dropped: f64,
}

fn run_with_agent(
    agent: &Path,
    sink_bin: &Path,
    dir: &Path,
    nginx: &Nginx,
    threads: u32,
    connections: u32,
    duration: u32,
) -> Result<AgentRun> {
    let ((wrk, served), stats) = with_agent(agent, sink_bin, dir, || {
        let served0 = nginx_requests(nginx.port)?;
        let wrk = run_wrk(nginx.port, threads, connections, duration)?;
        // Requests nginx served in between: both status requests excluded.
        let served = nginx_requests(nginx.port)?.saturating_sub(served0 + 1);
        Ok((wrk, served))
    })?;
    Ok(AgentRun {
        wrk,
        served,
        cpu_s: stats.cpu_s,
        peak_rss_kib: stats.peak_rss_kib,
        // Truncated payloads are counted apart: the bench's own /metrics
        // scrape is the only truncated traffic here.
        lost: stats.lost,
        // The two status requests are nginx server spans too.
        server_spans: stats.spans("nginx", "server").saturating_sub(2),
        client_spans: stats.spans("wrk", "client"),
        dropped: stats.dropped,
    })
}

/// Waits until the file at `log` contains `needle` (a process saying it
/// is ready).
pub(crate) fn wait_for_line(log: &Path, needle: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !fs::read_to_string(log)?.contains(needle) {
        if Instant::now() > deadline {
            bail!(
                "no {needle:?} after {timeout:?}:\n{}",
                fs::read_to_string(log)?
            );
        }
        sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct HttpLoad {
    rounds: u32,
    duration: u32,
    connections: u32,
    threads: u32,
}

fn http(agent: &Path, baseline: Option<&Path>, sink: &Path, load: &HttpLoad) -> Result<String> {
    let &HttpLoad {
        rounds,
        duration,
        connections,
        threads,
    } = load;
    let dir = std::env::temp_dir().join(format!("agent-bench-http-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let nginx = start_nginx(&dir.join("nginx"))?;
    // Warm up nginx and the page cache.
    run_wrk(nginx.port, threads, connections, 2)?;

    let mut rows = Vec::new();
    let mut tput = Vec::new();
    let mut base_tput = Vec::new();
    let mut base_cpu = Vec::new();
    let mut base_capture = Vec::new();
    let mut p99 = Vec::new();
    let mut cpu_per_10k = Vec::new();
    let mut capture = Vec::new();
    let mut client_capture = Vec::new();
    let mut rss_max = 0u64;
    let mut lost_total = 0.0;
    let mut dropped_total = 0.0;
    // The runs of a round, in an order that rotates between rounds.
    let mut kinds = vec!["bare", "agent"];
    if baseline.is_some() {
        kinds.push("baseline");
    }
    for round in 0..rounds {
        let n = kinds.len();
        let order: Vec<&str> = (0..n).map(|i| kinds[(i + round as usize) % n]).collect();
        let (mut bare, mut with, mut base) = (None, None, None);
        for kind in &order {
            match *kind {
                "bare" => bare = Some(run_wrk(nginx.port, threads, connections, duration)?),
                "agent" => {
                    with = Some(run_with_agent(
                        agent,
                        sink,
                        &dir,
                        &nginx,
                        threads,
                        connections,
                        duration,
                    )?);
                }
                _ => {
                    if let Some(b) = baseline {
                        base = Some(run_with_agent(
                            b,
                            sink,
                            &dir,
                            &nginx,
                            threads,
                            connections,
                            duration,
                        )?);
                    }
                }
            }
        }
        let (Some(bare), Some(with)) = (bare, with) else {
            bail!("a round without its runs");
        };
        let ratio = with.wrk.rps / bare.rps;
        let p99_ratio = with.wrk.p99_ms / bare.p99_ms;
        // Share of one core per 10k req/s.
        let core_share = with.cpu_s / f64::from(duration);
        let per_10k = core_share / (with.wrk.rps / 10_000.0) * 100.0;
        let cap = with.server_spans as f64 / with.served as f64;
        let ccap = with.client_spans as f64 / with.served as f64;
        let base_cell = match &base {
            Some(b) => {
                let r = b.wrk.rps / bare.rps;
                base_tput.push(r);
                let core_share = b.cpu_s / f64::from(duration);
                let per_10k = core_share / (b.wrk.rps / 10_000.0) * 100.0;
                base_cpu.push(per_10k);
                let cap = b.server_spans as f64 / b.served as f64;
                base_capture.push(cap);
                format!(
                    " {:.0} | {r:.3} | {per_10k:.2} | {:.1} | {cap:.4} |",
                    b.wrk.rps,
                    b.peak_rss_kib as f64 / 1024.0
                )
            }
            None => String::new(),
        };
        rows.push(format!(
            "| {} | {} | {:.0} | {:.0} | {:.3} |{base_cell} {:.2} | {:.2} | {:.3} | {:.2} | {:.1} | {} | {} | {:.4} | {:.4} |",
            round + 1,
            order.join(", "),
            bare.rps,
            with.wrk.rps,
            ratio,
            bare.p99_ms,
            with.wrk.p99_ms,
            p99_ratio,
            per_10k,
            with.peak_rss_kib as f64 / 1024.0,
            with.lost,
            with.dropped,
            cap,
            ccap,
        ));
        eprintln!("{}", rows.last().expect("pushed"));
        tput.push(ratio);
        p99.push(p99_ratio);
        cpu_per_10k.push(per_10k);
        capture.push(cap);
        client_capture.push(ccap);
        rss_max = rss_max.max(with.peak_rss_kib);
        lost_total += with.lost;
        dropped_total += with.dropped;
    }
    drop(nginx);
    let _ = fs::remove_dir_all(&dir);
    let mut report = String::new();
    report.push_str(&format!(
        "### HTTP: nginx `return 200`, wrk -t{threads} -c{connections} -d{duration}s, {rounds} interleaved rounds\n\n"
    ));
    if let Some(b) = baseline {
        report.push_str(&format!(
            "The baseline is `{}`, run in every round with the same load.\n\n",
            b.display()
        ));
    }
    let (base_head, base_rule) = if baseline.is_some() {
        (
            " baseline req/s | baseline ratio | baseline CPU % core per 10k req/s | baseline peak RSS MiB | baseline capture (server) |",
            "---|---|---|---|---|",
        )
    } else {
        ("", "")
    };
    report.push_str(&format!(
        "| round | order | bare req/s | agent req/s | ratio |{base_head} bare p99 ms | agent p99 ms | p99 ratio \
         | agent CPU % core per 10k req/s | agent peak RSS MiB | events lost (not counting truncations) | spans dropped \
         | capture (nginx server spans ÷ requests nginx served) | capture (wrk client spans ÷ requests nginx served) |\n",
    ));
    report.push_str(&format!(
        "|---|---|---|---|---|{base_rule}---|---|---|---|---|---|---|---|---|\n"
    ));
    for r in &rows {
        report.push_str(r);
        report.push('\n');
    }
    report.push_str(&format!(
        "\n**Medians**: throughput ratio {:.3}, p99 ratio {:.3}, agent CPU {:.2} % of a core per 10k req/s, \
         capture ratio {:.4} (server) / {:.4} (client); peak RSS {:.1} MiB; events lost {}; spans dropped {}.\n",
        median(tput.clone()),
        median(p99),
        median(cpu_per_10k),
        median(capture),
        median(client_capture),
        rss_max as f64 / 1024.0,
        lost_total,
        dropped_total,
    ));
    if !base_tput.is_empty() {
        let (a, b) = (median(tput), median(base_tput));
        report.push_str(&format!(
            "\n**Against the baseline**: median throughput ratio {a:.3} (agent) vs {b:.3} (baseline): {:+.1} %; \
             baseline CPU {:.2} % of a core per 10k req/s, capture {:.4} (server).\n",
            (a / b - 1.0) * 100.0,
            median(base_cpu),
            median(base_capture),
        ));
    }
    Ok(report)
}
