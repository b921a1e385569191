//! `vmstat` collector: `/proc/vmstat` (`name value` lines), filtered by
//! node_exporter's default field set. procfs's `VmStat` builds a map of
//! all ~180 fields per read; the handful selected are kept directly here.

use std::path::PathBuf;

use regex::Regex;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
    netstat::CachedFilter,
    otel::{OtelBatch, kv, metric_desc},
};

metric_desc!(
    PAGING_FAULTS,
    "system.paging.faults",
    "{fault}",
    Counter,
    "The number of page faults."
);
metric_desc!(
    PAGING_OPERATIONS,
    "system.paging.operations",
    "{operation}",
    Counter,
    "The number of paging operations."
);

pub struct VmStat {
    path: PathBuf,
    fields: CachedFilter,
    /// Selected fields, sorted by name.
    selected: Vec<(String, i64)>,
    /// (pgfault, pgmajfault, pswpin, pswpout, pgpgin, pgpgout) for OTLP.
    paging: [Option<i64>; 6],
}

impl VmStat {
    pub fn new(p: &NodePaths, fields: Option<Regex>) -> Self {
        Self {
            path: p.proc("vmstat"),
            fields: CachedFilter::new(fields),
            selected: Vec::new(),
            paging: [None; 6],
        }
    }
}

impl Collector for VmStat {
    fn name(&self) -> &'static str {
        "vmstat"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        const PAGING: [&str; 6] = [
            "pgfault",
            "pgmajfault",
            "pswpin",
            "pswpout",
            "pgpgin",
            "pgpgout",
        ];
        let text = reader.read_kept(&self.path)?;
        self.selected.clear();
        self.paging = [None; 6];
        for line in text.lines() {
            let mut f = line.split_ascii_whitespace();
            let (Some(key), Some(value)) = (f.next(), f.next()) else {
                continue;
            };
            let value: i64 = value.parse().map_err(|_| {
                NodeError::parse(&self.path, format!("{key}: {value:?} is not a number"))
            })?;
            if let Some(i) = PAGING.iter().position(|p| *p == key) {
                self.paging[i] = Some(value);
            }
            if self.fields.matches(key) {
                self.selected.push((key.to_string(), value));
            }
        }
        self.selected.sort_unstable();
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        let mut name = String::new();
        let mut help = String::new();
        for (key, value) in &self.selected {
            name.clear();
            name.push_str("node_vmstat_");
            name.push_str(key);
            help.clear();
            help.push_str("/proc/vmstat information field ");
            help.push_str(key);
            help.push('.');
            out.family(&name, &help, Kind::Untyped);
            out.value(*value as f64);
        }
    }

    fn otel(&self, out: &mut OtelBatch) {
        let v = |i: usize| self.paging[i].map(|v| v.max(0) as u64);
        if let (Some(all), Some(major)) = (v(0), v(1)) {
            out.int(
                &PAGING_FAULTS,
                vec![kv("system.paging.type", "major")],
                major,
            );
            out.int(
                &PAGING_FAULTS,
                vec![kv("system.paging.type", "minor")],
                all.saturating_sub(major),
            );
        }
        for (i, direction, kind) in [
            (2, "in", "major"),
            (3, "out", "major"),
            (4, "in", "minor"),
            (5, "out", "minor"),
        ] {
            if let Some(n) = v(i) {
                out.int(
                    &PAGING_OPERATIONS,
                    vec![
                        kv("system.paging.direction", direction),
                        kv("system.paging.type", kind),
                    ],
                    n,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{
        defaults, filter_regex,
        test_support::{fixture_paths, render},
    };

    #[test]
    fn fixture_default_fields() {
        let fields = filter_regex("x", defaults::VMSTAT_FIELDS).unwrap();
        let out = render(&mut VmStat::new(&fixture_paths(), fields));
        let names: Vec<&str> = out.lines().filter(|l| l.starts_with("# TYPE")).collect();
        assert_eq!(names.len(), 7, "{out}");
        assert!(out.contains("# HELP node_vmstat_pgfault /proc/vmstat information field pgfault.\n# TYPE node_vmstat_pgfault untyped\n"));
    }

    #[test]
    fn bad_value() {
        let t = crate::node::test_support::Tree::new();
        t.write("proc/vmstat", "pgfault x\n");
        assert!(
            VmStat::new(&t.paths(), None)
                .update(&mut Reader::new())
                .is_err()
        );
    }
}
