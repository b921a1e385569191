//! `sockstat` collector: `/proc/net/sockstat` and `/proc/net/sockstat6`
//! (`PROTO: key value key value ...` lines; procfs has no parser), with
//! node_exporter's extra `mem_bytes` (pages × page size).

use std::path::PathBuf;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
};

/// (protocol, key, value) of one file, plus `sockets: used N`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sockstat {
    pub used: Option<f64>,
    pub values: Vec<(String, String, f64)>,
}

pub fn parse(text: &str, page_size: f64, out: &mut Sockstat) -> Result<(), String> {
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        if !fields.len().is_multiple_of(2) {
            return Err(format!("{proto}: odd number of fields"));
        }
        for pair in fields.chunks(2) {
            let value: f64 = pair[1]
                .parse()
                .map_err(|_| format!("{proto} {}: {:?} is not a number", pair[0], pair[1]))?;
            if proto == "sockets" {
                if pair[0] == "used" {
                    out.used = Some(value);
                }
                continue;
            }
            out.values
                .push((proto.to_string(), pair[0].to_string(), value));
            if pair[0] == "mem" {
                out.values.push((
                    proto.to_string(),
                    "mem_bytes".to_string(),
                    value * page_size,
                ));
            }
        }
    }
    Ok(())
}

pub struct SockStat {
    v4: PathBuf,
    v6: PathBuf,
    page_size: f64,
    stats: Sockstat,
}

impl SockStat {
    pub fn new(p: &NodePaths) -> Self {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Self {
            v4: p.proc("net/sockstat"),
            v6: p.proc("net/sockstat6"),
            page_size: if page > 0 { page as f64 } else { 4096.0 },
            stats: Sockstat::default(),
        }
    }
}

impl Collector for SockStat {
    fn name(&self) -> &'static str {
        "sockstat"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let mut s = Sockstat::default();
        // Either file is missing when the kernel has no IPv4 or IPv6.
        for path in [&self.v4, &self.v6] {
            if let Some(text) = reader.read_kept_optional(path)? {
                parse(text, self.page_size, &mut s).map_err(|e| NodeError::parse(path, e))?;
            }
        }
        self.stats = s;
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        if let Some(used) = self.stats.used {
            out.family(
                "node_sockstat_sockets_used",
                "Number of IPv4 sockets in use.",
                Kind::Gauge,
            );
            out.value(used);
        }
        let mut name = String::new();
        let mut help = String::new();
        for (proto, key, value) in &self.stats.values {
            name.clear();
            name.push_str("node_sockstat_");
            name.push_str(proto);
            name.push('_');
            name.push_str(key);
            help.clear();
            help.push_str("Number of ");
            help.push_str(proto);
            help.push_str(" sockets in state ");
            help.push_str(key);
            help.push('.');
            out.family(&name, &help, Kind::Gauge);
            out.value(*value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{Tree, fixture_paths, render};

    #[test]
    fn fixture() {
        let out = render(&mut SockStat::new(&fixture_paths()));
        assert!(out.contains("# HELP node_sockstat_sockets_used Number of IPv4 sockets in use.\n# TYPE node_sockstat_sockets_used gauge\nnode_sockstat_sockets_used 27\n"), "{out}");
        assert!(
            out.contains("node_sockstat_TCP_mem_bytes 253952\n"),
            "{out}"
        );
        assert!(out.contains("node_sockstat_FRAG6_memory 0\n"));
    }

    #[test]
    fn mem_in_bytes_and_no_ipv6() {
        let t = Tree::new();
        t.write("proc/net/sockstat", "sockets: used 3\nTCP: inuse 1 mem 2\n");
        let out = render(&mut SockStat::new(&t.paths()));
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
        let mut expected = String::new();
        crate::node::expo::write_float(&mut expected, 2.0 * page);
        assert!(
            out.contains(&format!("node_sockstat_TCP_mem_bytes {expected}\n")),
            "{out}"
        );
        let mut s = Sockstat::default();
        assert!(parse("TCP: inuse\n", 1.0, &mut s).is_err());
        assert!(parse("TCP: inuse x\n", 1.0, &mut s).is_err());
    }
}
