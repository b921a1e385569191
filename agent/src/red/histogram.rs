//! A cumulative explicit-bucket histogram of durations, written by one
//! thread (the pipeline) and read by others (`/metrics`, the OTLP export).
//!
//! One writer: increments are a relaxed load and store (no locked
//! read-modify-write). Readers compute the count from the buckets, so a
//! page never shows a `+Inf` bucket different from `_count`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket boundaries of a histogram, in seconds and in nanoseconds.
#[derive(Debug)]
pub struct Bounds {
    pub seconds: &'static [f64],
    nanos: Vec<u64>,
}

impl Bounds {
    pub fn new(seconds: &'static [f64]) -> Self {
        debug_assert!(seconds.windows(2).all(|w| w[0] < w[1]));
        Self {
            seconds,
            nanos: seconds.iter().map(|s| (s * 1e9).round() as u64).collect(),
        }
    }

    /// The bucket of a duration: the first boundary not below it (a bucket
    /// counts values `<=` its boundary, as Prometheus' `le` and OTLP's
    /// explicit buckets), or the last (overflow) bucket.
    pub fn bucket(&self, nanos: u64) -> usize {
        self.nanos.partition_point(|b| *b < nanos)
    }

    pub fn len(&self) -> usize {
        self.seconds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seconds.is_empty()
    }
}

/// HTTP and RPC duration buckets of the semantic conventions (seconds).
pub const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// `db.client.operation.duration` buckets of the semantic conventions.
pub const DB_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];
/// The OpenTelemetry servicegraph connector's default latency buckets.
pub const GRAPH_BUCKETS: &[f64] = &[
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];

#[derive(Debug)]
pub struct Histogram {
    /// `bounds.len() + 1` buckets (the last one unbounded).
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
    /// When the series was created (start of the cumulative values).
    pub start_unix_ns: u64,
}

/// A histogram as read.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Per bucket (not cumulative).
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn new(bounds: &Bounds, start_unix_ns: u64) -> Self {
        Self {
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            start_unix_ns,
        }
    }

    /// Records one duration. Only one thread may call this.
    pub fn record(&self, bounds: &Bounds, nanos: u64) {
        let b = &self.buckets[bounds.bucket(nanos).min(self.buckets.len() - 1)];
        b.store(b.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let s = &self.sum_ns;
        s.store(
            s.load(Ordering::Relaxed).wrapping_add(nanos),
            Ordering::Relaxed,
        );
    }

    pub fn snapshot(&self) -> Snapshot {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        Snapshot {
            count: buckets.iter().sum(),
            buckets,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// A counter written by one thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_le() {
        let b = Bounds::new(HTTP_BUCKETS);
        assert_eq!(b.bucket(0), 0);
        assert_eq!(b.bucket(5_000_000), 0, "exactly on the boundary: <=");
        assert_eq!(b.bucket(5_000_001), 1);
        assert_eq!(b.bucket(10_000_000_000), HTTP_BUCKETS.len() - 1);
        assert_eq!(b.bucket(10_000_000_001), HTTP_BUCKETS.len(), "overflow");
        let h = Histogram::new(&b, 0);
        for ns in [1, 5_000_000, 7_000_000, 20_000_000_000] {
            h.record(&b, ns);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], 2);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[HTTP_BUCKETS.len()], 1);
        assert!((s.sum_seconds - 20.012_000_001).abs() < 1e-9);
    }
}
