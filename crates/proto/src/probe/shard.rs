//! `--shard K/N`: one of N disjoint slices of a survey or a scan, so that N machines given
//! the same input split it exactly and their JSON Lines outputs concatenate.
//!
//! One syntax and one type for both commands. A scan takes positions K−1, K−1+N, … of its
//! permuted (address, port) sequence ([`Shard::positions`]); a survey, whose targets are
//! streamed and never counted, takes the targets whose label hashes to K ([`Shard::owns`]).

use std::fmt;

/// Shard `index` of `count`, 1-based: 1 ≤ index ≤ count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Everything: one shard of one.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// `K/N` with 1 ≤ K ≤ N, decimal, nothing else around it.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = |why: &str| format!("`{s}` is not a shard: {why}; write K/N, e.g. 2/4");
        let (k, n) = s.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let number = |t: &str| -> Result<u64, String> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&format!("`{t}` is not a number")));
            }
            t.parse().map_err(|_| bad(&format!("`{t}` is too large")))
        };
        let (index, count) = (number(k)?, number(n)?);
        if count == 0 {
            return Err(bad("N is at least 1"));
        }
        if index == 0 || index > count {
            return Err(bad(&format!(
                "shards are numbered 1 to N, so K is between 1 and {count}"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Positions of this shard in a sequence of `n` (a scan's permuted pairs).
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

    /// Whether a survey target labelled `label` belongs to this shard: shard
    /// 1 + FNV-1a(label) mod N, a hash that every build and machine computes alike.
    pub fn owns(self, label: &str) -> bool {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h % self.count == self.index - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn syntax() {
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
        assert_eq!(Shard::parse("1/1").unwrap(), Shard::WHOLE);
        for (bad, why) in [
            ("0/3", "numbered 1 to N"),
            ("4/3", "between 1 and 3"),
            ("3", "no `/`"),
            ("1/0", "at least 1"),
            (" 1/2", "not a number"),
            ("+1/2", "not a number"),
            ("1/x", "`x` is not a number"),
            ("1/99999999999999999999999", "too large"),
        ] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains(why) && e.contains("K/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn owned_labels_split_a_list_exactly() {
        let labels: Vec<String> = (0..1000)
            .map(|i| format!("198.18.{}.{}:80", i / 250, i % 250))
            .collect();
        let mut total = 0;
        for index in 1..=4 {
            let s = Shard { index, count: 4 };
            let n = labels.iter().filter(|l| s.owns(l)).count();
            assert!((150..=350).contains(&n), "shard {s} has {n} of 1000");
            total += n;
        }
        assert_eq!(total, 1000);
        assert!(labels.iter().all(|l| Shard::WHOLE.owns(l)));
    }

    proptest! {
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

        #[test]
        fn display_parses_back(count in 1u64..1000, k in 0u64..1000) {
            let s = Shard { index: k % count + 1, count };
            prop_assert_eq!(Shard::parse(&s.to_string()).unwrap(), s);
        }
    }
}
