//! Statement texts already turned into [`QueryText`]s, shared between the
//! connections of the pipeline thread.
//!
//! Splitting a Query string into statements, sanitizing and summarizing
//! each one lexes the text three times, and a statement usually comes by
//! more than once: the same bytes are seen at both ends of a connection
//! on this host (the client's write, then the server's read), and
//! applications send the same text again and again (prepared and
//! parameterized statements, literal-free queries). This table remembers
//! what a text became, keyed by its exact bytes and by the options that
//! shape the result, so that a repeat costs a hash and a comparison.
//!
//! A second table does the same for sanitized statements: texts that
//! differ only in their literals (`… WHERE aid = 77773`, `… = 25951`)
//! sanitize to the same text, and so to the same [`QueryText`], its
//! summary made once (a summary never depends on literals: the unit tests
//! of `sql` check that each one equals the summary of the sanitized text).
//!
//! Both bounded and per thread (the pipeline runs on one): direct-mapped
//! tables of [`SLOTS`] entries, a new text replacing the one in its slot;
//! texts longer than [`MAX_LEN`] bytes, cut texts and texts that are not
//! valid UTF-8 are not kept. What it hands out is reference-counted, so a
//! replaced entry stays valid where it is used.

use std::{
    cell::RefCell,
    hash::{BuildHasher, Hash, Hasher},
    sync::Arc,
};

use super::session::QueryText;

/// Entries of the table.
pub const SLOTS: usize = 512;
/// Longest text kept (bytes).
pub const MAX_LEN: usize = 2048;

/// What a text became: the text itself (for error positions) and its
/// statements.
#[derive(Debug)]
pub struct Parsed {
    pub raw: Arc<str>,
    pub statements: Box<[Statement]>,
}

/// One statement of a text.
#[derive(Debug)]
pub struct Statement {
    /// Byte range in the text.
    pub range: (usize, usize),
    pub text: Arc<QueryText>,
}

/// The options a result depends on besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// A simple Query (split into statements) or a Parse (one statement,
    /// left unsanitized when it has parameters).
    pub query: bool,
    pub sanitize: bool,
    pub max_query_bytes: usize,
}

/// A direct-mapped table: an entry per slot, chosen by its hash, a new
/// entry replacing the one in its slot.
struct Slots<V> {
    slots: Vec<Option<(u64, V)>>,
}

impl<V: Clone> Slots<V> {
    const fn new() -> Self {
        Self { slots: Vec::new() }
    }

    fn index(hash: u64) -> usize {
        (hash as usize) % SLOTS
    }

    fn get(&self, hash: u64, matches: impl FnOnce(&V) -> bool) -> Option<V> {
        match self.slots.get(Self::index(hash))? {
            Some((h, v)) if *h == hash && matches(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn put(&mut self, hash: u64, v: V) {
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        self.slots[Self::index(hash)] = Some((hash, v));
    }
}

struct Table {
    hasher: foldhash::fast::RandomState,
    /// Query and Parse texts, by bytes and shape.
    parsed: Slots<(Shape, Arc<Parsed>)>,
    /// Sanitized statements, not cut.
    sanitized: Slots<Arc<QueryText>>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table {
        hasher: foldhash::fast::RandomState::default(),
        parsed: Slots::new(),
        sanitized: Slots::new(),
    });
}

/// The [`QueryText`] of a statement whose sanitized, complete (not cut)
/// text is `text`: from the table, else made with the summary `summary`
/// gives, and kept.
pub fn sanitized(text: String, summary: impl FnOnce() -> Option<Arc<str>>) -> Arc<QueryText> {
    let build = |text: String| {
        Arc::new(QueryText {
            text: text.into(),
            summary: summary(),
            truncated: false,
        })
    };
    if text.len() > MAX_LEN {
        return build(text);
    }
    TABLE.with_borrow_mut(|table| {
        let hash = table.hasher.hash_one(text.as_str());
        if let Some(q) = table.sanitized.get(hash, |q| *q.text == *text) {
            return q;
        }
        let q = build(text);
        table.sanitized.put(hash, Arc::clone(&q));
        q
    })
}

/// What the text `raw` becomes with `shape`: from the table, else built by
/// `build` (given the text as UTF-8, lossily) and kept — unless `cut` (the
/// text is not complete), too long or not UTF-8.
pub fn parsed(
    raw: &[u8],
    cut: bool,
    shape: Shape,
    build: impl FnOnce(&str) -> Parsed,
) -> Arc<Parsed> {
    let text = match std::str::from_utf8(raw) {
        Ok(t) if !cut && t.len() <= MAX_LEN => t,
        _ => return Arc::new(build(&String::from_utf8_lossy(raw))),
    };
    // Looked up, built and kept in three steps: `build` uses the table of
    // sanitized statements (the `RefCell` is not held across it).
    let (hash, found) = TABLE.with_borrow(|table| {
        let mut h = table.hasher.build_hasher();
        shape.hash(&mut h);
        text.hash(&mut h);
        let hash = h.finish();
        let found = table
            .parsed
            .get(hash, |(s, p)| *s == shape && &*p.raw == text);
        (hash, found)
    });
    if let Some((_, parsed)) = found {
        return parsed;
    }
    let parsed = Arc::new(build(text));
    TABLE.with_borrow_mut(|table| table.parsed.put(hash, (shape, Arc::clone(&parsed))));
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        query: true,
        sanitize: true,
        max_query_bytes: 4096,
    };

    fn build(counter: &mut u32) -> impl FnOnce(&str) -> Parsed + '_ {
        move |t| {
            *counter += 1;
            Parsed {
                raw: Arc::from(t),
                statements: Box::new([]),
            }
        }
    }

    #[test]
    fn a_repeat_is_not_built_again() {
        let mut n = 0;
        let a = parsed(b"SELECT 1", false, SHAPE, build(&mut n));
        let b = parsed(b"SELECT 1", false, SHAPE, build(&mut n));
        assert_eq!(n, 1);
        assert!(Arc::ptr_eq(&a, &b));
        // Another shape is another result.
        let shape = Shape {
            sanitize: false,
            ..SHAPE
        };
        let c = parsed(b"SELECT 1", false, shape, build(&mut n));
        assert_eq!(n, 2);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(
            &*parsed(b"SELECT 2", false, SHAPE, build(&mut n)).raw,
            "SELECT 2"
        );
        assert_eq!(n, 3);
    }

    #[test]
    fn long_and_invalid_texts_are_not_kept() {
        let mut n = 0;
        let long = vec![b'x'; MAX_LEN + 1];
        parsed(&long, false, SHAPE, build(&mut n));
        parsed(&long, false, SHAPE, build(&mut n));
        assert_eq!(n, 2);
        let a = parsed(b"SELECT '\xff'", false, SHAPE, build(&mut n));
        parsed(b"SELECT '\xff'", false, SHAPE, build(&mut n));
        assert_eq!(n, 4);
        assert_eq!(&*a.raw, "SELECT '\u{fffd}'");
    }

    #[test]
    fn sanitized_statements_are_shared() {
        let mut summaries = 0;
        let mut summary = || {
            summaries += 1;
            Some(Arc::from("SELECT t"))
        };
        let a = sanitized("SELECT a FROM t WHERE id = ?".into(), &mut summary);
        let b = sanitized("SELECT a FROM t WHERE id = ?".into(), &mut summary);
        assert!(Arc::ptr_eq(&a, &b));
        let c = sanitized("SELECT b FROM t WHERE id = ?".into(), &mut summary);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(summaries, 2);
        assert!(!a.truncated);
        assert_eq!(a.summary.as_deref(), Some("SELECT t"));
    }

    #[test]
    fn bounded() {
        let mut n = 0;
        let kept = parsed(b"SELECT 'kept'", false, SHAPE, build(&mut n));
        for i in 0..SLOTS * 4 {
            parsed(
                format!("SELECT {i}").as_bytes(),
                false,
                SHAPE,
                build(&mut n),
            );
        }
        for i in 0..SLOTS * 4 {
            sanitized(format!("SELECT {i}"), || None);
        }
        TABLE.with_borrow(|t| {
            assert_eq!(t.parsed.slots.len(), SLOTS);
            assert_eq!(t.sanitized.slots.len(), SLOTS);
        });
        // Handed out before being replaced: still valid.
        assert_eq!(&*kept.raw, "SELECT 'kept'");
    }
}
