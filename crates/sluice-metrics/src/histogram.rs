//! Fixed-bucket histograms of atomics, and quantiles estimated from bucket counts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (seconds) of the latency buckets. They include every bound of Prometheus'
/// default buckets (ingress-nginx's `--time-buckets`), so the compat histograms are exact sums
/// of these, plus finer ones below 5 ms where a gateway's latencies live.
pub const LATENCY_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Upper bounds (bytes) of the size buckets: ingress-nginx's `--length-buckets` (10..100 by 10)
/// and `--size-buckets` (10..10^7 by x10) together.
pub const SIZE_BOUNDS: [f64; 15] = [
    10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7,
];
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS.len() + 1;
pub const SIZE_BUCKETS: usize = SIZE_BOUNDS.len() + 1;

/// Latency bounds in nanoseconds, for the hot path's integer comparison.
const LATENCY_BOUNDS_NS: [u64; 16] = {
    let mut out = [0u64; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (LATENCY_BOUNDS[i] * 1e9) as u64;
        i += 1;
    }
    out
};
const SIZE_BOUNDS_INT: [u64; 15] = {
    let mut out = [0u64; 15];
    let mut i = 0;
    while i < 15 {
        out[i] = SIZE_BOUNDS[i] as u64;
        i += 1;
    }
    out
};

/// One writer's buckets (not cumulative) and the sum of observed values.
#[derive(Debug)]
pub(crate) struct AtomicHistogram<const N: usize> {
    buckets: [AtomicU64; N],
    sum: AtomicU64,
}

impl<const N: usize> Default for AtomicHistogram<N> {
    fn default() -> Self {
        AtomicHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> AtomicHistogram<N> {
    fn observe_at(&self, bucket: usize, value: u64) {
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    fn add_into(&self, into: &mut Counts<N>) {
        for (total, bucket) in into.buckets.iter_mut().zip(&self.buckets) {
            *total += bucket.load(Relaxed);
        }
        into.sum += self.sum.load(Relaxed);
    }
}

impl AtomicHistogram<LATENCY_BUCKETS> {
    pub(crate) fn observe_ns(&self, ns: u64) {
        let bucket = LATENCY_BOUNDS_NS
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(LATENCY_BOUNDS_NS.len());
        self.observe_at(bucket, ns);
    }
}

impl AtomicHistogram<SIZE_BUCKETS> {
    pub(crate) fn observe_bytes(&self, bytes: u64) {
        let bucket = SIZE_BOUNDS_INT
            .iter()
            .position(|&bound| bytes <= bound)
            .unwrap_or(SIZE_BOUNDS_INT.len());
        self.observe_at(bucket, bytes);
    }
}

/// A histogram read out of its shards: per-bucket counts (not cumulative) and the raw sum
/// (nanoseconds or bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts<const N: usize> {
    pub buckets: [u64; N],
    pub sum: u64,
}

impl<const N: usize> Default for Counts<N> {
    fn default() -> Self {
        Counts {
            buckets: [0; N],
            sum: 0,
        }
    }
}

pub type LatencyCounts = Counts<LATENCY_BUCKETS>;
pub type SizeCounts = Counts<SIZE_BUCKETS>;

impl<const N: usize> Counts<N> {
    pub(crate) fn gather<'a>(shards: impl Iterator<Item = &'a AtomicHistogram<N>>) -> Self {
        let mut counts = Counts::default();
        for shard in shards {
            shard.add_into(&mut counts);
        }
        counts
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn merge(&mut self, other: &Counts<N>) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
    }

    /// Cumulative counts at each of `wanted` bounds, which must all be among `bounds` (the
    /// bucket bounds these counts were recorded with).
    pub fn cumulative_at(&self, bounds: &[f64], wanted: &[f64]) -> Vec<u64> {
        wanted
            .iter()
            .map(|w| {
                bounds
                    .iter()
                    .zip(&self.buckets)
                    .take_while(|(b, _)| **b <= *w)
                    .map(|(_, c)| c)
                    .sum()
            })
            .collect()
    }

    /// The `q` quantile (0..=1) by linear interpolation inside the bucket it falls in, as
    /// Prometheus' `histogram_quantile` does; values in the overflow bucket are reported as the
    /// highest finite bound. `None` without observations.
    pub fn quantile(&self, bounds: &[f64], q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.buckets.iter().enumerate() {
            let upto = below + count;
            if count > 0 && upto as f64 >= rank {
                let Some(&upper) = bounds.get(i) else {
                    return bounds.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
                let within = (rank - below as f64) / count as f64;
                return Some(lower + (upper - lower) * within);
            }
            below = upto;
        }
        bounds.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = AtomicHistogram::<LATENCY_BUCKETS>::default();
        h.observe_ns(500_000); // exactly 0.5 ms: "le" is inclusive
        h.observe_ns(500_001);
        h.observe_ns(120_000_000_000); // beyond 60 s
        let c = Counts::gather(std::iter::once(&h));
        assert_eq!(c.buckets[0], 1);
        assert_eq!(c.buckets[1], 1);
        assert_eq!(c.buckets[LATENCY_BUCKETS - 1], 1);
        assert_eq!(c.count(), 3);
        assert_eq!(c.sum, 120_001_000_001);
    }

    #[test]
    fn coarser_bounds_are_exact_sums() {
        let h = AtomicHistogram::<SIZE_BUCKETS>::default();
        for bytes in [5, 15, 95, 150, 22_528, 50_000_000] {
            h.observe_bytes(bytes);
        }
        let c = Counts::gather(std::iter::once(&h));
        assert_eq!(
            c.cumulative_at(&SIZE_BOUNDS, &[10.0, 100.0, 1e5, 1e7]),
            vec![1, 3, 5, 5]
        );
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let h = AtomicHistogram::<LATENCY_BUCKETS>::default();
        // 100 observations in (1 ms, 2.5 ms].
        for _ in 0..100 {
            h.observe_ns(2_000_000);
        }
        let c = Counts::gather(std::iter::once(&h));
        let p50 = c.quantile(&LATENCY_BOUNDS, 0.5).unwrap();
        assert!((p50 - 0.00175).abs() < 1e-9, "{p50}");
        assert_eq!(c.quantile(&LATENCY_BOUNDS, 1.0), Some(0.0025));
        assert_eq!(
            LatencyCounts::default().quantile(&LATENCY_BOUNDS, 0.5),
            None
        );
    }
}
