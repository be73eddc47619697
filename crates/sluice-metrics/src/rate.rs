//! Requests per second over the last minute: a ring of per-second counters.
//!
//! Each slot packs the second it counts (high 32 bits) with the count (low 32 bits) in one
//! atomic, so a writer that finds a stale slot claims it and restarts its count in one
//! compare-and-swap, and a reader can tell a slot of this second from one a minute old.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Seconds of history kept; the longest window reported is 60 s, plus the current second.
pub const RING_SECONDS: usize = 64;

#[derive(Debug)]
pub(crate) struct SecondRing {
    slots: [AtomicU64; RING_SECONDS],
}

impl Default for SecondRing {
    fn default() -> Self {
        SecondRing {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl SecondRing {
    /// Counts one event in second `second` (seconds since the registry started).
    pub(crate) fn bump(&self, second: u32) {
        let slot = &self.slots[second as usize % RING_SECONDS];
        let mut current = slot.load(Relaxed);
        loop {
            if (current >> 32) as u32 == second {
                slot.fetch_add(1, Relaxed);
                return;
            }
            match slot.compare_exchange_weak(
                current,
                (u64::from(second) << 32) | 1,
                Relaxed,
                Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// The count of second `second`, 0 when that second's slot has been reused or never used.
    pub(crate) fn at(&self, second: u32) -> u64 {
        let v = self.slots[second as usize % RING_SECONDS].load(Relaxed);
        if (v >> 32) as u32 == second {
            v & 0xffff_ffff
        } else {
            0
        }
    }
}

/// Per-second totals read out of a ring (or summed over several): `counts[0]` is the current
/// (incomplete) second, `counts[i]` the one `i` seconds before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondCounts {
    pub counts: [u64; RING_SECONDS],
}

impl Default for SecondCounts {
    fn default() -> Self {
        SecondCounts {
            counts: [0; RING_SECONDS],
        }
    }
}

impl SecondCounts {
    pub(crate) fn add_ring(&mut self, ring: &SecondRing, now: u32) {
        for (ago, total) in self.counts.iter_mut().enumerate() {
            if let Some(second) = now.checked_sub(ago as u32) {
                *total += ring.at(second);
            }
        }
    }

    pub fn merge(&mut self, other: &SecondCounts) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Average per second over the `window` complete seconds before the current one.
    pub fn per_second(&self, window: usize) -> f64 {
        let window = window.clamp(1, RING_SECONDS - 1);
        self.counts[1..=window].iter().sum::<u64>() as f64 / window as f64
    }

    /// Total over the current second and the `window - 1` before it.
    pub fn total_recent(&self, window: usize) -> u64 {
        self.counts[..window.clamp(1, RING_SECONDS)].iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_restart_when_their_second_comes_round_again() {
        let ring = SecondRing::default();
        ring.bump(5);
        ring.bump(5);
        ring.bump(6);
        assert_eq!((ring.at(5), ring.at(6), ring.at(7)), (2, 1, 0));
        ring.bump(5 + RING_SECONDS as u32);
        assert_eq!(ring.at(5 + RING_SECONDS as u32), 1);
        assert_eq!(
            ring.at(5),
            0,
            "a reused slot no longer answers for its old second"
        );

        let mut counts = SecondCounts::default();
        counts.add_ring(&ring, 6);
        assert_eq!(&counts.counts[..3], &[1, 0, 0]);
        let mut counts = SecondCounts::default();
        let fresh = SecondRing::default();
        for s in 90..100 {
            fresh.bump(s);
            fresh.bump(s);
        }
        counts.add_ring(&fresh, 100);
        assert_eq!(counts.per_second(1), 2.0);
        assert_eq!(counts.per_second(10), 2.0);
        assert_eq!(counts.per_second(60), 20.0 / 60.0);
        assert_eq!(counts.total_recent(60), 20);
    }
}
