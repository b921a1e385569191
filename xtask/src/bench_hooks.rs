//! `cargo xtask bench hooks`: what the capture's hooks cost per syscall,
//! apart from everything else. `syscall_loop` (agent/examples) does 64-byte
//! write+read pairs on a loopback TCP connection and `getppid` calls (hooked
//! by nothing), under, in an order rotating between rounds:
//!
//! - `bare`: nothing attached;
//! - `noop tracepoints`: no-op programs on the capture's 26 tracepoints,
//!   attached like the capture's (`noop_hooks tracepoints`);
//! - `noop raw`: a no-op raw tracepoint on `sys_enter`/`sys_exit` instead
//!   of the syscall tracepoints (`noop_hooks raw`);
//! - `agent`: the agent (`--export none`) with the connection's bytes of
//!   no supported protocol: classified `classify_attempts` times, then left;
//! - `agent, classify forever`: the same with `--classify-attempts 0`, what
//!   every unparseable connection cost before the limit.
//!
//! Reported: ns per write+read pair and per `getppid`, medians, and the
//! extra ns per hooked syscall over bare.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::bench::{Proc, median, wait_for_line};

const MODES: [&str; 5] = [
    "bare",
    "noop tracepoints",
    "noop raw",
    "agent",
    "agent, classify forever",
];

struct Tools {
    noop: PathBuf,
    syscall_loop: PathBuf,
}

fn build_tools(root: &Path) -> Result<Tools> {
    crate::run_cmd(crate::cargo().current_dir(root).args([
        "build",
        "--release",
        "--package",
        "agent",
        "--example",
        "noop_hooks",
        "--example",
        "syscall_loop",
    ]))?;
    let dir = root.join("target/release/examples");
    Ok(Tools {
        noop: dir.join("noop_hooks"),
        syscall_loop: dir.join("syscall_loop"),
    })
}

/// (ns per write+read pair, ns per getppid).
fn syscall_loop(tools: &Tools, loops: u32) -> Result<(f64, f64)> {
    let out = Command::new(&tools.syscall_loop)
        .args([&loops.to_string(), "garbage"])
        .output()
        .context("running syscall_loop")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match (out.status.success(), v.as_slice()) {
        (true, &[pair, getppid]) => Ok((pair, getppid)),
        _ => bail!(
            "syscall_loop: {}: {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Starts what `mode` runs under (nothing for `bare`), ready.
fn start(mode: &str, agent: &Path, tools: &Tools, dir: &Path) -> Result<Option<Proc>> {
    let log = dir.join("stderr.log");
    let (mut cmd, ready) = match mode {
        "bare" => return Ok(None),
        "noop tracepoints" | "noop raw" => {
            let mut c = Command::new(&tools.noop);
            c.arg(if mode == "noop raw" {
                "raw"
            } else {
                "tracepoints"
            });
            (c, "ready:")
        }
        _ => {
            let mut c = Command::new(agent);
            c.args(["--export", "none", "--metrics-address", "off"]);
            if mode == "agent, classify forever" {
                c.args(["--classify-attempts", "0"]);
            }
            (c, "agent ready")
        }
    };
    let p = Proc(
        cmd.stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {mode}"))?,
    );
    wait_for_line(&log, ready, Duration::from_secs(60))?;
    Ok(Some(p))
}

pub fn run(root: &Path, agent: &Path, rounds: u32, loops: u32) -> Result<String> {
    let tools = build_tools(root)?;
    let dir = std::env::temp_dir().join(format!("agent-bench-hooks-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    syscall_loop(&tools, loops / 10)?;
    let mut pairs: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    let mut getppids: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    let mut rows = Vec::new();
    for round in 0..rounds {
        let mut r = [(0.0, 0.0); MODES.len()];
        for step in 0..MODES.len() {
            let which = (round as usize + step) % MODES.len();
            let mut under = start(MODES[which], agent, &tools, &dir)?;
            r[which] = syscall_loop(&tools, loops)?;
            if let Some(p) = under.as_mut() {
                p.stop();
            }
        }
        for (i, &(pair, getppid)) in r.iter().enumerate() {
            pairs[i].push(pair);
            getppids[i].push(getppid);
        }
        let cells: Vec<String> = r.iter().map(|(p, g)| format!("{p:.0} / {g:.0}")).collect();
        rows.push(format!("| {} | {} |", round + 1, cells.join(" | ")));
        eprintln!("{}", rows.last().expect("pushed"));
    }
    let _ = fs::remove_dir_all(&dir);
    let mut out = format!(
        "#### Hook floor: `syscall_loop {loops}` (64-byte write+read pairs on loopback TCP, then getppid), {rounds} rounds (order rotating)\n\n\
         ns per write+read pair / ns per getppid.\n\n| round | {} |\n|---|{}\n",
        MODES.join(" | "),
        "---|".repeat(MODES.len())
    );
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    let pair_med: Vec<f64> = pairs.into_iter().map(median).collect();
    let getppid_med: Vec<f64> = getppids.into_iter().map(median).collect();
    out.push_str("\n| medians | ns per pair | extra ns per hooked syscall | ns per getppid | extra ns per unhooked syscall |\n|---|---|---|---|---|\n");
    for (i, mode) in MODES.iter().enumerate() {
        out.push_str(&format!(
            "| {mode} | {:.0} | {:+.0} | {:.0} | {:+.0} |\n",
            pair_med[i],
            (pair_med[i] - pair_med[0]) / 2.0,
            getppid_med[i],
            getppid_med[i] - getppid_med[0]
        ));
    }
    Ok(out)
}
