//! TCP sequence numbers: 32-bit values compared modulo 2^32 (RFC 9293 §3.4).
//!
//! `a < b` means "b is ahead of a by less than 2^31", computed as
//! `(b - a) as i32 > 0` with wrapping subtraction. There is deliberately no `Sub` that
//! could panic and no `Ord` (the relation is not transitive over the whole circle).

use std::fmt;

#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// `self + n`, wrapping at 2^32. (Not `std::ops::Add`: a method reads as the modular
    /// operation it is.)
    #[allow(clippy::should_implement_trait)]
    #[must_use]
    pub fn add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }

    /// `self - n`, wrapping at 2^32.
    #[allow(clippy::should_implement_trait)]
    #[must_use]
    pub fn sub(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(n))
    }

    /// Signed distance from `other` to `self` (`self - other`), valid while the two are
    /// less than 2^31 apart.
    pub fn diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    pub fn lt(self, other: SeqNumber) -> bool {
        self.diff(other) < 0
    }

    pub fn le(self, other: SeqNumber) -> bool {
        self.diff(other) <= 0
    }

    pub fn gt(self, other: SeqNumber) -> bool {
        self.diff(other) > 0
    }

    pub fn ge(self, other: SeqNumber) -> bool {
        self.diff(other) >= 0
    }

    /// `lo <= self < lo + len` (RFC 9293 §3.10.7.4 window test); an empty window holds
    /// nothing.
    pub fn in_window(self, lo: SeqNumber, len: u32) -> bool {
        len > 0 && self.0.wrapping_sub(lo.0) < len
    }

    /// `lo <= self <= hi` in sequence space.
    pub fn between_inclusive(self, lo: SeqNumber, hi: SeqNumber) -> bool {
        lo.le(self) && self.le(hi)
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGES: [u32; 6] = [0, 1, u32::MAX - 1, u32::MAX, 1 << 31, (1 << 31) - 1];

    #[test]
    fn comparisons_hold_across_the_wrap() {
        let top = SeqNumber(u32::MAX);
        let zero = SeqNumber(0);
        assert!(top.lt(zero));
        assert!(zero.gt(top));
        assert_eq!(top.add(1), zero);
        assert_eq!(zero.sub(1), top);
        assert_eq!(zero.diff(top), 1);
        assert_eq!(top.diff(zero), -1);
        for &e in &EDGES {
            let s = SeqNumber(e);
            for n in [1u32, 2, 1000, (1 << 31) - 1] {
                assert!(s.lt(s.add(n)), "{e} < {e}+{n}");
                assert!(s.add(n).gt(s));
                assert_eq!(s.add(n).diff(s), n as i32);
                assert!(s.le(s) && s.ge(s));
            }
        }
    }

    #[test]
    fn window_test_wraps() {
        let lo = SeqNumber(u32::MAX - 10);
        assert!(SeqNumber(u32::MAX).in_window(lo, 20));
        assert!(SeqNumber(5).in_window(lo, 20));
        assert!(!SeqNumber(9).in_window(lo, 20));
        assert!(!lo.in_window(lo, 0));
        assert!(SeqNumber(3).between_inclusive(lo, SeqNumber(3)));
    }

    mod props {
        use super::super::SeqNumber;
        use proptest::prelude::*;

        proptest! {
            /// Any step forward of less than 2^31 is "later", from anywhere on the circle.
            #[test]
            fn forward_steps_compare_later(a in any::<u32>(), n in 1u32..(1 << 31)) {
                let (s, t) = (SeqNumber(a), SeqNumber(a).add(n));
                prop_assert!(s.lt(t) && t.gt(s) && s.le(t) && t.ge(s));
                prop_assert!(!t.lt(s) && !s.gt(t));
                prop_assert_eq!(t.diff(s), n as i32);
                prop_assert_eq!(t.sub(n), s);
            }

            /// `in_window` is exactly "0 <= self - lo < len" in wrapping arithmetic.
            #[test]
            fn window_matches_offset(lo in any::<u32>(), off in any::<u32>(), len in any::<u32>()) {
                let s = SeqNumber(lo).add(off);
                prop_assert_eq!(s.in_window(SeqNumber(lo), len), off < len);
            }
        }
    }
}
