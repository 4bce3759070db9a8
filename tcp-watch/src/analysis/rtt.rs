//! Round-trip-time samples of one direction and their summary (min, median,
//! p95), in bounded memory.
//!
//! Samples follow RFC 6298 §3 (Karn's rule: none from retransmitted data)
//! or RFC 7323 §4 (RTTM with timestamps, where retransmissions are safe).
//! Up to [`KEPT`] samples are kept exactly; past that every other one is
//! dropped and the stride doubles, so a long transfer keeps an even spread
//! over its whole length in fixed memory. The minimum is always exact.

/// Samples kept for the median and p95.
const KEPT: usize = 1024;

/// RTT samples in milliseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct RttSamples {
    kept: Vec<f64>,
    stride: u64,
    seen: u64,
    min: Option<f64>,
}

impl RttSamples {
    pub(crate) fn add(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        self.min = Some(self.min.map_or(ms, |m| m.min(ms)));
        let stride = self.stride.max(1);
        if self.seen % stride == 0 {
            self.kept.push(ms);
            if self.kept.len() >= KEPT {
                let mut i = 0;
                self.kept.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride = stride * 2;
            }
        }
        self.seen += 1;
    }

    pub(crate) fn count(&self) -> u64 {
        self.seen
    }

    pub(crate) fn min(&self) -> Option<f64> {
        self.min
    }

    /// Nearest-rank quantile `q` in `[0, 1]` of the kept samples.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.kept.is_empty() {
            return None;
        }
        let mut v = self.kept.clone();
        v.sort_by(f64::total_cmp);
        let rank = (q * v.len() as f64).ceil() as usize;
        Some(v[rank.clamp(1, v.len()) - 1])
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let mut r = RttSamples::default();
        for ms in [5.0, 1.0, 3.0, 2.0, 4.0] {
            r.add(ms);
        }
        assert_eq!(r.min(), Some(1.0));
        assert_eq!(r.quantile(0.5), Some(3.0));
        assert_eq!(r.quantile(0.95), Some(5.0));
        r.add(f64::NAN);
        assert_eq!(r.count(), 5);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut r = RttSamples::default();
        for i in 0..100_000 {
            r.add(f64::from(i % 100));
        }
        assert!(r.kept.len() < KEPT);
        assert_eq!(r.min(), Some(0.0));
        let median = r.quantile(0.5).unwrap();
        assert!((40.0..60.0).contains(&median), "{median}");
    }
}
