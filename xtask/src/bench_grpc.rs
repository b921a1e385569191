//! `cargo xtask bench grpc`: the tonic `grpc_echo server` under
//! `grpc_echo load` (unary calls at maximum rate, fixed concurrency, a few
//! HTTP/2 connections) on loopback, bare and with the agent, interleaved.
//! Capture ratio = spans the sink counted (server, client) ÷ calls the load
//! client completed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::bench::{Proc, median, with_agent};

/// The gRPC load: `grpc_echo load` against a `grpc_echo server`.
#[derive(Clone)]
pub struct GrpcLoad {
    pub echo: PathBuf,
    pub concurrency: u32,
    pub connections: u32,
    pub duration: u32,
}

struct GrpcResult {
    calls: u64,
    errors: u64,
    rate: f64,
}

impl GrpcLoad {
    fn run(&self, port: u16) -> Result<GrpcResult> {
        let out = Command::new(&self.echo)
            .args([
                "load",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--concurrency",
                &self.concurrency.to_string(),
                "--connections",
                &self.connections.to_string(),
                "--seconds",
                &self.duration.to_string(),
            ])
            .output()
            .context("running grpc_echo load")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("LOAD "))
            .with_context(|| format!("no LOAD line in:\n{text}"))?;
        let v: Vec<f64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [calls, errors, secs] = v[..] else {
            bail!("cannot parse {line:?}");
        };
        Ok(GrpcResult {
            calls: calls as u64,
            errors: errors as u64,
            rate: calls / secs,
        })
    }
}

/// Runs the interleaved rounds; returns the markdown report.
pub fn run(agent: &Path, sink: &Path, load: &GrpcLoad, rounds: u32) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("agent-bench-grpc-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let mut server = Command::new(&load.echo)
        .arg("server")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting grpc_echo server")?;
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().context("server stdout")?),
        &mut first,
    )?;
    let _server = Proc(server);
    let port: u16 = first
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("grpc_echo server said {first:?}"))?;
    // Warm up.
    GrpcLoad {
        duration: 2,
        ..load.clone()
    }
    .run(port)?;

    let mut rows = Vec::new();
    let (mut tput, mut capture, mut client_capture, mut cpu) = (vec![], vec![], vec![], vec![]);
    let (mut rss_max, mut lost_total, mut dropped_total) = (0u64, 0.0, 0.0);
    for round in 0..rounds {
        let agent_first = round % 2 == 1;
        let measured = || with_agent(agent, sink, &dir, || load.run(port));
        let (bare, (with, stats)) = if agent_first {
            let w = measured()?;
            (load.run(port)?, w)
        } else {
            let b = load.run(port)?;
            (b, measured()?)
        };
        let ratio = with.rate / bare.rate;
        let per_10k = stats.cpu_s / f64::from(load.duration) / (with.rate / 10_000.0) * 100.0;
        let cap = stats.spans("grpc_echo", "server") as f64 / with.calls as f64;
        let ccap = stats.spans("grpc_echo", "client") as f64 / with.calls as f64;
        rows.push(format!(
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.2} | {:.1} | {} | {} | {} | {} | {:.4} | {:.4} |",
            round + 1,
            if agent_first {
                "agent, bare"
            } else {
                "bare, agent"
            },
            bare.rate,
            with.rate,
            ratio,
            per_10k,
            stats.peak_rss_kib as f64 / 1024.0,
            stats.lost,
            stats.truncated,
            stats.dropped,
            bare.errors + with.errors,
            cap,
            ccap,
        ));
        eprintln!("{}", rows.last().expect("pushed"));
        tput.push(ratio);
        capture.push(cap);
        client_capture.push(ccap);
        cpu.push(per_10k);
        rss_max = rss_max.max(stats.peak_rss_kib);
        lost_total += stats.lost;
        dropped_total += stats.dropped;
    }
    let _ = fs::remove_dir_all(&dir);
    let mut report = format!(
        "### gRPC: tonic unary echo, `grpc_echo load` with {} calls in flight on {} HTTP/2 connection(s), {}s per run, {rounds} interleaved rounds\n\n",
        load.concurrency, load.connections, load.duration
    );
    report.push_str(
        "| round | order | bare calls/s | agent calls/s | ratio | agent CPU % core per 10k calls/s \
         | agent peak RSS MiB | events lost | payloads truncated | spans dropped | call errors \
         | capture (server spans ÷ calls) | capture (client spans ÷ calls) |\n",
    );
    report.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &rows {
        report.push_str(r);
        report.push('\n');
    }
    report.push_str(&format!(
        "\n**Medians**: throughput ratio {:.3}, capture ratio {:.4} (server) / {:.4} (client), \
         agent CPU {:.2} % of a core per 10k calls/s; peak RSS {:.1} MiB; events lost {}; spans dropped {}.\n",
        median(tput),
        median(capture),
        median(client_capture),
        median(cpu),
        rss_max as f64 / 1024.0,
        lost_total,
        dropped_total,
    ));
    Ok(report)
}
