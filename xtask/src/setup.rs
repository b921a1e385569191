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
    // `openssl s_server` and certificates: real TLS the kernel must leave.
    "openssl",
    "wrk",
    "nghttp2-client",
    "python3",
    // PostgreSQL 15 server, psql and pgbench (the tests run private servers).
    "postgresql",
    // Deployment tests: systemd-analyze verify/security of the unit, capsh
    // (the doctor without CAP_BPF), podman with runc (the image, run with
    // host pids; crun refuses hybrid cgroup hierarchies), a Python venv for
    // kubernetes-validate.
    "systemd",
    "libcap2-bin",
    "podman",
    "runc",
    "python3-venv",
    // The node-metrics tests compare with the real node_exporter and are
    // scraped by a real Prometheus (promtool comes with it).
    "prometheus-node-exporter",
    "prometheus",
    // `perf bench sched pipe` for `cargo xtask bench sched`.
    "linux-perf",
];

/// kubernetes-validate (PyPI): the Kubernetes schemas, offline.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// PyPI packages for the gRPC and h2c tests (grpcio; hypercorn, an ASGI
/// server that accepts `Upgrade: h2c`) and the trace-context test (the
/// OpenTelemetry SDK, a client that sends `traceparent`), installed into a
/// venv at `target/grpc-venv` (Debian's Python is externally managed).
const PIP_PACKAGES: &[&str] = &[
    "grpcio==1.85.3",
    "hypercorn==0.18.0",
    "opentelemetry-sdk==1.45.2",
];

/// The venv the gRPC tests run their grpcio peers with (see
/// `tests/src/grpc.rs`).
pub const GRPC_VENV: &str = "target/grpc-venv";

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn run() -> Result<()> {
    apt_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    kubernetes_validate()?;
    grpc_venv()?;
    Ok(())
}

/// kubernetes-validate in a venv under target/ (the deploy tests use it).
fn kubernetes_validate() -> Result<()> {
    let venv = crate::workspace_root().join("target/k8s-venv");
    let bin = venv.join("bin/kubernetes-validate");
    if bin.exists() {
        return Ok(());
    }
    eprintln!(
        "setup: installing {KUBERNETES_VALIDATE} into {}",
        venv.display()
    );
    run_cmd(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run_cmd(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(KUBERNETES_VALIDATE),
    )
}

/// A Python venv with grpcio, created once; a no-op when it imports.
fn grpc_venv() -> Result<()> {
    let venv = crate::workspace_root().join(GRPC_VENV);
    let python = venv.join("bin/python");
    if quiet(Command::new(&python).args(["-c", "import grpc, hypercorn, opentelemetry.sdk.trace"]))
    {
        return Ok(());
    }
    eprintln!("setup: installing {PIP_PACKAGES:?} into {}", venv.display());
    if !python.exists() {
        // The system interpreter (not a pyenv shim), so the venv works for
        // every user of the machine.
        let base = if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        run_cmd(Command::new(base).args(["-m", "venv"]).arg(&venv))?;
    }
    run_cmd(
        Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(PIP_PACKAGES),
    )
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
    // Likewise the cluster the postgresql package creates and starts on
    // 5432: the tests initdb their own.
    if missing.contains(&"postgresql") {
        let _ = quiet(Command::new("systemctl").args(["stop", "postgresql"]));
        let _ = quiet(Command::new("service").args(["postgresql", "stop"]));
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
