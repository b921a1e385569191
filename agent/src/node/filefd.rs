//! `filefd` collector: `/proc/sys/fs/file-nr` (allocated, unused, maximum).

use std::path::PathBuf;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
};

pub struct FileFd {
    path: PathBuf,
    allocated: f64,
    maximum: f64,
}

impl FileFd {
    pub fn new(p: &NodePaths) -> Self {
        Self {
            path: p.proc("sys/fs/file-nr"),
            allocated: 0.0,
            maximum: 0.0,
        }
    }
}

impl Collector for FileFd {
    fn name(&self) -> &'static str {
        "filefd"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let text = reader.read_kept(&self.path)?;
        let f: Vec<&str> = text.split_ascii_whitespace().collect();
        let [allocated, _, maximum] = f[..] else {
            return Err(NodeError::parse(&self.path, "expected three numbers"));
        };
        let num = |s: &str| {
            s.parse::<f64>()
                .map_err(|_| NodeError::parse(&self.path, format!("{s:?} is not a number")))
        };
        self.allocated = num(allocated)?;
        self.maximum = num(maximum)?;
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        out.family(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            Kind::Gauge,
        );
        out.value(self.allocated);
        out.family(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            Kind::Gauge,
        );
        out.value(self.maximum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{Tree, render};

    #[test]
    fn values_and_errors() {
        let t = Tree::new();
        t.write("proc/sys/fs/file-nr", "641\t0\t2466116\n");
        let out = render(&mut FileFd::new(&t.paths()));
        assert!(out.contains("node_filefd_allocated 641\n"));
        assert!(out.contains("node_filefd_maximum 2.466116e+06\n"));
        t.write("proc/sys/fs/file-nr", "641 0\n");
        assert!(FileFd::new(&t.paths()).update(&mut Reader::new()).is_err());
    }
}
