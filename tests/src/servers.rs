//! Real HTTP peers on free loopback ports, killed on drop: nginx, a Python
//! `http.server` script and this crate's Rust server binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::client::http_get;
use crate::procs;

/// Size of nginx's `/big` file (served with sendfile).
pub const NGINX_BIG_BYTES: usize = 200 * 1024;
/// Body of nginx's `location /`.
pub const NGINX_HELLO: &str = "hello from nginx\n";
/// Body the Python server answers on plain GETs.
pub const PYTHON_HELLO: &str = "hello from python\n";
/// Body the Rust server answers on plain GETs.
pub const RUST_HELLO: &str = "hello from rust\n";

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
}

/// Waits until `GET probe` on `addr` answers with any status.
fn wait_http(
    addr: SocketAddr,
    probe: &str,
    timeout: Duration,
    child: &mut Child,
    what: &str,
    log: &Path,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited early ({st}); log {}:\n{}",
                log.display(),
                crate::tail_file(log, 40)
            );
        }
        if http_get(addr, probe, Duration::from_secs(2)).is_ok() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{what} not answering on {addr} within {timeout:?}; log {}:\n{}",
                log.display(),
                crate::tail_file(log, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `LISTENING <port>` from the child's stdout (then keeps draining it).
fn read_listening_port(child: &mut Child, timeout: Duration, what: &str, log: &Path) -> u16 {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent
                && let Some(p) = line
                    .strip_prefix("LISTENING ")
                    .and_then(|p| p.trim().parse::<u16>().ok())
            {
                let _ = tx.send(p);
                sent = true;
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(p) => p,
        Err(_) => {
            let st = child.try_wait().ok().flatten();
            panic!(
                "{what} did not print LISTENING within {timeout:?} (exit: {st:?}); log {}:\n{}",
                log.display(),
                crate::tail_file(log, 40)
            )
        }
    }
}

// ---------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------

/// nginx configuration knobs. `Default` gives the standard test server.
#[derive(Debug, Clone)]
pub struct NginxConfig {
    /// Inserted inside `server { }` (extra locations, ...).
    pub server_extra: String,
    /// Inserted inside `http { }`.
    pub http_extra: String,
    pub worker_processes: u32,
    pub worker_connections: u32,
    /// `worker_rlimit_nofile` (nginx raises its own fd limit; it runs as root).
    pub worker_rlimit_nofile: u32,
}

impl Default for NginxConfig {
    fn default() -> Self {
        NginxConfig {
            server_extra: String::new(),
            http_extra: String::new(),
            worker_processes: 2,
            worker_connections: 1024,
            worker_rlimit_nofile: 4096,
        }
    }
}

/// A private nginx (master + workers) on a free loopback port.
///
/// Locations: `/` → 200 [`NGINX_HELLO`]; `/status/500` → 500; `/status/404`
/// → 404; `/big` → [`NGINX_BIG_BYTES`] static file (sendfile); `/chunked` →
/// a static file through `sub_filter`, so nginx has to send it chunked to
/// HTTP/1.1 clients. Keep-alive is on (10000 requests, 75 s).
pub struct Nginx {
    child: Child,
    pub port: u16,
    prefix: Option<tempfile::TempDir>,
    prefix_path: PathBuf,
}

/// Path of the nginx binary: `$NGINX_BIN`, `/usr/sbin/nginx` or `nginx` on PATH.
pub fn nginx_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NGINX_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from("/usr/sbin/nginx");
    if p.exists() {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nginx"))
            .find(|p| p.exists())
    })
}

impl Nginx {
    /// Standard server with `extra_server_config` added inside `server { }`.
    pub fn start(extra_server_config: &str) -> Self {
        Self::start_with(NginxConfig {
            server_extra: extra_server_config.to_string(),
            ..Default::default()
        })
    }

    pub fn start_with(cfg: NginxConfig) -> Self {
        let bin = nginx_bin()
            .expect("nginx not found: apt-get install -y nginx-light (or set NGINX_BIN)");
        // The port is picked before nginx binds it; retry on the rare race.
        let mut last_err = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin, &cfg) {
                Ok(n) => return n,
                Err(e) => last_err = e,
            }
        }
        panic!("nginx failed to start 3 times; last error:\n{last_err}");
    }

    fn try_start(bin: &Path, cfg: &NginxConfig) -> Result<Self, String> {
        let prefix = tempdir("agent-tests-nginx-");
        let p = prefix.path().to_path_buf();
        // Workers run as `nobody`: make the tree readable for them.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let html = p.join("html");
        std::fs::create_dir_all(&html).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&html, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let big: Vec<u8> = (0..NGINX_BIG_BYTES)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37])
            .collect();
        std::fs::write(html.join("big.bin"), &big).map_err(|e| e.to_string())?;
        let chunked: String = (0..200).map(|i| format!("line {i} REPLACEME\n")).collect();
        std::fs::write(html.join("chunked.txt"), chunked).map_err(|e| e.to_string())?;
        for f in ["big.bin", "chunked.txt"] {
            std::fs::set_permissions(html.join(f), std::fs::Permissions::from_mode(0o644))
                .map_err(|e| e.to_string())?;
        }
        let port = crate::free_port();
        let d = p.display();
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{
    worker_connections {conns};
}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type text/plain;
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 10000;
    chunked_transfer_encoding on;
    {http_extra}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        server_name localhost;
        root {d}/html;
        location / {{
            return 200 "{hello}";
        }}
        location = /status/500 {{
            return 500 "nginx error\n";
        }}
        location = /status/404 {{
            return 404 "nginx not found\n";
        }}
        location = /big {{
            alias {d}/html/big.bin;
        }}
        location = /chunked {{
            alias {d}/html/chunked.txt;
            sub_filter_types *;
            sub_filter 'REPLACEME' 'replaced';
            sub_filter_once off;
        }}
        {server_extra}
    }}
}}
"#,
            workers = cfg.worker_processes,
            nofile = cfg.worker_rlimit_nofile,
            conns = cfg.worker_connections,
            http_extra = cfg.http_extra,
            server_extra = cfg.server_extra,
            hello = NGINX_HELLO.replace('\n', "\\n"),
        );
        let conf_path = p.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let stderr_path = p.join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let error_log = p.join("error.log");
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(&p)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "nginx exited ({st}); stderr:\n{}\nerror.log:\n{}",
                    crate::tail_file(&stderr_path, 20),
                    crate::tail_file(&error_log, 20)
                ));
            }
            if let Ok(r) = http_get(addr, "/", Duration::from_secs(2))
                && r.status == 200
            {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "nginx not ready on {addr}; error.log:\n{}",
                    crate::tail_file(&error_log, 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let master = child.id();
        // Wait for all workers to exist so worker_pids() is complete.
        crate::poll_until(Duration::from_secs(5), || {
            (procs::child_pids(master).len() >= cfg.worker_processes as usize).then_some(())
        });
        eprintln!(
            "nginx master pid {master} on {addr}, prefix {}",
            p.display()
        );
        Ok(Nginx {
            child,
            port,
            prefix_path: p,
            prefix: Some(prefix),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    pub fn master_pid(&self) -> u32 {
        self.child.id()
    }
    /// Pids of the worker processes (the ones that serve requests).
    pub fn worker_pids(&self) -> Vec<u32> {
        procs::child_pids(self.child.id())
    }
    pub fn prefix(&self) -> &Path {
        &self.prefix_path
    }
    pub fn error_log_tail(&self, lines: usize) -> String {
        crate::tail_file(&self.prefix_path.join("error.log"), lines)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let workers = self.worker_pids();
        // SIGTERM = fast shutdown of master and workers.
        procs::terminate(&mut self.child, Duration::from_secs(3));
        for w in workers {
            if procs::is_alive(w) {
                procs::signal(w, libc::SIGKILL);
            }
        }
        if std::thread::panicking()
            && let Some(p) = self.prefix.take()
        {
            let path = p.keep();
            eprintln!("nginx prefix kept for inspection: {}", path.display());
        }
    }
}

// ---------------------------------------------------------------------------
// Spawned server processes (Python, Rust)
// ---------------------------------------------------------------------------

/// A server process that printed `LISTENING <port>`. Killed on drop.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    pub pid: u32,
    what: String,
    dir: Option<tempfile::TempDir>,
    log: PathBuf,
}

impl ServerProcess {
    fn spawn(mut cmd: Command, what: &str, dir: tempfile::TempDir, probe: Option<&str>) -> Self {
        let log = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&log).expect("create server log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let port = read_listening_port(&mut child, Duration::from_secs(15), what, &log);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Some(probe) = probe {
            wait_http(addr, probe, Duration::from_secs(10), &mut child, what, &log);
        }
        let pid = child.id();
        eprintln!("{what} pid {pid} on {addr}, log {}", log.display());
        ServerProcess {
            child,
            port,
            pid,
            what: what.to_string(),
            dir: Some(dir),
            log,
        }
    }

    /// A server that is ready once it printed `LISTENING <port>` (no HTTP
    /// probe: gRPC servers).
    pub fn spawn_listening(cmd: Command, what: &str, dir: tempfile::TempDir) -> Self {
        Self::spawn(cmd, what, dir, None)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn log_tail(&self, lines: usize) -> String {
        crate::tail_file(&self.log, lines)
    }
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "{} (pid {}) log tail:\n{}",
                self.what,
                self.pid,
                self.log_tail(20)
            );
            if let Some(d) = self.dir.take() {
                let _ = d.keep();
            }
        }
    }
}

/// The real Python interpreter (resolved once, so the pid we spawn is the
/// interpreter itself and not a pyenv shim script).
pub fn python_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 not found");
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if p.is_empty() {
            PathBuf::from("python3")
        } else {
            PathBuf::from(p)
        }
    })
    .clone()
}

/// Python server modes (see `src/python_server.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PythonMode {
    /// The routes of the script (status, slow, chunked, big, POST echo).
    Normal,
    /// Accepts and reads, never answers.
    Blackhole,
}

/// Options for [`PythonHttpServer::start_with`].
#[derive(Debug, Clone)]
pub struct PythonOptions {
    pub mode: PythonMode,
    pub env: Vec<(String, String)>,
    /// More arguments of the script (`--upstream HOST:PORT`, ...).
    pub args: Vec<String>,
}

impl Default for PythonOptions {
    fn default() -> Self {
        PythonOptions {
            mode: PythonMode::Normal,
            env: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// `python3 python_server.py` (http.server, HTTP/1.1 keep-alive, threads).
pub struct PythonHttpServer;

impl PythonHttpServer {
    #[allow(clippy::new_ret_no_self)]
    pub fn start() -> ServerProcess {
        Self::start_with(PythonOptions::default())
    }

    pub fn start_with(opts: PythonOptions) -> ServerProcess {
        let dir = tempdir("agent-tests-python-");
        let script = dir.path().join("python_server.py");
        std::fs::write(&script, include_str!("python_server.py")).expect("write python script");
        let mut cmd = Command::new(python_bin());
        cmd.arg("-u").arg(&script);
        let what = match opts.mode {
            PythonMode::Normal => "python server",
            PythonMode::Blackhole => {
                cmd.args(["--mode", "blackhole"]);
                "python blackhole server"
            }
        };
        cmd.args(&opts.args);
        cmd.env_remove("OTEL_SERVICE_NAME");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let probe = (opts.mode == PythonMode::Normal).then_some("/");
        ServerProcess::spawn(cmd, what, dir, probe)
    }
}

/// This crate's `rust_http_server` binary (hyper 1, HTTP/1.1 keep-alive).
pub struct RustHttpServer;

impl RustHttpServer {
    /// `bin` is `agent_tests::test_bins!().rust_http_server`.
    #[allow(clippy::new_ret_no_self)]
    pub fn start(bin: &Path) -> ServerProcess {
        Self::start_with_env(bin, &[])
    }

    pub fn start_with_env(bin: &Path, env: &[(&str, &str)]) -> ServerProcess {
        Self::start_with(bin, &[], env)
    }

    /// With more arguments (`--pg CONNINFO`) and environment variables.
    pub fn start_with(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let dir = tempdir("agent-tests-rust-server-");
        let mut cmd = Command::new(bin);
        cmd.args(["--port", "0"]).args(args);
        cmd.env_remove("OTEL_SERVICE_NAME");
        for (k, v) in env {
            cmd.env(k, v);
        }
        ServerProcess::spawn(cmd, "rust_http_server", dir, Some("/"))
    }
}
