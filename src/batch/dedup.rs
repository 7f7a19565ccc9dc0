//! The in-memory deduplication of events outside the dedup horizon, within one run.

use std::collections::HashSet;

use crate::event::CiemEvent;
use crate::sink::keys::KeyHash;

/// Remembers (provider, event id) pairs of events outside the dedup horizon, to drop their
/// duplicates within one run (those within the horizon are checked against the lake's
/// committed keys instead, [`crate::sink::keys`]). Two generations bound memory in a
/// long-running process: when the current one is full, the older is forgotten.
///
/// A pair is kept as its 128-bit xxh3 hash (seeded per provider and per process), not as text:
/// two distinct ids collide with probability ~n²/2¹²⁹, about 10⁻²⁵ for the 16 M ids the two
/// generations hold at most, so no event is dropped for a collision in practice. The key being
/// a hash already, the sets use its low 64 bits as their hash instead of hashing it again.
pub(super) struct Dedup {
    current: HashSet<u128, KeyHash>,
    previous: HashSet<u128, KeyHash>,
    pub(super) capacity: usize,
    /// Per-process seed: ids come from the input, so their hashes must not be predictable
    /// (a crafted set of ids colliding in the low bits would slow the sets down).
    seed: u64,
}

impl Dedup {
    pub(super) fn new(capacity: usize) -> Self {
        use std::hash::BuildHasher;
        Dedup {
            current: HashSet::default(),
            previous: HashSet::default(),
            capacity,
            seed: std::collections::hash_map::RandomState::new().hash_one(0u8),
        }
    }

    /// True the first time a key is seen.
    pub(super) fn first_sighting(&mut self, e: &CiemEvent<'_>) -> bool {
        let seed = self.seed ^ (e.cloud_provider as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let key = xxhash_rust::xxh3::xxh3_128_with_seed(e.metadata_uid.as_bytes(), seed);
        if self.previous.contains(&key) || !self.current.insert(key) {
            return false;
        }
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        true
    }
}
