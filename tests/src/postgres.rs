//! A private PostgreSQL server for one test: its own data directory
//! (`initdb` as the `postgres` user, trust authentication), a free loopback
//! port, fast settings (no fsync), stopped (fast shutdown) and removed on
//! drop. Plus the real clients the tests drive: psql, pgbench and this
//! crate's tokio-postgres binary (`src/bin/pg_client.rs`).

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::otlp::{ReceivedSpan, SpanKind};
use crate::procs;

/// Directory of the PostgreSQL server binaries: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn pg_bin_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

/// uid and gid of the `postgres` system user (the server refuses to run as
/// root).
fn postgres_user() -> Option<(u32, u32)> {
    let name = c"postgres";
    // SAFETY: getpwnam with a valid C string; the result is read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null pointer returned by getpwnam.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn chown(path: &Path, uid: u32, gid: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: valid C string.
    let rc = unsafe { libc::chown(c.as_ptr(), uid, gid) };
    assert_eq!(
        rc,
        0,
        "chown {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// A running PostgreSQL server.
pub struct PostgresServer {
    child: Option<Child>,
    pub port: u16,
    pub pid: u32,
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    log: PathBuf,
}

impl PostgresServer {
    /// initdb + start; panics with the server log on failure.
    pub fn start() -> Self {
        let bin = pg_bin_dir().expect(
            "PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BIN)",
        );
        let (uid, gid) = postgres_user().expect("no `postgres` user: apt-get install postgresql");
        let dir = tempfile::Builder::new()
            .prefix("agent-tests-pg-")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        chown(dir.path(), uid, gid);
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let init = Command::new(bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .uid(uid)
            .gid(gid)
            .current_dir(dir.path())
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        let mut last = String::new();
        for _ in 0..3 {
            let port = crate::free_port();
            match Self::try_run(&bin, dir.path(), &data, &log, port, uid, gid) {
                Ok(child) => {
                    let pid = child.id();
                    return PostgresServer {
                        child: Some(child),
                        port,
                        pid,
                        dir: Some(dir),
                        bin,
                        log,
                    };
                }
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL failed to start 3 times; last error:\n{last}");
    }

    fn try_run(
        bin: &Path,
        dir: &Path,
        data: &Path,
        log: &Path,
        port: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Child, String> {
        let logf = std::fs::File::create(log).map_err(|e| e.to_string())?;
        chown(log, uid, gid);
        let mut child = Command::new(bin.join("postgres"))
            .arg("-D")
            .arg(data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "max_connections=40",
                "-c",
                "ssl=off",
            ])
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(|e| e.to_string())?)
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("spawn postgres: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "postgres exited ({st}):\n{}",
                    crate::tail_file(log, 30)
                ));
            }
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "postgres not ready in 30 s:\n{}",
                    crate::tail_file(log, 30)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// libpq / tokio-postgres connection string.
    pub fn conninfo(&self, application_name: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres application_name={application_name}",
            self.port
        )
    }

    /// Runs psql (`-X -q`, stop on nothing) with `args`; stdin from `input`.
    /// Returns the output and psql's pid.
    pub fn psql(&self, args: &[&str], input: &str) -> (Output, u32) {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres"])
            .args(args)
            .env("PGAPPNAME", "agent-tests-psql")
            .env_remove("PGSSLMODE");
        run_with_input(cmd, input, Duration::from_secs(120), "psql")
    }

    /// Runs pgbench against this server with `args`. Returns the output and
    /// pgbench's pid.
    pub fn pgbench(&self, args: &[&str]) -> (Output, u32) {
        let mut cmd = Command::new(self.bin.join("pgbench"));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(args)
        .arg("postgres");
        run_with_input(cmd, "", Duration::from_secs(300), "pgbench")
    }

    /// The server log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::tail_file(&self.log, lines)
    }

    /// Server spans of this server (its backends' SERVER spans on its port).
    pub fn server_spans(&self, spans: &[ReceivedSpan]) -> Vec<ReceivedSpan> {
        spans
            .iter()
            .filter(|s| {
                s.kind == SpanKind::Server
                    && s.attr_str("db.system.name") == Some("postgresql")
                    && s.attr_int("server.port") == Some(i64::from(self.port))
            })
            .cloned()
            .collect()
    }

    /// Client spans of process `pid` to this server.
    pub fn client_spans(&self, spans: &[ReceivedSpan], pid: u32) -> Vec<ReceivedSpan> {
        spans
            .iter()
            .filter(|s| {
                s.kind == SpanKind::Client
                    && s.pid() == Some(pid)
                    && s.attr_str("db.system.name") == Some("postgresql")
                    && s.attr_int("server.port") == Some(i64::from(self.port))
            })
            .cloned()
            .collect()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: fast shutdown (disconnects clients, no checkpoint wait).
            procs::signal(child.id(), libc::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- postgres log ---\n{}", self.log_tail(40));
            if let Some(d) = self.dir.take() {
                eprintln!("postgres directory kept in {}", d.keep().display());
            }
        }
    }
}

fn run_with_input(mut cmd: Command, input: &str, timeout: Duration, what: &str) -> (Output, u32) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => (out, pid),
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => {
            procs::signal(pid, libc::SIGKILL);
            panic!("{what} (pid {pid}) did not finish within {timeout:?}");
        }
    }
}

/// The tokio-postgres client binary running a scenario, with its stdout
/// read line by line.
pub struct PgClient {
    child: Child,
    pub pid: u32,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub transcript: Vec<String>,
}

impl PgClient {
    pub fn start(bin: &Path, conninfo: &str, scenario: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.arg(conninfo).arg(scenario);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        PgClient {
            child,
            pid,
            stdin,
            lines: rx,
            transcript: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `pred` (panics after `timeout`, on
    /// `FAIL` or at end of output).
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.transcript.push(line.clone());
                    assert!(
                        !line.starts_with("FAIL"),
                        "pg_client failed: {line}\n{}",
                        self.transcript.join("\n")
                    );
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "pg_client (pid {}) did not print the expected line within {timeout:?}:\n{}",
                    self.pid,
                    self.transcript.join("\n")
                ),
            }
        }
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to pg_client");
        stdin.flush().expect("flush");
    }

    /// Waits for `DONE n` and the exit; returns n.
    pub fn finish(mut self, timeout: Duration) -> usize {
        let done = self.wait_line(|l| l.starts_with("DONE "), timeout);
        let n = done[5..].trim().parse().expect("DONE count");
        let st = self.child.wait().expect("wait pg_client");
        assert!(st.success(), "pg_client exited with {st}");
        n
    }

    /// Lines starting with `prefix` seen so far.
    pub fn lines_starting(&self, prefix: &str) -> Vec<String> {
        self.transcript
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Spans grouped by name, as `name × count` lines (for failure messages and
/// count checks).
pub fn count_by_name(spans: &[ReceivedSpan]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for s in spans {
        *m.entry(s.name.clone()).or_insert(0) += 1;
    }
    m
}
