//! Node metrics against the real thing: the Debian `prometheus-node-exporter`
//! runs beside the agent with the same collectors; names, HELP, types,
//! label sets and values must agree. `promtool check metrics` must find
//! nothing in the agent's page that it does not find in node_exporter's, and
//! a real Prometheus scraping the agent must see it up and answer PromQL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agent_tests::agent::{AgentOptions, AgentProcess, require_bpf};
use agent_tests::node_exporter::{
    COLLECTORS, Family, families, promql, promtool_findings, start_node_exporter, start_prometheus,
};

/// A textfile directory with one file, shared by both exporters.
fn textfile_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("agent-tests-textfile-")
        .tempdir()
        .expect("temp dir");
    std::fs::write(
        dir.path().join("batch.prom"),
        "# HELP batch_jobs_total Jobs run.\n# TYPE batch_jobs_total counter\n\
         batch_jobs_total{queue=\"a\"} 3\nbatch_last_success 1.7e9\n",
    )
    .expect("write");
    dir
}

/// Both read the same textfile directory and leave `lo` out (its counters
/// move with every scrape; the Debian package's default).
fn agent_config(textfile: &std::path::Path) -> String {
    format!(
        "node:\n  textfile_directory: {}\n  netdev:\n    device_exclude: \"^lo$\"\n",
        textfile.display()
    )
}

fn node_exporter_args(textfile: &std::path::Path) -> Vec<String> {
    vec![
        format!("--collector.textfile.directory={}", textfile.display()),
        "--collector.netdev.device-exclude=^lo$".to_string(),
    ]
}

/// Only what both expose as node metrics (node_exporter's own build info
/// and its Go runtime metrics aside).
fn node_families(text: &str) -> BTreeMap<String, Family> {
    families(text)
        .into_iter()
        .filter(|(name, _)| {
            (name.starts_with("node_") || name.starts_with("batch_"))
                && name != "node_exporter_build_info"
        })
        .collect()
}

/// Gauges that are allowed to move a lot between two scrapes a few
/// milliseconds apart on a busy machine, and how much (absolute).
fn gauge_slack(name: &str) -> f64 {
    match name {
        n if n.starts_with("node_time_seconds") => 60.0,
        n if n.starts_with("node_scrape_collector_duration") => f64::INFINITY,
        n if n.starts_with("node_memory_") => 256.0 * 1024.0 * 1024.0,
        n if n.starts_with("node_filesystem_") => 1024.0 * 1024.0 * 1024.0,
        n if n.starts_with("node_sockstat_") => 500.0,
        n if n.starts_with("node_procs_") || n.starts_with("node_load") => 20.0,
        n if n.starts_with("node_filefd_") => 2000.0,
        n if n.starts_with("node_entropy_") => 256.0,
        _ => 0.0,
    }
}

/// Series whose value may go back between scrapes (gauges in untyped
/// families).
fn untyped_gauge(name: &str) -> bool {
    name.starts_with("node_netstat_Tcp_CurrEstab") || name.starts_with("node_netstat_Ip_Forwarding")
}

/// Compares one round: `before` and `after` are node_exporter's pages
/// around the agent's. Returns the differences.
fn compare(
    before: &BTreeMap<String, Family>,
    agent: &BTreeMap<String, Family>,
    after: &BTreeMap<String, Family>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, ne) in before {
        let Some(ours) = agent.get(name) else {
            problems.push(format!("{name}: missing in the agent"));
            continue;
        };
        if ours.help != ne.help {
            problems.push(format!(
                "{name}: HELP {:?} != node_exporter's {:?}",
                ours.help, ne.help
            ));
        }
        if ours.kind != ne.kind {
            problems.push(format!(
                "{name}: TYPE {} != node_exporter's {}",
                ours.kind, ne.kind
            ));
        }
        if ours.label_sets() != ne.label_sets() {
            problems.push(format!(
                "{name}: label sets {:?} != node_exporter's {:?}",
                ours.label_sets(),
                ne.label_sets()
            ));
        }
        let series_ne: Vec<&String> = ne.series.keys().collect();
        let series_ours: Vec<&String> = ours.series.keys().collect();
        if series_ne != series_ours {
            problems.push(format!(
                "{name}: series {series_ours:?} != node_exporter's {series_ne:?}"
            ));
            continue;
        }
        let later = after.get(name);
        for (key, &v1) in &ne.series {
            let v2 = later.and_then(|f| f.series.get(key)).copied().unwrap_or(v1);
            let ours_v = ours.series[key];
            let (lo, hi) = (v1.min(v2), v1.max(v2));
            let counter = ne.kind == "counter" || (ne.kind == "untyped" && !untyped_gauge(key));
            let slack = if counter {
                // CPU seconds tick in 1/100 s; everything else is exact.
                1e-9 * hi.abs() + 0.011
            } else {
                gauge_slack(key).max(0.1 * hi.abs()) + 1e-9
            };
            if !(ours_v >= lo - slack && ours_v <= hi + slack) {
                problems.push(format!(
                    "{key}: agent {ours_v} outside node_exporter's {v1} .. {v2} (slack {slack})"
                ));
            }
        }
    }
    for name in agent.keys() {
        if !before.contains_key(name) {
            problems.push(format!("{name}: only the agent has it"));
        }
    }
    problems
}

#[test]
fn side_by_side_with_node_exporter() {
    if !require_bpf() {
        return;
    }
    let textfile = textfile_dir();
    let ne = start_node_exporter(COLLECTORS, &node_exporter_args(textfile.path()));
    let agent = AgentProcess::start(
        AgentOptions::new()
            .export("none")
            .config_yaml(&agent_config(textfile.path())),
    );
    // Transient differences (a device or mount appearing between scrapes)
    // get another round.
    let mut last = Vec::new();
    for round in 0..4 {
        let before = node_families(&ne.get("/metrics").unwrap());
        let ours = node_families(&agent.metrics_text());
        let after = node_families(&ne.get("/metrics").unwrap());
        last = compare(&before, &ours, &after);
        if last.is_empty() {
            let collectors = ours["node_scrape_collector_success"].series.len();
            assert_eq!(collectors, COLLECTORS.len());
            assert!(
                ours["node_scrape_collector_success"]
                    .series
                    .values()
                    .all(|v| *v == 1.0),
                "a collector failed: {:?}",
                ours["node_scrape_collector_success"].series
            );
            assert!(ours.len() > 150, "only {} families", ours.len());
            eprintln!("round {round}: {} families agree", ours.len());
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the agent and node_exporter disagree:\n{}", last.join("\n"));
}

#[test]
fn promtool_finds_nothing_node_exporter_does_not_have() {
    if !require_bpf() {
        return;
    }
    let textfile = textfile_dir();
    let ne = start_node_exporter(COLLECTORS, &node_exporter_args(textfile.path()));
    let agent = AgentProcess::start(
        AgentOptions::new()
            .export("none")
            .config_yaml(&agent_config(textfile.path())),
    );
    let ours = promtool_findings(&agent.metrics_text());
    let theirs = promtool_findings(&ne.get("/metrics").unwrap());
    let new: Vec<&String> = ours.difference(&theirs).collect();
    assert!(
        new.is_empty(),
        "promtool findings in the agent's page only:\n{new:#?}\n(node_exporter's: {theirs:#?})"
    );
    // node_exporter's own legacy names are reported on both.
    assert!(
        ours.iter()
            .any(|f| f.contains("node_memory_MemTotal_bytes")),
        "promtool did not run? {ours:?}"
    );
}

#[test]
fn prometheus_scrapes_the_agent() {
    if !require_bpf() {
        return;
    }
    let agent = AgentProcess::start(AgentOptions::new().export("none"));
    let prometheus = start_prometheus(agent.metrics_addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let up = loop {
        if let Ok(r) = promql(&prometheus, "up{job=\"agent\"}")
            && let Some((_, v)) = r.first()
            && *v == 1.0
        {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        up,
        "up{{job=\"agent\"}} never became 1:\n{}",
        prometheus.log_tail()
    );
    let cpus = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    let count = promql(
        &prometheus,
        "count(node_cpu_seconds_total{job=\"agent\",mode=\"idle\"})",
    )
    .unwrap();
    assert_eq!(count.first().map(|c| c.1), Some(cpus as f64), "{count:?}");
    let mem = promql(
        &prometheus,
        "node_memory_MemTotal_bytes{job=\"agent\"} - node_memory_MemAvailable_bytes{job=\"agent\"}",
    )
    .unwrap();
    assert!(mem.first().is_some_and(|m| m.1 > 0.0), "{mem:?}");
    // A rate needs two scrapes.
    let rate = agent_tests::poll_until(Duration::from_secs(30), || {
        promql(
            &prometheus,
            "sum(rate(node_cpu_seconds_total{job=\"agent\",mode!=\"idle\"}[5s]))",
        )
        .ok()
        .filter(|r| !r.is_empty())
    });
    let rate = rate.expect("rate() over node_cpu_seconds_total");
    assert!(
        rate[0].1 >= 0.0 && rate[0].1 <= cpus as f64 + 0.5,
        "{rate:?}"
    );
}

#[test]
fn collectors_switch_off() {
    if !require_bpf() {
        return;
    }
    let agent = AgentProcess::start(
        AgentOptions::new()
            .export("none")
            .arg("--node-collectors")
            .arg("none,loadavg,meminfo"),
    );
    let fams = node_families(&agent.metrics_text());
    let collectors: Vec<&String> = fams["node_scrape_collector_success"]
        .series
        .keys()
        .collect();
    assert_eq!(
        collectors,
        vec![
            "node_scrape_collector_success{collector=\"loadavg\"}",
            "node_scrape_collector_success{collector=\"meminfo\"}"
        ]
    );
    assert!(fams.contains_key("node_load1"));
    assert!(!fams.contains_key("node_cpu_seconds_total"));
    // The agent's own metrics are still on the page.
    assert!(agent.metrics_text().contains("agent_events_read_total"));
}
