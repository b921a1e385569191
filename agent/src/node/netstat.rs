//! `netstat` collector: `/proc/net/netstat`, `/proc/net/snmp` (pairs of
//! `Proto: names` / `Proto: values` lines) and `/proc/net/snmp6` (`name
//! value` lines), filtered by node_exporter's default field set. procfs
//! has no parser for these files; the one here is small and strict about
//! the pairing.

use std::{collections::HashMap, path::PathBuf};

use regex::Regex;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
};

/// Parses the header/value line pairs of `netstat` and `snmp`, calling
/// `f(protocol, name, value)` for each statistic (`value` is parsed only
/// when `f` asks for it, so unselected fields cost a split).
pub fn parse_pairs(
    text: &str,
    f: &mut impl FnMut(&str, &str, &dyn Fn() -> Result<f64, String>),
) -> Result<(), String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    while let Some(names) = lines.next() {
        let values = lines.next().ok_or("header line without values")?;
        let (proto, names) = names.split_once(':').ok_or("line without a colon")?;
        let (proto2, values) = values.split_once(':').ok_or("line without a colon")?;
        if proto != proto2 {
            return Err(format!("{proto} header followed by {proto2} values"));
        }
        let mut names = names.split_ascii_whitespace();
        let mut values = values.split_ascii_whitespace();
        loop {
            match (names.next(), values.next()) {
                (Some(name), Some(value)) => {
                    let parse = || {
                        value
                            .parse::<f64>()
                            .map_err(|_| format!("{proto}{name}: {value:?} is not a number"))
                    };
                    f(proto, name, &parse);
                }
                (None, None) => break,
                _ => return Err(format!("{proto}: as many names as values expected")),
            }
        }
    }
    Ok(())
}

/// Parses `snmp6`: the protocol is the name up to its first `6`.
pub fn parse_snmp6(
    text: &str,
    f: &mut impl FnMut(&str, &str, &dyn Fn() -> Result<f64, String>),
) -> Result<(), String> {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some(six) = key.find('6') else { continue };
        let parse = || {
            value
                .parse::<f64>()
                .map_err(|_| format!("{key}: {value:?} is not a number"))
        };
        f(&key[..=six], &key[six + 1..], &parse);
    }
    Ok(())
}

/// A field filter that remembers its answers (the same few hundred field
/// names come back on every scrape; the regular expression runs once each).
#[derive(Debug)]
pub struct CachedFilter {
    regex: Option<Regex>,
    answers: HashMap<String, bool>,
}

impl CachedFilter {
    pub fn new(regex: Option<Regex>) -> Self {
        Self {
            regex,
            answers: HashMap::new(),
        }
    }

    /// A selection filter: true for the keys it selects (no expression:
    /// every key).
    pub fn matches(&mut self, key: &str) -> bool {
        self.answer(key).unwrap_or(true)
    }

    /// An exclusion filter: true for the keys it excludes (no expression:
    /// none).
    pub fn excludes(&mut self, key: &str) -> bool {
        self.answer(key).unwrap_or(false)
    }

    /// Whether the expression matches `key` (`None`: no expression).
    fn answer(&mut self, key: &str) -> Option<bool> {
        let regex = self.regex.as_ref()?;
        if let Some(&yes) = self.answers.get(key) {
            return Some(yes);
        }
        let yes = regex.is_match(key);
        // Bounded: a kernel has a few hundred fields, a host a few hundred
        // devices and mounts.
        if self.answers.len() < 4096 {
            self.answers.insert(key.to_string(), yes);
        }
        Some(yes)
    }
}

pub struct NetStat {
    netstat: PathBuf,
    snmp: PathBuf,
    snmp6: PathBuf,
    fields: CachedFilter,
    /// (`Protocol_Name`, `ProtocolName`, value) of the selected fields.
    stats: Vec<(String, String, f64)>,
}

impl NetStat {
    pub fn new(p: &NodePaths, fields: Option<Regex>) -> Self {
        Self {
            netstat: p.proc("net/netstat"),
            snmp: p.proc("net/snmp"),
            snmp6: p.proc("net/snmp6"),
            fields: CachedFilter::new(fields),
            stats: Vec::new(),
        }
    }
}

impl Collector for NetStat {
    fn name(&self) -> &'static str {
        "netstat"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let Self {
            netstat,
            snmp,
            snmp6,
            fields,
            stats,
        } = self;
        stats.clear();
        let mut key = String::new();
        let mut bad = None;
        let mut take = |proto: &str, name: &str, value: &dyn Fn() -> Result<f64, String>| {
            key.clear();
            key.push_str(proto);
            key.push('_');
            key.push_str(name);
            if fields.matches(&key) {
                match value() {
                    Ok(v) => stats.push((key.clone(), format!("{proto}{name}"), v)),
                    Err(e) => bad = Some(e),
                }
            }
        };
        let text = reader.read_kept(netstat)?;
        parse_pairs(text, &mut take).map_err(|e| NodeError::parse(netstat, e))?;
        let text = reader.read_kept(snmp)?;
        parse_pairs(text, &mut take).map_err(|e| NodeError::parse(snmp, e))?;
        // No IPv6 in this kernel: no snmp6, as node_exporter.
        if let Some(text) = reader.read_kept_optional(snmp6)? {
            parse_snmp6(text, &mut take).map_err(|e| NodeError::parse(snmp6, e))?;
        }
        if let Some(e) = bad {
            return Err(NodeError::parse(netstat, e));
        }
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        stats.dedup_by(|a, b| a.0 == b.0);
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        let mut name = String::new();
        let mut help = String::new();
        for (key, stat, value) in &self.stats {
            name.clear();
            name.push_str("node_netstat_");
            name.push_str(key);
            help.clear();
            help.push_str("Statistic ");
            help.push_str(stat);
            help.push('.');
            out.family(&name, &help, Kind::Untyped);
            out.value(*value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{
        defaults, filter_regex,
        test_support::{fixture_paths, render},
    };

    #[test]
    fn fixture_default_fields() {
        let fields = filter_regex("x", defaults::NETSTAT_FIELDS).unwrap();
        let out = render(&mut NetStat::new(&fixture_paths(), fields));
        assert!(out.contains("# HELP node_netstat_Tcp_CurrEstab Statistic TcpCurrEstab.\n# TYPE node_netstat_Tcp_CurrEstab untyped\n"), "{out}");
        assert!(out.contains("node_netstat_Icmp6_InErrors "));
        assert!(out.contains("node_netstat_UdpLite6_InErrors "));
        assert!(!out.contains("IcmpMsg"));
        let all = render(&mut NetStat::new(&fixture_paths(), None));
        assert!(all.matches("# TYPE").count() > 200);
    }

    fn pairs(text: &str) -> Result<Vec<(String, String, f64)>, String> {
        let mut v = Vec::new();
        let mut bad = None;
        parse_pairs(text, &mut |p, n, x| match x() {
            Ok(x) => v.push((p.to_string(), n.to_string(), x)),
            Err(e) => bad = Some(e),
        })?;
        bad.map_or(Ok(v), Err)
    }

    #[test]
    fn pairing_errors() {
        assert!(pairs("Tcp: A B\nTcp: 1\n").is_err());
        assert!(pairs("Tcp: A\nTcp: 1 2\n").is_err());
        assert!(pairs("Tcp: A\nUdp: 1\n").is_err());
        assert!(pairs("Tcp: A\n").is_err());
        assert!(pairs("Tcp: A\nTcp: x\n").is_err());
        assert_eq!(pairs("Tcp: MaxConn A\nTcp: -1 2\n").unwrap()[0].2, -1.0);
        let mut v = Vec::new();
        parse_snmp6("Ip6InReceives 5\nnosix 1\n", &mut |p, n, x| {
            v.push((p.to_string(), n.to_string(), x().unwrap()))
        })
        .unwrap();
        assert_eq!(v, vec![("Ip6".into(), "InReceives".into(), 5.0)]);
    }

    #[test]
    fn filter_remembers() {
        let mut f = CachedFilter::new(filter_regex("x", "^Tcp_").unwrap());
        assert!(f.matches("Tcp_InSegs"));
        assert!(!f.matches("Udp_InErrors"));
        assert!(f.matches("Tcp_InSegs"));
        assert_eq!(f.answers.len(), 2);
        assert!(CachedFilter::new(None).matches("anything"));
        assert!(!CachedFilter::new(None).excludes("anything"));
        assert!(f.excludes("Tcp_X"));
    }
}
