//! Clients: `curl`, the Rust client binary, a tiny blocking HTTP GET, raw
//! sockets and builders for malformed / non-HTTP input.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------
// Minimal blocking HTTP/1.0 GET (agent /metrics, /readyz, server readiness)
// ---------------------------------------------------------------------------

/// A response read by [`http_get`].
#[derive(Debug, Clone)]
pub struct SimpleResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SimpleResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over a fresh connection with `Connection: close`, read to EOF.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<SimpleResponse> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: agent-tests-harness\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
    })
}

/// `GET path` over a fresh connection, the request written in one
/// syscall (so the server's first read surely holds the request line),
/// `Connection: close`, read to EOF. [`http_get`] writes in pieces.
pub fn http_get_whole(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<SimpleResponse> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: agent-tests-harness\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
    })
}

/// Parses one complete HTTP/1.x response (Content-Length, chunked or until EOF).
pub fn parse_response(raw: &[u8]) -> Option<SimpleResponse> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest.get(..len)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(SimpleResponse {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------

/// The result of one `curl` run.
#[derive(Debug)]
pub struct CurlOutput {
    /// Pid curl ran as (`process.pid` of its CLIENT spans).
    pub pid: u32,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CurlOutput {
    /// Panics (with curl's output) unless curl exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "curl failed ({}): stdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs the real `curl` binary with exactly `args`, waiting up to 60 s.
pub fn curl(args: &[&str]) -> CurlOutput {
    let child = Command::new("curl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn curl (apt-get install -y curl)");
    let pid = child.id();
    let out = wait_output(child, Duration::from_secs(60), "curl");
    CurlOutput {
        pid,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `-w` format that prints one line per transfer: `code=<c> connects=<n> local_port=<p>`.
pub const CURL_WRITE_OUT: &str =
    "code=%{http_code} connects=%{num_connects} local_port=%{local_port}\\n";

/// One line of [`CURL_WRITE_OUT`] output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurlTransfer {
    pub code: u16,
    pub connects: u32,
    pub local_port: u16,
}

/// Parses the lines printed with [`CURL_WRITE_OUT`].
pub fn parse_curl_transfers(stdout: &str) -> Vec<CurlTransfer> {
    stdout
        .lines()
        .filter(|l| l.starts_with("code="))
        .filter_map(|l| {
            let mut code = None;
            let mut connects = None;
            let mut port = None;
            for f in l.split_whitespace() {
                match f.split_once('=') {
                    Some(("code", v)) => code = v.parse().ok(),
                    Some(("connects", v)) => connects = v.parse().ok(),
                    Some(("local_port", v)) => port = v.parse().ok(),
                    _ => {}
                }
            }
            Some(CurlTransfer {
                code: code?,
                connects: connects?,
                local_port: port?,
            })
        })
        .collect()
}

fn wait_output(mut child: Child, timeout: Duration, what: &str) -> std::process::Output {
    // Read pipes on threads so a chatty child cannot block on a full pipe.
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} (pid {}) did not finish within {timeout:?}",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------
// The Rust client binary (src/bin/rust_http_client.rs)
// ---------------------------------------------------------------------------

/// One request for the Rust client: `METHOD PATH [BODY]`.
pub fn plan_line(method: &str, path: &str, body: Option<&str>) -> String {
    match body {
        Some(b) => format!("{method} {path} {b}"),
        None => format!("{method} {path}"),
    }
}

/// A finished run of the Rust client.
#[derive(Debug)]
pub struct ClientRun {
    pub pid: u32,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Status codes in order.
    pub responses: Vec<u16>,
    /// Local address of its one connection.
    pub local_addr: Option<SocketAddr>,
}

impl ClientRun {
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "rust_http_client failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

fn parse_client_line(line: &str, responses: &mut Vec<u16>, local: &mut Option<SocketAddr>) {
    if let Some(rest) = line.strip_prefix("RESPONSE ") {
        if let Some(code) = rest.split_whitespace().next().and_then(|c| c.parse().ok()) {
            responses.push(code);
        }
    } else if let Some(rest) = line.strip_prefix("CONNECTED ") {
        *local = rest
            .split_whitespace()
            .find_map(|f| f.strip_prefix("local="))
            .and_then(|a| a.parse().ok());
    }
}

/// Runs the Rust client against `base_url` (e.g. `http://127.0.0.1:8080`) with
/// the given plan lines, all on one keep-alive connection. The plan goes
/// through a file, not argv, so nothing in it shows up in
/// `process.command_line`.
pub fn run_rust_client(
    bin: &Path,
    base_url: &str,
    plan: &[String],
    env: &[(&str, &str)],
) -> ClientRun {
    let dir = tempfile::Builder::new()
        .prefix("agent-tests-client-")
        .tempdir()
        .expect("tempdir");
    let plan_path = dir.path().join("plan.txt");
    std::fs::write(&plan_path, plan.join("\n") + "\n").expect("write plan");
    let mut cmd = Command::new(bin);
    cmd.arg(base_url).arg("--plan").arg(&plan_path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let pid = child.id();
    let out = wait_output(child, Duration::from_secs(60), "rust_http_client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut responses = Vec::new();
    let mut local_addr = None;
    for line in stdout.lines() {
        parse_client_line(line, &mut responses, &mut local_addr);
    }
    ClientRun {
        pid,
        status: out.status,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        responses,
        local_addr,
    }
}

/// The Rust client in interactive mode: it connects, runs its initial plan,
/// then runs one request per line written to its stdin, on the same
/// connection. Killed on drop.
pub struct InteractiveClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub pid: u32,
    pub local_addr: Option<SocketAddr>,
    transcript: Vec<String>,
}

impl InteractiveClient {
    /// Starts the client and waits (up to 10 s) until its initial plan is done.
    pub fn start(bin: &Path, base_url: &str, initial_plan: &[String]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "agent-tests-iclient-{}-{}",
            std::process::id(),
            crate::unix_now_ns()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let plan_path = dir.join("plan.txt");
        std::fs::write(&plan_path, initial_plan.join("\n") + "\n").expect("write plan");
        let mut child = Command::new(bin)
            .arg(base_url)
            .arg("--plan")
            .arg(&plan_path)
            .arg("--interactive")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = InteractiveClient {
            child,
            stdin,
            lines: rx,
            pid,
            local_addr: None,
            transcript: Vec::new(),
        };
        c.wait_line(|l| l == "READY", Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&dir);
        c
    }

    fn wait_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let mut dummy = Vec::new();
                    let mut local = self.local_addr;
                    parse_client_line(&line, &mut dummy, &mut local);
                    self.local_addr = local;
                    self.transcript.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "rust_http_client (pid {}) did not print the expected line within {timeout:?}; transcript:\n{}",
                    self.pid,
                    self.transcript.join("\n")
                ),
            }
        }
    }

    /// Sends one request (`METHOD PATH [BODY]`) on the open connection and
    /// returns its status code.
    pub fn request(&mut self, plan_line: &str) -> u16 {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{plan_line}").expect("write to client stdin");
        stdin.flush().expect("flush");
        let line = self.wait_line(
            |l| l.starts_with("RESPONSE ") || l.starts_with("ERROR "),
            Duration::from_secs(10),
        );
        assert!(
            line.starts_with("RESPONSE "),
            "client request failed: {line}"
        );
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code")
    }

    /// Closes stdin and waits for the client to exit.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        crate::procs::terminate(&mut self.child, Duration::from_secs(2))
            .expect("client exit status")
    }
}

impl Drop for InteractiveClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------

/// A raw TCP connection for sending arbitrary bytes.
pub struct RawConn {
    pub stream: TcpStream,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        Ok(RawConn { stream })
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }
    /// Reads whatever arrives for up to `dur` (or until EOF).
    pub fn read_for(&mut self, dur: Duration) -> Vec<u8> {
        let deadline = Instant::now() + dur;
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        out
    }
    /// Reads until one full HTTP response is buffered (or `timeout`).
    pub fn read_response(&mut self, timeout: Duration) -> Option<SimpleResponse> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            if let Some(r) = parse_complete_response(&out) {
                return Some(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut buf) {
                Ok(0) => return parse_response(&out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => return None,
            }
        }
    }
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Like [`parse_response`], but only when the body is complete per its framing
/// (Content-Length or chunked); responses delimited by EOF return `None`.
fn parse_complete_response(raw: &[u8]) -> Option<SimpleResponse> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end])
        .ok()?
        .to_ascii_lowercase();
    let rest = &raw[head_end + 4..];
    if head.contains("transfer-encoding: chunked") {
        if rest.windows(5).any(|w| w == b"0\r\n\r\n") {
            parse_response(raw)
        } else {
            None
        }
    } else if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        if rest.len() >= len {
            parse_response(raw)
        } else {
            None
        }
    } else if head.starts_with("http/1.1 304") || head.starts_with("http/1.1 204") {
        parse_response(raw)
    } else {
        None
    }
}

/// Connects, writes `bytes`, half-closes, reads for up to `read_for`, closes.
/// Returns what the server sent (connect errors are returned too).
pub fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    read_for: Duration,
) -> std::io::Result<Vec<u8>> {
    let mut c = RawConn::connect(addr)?;
    c.send(bytes)?;
    c.shutdown_write();
    let out = c.read_for(read_for);
    c.close();
    Ok(out)
}

/// Opens `n` TCP connections to `addr` and returns them idle. Raise the fd
/// limit first ([`crate::procs::raise_nofile_limit`]).
pub fn open_idle_connections(addr: SocketAddr, n: usize) -> std::io::Result<Vec<TcpStream>> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => v.push(s),
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("idle connection #{i} to {addr}: {e}"),
                ));
            }
        }
    }
    Ok(v)
}

// ---------------------------------------------------------------------------
// Input builders
// ---------------------------------------------------------------------------

/// `len` pseudo-random bytes from `seed` (deterministic).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

/// A deterministic RNG for tests.
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// A TLS 1.2/1.3 ClientHello record (handshake type 1) with SNI `server_name`.
pub fn tls_client_hello(server_name: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0x03, 0x03]); // legacy_version TLS 1.2
    body.extend_from_slice(&random_bytes(7, 32)); // random
    body.push(32); // session id
    body.extend_from_slice(&random_bytes(8, 32));
    let suites: [u16; 5] = [0x1301, 0x1302, 0x1303, 0xc02f, 0xc030];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut ext = Vec::new();
    // server_name
    let name = server_name.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    ext.extend_from_slice(&0u16.to_be_bytes());
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    // supported_versions: TLS 1.3, 1.2
    ext.extend_from_slice(&0x002bu16.to_be_bytes());
    ext.extend_from_slice(&5u16.to_be_bytes());
    ext.extend_from_slice(&[4, 0x03, 0x04, 0x03, 0x03]);
    // ALPN: http/1.1 (makes it look even more like HTTP to a naive sniffer)
    let alpn = b"http/1.1";
    ext.extend_from_slice(&0x0010u16.to_be_bytes());
    ext.extend_from_slice(&((alpn.len() + 3) as u16).to_be_bytes());
    ext.extend_from_slice(&((alpn.len() + 1) as u16).to_be_bytes());
    ext.push(alpn.len() as u8);
    ext.extend_from_slice(alpn);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut hs = vec![1u8]; // ClientHello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// A PostgreSQL v3 StartupMessage for `user` / `database`.
pub fn postgres_startup(user: &str, database: &str) -> Vec<u8> {
    let mut params = Vec::new();
    for (k, v) in [
        ("user", user),
        ("database", database),
        ("application_name", "agent-tests"),
    ] {
        params.extend_from_slice(k.as_bytes());
        params.push(0);
        params.extend_from_slice(v.as_bytes());
        params.push(0);
    }
    params.push(0);
    let len = (4 + 4 + params.len()) as u32;
    let mut msg = len.to_be_bytes().to_vec();
    msg.extend_from_slice(&196608u32.to_be_bytes()); // protocol 3.0
    msg.extend_from_slice(&params);
    msg
}

/// A PostgreSQL SSLRequest (8 bytes).
pub fn postgres_ssl_request() -> Vec<u8> {
    let mut m = 8u32.to_be_bytes().to_vec();
    m.extend_from_slice(&80877103u32.to_be_bytes());
    m
}

/// A GET request whose header block is about `header_bytes` long (many
/// `X-Pad-N` headers, each under 1 KiB so servers accept them).
pub fn request_with_big_headers(path: &str, host: &str, header_bytes: usize) -> Vec<u8> {
    let mut r =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: agent-tests-big-headers\r\n");
    let mut i = 0;
    while r.len() < header_bytes {
        r.push_str(&format!("X-Pad-{i}: {}\r\n", "p".repeat(900)));
        i += 1;
    }
    r.push_str("\r\n");
    r.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        let r = parse_response(
            b"HTTP/1.1 201 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.text().as_str()), (201, "abcde"));
        assert!(
            parse_complete_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel").is_none()
        );
    }

    #[test]
    fn builds_inputs() {
        let hello = tls_client_hello("example.test");
        assert_eq!(hello[0], 0x16);
        assert_eq!(
            u16::from_be_bytes([hello[3], hello[4]]) as usize,
            hello.len() - 5
        );
        let pg = postgres_startup("u", "d");
        assert_eq!(
            u32::from_be_bytes(pg[..4].try_into().unwrap()) as usize,
            pg.len()
        );
        assert_eq!(random_bytes(1, 16), random_bytes(1, 16));
        let big = request_with_big_headers("/x", "h", 16 * 1024);
        assert!(big.len() >= 16 * 1024 && big.ends_with(b"\r\n\r\n"));
        let t = parse_curl_transfers(
            "code=200 connects=1 local_port=4242\ncode=500 connects=0 local_port=4242\n",
        );
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[1],
            CurlTransfer {
                code: 500,
                connects: 0,
                local_port: 4242
            }
        );
    }
}
