//! The agent's exposition of the captured files against what the real
//! node_exporter (Debian 1.5.0) exposes for the very same files
//! (`fixtures/node_exporter.prom`, made by `fixtures/regen-golden.sh`):
//! names, HELP, types, labels and values must be identical.

use std::collections::BTreeSet;

use super::{
    Exposition, Node, NodeOptions,
    test_support::{fixture_paths, fixtures_dir},
};

/// Lines the golden file leaves out: values of the moment, per-machine
/// values, and `receive_nohandler` (node_exporter reads it over netlink,
/// which a fixture cannot feed, so the golden run read `/proc/net/dev`).
fn comparable(line: &str) -> bool {
    let series = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
        .unwrap_or(line);
    let keep = ["node_", "app_", "backup_"]
        .iter()
        .any(|p| series.starts_with(p));
    let skip = [
        "node_scrape_",
        "node_exporter_",
        "node_time_seconds",
        "node_time_zone",
        "node_filesystem_",
        "node_textfile_mtime",
        "node_network_receive_nohandler",
    ]
    .iter()
    .any(|p| series.starts_with(p));
    keep && !skip
}

#[test]
fn same_exposition_as_node_exporter() {
    let dir = fixtures_dir();
    let opts = NodeOptions {
        // All but those the fixtures have no files for.
        collectors: agent_common::node::COLLECTORS
            .iter()
            .copied()
            .filter(|c| !["filesystem", "uname"].contains(c))
            .collect(),
        paths: fixture_paths(),
        textfile_directory: Some(dir.join("textfile")),
        // The Debian package's default (upstream excludes nothing).
        netdev_device_exclude: "^lo$".into(),
        ..NodeOptions::default()
    };
    let mut node = Node::new(&opts).unwrap();
    node.update();
    let mut e = Exposition::new();
    node.prometheus(&mut e);
    let ours_text = e.as_str().replace(&dir.display().to_string(), "@FIXTURES@");
    assert!(ours_text.contains("node_scrape_collector_success{collector=\"cpu\"} 1\n"));
    assert!(
        !ours_text.contains("node_scrape_collector_success{collector=\"cpu\"} 0"),
        "{ours_text}"
    );
    let ours: BTreeSet<&str> = ours_text.lines().filter(|l| comparable(l)).collect();
    let golden_text = std::fs::read_to_string(dir.join("node_exporter.prom")).unwrap();
    let golden: BTreeSet<&str> = golden_text.lines().filter(|l| comparable(l)).collect();
    let missing: Vec<&&str> = golden.difference(&ours).collect();
    let extra: Vec<&&str> = ours.difference(&golden).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "node_exporter has but the agent not:\n{}\n\nthe agent has but node_exporter not:\n{}",
        missing.iter().map(|s| **s).collect::<Vec<_>>().join("\n"),
        extra.iter().map(|s| **s).collect::<Vec<_>>().join("\n"),
    );
    assert!(
        golden.len() > 500,
        "golden file too small: {}",
        golden.len()
    );
}

/// `cargo test --release -p agent --lib node::golden_tests::profile -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a test"]
fn profile_live_scrape() {
    let mut node = Node::new(&NodeOptions::default()).unwrap();
    let metrics = crate::telemetry::Metrics::new();
    let n = 2000;
    let mut per: std::collections::BTreeMap<&str, f64> = Default::default();
    let mut render = 0.0;
    let mut own = 0.0;
    let mut e = Exposition::new();
    for _ in 0..n {
        node.update();
        for en in &node.entries {
            *per.entry(en.collector.name()).or_default() += en.duration;
        }
        let t = std::time::Instant::now();
        e.clear();
        node.prometheus(&mut e);
        render += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let _ = metrics.render();
        own += t.elapsed().as_secs_f64();
    }
    let total: f64 = per.values().sum();
    for (k, v) in &per {
        eprintln!("{k:12} {:7.1} us", v / n as f64 * 1e6);
    }
    eprintln!("collectors   {:7.1} us", total / n as f64 * 1e6);
    eprintln!("render       {:7.1} us", render / n as f64 * 1e6);
    eprintln!("agent's own  {:7.1} us", own / n as f64 * 1e6);
}

#[test]
#[ignore = "a measurement, not a test"]
fn profile_fixture_scrape() {
    let opts = NodeOptions {
        paths: fixture_paths(),
        textfile_directory: Some(fixtures_dir().join("textfile")),
        ..NodeOptions::default()
    };
    let mut node = Node::new(&opts).unwrap();
    let n = 2000;
    let mut per: std::collections::BTreeMap<&str, f64> = Default::default();
    for _ in 0..n {
        node.update();
        for en in &node.entries {
            *per.entry(en.collector.name()).or_default() += en.duration;
        }
    }
    for (k, v) in &per {
        eprintln!("{k:12} {:7.1} us", v / n as f64 * 1e6);
    }
}
