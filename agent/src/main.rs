//! `agent`: parse the command line and configuration, set up logging, run.

use std::process::ExitCode;

use agent::config::{Cli, Command, Config, OtelEnv};
use clap::Parser as _;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Doctor)) {
        // Quiet: the report is the output (errors of the probes are in it).
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("error"))
            .with_writer(std::io::stderr)
            .init();
        let (report, can_run) = agent::doctor::render(&agent::doctor::run());
        print!("{report}");
        return if can_run {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let cfg = match Config::load(&cli, &OtelEnv::from_process()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("agent: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        print!("{}", cfg.to_yaml());
        return ExitCode::SUCCESS;
    }
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&cfg.log_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command.unwrap_or(Command::Run) {
        Command::Doctor => unreachable!("handled above"),
        Command::Run => match start(cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("agent: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn start(cfg: Config) -> anyhow::Result<()> {
    limit_malloc_arenas();
    set_nice(cfg.capture.nice);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agent")
        .enable_all()
        .build()?;
    runtime.block_on(agent::run::run(cfg))?;
    Ok(())
}

/// Sets the niceness of the calling thread before any other exists: every
/// thread of the agent inherits it. Without CAP_SYS_NICE a negative value
/// fails: said, and the agent runs at its inherited priority.
fn set_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: setpriority on the calling thread (who = 0) with a checked
    // range has no memory effects.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        tracing::info!("scheduling niceness {nice} (capture.nice)");
    } else {
        tracing::warn!(
            "cannot set niceness {nice} (capture.nice): {}; running at the inherited priority",
            std::io::Error::last_os_error()
        );
    }
}

/// Spans are allocated on one runtime thread and freed on another; glibc
/// then grows one arena per thread and keeps the freed memory of each.
/// A single arena (with two workers, its lock is rarely contended) and a
/// lower trim threshold kept the peak RSS at 30k requests/s about 20 MiB
/// lower in `cargo xtask bench http`.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tunables; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}
