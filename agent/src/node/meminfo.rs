//! `meminfo` collector: every line of `/proc/meminfo`, named as
//! node_exporter names them (`Active(anon)` → `node_memory_Active_anon_bytes`,
//! kB values in bytes). procfs's `Meminfo` is a fixed struct that drops
//! fields it does not know, while node_exporter exports every line, so the
//! file is read generically here.

use std::path::PathBuf;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
    otel::{OtelBatch, kv, metric_desc},
};

/// Parses `Key:   value [kB]` lines into (node_exporter key, value).
pub fn parse(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let value: f64 = value
            .parse()
            .map_err(|_| format!("{key} value {value:?} is not a number"))?;
        let key = key.trim_end_matches(':');
        let mut name = String::with_capacity(key.len() + 6);
        // `Active(anon)` → `Active_anon`.
        for c in key.chars() {
            match c {
                '(' => name.push('_'),
                ')' => {}
                c => name.push(c),
            }
        }
        let value = match fields.next() {
            Some("kB") => {
                name.push_str("_bytes");
                value * 1024.0
            }
            Some(unit) => return Err(format!("{key}: unknown unit {unit:?}")),
            None => value,
        };
        out.push((name, value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

metric_desc!(
    MEMORY_USAGE,
    "system.memory.usage",
    "By",
    UpDownCounter,
    "Reports memory in use by state."
);
metric_desc!(
    MEMORY_LIMIT,
    "system.memory.limit",
    "By",
    UpDownCounter,
    "Total memory available in the system."
);
metric_desc!(
    MEMORY_UTILIZATION,
    "system.memory.utilization",
    "1",
    Gauge,
    "Fraction of memory in each state."
);
metric_desc!(
    MEMORY_AVAILABLE,
    "system.linux.memory.available",
    "By",
    UpDownCounter,
    "An estimate of how much memory is available for starting new applications, without causing swapping."
);
metric_desc!(
    PAGING_USAGE,
    "system.paging.usage",
    "By",
    UpDownCounter,
    "Unix swap or windows pagefile usage."
);

pub struct MemInfo {
    path: PathBuf,
    /// (name, value), sorted by name.
    fields: Vec<(String, f64)>,
    /// The file's keys in file order with their index in `fields` and
    /// multiplier: the next read with the same keys only updates values.
    layout: Vec<(String, usize, f64)>,
}

impl MemInfo {
    pub fn new(p: &NodePaths) -> Self {
        Self {
            path: p.proc("meminfo"),
            fields: Vec::new(),
            layout: Vec::new(),
        }
    }

    /// Updates the values in place when the file has the same keys as
    /// last time; false when it does not.
    fn update_in_place(&mut self, text: &str) -> bool {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        for (key, index, scale) in &self.layout {
            let Some(line) = lines.next() else {
                return false;
            };
            let mut f = line.split_ascii_whitespace();
            if f.next() != Some(key.as_str()) {
                return false;
            }
            let Some(Ok(v)) = f.next().map(str::parse::<f64>) else {
                return false;
            };
            self.fields[*index].1 = v * scale;
        }
        lines.next().is_none() && !self.layout.is_empty()
    }

    fn rebuild_layout(&mut self, text: &str) {
        self.layout.clear();
        for line in text.lines() {
            let mut f = line.split_ascii_whitespace();
            let (Some(key), Some(_)) = (f.next(), f.next()) else {
                continue;
            };
            let scale = if f.next() == Some("kB") { 1024.0 } else { 1.0 };
            let mut name = String::new();
            for c in key.trim_end_matches(':').chars() {
                match c {
                    '(' => name.push('_'),
                    ')' => {}
                    c => name.push(c),
                }
            }
            if scale > 1.0 {
                name.push_str("_bytes");
            }
            if let Ok(i) = self.fields.binary_search_by(|(k, _)| k.as_str().cmp(&name)) {
                self.layout.push((key.to_string(), i, scale));
            }
        }
        if self.layout.len() != self.fields.len() {
            // Repeated keys: no shortcut.
            self.layout.clear();
        }
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.fields
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.fields[i].1)
    }
}

impl Collector for MemInfo {
    fn name(&self) -> &'static str {
        "meminfo"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let text = reader.read_kept(&self.path)?;
        if !self.update_in_place(text) {
            self.fields = parse(text).map_err(|e| NodeError::parse(&self.path, e))?;
            self.rebuild_layout(text);
        }
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        let mut name = String::new();
        let mut help = String::new();
        for (key, value) in &self.fields {
            name.clear();
            name.push_str("node_memory_");
            name.push_str(key);
            help.clear();
            help.push_str("Memory information field ");
            help.push_str(key);
            help.push('.');
            out.family(&name, &help, Kind::Gauge);
            out.value(*value);
        }
    }

    fn otel(&self, out: &mut OtelBatch) {
        let (Some(total), Some(free)) = (self.get("MemTotal_bytes"), self.get("MemFree_bytes"))
        else {
            return;
        };
        let buffers = self.get("Buffers_bytes").unwrap_or(0.0);
        // As the OpenTelemetry Collector's hostmetrics: reclaimable slab
        // counts as cache.
        let cached =
            self.get("Cached_bytes").unwrap_or(0.0) + self.get("SReclaimable_bytes").unwrap_or(0.0);
        let used = (total - free - buffers - cached).max(0.0);
        for (state, v) in [
            ("used", used),
            ("free", free),
            ("buffers", buffers),
            ("cached", cached),
        ] {
            out.int(
                &MEMORY_USAGE,
                vec![kv("system.memory.state", state)],
                v as u64,
            );
            if total > 0.0 {
                out.double(
                    &MEMORY_UTILIZATION,
                    vec![kv("system.memory.state", state)],
                    v / total,
                );
            }
        }
        out.int(&MEMORY_LIMIT, vec![], total as u64);
        if let Some(a) = self.get("MemAvailable_bytes") {
            out.int(&MEMORY_AVAILABLE, vec![], a as u64);
        }
        if let (Some(swap_total), Some(swap_free)) =
            (self.get("SwapTotal_bytes"), self.get("SwapFree_bytes"))
        {
            let used = (swap_total - swap_free).max(0.0);
            out.int(
                &PAGING_USAGE,
                vec![kv("system.paging.state", "used")],
                used as u64,
            );
            out.int(
                &PAGING_USAGE,
                vec![kv("system.paging.state", "free")],
                swap_free as u64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{fixture_paths, render};

    #[test]
    fn names_and_units() {
        let f = parse("MemTotal:  1024 kB\nActive(anon):   2 kB\nHugePages_Total:   3\n").unwrap();
        assert_eq!(
            f,
            vec![
                ("Active_anon_bytes".to_string(), 2048.0),
                ("HugePages_Total".to_string(), 3.0),
                ("MemTotal_bytes".to_string(), 1_048_576.0),
            ]
        );
        assert!(parse("MemTotal: x kB\n").is_err());
        assert!(parse("MemTotal: 1 MB\n").is_err());
    }

    #[test]
    fn values_update_in_place_and_new_keys_rebuild() {
        let t = crate::node::test_support::Tree::new();
        t.write("proc/meminfo", "MemTotal: 1 kB\nActive(anon): 2 kB\n");
        let mut m = MemInfo::new(&t.paths());
        let mut r = Reader::new();
        m.update(&mut r).unwrap();
        assert_eq!(m.layout.len(), 2);
        t.write("proc/meminfo", "MemTotal: 3 kB\nActive(anon): 4 kB\n");
        m.update(&mut r).unwrap();
        assert_eq!(m.get("MemTotal_bytes"), Some(3072.0));
        assert_eq!(m.get("Active_anon_bytes"), Some(4096.0));
        t.write(
            "proc/meminfo",
            "MemTotal: 3 kB\nActive(anon): 4 kB\nNew: 5\n",
        );
        m.update(&mut r).unwrap();
        assert_eq!(m.get("New"), Some(5.0));
        t.write("proc/meminfo", "MemTotal: 6 kB\n");
        m.update(&mut r).unwrap();
        assert_eq!(m.fields.len(), 1);
        assert_eq!(m.get("MemTotal_bytes"), Some(6144.0));
        t.write("proc/meminfo", "MemTotal: x kB\n");
        assert!(m.update(&mut r).is_err());
    }

    #[test]
    fn fixture() {
        let out = render(&mut MemInfo::new(&fixture_paths()));
        assert!(out.contains("# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.\n# TYPE node_memory_MemTotal_bytes gauge\nnode_memory_MemTotal_bytes 2.5275990016e+10\n"), "{out}");
    }
}
