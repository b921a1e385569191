//! Idempotent installation of the build and test prerequisites.
//!
//! Each step checks first and only installs what is missing, so running it
//! on a ready machine takes well under a second.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::run_cmd;

/// Debian packages: LLVM 22 for bpf-linker, and the real peers and tools
/// the tests and benchmarks use.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "nginx-light",
    "curl",
    "wrk",
    "nghttp2-client",
    "python3",
    // The node-metrics tests compare with the real node_exporter and are
    // scraped by a real Prometheus (promtool comes with it).
    "prometheus-node-exporter",
    "prometheus",
    // `perf bench sched pipe` for `cargo xtask bench sched`.
    "linux-perf",
];

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn run() -> Result<()> {
    apt_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    Ok(())
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !crate::is_root() {
        bail!(
            "missing Debian packages {missing:?}; run `cargo xtask setup` as root or install them"
        );
    }
    eprintln!("setup: installing {missing:?}");
    run_cmd(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    // The Debian nginx package starts a system instance on port 80; the
    // tests run their own, so stop it to keep the machine quiet.
    if missing.contains(&"nginx-light") {
        let _ = quiet(Command::new("systemctl").args(["stop", "nginx"]));
        let _ = quiet(Command::new("service").args(["nginx", "stop"]));
    }
    // The same for Prometheus (port 9090) and node_exporter (9100): the
    // tests start their own on free loopback ports.
    for (package, service) in [
        ("prometheus", "prometheus"),
        ("prometheus-node-exporter", "prometheus-node-exporter"),
    ] {
        if missing.contains(&package) {
            let _ = quiet(Command::new("systemctl").args(["stop", service]));
            let _ = quiet(Command::new("systemctl").args(["disable", service]));
            let _ = quiet(Command::new("service").args([service, "stop"]));
        }
    }
    Ok(())
}

fn nightly_rust_src() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("running rustup (the eBPF build needs a nightly toolchain)")?;
    if !installed.status.success() {
        eprintln!("setup: installing the nightly toolchain");
        run_cmd(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        return Ok(());
    }
    if !String::from_utf8_lossy(&installed.stdout).contains("rust-src") {
        eprintln!("setup: adding rust-src to nightly");
        run_cmd(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// bpf-linker built against LLVM 22 (the version rustc nightly emits).
fn bpf_linker() -> Result<()> {
    if quiet(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    eprintln!("setup: installing bpf-linker (about a minute)");
    run_cmd(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX),
    )
}
