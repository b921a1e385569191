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
    let keep = ["node_", "app_", "backup_"].iter().any(|p| series.starts_with(p));
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
        collectors: vec![
            "cpu", "diskstats", "entropy", "filefd", "loadavg", "meminfo", "netdev", "netstat",
            "os", "pressure", "sockstat", "stat", "textfile", "time", "vmstat",
        ],
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
    assert!(!ours_text.contains("node_scrape_collector_success{collector=\"cpu\"} 0"), "{ours_text}");
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
    assert!(golden.len() > 500, "golden file too small: {}", golden.len());
}
