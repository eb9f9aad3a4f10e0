//! SplitMix64, the deterministic random source both backends share, and its sampling.
//!
//! Algorithm (Steele, Lea, Flood 2014): `state += 0x9E3779B97F4A7C15`, then two
//! xor-shift-multiply rounds and a final xor-shift. A draw below `n` is the high 64 bits
//! of `output * n`; `sample` is a partial Fisher-Yates shuffle. `neonet.core.gossip`
//! implements exactly the same steps.

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX1: u64 = 0xBF58_476D_1CE4_E5B9;
const MIX2: u64 = 0x94D0_49BB_1331_11EB;

/// SplitMix64 seeded with any `u64`.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output is SplitMix64's for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(MIX1);
        z = (z ^ (z >> 27)).wrapping_mul(MIX2);
        z ^ (z >> 31)
    }

    /// A draw in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    /// Partial Fisher-Yates: reorders `items` and truncates it to the first `count`.
    pub fn sample<T>(&mut self, items: &mut Vec<T>, count: usize) {
        let size = items.len();
        let taken = count.min(size);
        for index in 0..taken {
            let other = index + self.below(size - index);
            items.swap(index, other);
        }
        items.truncate(taken);
    }

    /// Shuffles all of `items` (the same draws as `sample(items, items.len())`).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        let size = items.len();
        for index in 0..size {
            let other = index + self.below(size - index);
            items.swap(index, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_outputs() {
        // Reference values of SplitMix64 seeded with 0 and 1234567.
        let mut zero = SplitMix64::new(0);
        assert_eq!(zero.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(zero.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(zero.next_u64(), 0x06C4_5D18_8009_454F);
        let mut other = SplitMix64::new(1_234_567);
        assert_eq!(other.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(other.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn below_stays_in_range_and_sample_is_a_permutation_prefix() {
        let mut rng = SplitMix64::new(42);
        for bound in 1..50 {
            assert!(rng.below(bound) < bound);
        }
        assert_eq!(rng.below(0), 0);
        let mut items: Vec<u32> = (0..20).collect();
        rng.sample(&mut items, 7);
        assert_eq!(items.len(), 7);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 7);
        let mut all: Vec<u32> = (0..5).collect();
        rng.sample(&mut all, 99);
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn shuffle_draws_like_a_full_sample() {
        let mut left = SplitMix64::new(9);
        let mut right = SplitMix64::new(9);
        let mut shuffled: Vec<u32> = (0..10).collect();
        let mut sampled = shuffled.clone();
        left.shuffle(&mut shuffled);
        right.sample(&mut sampled, 10);
        assert_eq!(shuffled, sampled);
        assert_eq!(left.next_u64(), right.next_u64());
    }
}
