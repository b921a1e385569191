//! Prometheus / OpenMetrics text parsing and the agent's metric names.
//!
//! The metric names are not final: tests look counters up by **substring of
//! the series name** through the constants in [`names`], so a rename in the
//! agent is one edit here.

use std::collections::BTreeMap;

/// Substrings that identify the agent's counters. Adjust here when the agent's
/// metric names settle; every test goes through these.
pub mod names {
    /// Records read from the BPF ring buffer (`agent_events_read_total{kind}`).
    pub const EVENTS_READ: &str = "events_read";
    /// Records lost, by reason (`agent_events_lost_total{reason}`).
    pub const RECORDS_LOST: &str = "events_lost";
    /// Protocol framing lost / parse errors (`agent_parse_errors_total{protocol,stream,reason}`).
    pub const PARSE_ERRORS: &str = "parse_error";
    /// A separate desync counter, if the agent ever splits one out of
    /// [`PARSE_ERRORS`] (tests accept either).
    pub const DESYNC: &str = "desync";
    /// Spans accepted by the backend (`agent_spans_exported_total`).
    pub const SPANS_EXPORTED: &str = "spans_exported";
    /// Spans dropped, by reason (`agent_spans_dropped_total{reason}`).
    pub const SPANS_DROPPED: &str = "spans_dropped";
    /// Export requests, by result (`agent_export_requests_total{result}`).
    pub const EXPORT_REQUESTS: &str = "export_requests";
    /// The label on [`EXPORT_REQUESTS`] that marks a failed export.
    pub const EXPORT_FAILED_LABEL: (&str, &str) = ("result", "error");
}

/// Dropped spans plus failed export requests: what rises while the OTLP
/// backend fails or is down.
pub fn export_failures(text: &str) -> f64 {
    sum(text, names::SPANS_DROPPED).unwrap_or(0.0)
        + sum_with_labels(text, names::EXPORT_REQUESTS, &[names::EXPORT_FAILED_LABEL])
            .unwrap_or(0.0)
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition format (Prometheus 0.0.4 or OpenMetrics).
/// Comment lines (`# HELP`, `# TYPE`, `# EOF`) are skipped, as are
/// exemplars and timestamps.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = parse_line(line) {
            out.push(s);
        }
    }
    out
}

fn parse_line(line: &str) -> Option<Sample> {
    // Exemplars follow " # ".
    let line = line.split(" # ").next()?;
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = find_label_end(line, open)?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close]),
                line[close + 1..].trim(),
            )
        }
        None => {
            let mut it = line.splitn(2, char::is_whitespace);
            let name = it.next()?;
            (name, BTreeMap::new(), it.next().unwrap_or("").trim())
        }
    };
    let value_str = rest.split_whitespace().next()?;
    let value = match value_str {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_string(),
        labels,
        value,
    })
}

fn find_label_end(line: &str, open: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut in_quotes = false;
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'}' if !in_quotes => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = rest[eq + 1..].trim_start();
        if !rest.starts_with('"') {
            break;
        }
        let mut val = String::new();
        let mut chars = rest[1..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => val.push('\n'),
                    Some((_, c)) => val.push(c),
                    None => {}
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => val.push(c),
            }
        }
        let Some(end) = end else { break };
        out.insert(key, val);
        rest = rest[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    out
}

/// True for series that are bookkeeping rather than counts (`*_created`,
/// histogram buckets' `_bucket`, `_count` and `_sum` are kept).
fn is_created(name: &str) -> bool {
    name.ends_with("_created")
}

/// Samples whose name contains `substr` (excluding `*_created`).
pub fn find<'a>(samples: &'a [Sample], substr: &str) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name.contains(substr) && !is_created(&s.name))
        .collect()
}

/// Sum of all series whose name contains `substr`; `None` when there is none.
pub fn sum(text: &str, substr: &str) -> Option<f64> {
    let samples = parse(text);
    let found = find(&samples, substr);
    if found.is_empty() {
        None
    } else {
        Some(found.iter().map(|s| s.value).sum())
    }
}

/// Sum of the series whose name contains `substr` and that carry every label in `labels`.
pub fn sum_with_labels(text: &str, substr: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let samples = parse(text);
    let found: Vec<&Sample> = find(&samples, substr)
        .into_iter()
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    if found.is_empty() {
        None
    } else {
        Some(found.iter().map(|s| s.value).sum())
    }
}

/// Lines of `text` whose series name contains `substr` (for failure messages).
pub fn grep(text: &str, substr: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(substr))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The agent's loss, parse-error and HTTP/2 counters that are not zero,
/// on one line (for failure messages).
pub fn interesting(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            ["lost_total", "parse_errors", "hpack", "http2", "ignored"]
                .iter()
                .any(|k| l.contains(k))
        })
        .filter(|l| !l.ends_with(" 0"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP agent_events_read Events read.
# TYPE agent_events_read counter
agent_events_read_total 1234
agent_events_read_created 1.7e9
# TYPE agent_records_lost counter
agent_events_lost_total{reason="ring_full"} 3
agent_events_lost_total{reason="map_full",cpu="1"} 4
agent_spans_dropped_total{reason="export_failed"} 5
agent_export_requests_total{result="error"} 2
agent_export_requests_total{result="ok"} 9
agent_spans_exported_total 10 # {trace_id="abc"} 1.0
weird{l="a \"quoted\" }, value"} 2.5 1700000000
# EOF
"#;

    #[test]
    fn parses_counters_and_labels() {
        assert_eq!(sum(TEXT, names::EVENTS_READ), Some(1234.0));
        assert_eq!(sum(TEXT, names::RECORDS_LOST), Some(7.0));
        assert_eq!(
            sum_with_labels(TEXT, names::RECORDS_LOST, &[("reason", "map_full")]),
            Some(4.0)
        );
        assert_eq!(sum(TEXT, names::SPANS_EXPORTED), Some(10.0));
        assert_eq!(sum(TEXT, "nonexistent"), None);
        assert_eq!(export_failures(TEXT), 7.0);
        let s = parse(TEXT);
        let w = s.iter().find(|s| s.name == "weird").unwrap();
        assert_eq!(w.labels["l"], "a \"quoted\" }, value");
        assert_eq!(w.value, 2.5);
    }
}
