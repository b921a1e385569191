//! `cargo xtask bench sched`: what the run-queue delay programs
//! (`sched_switch`, `sched_wakeup`, `sched_wakeup_new`) cost on every
//! context switch. `perf bench sched pipe` (two tasks ping-ponging over
//! pipes: nothing but wake-ups and switches) runs bare, under the agent,
//! and under the agent with `node.runqueue_latency: true`, the order
//! rotating between rounds; the difference between the last two, divided
//! by the context switches per operation (from `/proc/stat`), is the cost
//! per switch.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::bench::{Proc, median, wait_for_line};

fn ctxt() -> Result<u64> {
    let stat = fs::read_to_string("/proc/stat")?;
    stat.lines()
        .find_map(|l| l.strip_prefix("ctxt "))
        .and_then(|v| v.trim().parse().ok())
        .context("ctxt in /proc/stat")
}

/// (µs per operation, context switches per operation).
fn perf_pipe(loops: u32) -> Result<(f64, f64)> {
    let c0 = ctxt()?;
    let out = Command::new("perf")
        .args(["bench", "sched", "pipe", "-l", &loops.to_string()])
        .output()
        .context("running perf bench sched pipe (Debian package linux-perf)")?;
    let c1 = ctxt()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let usecs = text
        .lines()
        .find_map(|l| l.trim().strip_suffix("usecs/op"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("cannot parse perf output:\n{text}"))?;
    Ok((usecs, (c1 - c0) as f64 / f64::from(loops)))
}

fn start_agent(agent: &Path, dir: &Path, runq: bool) -> Result<Proc> {
    let config = dir.join(if runq { "runq.yaml" } else { "plain.yaml" });
    fs::write(&config, format!("node:\n  runqueue_latency: {runq}\n"))?;
    let log = dir.join("agent.stderr");
    let p = Proc(
        Command::new(agent)
            .args(["--export", "none", "--metrics-address", "off", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .context("starting the agent")?,
    );
    wait_for_line(&log, "agent ready", Duration::from_secs(60))?;
    Ok(p)
}

pub fn run(agent: &Path, rounds: u32, loops: u32) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("agent-bench-sched-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    perf_pipe(loops / 10)?;
    let mut bare = Vec::new();
    let mut plain = Vec::new();
    let mut runq = Vec::new();
    let mut per_op_switches = Vec::new();
    let mut rows = Vec::new();
    for round in 0..rounds {
        let mut r = [0.0; 3];
        for step in 0..3 {
            let which = (round as usize + step) % 3;
            let (us, sw) = match which {
                0 => perf_pipe(loops)?,
                w => {
                    let _agent = start_agent(agent, &dir, w == 2)?;
                    perf_pipe(loops)?
                }
            };
            r[which] = us;
            per_op_switches.push(sw);
        }
        bare.push(r[0]);
        plain.push(r[1]);
        runq.push(r[2]);
        rows.push(format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.0} |",
            round + 1,
            r[0],
            r[1],
            r[2],
            (r[2] - r[1]) * 1e3
        ));
        eprintln!("{}", rows.last().expect("pushed"));
    }
    let _ = fs::remove_dir_all(&dir);
    let sw = median(per_op_switches);
    let (b, p, q) = (median(bare), median(plain), median(runq));
    let per_switch_ns = (q - p) * 1e3 / sw;
    let mut out = format!(
        "### Run-queue delay programs: `perf bench sched pipe -l {loops}`, {rounds} rounds (order rotating)\n\n\
         | round | bare µs/op | agent µs/op | agent + run-queue programs µs/op | extra ns/op |\n|---|---|---|---|---|\n"
    );
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    out.push_str(&format!(
        "\n**Medians**: bare {b:.3} µs/op, agent {p:.3} µs/op, agent with the run-queue programs {q:.3} µs/op \
         ({:+.1} % over the agent alone); {sw:.2} context switches per operation: **{per_switch_ns:.0} ns per context switch** \
         for sched_switch + sched_wakeup.\n",
        (q / p - 1.0) * 100.0
    ));
    Ok(out)
}
