//! [`SimRng`]: the one seeded random source of a simulation.
//!
//! xoshiro256** seeded through SplitMix64. It is written out here rather than taken from a crate
//! so that a seed keeps producing the same run, byte for byte, whatever the versions of the
//! dependencies: replaying a seed from a CI log months later must reproduce its trace hash.

/// A small, fast, seeded pseudo-random generator (xoshiro256**). Not for cryptography.
#[derive(Clone, Debug)]
pub struct SimRng {
    s: [u64; 4],
}

impl SimRng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            // SplitMix64.
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let s = [next(), next(), next(), next()];
        debug_assert!(s.iter().any(|&w| w != 0), "xoshiro state must not be all zero");
        SimRng { s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A number in `0..n`, without modulo bias.
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SimRng::below(0)");
        // Lemire's multiply-shift with rejection.
        loop {
            let x = self.next_u64();
            let m = u128::from(x) * u128::from(n);
            // The low half decides rejection; the high half is the result (always < n).
            let low = u64::try_from(m & u128::from(u64::MAX)).expect("masked to 64 bits");
            if low >= n.wrapping_neg() % n {
                return u64::try_from(m >> 64).expect("the high half of x * n is below n");
            }
        }
    }

    /// A `usize` in `0..n`.
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    pub fn below_usize(&mut self, n: usize) -> usize {
        // usize is at most 64 bits on every supported target, and the result is < n.
        usize::try_from(self.below(n as u64)).expect("below(n) < n fits usize")
    }

    /// True with probability `p` (clamped to `0.0..=1.0`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits as a fraction in [0, 1).
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a: Vec<u64> = (0..8)
            .map({
                let mut r = SimRng::new(42);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..8)
            .map({
                let mut r = SimRng::new(42);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..8)
            .map({
                let mut r = SimRng::new(43);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn known_answer_pins_the_stream() {
        // Pinned so that a change of algorithm, which would change every trace hash, is seen.
        let mut r = SimRng::new(0);
        assert_eq!(r.next_u64(), 0x99EC_5F36_CB75_F2B4);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SimRng::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            let x = r.below(5);
            assert!(x < 5, "{x}");
            seen[x as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 1_500), "skewed: {seen:?}");
    }

    #[test]
    fn chance_extremes() {
        let mut r = SimRng::new(1);
        assert!((0..100).all(|_| !r.chance(0.0)));
        assert!((0..100).all(|_| r.chance(1.0)));
        let hits = (0..10_000).filter(|_| r.chance(0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
    }
}
