//! Random request IDs (32 lowercase hex digits, like ingress-nginx's `$req_id`).
//!
//! IDs only need to be unique in practice, not unpredictable, so a per-thread xorshift generator
//! seeded from the clock and the thread avoids a lock or a syscall per request.

use http::HeaderValue;
use std::cell::Cell;
use std::hash::{BuildHasher, Hash, Hasher};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // RandomState is seeded randomly per process; mixing in the thread and the time keeps
    // threads (and restarts) on different sequences.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    std::thread::current().id().hash(&mut h);
    h.finish() | 1
}

fn next_u64() -> u64 {
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

pub(crate) fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(16).zip([next_u64(), next_u64()]) {
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte = HEX[((word >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_and_differ() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
