//! Node metrics: node_exporter's default Linux collectors, exposed with
//! node_exporter's exact names on `/metrics` and as OpenTelemetry `system.*`
//! metrics over OTLP.
//!
//! Each collector is one small file: it reads its files in
//! [`Collector::update`] into plain values, then writes them as Prometheus
//! text ([`Collector::prometheus`], through [`expo::Exposition`]) and, where
//! OpenTelemetry's semantic conventions name the measurement, as OTLP data
//! points ([`Collector::otel`], through [`otel::OtelBatch`]). [`Node`] holds
//! the enabled collectors, times them and adds node_exporter's
//! `node_scrape_collector_duration_seconds` / `_success`.
//!
//! | collector | reads |
//! |---|---|
//! | `cpu` | `/proc/stat` (cpu lines) |
//! | `diskstats` | `/proc/diskstats`, `/run/udev/data/b<major>:<minor>` |
//! | `entropy` | `/proc/sys/kernel/random/{entropy_avail,poolsize}` |
//! | `filefd` | `/proc/sys/fs/file-nr` |
//! | `filesystem` | `/proc/1/mounts`, `statfs(2)` (with a timeout) |
//! | `loadavg` | `/proc/loadavg` |
//! | `meminfo` | `/proc/meminfo` |
//! | `netdev` | `/proc/net/dev`, `/sys/class/net/*/statistics/rx_nohandler` |
//! | `netstat` | `/proc/net/{netstat,snmp,snmp6}` |
//! | `os` | `/etc/os-release`, `/usr/lib/os-release` |
//! | `pressure` | `/proc/pressure/{cpu,io,memory}` |
//! | `sockstat` | `/proc/net/sockstat{,6}` |
//! | `stat` | `/proc/stat` (boot time, context switches, forks, interrupts, procs) |
//! | `textfile` | `*.prom` files of a directory |
//! | `time` | the clock, the time zone, `/sys/devices/system/clocksource` |
//! | `uname` | `uname(2)` |
//! | `vmstat` | `/proc/vmstat` |

pub mod config;
pub mod cpu;
pub mod diskstats;
pub mod entropy;
pub mod expo;
pub mod export;
pub mod filefd;
pub mod filesystem;
pub mod loadavg;
pub mod meminfo;
pub mod netdev;
pub mod netstat;
pub mod os;
pub mod otel;
pub mod pressure;
pub mod process;
pub mod sched;
pub mod scrape;
pub mod sockstat;
pub mod source;
pub mod start;
pub mod stat;
pub mod textfile;
pub mod time;
pub mod uname;
pub mod vmstat;

#[cfg(test)]
mod golden_tests;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use expo::{Exposition, Kind};
use otel::OtelBatch;
pub use source::{NodePaths, Reader};

/// Every collector, by its node_exporter name.
pub use agent_common::node::COLLECTORS;

/// node_exporter's default exclusions and filters (version 1.5).
pub mod defaults {
    pub const FILESYSTEM_MOUNT_POINTS_EXCLUDE: &str =
        "^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
    pub const FILESYSTEM_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|\
        debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|\
        rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";
    pub const DISKSTATS_DEVICE_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";
    /// Upstream node_exporter excludes no network device (the Debian
    /// package patches `^lo$` in).
    pub const NETDEV_DEVICE_EXCLUDE: &str = "";
    pub const NETSTAT_FIELDS: &str = "^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|\
        OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|\
        TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|\
        Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";
    pub const VMSTAT_FIELDS: &str = "^(oom_kill|pgpg|pswp|pg.*fault).*";
    pub const FILESYSTEM_MOUNT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
}

/// What the node collectors read and how they filter.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Enabled collectors (names from [`COLLECTORS`]).
    pub collectors: Vec<&'static str>,
    pub paths: NodePaths,
    /// The textfile collector's directory (`None`: the collector reports
    /// nothing).
    pub textfile_directory: Option<PathBuf>,
    pub filesystem_mount_points_exclude: String,
    pub filesystem_fs_types_exclude: String,
    pub filesystem_mount_timeout: Duration,
    pub diskstats_device_exclude: String,
    pub netdev_device_exclude: String,
    pub netstat_fields: String,
    pub vmstat_fields: String,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            collectors: COLLECTORS.to_vec(),
            paths: NodePaths::default(),
            textfile_directory: None,
            filesystem_mount_points_exclude: defaults::FILESYSTEM_MOUNT_POINTS_EXCLUDE.into(),
            filesystem_fs_types_exclude: defaults::FILESYSTEM_FS_TYPES_EXCLUDE.into(),
            filesystem_mount_timeout: defaults::FILESYSTEM_MOUNT_TIMEOUT,
            diskstats_device_exclude: defaults::DISKSTATS_DEVICE_EXCLUDE.into(),
            netdev_device_exclude: defaults::NETDEV_DEVICE_EXCLUDE.into(),
            netstat_fields: defaults::NETSTAT_FIELDS.into(),
            vmstat_fields: defaults::VMSTAT_FIELDS.into(),
        }
    }
}

/// Why a collector failed (it is reported with
/// `node_scrape_collector_success 0`, the others still run).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("invalid regular expression for {key}: {source}")]
    Regex {
        key: &'static str,
        #[source]
        source: Box<regex::Error>,
    },
}

impl NodeError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn parse(path: &Path, reason: impl Into<String>) -> Self {
        Self::Parse {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Compiles a filter regex; the empty string matches nothing.
pub fn filter_regex(key: &'static str, pattern: &str) -> Result<Option<regex::Regex>, NodeError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(pattern)
        .map(Some)
        .map_err(|e| NodeError::Regex {
            key,
            source: Box::new(e),
        })
}

/// One collector.
pub trait Collector: Send {
    /// node_exporter's name of the collector (`cpu`, `meminfo`, ...).
    fn name(&self) -> &'static str;
    /// Reads the collector's files into its values.
    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError>;
    /// Writes the values with node_exporter's names.
    fn prometheus(&self, out: &mut Exposition);
    /// Writes the values with OpenTelemetry's names (most collectors have
    /// some; the others have no semantic convention).
    fn otel(&self, _out: &mut OtelBatch) {}
}

struct Entry {
    collector: Box<dyn Collector>,
    duration: f64,
    ok: bool,
    warned: bool,
}

/// The enabled collectors.
pub struct Node {
    entries: Vec<Entry>,
    reader: Reader,
}

impl Node {
    /// Builds the enabled collectors. Fails only on an invalid filter
    /// expression (the configuration checks them first).
    pub fn new(opts: &NodeOptions) -> Result<Self, NodeError> {
        let p = &opts.paths;
        let mut entries = Vec::new();
        for name in COLLECTORS {
            if !opts.collectors.contains(name) {
                continue;
            }
            let collector: Box<dyn Collector> = match *name {
                "cpu" => Box::new(cpu::Cpu::new(p)),
                "diskstats" => Box::new(diskstats::DiskStats::new(
                    p,
                    filter_regex("diskstats.device_exclude", &opts.diskstats_device_exclude)?,
                )),
                "entropy" => Box::new(entropy::Entropy::new(p)),
                "filefd" => Box::new(filefd::FileFd::new(p)),
                "filesystem" => Box::new(filesystem::Filesystem::new(
                    p,
                    filter_regex(
                        "filesystem.mount_points_exclude",
                        &opts.filesystem_mount_points_exclude,
                    )?,
                    filter_regex(
                        "filesystem.fs_types_exclude",
                        &opts.filesystem_fs_types_exclude,
                    )?,
                    opts.filesystem_mount_timeout,
                )),
                "loadavg" => Box::new(loadavg::LoadAvg::new(p)),
                "meminfo" => Box::new(meminfo::MemInfo::new(p)),
                "netdev" => Box::new(netdev::NetDev::new(
                    p,
                    filter_regex("netdev.device_exclude", &opts.netdev_device_exclude)?,
                )),
                "netstat" => Box::new(netstat::NetStat::new(
                    p,
                    filter_regex("netstat.fields", &opts.netstat_fields)?,
                )),
                "os" => Box::new(os::Os::new(p)),
                "pressure" => Box::new(pressure::Pressure::new(p)),
                "sockstat" => Box::new(sockstat::SockStat::new(p)),
                "stat" => Box::new(stat::Stat::new(p)),
                "textfile" => Box::new(textfile::TextFile::new(opts.textfile_directory.clone())),
                "time" => Box::new(time::Time::new(p)),
                "uname" => Box::new(uname::Uname),
                "vmstat" => Box::new(vmstat::VmStat::new(
                    p,
                    filter_regex("vmstat.fields", &opts.vmstat_fields)?,
                )),
                _ => continue,
            };
            entries.push(Entry {
                collector,
                duration: 0.0,
                ok: false,
                warned: false,
            });
        }
        Ok(Self {
            entries,
            reader: Reader::new(),
        })
    }

    /// Names of the enabled collectors.
    pub fn enabled(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|e| e.collector.name())
    }

    /// Runs every collector, timing each.
    pub fn update(&mut self) {
        self.reader.new_cycle();
        for e in &mut self.entries {
            let start = Instant::now();
            let result = e.collector.update(&mut self.reader);
            e.duration = start.elapsed().as_secs_f64();
            e.ok = result.is_ok();
            if let Err(err) = result {
                let name = e.collector.name();
                if e.warned {
                    tracing::debug!("node collector {name} failed: {err}");
                } else {
                    tracing::warn!(
                        "node collector {name} failed: {err} (repeats are logged at debug)"
                    );
                    e.warned = true;
                }
            }
        }
    }

    /// The last values with node_exporter's names, and the scrape metrics.
    pub fn prometheus(&self, out: &mut Exposition) {
        for e in &self.entries {
            if e.ok {
                e.collector.prometheus(out);
            }
        }
        out.family(
            "node_scrape_collector_duration_seconds",
            "node_exporter: Duration of a collector scrape.",
            Kind::Gauge,
        );
        for e in &self.entries {
            out.sample(&[("collector", e.collector.name())], e.duration);
        }
        out.family(
            "node_scrape_collector_success",
            "node_exporter: Whether a collector succeeded.",
            Kind::Gauge,
        );
        for e in &self.entries {
            out.sample(
                &[("collector", e.collector.name())],
                if e.ok { 1.0 } else { 0.0 },
            );
        }
    }

    /// The last values with OpenTelemetry's names.
    pub fn otel(&self, out: &mut OtelBatch) {
        for e in &self.entries {
            if e.ok {
                e.collector.otel(out);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;

    use super::NodePaths;

    pub fn fixtures_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/node/fixtures")
    }

    /// The captured files of the development machine.
    pub fn fixture_paths() -> NodePaths {
        let d = fixtures_dir();
        NodePaths {
            proc: d.join("proc"),
            sys: d.join("sys"),
            root: d.join("root"),
        }
    }

    /// A temporary tree of files for edge cases.
    pub struct Tree(pub tempfile::TempDir);

    impl Tree {
        pub fn new() -> Self {
            Self(tempfile::tempdir().expect("temp dir"))
        }

        pub fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.0.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
            p
        }

        pub fn paths(&self) -> NodePaths {
            NodePaths {
                proc: self.0.path().join("proc"),
                sys: self.0.path().join("sys"),
                root: self.0.path().join("root"),
            }
        }
    }

    /// Runs one collector over `paths` and returns its exposition.
    pub fn render(c: &mut dyn super::Collector) -> String {
        let mut r = super::Reader::new();
        c.update(&mut r).expect("collector update");
        let mut e = super::Exposition::new();
        c.prometheus(&mut e);
        e.into_string()
    }
}
