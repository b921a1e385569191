//! `netstat` collector: `/proc/net/netstat`, `/proc/net/snmp` (pairs of
//! `Proto: names` / `Proto: values` lines) and `/proc/net/snmp6` (`name
//! value` lines), filtered by node_exporter's default field set. procfs
//! has no parser for these files; the one here is small and strict about
//! the pairing.

use std::path::PathBuf;

use regex::Regex;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
};

/// One statistic: protocol (`Tcp`, `TcpExt`, `Icmp6`, ...), name and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    pub protocol: String,
    pub name: String,
    pub value: f64,
}

/// Parses the header/value line pairs of `netstat` and `snmp`.
pub fn parse_pairs(text: &str, out: &mut Vec<Stat>) -> Result<(), String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    while let Some(names) = lines.next() {
        let values = lines.next().ok_or("header line without values")?;
        let (proto, names) = names.split_once(':').ok_or("line without a colon")?;
        let (proto2, values) = values.split_once(':').ok_or("line without a colon")?;
        if proto != proto2 {
            return Err(format!("{proto} header followed by {proto2} values"));
        }
        let names: Vec<&str> = names.split_ascii_whitespace().collect();
        let values: Vec<&str> = values.split_ascii_whitespace().collect();
        if names.len() != values.len() {
            return Err(format!(
                "{proto}: {} names but {} values",
                names.len(),
                values.len()
            ));
        }
        for (name, value) in names.into_iter().zip(values) {
            let value = value
                .parse()
                .map_err(|_| format!("{proto}{name}: {value:?} is not a number"))?;
            out.push(Stat {
                protocol: proto.to_string(),
                name: name.to_string(),
                value,
            });
        }
    }
    Ok(())
}

/// Parses `snmp6`: the protocol is the name up to its first `6`.
pub fn parse_snmp6(text: &str, out: &mut Vec<Stat>) -> Result<(), String> {
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (f.next(), f.next()) else {
            continue;
        };
        let Some(six) = key.find('6') else { continue };
        let value = value
            .parse()
            .map_err(|_| format!("{key}: {value:?} is not a number"))?;
        out.push(Stat {
            protocol: key[..=six].to_string(),
            name: key[six + 1..].to_string(),
            value,
        });
    }
    Ok(())
}

pub struct NetStat {
    netstat: PathBuf,
    snmp: PathBuf,
    snmp6: PathBuf,
    fields: Option<Regex>,
    /// (`Protocol_Name`, `ProtocolName`, value) of the selected fields.
    stats: Vec<(String, String, f64)>,
    scratch: Vec<Stat>,
}

impl NetStat {
    pub fn new(p: &NodePaths, fields: Option<Regex>) -> Self {
        Self {
            netstat: p.proc("net/netstat"),
            snmp: p.proc("net/snmp"),
            snmp6: p.proc("net/snmp6"),
            fields,
            stats: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

impl Collector for NetStat {
    fn name(&self) -> &'static str {
        "netstat"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        self.scratch.clear();
        let text = reader.read(&self.netstat)?;
        parse_pairs(text, &mut self.scratch).map_err(|e| NodeError::parse(&self.netstat, e))?;
        let text = reader.read(&self.snmp)?;
        parse_pairs(text, &mut self.scratch).map_err(|e| NodeError::parse(&self.snmp, e))?;
        // No IPv6 in this kernel: no snmp6, as node_exporter.
        if let Some(text) = reader.read_optional(&self.snmp6)? {
            parse_snmp6(text, &mut self.scratch).map_err(|e| NodeError::parse(&self.snmp6, e))?;
        }
        self.stats.clear();
        let mut key = String::new();
        for s in &self.scratch {
            key.clear();
            key.push_str(&s.protocol);
            key.push('_');
            key.push_str(&s.name);
            if self.fields.as_ref().is_some_and(|r| !r.is_match(&key)) {
                continue;
            }
            self.stats.push((key.clone(), format!("{}{}", s.protocol, s.name), s.value));
        }
        self.stats.sort_by(|a, b| a.0.cmp(&b.0));
        self.stats.dedup_by(|a, b| a.0 == b.0);
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
    use crate::node::{defaults, filter_regex, test_support::{fixture_paths, render}};

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

    #[test]
    fn pairing_errors() {
        let mut v = Vec::new();
        assert!(parse_pairs("Tcp: A B\nTcp: 1\n", &mut v).is_err());
        assert!(parse_pairs("Tcp: A\nUdp: 1\n", &mut v).is_err());
        assert!(parse_pairs("Tcp: A\n", &mut v).is_err());
        assert!(parse_pairs("Tcp: A\nTcp: x\n", &mut v).is_err());
        v.clear();
        parse_pairs("Tcp: MaxConn A\nTcp: -1 2\n", &mut v).unwrap();
        assert_eq!(v[0].value, -1.0);
        v.clear();
        parse_snmp6("Ip6InReceives 5\nnosix 1\n", &mut v).unwrap();
        assert_eq!(v, vec![Stat { protocol: "Ip6".into(), name: "InReceives".into(), value: 5.0 }]);
    }
}
