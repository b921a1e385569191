//! `cargo xtask bench metrics`: the agent's `/metrics` against the real
//! node_exporter with the same collectors, interleaved.
//!
//! Both run side by side on loopback; each round scrapes one then the other
//! (the order alternates) `scrapes` times over a keep-alive connection, as
//! Prometheus does. Reported: median and p90 latency per scrape, the ratio,
//! and CPU per scrape — node_exporter's from its threads' schedstat, the
//! agent's from its own `agent_node_scrape_cpu_seconds_total` (collection and
//! page writing; the agent process also captures whatever HTTP traffic the
//! machine has, so its whole-process CPU is shown too, with the events it
//! read meanwhile). Then the agent alone is scraped every 15 s for
//! `idle_seconds`: its CPU share of one core over that window.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use agent_common::node::COLLECTORS;
use anyhow::{Context as _, Result, bail};

use crate::bench::{Proc, free_port, median, wait_port};

/// A keep-alive HTTP/1.1 client for one `GET /metrics` at a time.
struct Scraper {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl Scraper {
    fn new(port: u16) -> Self {
        Self { port, conn: None }
    }

    /// One scrape; returns the body length.
    fn scrape(&mut self) -> Result<usize> {
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().context("connection")?;
        write!(
            conn.get_mut(),
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n"
        )?;
        let mut line = String::new();
        conn.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 200") {
            self.conn = None;
            bail!("unexpected status line {line:?}");
        }
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut total = 0;
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16).context("chunk size")?;
                let mut buf = vec![0; size + 2];
                conn.read_exact(&mut buf)?;
                total += size;
                if size == 0 {
                    break;
                }
            }
        } else {
            let n = length.context("no content-length")?;
            let mut buf = vec![0; n];
            conn.read_exact(&mut buf)?;
            total = n;
        }
        Ok(total)
    }
}

/// CPU time of all threads of `pid`, in seconds (schedstat: nanoseconds).
fn process_cpu(pid: u32) -> f64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn get_text(port: u16) -> Result<String> {
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .context("curl")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

struct Side {
    latencies_ms: Vec<f64>,
    cpu_per_scrape_ms: Vec<f64>,
}

pub fn run(agent: &Path, rounds: u32, scrapes: u32, idle_seconds: u32) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("agent-bench-metrics-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let textfile = dir.join("textfile");
    fs::create_dir_all(&textfile)?;
    fs::write(
        textfile.join("bench.prom"),
        "# TYPE bench_jobs_total counter\nbench_jobs_total{queue=\"a\"} 3\n",
    )?;

    let ne_port = free_port()?;
    let mut ne_args = vec![
        format!("--web.listen-address=127.0.0.1:{ne_port}"),
        "--collector.disable-defaults".to_string(),
        format!("--collector.textfile.directory={}", textfile.display()),
        "--collector.netdev.device-exclude=^lo$".to_string(),
    ];
    ne_args.extend(COLLECTORS.iter().map(|c| format!("--collector.{c}")));
    let ne = Proc(
        Command::new("prometheus-node-exporter")
            .args(&ne_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus-node-exporter")?,
    );
    wait_port(ne_port)?;

    let agent_port = free_port()?;
    let config = dir.join("agent.yaml");
    fs::write(
        &config,
        format!(
            "node:\n  textfile_directory: {}\n  netdev:\n    device_exclude: \"^lo$\"\n\
             # The benchmark's own scrapes of node_exporter are not traced (their\n\
             # spans and RED series would be on the agent's page, not node_exporter's).\n\
             selection:\n  exclude:\n    ports: [\"{ne_port}\"]\n",
            textfile.display()
        ),
    )?;
    let agent_log = dir.join("agent.stderr");
    let agent_proc = Proc(
        Command::new(agent)
            .args(["--export", "none", "--config"])
            .arg(&config)
            .args(["--metrics-address", &format!("127.0.0.1:{agent_port}")])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&agent_log)?)
            .spawn()
            .context("starting the agent")?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fs::read_to_string(&agent_log)?.contains("agent ready") {
        if Instant::now() > deadline {
            bail!("agent not ready:\n{}", fs::read_to_string(&agent_log)?);
        }
        sleep(Duration::from_millis(100));
    }

    let mut agent_client = Scraper::new(agent_port);
    let mut ne_client = Scraper::new(ne_port);
    // Warm-up: caches, connections, allocator.
    for _ in 0..20 {
        agent_client.scrape()?;
        ne_client.scrape()?;
    }
    let page_agent = agent_client.scrape()?;
    let page_ne = ne_client.scrape()?;

    let mut agent_side = Side {
        latencies_ms: Vec::new(),
        cpu_per_scrape_ms: Vec::new(),
    };
    let mut ne_side = Side {
        latencies_ms: Vec::new(),
        cpu_per_scrape_ms: Vec::new(),
    };
    let mut rows = Vec::new();
    let mut agent_process_cpu = Vec::new();
    let mut events_during = 0.0;
    for round in 0..rounds {
        let agent_first = round % 2 == 0;
        let mut round_medians = [0.0; 2];
        for step in 0..2 {
            let is_agent = (step == 0) == agent_first;
            if is_agent {
                let before = get_text(agent_port)?;
                let cpu0 = process_cpu(agent_proc.pid());
                let mut lat = Vec::new();
                for _ in 0..scrapes {
                    let t = Instant::now();
                    agent_client.scrape()?;
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
                let cpu1 = process_cpu(agent_proc.pid());
                let after = get_text(agent_port)?;
                let own = metric(&after, "agent_node_scrape_cpu_seconds_total")
                    - metric(&before, "agent_node_scrape_cpu_seconds_total");
                // The page after `before` up to the one before `after`.
                agent_side
                    .cpu_per_scrape_ms
                    .push(own / f64::from(scrapes + 1) * 1e3);
                agent_process_cpu.push((cpu1 - cpu0) / f64::from(scrapes) * 1e3);
                events_during += metric(&after, "agent_events_read_total")
                    - metric(&before, "agent_events_read_total");
                round_medians[0] = median(lat.clone());
                agent_side.latencies_ms.extend(lat);
            } else {
                let cpu0 = process_cpu(ne.pid());
                let mut lat = Vec::new();
                for _ in 0..scrapes {
                    let t = Instant::now();
                    ne_client.scrape()?;
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
                let cpu1 = process_cpu(ne.pid());
                ne_side
                    .cpu_per_scrape_ms
                    .push((cpu1 - cpu0) / f64::from(scrapes) * 1e3);
                round_medians[1] = median(lat.clone());
                ne_side.latencies_ms.extend(lat);
            }
        }
        rows.push(format!(
            "| {} | {} | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} |",
            round + 1,
            if agent_first {
                "agent, node_exporter"
            } else {
                "node_exporter, agent"
            },
            round_medians[0],
            round_medians[1],
            round_medians[1] / round_medians[0],
            agent_side.cpu_per_scrape_ms.last().copied().unwrap_or(0.0),
            ne_side.cpu_per_scrape_ms.last().copied().unwrap_or(0.0),
        ));
        eprintln!("{}", rows.last().expect("pushed"));
    }
    drop(ne);

    // Idle: one scrape every 15 s, nothing else from us.
    let idle = if idle_seconds > 0 {
        let before = get_text(agent_port)?;
        // utime + stime of the whole process: counts threads that exit
        // meanwhile (the runtime's blocking pool), unlike a sum over tasks.
        let cpu0 = crate::bench::cpu_seconds(agent_proc.pid())?;
        let t0 = Instant::now();
        let total = Duration::from_secs(u64::from(idle_seconds));
        let mut n = 0u32;
        while t0.elapsed() < total {
            agent_client.scrape()?;
            n += 1;
            let next = Duration::from_secs(15 * u64::from(n)).min(total);
            if let Some(wait) = next.checked_sub(t0.elapsed()) {
                sleep(wait);
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = crate::bench::cpu_seconds(agent_proc.pid())? - cpu0;
        let after = get_text(agent_port)?;
        let events =
            metric(&after, "agent_events_read_total") - metric(&before, "agent_events_read_total");
        let own = metric(&after, "agent_node_scrape_cpu_seconds_total")
            - metric(&before, "agent_node_scrape_cpu_seconds_total");
        Some((wall, cpu, events, own, n))
    } else {
        None
    };
    drop(agent_proc);
    let _ = fs::remove_dir_all(&dir);

    let a_med = median(agent_side.latencies_ms.clone());
    let n_med = median(ne_side.latencies_ms.clone());
    let a_p90 = percentile(agent_side.latencies_ms.clone(), 0.9);
    let n_p90 = percentile(ne_side.latencies_ms.clone(), 0.9);
    let a_cpu = median(agent_side.cpu_per_scrape_ms.clone());
    let n_cpu = median(ne_side.cpu_per_scrape_ms.clone());
    let mut r = String::new();
    r.push_str(&format!(
        "### `/metrics` scrape: agent vs prometheus-node-exporter (Debian 1.5.0), {} collectors, {rounds} interleaved rounds × {scrapes} scrapes, keep-alive\n\n",
        COLLECTORS.len()
    ));
    r.push_str(&format!(
        "Page size: agent {page_agent} bytes (node metrics and the agent's own), node_exporter {page_ne} bytes.\n\n"
    ));
    r.push_str("| round | order | agent median ms | node_exporter median ms | ratio | agent CPU ms/scrape | node_exporter CPU ms/scrape |\n|---|---|---|---|---|---|---|\n");
    for row in &rows {
        r.push_str(row);
        r.push('\n');
    }
    r.push_str(&format!(
        "\n**Medians over all scrapes**: latency agent {a_med:.3} ms (p90 {a_p90:.3}) vs node_exporter {n_med:.3} ms (p90 {n_p90:.3}): \
         **{:.1}× faster**. CPU per scrape (median of rounds): agent {a_cpu:.3} ms vs node_exporter {n_cpu:.3} ms: **{:.1}× less**.\n",
        n_med / a_med,
        n_cpu / a_cpu,
    ));
    r.push_str(&format!(
        "Agent whole-process CPU per scrape (median of rounds, includes capturing the machine's other HTTP traffic: \
         {events_during:.0} ring records read during the scrape rounds): {:.3} ms.\n",
        median(agent_process_cpu),
    ));
    if let Some((wall, cpu, events, own, n)) = idle {
        r.push_str(&format!(
            "\n**Idle at a 15 s scrape interval** ({wall:.0} s, {n} scrapes): agent process {:.3} % of one core \
             ({events:.0} ring records of other traffic read meanwhile); of which node scrapes {:.4} % \
             ({:.3} ms per scrape).\n",
            cpu / wall * 100.0,
            own / wall * 100.0,
            own / f64::from(n.max(1)) * 1e3,
        ));
    }
    Ok(r)
}
