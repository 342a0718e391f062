//! The sampler's random number generator: xoshiro256** seeded through splitmix64.
//!
//! Why hand-written rather than a crate: both generators are a dozen lines, published with
//! reference outputs, and give the same stream on every platform and compiler forever; a
//! dependency's stream could change with a version bump and break "same seed, same tokens".

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seed value meaning "pick a fresh seed from OS entropy and the clock".
///
/// The seed actually used is reported by [`super::SamplerChain::seed`], so a random run can
/// still be replayed. A resolved seed is never equal to this sentinel.
pub const RANDOM_SEED: u64 = u64::MAX;

/// Turns a user seed into the seed the generator starts from: itself, or a fresh random one
/// when it is [`RANDOM_SEED`].
pub fn resolve_seed(seed: u64) -> u64 {
    if seed != RANDOM_SEED {
        return seed;
    }
    // `RandomState` keys come from the OS entropy source (mixed per instance); hashing the clock
    // through them also separates two chains created in the same process tick.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(nanos);
    let seed = hasher.finish();
    // Keep the sentinel out of resolved seeds so that replaying a reported seed is deterministic.
    if seed == RANDOM_SEED {
        0
    } else {
        seed
    }
}

/// One step of splitmix64: advances `state` and returns a well-mixed 64-bit value.
/// Used only to expand a 64-bit seed into xoshiro's 256-bit state.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** (Blackman & Vigna): 256-bit state, period 2^256 - 1, fast and statistically
/// strong enough for sampling tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xoshiro256StarStar {
    state: [u64; 4],
}

impl Xoshiro256StarStar {
    /// Expands `seed` with splitmix64, as the generator's authors recommend; the result is never
    /// the all-zero state (splitmix64 is a bijection of distinct counter values).
    pub fn from_seed(seed: u64) -> Self {
        let mut sm = seed;
        let state = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Self { state }
    }

    /// Builds a generator from a raw state (used by the reference-vector test).
    #[cfg(test)]
    fn from_state(state: [u64; 4]) -> Self {
        Self { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1): the top 53 bits scaled by 2^-53, so every value is exactly representable.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference_output() {
        // First outputs of splitmix64 from state 0, as published with the algorithm.
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn xoshiro_matches_hand_computed_steps() {
        // From state [1, 2, 3, 4]: first output rotl(2 * 5, 7) * 9 = 11520; the update leaves
        // s[1] = 0, so the second output is 0.
        let mut rng = Xoshiro256StarStar::from_state([1, 2, 3, 4]);
        assert_eq!(rng.next_u64(), 11520);
        assert_eq!(rng.next_u64(), 0);
    }

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let a: Vec<u64> = {
            let mut r = Xoshiro256StarStar::from_seed(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Xoshiro256StarStar::from_seed(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Xoshiro256StarStar::from_seed(43);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn next_f64_is_in_unit_interval_with_plausible_mean() {
        let mut rng = Xoshiro256StarStar::from_seed(7);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            sum += x;
        }
        let mean = sum / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn resolve_seed_passes_through_and_randomises_sentinel() {
        assert_eq!(resolve_seed(0), 0);
        assert_eq!(resolve_seed(12345), 12345);
        let a = resolve_seed(RANDOM_SEED);
        let b = resolve_seed(RANDOM_SEED);
        assert_ne!(a, RANDOM_SEED);
        // Two draws colliding would mean the entropy source is broken (chance 2^-64).
        assert_ne!(a, b);
    }
}
