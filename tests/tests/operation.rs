//! Operating the agent: `--help`, `--print-config`, configuration errors,
//! a clear error when not root, and SIGINT/SIGTERM detaching the programs
//! within a second.

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use agent_tests::{
    agent::{AgentOptions, AgentProcess, agent_bin, require_bpf},
    poll_until,
};

fn run(args: &[&str]) -> Output {
    Command::new(agent_bin())
        .args(args)
        .env_remove("AGENT_CONFIG")
        .output()
        .expect("agent binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_lists_the_settings() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for flag in [
        "--config",
        "--capture-bytes",
        "--request-timeout",
        "--export",
        "--otlp-endpoint",
        "--metrics-address",
        "--print-config",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn print_config_shows_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.yaml");
    std::fs::write(
        &file,
        "capture:\n  capture_bytes: 2048\nhttp:\n  request_timeout: 7s\nexport:\n  otlp:\n    headers: { x-api-key: s3cret }\n",
    )
    .unwrap();
    let out = run(&[
        "--config",
        file.to_str().unwrap(),
        "--request-timeout",
        "9s",
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cfg = text(&out.stdout);
    assert!(cfg.contains("capture_bytes: 2048"), "file value:\n{cfg}");
    assert!(
        cfg.contains("request_timeout: 9s"),
        "flag wins over file:\n{cfg}"
    );
    assert!(!cfg.contains("s3cret"), "header values are hidden:\n{cfg}");
}

#[test]
fn bad_configuration_names_the_key() {
    let out = run(&["--capture-bytes", "0", "--print-config"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("capture.capture_bytes"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.yaml");
    std::fs::write(&file, "http:\n  request_timout: 5s\n").unwrap();
    let out = run(&["--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("request_timout"), "{err}");

    let out = run(&["--config", "/nonexistent/agent.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/agent.yaml"));
}

#[test]
fn not_root_is_a_clear_error() {
    if !require_bpf() {
        return;
    }
    // Drop to nobody: the agent must refuse with a message, not panic.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(agent_bin())
        .args(["--metrics-address", "off"])
        .output()
        .expect("setpriv runs");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("must run as root"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn detaches_within_a_second(signal: i32) {
    let mut agent = AgentProcess::start(AgentOptions::new().export("none"));
    let sent = Instant::now();
    // SAFETY: kill with a valid pid and signal.
    assert_eq!(unsafe { libc::kill(agent.pid as i32, signal) }, 0);
    let detached = poll_until(Duration::from_secs(5), || {
        agent
            .stderr_text()
            .contains("programs detached")
            .then(Instant::now)
    })
    .expect("the agent logs that its programs are detached");
    let took = detached.duration_since(sent);
    eprintln!("programs detached {took:?} after the signal");
    assert!(
        took < Duration::from_secs(1),
        "programs detached {took:?} after the signal"
    );
    let status = agent.stop().expect("the agent exited");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn sigterm_detaches_within_a_second() {
    if require_bpf() {
        detaches_within_a_second(libc::SIGTERM);
    }
}

#[test]
fn sigint_detaches_within_a_second() {
    if require_bpf() {
        detaches_within_a_second(libc::SIGINT);
    }
}
