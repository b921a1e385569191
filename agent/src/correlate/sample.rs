//! Sampling, decided per trace when its spans on this host are released
//! together (the local tree of a request), and applied to all of them:
//!
//! 1. every trace with an error span is kept (`keep_errors`);
//! 2. every trace at least `slow_threshold` long is kept (first start to
//!    last end of its local spans);
//! 3. a trace joined from an incoming `traceparent` follows its sampled
//!    flag (`parent_based`);
//! 4. the rest is kept at `ratio`, decided from the trace id (the same
//!    decision for every part of a trace, on every host using the same
//!    rule: the W3C random bits of the id against the ratio).
//!
//! RED metrics are recorded before this, so they count every request.

use crate::span::SpanRecord;

/// Why a trace was kept or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Error,
    Slow,
    Parent,
    Ratio,
}

impl Policy {
    pub const ALL: [Policy; 4] = [Policy::Error, Policy::Slow, Policy::Parent, Policy::Ratio];

    pub const fn name(self) -> &'static str {
        match self {
            Policy::Error => "error",
            Policy::Slow => "slow",
            Policy::Parent => "parent",
            Policy::Ratio => "ratio",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingConfig {
    /// Fraction of the traces kept among those no other rule keeps.
    pub ratio: f64,
    pub keep_errors: bool,
    /// `None`: no latency rule.
    pub slow_threshold_ns: Option<u64>,
    /// Joined traces follow the incoming `traceparent`'s sampled flag.
    pub parent_based: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            ratio: 1.0,
            keep_errors: true,
            slow_threshold_ns: Some(1_000_000_000),
            parent_based: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplingConfig,
    /// Traces whose 56 random bits are below this are kept by the ratio.
    threshold: u64,
}

/// 2^56: the range of the trace id's random bits used.
const RANDOM_RANGE: u64 = 1 << 56;

impl Sampler {
    pub fn new(cfg: SamplingConfig) -> Self {
        let ratio = cfg.ratio.clamp(0.0, 1.0);
        let threshold = if ratio >= 1.0 {
            RANDOM_RANGE
        } else {
            (ratio * RANDOM_RANGE as f64) as u64
        };
        Self { cfg, threshold }
    }

    /// Whether `trace_id` is kept by the ratio.
    pub fn ratio_keeps(&self, trace_id: &[u8; 16]) -> bool {
        let mut low = [0u8; 8];
        low[1..].copy_from_slice(&trace_id[9..]);
        u64::from_be_bytes(low) < self.threshold
    }

    /// The decision for the spans of one trace released together. `joined`:
    /// the incoming `traceparent`'s flags, when the local root joined one.
    pub fn decide<'a>(
        &self,
        trace_id: &[u8; 16],
        joined: Option<u8>,
        spans: impl Iterator<Item = &'a SpanRecord> + Clone,
    ) -> (bool, Policy) {
        if self.cfg.keep_errors && spans.clone().any(SpanRecord::is_error) {
            return (true, Policy::Error);
        }
        if let Some(t) = self.cfg.slow_threshold_ns {
            let start = spans.clone().map(|s| s.start_unix_ns).min().unwrap_or(0);
            let end = spans.map(|s| s.end_unix_ns).max().unwrap_or(0);
            if end.saturating_sub(start) >= t {
                return (true, Policy::Slow);
            }
        }
        if self.cfg.parent_based
            && let Some(flags) = joined
        {
            return (flags & 1 == 1, Policy::Parent);
        }
        (self.ratio_keeps(trace_id), Policy::Ratio)
    }

    /// Keeps everything (the default ratio 1 and no joined trace dropped)?
    pub fn keeps_all(&self) -> bool {
        self.threshold == RANDOM_RANGE && !self.cfg.parent_based
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_by_trace_id_bits() {
        let s = Sampler::new(SamplingConfig {
            ratio: 0.5,
            ..SamplingConfig::default()
        });
        let mut low = [0u8; 16];
        low[9] = 0x10;
        let mut high = [0u8; 16];
        high[9] = 0xf0;
        assert!(s.ratio_keeps(&low));
        assert!(!s.ratio_keeps(&high));
        let all = Sampler::new(SamplingConfig::default());
        assert!(all.ratio_keeps(&[0xff; 16]));
        let none = Sampler::new(SamplingConfig {
            ratio: 0.0,
            ..SamplingConfig::default()
        });
        assert!(!none.ratio_keeps(&[0; 16]));
        // About 1 % of random ids.
        let one = Sampler::new(SamplingConfig {
            ratio: 0.01,
            ..SamplingConfig::default()
        });
        let kept = (0..20_000)
            .filter(|_| one.ratio_keeps(&crate::span::context::new_trace_id()))
            .count();
        assert!((100..=320).contains(&kept), "{kept}");
    }
}
