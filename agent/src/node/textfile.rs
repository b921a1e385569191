//! `textfile` collector: the `*.prom` files of a directory (metrics written
//! by scripts and cron jobs), re-exposed as they are, plus
//! `node_textfile_mtime_seconds{file}` for each file read and
//! `node_textfile_scrape_error`.
//!
//! As node_exporter: a file that does not parse, or that carries
//! client-side timestamps, is skipped whole and sets the error metric;
//! families without `# HELP` get "Metric read from <files>"; the samples of a
//! family that appears in several files are merged, and every sample of a
//! family gets the family's full label set (missing labels empty). A family
//! whose name another collector already exposes, or a repeated series, is
//! left out and sets the error metric too (the page must stay valid).
//!
//! The parser is sans-IO over one file's text: [`parse`] returns the
//! families or the first error with its line number.

use std::{collections::HashMap, path::PathBuf, time::UNIX_EPOCH};

use super::{
    Collector, NodeError, Reader,
    expo::{Exposition, Kind},
};

/// At most this many `.prom` files are read per scrape.
pub const MAX_FILES: usize = 1024;
/// At most this many samples are kept per scrape (all files together).
pub const MAX_SAMPLES: usize = 200_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (`x`, or `x_bucket`, `x_sum`, ... of a histogram).
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: Option<String>,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// Why a file did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

fn err<T>(line: usize, reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        reason: reason.into(),
    })
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    is_name_start(c) || c.is_ascii_digit()
}

fn valid_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && is_name_start(b[0]) && b.iter().all(|&c| is_name_char(c))
}

fn valid_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Parses `name{labels} value [timestamp]`.
fn parse_sample(line: &str, n: usize) -> Result<Sample, ParseError> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && is_name_char(b[i]) {
        i += 1;
    }
    let name = &line[..i];
    if !valid_metric_name(name) {
        return err(n, format!("invalid metric name in {line:?}"));
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    if i < b.len() && b[i] == b'{' {
        i += 1;
        loop {
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i < b.len() && b[i] == b'}' {
                i += 1;
                break;
            }
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let key = &line[start..i];
            if !valid_label_name(key) {
                return err(n, format!("invalid label name {key:?}"));
            }
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i >= b.len() || b[i] != b'=' {
                return err(n, format!("expected '=' after label name {key:?}"));
            }
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i >= b.len() || b[i] != b'"' {
                return err(
                    n,
                    format!("expected '\"' to start the value of label {key:?}"),
                );
            }
            i += 1;
            let mut value = String::new();
            let mut closed = false;
            let rest = &line[i..];
            let mut chars = rest.char_indices();
            while let Some((j, c)) = chars.next() {
                match c {
                    '"' => {
                        i += j + 1;
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, c)) => {
                            return err(n, format!("invalid escape \\{c} in label value"));
                        }
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return err(n, format!("unexpected end of label value {value:?}"));
            }
            if labels.iter().any(|(k, _)| k == key) {
                return err(n, format!("duplicate label {key:?}"));
            }
            labels.push((key.to_string(), value));
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return err(n, "expected ',' or '}' after a label value"),
            }
        }
    }
    let mut rest = line[i..].split_ascii_whitespace();
    let value = rest.next().ok_or_else(|| ParseError {
        line: n,
        reason: format!("no value for {name}"),
    })?;
    if i < b.len() && !b[i].is_ascii_whitespace() {
        return err(n, format!("unexpected character after {name}"));
    }
    let value = parse_value(value).ok_or_else(|| ParseError {
        line: n,
        reason: format!("invalid value {value:?}"),
    })?;
    let timestamp = match rest.next() {
        Some(t) => Some(t.parse::<i64>().map_err(|_| ParseError {
            line: n,
            reason: format!("invalid timestamp {t:?}"),
        })?),
        None => None,
    };
    if rest.next().is_some() {
        return err(n, "unexpected text after the timestamp");
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp,
    })
}

/// Which family a series name belongs to, given the declared ones.
fn family_of<'a>(series: &'a str, declared: &HashMap<String, Kind>) -> (&'a str, bool) {
    if declared.contains_key(series) {
        return (series, true);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix)
            && let Some(kind) = declared.get(base)
            && (*kind == Kind::Histogram || (*kind == Kind::Summary && suffix != "_bucket"))
        {
            return (base, true);
        }
    }
    (series, false)
}

/// Parses one file in the text exposition format.
pub fn parse(text: &str) -> Result<Vec<Family>, ParseError> {
    let mut families: Vec<Family> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut declared: HashMap<String, Kind> = HashMap::new();
    let mut helped: HashMap<String, ()> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            let (keyword, rest) = comment.split_once(' ').unwrap_or((comment, ""));
            if keyword != "HELP" && keyword != "TYPE" {
                continue;
            }
            let rest = rest.trim_start();
            let (name, arg) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            if !valid_metric_name(name) {
                return err(n, format!("invalid metric name {name:?} in {keyword} line"));
            }
            let at = match index.get(name) {
                Some(&at) => at,
                None => {
                    families.push(Family {
                        name: name.to_string(),
                        help: None,
                        kind: Kind::Untyped,
                        samples: Vec::new(),
                    });
                    index.insert(name.to_string(), families.len() - 1);
                    families.len() - 1
                }
            };
            if keyword == "HELP" {
                if helped.insert(name.to_string(), ()).is_some() {
                    return err(n, format!("second HELP line for metric name {name:?}"));
                }
                families[at].help = Some(unescape_help(arg));
            } else {
                let Some(kind) = Kind::parse(arg.trim()) else {
                    return err(n, format!("unknown metric type {:?}", arg.trim()));
                };
                if declared.contains_key(name) {
                    return err(n, format!("second TYPE line for metric name {name:?}"));
                }
                if !families[at].samples.is_empty() {
                    return err(n, format!("TYPE line for {name:?} after its samples"));
                }
                if matches!(kind, Kind::Histogram | Kind::Summary)
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| index.contains_key(&format!("{name}{suffix}")))
                {
                    return err(
                        n,
                        format!("TYPE line for {name:?} after samples of its series"),
                    );
                }
                families[at].kind = kind;
                declared.insert(name.to_string(), kind);
            }
            continue;
        }
        let sample = parse_sample(line, n)?;
        // An existing family of this exact name first (as Go's parser).
        let (family, typed) = if index.contains_key(&sample.name) {
            (sample.name.as_str(), declared.contains_key(&sample.name))
        } else {
            family_of(&sample.name, &declared)
        };
        let family = family.to_string();
        if typed {
            let kind = declared[&family];
            let has = |l: &str| sample.labels.iter().any(|(k, _)| k == l);
            if kind == Kind::Histogram && sample.name.ends_with("_bucket") && !has("le") {
                return err(
                    n,
                    format!("histogram bucket {} without le label", sample.name),
                );
            }
            if kind == Kind::Summary && sample.name == family && !has("quantile") {
                return err(n, format!("summary {} without quantile label", sample.name));
            }
        }
        let at = match index.get(&family) {
            Some(&at) => at,
            None => {
                families.push(Family {
                    name: family.clone(),
                    help: None,
                    kind: Kind::Untyped,
                    samples: Vec::new(),
                });
                index.insert(family, families.len() - 1);
                families.len() - 1
            }
        };
        families[at].samples.push(sample);
    }
    // A HELP or TYPE line without samples declares nothing to expose.
    families.retain(|f| !f.samples.is_empty());
    Ok(families)
}

/// A merged family with the files it came from.
#[derive(Debug)]
struct Merged {
    family: Family,
    files: Vec<String>,
}

pub struct TextFile {
    dir: Option<PathBuf>,
    merged: Vec<Merged>,
    mtimes: Vec<(String, f64)>,
    error: bool,
}

impl TextFile {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            merged: Vec::new(),
            mtimes: Vec::new(),
            error: false,
        }
    }

    fn read_dir(&mut self, reader: &mut Reader) -> Result<(), String> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read textfile directory {}: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".prom"))
            .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
            .map(|e| e.path())
            .collect();
        files.sort();
        let mut failure = None;
        if files.len() > MAX_FILES {
            failure = Some(format!("more than {MAX_FILES} files; the rest are ignored"));
            files.truncate(MAX_FILES);
        }
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut samples = 0;
        for path in files {
            let shown = path.display().to_string();
            let mtime = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map(|t| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as f64);
            let families = match reader
                .read(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| parse(text).map_err(|e| format!("{shown}: {e}")))
            {
                Ok(f) => f,
                Err(e) => {
                    failure = Some(e);
                    continue;
                }
            };
            if families
                .iter()
                .any(|f| f.samples.iter().any(|s| s.timestamp.is_some()))
            {
                failure = Some(format!(
                    "{shown} contains unsupported client-side timestamps, skipping entire file"
                ));
                continue;
            }
            let count: usize = families.iter().map(|f| f.samples.len()).sum();
            if samples + count > MAX_SAMPLES {
                failure = Some(format!(
                    "{shown}: more than {MAX_SAMPLES} samples in all files"
                ));
                continue;
            }
            samples += count;
            for f in families {
                match index.get(&f.name) {
                    Some(&at) => {
                        let m = &mut self.merged[at];
                        if m.family.kind != f.kind {
                            failure = Some(format!(
                                "{shown}: {} has type {} here and {} in {}",
                                f.name,
                                f.kind.as_str(),
                                m.family.kind.as_str(),
                                m.files.join(", ")
                            ));
                            continue;
                        }
                        if m.family.help.is_none() {
                            m.family.help = f.help;
                        }
                        m.family.samples.extend(f.samples);
                        m.files.push(shown.clone());
                    }
                    None => {
                        index.insert(f.name.clone(), self.merged.len());
                        self.merged.push(Merged {
                            family: f,
                            files: vec![shown.clone()],
                        });
                    }
                }
            }
            match mtime {
                Ok(t) => self.mtimes.push((shown, t)),
                Err(e) => failure = Some(format!("{shown}: {e}")),
            }
        }
        for m in &mut self.merged {
            complete_labels(&mut m.family);
            let before = m.family.samples.len();
            dedup_series(&mut m.family);
            if m.family.samples.len() != before {
                failure = Some(format!("{}: repeated series left out", m.family.name));
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Gives every sample the family's full label set (`le` and `quantile`
/// aside), sorted by name as node_exporter prints them.
fn complete_labels(f: &mut Family) {
    let mut names: Vec<String> = Vec::new();
    for s in &f.samples {
        for (k, _) in &s.labels {
            if k != "le" && k != "quantile" && !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    for s in &mut f.samples {
        for n in &names {
            if !s.labels.iter().any(|(k, _)| k == n) {
                s.labels.push((n.clone(), String::new()));
            }
        }
        s.labels.sort();
    }
}

/// Drops series that repeat an earlier one (same name and labels).
fn dedup_series(f: &mut Family) {
    let mut seen = std::collections::HashSet::new();
    f.samples
        .retain(|s| seen.insert((s.name.clone(), s.labels.clone())));
}

impl Collector for TextFile {
    fn name(&self) -> &'static str {
        "textfile"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        self.merged.clear();
        self.mtimes.clear();
        let result = self.read_dir(reader);
        self.error = result.is_err();
        if let Err(e) = result {
            tracing::debug!("textfile collector: {e}");
        }
        // The collector itself succeeds; node_textfile_scrape_error tells.
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        let mut collided = false;
        let mut help = String::new();
        for m in &self.merged {
            let f = &m.family;
            if out.has_family(&f.name) {
                collided = true;
                continue;
            }
            let help = match &f.help {
                Some(h) => h.as_str(),
                None => {
                    help.clear();
                    help.push_str("Metric read from ");
                    help.push_str(&m.files.join(", "));
                    &help
                }
            };
            out.family(&f.name, help, f.kind);
            for s in &f.samples {
                let labels: Vec<(&str, &str)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                out.sample_named(&s.name, &labels, s.value);
            }
        }
        if !self.mtimes.is_empty() {
            out.family(
                "node_textfile_mtime_seconds",
                "Unixtime mtime of textfiles successfully read.",
                Kind::Gauge,
            );
            for (file, t) in &self.mtimes {
                out.sample(&[("file", file)], *t);
            }
        }
        out.family(
            "node_textfile_scrape_error",
            "1 if there was an error opening or reading a file, 0 otherwise",
            Kind::Gauge,
        );
        out.value(if self.error || collided { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{Tree, fixtures_dir};

    fn scrape(dir: PathBuf) -> String {
        let mut c = TextFile::new(Some(dir));
        c.update(&mut Reader::new()).unwrap();
        let mut e = Exposition::new();
        c.prometheus(&mut e);
        e.into_string()
    }

    #[test]
    fn fixture_directory() {
        let out = scrape(fixtures_dir().join("textfile"));
        assert!(out.contains("app_run_duration_seconds_bucket{le=\"+Inf\"} 6\napp_run_duration_seconds_sum 31.5\napp_run_duration_seconds_count 6\n"), "{out}");
        assert!(out.contains("backup_ok{host=\"a \\\"quoted\\\" host\",target=\"db\"} 1\n"));
        assert!(out.contains("# HELP backup_size_bytes Metric read from "));
        assert!(out.contains("# TYPE backup_size_bytes untyped\n"));
        assert!(out.contains("node_textfile_scrape_error 0\n"));
        assert_eq!(
            out.matches("node_textfile_mtime_seconds{").count(),
            2,
            "notes.txt is not read"
        );
    }

    #[test]
    fn bad_files_are_skipped_and_flagged() {
        let out = scrape(fixtures_dir().join("textfile-bad"));
        assert!(out.contains("good_metric 42\n"), "{out}");
        assert!(!out.contains("broken"));
        assert!(!out.contains("stamped_metric"));
        assert_eq!(out.matches("node_textfile_mtime_seconds{").count(), 1);
        assert!(out.contains("node_textfile_scrape_error 1\n"));
        let missing = scrape(fixtures_dir().join("no-such-dir"));
        assert!(missing.contains("node_textfile_scrape_error 1\n"));
        let none = TextFile::new(None);
        let mut e = Exposition::new();
        none.prometheus(&mut e);
        assert!(e.as_str().contains("node_textfile_scrape_error 0\n"));
    }

    #[test]
    fn merging_label_completion_and_collisions() {
        let t = Tree::new();
        t.write("d/a.prom", "# TYPE jobs counter\njobs{q=\"a\"} 1\n");
        t.write("d/b.prom", "jobs{host=\"h\"} 2\njobs{q=\"a\"} 3\n");
        // b.prom's `jobs` is untyped: a type conflict, left out.
        let out = scrape(t.0.path().join("d"));
        assert!(out.contains("jobs{q=\"a\"} 1\n"), "{out}");
        assert!(out.contains("node_textfile_scrape_error 1\n"));
        t.write("d/b.prom", "# TYPE jobs counter\njobs{host=\"h\"} 2\n");
        let out = scrape(t.0.path().join("d"));
        assert!(
            out.contains("jobs{host=\"\",q=\"a\"} 1\njobs{host=\"h\",q=\"\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("node_textfile_scrape_error 0\n"));
        // A family another collector exposes is left out.
        let mut c = TextFile::new(Some(t.0.path().join("d")));
        c.update(&mut Reader::new()).unwrap();
        let mut e = Exposition::new();
        e.family("jobs", "taken", Kind::Gauge);
        e.value(1.0);
        c.prometheus(&mut e);
        assert_eq!(e.as_str().matches("# TYPE jobs").count(), 1);
        assert!(e.as_str().contains("node_textfile_scrape_error 1\n"));
    }

    #[test]
    fn parser_accepts_the_format() {
        let f = parse(
            "# HELP x Help \\\\ with\\nescapes\n# TYPE x summary\nx{quantile=\"0.5\"} 1\nx_sum 2\nx_count 3\n\
             y{a=\"1\",} +Inf\n   z   NaN\n# just a comment\nw{ a = \"b\" } -1.5e3 1700000000\n",
        )
        .unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].help.as_deref(), Some("Help \\ with\nescapes"));
        assert_eq!(f[0].kind, Kind::Summary);
        assert_eq!(f[0].samples.len(), 3);
        assert_eq!(f[1].samples[0].value, f64::INFINITY);
        assert!(f[2].samples[0].value.is_nan());
        assert_eq!(f[3].samples[0].labels, vec![("a".into(), "b".into())]);
        assert_eq!(f[3].samples[0].timestamp, Some(1_700_000_000));
    }

    #[test]
    fn parser_rejects_bad_input() {
        for bad in [
            "1x 1\n",
            "x{a=\"b\" 1\n",
            "x{a=b} 1\n",
            "x{a=\"b\",a=\"c\"} 1\n",
            "x{1a=\"b\"} 1\n",
            "x\n",
            "x one\n",
            "x 1 2 3\n",
            "x 1 soon\n",
            "# TYPE x counter\n# TYPE x gauge\nx 1\n",
            "# HELP x a\n# HELP x b\nx 1\n",
            "x 1\n# TYPE x counter\n",
            "# TYPE x whatever\nx 1\n",
            "# TYPE h histogram\nh_bucket 1\n",
            "# TYPE s summary\ns 1\n",
            "x{a=\"\\q\"} 1\n",
            "x{a=\"b\"}1\n",
            // Found by the fuzzer: a histogram's series seen before its TYPE.
            "h_bucket{le=\"1\"} 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
        let e = parse("ok 1\nbad{ 1\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn parser_survives_every_prefix() {
        let text = std::fs::read_to_string(fixtures_dir().join("textfile/app.prom")).unwrap();
        for end in 0..=text.len() {
            if text.is_char_boundary(end) {
                let _ = parse(&text[..end]);
            }
        }
    }
}
