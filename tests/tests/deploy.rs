//! Deployment artefacts: Kubernetes manifests validated offline against the
//! Kubernetes schemas (kubernetes-validate, installed by `cargo xtask
//! setup`), the Kustomize base complete (and rendered with `kubectl
//! kustomize` where kubectl exists), the systemd unit clean under
//! `systemd-analyze verify` and `security`, `agent doctor` passing here and
//! failing without CAP_BPF, and the container image built from
//! `deploy/container/Containerfile` with podman and run as the DaemonSet
//! runs it (privileged, host pids).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use agent_tests::agent::{agent_bin, require_bpf};
use agent_tests::{is_ci, poll_until, skip, workspace_dir};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// A tool the setup installs: missing fails under CI, skips otherwise.
fn tool(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{what} not found at {} (cargo xtask setup installs it)",
        path.display()
    );
    if is_ci() {
        panic!("CI=true: {msg}");
    }
    skip(&msg);
    None
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.exists())
    })
}

fn kubernetes_dir() -> PathBuf {
    workspace_dir().join("deploy/kubernetes")
}

/// Versions the manifests must be valid for: the oldest we support
/// (securityContext.appArmorProfile is 1.30) and the newest schemas.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

fn validate(validator: &Path, files: &[PathBuf]) {
    for version in KUBERNETES_VERSIONS {
        let out = run(Command::new(validator)
            .args(["--strict", "--kubernetes-version", version])
            .args(files));
        let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success(),
            "kubernetes-validate {version}:\n{report}"
        );
        assert!(!report.contains("ERROR"), "{report}");
        eprintln!("{report}");
    }
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let Some(validator) = tool(
        workspace_dir().join("target/k8s-venv/bin/kubernetes-validate"),
        "kubernetes-validate",
    ) else {
        return;
    };
    let dir = kubernetes_dir();
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 6, "{manifests:?}");
    validate(&validator, &manifests);

    // The validator must catch a broken one (it is really checking).
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    let ds = std::fs::read_to_string(dir.join("daemonset.yaml")).unwrap();
    std::fs::write(&bad, ds.replace("hostPID: true", "hostPid: true")).unwrap();
    let out = run(Command::new(&validator).arg("--strict").arg(&bad));
    assert!(
        !out.status.success(),
        "a misspelt field must fail validation"
    );

    // Facts the agent depends on.
    for (needle, why) in [
        ("hostPID: true", "the kernel reports host pids"),
        ("fieldPath: spec.nodeName", "NODE_NAME for the pod watch"),
        ("path: /healthz", "liveness"),
        ("path: /readyz", "readiness"),
        ("operator: Exists", "tolerate every taint"),
        ("/sys/kernel/tracing", "tracefs"),
        ("/sys/kernel/btf", "BTF"),
        ("/sys/fs/bpf", "bpffs"),
        (
            "\"BPF\", \"PERFMON\", \"SYS_PTRACE\", \"DAC_READ_SEARCH\", \"SYS_NICE\"",
            "measured capabilities",
        ),
        ("limits:", "resource limits"),
    ] {
        assert!(
            ds.contains(needle),
            "daemonset.yaml lacks {needle:?} ({why})"
        );
    }
    let rbac = std::fs::read_to_string(dir.join("rbac.yaml")).unwrap();
    assert!(rbac.contains("[\"get\", \"list\", \"watch\"]") && rbac.contains("[\"pods\"]"));
}

#[test]
fn kustomization_is_complete_and_renders() {
    let dir = kubernetes_dir();
    let k = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    let listed: Vec<String> = k
        .lines()
        .skip_while(|l| !l.starts_with("resources:"))
        .skip(1)
        .take_while(|l| l.starts_with("  - "))
        .map(|l| l.trim_start_matches("  - ").trim().to_string())
        .collect();
    assert!(!listed.is_empty(), "{k}");
    for r in &listed {
        assert!(dir.join(r).exists(), "kustomization lists missing {r}");
    }
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                listed.contains(&name),
                "{name} is not in kustomization.yaml"
            );
        }
    }
    // kubectl is not installed by the setup (no Debian package of a
    // current one); where it exists, render the base and validate that.
    let Some(kubectl) = on_path("kubectl") else {
        skip("kubectl not on PATH: kustomization checked for completeness only");
        return;
    };
    let out = run(Command::new(kubectl).arg("kustomize").arg(&dir));
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        text(&out.stderr)
    );
    let rendered = text(&out.stdout);
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "Service",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}\n")),
            "{kind} not rendered"
        );
    }
    assert!(rendered.contains("app.kubernetes.io/part-of: agent"));
    if let Some(validator) = tool(
        workspace_dir().join("target/k8s-venv/bin/kubernetes-validate"),
        "kubernetes-validate",
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("rendered.yaml");
        std::fs::write(&f, &rendered).unwrap();
        validate(&validator, &[f]);
    }
}

#[test]
fn systemd_unit_verifies() {
    let Some(analyze) = tool(PathBuf::from("/usr/bin/systemd-analyze"), "systemd-analyze") else {
        return;
    };
    let agent = agent_bin();
    assert!(agent.exists(), "build the agent first");
    // verify checks that ExecStart exists: point it at the built binary.
    let tmp = tempfile::tempdir().unwrap();
    let unit =
        std::fs::read_to_string(workspace_dir().join("deploy/systemd/agent.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/agent "));
    let unit = unit.replace("/usr/local/bin/agent", agent.to_str().unwrap());
    let path = tmp.path().join("agent.service");
    std::fs::write(&path, unit).unwrap();
    let out = run(Command::new(&analyze).arg("verify").arg(&path));
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify:\n{report}");
    assert!(
        report.trim().is_empty(),
        "systemd-analyze verify is not clean:\n{report}"
    );
    // The hardening is worth something: exposure "OK" or better.
    let out = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=40", "--no-pager"])
        .arg(&path));
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze security above 4.0:\n{report}{}",
        text(&out.stderr)
    );
    eprintln!("{}", report.lines().last().unwrap_or(""));
    // The agent accepts the example configuration and environment file.
    let out = run(Command::new(&agent)
        .arg("--config")
        .arg(workspace_dir().join("deploy/systemd/agent.yaml"))
        .arg("--print-config")
        .env_remove("AGENT_CONFIG"));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn doctor_passes_here_and_says_why_it_would_not() {
    if !require_bpf() {
        return;
    }
    let out = run(Command::new(agent_bin()).arg("doctor"));
    let report = text(&out.stdout);
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "agent doctor failed here:\n{report}{}",
        text(&out.stderr)
    );
    for needle in [
        "ok    kernel",
        "ok    BTF",
        "ok    tracefs",
        "ok    ring buffer",
        "ok    tracepoints",
        "ok    uprobes",
        "The agent can run on this host.",
    ] {
        assert!(report.contains(needle), "{needle:?} missing:\n{report}");
    }
    // This machine has neither kprobes nor fentry: said so, and not fatal.
    let kprobes = report.lines().find(|l| l.contains("kprobes")).unwrap_or("");
    let fentry = report.lines().find(|l| l.contains("fentry")).unwrap_or("");
    for line in [kprobes, fentry] {
        assert!(
            (line.starts_with("n/a") && line.contains("runs without them"))
                || line.starts_with("ok"),
            "{line}"
        );
    }
    // Without CAP_BPF the agent cannot run: FAIL and a non-zero exit.
    let Some(capsh) = tool(PathBuf::from("/usr/sbin/capsh"), "capsh") else {
        return;
    };
    let out = run(Command::new(capsh)
        .arg("--drop=cap_bpf,cap_sys_admin")
        .arg("--")
        .arg("-c")
        .arg(format!("exec {} doctor", agent_bin().display())));
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}{}", text(&out.stderr));
    assert!(
        report.contains("FAIL") && report.contains("cannot run"),
        "{report}"
    );
    assert!(
        report.contains("CAP_BPF"),
        "names the missing capability:\n{report}"
    );
}

/// The container image of `deploy/container/Containerfile`, built with
/// podman from the agent binary of this build (the build stage handed over
/// as a build context: no registry here), run privileged with host pids.
#[test]
fn container_image_builds_and_runs_with_host_pids() {
    if !require_bpf() {
        return;
    }
    let Some(podman) = tool(PathBuf::from("/usr/bin/podman"), "podman") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("build/out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // AGENT_IMAGE_BIN: a static (musl) build to package instead of this
    // build's binary, e.g. target/x86_64-unknown-linux-musl/release/agent.
    let bin = std::env::var_os("AGENT_IMAGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(agent_bin);
    std::fs::copy(&bin, out_dir.join("agent")).unwrap();
    // A dynamically linked build brings its libraries (distroless-like).
    let ldd = run(Command::new("ldd").arg(&bin));
    for lib in text(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let dst = out_dir.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dst).unwrap_or_else(|e| panic!("{lib}: {e}"));
    }
    let tag = format!("localhost/agent-tests:{}", std::process::id());
    let context = tmp.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    let out = run(Command::new(&podman)
        .args(["build", "--quiet", "--tag", &tag, "--build-context"])
        .arg(format!("build={}", tmp.path().join("build").display()))
        .arg("--file")
        .arg(workspace_dir().join("deploy/container/Containerfile"))
        .arg(&context));
    assert!(
        out.status.success(),
        "podman build:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let _cleanup = RemoveImage(podman.clone(), tag.clone());

    // This machine: cgroup v1+v2 hybrid (crun refuses it: runc), and no
    // CAP_SYS_RESOURCE (podman's default rlimits cannot be set: lower ones).
    let base = |cmd: &mut Command| {
        cmd.args(["run", "--rm", "--runtime", "runc"])
            .args([
                "--ulimit",
                "nofile=8192:8192",
                "--ulimit",
                "nproc=8192:8192",
            ])
            .args(["--privileged", "--pid=host", "--network=host"])
            .args(["-v", "/sys/kernel/tracing:/sys/kernel/tracing"])
            .args(["-v", "/sys/kernel/btf:/sys/kernel/btf:ro"]);
    };
    let mut doctor = Command::new(&podman);
    base(&mut doctor);
    let out = run(doctor.arg(&tag).arg("doctor"));
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "doctor in the container:\n{report}{}",
        text(&out.stderr)
    );
    assert!(report.contains("ok    tracepoints"), "{report}");

    // The agent itself: ready, and it sees a host process's traffic.
    let port = agent_tests::free_port();
    let name = format!("agent-tests-{}", std::process::id());
    let mut run_cmd = Command::new(&podman);
    base(&mut run_cmd);
    let child = run_cmd
        .args(["--name", &name])
        .arg(&tag)
        .args([
            "--metrics-address",
            &format!("127.0.0.1:{port}"),
            "--export",
            "stdout",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podman run");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let ready = poll_until(Duration::from_secs(60), || {
        agent_tests::client::http_get(addr, "/readyz", Duration::from_secs(2))
            .ok()
            .filter(|r| r.status == 200)
    });
    let server = agent_tests::servers::PythonHttpServer::start();
    if ready.is_some() {
        for i in 0..3 {
            let _ = agent_tests::client::http_get(
                server.addr(),
                &format!("/from-host/{i}"),
                Duration::from_secs(5),
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let _ = run(Command::new(&podman).args(["stop", "--time", "10", &name]));
    let out = child.wait_with_output().expect("podman run output");
    let stdout = text(&out.stdout);
    assert!(
        ready.is_some(),
        "agent in the container never ready:\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("SERVER GET /from-host/{id} /from-host/0")
            && stdout.contains(&format!("[{}]", server.pid)),
        "the containerised agent traced a host process (host pid {}):\n{stdout}\n{}",
        server.pid,
        text(&out.stderr)
    );
}

struct RemoveImage(PathBuf, String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new(&self.0)
            .args(["rmi", "--force", &self.1])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
