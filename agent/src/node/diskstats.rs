//! `diskstats` collector: `/proc/diskstats` (procfs), with node_exporter's
//! device exclusion, and `node_disk_info` labelled from udev's database.

use std::path::PathBuf;

use procfs_core::{DiskStat, DiskStats as ProcDiskStats, FromRead as _};
use regex::Regex;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
    netstat::CachedFilter,
    otel::{OtelBatch, kv, metric_desc},
};

/// node_exporter counts sectors of 512 bytes, whatever the device's.
const SECTOR: f64 = 512.0;
/// Milliseconds to seconds, multiplied as node_exporter does (so
/// `372.02500000000003` prints the same).
const MS: f64 = 0.001;

type Field = fn(&DiskStat) -> Option<f64>;

/// (name, help, type, value) per family, in the kernel's column order.
const FAMILIES: [(&str, &str, Kind, Field); 17] = [
    (
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        Kind::Counter,
        |d| Some(d.reads as f64),
    ),
    (
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        Kind::Counter,
        |d| Some(d.merged as f64),
    ),
    (
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        Kind::Counter,
        |d| Some(d.sectors_read as f64 * SECTOR),
    ),
    (
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        Kind::Counter,
        |d| Some(d.time_reading as f64 * MS),
    ),
    (
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        Kind::Counter,
        |d| Some(d.writes as f64),
    ),
    (
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        Kind::Counter,
        |d| Some(d.writes_merged as f64),
    ),
    (
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        Kind::Counter,
        |d| Some(d.sectors_written as f64 * SECTOR),
    ),
    (
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        Kind::Counter,
        |d| Some(d.time_writing as f64 * MS),
    ),
    (
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        Kind::Gauge,
        |d| Some(d.in_progress as f64),
    ),
    (
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        Kind::Counter,
        |d| Some(d.time_in_progress as f64 * MS),
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        Kind::Counter,
        |d| Some(d.weighted_time_in_progress as f64 * MS),
    ),
    (
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        Kind::Counter,
        |d| d.discards.map(|v| v as f64),
    ),
    (
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        Kind::Counter,
        |d| d.discards_merged.map(|v| v as f64),
    ),
    (
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        Kind::Counter,
        |d| d.sectors_discarded.map(|v| v as f64),
    ),
    (
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        Kind::Counter,
        |d| d.time_discarding.map(|v| v as f64 * MS),
    ),
    (
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        Kind::Counter,
        |d| d.flushes.map(|v| v as f64),
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        Kind::Counter,
        |d| d.time_flushing.map(|v| v as f64 * MS),
    ),
];

metric_desc!(
    DISK_IO,
    "system.disk.io",
    "By",
    Counter,
    "Disk bytes transferred."
);
metric_desc!(
    DISK_OPERATIONS,
    "system.disk.operations",
    "{operation}",
    Counter,
    "Disk operations count."
);
metric_desc!(
    DISK_IO_TIME,
    "system.disk.io_time",
    "s",
    Counter,
    "Time disk spent activated."
);
metric_desc!(
    DISK_OPERATION_TIME,
    "system.disk.operation_time",
    "s",
    Counter,
    "Sum of the time each operation took to complete."
);
metric_desc!(
    DISK_MERGED,
    "system.disk.merged",
    "{operation}",
    Counter,
    "The number of disk reads/writes merged into single physical disk access operations."
);
metric_desc!(
    DISK_PENDING,
    "system.disk.pending_operations",
    "{operation}",
    UpDownCounter,
    "The queue size of pending I/O operations."
);

/// udev properties of one device (`E:KEY=value` lines).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdevInfo {
    pub path: String,
    pub wwn: String,
    pub model: String,
    pub serial: String,
    pub revision: String,
}

impl UdevInfo {
    pub fn parse(text: &str) -> Self {
        let mut info = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.strip_prefix("E:").and_then(|l| l.split_once('=')) else {
                continue;
            };
            let slot = match key {
                "ID_PATH" => &mut info.path,
                "ID_WWN" => &mut info.wwn,
                "ID_MODEL" => &mut info.model,
                "ID_SERIAL_SHORT" => &mut info.serial,
                "ID_REVISION" => &mut info.revision,
                _ => continue,
            };
            *slot = value.to_string();
        }
        info
    }
}

pub struct DiskStats {
    path: PathBuf,
    udev: PathBuf,
    exclude: CachedFilter,
    disks: Vec<(DiskStat, UdevInfo)>,
}

impl DiskStats {
    pub fn new(p: &NodePaths, exclude: Option<Regex>) -> Self {
        Self {
            path: p.proc("diskstats"),
            udev: p.root("run/udev/data"),
            exclude: CachedFilter::new(exclude),
            disks: Vec::new(),
        }
    }
}

impl Collector for DiskStats {
    fn name(&self) -> &'static str {
        "diskstats"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let text = reader.read_kept(&self.path)?;
        let stats = ProcDiskStats::from_read(text.as_bytes())
            .map_err(|e| NodeError::parse(&self.path, e.to_string()))?;
        self.disks.clear();
        for d in stats.0 {
            if self.exclude.excludes(&d.name) {
                continue;
            }
            let udev = self.udev.join(format!("b{}:{}", d.major, d.minor));
            let info = match reader.read_optional(&udev) {
                Ok(Some(text)) => UdevInfo::parse(text),
                _ => UdevInfo::default(),
            };
            self.disks.push((d, info));
        }
        self.disks.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        for (name, help, kind, get) in FAMILIES {
            // A family only when this kernel has the column.
            if !self.disks.iter().any(|(d, _)| get(d).is_some()) {
                continue;
            }
            out.family(name, help, kind);
            for (d, _) in &self.disks {
                if let Some(v) = get(d) {
                    out.sample(&[("device", &d.name)], v);
                }
            }
        }
        out.family(
            "node_disk_info",
            "Info of /sys/block/<block_device>.",
            Kind::Gauge,
        );
        let (mut major, mut minor) = (itoa::Buffer::new(), itoa::Buffer::new());
        for (d, u) in &self.disks {
            out.sample(
                &[
                    ("device", &d.name),
                    ("major", major.format(d.major)),
                    ("minor", minor.format(d.minor)),
                    ("model", &u.model),
                    ("path", &u.path),
                    ("revision", &u.revision),
                    ("serial", &u.serial),
                    ("wwn", &u.wwn),
                ],
                1.0,
            );
        }
    }

    fn otel(&self, out: &mut OtelBatch) {
        for (d, _) in &self.disks {
            let attrs = |dir: &'static str| {
                vec![
                    kv("system.device", d.name.clone()),
                    kv("disk.io.direction", dir),
                ]
            };
            out.int(&DISK_IO, attrs("read"), d.sectors_read * 512);
            out.int(&DISK_IO, attrs("write"), d.sectors_written * 512);
            out.int(&DISK_OPERATIONS, attrs("read"), d.reads);
            out.int(&DISK_OPERATIONS, attrs("write"), d.writes);
            out.double(
                &DISK_OPERATION_TIME,
                attrs("read"),
                d.time_reading as f64 * MS,
            );
            out.double(
                &DISK_OPERATION_TIME,
                attrs("write"),
                d.time_writing as f64 * MS,
            );
            out.int(&DISK_MERGED, attrs("read"), d.merged);
            out.int(&DISK_MERGED, attrs("write"), d.writes_merged);
            let dev = vec![kv("system.device", d.name.clone())];
            out.double(&DISK_IO_TIME, dev.clone(), d.time_in_progress as f64 * MS);
            out.int(&DISK_PENDING, dev, d.in_progress);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{
        defaults, filter_regex,
        test_support::{Tree, fixture_paths, render},
    };

    fn exclude() -> Option<Regex> {
        filter_regex("x", defaults::DISKSTATS_DEVICE_EXCLUDE).unwrap()
    }

    #[test]
    fn fixture_excludes_loop_devices() {
        let out = render(&mut DiskStats::new(&fixture_paths(), exclude()));
        assert!(!out.contains("loop"), "{out}");
        assert!(out.contains("node_disk_read_bytes_total{device=\"vda\"}"));
        assert!(out.contains("node_disk_info{device=\"vda\",major=\"254\",minor=\"0\",model=\"\",path=\"\",revision=\"\",serial=\"\",wwn=\"\"} 1\n"), "{out}");
    }

    #[test]
    fn udev_labels_and_old_kernels() {
        let t = Tree::new();
        // A kernel before 4.18: no discard or flush columns.
        t.write("proc/diskstats", "   8       0 sda 10 2 80 5 20 3 160 7 0 12 12\n   8       1 sda1 1 0 8 1 0 0 0 0 0 1 1\n");
        t.write("root/run/udev/data/b8:0", "S:disk/by-id/x\nE:ID_MODEL=QEMU_HARDDISK\nE:ID_SERIAL_SHORT=QM0001\nE:ID_PATH=pci-0000:00:01.1-ata-1\nE:ID_WWN=0x5000\nE:ID_REVISION=2.5+\n");
        let out = render(&mut DiskStats::new(&t.paths(), exclude()));
        assert!(out.contains("node_disk_info{device=\"sda\",major=\"8\",minor=\"0\",model=\"QEMU_HARDDISK\",path=\"pci-0000:00:01.1-ata-1\",revision=\"2.5+\",serial=\"QM0001\",wwn=\"0x5000\"} 1\n"), "{out}");
        assert!(!out.contains("sda1"));
        assert!(!out.contains("discard"));
        assert!(out.contains("node_disk_read_bytes_total{device=\"sda\"} 40960\n"));
        assert!(out.contains("node_disk_read_time_seconds_total{device=\"sda\"} 0.005\n"));
    }
}
