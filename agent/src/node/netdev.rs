//! `netdev` collector: `/proc/net/dev` (procfs) and, as node_exporter's
//! default netlink path has it, `receive_nohandler` from
//! `/sys/class/net/<device>/statistics/rx_nohandler`. The names are
//! node_exporter's legacy ones (`receive_errs`, `transmit_colls`, ...),
//! whose sums of detailed error counters are the ones `/proc/net/dev`
//! prints.

use std::path::PathBuf;

use procfs_core::{
    FromRead as _,
    net::{DeviceStatus, InterfaceDeviceStatus},
};
use regex::Regex;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
    netstat::CachedFilter,
    otel::{OtelBatch, kv, metric_desc},
    source::first_number,
};

type Field = fn(&DeviceStatus) -> u64;

/// (statistic, value), in node_exporter's (alphabetical) family order;
/// `receive_nohandler` is added from sysfs.
const FIELDS: [(&str, Field); 16] = [
    ("receive_bytes", |d| d.recv_bytes),
    ("receive_compressed", |d| d.recv_compressed),
    ("receive_drop", |d| d.recv_drop),
    ("receive_errs", |d| d.recv_errs),
    ("receive_fifo", |d| d.recv_fifo),
    ("receive_frame", |d| d.recv_frame),
    ("receive_multicast", |d| d.recv_multicast),
    ("receive_packets", |d| d.recv_packets),
    ("transmit_bytes", |d| d.sent_bytes),
    ("transmit_carrier", |d| d.sent_carrier),
    ("transmit_colls", |d| d.sent_colls),
    ("transmit_compressed", |d| d.sent_compressed),
    ("transmit_drop", |d| d.sent_drop),
    ("transmit_errs", |d| d.sent_errs),
    ("transmit_fifo", |d| d.sent_fifo),
    ("transmit_packets", |d| d.sent_packets),
];

metric_desc!(
    NET_IO,
    "system.network.io",
    "By",
    Counter,
    "The number of bytes transmitted and received."
);
metric_desc!(
    NET_PACKETS,
    "system.network.packets",
    "{packet}",
    Counter,
    "The number of packets transferred."
);
metric_desc!(
    NET_ERRORS,
    "system.network.errors",
    "{error}",
    Counter,
    "Count of network errors detected."
);
metric_desc!(
    NET_DROPPED,
    "system.network.dropped",
    "{packet}",
    Counter,
    "Count of packets that are dropped or discarded even though there was no error."
);

pub struct NetDev {
    path: PathBuf,
    sys_net: PathBuf,
    exclude: CachedFilter,
    devices: Vec<(DeviceStatus, Option<u64>)>,
}

impl NetDev {
    pub fn new(p: &NodePaths, exclude: Option<Regex>) -> Self {
        Self {
            path: p.proc("net/dev"),
            sys_net: p.sys("class/net"),
            exclude: CachedFilter::new(exclude),
            devices: Vec::new(),
        }
    }
}

impl Collector for NetDev {
    fn name(&self) -> &'static str {
        "netdev"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let text = reader.read_kept(&self.path)?;
        let devices = InterfaceDeviceStatus::from_read(text.as_bytes())
            .map_err(|e| NodeError::parse(&self.path, e.to_string()))?;
        self.devices.clear();
        for (name, d) in devices.0.into_iter() {
            if self.exclude.excludes(&name) {
                continue;
            }
            let nohandler = self.sys_net.join(&name).join("statistics/rx_nohandler");
            let nohandler = match reader.read_kept_optional(&nohandler) {
                Ok(Some(t)) => first_number(t).map(|v| v as u64),
                _ => None,
            };
            self.devices.push((d, nohandler));
        }
        self.devices.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        let mut name = String::new();
        let mut help = String::new();
        let mut family = |out: &mut Exposition, stat: &str| {
            name.clear();
            name.push_str("node_network_");
            name.push_str(stat);
            name.push_str("_total");
            help.clear();
            help.push_str("Network device statistic ");
            help.push_str(stat);
            help.push('.');
            out.family(&name, &help, Kind::Counter);
        };
        for (i, (stat, get)) in FIELDS.iter().enumerate() {
            family(out, stat);
            for (d, _) in &self.devices {
                out.sample(&[("device", &d.name)], get(d) as f64);
            }
            if i == 6 && self.devices.iter().any(|(_, n)| n.is_some()) {
                family(out, "receive_nohandler");
                for (d, n) in &self.devices {
                    if let Some(n) = n {
                        out.sample(&[("device", &d.name)], *n as f64);
                    }
                }
            }
        }
    }

    fn otel(&self, out: &mut OtelBatch) {
        for (d, _) in &self.devices {
            let attrs = |dir: &'static str| {
                vec![
                    kv("network.interface.name", d.name.clone()),
                    kv("network.io.direction", dir),
                ]
            };
            out.int(&NET_IO, attrs("receive"), d.recv_bytes);
            out.int(&NET_IO, attrs("transmit"), d.sent_bytes);
            out.int(&NET_PACKETS, attrs("receive"), d.recv_packets);
            out.int(&NET_PACKETS, attrs("transmit"), d.sent_packets);
            out.int(&NET_ERRORS, attrs("receive"), d.recv_errs);
            out.int(&NET_ERRORS, attrs("transmit"), d.sent_errs);
            out.int(&NET_DROPPED, attrs("receive"), d.recv_drop);
            out.int(&NET_DROPPED, attrs("transmit"), d.sent_drop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{
        filter_regex,
        test_support::{fixture_paths, render},
    };

    #[test]
    fn fixture_with_nohandler() {
        let out = render(&mut NetDev::new(&fixture_paths(), None));
        assert_eq!(out.matches("# TYPE").count(), 17, "{out}");
        assert!(
            out.contains("node_network_receive_bytes_total{device=\"lo\"} 2.044132625e+09\n"),
            "{out}"
        );
        assert!(out.contains("node_network_receive_nohandler_total{device=\"eth0\"} 0\n"));
        let out = render(&mut NetDev::new(
            &fixture_paths(),
            filter_regex("x", "^lo$").unwrap(),
        ));
        assert!(!out.contains("\"lo\""));
    }
}
