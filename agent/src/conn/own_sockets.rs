//! The agent's own TCP endpoints (local address and port of each socket the
//! agent holds), read from /proc/self. A connection whose remote end is one
//! of them is the agent talking to a local collector: tracing its receiving
//! side would create spans about exporting spans, forever.
//!
//! The kernel already ignores connections whose peer is one of the agent's
//! endpoints (`AGENT_ENDPOINTS`, filled at the agent's `connect`s and for
//! its listening sockets); this is the fallback for what it cannot know
//! (sockets of the agent created before the programs were attached).
//! Reading /proc/self/net/tcp lists every socket of the network namespace,
//! so it is refreshed at most once per [`MIN_REFRESH`].
//!
//! Limitation: matching is by address, so it works on loopback and the host
//! network, not across NAT (a collector in another network namespace sees a
//! translated address).

use std::{
    collections::HashSet,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::clock::monotonic_ns;

/// Least time between two reads of /proc/self/net/tcp.
const MIN_REFRESH: u64 = 2_000_000_000;

#[derive(Default)]
pub struct OwnSockets {
    endpoints: HashSet<(IpAddr, u16)>,
    /// Monotonic time of the last refresh.
    refreshed_ns: u64,
}

impl OwnSockets {
    /// Whether `remote` is one of the agent's sockets. `seen_ns` is when the
    /// kernel saw the connection: the cache is refreshed if it is older, so
    /// a socket the agent opened just before is found.
    pub fn contains(&mut self, remote: (IpAddr, u16), seen_ns: u64) -> bool {
        if self.endpoints.contains(&remote) {
            return true;
        }
        if self.refreshed_ns > seen_ns
            || monotonic_ns().saturating_sub(self.refreshed_ns) < MIN_REFRESH
        {
            return false;
        }
        self.refresh();
        self.endpoints.contains(&remote)
    }

    fn refresh(&mut self) {
        self.refreshed_ns = monotonic_ns();
        let inodes = socket_inodes();
        self.endpoints.clear();
        for file in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
            if let Ok(text) = fs::read_to_string(file) {
                for (addr, inode) in parse_proc_net_tcp(&text) {
                    if inodes.contains(&inode) {
                        self.endpoints.insert(addr);
                    }
                }
            }
        }
    }
}

/// Inodes of the sockets among /proc/self/fd.
fn socket_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    if let Ok(dir) = fs::read_dir("/proc/self/fd") {
        for entry in dir.flatten() {
            if let Ok(target) = fs::read_link(entry.path()) {
                let t = target.to_string_lossy();
                if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']'))
                    && let Ok(n) = n.parse()
                {
                    inodes.insert(n);
                }
            }
        }
    }
    inodes
}

/// (local address, inode) of each line of /proc/net/tcp or tcp6.
pub fn parse_proc_net_tcp(text: &str) -> Vec<((IpAddr, u16), u64)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 {
            continue;
        }
        let Some(local) = parse_hex_endpoint(fields[1]) else {
            continue;
        };
        if let Ok(inode) = fields[9].parse() {
            out.push((local, inode));
        }
    }
    out
}

/// `0100007F:1F90` (IPv4) or 32 hex digits + port (IPv6), as the kernel
/// prints them: each 32-bit word in host (little-endian) order.
fn parse_hex_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).map(u32::from_be))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.to_be_bytes())),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(
            parse_proc_net_tcp(v4),
            vec![((IpAddr::V4(Ipv4Addr::LOCALHOST), 8080), 12345)]
        );
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0051 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(
            parse_proc_net_tcp(v6),
            vec![
                ((IpAddr::V6(Ipv6Addr::LOCALHOST), 80), 777),
                ((IpAddr::V4(Ipv4Addr::LOCALHOST), 81), 778)
            ]
        );
    }

    #[test]
    fn finds_a_socket_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut own = OwnSockets::default();
        assert!(own.contains((addr.ip(), addr.port()), monotonic_ns()));
        assert!(!own.contains((addr.ip(), 1), 0));
    }
}
