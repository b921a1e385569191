//! HPACK's static table (RFC 7541 Appendix A) and a dynamic table that
//! tolerates not knowing everything the peer's encoder inserted.
//!
//! The agent may join a connection late, or lose header blocks to capture
//! gaps. The peer's dynamic table is then `[entries we saw, newest first]
//! ++ [entries we never saw]`. Since entries are only ever added at the
//! front and evicted from the back, the entries we saw stay at the same
//! indices as in the peer's table for as long as both keep them, so
//! [`DynamicTable`] keeps exactly a *prefix* of the peer's table:
//!
//! * an index past what we keep is *unresolved* (never a wrong value);
//! * evicting earlier than the peer (our memory cap, an underestimated
//!   size) only shortens the prefix, so it is always safe;
//! * an insertion we could not see (a gap inside a header block, a lost
//!   block) shifts every index: the table is then [cleared](DynamicTable::forget),
//!   and fills again from the next insertion on;
//! * an entry inserted with a name or value we could not decode is kept as
//!   a placeholder (its unknown parts unresolved) with a size that is a
//!   lower bound, so our evictions lag the peer's, never lead them.

use std::collections::VecDeque;

/// Per-entry overhead in the table size (RFC 7541 §4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// The static table, 1-based in HPACK (index 1 is `STATIC[0]`).
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// One dynamic entry; `None` parts could not be decoded.
#[derive(Debug, Clone)]
struct Entry {
    name: Option<Box<[u8]>>,
    value: Option<Box<[u8]>>,
    /// Size as counted for eviction (exact, or a lower bound).
    size: usize,
}

/// What an index refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Name and value (each `None` if a placeholder part).
    Found(Option<&'a [u8]>, Option<&'a [u8]>),
    /// A dynamic entry we do not have (inserted before we joined, or lost).
    Unresolved,
    /// Index 0 or past any table the peer may have: bad encoding.
    Invalid,
}

/// The dynamic table of one encoder, as far as it is known.
#[derive(Debug)]
pub struct DynamicTable {
    entries: VecDeque<Entry>,
    size: usize,
    /// The encoder's current maximum size (its last size update, or the
    /// limit the decoder side advertised), never above `cap`.
    max: usize,
    /// Our memory bound.
    cap: usize,
}

impl DynamicTable {
    /// A table assuming the protocol's initial maximum (4096) until told
    /// otherwise, keeping at most `cap` bytes (as HPACK counts them).
    pub fn new(cap: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max: 4096.min(cap),
            cap,
        }
    }

    /// Entries kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Size kept, as HPACK counts it.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The encoder's maximum size changed (a dynamic table size update, or
    /// the decoder's SETTINGS_HEADER_TABLE_SIZE).
    pub fn set_max(&mut self, max: usize) {
        self.max = max.min(self.cap);
        self.evict_to(self.max);
    }

    /// Forgets every entry (an insertion may have been missed).
    pub fn forget(&mut self) {
        self.entries.clear();
        self.size = 0;
    }

    /// Looks up a 1-based HPACK index (static, then dynamic).
    pub fn get(&self, index: u64) -> Lookup<'_> {
        if index == 0 {
            return Lookup::Invalid;
        }
        if let Some(&(n, v)) = STATIC.get(index as usize - 1) {
            return Lookup::Found(Some(n.as_bytes()), Some(v.as_bytes()));
        }
        let at = (index - STATIC.len() as u64 - 1) as usize;
        match self.entries.get(at) {
            Some(e) => Lookup::Found(e.name.as_deref(), e.value.as_deref()),
            // No peer table holds more entries than 2^32 / 32.
            None if index > u64::from(u32::MAX) / ENTRY_OVERHEAD as u64 => Lookup::Invalid,
            None => Lookup::Unresolved,
        }
    }

    /// Adds an entry at the front. `min_size` is the entry's size when a
    /// part is unknown (a lower bound); ignored otherwise.
    pub fn insert(&mut self, name: Option<&[u8]>, value: Option<&[u8]>, min_size: usize) {
        let size = match (name, value) {
            (Some(n), Some(v)) => n.len() + v.len() + ENTRY_OVERHEAD,
            _ => min_size.max(ENTRY_OVERHEAD),
        };
        if size > self.max {
            // RFC 7541 §4.4: an entry larger than the table empties it. (If
            // only our cap is smaller than the peer's table, this merely
            // shortens what we know.)
            self.forget();
            return;
        }
        self.evict_to(self.max - size);
        self.entries.push_front(Entry {
            name: name.map(Box::from),
            value: value.map(Box::from),
            size,
        });
        self.size += size;
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(t: &DynamicTable, i: u64) -> (Option<&[u8]>, Option<&[u8]>) {
        match t.get(i) {
            Lookup::Found(n, v) => (n, v),
            other => panic!("index {i}: {other:?}"),
        }
    }

    #[test]
    fn static_entries() {
        let t = DynamicTable::new(4096);
        assert_eq!(found(&t, 2), (Some(&b":method"[..]), Some(&b"GET"[..])));
        assert_eq!(found(&t, 61).0, Some(&b"www-authenticate"[..]));
        assert_eq!(t.get(0), Lookup::Invalid);
        assert_eq!(t.get(62), Lookup::Unresolved);
    }

    #[test]
    fn insert_evict_and_unknown_parts() {
        let mut t = DynamicTable::new(4096);
        t.set_max(100);
        t.insert(Some(b"a"), Some(b"1"), 0); // 34
        t.insert(Some(b"b"), Some(b"2"), 0); // 34
        assert_eq!(found(&t, 62), (Some(&b"b"[..]), Some(&b"2"[..])));
        assert_eq!(found(&t, 63).0, Some(&b"a"[..]));
        t.insert(None, Some(b"3"), 33); // 33 lower bound: evicts "a"
        assert_eq!(t.len(), 2);
        assert_eq!(found(&t, 62), (None, Some(&b"3"[..])));
        assert_eq!(t.get(64), Lookup::Unresolved);
        // Too large an entry empties the table.
        t.insert(Some(&[b'x'; 80]), Some(b""), 0);
        assert!(t.is_empty());
        assert_eq!(t.size(), 0);
    }

    #[test]
    fn cap_bounds_the_peers_maximum() {
        let mut t = DynamicTable::new(64);
        t.set_max(1 << 20);
        t.insert(Some(b"n"), Some(b"v"), 0);
        t.insert(Some(b"m"), Some(b"w"), 0);
        assert_eq!(t.len(), 1);
        assert!(t.size() <= 64);
    }
}
