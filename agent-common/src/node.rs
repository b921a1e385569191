//! The node collectors, by their node_exporter names: the agent implements
//! them (`agent/src/node/`), the tests and `cargo xtask bench metrics` run
//! node_exporter with the same set to compare. One list, so they cannot
//! drift apart.

/// Every node collector, by its node_exporter name.
pub const COLLECTORS: &[&str] = &[
    "cpu",
    "diskstats",
    "entropy",
    "filefd",
    "filesystem",
    "loadavg",
    "meminfo",
    "netdev",
    "netstat",
    "os",
    "pressure",
    "sockstat",
    "stat",
    "textfile",
    "time",
    "uname",
    "vmstat",
];
