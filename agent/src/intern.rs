//! Shared copies of the strings that repeat from request to request: header
//! values (`Host`, `User-Agent`, `Content-Type`), server addresses, paths.
//!
//! A host sees few distinct values of these, but every request carried its
//! own copy: parsed into a `String`, copied again into the span's
//! attributes, freed twice. [`intern`] hands out one `Arc<str>` per
//! distinct value instead (a hash lookup and a reference count).
//!
//! Bounded and per thread (the pipeline runs on one): at most
//! [`MAX_ENTRIES`] values of at most [`MAX_LEN`] bytes are kept; longer
//! values are not kept, and a full table is emptied (values still in use
//! stay valid: they are reference-counted), so high-cardinality input
//! costs a miss per value, never unbounded memory.

use std::{cell::RefCell, collections::HashSet, sync::Arc};

/// Values kept at most.
pub const MAX_ENTRIES: usize = 4096;
/// Longest value kept (longer ones are allocated each time).
pub const MAX_LEN: usize = 256;

type Table = HashSet<Arc<str>, foldhash::fast::RandomState>;

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The shared copy of `s`.
pub fn intern(s: &str) -> Arc<str> {
    if s.len() > MAX_LEN {
        return Arc::from(s);
    }
    TABLE.with_borrow_mut(|table| {
        if let Some(shared) = table.get(s) {
            return Arc::clone(shared);
        }
        if table.len() >= MAX_ENTRIES {
            table.clear();
        }
        let shared: Arc<str> = Arc::from(s);
        table.insert(Arc::clone(&shared));
        shared
    })
}

/// The shared copy of the text `build` writes (into a reused buffer: no
/// allocation when the value is known). `build` must not call
/// `intern_built` itself (the buffer is in use).
pub fn intern_built(build: impl FnOnce(&mut String)) -> Arc<str> {
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        build(buf);
        let shared = intern(buf);
        if buf.capacity() > 4 * MAX_LEN {
            *buf = String::new();
        }
        shared
    })
}

/// A header value as text: surrounding whitespace removed, invalid UTF-8
/// replaced (U+FFFD), shared.
pub fn intern_text(value: &[u8]) -> Arc<str> {
    let value = value.trim_ascii();
    match std::str::from_utf8(value) {
        Ok(s) => intern(s),
        Err(_) => intern(String::from_utf8_lossy(value).trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_value() {
        let a = intern("python-requests/2.31.0");
        let b = intern(&String::from("python-requests/2.31.0"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*intern("other"), "other");
    }

    #[test]
    fn text_is_trimmed_and_lossy() {
        assert_eq!(&*intern_text(b"  text/plain \t"), "text/plain");
        assert_eq!(&*intern_text(b" a\xffb "), "a\u{fffd}b");
        assert!(Arc::ptr_eq(&intern_text(b" x "), &intern("x")));
    }

    #[test]
    fn built_in_place() {
        let a = intern_built(|b| b.push_str("http://h/x"));
        assert!(Arc::ptr_eq(&a, &intern("http://h/x")));
    }

    #[test]
    fn bounded() {
        let long = "x".repeat(MAX_LEN + 1);
        assert!(!Arc::ptr_eq(&intern(&long), &intern(&long)));
        for i in 0..MAX_ENTRIES * 2 {
            intern(&i.to_string());
        }
        TABLE.with_borrow(|t| assert!(t.len() <= MAX_ENTRIES));
        // A value handed out before the table was emptied stays valid.
        let kept = intern("kept");
        for i in 0..MAX_ENTRIES {
            intern(&format!("v{i}"));
        }
        assert_eq!(&*kept, "kept");
    }
}
