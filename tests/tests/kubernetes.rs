//! Kubernetes pod metadata and namespace selection, against an in-test API
//! server answering with the fixtures of `tests/fixtures/kubernetes/`.
//!
//! A Python server runs in a cgroup named like a containerd container of
//! the `checkout` pod (`/kubepods.slice/…/cri-containerd-<id>.scope`), so
//! the agent finds its container id as on a real node. The API server
//! first lists the pod with its container not started, then expires the
//! watch (410 Gone: the agent must list again), then reports the container
//! started: only then does the process get its pod, and spans carry the
//! `k8s.*` attributes. The agent selects the `shop` namespace only: a
//! second Python server outside any container is not traced.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::client::http_get_whole as http_get;
use agent_tests::otlp::{OtlpReceiver, Protocol, SpanKind};
use agent_tests::servers::PythonHttpServer;
use agent_tests::{SPAN_WAIT, poll_until, workspace_dir};

const CONTAINER_ID: &str = "5d1c8a7e3b2f4c6d9e0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";
const POD_UID: &str = "8f2c1e2a-3b4d-4e5f-9a6b-7c8d9e0f1a2b";
const TOKEN: &str = "test-service-account-token";

fn fixture(name: &str) -> String {
    let p = workspace_dir().join("tests/fixtures/kubernetes").join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .replace("@CONTAINER_ID@", CONTAINER_ID)
}

#[derive(Debug, Clone)]
struct Seen {
    query: String,
    authorization: Option<String>,
}

/// A tiny API server: lists answer the pending pod list (version 1100,
/// then 1250), the first watch expires, later ones report the container
/// started and stay open.
struct FakeApi {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FakeApi {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let (seen, stop) = (seen2.clone(), stop2.clone());
                std::thread::spawn(move || serve(conn, &seen, &stop));
            }
        });
        FakeApi { port, seen, stop }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn watches(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.query.contains("watch=true"))
            .collect()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut conn: TcpStream, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split(' ').nth(1).unwrap_or("").to_string();
    let mut authorization = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_string());
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query.replace("%3D", "=");
    let n_before = {
        let mut s = seen.lock().unwrap();
        let is_watch = query.contains("watch=true");
        let n = s
            .iter()
            .filter(|x| x.query.contains("watch=true") == is_watch)
            .count();
        s.push(Seen {
            query: query.clone(),
            authorization: authorization.clone(),
        });
        n
    };
    if path != "/api/v1/pods" || authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    if !query.contains("watch=true") {
        let mut body = fixture("pods-list-pending.json");
        if n_before > 0 {
            body = body.replacen(
                "\"resourceVersion\": \"1100\"",
                "\"resourceVersion\": \"1250\"",
                1,
            );
        }
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let events = if n_before == 0 {
        fixture("watch-gone.jsonl")
    } else {
        fixture("watch-started.jsonl")
    };
    for line in events.lines() {
        let chunk = format!("{line}\n");
        let _ = write!(conn, "{:x}\r\n{chunk}\r\n", chunk.len());
    }
    let _ = conn.flush();
    if n_before == 0 {
        let _ = write!(conn, "0\r\n\r\n");
        return;
    }
    // An open watch, as the API server keeps it (until the test ends).
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = write!(conn, "0\r\n\r\n");
}

/// A cgroup (v2) named like a containerd container of the pod; processes
/// moved in look containerised. Removed on drop.
struct FakeContainerCgroup {
    dirs: Vec<PathBuf>,
    root: PathBuf,
}

impl FakeContainerCgroup {
    fn create() -> Self {
        let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/unified")
        };
        assert!(
            root.join("cgroup.procs").exists(),
            "no cgroup v2 hierarchy at {}",
            root.display()
        );
        let uid = POD_UID.replace('-', "_");
        let rel = [
            "agent-tests-kubepods.slice".to_string(),
            format!("agent-tests-kubepods-burstable-pod{uid}.slice"),
            format!("cri-containerd-{CONTAINER_ID}.scope"),
        ];
        let mut dirs = Vec::new();
        let mut p = root.clone();
        for r in rel {
            p = p.join(r);
            std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
            dirs.push(p.clone());
        }
        FakeContainerCgroup { dirs, root }
    }

    fn enter(&self, pid: u32) {
        let procs = self.dirs.last().expect("dirs").join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} to {}: {e}", procs.display()));
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert!(cgroup.contains(CONTAINER_ID), "{cgroup}");
    }
}

impl Drop for FakeContainerCgroup {
    fn drop(&mut self) {
        // Move what is left back to the root, then remove the tree.
        let leaf = self.dirs.last().expect("dirs").join("cgroup.procs");
        if let Ok(pids) = std::fs::read_to_string(&leaf) {
            for pid in pids.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn pod_metadata_and_namespace_selection() {
    if !require_bpf() {
        return;
    }
    let cgroup = FakeContainerCgroup::create();
    let in_pod = PythonHttpServer::start();
    cgroup.enter(in_pod.pid);
    let outside = PythonHttpServer::start();
    let api = FakeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let rx = OtlpReceiver::start();
    let mut agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .env(
                "AGENT_KUBERNETES_API_SERVER",
                &format!("http://127.0.0.1:{}", api.port),
            )
            .env("AGENT_KUBERNETES_TOKEN_FILE", token.to_str().unwrap())
            .env("NODE_NAME", "node-1")
            .arg("--include-namespaces")
            .arg("shop"),
    );
    // List, watch (410), list again, watch from the new version.
    poll_until(SPAN_WAIT, || (api.watches().len() >= 2).then_some(()))
        .unwrap_or_else(|| panic!("watches: {:?}\n{}", api.seen(), agent.logs_tail(20)));
    let seen = api.seen();
    let lists: Vec<&Seen> = seen
        .iter()
        .filter(|s| !s.query.contains("watch=true"))
        .collect();
    let watches = api.watches();
    assert_eq!(lists.len(), 2, "a relist after 410 Gone: {seen:?}");
    assert!(
        watches[0].query.contains("resourceVersion=1100")
            && watches[1].query.contains("resourceVersion=1250"),
        "watches follow the lists' versions: {watches:?}"
    );
    for s in &seen {
        assert!(
            s.query.contains("fieldSelector=spec.nodeName=node-1"),
            "only this node's pods: {s:?}"
        );
        assert_eq!(
            s.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
    }
    // The MODIFIED event is applied (events counted) before we ask.
    poll_until(SPAN_WAIT, || {
        (agent.counter_or_zero("agent_kubernetes_watch_events_total") >= 4.0).then_some(())
    })
    .expect("watch events applied");

    for i in 0..3 {
        let r = http_get(
            in_pod.addr(),
            &format!("/in-pod/{i}"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let r = http_get(
            outside.addr(),
            &format!("/outside/{i}"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(r.status, 200);
    }
    let spans = rx
        .try_wait_for(
            |s| {
                s.iter()
                    .filter(|s| s.kind == SpanKind::Server && s.pid() == Some(in_pod.pid))
                    .count()
                    >= 3
            },
            SPAN_WAIT,
        )
        .unwrap_or_else(|| {
            let m = agent.metrics_text();
            let lines: Vec<&str> = m
                .lines()
                .filter(|l| {
                    l.contains("selection") || l.contains("ignored") || l.contains("kernel_events")
                })
                .collect();
            panic!(
                "3 server spans of the pod's process expected, got {:?}\n{}\n{}",
                rx.spans()
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>(),
                lines.join("\n"),
                agent.logs_tail(20)
            )
        });
    std::thread::sleep(agent_tests::SETTLE);
    let spans: Vec<_> = spans.into_iter().chain(rx.spans()).collect();
    assert!(
        spans.iter().all(|s| s.pid() == Some(in_pod.pid)),
        "only the shop pod is traced: {:?}",
        spans
            .iter()
            .map(|s| (s.pid(), s.name.clone()))
            .collect::<Vec<_>>()
    );
    let s = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server)
        .expect("a server span");
    let want: BTreeMap<&str, &str> = [
        ("k8s.pod.name", "checkout-7d9f8b6c5d-x2k4p"),
        ("k8s.pod.uid", POD_UID),
        ("k8s.namespace.name", "shop"),
        ("k8s.container.name", "checkout"),
        ("k8s.node.name", "node-1"),
        ("k8s.replicaset.name", "checkout-7d9f8b6c5d"),
        ("k8s.deployment.name", "checkout"),
        ("container.id", CONTAINER_ID),
        ("service.name", "checkout"),
    ]
    .into_iter()
    .collect();
    for (k, v) in want {
        assert_eq!(s.resource_str(k), Some(v), "{k} of {:?}", s.resource_attrs);
    }
    let text = agent.metrics_text();
    assert!(
        text.contains("agent_kubernetes_pods 2"),
        "backup pod deleted:\n{text}"
    );
    assert!(
        agent_tests::prom::sum(&text, "agent_kubernetes_relists_total").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    agent.assert_ready();
    drop(agent);
    drop(in_pod);
    drop(cgroup);
}
