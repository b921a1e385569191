//! Shell-style globs for selection rules: `*` matches any run of
//! characters (slashes included), `?` one character, everything else
//! itself. No classes, no escapes: names and paths rarely need them.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point (the last `*`): linear
    // in practice, O(|p|·|t|) at worst, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        for (p, t) in [
            ("nginx", "nginx"),
            ("*", ""),
            ("*", "anything/at/all"),
            ("python*", "python3.11"),
            ("/usr/bin/*", "/usr/bin/python3"),
            ("*.service", "/system.slice/nginx.service"),
            ("/kubepods*/*", "/kubepods.slice/pod1/x"),
            ("a?c", "abc"),
            ("a*b*c", "aXXbYYc"),
            ("*a*", "banana"),
        ] {
            assert!(matches(p, t), "{p} ~ {t}");
        }
        for (p, t) in [
            ("nginx", "nginx2"),
            ("python*", "ipython"),
            ("a?c", "ac"),
            ("a*b*c", "aXXbYY"),
            ("", "x"),
            ("/usr/bin/*", "/usr/sbin/x"),
        ] {
            assert!(!matches(p, t), "{p} !~ {t}");
        }
    }

    #[test]
    fn no_blowup() {
        let text = "a".repeat(5000);
        assert!(!matches(&"*a".repeat(50).replace("*a*a", "*a*b"), &text));
    }
}
