//! `loadavg` collector: `/proc/loadavg` (procfs).

use std::path::PathBuf;

use procfs_core::{FromRead as _, LoadAverage};

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
    otel::{OtelBatch, metric_desc},
};

metric_desc!(
    LOAD_1M,
    "system.cpu.load_average.1m",
    "{thread}",
    Gauge,
    "Average CPU Load over 1 minute."
);
metric_desc!(
    LOAD_5M,
    "system.cpu.load_average.5m",
    "{thread}",
    Gauge,
    "Average CPU Load over 5 minutes."
);
metric_desc!(
    LOAD_15M,
    "system.cpu.load_average.15m",
    "{thread}",
    Gauge,
    "Average CPU Load over 15 minutes."
);

pub struct LoadAvg {
    path: PathBuf,
    load: [f64; 3],
}

impl LoadAvg {
    pub fn new(p: &NodePaths) -> Self {
        Self {
            path: p.proc("loadavg"),
            load: [0.0; 3],
        }
    }
}

impl Collector for LoadAvg {
    fn name(&self) -> &'static str {
        "loadavg"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let text = reader.read_kept(&self.path)?;
        let l = LoadAverage::from_read(text.as_bytes())
            .map_err(|e| NodeError::parse(&self.path, e.to_string()))?;
        // procfs parses f32; go through the decimal text so 0.81 stays 0.81.
        self.load =
            [l.one, l.five, l.fifteen].map(|v| format!("{v}").parse().unwrap_or(f64::from(v)));
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        for (name, help, v) in [
            ("node_load1", "1m load average.", self.load[0]),
            ("node_load15", "15m load average.", self.load[2]),
            ("node_load5", "5m load average.", self.load[1]),
        ] {
            out.family(name, help, Kind::Gauge);
            out.value(v);
        }
    }

    fn otel(&self, out: &mut OtelBatch) {
        out.double(&LOAD_1M, vec![], self.load[0]);
        out.double(&LOAD_5M, vec![], self.load[1]);
        out.double(&LOAD_15M, vec![], self.load[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{Tree, render};

    #[test]
    fn values_keep_their_decimals() {
        let t = Tree::new();
        t.write("proc/loadavg", "0.81 1.88 1.22 2/190 12345\n");
        let out = render(&mut LoadAvg::new(&t.paths()));
        assert!(out.contains("node_load1 0.81\n"), "{out}");
        assert!(out.contains("node_load5 1.88\n"));
        assert!(out.contains("node_load15 1.22\n"));
        t.write("proc/loadavg", "garbage\n");
        assert!(LoadAvg::new(&t.paths()).update(&mut Reader::new()).is_err());
    }
}
