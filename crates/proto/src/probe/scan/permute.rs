//! The scan order: a keyed pseudo-random permutation of `0..n` (every (address, port) pair
//! once), and shards of it.
//!
//! A balanced Feistel network over the smallest even number of bits that covers `n`, with
//! SipHash as the round function, is a permutation of `0..2^2h` (Luby–Rackoff); cycle
//! walking (re-encrypting until the value falls below `n`) restricts it to `0..n` and
//! stays a permutation (Black & Rogaway, "Ciphers with arbitrary finite domains", 2002).
//! The domain is at most 4n, so on average fewer than four encryptions per value.
//!
//! `--shard K/N` ([`Shard`]) takes positions K−1, K−1+N, K−1+2N, … of the same permuted
//! sequence: the N shards are disjoint and their union is the whole scan, whatever N.
//!
//! The permutation is invertible the same way (decrypt, walking the cycle backwards), so
//! after a scan the position of any value — and so whether this shard sent it, and before
//! an interruption or after — is computed again instead of remembered.

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

pub use crate::probe::shard::Shard;

const ROUNDS: u64 = 4;

#[derive(Clone, Debug)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    key: (u64, u64),
}

impl Permutation {
    pub fn new(n: u64, seed: u64) -> Permutation {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        Permutation {
            n,
            half_bits: bits.div_ceil(2),
            // Two independent-looking key halves from one seed (SplitMix64 constants).
            key: (
                seed,
                seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xbf58_476d_1ce4_e5b9,
            ),
        }
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The value at position `i` (< n).
    pub fn at(&self, i: u64) -> u64 {
        debug_assert!(i < self.n);
        let mut x = i;
        // A cycle of the permutation over 0..2^2h returns to i (which is < n) at the
        // latest, so this loop ends; the bound is the domain size.
        for _ in 0..(1u64 << (2 * self.half_bits)).min(u64::MAX >> 1) {
            x = self.encrypt(x);
            if x < self.n {
                return x;
            }
        }
        i
    }

    /// The position `i` (< n) at which `v` (< n) comes: `at(position_of(v)) == v`.
    pub fn position_of(&self, v: u64) -> u64 {
        debug_assert!(v < self.n);
        // Cycle walking backwards: the values between v and its position on the cycle are
        // all ≥ n, exactly those `at` skipped; bounded like `at`.
        let mut x = v;
        for _ in 0..(1u64 << (2 * self.half_bits)).min(u64::MAX >> 1) {
            x = self.decrypt(x);
            if x < self.n {
                return x;
            }
        }
        v
    }

    fn round(&self, round: u64, half: u64) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write_u64(round);
        h.write_u64(half);
        h.finish() & ((1u64 << self.half_bits) - 1)
    }

    fn decrypt(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for round in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(round, left), left);
        }
        (left << self.half_bits) | right
    }

    fn encrypt(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for round in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(round, right));
        }
        (left << self.half_bits) | right
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn is_permutation(n: u64, seed: u64) -> bool {
        let p = Permutation::new(n, seed);
        let mut seen = vec![false; n as usize];
        for i in 0..n {
            let v = p.at(i);
            if v >= n || seen[v as usize] {
                return false;
            }
            seen[v as usize] = true;
        }
        true
    }

    #[test]
    fn small_domains_are_permuted() {
        for n in [1, 2, 3, 4, 5, 7, 16, 17, 100, 255, 256, 1000, 4097] {
            assert!(is_permutation(n, 42), "n = {n}");
        }
    }

    #[test]
    fn position_of_inverts_at() {
        for n in [1, 2, 3, 5, 17, 1000, 4097] {
            let p = Permutation::new(n, 9);
            for i in 0..n {
                assert_eq!(p.position_of(p.at(i)), i, "n = {n}");
            }
        }
        let n = (1u64 << 24) * 65535;
        let p = Permutation::new(n, 7);
        for i in [0, 1, 12_345_678_901, n / 3, n - 1] {
            assert_eq!(p.position_of(p.at(i)), i);
        }
    }

    #[test]
    fn the_seed_changes_the_order_and_reproduces_it() {
        let a: Vec<u64> = (0..50).map(|i| Permutation::new(50, 1).at(i)).collect();
        let b: Vec<u64> = (0..50).map(|i| Permutation::new(50, 2).at(i)).collect();
        let a2: Vec<u64> = (0..50).map(|i| Permutation::new(50, 1).at(i)).collect();
        assert_ne!(a, b);
        assert_eq!(a, a2);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn huge_domains_are_cheap() {
        // A /8 with every port: 2^24 * 65535 values, no table anywhere.
        let n = (1u64 << 24) * 65535;
        let p = Permutation::new(n, 7);
        for i in [0, 1, n / 2, n - 1] {
            assert!(p.at(i) < n);
        }
    }

    proptest! {
        #[test]
        fn any_domain_and_seed_is_a_permutation(n in 1u64..3000, seed: u64) {
            prop_assert!(is_permutation(n, seed));
        }

        #[test]
        fn position_of_inverts_at_for_any_seed(n in 1u64..1 << 40, seed: u64, i: u64) {
            let p = Permutation::new(n, seed);
            let i = i % n;
            prop_assert_eq!(p.position_of(p.at(i)), i);
        }
    }
}
