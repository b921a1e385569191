//! Prometheus text exposition (format 0.0.4), written straight into one
//! reusable `String`: no intermediate metric objects, no sorting, no
//! allocation per sample.
//!
//! Numbers are printed exactly as node_exporter (Go's client_golang) prints
//! them — `strconv.FormatFloat(v, 'g', -1, 64)`: shortest round-trip digits,
//! exponent form when the decimal exponent is below -4 or at least 6
//! (`27148`, `447.71`, `6.838901e+06`, `4.1134e-05`) — so a diff of the two
//! outputs shows only real differences.

use std::fmt::Write as _;

/// Metric family type, as in `# TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Untyped,
    Histogram,
    Summary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "untyped" => Kind::Untyped,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            _ => return None,
        })
    }
}

/// The text being written. One family at a time: [`Exposition::family`]
/// then its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    /// Name of the family being written (samples default to it).
    current: String,
    /// Hashes of the family names written so far, so a textfile family
    /// cannot repeat one (a repeated family makes the whole page invalid).
    seen: Vec<u64>,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            out: String::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Starts over, keeping the buffer's capacity.
    pub fn clear(&mut self) {
        self.out.clear();
        self.current.clear();
        self.seen.clear();
    }

    pub fn as_str(&self) -> &str {
        &self.out
    }

    pub fn into_string(self) -> String {
        self.out
    }

    /// Appends text that is already in the exposition format (the agent's
    /// own metrics).
    pub fn push_raw(&mut self, text: &str) {
        self.out.push_str(text);
    }

    /// Whether a family of this name was written already.
    pub fn has_family(&self, name: &str) -> bool {
        self.seen.contains(&fnv(name))
    }

    /// Starts a family: `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        self.seen.push(fnv(name));
        self.current.clear();
        self.current.push_str(name);
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(&mut self.out, help);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// A sample of the current family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let name = std::mem::take(&mut self.current);
        self.sample_named(&name, labels, value);
        self.current = name;
    }

    /// A sample without labels.
    pub fn value(&mut self, value: f64) {
        self.sample(&[], value);
    }

    /// A sample with its own series name (`_bucket`, `_sum`, ... of
    /// histograms and summaries).
    pub fn sample_named(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        write_float(&mut self.out, value);
        self.out.push('\n');
    }
}

/// 64-bit FNV-1a.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `\` and newline are escaped in HELP.
fn escape_help(out: &mut String, s: &str) {
    if !s.contains(['\\', '\n']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `\`, `"` and newline are escaped in label values.
fn escape_label(out: &mut String, s: &str) {
    if !s.contains(['\\', '\n', '"']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` (what client_golang writes).
pub fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Integers below 1e6 print as integers in both formats: the fast path.
    if v.fract() == 0.0 && v.abs() < 1e6 {
        let _ = write!(out, "{}", v as i64);
        return;
    }
    let mut digits = [0u8; 24];
    let mut n = 0;
    let exp: i32;
    if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 {
        // An exact integer: its decimal digits are the shortest ones
        // (trailing zeros aside), no float formatting needed.
        let mut ib = itoa::Buffer::new();
        let text = ib.format(v.abs() as u64);
        exp = text.len() as i32 - 1;
        for b in text.trim_end_matches('0').bytes() {
            digits[n] = b;
            n += 1;
        }
    } else {
        // Shortest round-trip digits and the decimal exponent, from Rust's
        // `{:e}` ("d.ddddde-x").
        let mut buf = Buf::default();
        let _ = write!(buf, "{:e}", v.abs());
        let text = buf.as_str();
        let (mantissa, e) = text.split_once('e').unwrap_or((text, "0"));
        exp = e.parse().unwrap_or(0);
        for b in mantissa.bytes().filter(u8::is_ascii_digit) {
            if n < digits.len() {
                digits[n] = b;
                n += 1;
            }
        }
    }
    let digits = &digits[..n];
    if v < 0.0 {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push(char::from(digits[0]));
        if digits.len() > 1 {
            out.push('.');
            push_ascii(out, &digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        let _ = write!(out, "{e}");
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        push_ascii(out, digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            push_ascii(out, digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            push_ascii(out, &digits[..int_len]);
            out.push('.');
            push_ascii(out, &digits[int_len..]);
        }
    }
}

fn push_ascii(out: &mut String, digits: &[u8]) {
    for &d in digits {
        out.push(char::from(d));
    }
}

/// A small stack buffer for formatting one number.
struct Buf {
    bytes: [u8; 40],
    len: usize,
}

impl Default for Buf {
    fn default() -> Self {
        Self {
            bytes: [0; 40],
            len: 0,
        }
    }
}

impl Buf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("0")
    }
}

impl std::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut s = String::new();
        write_float(&mut s, v);
        s
    }

    #[test]
    fn floats_as_go_prints_them() {
        // Values taken from node_exporter's own output on this machine.
        assert_eq!(f(0.0), "0");
        assert_eq!(f(1.0), "1");
        assert_eq!(f(27148.0), "27148");
        assert_eq!(f(447.71), "447.71");
        assert_eq!(f(6_838_901.0), "6.838901e+06");
        assert_eq!(f(1_796_150_184.0), "1.796150184e+09");
        assert_eq!(f(0.000198302), "0.000198302");
        assert_eq!(f(4.1134e-05), "4.1134e-05");
        assert_eq!(f(372.02500000000003), "372.02500000000003");
        assert_eq!(f(3.5184372087808e13), "3.5184372087808e+13");
        assert_eq!(f(1e6), "1e+06");
        assert_eq!(f(100_000.0), "100000");
        assert_eq!(f(123_456.5), "123456.5");
        assert_eq!(f(-1.0), "-1");
        assert_eq!(f(-2.5e-7), "-2.5e-07");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(1.7961511659482498e9), "1.7961511659482498e+09");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(1e100), "1e+100");
        assert_eq!(f(2_466_116.0), "2.466116e+06");
        assert_eq!(f(25_275_990_016.0), "2.5275990016e+10");
        assert_eq!(f(-7_000_000.0), "-7e+06");
        assert_eq!(f(9_007_199_254_740_993.0), "9.007199254740992e+15");
        // Every integer agrees with the float path.
        for v in [1e6, 1234567.0, 1e15, 123456789012345.0, 4_000_000_001.0] {
            let mut slow = String::new();
            let (m, e) = format!("{v:e}")
                .split_once('e')
                .map(|(m, e)| (m.to_string(), e.parse::<i32>().unwrap()))
                .unwrap();
            slow.push_str(&m);
            slow.push_str(&format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()));
            assert_eq!(f(v), slow, "{v}");
        }
    }

    #[test]
    fn families_and_escaping() {
        let mut e = Exposition::new();
        e.family("node_x", "Help with \\ and\nnewline.", Kind::Gauge);
        e.sample(&[("a", "q\"uote\\d\n")], 2.0);
        e.value(3.0);
        assert_eq!(
            e.as_str(),
            "# HELP node_x Help with \\\\ and\\nnewline.\n# TYPE node_x gauge\n\
             node_x{a=\"q\\\"uote\\\\d\\n\"} 2\nnode_x 3\n"
        );
        assert!(e.has_family("node_x"));
        assert!(!e.has_family("node_y"));
    }
}
