//! Seeded random streams: every random choice in onerec flows from a run seed, split
//! into independent named streams so adding a draw in one place never shifts another.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub type Rng = ChaCha8Rng;

/// An RNG for `stream` (a short name such as "shuffle") derived from `seed`.
pub fn stream(seed: u64, stream: &str) -> Rng {
    // FNV-1a of the stream name, mixed with the seed (splitmix64 finaliser).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in stream.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let mut z = seed ^ h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^= z >> 31;
    ChaCha8Rng::seed_from_u64(z)
}
