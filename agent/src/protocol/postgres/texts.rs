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

struct Slot {
    hash: u64,
    shape: Shape,
    parsed: Arc<Parsed>,
}

struct Table {
    hasher: foldhash::fast::RandomState,
    slots: Vec<Option<Slot>>,
    /// Sanitized statements, not cut.
    sanitized: Vec<Option<(u64, Arc<QueryText>)>>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table {
        hasher: foldhash::fast::RandomState::default(),
        slots: Vec::new(),
        sanitized: Vec::new(),
    });
}

/// The [`QueryText`] of a statement whose sanitized, complete (not cut)
/// text is `text`: from the table, else made with the summary `summary`
/// gives, and kept.
pub fn sanitized(text: String, summary: impl FnOnce() -> Option<Arc<str>>) -> Arc<QueryText> {
    let build = |text: String, summary: Option<Arc<str>>| {
        Arc::new(QueryText {
            text: text.into(),
            summary,
            truncated: false,
        })
    };
    if text.len() > MAX_LEN {
        return build(text, summary());
    }
    TABLE.with_borrow_mut(|table| {
        let hash = table.hasher.hash_one(text.as_str());
        if table.sanitized.is_empty() {
            table.sanitized.resize_with(SLOTS, || None);
        }
        let slot = &mut table.sanitized[(hash as usize) % SLOTS];
        if let Some((h, q)) = slot
            && *h == hash
            && *q.text == *text
        {
            return Arc::clone(q);
        }
        let q = build(text, summary());
        *slot = Some((hash, Arc::clone(&q)));
        q
    })
}

/// What `raw` (a complete text, not cut) becomes with `shape`: from the
/// table, else built by `build` (given the text as UTF-8, lossily) and
/// kept.
pub fn parsed(raw: &[u8], shape: Shape, build: impl FnOnce(&str) -> Parsed) -> Arc<Parsed> {
    let text = match std::str::from_utf8(raw) {
        Ok(t) if t.len() <= MAX_LEN => t,
        _ => return Arc::new(build(&String::from_utf8_lossy(raw))),
    };
    // Looked up, built and kept in three steps: `build` uses the table of
    // sanitized statements (the `RefCell` is not held across it).
    let found = TABLE.with_borrow_mut(|table| {
        let mut h = table.hasher.build_hasher();
        shape.hash(&mut h);
        text.hash(&mut h);
        let hash = h.finish();
        if table.slots.is_empty() {
            table.slots.resize_with(SLOTS, || None);
        }
        match &table.slots[(hash as usize) % SLOTS] {
            Some(s) if s.hash == hash && s.shape == shape && &*s.parsed.raw == text => {
                Ok(Arc::clone(&s.parsed))
            }
            _ => Err(hash),
        }
    });
    let hash = match found {
        Ok(parsed) => return parsed,
        Err(hash) => hash,
    };
    let parsed = Arc::new(build(text));
    TABLE.with_borrow_mut(|table| {
        table.slots[(hash as usize) % SLOTS] = Some(Slot {
            hash,
            shape,
            parsed: Arc::clone(&parsed),
        });
    });
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
        let a = parsed(b"SELECT 1", SHAPE, build(&mut n));
        let b = parsed(b"SELECT 1", SHAPE, build(&mut n));
        assert_eq!(n, 1);
        assert!(Arc::ptr_eq(&a, &b));
        // Another shape is another result.
        let shape = Shape {
            sanitize: false,
            ..SHAPE
        };
        let c = parsed(b"SELECT 1", shape, build(&mut n));
        assert_eq!(n, 2);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(&*parsed(b"SELECT 2", SHAPE, build(&mut n)).raw, "SELECT 2");
        assert_eq!(n, 3);
    }

    #[test]
    fn long_and_invalid_texts_are_not_kept() {
        let mut n = 0;
        let long = vec![b'x'; MAX_LEN + 1];
        parsed(&long, SHAPE, build(&mut n));
        parsed(&long, SHAPE, build(&mut n));
        assert_eq!(n, 2);
        let a = parsed(b"SELECT '\xff'", SHAPE, build(&mut n));
        parsed(b"SELECT '\xff'", SHAPE, build(&mut n));
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
        let kept = parsed(b"SELECT 'kept'", SHAPE, build(&mut n));
        for i in 0..SLOTS * 4 {
            parsed(format!("SELECT {i}").as_bytes(), SHAPE, build(&mut n));
        }
        for i in 0..SLOTS * 4 {
            sanitized(format!("SELECT {i}"), || None);
        }
        TABLE.with_borrow(|t| {
            assert_eq!(t.slots.len(), SLOTS);
            assert_eq!(t.sanitized.len(), SLOTS);
        });
        // Handed out before being replaced: still valid.
        assert_eq!(&*kept.raw, "SELECT 'kept'");
    }
}
