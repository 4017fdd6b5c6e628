//! The scan order: a keyed pseudo-random permutation of `0..n` (every (address, port) pair
//! once), and shards of it.
//!
//! A balanced Feistel network over the smallest even number of bits that covers `n`, with
//! SipHash as the round function, is a permutation of `0..2^2h` (Luby–Rackoff); cycle
//! walking (re-encrypting until the value falls below `n`) restricts it to `0..n` and
//! stays a permutation (Black & Rogaway, "Ciphers with arbitrary finite domains", 2002).
//! The domain is at most 4n, so on average fewer than four encryptions per value.
//!
//! `--shard K/N` takes positions K−1, K−1+N, K−1+2N, … of the same permuted sequence: the
//! N shards are disjoint and their union is the whole scan, whatever N.
//!
//! The permutation is invertible the same way (decrypt, walking the cycle backwards), so
//! after a scan the position of any value — and so whether this shard sent it, and before
//! an interruption or after — is computed again instead of remembered.

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

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

/// `--shard K/N` (1-based K).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    pub fn parse(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--shard `{s}`: write K/N, e.g. 2/8"))?;
        let k: u64 = k
            .parse()
            .map_err(|_| format!("--shard `{s}`: `{k}` is not a number"))?;
        let n: u64 = n
            .parse()
            .map_err(|_| format!("--shard `{s}`: `{n}` is not a number"))?;
        if n == 0 || k == 0 || k > n {
            return Err(format!("--shard `{s}`: need 1 ≤ K ≤ N"));
        }
        Ok(Shard { index: k, count: n })
    }

    /// Positions of this shard in a sequence of `n`.
    pub fn positions(self, n: u64) -> impl Iterator<Item = u64> {
        (self.index - 1..n).step_by(usize::try_from(self.count).unwrap_or(usize::MAX))
    }

    /// Where position `i` comes in this shard's walk (0 for its first position), or `None`
    /// when another shard has it.
    pub fn rank(self, i: u64) -> Option<u64> {
        (i % self.count == self.index - 1).then(|| i / self.count)
    }

    /// How many positions of `n` fall in this shard.
    pub fn len(self, n: u64) -> u64 {
        if n < self.index {
            0
        } else {
            (n - self.index) / self.count + 1
        }
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

        #[test]
        fn shards_partition_the_sequence(n in 0u64..500, count in 1u64..9) {
            let mut all: Vec<u64> = Vec::new();
            for index in 1..=count {
                let s = Shard { index, count };
                let pos: Vec<u64> = s.positions(n).collect();
                prop_assert_eq!(pos.len() as u64, s.len(n));
                for (r, &i) in pos.iter().enumerate() {
                    prop_assert_eq!(s.rank(i), Some(r as u64));
                }
                prop_assert!((0..n).filter(|&i| s.rank(i).is_some()).count() == pos.len());
                all.extend(pos);
            }
            all.sort_unstable();
            prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
        assert!(Shard::parse("0/3").is_err());
        assert!(Shard::parse("4/3").is_err());
        assert!(Shard::parse("3").unwrap_err().contains("K/N"));
    }
}
