//! Same-host stitching: the SERVER span of a request and the CLIENT span
//! that sent it, both traced on this host, are the two ends of one socket
//! pair — the client's (local, remote) is the server's (remote, local) —
//! at the same position on the connection (HTTP/1 request order, HTTP/2
//! stream id, PostgreSQL statement order). No packet is touched.
//!
//! Network namespaces: loopback addresses are private to a namespace, so a
//! loopback pair matches only within one (the key carries the namespace);
//! other addresses match across namespaces (containers or pods on one
//! node talking through a bridge without address translation). Behind a
//! NAT (a Kubernetes Service's cluster IP) the two ends disagree on the
//! server address and nothing matches: those spans stay unstitched.
//!
//! Request order is trusted only where both ends read it off the wire:
//! the HTTP/2 stream id is the key. HTTP/1 and PostgreSQL orders are
//! counts, which a record lost at one end (a full ring buffer) shifts for
//! the rest of the connection; their key is the connection alone
//! ([`ORDERED`]) and the spans waiting on it are paired by times, the
//! same order preferred when several fit (pipelining). A waiting span that
//! can no longer pair (its other end was lost) is let go as soon as a
//! later request shows it, not at the timeout.
//!
//! A match is verified before it is believed: the server's request must
//! start after the client started sending it and before the client
//! finished, and end before the client's (within [`END_TOLERANCE_NS`]: the
//! client may read the response before the server's write returns); and
//! both ends must carry the same incoming `traceparent`, or none.

use std::net::IpAddr;

use crate::span::{SpanKind, SpanRecord};

/// How much later than the client's end the server's may be (the
/// response's write can return after the peer already read it).
pub const END_TOLERANCE_NS: u64 = 50_000_000;

/// The `seq` of a key whose spans are paired by times on the connection
/// (HTTP/1, PostgreSQL).
pub const ORDERED: u64 = u64::MAX;

/// At most this many spans wait on one key (a connection of an ordered
/// protocol); beyond, the oldest is let go.
pub const MAX_WAITING_PER_KEY: usize = 64;

/// One end of a connection.
pub type Addr = (IpAddr, u16);

/// A request on a connection, as both ends name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StitchKey {
    /// The network namespace for loopback pairs, else 0.
    pub ns: u32,
    pub client: Addr,
    pub server: Addr,
    pub seq: u64,
}

/// A connection as seen from one end: (namespace key, local, remote).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub ns: u32,
    pub local: Addr,
    pub remote: Addr,
}

/// IPv4-mapped IPv6 addresses as IPv4 (a dual-stack server sees
/// `::ffff:127.0.0.1` where its IPv4 client sees `127.0.0.1`).
pub fn norm(a: Addr) -> Addr {
    match a.0 {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), a.1),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// The namespace part of a key: loopback pairs stay in their namespace.
pub fn ns_key(netns: u32, addr: Addr) -> u32 {
    if addr.0.is_loopback() { netns } else { 0 }
}

pub fn endpoint(netns: u32, local: Addr, remote: Addr) -> EndpointKey {
    let (local, remote) = (norm(local), norm(remote));
    EndpointKey {
        ns: ns_key(netns, local),
        local,
        remote,
    }
}

/// The key of a span's request.
pub fn key_of(span: &SpanRecord) -> StitchKey {
    let c = &span.correlation;
    let (local, remote) = (norm(c.local), norm(c.remote));
    let (client, server) = match span.kind {
        SpanKind::Client => (local, remote),
        SpanKind::Server => (remote, local),
    };
    StitchKey {
        ns: ns_key(c.netns, local),
        client,
        server,
        seq: if c.seq_is_stream_id { c.seq } else { ORDERED },
    }
}

/// The connection of the other end of `key` (as that end sees it).
pub fn peer_endpoint(key: &StitchKey, kind: SpanKind) -> EndpointKey {
    match kind {
        // The server's peer is the client's connection: local = client.
        SpanKind::Server => EndpointKey {
            ns: key.ns,
            local: key.client,
            remote: key.server,
        },
        SpanKind::Client => EndpointKey {
            ns: key.ns,
            local: key.server,
            remote: key.client,
        },
    }
}

/// Why a candidate pair was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The server's times are not inside the client's.
    Times,
    /// The two ends carry different incoming trace contexts.
    TraceContext,
}

/// The times of a CLIENT span and of the SERVER span it may have caused.
#[derive(Clone, Copy, Debug)]
pub struct Times {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The incoming trace context of a span, if it joined one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    pub trace_id: [u8; 16],
    pub parent: [u8; 8],
}

pub fn joined(span: &SpanRecord) -> Option<Joined> {
    span.parent_is_remote.then_some(Joined {
        trace_id: span.trace_id,
        parent: span.parent_span_id,
    })
}

/// Verifies a candidate pair.
pub fn verify(
    client: Times,
    client_ctx: Option<Joined>,
    server: Times,
    server_ctx: Option<Joined>,
) -> Result<(), Refused> {
    if client_ctx != server_ctx {
        return Err(Refused::TraceContext);
    }
    let inside = client.start_ns <= server.start_ns
        && server.start_ns <= client.end_ns
        && server.end_ns <= client.end_ns.saturating_add(END_TOLERANCE_NS);
    if inside { Ok(()) } else { Err(Refused::Times) }
}

/// One span waiting on a key, as [`pick`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub seq: u64,
    pub times: Times,
    pub ctx: Option<Joined>,
}

/// What [`pick`] decided about the candidates waiting on a key.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Picked {
    /// The index of the candidate that pairs with the newcomer.
    pub chosen: Option<usize>,
    /// Candidates that can never pair with the newcomer nor with a later
    /// span of the connection, and why.
    pub stale: Vec<(usize, Refused)>,
}

/// Pairs a newcomer of `kind` with the spans of the other kind waiting on
/// its key (oldest first). `exact`: the key holds the request (a stream
/// id), so a candidate that fails verification is refused; else (ordered
/// protocols) a candidate fails only when it is stale: a SERVER span that
/// started before the newcomer CLIENT started sending (its client was
/// lost), a CLIENT span that ended (with the tolerance) before the newcomer
/// SERVER started.
pub fn pick(
    kind: SpanKind,
    seq: u64,
    times_: Times,
    ctx: Option<Joined>,
    exact: bool,
    candidates: impl Iterator<Item = Candidate>,
) -> Picked {
    let mut out = Picked::default();
    let mut chosen_seq = None;
    for (i, c) in candidates.enumerate() {
        let verdict = match kind {
            SpanKind::Client => verify(times_, ctx, c.times, c.ctx),
            SpanKind::Server => verify(c.times, c.ctx, times_, ctx),
        };
        match verdict {
            Ok(()) => {
                // The first that fits, or a later one of the same order.
                if out.chosen.is_none() || (c.seq == seq && chosen_seq != Some(seq)) {
                    out.chosen = Some(i);
                    chosen_seq = Some(c.seq);
                }
            }
            Err(r) => {
                let stale = exact
                    || match kind {
                        SpanKind::Client => c.times.start_ns < times_.start_ns,
                        SpanKind::Server => {
                            c.times.end_ns.saturating_add(END_TOLERANCE_NS) < times_.start_ns
                        }
                    };
                if stale {
                    out.stale.push((i, r));
                }
            }
        }
    }
    out
}

pub fn times(span: &SpanRecord) -> Times {
    Times {
        start_ns: span.correlation.start_ns,
        end_ns: span.correlation.end_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(start_ns: u64, end_ns: u64) -> Times {
        Times { start_ns, end_ns }
    }

    #[test]
    fn containment() {
        assert_eq!(verify(t(10, 100), None, t(20, 90), None), Ok(()));
        // The server's write returned just after the client read.
        assert_eq!(verify(t(10, 100), None, t(20, 110), None), Ok(()));
        // The next request on the connection: starts after the client ended.
        assert_eq!(
            verify(t(10, 100), None, t(101, 150), None),
            Err(Refused::Times)
        );
        // The previous one: started before the client wrote.
        assert_eq!(verify(t(10, 100), None, t(5, 9), None), Err(Refused::Times));
        assert_eq!(
            verify(t(10, 100), None, t(20, 100 + END_TOLERANCE_NS + 1), None),
            Err(Refused::Times)
        );
    }

    fn cand(seq: u64, start_ns: u64, end_ns: u64) -> Candidate {
        Candidate {
            seq,
            times: t(start_ns, end_ns),
            ctx: None,
        }
    }

    #[test]
    fn ordered_candidates_pair_by_times() {
        // A client request (100..200) and the servers waiting on its
        // connection: one whose client was lost (10..20), its own (110..190,
        // counted 4 at the server end: a record was lost), the next (250..).
        let cands = [cand(2, 10, 20), cand(4, 110, 190), cand(5, 250, 260)];
        let p = pick(
            SpanKind::Client,
            3,
            t(100, 200),
            None,
            false,
            cands.into_iter(),
        );
        assert_eq!(p.chosen, Some(1));
        assert_eq!(p.stale, vec![(0, Refused::Times)]);
        // Pipelined: two servers fit, the same order wins.
        let cands = [cand(0, 110, 150), cand(1, 120, 190)];
        let p = pick(
            SpanKind::Client,
            1,
            t(100, 200),
            None,
            false,
            cands.into_iter(),
        );
        assert_eq!(p.chosen, Some(1));
        let p = pick(
            SpanKind::Client,
            7,
            t(100, 200),
            None,
            false,
            cands.into_iter(),
        );
        assert_eq!(p.chosen, Some(0), "no order fits: the oldest that fits");
        // A server newcomer and early clients: one that ended long before.
        let cands = [cand(0, 0, 10), cand(1, 100, 200)];
        let p = pick(
            SpanKind::Server,
            1,
            t(100 + END_TOLERANCE_NS, 150 + END_TOLERANCE_NS),
            None,
            false,
            cands.into_iter(),
        );
        assert_eq!(p.chosen, None);
        assert_eq!(
            p.stale,
            vec![(0, Refused::Times)],
            "the second may still fit a later one"
        );
    }

    #[test]
    fn exact_candidates_are_refused() {
        let p = pick(
            SpanKind::Client,
            3,
            t(100, 200),
            None,
            true,
            [cand(3, 250, 260)].into_iter(),
        );
        assert_eq!(
            p,
            Picked {
                chosen: None,
                stale: vec![(0, Refused::Times)]
            }
        );
    }

    #[test]
    fn trace_context_must_agree() {
        let a = Joined {
            trace_id: [1; 16],
            parent: [2; 8],
        };
        let b = Joined {
            trace_id: [1; 16],
            parent: [3; 8],
        };
        assert_eq!(verify(t(0, 10), Some(a), t(1, 9), Some(a)), Ok(()));
        assert_eq!(
            verify(t(0, 10), Some(a), t(1, 9), Some(b)),
            Err(Refused::TraceContext)
        );
        assert_eq!(
            verify(t(0, 10), None, t(1, 9), Some(a)),
            Err(Refused::TraceContext)
        );
    }

    #[test]
    fn namespaces_and_mapped_addresses() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let pod: IpAddr = "10.1.0.5".parse().unwrap();
        assert_eq!(norm((mapped, 80)), (lo, 80));
        assert_eq!(ns_key(7, (lo, 1)), 7, "loopback stays in its namespace");
        assert_eq!(ns_key(7, (pod, 1)), 0, "other addresses cross namespaces");
        let e = endpoint(7, (mapped, 5000), (lo, 80));
        assert_eq!(e.local, (lo, 5000));
    }
}
