//! `entropy` collector: the kernel's entropy pool.

use std::path::PathBuf;

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
    source::first_number,
};

pub struct Entropy {
    avail: PathBuf,
    pool: PathBuf,
    values: [f64; 2],
}

impl Entropy {
    pub fn new(p: &NodePaths) -> Self {
        Self {
            avail: p.proc("sys/kernel/random/entropy_avail"),
            pool: p.proc("sys/kernel/random/poolsize"),
            values: [0.0; 2],
        }
    }
}

impl Collector for Entropy {
    fn name(&self) -> &'static str {
        "entropy"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        for (i, path) in [&self.avail, &self.pool].into_iter().enumerate() {
            let text = reader.read_kept(path)?;
            self.values[i] =
                first_number(text).ok_or_else(|| NodeError::parse(path, "not a number"))?;
        }
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        out.family(
            "node_entropy_available_bits",
            "Bits of available entropy.",
            Kind::Gauge,
        );
        out.value(self.values[0]);
        out.family(
            "node_entropy_pool_size_bits",
            "Bits of entropy pool.",
            Kind::Gauge,
        );
        out.value(self.values[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{fixture_paths, render};

    #[test]
    fn fixture() {
        let out = render(&mut Entropy::new(&fixture_paths()));
        assert!(out.contains("node_entropy_pool_size_bits 256\n"), "{out}");
    }
}
