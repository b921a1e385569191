//! `os` collector: `/etc/os-release` (else `/usr/lib/os-release`) of the
//! host root, re-read only when the file changes.

use std::{path::PathBuf, time::SystemTime};

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
};

/// Keys of `node_os_info`, in label order, with their os-release names.
const INFO: [(&str, &str); 12] = [
    ("build_id", "BUILD_ID"),
    ("id", "ID"),
    ("id_like", "ID_LIKE"),
    ("image_id", "IMAGE_ID"),
    ("image_version", "IMAGE_VERSION"),
    ("name", "NAME"),
    ("pretty_name", "PRETTY_NAME"),
    ("variant", "VARIANT"),
    ("variant_id", "VARIANT_ID"),
    ("version", "VERSION"),
    ("version_codename", "VERSION_CODENAME"),
    ("version_id", "VERSION_ID"),
];

/// Parses `KEY=value` lines; values may be double-quoted (with `\`
/// escapes) or single-quoted.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        out.push((key.trim().to_string(), unquote(raw.trim())));
    }
    out
}

fn unquote(raw: &str) -> String {
    if let Some(inner) = raw.strip_prefix('\'') {
        return inner.split('\'').next().unwrap_or("").to_string();
    }
    let Some(inner) = raw.strip_prefix('"') else {
        return raw.to_string();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some(c @ ('"' | '\\' | '$' | '`')) => out.push(c),
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => {}
            },
            c => out.push(c),
        }
    }
    out
}

/// `VERSION_ID`'s leading `major[.minor]` as a number (0 when there is
/// none), as node_exporter.
pub fn version_number(version_id: &str) -> f64 {
    let mut end = 0;
    let mut dot = false;
    for (i, c) in version_id.char_indices() {
        if c.is_ascii_digit() {
            end = i + 1;
        } else if c == '.' && !dot && end == i && i > 0 {
            dot = true;
            end = i + 1;
        } else {
            break;
        }
    }
    version_id[..end]
        .trim_end_matches('.')
        .parse()
        .unwrap_or(0.0)
}

pub struct Os {
    paths: [PathBuf; 2],
    /// The file read last and its modification time.
    cached: Option<(PathBuf, SystemTime)>,
    info: [String; 12],
    version: f64,
}

impl Os {
    pub fn new(p: &NodePaths) -> Self {
        Self {
            paths: [p.root("etc/os-release"), p.root("usr/lib/os-release")],
            cached: None,
            info: Default::default(),
            version: 0.0,
        }
    }
}

impl Collector for Os {
    fn name(&self) -> &'static str {
        "os"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let mut last_error = None;
        for path in &self.paths {
            let mtime = match std::fs::metadata(path).and_then(|m| m.modified()) {
                Ok(t) => t,
                Err(e) => {
                    last_error = Some(NodeError::io(path, e));
                    continue;
                }
            };
            if self
                .cached
                .as_ref()
                .is_some_and(|(p, t)| p == path && *t == mtime)
            {
                return Ok(());
            }
            let values = parse(reader.read(path)?);
            let get = |k: &str| {
                values
                    .iter()
                    .rev()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            self.info = INFO.map(|(_, key)| get(key));
            self.version = version_number(&self.info[11]);
            self.cached = Some((path.clone(), mtime));
            return Ok(());
        }
        Err(last_error.unwrap_or_else(|| NodeError::parse(&self.paths[0], "no os-release file")))
    }

    fn prometheus(&self, out: &mut Exposition) {
        out.family(
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
            Kind::Gauge,
        );
        let labels: Vec<(&str, &str)> = INFO
            .iter()
            .zip(&self.info)
            .map(|((label, _), v)| (*label, v.as_str()))
            .collect();
        out.sample(&labels, 1.0);
        out.family(
            "node_os_version",
            "Metric containing the major.minor part of the OS version.",
            Kind::Gauge,
        );
        out.sample(
            &[
                ("id", &self.info[1]),
                ("id_like", &self.info[2]),
                ("name", &self.info[5]),
            ],
            self.version,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{Tree, fixture_paths, render};

    #[test]
    fn fixture() {
        let out = render(&mut Os::new(&fixture_paths()));
        assert!(
            out.contains(
                "node_os_version{id=\"debian\",id_like=\"\",name=\"Debian GNU/Linux\"} 12\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn quoting_versions_and_fallback() {
        let v = parse("A=\"x \\\"y\\\" \\$z\"\nB='lit \\n'\nC=plain\n# c\nD=\"unterminated\n");
        assert_eq!(v[0].1, "x \"y\" $z");
        assert_eq!(v[1].1, "lit \\n");
        assert_eq!(v[2].1, "plain");
        assert_eq!(v[3].1, "unterminated");
        assert_eq!(version_number("22.04"), 22.04);
        assert_eq!(version_number("12"), 12.0);
        assert_eq!(version_number("3.18.4"), 3.18);
        assert_eq!(version_number("rolling"), 0.0);
        assert_eq!(version_number(""), 0.0);
        let t = Tree::new();
        t.write(
            "root/usr/lib/os-release",
            "ID=alpine\nVERSION_ID=3.19.1\nNAME=\"Alpine Linux\"\n",
        );
        let out = render(&mut Os::new(&t.paths()));
        assert!(
            out.contains(
                "node_os_version{id=\"alpine\",id_like=\"\",name=\"Alpine Linux\"} 3.19\n"
            ),
            "{out}"
        );
        let empty = Tree::new();
        assert!(Os::new(&empty.paths()).update(&mut Reader::new()).is_err());
    }
}
