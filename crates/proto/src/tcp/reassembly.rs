//! Out-of-order receive queue (RFC 9293 §3.10.7.4, seventh step; RFC 2018 for the SACK
//! view of it).
//!
//! Offsets are relative to `rcv_nxt`. The caller trims every segment to the receive
//! window before inserting, so the buffer never holds more than the window (≤ `rcv_buf`)
//! bytes. In-order bytes are handed out at once (`take_in_order`), so what stays here is
//! only data above a hole.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: u32,
    end: u32,
    /// When this range last grew: SACK reports the most recently changed block first
    /// (RFC 2018 §4).
    stamp: u64,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Reassembly {
    /// Bytes at offsets `[0, buf.len())`; holes are zero-filled and not covered by `ranges`.
    buf: VecDeque<u8>,
    /// Sorted, disjoint, non-touching ranges of received bytes.
    ranges: Vec<Range>,
    stamp: u64,
}

impl Reassembly {
    /// Store `data` at `offset` bytes past `rcv_nxt`. Overlaps with what is already held
    /// are merged (RFC 9293 leaves the choice of bytes open; the newer copy wins).
    pub(super) fn insert(&mut self, offset: u32, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let start = offset;
        let end = offset.saturating_add(data.len() as u32);
        let end_usize = end as usize;
        if self.buf.len() < end_usize {
            self.buf.resize(end_usize, 0);
        }
        for (slot, &b) in self.buf.range_mut(start as usize..end_usize).zip(data) {
            *slot = b;
        }
        self.stamp += 1;
        let mut merged = Range {
            start,
            end,
            stamp: self.stamp,
        };
        // Ranges touching or overlapping [start, end) are folded into `merged`.
        let mut kept = Vec::with_capacity(self.ranges.len() + 1);
        for r in self.ranges.drain(..) {
            if r.end < merged.start || r.start > merged.end {
                kept.push(r);
            } else {
                merged.start = merged.start.min(r.start);
                merged.end = merged.end.max(r.end);
            }
        }
        let at = kept.partition_point(|r| r.start < merged.start);
        kept.insert(at, merged);
        self.ranges = kept;
    }

    /// The contiguous bytes starting at offset 0, removed from the queue; the remaining
    /// offsets shift down accordingly (the caller advances `rcv_nxt` by the length).
    pub(super) fn take_in_order(&mut self) -> Vec<u8> {
        let Some(first) = self.ranges.first().copied() else {
            return Vec::new();
        };
        if first.start != 0 {
            return Vec::new();
        }
        self.ranges.remove(0);
        let n = first.end;
        let bytes: Vec<u8> = self.buf.drain(..n as usize).collect();
        for r in &mut self.ranges {
            r.start -= n;
            r.end -= n;
        }
        bytes
    }

    /// Out-of-order blocks as `[start, end)` offsets, most recently changed first.
    pub(super) fn blocks(&self) -> Vec<(u32, u32)> {
        let mut rs = self.ranges.clone();
        rs.sort_by_key(|r| std::cmp::Reverse(r.stamp));
        rs.into_iter().map(|r| (r.start, r.end)).collect()
    }

    /// Bytes of memory held (received data plus holes between it).
    pub(super) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_then_hole_filled() {
        let mut r = Reassembly::default();
        r.insert(3, b"def");
        assert!(r.take_in_order().is_empty());
        assert_eq!(r.blocks(), vec![(3, 6)]);
        r.insert(0, b"abc");
        assert_eq!(r.take_in_order(), b"abcdef");
        assert!(r.blocks().is_empty());
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn overlaps_merge_and_most_recent_block_comes_first() {
        let mut r = Reassembly::default();
        r.insert(10, b"klm");
        r.insert(20, b"uvw");
        r.insert(12, b"mnop"); // overlaps and extends the first block
        assert_eq!(r.blocks(), vec![(10, 16), (20, 23)]);
        r.insert(16, b"qrst"); // bridges the two
        assert_eq!(r.blocks(), vec![(10, 23)]);
        r.insert(0, b"abcdefghij");
        assert_eq!(r.take_in_order(), b"abcdefghijklmnopqrstuvw");
    }

    #[test]
    fn remaining_offsets_shift_after_delivery() {
        let mut r = Reassembly::default();
        r.insert(5, b"xy");
        r.insert(0, b"ab");
        assert_eq!(r.take_in_order(), b"ab");
        assert_eq!(r.blocks(), vec![(3, 5)]);
    }
}
