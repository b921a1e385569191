//! Low-cardinality path templates for requests whose route is unknown.
//!
//! Without a framework the agent sees `/users/1234/orders/9f8e…`, not the
//! route `/users/{id}/orders/{id}`. A template folds the segments that are
//! identifiers — numbers, UUIDs, hashes, dates, and opaque tokens mixing
//! letters and digits — so that RED metrics and span names stay bounded.
//! [`RouteTable`] then caps the templates per service: past the cap, new
//! templates collapse into [`OVERFLOW_ROUTE`].
//!
//! It is a heuristic (a slug like `/docs/intro` stays as is, `/v2` is kept,
//! `/u/abc123` folds), documented as such: `http.route` set by the agent
//! means "the path with identifiers folded".

use std::{hash::BuildHasher, sync::Arc};

use foldhash::{HashMap, HashSet};

/// The route every template past a service's cap becomes.
pub const OVERFLOW_ROUTE: &str = "/{overflow}";

/// Longest template kept (bytes); longer paths are cut at a segment.
const MAX_TEMPLATE: usize = 256;
/// Most segments kept; the rest become one `/{…}`.
const MAX_SEGMENTS: usize = 12;

/// The template of a request path (no query string).
pub fn template(path: &str) -> String {
    let mut out = String::with_capacity(path.len().min(MAX_TEMPLATE));
    template_into(path, &mut out);
    out
}

/// [`template`] into a reusable buffer (cleared first).
pub fn template_into(path: &str, out: &mut String) {
    out.clear();
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() || path == "/" {
        out.push('/');
        return;
    }
    if path == "*" {
        out.push('*');
        return;
    }
    let trailing_slash = path.len() > 1 && path.ends_with('/');
    for (n, segment) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
        if n == MAX_SEGMENTS {
            out.push_str("/{…}");
            break;
        }
        let folded = fold(segment);
        let text = folded.unwrap_or(segment);
        if out.len() + 1 + text.len() > MAX_TEMPLATE {
            out.push_str("/{…}");
            break;
        }
        out.push('/');
        out.push_str(text);
    }
    // An empty result is the root; a kept trailing slash stays (a folded
    // last segment drops it: `/users/1234/` is `/users/{id}`).
    if out.is_empty() || (trailing_slash && !out.ends_with('}')) {
        out.push('/');
    }
}

/// The placeholder for an identifier segment, or `None` to keep it.
fn fold(segment: &str) -> Option<&'static str> {
    let s = segment;
    let b = s.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return Some("{id}");
    }
    if is_uuid(b) {
        return Some("{uuid}");
    }
    if b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit) {
        return Some("{hash}");
    }
    if is_date(b) {
        return Some("{date}");
    }
    // Percent-encoded or otherwise non-ASCII bytes: free text.
    if b.iter().any(|c| !c.is_ascii() || *c == b'%') {
        return Some("{param}");
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    // "v1", "v2beta", "h2", "api3": short version-like words stay.
    if digits > 0 && letters > 0 && b.len() >= 5 {
        // Opaque tokens: ids with a prefix ("ord_8f3k2", "user42abc"),
        // base64-ish keys. Words with a trailing version ("oauth2") are
        // short; tokens are long or digit-heavy.
        if b.len() >= 12 || digits * 3 >= b.len() {
            return Some("{id}");
        }
    }
    // Long base64/base64url blobs without digits are still opaque.
    if b.len() >= 32
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_=".contains(c))
    {
        return Some("{token}");
    }
    None
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `2024-05-01` (a compact `20240501` is a number: `{id}`).
fn is_date(b: &[u8]) -> bool {
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// Raw paths remembered by [`RouteTable`] (about 100 bytes each).
const MAX_SEEN_PATHS: usize = 4096;

/// The part of a path that decides its template, if short enough to be
/// remembered (a longer one is templated every time).
fn cacheable(path: &str) -> Option<&str> {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    (end <= 256).then(|| &path[..end])
}

/// Templates seen per service, capped: a service cannot make the agent's
/// metrics unbounded by sending random paths.
pub struct RouteTable {
    per_service: HashMap<u64, HashSet<Arc<str>>>,
    /// Raw paths already templated, per service (most requests repeat a
    /// path: no templating for them). Bounded: cleared when full.
    /// Keyed by a hash of (service, path); the path is kept to verify.
    seen_paths: HashMap<u64, (u64, Box<str>, Arc<str>)>,
    hasher: foldhash::fast::RandomState,
    max_per_service: usize,
    max_services: usize,
    overflowed: u64,
    /// The template being built (reused: no allocation per request).
    buf: String,
    overflow: Arc<str>,
}

impl RouteTable {
    pub fn new(max_per_service: usize, max_services: usize) -> Self {
        Self {
            per_service: HashMap::default(),
            seen_paths: HashMap::default(),
            hasher: foldhash::fast::RandomState::default(),
            max_per_service: max_per_service.max(1),
            max_services: max_services.max(1),
            overflowed: 0,
            buf: String::with_capacity(MAX_TEMPLATE + 8),
            overflow: Arc::from(OVERFLOW_ROUTE),
        }
    }

    /// The route to report for `path` in the service identified by
    /// `service_key`: its template, or [`OVERFLOW_ROUTE`] once the service
    /// has `max_per_service` other templates. Known templates are shared
    /// (no allocation).
    pub fn route(&mut self, service_key: u64, path: &str) -> Arc<str> {
        let p = cacheable(path);
        let h = p.map(|p| self.hasher.hash_one((service_key, p)));
        if let (Some(p), Some(h)) = (p, h)
            && let Some((s, known, t)) = self.seen_paths.get(&h)
            && *s == service_key
            && &**known == p
        {
            return Arc::clone(t);
        }
        template_into(path, &mut self.buf);
        if self.per_service.len() >= self.max_services
            && !self.per_service.contains_key(&service_key)
        {
            // Forget everything rather than grow: templates are re-learnt.
            self.per_service.clear();
            self.seen_paths.clear();
        }
        let seen = self.per_service.entry(service_key).or_default();
        let t = if let Some(t) = seen.get(self.buf.as_str()) {
            Arc::clone(t)
        } else if seen.len() >= self.max_per_service {
            // Not remembered: every such request is counted.
            self.overflowed += 1;
            return Arc::clone(&self.overflow);
        } else {
            let t: Arc<str> = Arc::from(self.buf.as_str());
            seen.insert(Arc::clone(&t));
            t
        };
        if let (Some(p), Some(h)) = (p, h) {
            if self.seen_paths.len() >= MAX_SEEN_PATHS {
                self.seen_paths.clear();
            }
            self.seen_paths
                .insert(h, (service_key, Box::from(p), Arc::clone(&t)));
        }
        t
    }

    /// Requests reported as [`OVERFLOW_ROUTE`] so far.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_identifiers() {
        for (path, want) in [
            ("/", "/"),
            ("", "/"),
            ("*", "*"),
            ("/users", "/users"),
            ("/users/", "/users/"),
            ("/users/1234", "/users/{id}"),
            ("/users/1234/", "/users/{id}"),
            ("/users/1234/orders/77", "/users/{id}/orders/{id}"),
            (
                "/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
                "/items/{uuid}",
            ),
            ("/blobs/9f86d081884c7d659a2feaa0c55ad015", "/blobs/{hash}"),
            ("/reports/2024-05-01", "/reports/{date}"),
            ("/reports/20240501", "/reports/{id}"),
            ("/api/v1/health", "/api/v1/health"),
            ("/api/v2beta/items", "/api/v2beta/items"),
            ("/oauth2/callback", "/oauth2/callback"),
            ("/orders/ord_8f3k2j9x1q", "/orders/{id}"),
            ("/u/abc123", "/u/{id}"),
            ("/search/caf%C3%A9", "/search/{param}"),
            ("/docs/getting-started", "/docs/getting-started"),
            ("/static/app.js", "/static/app.js"),
            ("/a//b", "/a/b"),
            ("/items/42?x=1", "/items/{id}"),
            ("/t/QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk", "/t/{id}"),
            ("/t/abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_xyz", "/t/{token}"),
        ] {
            assert_eq!(template(path), want, "{path}");
        }
    }

    #[test]
    fn bounded_length_and_depth() {
        let deep = "/a".repeat(100);
        let t = template(&deep);
        assert!(t.ends_with("/{…}"), "{t}");
        assert_eq!(t.matches('/').count(), MAX_SEGMENTS + 1);
        let long = format!("/{}", "x".repeat(1000));
        assert!(template(&long).len() <= MAX_TEMPLATE + 8);
    }

    #[test]
    fn cap_per_service_then_overflow() {
        let mut t = RouteTable::new(3, 10);
        assert_eq!(&*t.route(1, "/a"), "/a");
        assert_eq!(&*t.route(1, "/b/1"), "/b/{id}");
        assert_eq!(
            &*t.route(1, "/b/2"),
            "/b/{id}",
            "same template, no new slot"
        );
        assert_eq!(&*t.route(1, "/c"), "/c");
        assert_eq!(&*t.route(1, "/d"), OVERFLOW_ROUTE);
        assert_eq!(&*t.route(1, "/a"), "/a", "known templates still reported");
        assert_eq!(&*t.route(2, "/d"), "/d", "caps are per service");
        assert_eq!(t.overflowed(), 1);
    }

    #[test]
    fn remembered_paths_answer_the_same() {
        let mut t = RouteTable::new(2, 10);
        for _ in 0..3 {
            assert_eq!(&*t.route(1, "/b/1?x=2"), "/b/{id}");
            assert_eq!(&*t.route(1, "/b/1"), "/b/{id}");
            assert_eq!(&*t.route(2, "/b/1"), "/b/{id}");
            assert_eq!(&*t.route(1, "/a"), "/a");
        }
        // Past the cap: every request counted, none remembered.
        assert_eq!(&*t.route(1, "/c"), OVERFLOW_ROUTE);
        assert_eq!(&*t.route(1, "/c"), OVERFLOW_ROUTE);
        assert_eq!(t.overflowed(), 2);
        let long = format!("/{}", "x".repeat(300));
        assert_eq!(&*t.route(3, &long), &*template(&long));
        assert!(t.seen_paths.len() <= MAX_SEEN_PATHS);
    }

    #[test]
    fn bounded_services() {
        let mut t = RouteTable::new(2, 2);
        t.route(1, "/a");
        t.route(2, "/a");
        t.route(3, "/a");
        assert!(t.per_service.len() <= 2);
    }
}
