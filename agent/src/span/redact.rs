//! Redaction of what could carry secrets before it leaves the host.
//!
//! Headers are never exported except `User-Agent` (so `Authorization` and
//! `Cookie` never leave); query strings keep their keys but values are
//! replaced per [`RedactQuery`]; credentials in URLs are removed.

use crate::config::RedactQuery;

pub const REDACTED: &str = "REDACTED";

/// Longest query string exported (bytes); longer ones are cut.
pub const MAX_QUERY_LEN: usize = 1024;

#[derive(Debug, Clone)]
pub struct Redactor {
    mode: RedactQuery,
    /// Lowercase keys whose values are redacted in `Sensitive` mode.
    sensitive: Vec<String>,
}

impl Redactor {
    pub fn new(mode: RedactQuery, sensitive_keys: &[String]) -> Self {
        Self {
            mode,
            sensitive: sensitive_keys
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect(),
        }
    }

    fn is_sensitive(&self, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        self.sensitive.contains(&key)
    }

    /// The query string (without `?`) as it may be exported.
    pub fn query(&self, query: &str) -> String {
        let query = cut(query, MAX_QUERY_LEN);
        if self.mode == RedactQuery::None {
            return query.to_string();
        }
        let mut out = String::with_capacity(query.len());
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, value)) => {
                    out.push_str(key);
                    out.push('=');
                    if self.mode == RedactQuery::All || self.is_sensitive(key) {
                        out.push_str(REDACTED);
                    } else {
                        out.push_str(value);
                    }
                }
                // A bare segment may itself be a token.
                None if self.mode == RedactQuery::All && !pair.is_empty() => out.push_str(REDACTED),
                None => out.push_str(pair),
            }
        }
        out
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Removes `user:password@` from an authority (`Host` header values or
/// absolute-form request targets).
pub fn strip_userinfo(authority: &str) -> &str {
    match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_SENSITIVE_QUERY_KEYS;

    fn r(mode: RedactQuery) -> Redactor {
        let keys: Vec<String> = DEFAULT_SENSITIVE_QUERY_KEYS
            .iter()
            .map(|s| s.to_string())
            .collect();
        Redactor::new(mode, &keys)
    }

    #[test]
    fn all_mode_keeps_keys_only() {
        assert_eq!(
            r(RedactQuery::All).query("token=secret&q=1"),
            "token=REDACTED&q=REDACTED"
        );
        assert_eq!(r(RedactQuery::All).query("abc123"), "REDACTED");
        assert_eq!(
            r(RedactQuery::All).query("a=&&b=2"),
            "a=REDACTED&&b=REDACTED"
        );
    }

    #[test]
    fn sensitive_mode() {
        assert_eq!(
            r(RedactQuery::Sensitive).query("API_KEY=x&page=2&Password=p"),
            "API_KEY=REDACTED&page=2&Password=REDACTED"
        );
    }

    #[test]
    fn none_mode_and_cut() {
        assert_eq!(r(RedactQuery::None).query("token=secret"), "token=secret");
        let long = "a".repeat(5000);
        assert_eq!(r(RedactQuery::None).query(&long).len(), MAX_QUERY_LEN);
        assert_eq!(cut("héllo", 2), "h");
    }

    #[test]
    fn userinfo() {
        assert_eq!(strip_userinfo("user:pw@example.com:80"), "example.com:80");
        assert_eq!(strip_userinfo("example.com"), "example.com");
    }
}
