//! Connections the agent cannot parse stop costing classification work.
//!
//! - `tls_connections_left_in_the_kernel`: real TLS (`openssl s_server`
//!   answering `curl -k https://…`): the kernel recognises the TLS records,
//!   counts `tls_ignored` for both ends of every connection; no span comes
//!   from either process.
//! - `unclassified_connections_given_up`: a loopback connection of this
//!   test process carrying more bytes of no supported protocol than
//!   `--classify-attempts` allows is given up (`unclassified_given_up`): an
//!   HTTP exchange on it afterwards yields no span; a connection with fewer
//!   garbage writes before its exchange is still classified and traced.
//!
//! Kernel counters are machine-wide (the host's other traffic may add to
//! them), so the assertions on them are lower bounds; what is exact is
//! told by the spans of this test's own processes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::otlp::{OtlpReceiver, Protocol, dump};
use agent_tests::{SETTLE, SPAN_WAIT, free_port, poll_until, prom};

/// Both scenarios read machine-wide kernel counters: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn kernel(agent: &AgentProcess, counter: &str) -> f64 {
    prom::sum_with_labels(
        &agent.metrics_text(),
        "agent_kernel_events_total",
        &[("counter", counter)],
    )
    .unwrap_or(0.0)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn tls_connections_left_in_the_kernel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !require_bpf() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("agent-tests-tls-")
        .tempdir()
        .expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:P-256")
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null()));
    let port = free_port();
    let server = Killed(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_server (Debian package openssl)"),
    );
    poll_until(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("openssl s_server listens");
    std::thread::sleep(Duration::from_millis(200));

    let rx = OtlpReceiver::start();
    let agent = AgentProcess::start(AgentOptions::new().otlp(&rx, Protocol::Grpc));
    let tls_before = kernel(&agent, "tls_ignored");
    const CALLS: usize = 5;
    let mut curl_pids = Vec::new();
    for _ in 0..CALLS {
        let child = Command::new("curl")
            .args([
                "-sSk",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("https://127.0.0.1:{port}/"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn curl");
        curl_pids.push(child.id());
        let out = child.wait_with_output().expect("curl");
        assert!(
            out.status.success() && out.stdout == b"200",
            "curl https: {} {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::thread::sleep(SETTLE);
    let tls = kernel(&agent, "tls_ignored") - tls_before;
    // Each connection's two ends: curl's and the server's.
    assert!(
        tls >= (2 * CALLS) as f64,
        "tls_ignored moved by {tls} for {CALLS} TLS connections\n{}",
        agent.logs_tail(20)
    );
    let spans = rx.spans();
    let server_pid = server.0.id();
    assert!(
        spans
            .iter()
            .all(|s| s.pid() != Some(server_pid) && !curl_pids.contains(&s.pid().unwrap_or(0))),
        "spans from the TLS processes"
    );
}

/// A connected loopback pair: (this end, the accepted end).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
    let (b, _) = l.accept().expect("accept");
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// `n` writes of `msg`, each read whole on the other end before the next.
fn ping(a: &mut TcpStream, b: &mut TcpStream, msg: &[u8], n: usize) {
    let mut buf = vec![0u8; msg.len()];
    for _ in 0..n {
        a.write_all(msg).unwrap();
        b.read_exact(&mut buf).unwrap();
    }
}

/// One HTTP exchange from `a` (client) to `b` (server) on a pair of this
/// process.
fn exchange(a: &mut TcpStream, b: &mut TcpStream, path: &str) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: agent-tests\r\n\r\n");
    ping(a, b, req.as_bytes(), 1);
    ping(b, a, b"HTTP/1.1 204 No Content\r\n\r\n", 1);
}

#[test]
fn unclassified_connections_given_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !require_bpf() {
        return;
    }
    const ATTEMPTS: usize = 16;
    let rx = OtlpReceiver::start();
    let agent = AgentProcess::start(
        AgentOptions::new()
            .otlp(&rx, Protocol::Grpc)
            .arg("--classify-attempts")
            .arg(&ATTEMPTS.to_string()),
    );
    let garbage = [0x07u8; 64];
    let given_up_before = kernel(&agent, "unclassified_given_up");

    // Far more garbage than the budget: both ends give up, for good: an
    // HTTP exchange afterwards is not looked at.
    let (mut a, mut b) = pair();
    ping(&mut a, &mut b, &garbage, 4 * ATTEMPTS);
    exchange(&mut a, &mut b, "/after-garbage");
    // Less garbage than the budget, then an exchange: still classified.
    let (mut c, mut d) = pair();
    ping(&mut c, &mut d, &garbage, ATTEMPTS / 2);
    exchange(&mut c, &mut d, "/within-budget");

    let me = std::process::id();
    // SERVER spans have `url.path`, CLIENT spans `url.full`.
    let path_of = |s: &agent_tests::otlp::ReceivedSpan| {
        s.attr_str("url.path")
            .or_else(|| {
                s.attr_str("url.full")
                    .and_then(|u| u.strip_prefix("http://x"))
            })
            .map(str::to_owned)
    };
    rx.wait_for(
        |spans| {
            spans
                .iter()
                .filter(|s| s.pid() == Some(me) && path_of(s).as_deref() == Some("/within-budget"))
                .count()
                >= 2
        },
        SPAN_WAIT,
    );
    std::thread::sleep(SETTLE);
    let ours: Vec<_> = rx
        .spans()
        .into_iter()
        .filter(|s| s.pid() == Some(me))
        .collect();
    let paths: Vec<_> = ours.iter().filter_map(path_of).collect();
    // CLIENT and SERVER span of the exchange within the budget; none of
    // the given-up connection.
    assert_eq!(
        paths,
        ["/within-budget", "/within-budget"],
        "spans of this process:\n{}",
        dump(&ours)
    );
    // Machine-wide: other unparseable traffic of the host may add to it.
    let given_up = kernel(&agent, "unclassified_given_up") - given_up_before;
    assert!(given_up >= 2.0, "unclassified_given_up moved by {given_up}");
}
