//! Bloom filters for the sorted tables (DESIGN.md §9): a table's filter answers "absent" for
//! most keys it does not hold, so that such a read costs no data-block read.
//!
//! ```text
//!  filter = [ bit array: ceil(n × bits_per_key / 8) bytes, at least 8 ][ k: u8 ]
//!  key ─▶ h = hash64(key) ─▶ probes h1 + i × h2 (mod bits), i = 0..k   (h1, h2: halves of h)
//! ```
//!
//! - **No false negatives.** Every key added answers "maybe": its k probes are set when the
//!   filter is built, and nothing clears a bit.
//! - **False positives bounded by the size.** With 10 bits per key and k = 6 probes, about 1 % of
//!   absent keys answer "maybe" (checked by a test over 100,000 keys).
//! - **Never wrong on bad bytes.** A filter that cannot be read (too short, k = 0 or k over
//!   [`PROBES_MAX`], a length that does not fit) answers "maybe" for every key: a damaged
//!   filter costs reads, never a missing key. The table's checksums catch the damage itself.
//! - **Stable.** The hash and the probe sequence will be part of the tables' on-disk format
//!   (`docs/FORMAT.md` gets them with the tables): a filter written by one build must be read
//!   by every later one, so a test pins their values.

/// The most probes a filter may ask for; a larger `k` is read as "unreadable".
pub(crate) const PROBES_MAX: u8 = 30;
/// The smallest bit array, in bytes: tiny filters would answer "maybe" too often.
const BITS_BYTES_MIN: usize = 8;

/// The key's 64-bit hash: FNV-1a, then a 64-bit finalizer (from SplitMix64) so that the two
/// halves used as probes are independent enough for short, similar keys.
pub(crate) fn hash64(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The probes of `hash` into `bits` bits: double hashing (Kirsch–Mitzenmacher).
fn probes(hash: u64, bits: u64, k: u8) -> impl Iterator<Item = u64> {
    let h1 = hash & 0xffff_ffff;
    let h2 = (hash >> 32) | 1; // odd, so never zero: the probes do not all fall on one bit
    (0..u64::from(k)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

/// Builds a filter over the keys whose [`hash64`] are `hashes`, with `bits_per_key` bits per
/// key (at least 1, at most 64).
pub(crate) fn build(hashes: &[u64], bits_per_key: u32) -> Vec<u8> {
    assert!((1..=64).contains(&bits_per_key), "bits_per_key {bits_per_key} outside 1..=64");
    // k = bits per key × ln 2, the number of probes that minimises false positives.
    let k = u8::try_from((bits_per_key * 69 / 100).clamp(1, u32::from(PROBES_MAX))).expect("at most 30");
    let bits_wanted = (hashes.len() as u64).saturating_mul(u64::from(bits_per_key));
    let bytes =
        usize::try_from(bits_wanted.div_ceil(8)).expect("a filter fits in memory").max(BITS_BYTES_MIN);
    let bits = bytes as u64 * 8;
    let mut filter = vec![0u8; bytes + 1];
    for &h in hashes {
        for bit in probes(h, bits, k) {
            let (byte, mask) = (usize::try_from(bit / 8).expect("below bytes"), 1u8 << (bit % 8));
            filter[byte] |= mask;
        }
    }
    filter[bytes] = k;
    debug_assert!(hashes.iter().all(|&h| may_contain(&filter, h)), "a key added answers absent");
    filter
}

/// Whether the key whose [`hash64`] is `hash` may be in the set `filter` was built over:
/// `false` only if it certainly is not. An unreadable filter answers `true`.
pub(crate) fn may_contain(filter: &[u8], hash: u64) -> bool {
    let Some((&k, array)) = filter.split_last() else { return true };
    if k == 0 || k > PROBES_MAX || array.len() < BITS_BYTES_MIN {
        return true;
    }
    let bits = array.len() as u64 * 8;
    probes(hash, bits, k).all(|bit| {
        let byte = usize::try_from(bit / 8).expect("below the array's length");
        array[byte] & (1u8 << (bit % 8)) != 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Pinned when the format was made; computed independently too (a Python transcription of
    // `hash64` and `build` gave the same values).
    const HASH_EMPTY: u64 = 0xf52a_15e9_a9b5_e89b;
    const HASH_WALDB: u64 = 0x97c7_a027_5cfc_dbd0;
    const FILTER_AB: [u8; 9] = [32, 16, 64, 0, 1, 0, 250, 9, 6];

    fn key(i: u64) -> Vec<u8> {
        format!("user/{i:08}").into_bytes()
    }

    /// About 1 % of absent keys answer "maybe" at 10 bits per key; none of the present ones
    /// answers "absent".
    #[test]
    fn ten_bits_per_key_give_about_one_percent_false_positives() {
        let n = 100_000u64;
        let hashes: Vec<u64> = (0..n).map(|i| hash64(&key(i))).collect();
        let filter = build(&hashes, 10);
        assert_eq!(filter.len(), 125_000 + 1);
        assert!(hashes.iter().all(|&h| may_contain(&filter, h)));
        let false_positives = (n..2 * n).filter(|&i| may_contain(&filter, hash64(&key(i)))).count();
        let rate = false_positives as f64 / n as f64;
        assert!(rate < 0.015, "false positive rate {rate}");
        assert!(rate > 0.002, "implausibly low false positive rate {rate}: probes not counted?");
    }

    /// An empty set answers "absent" for everything; an unreadable filter "maybe".
    #[test]
    fn empty_and_unreadable_filters() {
        let empty = build(&[], 10);
        assert!(!may_contain(&empty, hash64(b"anything")));
        for bad in [&[][..], &[7], &[0u8; 9][..], &[0xff; 9][..], &[0, 0, 0, 0, 0, 0, 0, 7]] {
            assert!(may_contain(bad, hash64(b"k")), "{bad:?} must answer maybe");
        }
        let mut k_too_big = build(&[hash64(b"k")], 10);
        *k_too_big.last_mut().unwrap() = PROBES_MAX + 1;
        assert!(may_contain(&k_too_big, hash64(b"other")));
    }

    /// The hash and the probes are part of the format: these values must never change.
    #[test]
    fn the_hash_and_the_filter_bytes_are_stable() {
        assert_eq!(hash64(b""), HASH_EMPTY);
        assert_eq!(hash64(b"waldb"), HASH_WALDB);
        let filter = build(&[hash64(b"a"), hash64(b"b")], 10);
        assert_eq!(filter, FILTER_AB);
    }

    proptest! {
        /// No false negatives, whatever the keys and the bits per key.
        #[test]
        fn every_key_added_may_be_contained(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..300),
            bits in 1u32..=20,
        ) {
            let hashes: Vec<u64> = keys.iter().map(|k| hash64(k)).collect();
            let filter = build(&hashes, bits);
            for k in &keys {
                prop_assert!(may_contain(&filter, hash64(k)));
            }
        }

        /// Any bytes read as a filter give an answer, never a panic; bytes that are not a
        /// filter answer "maybe".
        #[test]
        fn any_bytes_are_a_filter_or_maybe(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            key in any::<u64>(),
        ) {
            let answer = may_contain(&bytes, key);
            let readable =
                bytes.len() > BITS_BYTES_MIN && (1..=PROBES_MAX).contains(bytes.last().unwrap());
            prop_assert!(readable || answer);
        }
    }
}
