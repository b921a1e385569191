//! SQL text as the agent needs it: a PostgreSQL-aware lexer that splits a
//! simple-Query string into statements, replaces literals by `?`
//! (`db.query.text` sanitization) and builds the low-cardinality
//! `db.query.summary` (`{operation} {target} ...`).
//!
//! The lexer follows PostgreSQL's lexical rules closely enough for these
//! jobs: `'…'` strings (`''` escapes; `E'…'` with backslash escapes; `B`, `X`,
//! `N`, `U&` prefixes), `"…"` identifiers, `$tag$…$tag$` dollar quotes, `$n`
//! parameters, nested `/* */` and `--` comments, numbers (with exponents,
//! `0x`/`0o`/`0b` and `_` separators). It never fails: unterminated
//! literals or comments run to the end of the text (which is what the
//! server would reject, and what a captured prefix looks like). Work is
//! linear in the text, which is bounded by `postgres.max_query_bytes`.

/// Longest `db.query.summary` (the conventions' 255 characters).
pub const MAX_SUMMARY_LEN: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Space,
    Comment,
    /// Identifier or keyword.
    Word,
    QuotedIdent,
    /// String, bit-string or dollar-quoted literal.
    Str,
    Number,
    /// `$1`.
    Param,
    Semicolon,
    LParen,
    RParen,
    Comma,
    Dot,
    /// Any other operator or punctuation character.
    Other,
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// Bytes that continue an identifier, by byte value: one load per byte in
/// the lexer's hottest loop.
const IDENT_CONT: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
        b += 1;
    }
    t
};

fn is_ident_cont(b: u8) -> bool {
    IDENT_CONT[b as usize]
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// End of the run of bytes from `i` for which `keep` holds.
#[inline(always)]
fn run_end(s: &[u8], mut i: usize, keep: impl Fn(u8) -> bool) -> usize {
    while i < s.len() && keep(s[i]) {
        i += 1;
    }
    i
}

/// Tokens of `s`, in order, covering it entirely.
struct Lexer<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            s: s.as_bytes(),
            at: 0,
        }
    }

    fn peek(&self, off: usize) -> u8 {
        self.s.get(self.at + off).copied().unwrap_or(0)
    }

    /// End of a `'…'` literal starting at `open` (the quote); `backslash`:
    /// E-string escapes.
    fn quoted_end(&self, open: usize, quote: u8, backslash: bool) -> usize {
        let mut i = open + 1;
        while i < self.s.len() {
            let b = self.s[i];
            if backslash && b == b'\\' {
                i += 2;
                continue;
            }
            if b == quote {
                if self.s.get(i + 1) == Some(&quote) {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i += 1;
        }
        self.s.len()
    }

    /// A `$tag$` opener at `self.at`: its length.
    fn dollar_tag(&self) -> Option<usize> {
        let rest = &self.s[self.at + 1..];
        let n = rest
            .iter()
            .take_while(|&&b| is_ident_cont(b) && b != b'$')
            .count();
        if n > 0 && rest[0].is_ascii_digit() {
            return None;
        }
        (rest.get(n) == Some(&b'$')).then_some(n + 2)
    }

    fn number_end(&self, mut i: usize) -> usize {
        let s = self.s;
        if s[i] == b'0' && matches!(s.get(i + 1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')) {
            i += 2;
            while i < s.len() && (s[i].is_ascii_hexdigit() || s[i] == b'_') {
                i += 1;
            }
            return i;
        }
        while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'_') {
            i += 1;
        }
        if s.get(i) == Some(&b'.') && s.get(i + 1) != Some(&b'.') {
            i += 1;
            while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'_') {
                i += 1;
            }
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(s.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if s.get(j).is_some_and(u8::is_ascii_digit) {
                i = j;
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
        i
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    #[inline]
    fn next(&mut self) -> Option<Token> {
        let s = self.s;
        let start = self.at;
        let b = *s.get(start)?;
        let (kind, end) = match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => (Kind::Space, run_end(s, start + 1, is_space)),
            b'-' if self.peek(1) == b'-' => {
                let n = s[start..].iter().take_while(|&&c| c != b'\n').count();
                (Kind::Comment, start + n)
            }
            b'/' if self.peek(1) == b'*' => {
                let mut depth = 0usize;
                let mut i = start;
                while i < s.len() {
                    if s[i] == b'/' && s.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if s[i] == b'*' && s.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                (Kind::Comment, i.min(s.len()))
            }
            b'\'' => (Kind::Str, self.quoted_end(start, b'\'', false)),
            b'"' => (Kind::QuotedIdent, self.quoted_end(start, b'"', false)),
            b'$' if self.peek(1).is_ascii_digit() => {
                let n = s[start + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                (Kind::Param, start + 1 + n)
            }
            b'$' => match self.dollar_tag() {
                Some(tag_len) => {
                    let tag = &s[start..start + tag_len];
                    let body = start + tag_len;
                    let end = s[body..]
                        .windows(tag_len)
                        .position(|w| w == tag)
                        .map_or(s.len(), |p| body + p + tag_len);
                    (Kind::Str, end)
                }
                None => (Kind::Other, start + 1),
            },
            b'0'..=b'9' => (Kind::Number, self.number_end(start)),
            b'.' if self.peek(1).is_ascii_digit() => (Kind::Number, self.number_end(start)),
            b';' => (Kind::Semicolon, start + 1),
            b'(' => (Kind::LParen, start + 1),
            b')' => (Kind::RParen, start + 1),
            b',' => (Kind::Comma, start + 1),
            b'.' => (Kind::Dot, start + 1),
            c if is_ident_start(c) => {
                // String prefixes: E'..', B'..', X'..', N'..', U&'..'.
                let next = self.peek(1);
                match (c.to_ascii_uppercase(), next) {
                    (b'E', b'\'') => (Kind::Str, self.quoted_end(start + 1, b'\'', true)),
                    (b'B' | b'X' | b'N', b'\'') => {
                        (Kind::Str, self.quoted_end(start + 1, b'\'', false))
                    }
                    (b'U', b'&') if self.peek(2) == b'\'' => {
                        (Kind::Str, self.quoted_end(start + 2, b'\'', false))
                    }
                    (b'U', b'&') if self.peek(2) == b'"' => {
                        (Kind::QuotedIdent, self.quoted_end(start + 2, b'"', false))
                    }
                    _ => (Kind::Word, run_end(s, start + 1, is_ident_cont)),
                }
            }
            _ => {
                // One character (whole UTF-8 sequences are words above).
                (Kind::Other, start + 1)
            }
        };
        let end = end.max(start + 1).min(s.len());
        self.at = end;
        Some(Token { kind, start, end })
    }
}

fn word_is(text: &str, t: &Token, kw: &str) -> bool {
    t.kind == Kind::Word && text[t.start..t.end].eq_ignore_ascii_case(kw)
}

/// Byte ranges of the statements of a simple-Query string: split at
/// top-level `;`, empty statements (only spaces and comments) dropped.
/// `CREATE FUNCTION/PROCEDURE … BEGIN ATOMIC … END` bodies are kept whole,
/// as psql does.
pub fn split_statements(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut meaningful = false;
    let mut words = 0usize;
    let mut routine = false;
    let mut first_words: [Option<Token>; 4] = [None; 4];
    let mut depth = 0usize;
    for t in Lexer::new(text) {
        match t.kind {
            Kind::Space | Kind::Comment => {}
            Kind::Semicolon if depth == 0 => {
                if meaningful {
                    out.push((start, t.start));
                }
                start = t.end;
                meaningful = false;
                words = 0;
                routine = false;
                first_words = [None; 4];
            }
            Kind::Semicolon => {}
            Kind::Word => {
                meaningful = true;
                if words < 4 {
                    first_words[words] = Some(t);
                    if words == 3 || words == 1 {
                        routine = is_routine_definition(text, &first_words);
                    }
                }
                words += 1;
                if routine {
                    if word_is(text, &t, "BEGIN") || word_is(text, &t, "CASE") {
                        depth += 1;
                    } else if word_is(text, &t, "END") {
                        depth = depth.saturating_sub(1);
                    }
                }
            }
            _ => meaningful = true,
        }
        if !routine {
            depth = 0;
        }
    }
    if meaningful {
        out.push((start, text.len()));
    }
    out
}

/// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`.
fn is_routine_definition(text: &str, w: &[Option<Token>; 4]) -> bool {
    let is = |i: usize, kw: &str| w[i].as_ref().is_some_and(|t| word_is(text, t, kw));
    let routine = |i: usize| is(i, "FUNCTION") || is(i, "PROCEDURE");
    is(0, "CREATE") && (routine(1) || (is(1, "OR") && is(2, "REPLACE") && routine(3)))
}

/// `text` with every literal replaced by `?`, comments dropped and runs of
/// white space collapsed to one space, cut to about `max_len` bytes (on a
/// character boundary; `…` marks the cut). Parameters (`$1`), identifiers
/// and keywords stay.
pub fn sanitize(text: &str, max_len: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_len) + 4);
    let mut space = false;
    for t in Lexer::new(text) {
        let piece = match t.kind {
            Kind::Space | Kind::Comment => {
                space = !out.is_empty();
                continue;
            }
            Kind::Str | Kind::Number => "?",
            Kind::Word if word_is(text, &t, "TRUE") || word_is(text, &t, "FALSE") => "?",
            _ => &text[t.start..t.end],
        };
        if space {
            out.push(' ');
            space = false;
        }
        if out.len() + piece.len() > max_len {
            let room = max_len.saturating_sub(out.len());
            out.push_str(&piece[..piece.floor_char_boundary(room)]);
            out.push('…');
            return out;
        }
        out.push_str(piece);
    }
    out
}

/// `text` without surrounding white space and comments, cut like
/// [`sanitize`] (for `postgres.sanitize_queries: false`).
pub fn trimmed(text: &str, max_len: usize) -> String {
    let t = text.trim();
    if t.len() <= max_len {
        return t.to_string();
    }
    let mut s = t[..t.floor_char_boundary(max_len)].to_string();
    s.push('…');
    s
}

/// Whether the text uses `$n` placeholders (a parameterized query, which
/// the conventions say is exported unsanitized).
pub fn has_parameters(text: &str) -> bool {
    Lexer::new(text).any(|t| t.kind == Kind::Param)
}

/// Object types after CREATE / ALTER / DROP, as one or two words.
const OBJECT_TYPES: &[&str] = &[
    "TABLE",
    "INDEX",
    "VIEW",
    "SEQUENCE",
    "SCHEMA",
    "DATABASE",
    "FUNCTION",
    "PROCEDURE",
    "TRIGGER",
    "EXTENSION",
    "TYPE",
    "ROLE",
    "USER",
    "DOMAIN",
    "POLICY",
    "RULE",
    "AGGREGATE",
    "COLLATION",
    "PUBLICATION",
    "SUBSCRIPTION",
    "TABLESPACE",
    "SERVER",
];

/// Words between the verb and the object type that do not change the
/// operation (`CREATE OR REPLACE`, `CREATE UNIQUE INDEX`, ...), or between
/// the type and the name (`IF NOT EXISTS`, `CONCURRENTLY`).
const NOISE: &[&str] = &[
    "OR",
    "REPLACE",
    "UNIQUE",
    "TEMP",
    "TEMPORARY",
    "UNLOGGED",
    "GLOBAL",
    "LOCAL",
    "CONCURRENTLY",
    "IF",
    "NOT",
    "EXISTS",
    "ONLY",
    "RECURSIVE",
    "TRUSTED",
    "PROCEDURAL",
];

/// Statements whose summary is their first word.
const PLAIN: &[&str] = &[
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "SET",
    "RESET",
    "SHOW",
    "LISTEN",
    "UNLISTEN",
    "NOTIFY",
    "DISCARD",
    "DEALLOCATE",
    "PREPARE",
    "EXECUTE",
    "DECLARE",
    "FETCH",
    "MOVE",
    "CLOSE",
    "DO",
    "GRANT",
    "REVOKE",
    "CHECKPOINT",
    "EXPLAIN",
    "COMMENT",
    "REFRESH",
    "REINDEX",
    "CLUSTER",
];

/// Operations recognised anywhere (subqueries, CTEs).
const DML: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"];

/// Words that end a FROM list entry's alias.
const CLAUSE_WORDS: &[&str] = &[
    "WHERE",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "NATURAL",
    "ON",
    "USING",
    "GROUP",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "HAVING",
    "WINDOW",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "FOR",
    "RETURNING",
    "SET",
    "VALUES",
    "SELECT",
    "LATERAL",
    "TABLESAMPLE",
    "FETCH",
    "WHEN",
    "DEFAULT",
    "OVERRIDING",
    "AS",
    "INTO",
    "FROM",
    "DO",
    "WITH",
    "STDIN",
    "STDOUT",
    "PROGRAM",
    "VERBOSE",
    "ANALYZE",
    "FREEZE",
    "IN",
    "NOWAIT",
];

fn in_list(text: &str, t: &Token, list: &[&str]) -> bool {
    t.kind == Kind::Word
        && list
            .iter()
            .any(|k| text[t.start..t.end].eq_ignore_ascii_case(k))
}

/// What the summary builder expects next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Nothing,
    /// A table name (after INTO, UPDATE, TABLE, COPY, TRUNCATE, ...).
    Target,
    /// A FROM/JOIN list: tables separated by commas, aliases skipped.
    FromList,
    /// The object type of CREATE/ALTER/DROP.
    ObjectType,
    /// The name of a created/altered/dropped object.
    ObjectName,
}

/// The `db.query.summary` of one statement: its operations and targets in
/// order (`SELECT users`, `INSERT orders SELECT carts`, `CREATE TABLE t`,
/// `BEGIN`), as written (no case normalization), at most
/// [`MAX_SUMMARY_LEN`] bytes cut between parts. `None` when no operation is
/// recognised.
pub fn summarize(text: &str) -> Option<String> {
    let toks: Vec<Token> = Lexer::new(text)
        .filter(|t| !matches!(t.kind, Kind::Space | Kind::Comment))
        .collect();
    let first = toks.first()?;
    if first.kind != Kind::Word && first.kind != Kind::LParen {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    let mut expect = Expect::Nothing;
    let mut verb_at: Option<usize> = None;
    let mut i = 0;
    // A plain statement: just its first word (two for START TRANSACTION).
    if in_list(text, first, PLAIN) {
        let mut s = text[first.start..first.end].to_string();
        if word_is(text, first, "START")
            && let Some(t) = toks.get(1).filter(|t| t.kind == Kind::Word)
        {
            s.push(' ');
            s.push_str(&text[t.start..t.end]);
        }
        return Some(s);
    }
    while i < toks.len() {
        let t = &toks[i];
        match expect {
            Expect::ObjectType => {
                if in_list(text, t, NOISE) {
                    i += 1;
                    continue;
                }
                if let Some(v) = verb_at.take() {
                    let verb = &text[toks[v].start..toks[v].end];
                    if in_list(text, t, OBJECT_TYPES)
                        || word_is(text, t, "MATERIALIZED")
                        || word_is(text, t, "FOREIGN")
                    {
                        let mut op = format!("{verb} {}", &text[t.start..t.end]);
                        if (word_is(text, t, "MATERIALIZED") || word_is(text, t, "FOREIGN"))
                            && let Some(n) = toks.get(i + 1).filter(|n| n.kind == Kind::Word)
                        {
                            op.push(' ');
                            op.push_str(&text[n.start..n.end]);
                            i += 1;
                        }
                        parts.push(op);
                        expect = Expect::ObjectName;
                    } else {
                        parts.push(verb.to_string());
                        expect = Expect::Nothing;
                        continue;
                    }
                }
                i += 1;
                continue;
            }
            Expect::ObjectName => {
                if in_list(text, t, NOISE) {
                    i += 1;
                    continue;
                }
                expect = Expect::Nothing;
                if matches!(t.kind, Kind::Word | Kind::QuotedIdent) {
                    let (name, next) = qualified_name(text, &toks, i);
                    parts.push(name);
                    i = next;
                    continue;
                }
            }
            Expect::Target | Expect::FromList => {
                if word_is(text, t, "ONLY") || word_is(text, t, "TABLE") {
                    i += 1;
                    continue;
                }
                if matches!(t.kind, Kind::Word | Kind::QuotedIdent)
                    && !in_list(text, t, CLAUSE_WORDS)
                    && !in_list(text, t, DML)
                {
                    let (name, next) = qualified_name(text, &toks, i);
                    let is_call = toks.get(next).is_some_and(|n| n.kind == Kind::LParen);
                    if !(is_call && expect == Expect::FromList) {
                        parts.push(name);
                    }
                    i = next;
                    if expect == Expect::FromList {
                        // Skip an alias, then go on after a comma.
                        while let Some(n) = toks.get(i) {
                            if n.kind == Kind::Comma {
                                i += 1;
                                break;
                            }
                            if n.kind == Kind::Word && !in_list(text, n, CLAUSE_WORDS) {
                                i += 1;
                                continue;
                            }
                            if word_is(text, n, "AS") {
                                i += 1;
                                continue;
                            }
                            expect = Expect::Nothing;
                            break;
                        }
                        if toks.get(i).is_none() {
                            expect = Expect::Nothing;
                        }
                    } else {
                        expect = Expect::Nothing;
                    }
                    continue;
                }
                expect = Expect::Nothing;
                // Fall through: the token is handled below (a subquery's
                // parenthesis, a keyword).
            }
            Expect::Nothing => {}
        }
        if t.kind == Kind::Word {
            let w = &text[t.start..t.end];
            if in_list(text, t, DML) {
                parts.push(w.to_string());
                if word_is(text, t, "UPDATE") {
                    expect = Expect::Target;
                }
            } else if w.eq_ignore_ascii_case("FROM") || w.eq_ignore_ascii_case("JOIN") {
                expect = Expect::FromList;
            } else if w.eq_ignore_ascii_case("INTO")
                || w.eq_ignore_ascii_case("USING")
                    && parts
                        .first()
                        .is_some_and(|p| p.eq_ignore_ascii_case("MERGE"))
            {
                expect = Expect::Target;
            } else if i == 0 || toks[i - 1].kind == Kind::LParen {
                // Statement-leading verbs with a table.
                if w.eq_ignore_ascii_case("COPY")
                    || w.eq_ignore_ascii_case("TRUNCATE")
                    || w.eq_ignore_ascii_case("VACUUM")
                    || w.eq_ignore_ascii_case("ANALYZE")
                    || w.eq_ignore_ascii_case("LOCK")
                    || w.eq_ignore_ascii_case("CALL")
                {
                    parts.push(w.to_string());
                    expect = Expect::Target;
                } else if w.eq_ignore_ascii_case("CREATE")
                    || w.eq_ignore_ascii_case("ALTER")
                    || w.eq_ignore_ascii_case("DROP")
                {
                    verb_at = Some(i);
                    expect = Expect::ObjectType;
                } else if i == 0
                    && !w.eq_ignore_ascii_case("WITH")
                    && !w.eq_ignore_ascii_case("VALUES")
                    && !w.eq_ignore_ascii_case("TABLE")
                {
                    parts.push(w.to_string());
                }
                if i == 0 && w.eq_ignore_ascii_case("TABLE") {
                    parts.push("SELECT".to_string());
                    expect = Expect::Target;
                }
            }
        }
        i += 1;
    }
    if let Some(v) = verb_at {
        parts.push(text[toks[v].start..toks[v].end].to_string());
    }
    if parts.is_empty() {
        return None;
    }
    let mut out = String::new();
    for p in parts {
        let extra = usize::from(!out.is_empty());
        if out.len() + extra + p.len() > MAX_SUMMARY_LEN {
            break;
        }
        if extra == 1 {
            out.push(' ');
        }
        out.push_str(&p);
    }
    (!out.is_empty()).then_some(out)
}

/// A possibly schema-qualified name starting at token `i` (`a.b`, `"a b"`);
/// returns it as written and the index after it.
fn qualified_name(text: &str, toks: &[Token], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    loop {
        let t = &toks[i];
        name.push_str(&text[t.start..t.end]);
        i += 1;
        match (toks.get(i), toks.get(i + 1)) {
            (Some(d), Some(n))
                if d.kind == Kind::Dot && matches!(n.kind, Kind::Word | Kind::QuotedIdent) =>
            {
                name.push('.');
                i += 1;
            }
            _ => return (name, i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        split_statements(s)
            .into_iter()
            .map(|(a, b)| s[a..b].trim())
            .collect()
    }

    #[test]
    fn splits_at_top_level_semicolons() {
        assert_eq!(split("SELECT 1; SELECT 2"), ["SELECT 1", "SELECT 2"]);
        assert_eq!(split("SELECT 1;"), ["SELECT 1"]);
        assert_eq!(split(" ; ;SELECT 1;; "), ["SELECT 1"]);
        assert_eq!(split("-- only a comment"), Vec::<&str>::new());
        assert_eq!(
            split("SELECT 'a;b' AS \"x;y\"; SELECT $$;$$; SELECT $f$ ; $f$"),
            [
                "SELECT 'a;b' AS \"x;y\"",
                "SELECT $$;$$",
                "SELECT $f$ ; $f$"
            ]
        );
        assert_eq!(
            split("SELECT 1 /* ; /* nested ; */ ; */; SELECT 2 -- ;\n; SELECT E'\\';'"),
            [
                "SELECT 1 /* ; /* nested ; */ ; */",
                "SELECT 2 -- ;",
                "SELECT E'\\';'"
            ]
        );
        let body =
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END";
        assert_eq!(split(&format!("{body}; SELECT f()")), [body, "SELECT f()"]);
        let case =
            "CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END";
        assert_eq!(split(&format!("{case};SELECT 3")), [case, "SELECT 3"]);
        // Unterminated literal (a captured prefix): one statement.
        assert_eq!(split("SELECT 'abc; SELECT 2"), ["SELECT 'abc; SELECT 2"]);
    }

    #[test]
    fn sanitizes_literals() {
        let s = |q: &str| sanitize(q, 1000);
        assert_eq!(
            s("SELECT * FROM users WHERE name = 'alice' AND id = 42"),
            "SELECT * FROM users WHERE name = ? AND id = ?"
        );
        assert_eq!(
            s("SELECT E'it\\'s', B'1010', X'ff', U&'d\\0061t'"),
            "SELECT ?, ?, ?, ?"
        );
        assert_eq!(s("SELECT $tag$ secret $tag$, $$x$$"), "SELECT ?, ?");
        assert_eq!(
            s("SELECT 1.5e-3, .5, 0x1F, 1_000, -7"),
            "SELECT ?, ?, ?, ?, -?"
        );
        assert_eq!(
            s("SELECT t1.c2 FROM t1 WHERE c = $1"),
            "SELECT t1.c2 FROM t1 WHERE c = $1"
        );
        assert_eq!(
            s("UPDATE t SET b = TRUE, c = false"),
            "UPDATE t SET b = ?, c = ?"
        );
        assert_eq!(
            s("SELECT /* user 7 */ a  --x\n\n FROM \"Weird 'T'\""),
            "SELECT a FROM \"Weird 'T'\""
        );
        assert_eq!(s("SELECT 'unterminated"), "SELECT ?");
        assert_eq!(s("SELECT 'a''b'"), "SELECT ?");
        assert_eq!(
            s("SELECT INTERVAL '1 day', DATE '2024-01-01'"),
            "SELECT INTERVAL ?, DATE ?"
        );
        assert_eq!(
            s("SELECT 'é', 'ü' FROM ünïcode"),
            "SELECT ?, ? FROM ünïcode"
        );
        assert_eq!(sanitize("SELECT aaaaaaaaaa FROM b", 10), "SELECT aaa…");
        assert_eq!(sanitize("SELECT ééééé", 9), "SELECT é…");
    }

    #[test]
    fn parameters() {
        assert!(has_parameters("SELECT $1"));
        assert!(!has_parameters("SELECT '$1', $$x$$"));
    }

    #[test]
    fn summaries() {
        // Every summary is also that of the sanitized text (statements
        // differing only in literals share one summary: `texts`).
        let s = |q: &str| {
            let summary = summarize(q);
            assert_eq!(summary, summarize(&sanitize(q, 4096)), "{q}");
            summary.unwrap_or_default()
        };
        assert_eq!(
            s("SELECT * FROM wuser_table WHERE username = ?"),
            "SELECT wuser_table"
        );
        assert_eq!(
            s(
                "INSERT INTO shipping_details (order_id, address) SELECT order_id, address FROM orders WHERE order_id = ?"
            ),
            "INSERT shipping_details SELECT orders"
        );
        assert_eq!(
            s("SELECT * FROM songs, artists WHERE songs.artist_id = artists.id"),
            "SELECT songs artists"
        );
        assert_eq!(
            s(
                "SELECT order_date FROM (SELECT * FROM orders o JOIN customers c ON o.customer_id = c.customer_id)"
            ),
            "SELECT SELECT orders customers"
        );
        assert_eq!(
            s("SELECT * FROM \"song list\", 'artists'"),
            "SELECT \"song list\""
        );
        assert_eq!(
            s("select abalance from pgbench_accounts where aid = $1"),
            "select pgbench_accounts"
        );
        assert_eq!(
            s("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"),
            "UPDATE pgbench_accounts"
        );
        assert_eq!(
            s("DELETE FROM public.users u WHERE u.id = 1"),
            "DELETE public.users"
        );
        assert_eq!(s("SELECT 1"), "SELECT");
        assert_eq!(s("SELECT g FROM generate_series(1, 10) g"), "SELECT");
        assert_eq!(s("BEGIN"), "BEGIN");
        assert_eq!(s("END"), "END");
        assert_eq!(
            s("START TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            "START TRANSACTION"
        );
        assert_eq!(
            s("CREATE TABLE IF NOT EXISTS users (id int)"),
            "CREATE TABLE users"
        );
        assert_eq!(
            s("CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)"),
            "CREATE INDEX i"
        );
        assert_eq!(s("DROP TABLE IF EXISTS a.b"), "DROP TABLE a.b");
        assert_eq!(
            s("CREATE MATERIALIZED VIEW mv AS SELECT * FROM t"),
            "CREATE MATERIALIZED VIEW mv SELECT t"
        );
        assert_eq!(s("ALTER TABLE t ADD COLUMN c int"), "ALTER TABLE t");
        assert_eq!(s("COPY users FROM STDIN"), "COPY users");
        assert_eq!(
            s("COPY (SELECT id FROM items) TO STDOUT"),
            "COPY SELECT items"
        );
        assert_eq!(s("TRUNCATE TABLE a, b"), "TRUNCATE a");
        assert_eq!(
            s("WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN b ON true"),
            "SELECT a SELECT x b"
        );
        assert_eq!(
            s("SELECT a FROM t1 LEFT JOIN t2 ON t1.id = t2.id"),
            "SELECT t1 t2"
        );
        assert_eq!(s("INSERT INTO t VALUES (1) RETURNING id"), "INSERT t");
        assert_eq!(
            s("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1"),
            "MERGE t s UPDATE"
        );
        assert_eq!(s("VACUUM ANALYZE"), "VACUUM");
        assert_eq!(s("TABLE users"), "SELECT users");
        assert_eq!(s("CALL my_proc(1)"), "CALL my_proc");
        assert_eq!(s("LISTEN ch"), "LISTEN");
        assert_eq!(s("(SELECT 1) UNION (SELECT 2)"), "SELECT SELECT");
        assert_eq!(summarize("42"), None);
        assert_eq!(summarize(""), None);
        let long = format!("SELECT * FROM {}", vec!["t"; 300].join(", "));
        assert!(s(&long).len() <= MAX_SUMMARY_LEN);
    }

    #[test]
    fn never_panics_on_odd_text() {
        for q in [
            "$", "$$", "$a", "'", "\"", "/*", "--", "E'\\", "U&", "0x", "1e", "1e+", ".", "é",
            "\u{0}",
        ] {
            let _ = sanitize(q, 100);
            let _ = summarize(q);
            let _ = split_statements(q);
        }
    }
}
