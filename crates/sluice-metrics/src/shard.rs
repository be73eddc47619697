//! Per-thread shards: each data-plane thread writes its own copy of a counter set, so two cores
//! never fight over one cache line; readers add the copies up.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Keeps a shard on its own cache lines (128 bytes covers adjacent-line prefetching on x86).
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub(crate) T);

/// How many copies each sharded counter set has: the CPU count rounded up to a power of two
/// (so the index is a mask), at most 16.
pub(crate) fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .next_power_of_two()
            .min(16)
    })
}

/// This thread's shard. Threads are numbered as they first record, so the fixed set of runtime
/// workers lands on distinct shards.
pub(crate) fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i) & (shard_count() - 1)
}

/// `count` default values, one per shard.
pub(crate) fn shards<T: Default>() -> Box<[Padded<T>]> {
    (0..shard_count()).map(|_| Padded::default()).collect()
}
