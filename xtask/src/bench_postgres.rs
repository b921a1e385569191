//! `cargo xtask bench postgres`: a private PostgreSQL (initdb as the
//! `postgres` user, loopback, no fsync) driven by `pgbench -S` (select-only,
//! one statement per transaction) at maximum rate, with and without the
//! agent, interleaved (the order alternates between rounds). The agent
//! exports over OTLP/gRPC to the counting sink. Reported per round and as
//! medians: throughput ratio, agent CPU per 10k statements/s, peak RSS,
//! events lost, spans dropped, and capture ratios (pgbench CLIENT spans and
//! postgres SERVER spans ÷ transactions).

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::bench::{
    Proc, cpu_seconds, free_port, median, metric_sum, read_counts, status_kib, wait_port,
};

/// Settings of one benchmark.
pub struct Settings {
    pub rounds: u32,
    pub duration: u32,
    pub clients: u32,
    pub threads: u32,
    pub mode: String,
    pub scale: u32,
}

struct Server {
    _proc: Proc,
    port: u16,
    bin: PathBuf,
}

fn pg_bin() -> Result<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL not installed (cargo xtask setup installs it)")?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .map(|(_, p)| p)
        .context("no /usr/lib/postgresql/*/bin/postgres")
}

fn postgres_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        if !out.status.success() {
            bail!("no `postgres` user");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

fn start_server(dir: &Path) -> Result<Server> {
    let bin = pg_bin()?;
    let (uid, gid) = postgres_ids()?;
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777))?;
    let data = dir.join("data");
    let st = Command::new(bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::null())
        .status()
        .context("initdb")?;
    if !st.success() {
        bail!("initdb failed");
    }
    let port = free_port()?;
    let child = Command::new(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "synchronous_commit=off", "-c", "shared_buffers=128MB"])
        .args(["-c", "max_connections=100", "-c", "ssl=off"])
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("server.log"))?)
        .spawn()
        .context("starting postgres")?;
    let proc = Proc(child);
    wait_port(port)?;
    // Accepting TCP is not yet accepting queries: wait for pg_isready.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
        .status()
        .is_ok_and(|s| s.success())
    {
        if Instant::now() > deadline {
            bail!("postgres not ready");
        }
        sleep(Duration::from_millis(100));
    }
    Ok(Server {
        _proc: proc,
        port,
        bin,
    })
}

struct Pgbench {
    transactions: u64,
    tps: f64,
    latency_ms: f64,
}

fn pgbench(server: &Server, args: &[&str]) -> Result<String> {
    let out = Command::new(server.bin.join("pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(args)
        .arg("postgres")
        .output()
        .context("running pgbench")?;
    if !out.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_pgbench(server: &Server, s: &Settings) -> Result<Pgbench> {
    let text = pgbench(
        server,
        &[
            "-n",
            "-S",
            "-M",
            &s.mode,
            "-c",
            &s.clients.to_string(),
            "-j",
            &s.threads.to_string(),
            "-T",
            &s.duration.to_string(),
        ],
    )?;
    let mut transactions = None;
    let mut tps = None;
    let mut latency = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("number of transactions actually processed:") {
            transactions = rest.split('/').next().and_then(|n| n.trim().parse().ok());
        } else if let Some(rest) = t.strip_prefix("tps = ") {
            tps = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(rest) = t.strip_prefix("latency average = ") {
            latency = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    match (transactions, tps, latency) {
        (Some(transactions), Some(tps), Some(latency_ms)) => Ok(Pgbench {
            transactions,
            tps,
            latency_ms,
        }),
        _ => bail!("cannot parse pgbench output:\n{text}"),
    }
}

struct AgentRun {
    bench: Pgbench,
    cpu_s: f64,
    peak_rss_kib: u64,
    lost: f64,
    dropped: f64,
    client_spans: u64,
    server_spans: u64,
}

fn run_with_agent(
    agent: &Path,
    sink_bin: &Path,
    dir: &Path,
    server: &Server,
    s: &Settings,
) -> Result<AgentRun> {
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
            ])
            .arg(format!("http://127.0.0.1:{sink_port}"))
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr_path)?)
            .spawn()
            .context("starting the agent")?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fs::read_to_string(&stderr_path)?.contains("agent ready") {
        if Instant::now() > deadline {
            bail!("agent not ready:\n{}", fs::read_to_string(&stderr_path)?);
        }
        sleep(Duration::from_millis(100));
    }
    let pid = agent_proc.pid();
    let cpu0 = cpu_seconds(pid)?;
    let bench = run_pgbench(server, s)?;
    let cpu1 = cpu_seconds(pid)?;
    let mut last = 0;
    let mut stable_since = Instant::now();
    let settle = Instant::now() + Duration::from_secs(30);
    while Instant::now() < settle {
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
    let c = read_counts(&counts);
    let get = |svc: &str, kind: &str| {
        c.get(&(svc.to_string(), kind.to_string()))
            .copied()
            .unwrap_or(0)
    };
    Ok(AgentRun {
        bench,
        cpu_s: cpu1 - cpu0,
        peak_rss_kib,
        lost: metric_sum(&metrics, "agent_events_lost_total", None),
        // `+ 0.0`: an empty f64 sum is -0.0, printed "-0".
        dropped: metric_sum(&metrics, "agent_spans_dropped_total", None) + 0.0,
        client_spans: get("pgbench", "client"),
        server_spans: get("postgres", "server"),
    })
}

/// Runs the benchmark; returns the markdown report.
pub fn run(agent: &Path, sink: &Path, s: &Settings) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("agent-bench-pg-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
    let server = start_server(&dir.join("pg"))?;
    pgbench(&server, &["-i", "-q", "-s", &s.scale.to_string()])?;
    // Warm up the server and the page cache.
    run_pgbench(
        &server,
        &Settings {
            duration: 2,
            mode: s.mode.clone(),
            ..*s
        },
    )?;

    let mut rows = Vec::new();
    let (mut tput, mut lat, mut cpu, mut ccap, mut scap) = (vec![], vec![], vec![], vec![], vec![]);
    let mut rss_max = 0u64;
    let (mut lost_total, mut dropped_total) = (0.0, 0.0);
    for round in 0..s.rounds {
        let agent_first = round % 2 == 1;
        let (bare, with) = if agent_first {
            let w = run_with_agent(agent, sink, &dir, &server, s)?;
            (run_pgbench(&server, s)?, w)
        } else {
            let b = run_pgbench(&server, s)?;
            (b, run_with_agent(agent, sink, &dir, &server, s)?)
        };
        let ratio = with.bench.tps / bare.tps;
        let lat_ratio = with.bench.latency_ms / bare.latency_ms;
        let core_share = with.cpu_s / f64::from(s.duration);
        let per_10k = core_share / (with.bench.tps / 10_000.0) * 100.0;
        let tx = with.bench.transactions as f64;
        let c = with.client_spans as f64 / tx;
        let sv = with.server_spans as f64 / tx;
        rows.push(format!(
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.1} | {} | {} | {:.4} | {:.4} |",
            round + 1,
            if agent_first { "agent, bare" } else { "bare, agent" },
            bare.tps,
            with.bench.tps,
            ratio,
            bare.latency_ms,
            with.bench.latency_ms,
            lat_ratio,
            per_10k,
            with.peak_rss_kib as f64 / 1024.0,
            with.lost,
            with.dropped,
            c,
            sv,
        ));
        eprintln!("{}", rows.last().expect("pushed"));
        tput.push(ratio);
        lat.push(lat_ratio);
        cpu.push(per_10k);
        ccap.push(c);
        scap.push(sv);
        rss_max = rss_max.max(with.peak_rss_kib);
        lost_total += with.lost;
        dropped_total += with.dropped;
    }
    drop(server);
    let _ = fs::remove_dir_all(&dir);
    let mut r = format!(
        "### PostgreSQL: pgbench -S -M {} -c{} -j{} -T{}s (scale {}), {} interleaved rounds\n\n",
        s.mode, s.clients, s.threads, s.duration, s.scale, s.rounds
    );
    r.push_str(
        "| round | order | bare tps | agent tps | ratio | bare latency ms | agent latency ms | latency ratio \
         | agent CPU % core per 10k stmt/s | agent peak RSS MiB | events lost | spans dropped \
         | capture (pgbench client spans ÷ tx) | capture (postgres server spans ÷ tx) |\n",
    );
    r.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in &rows {
        r.push_str(row);
        r.push('\n');
    }
    r.push_str(&format!(
        "\n**Medians**: throughput ratio {:.3}, latency ratio {:.3}, agent CPU {:.2} % of a core per 10k statements/s, \
         capture ratio {:.4} (client) / {:.4} (server); peak RSS {:.1} MiB; events lost {}; spans dropped {}.\n",
        median(tput),
        median(lat),
        median(cpu),
        median(ccap),
        median(scap),
        rss_max as f64 / 1024.0,
        lost_total,
        dropped_total,
    ));
    Ok(r)
}
