//! Project tasks: `cargo xtask setup | build | run | test | bench`.
//!
//! Every task that needs the toolchain runs `setup` first, which installs
//! what is missing and does nothing when everything is there (idempotent):
//! LLVM 22 and bpf-linker for building the eBPF programs, the nightly
//! `rust-src` component (build-std), and the real peers the tests drive.

mod bench;
mod bench_grpc;
mod bench_hooks;
mod bench_metrics;
mod bench_postgres;
mod bench_sched;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Build the agent (debug unless --release).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build (release) and run the agent as root; extra arguments go to it.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks with and without the agent, interleaved.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// Run every test: unit tests, then the integration tests that load the
    /// eBPF programs (as root; under CI=true they fail instead of skipping).
    Test {
        /// Only the unit tests (no root needed).
        #[arg(long)]
        unit: bool,
        /// Extra arguments for the integration test run (e.g. a test name).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Task::Setup => setup::run(),
        Task::Build { release } => {
            setup::run()?;
            build_agent(&root, release).map(|_| ())
        }
        Task::Run { args } => {
            setup::run()?;
            let agent = build_agent(&root, true)?;
            require_root("the agent loads eBPF programs")?;
            let status = Command::new(&agent)
                .args(&args)
                .status()
                .with_context(|| format!("running {}", agent.display()))?;
            if !status.success() {
                bail!("agent exited with {status}");
            }
            Ok(())
        }
        Task::Bench { which } => {
            setup::run()?;
            require_root("benchmarks load the eBPF programs")?;
            let agent = build_agent(&root, true)?;
            bench::run(&root, &agent, which)
        }
        Task::Test { unit, args } => {
            setup::run()?;
            test(&root, unit, &args)
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs a command, failing with its name when it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn build_agent(root: &Path, release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.current_dir(root).args(["build", "--package", "agent"]);
    if release {
        cmd.arg("--release");
    }
    run_cmd(&mut cmd)?;
    Ok(root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("agent"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn require_root(why: &str) -> Result<()> {
    if !is_root() {
        bail!("run as root: {why}");
    }
    Ok(())
}

fn test(root: &Path, unit_only: bool, args: &[String]) -> Result<()> {
    // Unit tests of every host crate (the eBPF crate only builds for the
    // BPF target; its classifier is tested in agent-common).
    run_cmd(cargo().current_dir(root).args([
        "test",
        "--package",
        "agent-common",
        "--package",
        "agent",
        "--package",
        "xtask",
    ]))?;
    if unit_only {
        return Ok(());
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if !is_root() {
        if ci {
            bail!("CI=true: the integration tests load eBPF programs and must run as root");
        }
        eprintln!("SKIPPED integration tests: not root (they load eBPF programs)");
        return Ok(());
    }
    let agent = build_agent(root, false)?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["test", "--no-fail-fast", "--package", "agent-tests"])
        .env("AGENT_BIN", &agent);
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    run_cmd(&mut cmd)
}
