//! Out-of-order receive queue (RFC 9293 §3.10.7.4, seventh step; RFC 2018 for the SACK
//! view of it).
//!
//! Offsets are relative to `rcv_nxt`. The caller trims every segment to the receive
//! window before inserting, so the buffer never holds more than the window (≤ `rcv_buf`)
//! bytes. In-order bytes are handed out at once (`take_in_order`), so what stays here is
//! only data above a hole. The holes are bounded too: at most [`MAX_RANGES`] separate
//! ranges, so a peer sending one byte in every other position of the window cannot make
//! each insert (and each SACK) walk tens of thousands of them.

use std::collections::VecDeque;

/// Separate ranges held at most. Past it the highest ones are dropped (not acknowledged,
/// no longer SACKed, so the peer sends them again), as Linux prunes its out-of-order queue
/// from the top when it runs out of receive memory (`tcp_prune_ofo_queue`, RFC 2018 §8
/// allows the receiver to discard SACKed data). 128 is far more than SACK can report
/// (4 blocks) and than a real loss pattern in one window makes.
pub(super) const MAX_RANGES: usize = 128;

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
    /// When the peer's FIN last arrived (a stamp of the same clock as the ranges'): the
    /// FIN uses no buffer, but above a hole it is SACKed as Linux does ([`Reassembly::blocks`]).
    fin_stamp: u64,
}

impl Reassembly {
    /// Store `data` at `offset` bytes past `rcv_nxt`. Where it overlaps bytes already
    /// held, RFC 9293 leaves the choice open; we make Linux's (`tcp_data_queue_ofo` and
    /// `tcp_ofo_queue`, net/ipv4/tcp_input.c, and checked on the wire): the copy that starts
    /// lower in sequence wins, since it is read first and the later one is trimmed; at the
    /// same start the longer wins (a segment that covers a queued one replaces it, one that
    /// is covered is dropped). Linux coalesces adjacent queued segments, as our ranges do.
    /// Returns whether some overlapping byte differed from the copy kept: two versions of
    /// the same bytes are a middlebox rewriting data or an injection, worth reporting.
    pub(super) fn insert(&mut self, offset: u32, data: &[u8]) -> bool {
        if data.is_empty() {
            return false;
        }
        let start = offset;
        let end = offset.saturating_add(data.len() as u32);
        let end_usize = end as usize;
        if self.buf.len() < end_usize {
            self.buf.resize(end_usize, 0);
        }
        // Walk the held ranges that overlap [start, end) in order: compare what they hold,
        // overwrite them where the new copy wins, and fill the gaps between them. One pass
        // over ranges and data.
        let mut conflict = false;
        let mut at = start;
        let copy = |buf: &mut VecDeque<u8>, from: u32, to: u32| {
            for (i, slot) in (from..to).zip(buf.range_mut(from as usize..to as usize)) {
                if let Some(&b) = data.get((i - start) as usize) {
                    *slot = b;
                }
            }
        };
        for r in self
            .ranges
            .iter()
            .filter(|r| r.end > start && r.start < end)
        {
            let (lo, hi) = (r.start.max(start), r.end.min(end));
            copy(&mut self.buf, at, lo.max(at));
            let held = self.buf.range(lo as usize..hi as usize);
            let new = data.get((lo - start) as usize..(hi - start) as usize);
            conflict |= new.is_some_and(|n| !held.eq(n.iter()));
            let new_wins = start < r.start || (start == r.start && end > r.end);
            if new_wins {
                copy(&mut self.buf, lo, hi);
            }
            at = at.max(hi);
        }
        copy(&mut self.buf, at, end);
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
        kept.truncate(MAX_RANGES);
        self.ranges = kept;
        let end = self.ranges.last().map_or(0, |r| r.end as usize);
        self.buf.truncate(end);
        conflict
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

    /// The peer's FIN arrived (in a segment of its own or with data): its place among the
    /// blocks' recency, for [`Reassembly::blocks`].
    pub(super) fn fin_arrived(&mut self) {
        self.stamp += 1;
        self.fin_stamp = self.stamp;
    }

    /// Out-of-order blocks as `[start, end)` offsets, most recently changed first.
    /// `fin`: the offset of the peer's FIN when it is held above a hole. The FIN takes
    /// sequence space, and Linux SACKs it (`tcp_data_queue_ofo` SACKs a segment up to its
    /// `end_seq`, the FIN included): the block that ends where it sits grows by one, or it
    /// is a block of its own. A server whose response was lost and whose FIN got through
    /// learns of the loss from that SACK (RACK, RFC 8985 §6.1) and sends the response
    /// again at once; without it, only at its retransmission timeout. Seen on the wire:
    /// curl's ACK of such a FIN had `sack {58:59}` and the response came again 20 ms later;
    /// ours, without the block, had it 240 ms later.
    pub(super) fn blocks(&self, fin: Option<u32>) -> Vec<(u32, u32)> {
        let mut rs = self.ranges.clone();
        if let Some(at) = fin {
            match rs.iter_mut().find(|r| r.end == at) {
                Some(r) => {
                    r.end = at.saturating_add(1);
                    r.stamp = r.stamp.max(self.fin_stamp);
                }
                None => rs.push(Range {
                    start: at,
                    end: at.saturating_add(1),
                    stamp: self.fin_stamp,
                }),
            }
        }
        rs.sort_by_key(|r| std::cmp::Reverse(r.stamp));
        rs.into_iter().map(|r| (r.start, r.end)).collect()
    }

    /// The hole before the first bytes held (its length, 0 when nothing is held) and how
    /// many bytes are held in all.
    pub(super) fn first_hole(&self) -> (u32, u32) {
        let hole = self.ranges.first().map_or(0, |r| r.start);
        let held = self.ranges.iter().map(|r| r.end - r.start).sum();
        (hole, held)
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
        assert_eq!(r.blocks(None), vec![(3, 6)]);
        r.insert(0, b"abc");
        assert_eq!(r.take_in_order(), b"abcdef");
        assert!(r.blocks(None).is_empty());
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn overlaps_merge_and_most_recent_block_comes_first() {
        let mut r = Reassembly::default();
        r.insert(10, b"klm");
        r.insert(20, b"uvw");
        r.insert(12, b"mnop"); // overlaps and extends the first block
        assert_eq!(r.blocks(None), vec![(10, 16), (20, 23)]);
        r.insert(16, b"qrst"); // bridges the two
        assert_eq!(r.blocks(None), vec![(10, 23)]);
        r.insert(0, b"abcdefghij");
        assert_eq!(r.take_in_order(), b"abcdefghijklmnopqrstuvw");
    }

    #[test]
    fn overlap_keeps_the_lower_starting_copy_and_reports_a_difference() {
        let mut r = Reassembly::default();
        assert!(!r.insert(4, b"efgh"));
        // Same bytes again, overlapping on both sides: no conflict.
        assert!(!r.insert(2, b"XXefghYY"));
        // A different version of bytes inside a held block that starts lower: the held
        // copy stays, the difference is reported.
        assert!(r.insert(5, b"zz"));
        // Same start, shorter: covered, dropped.
        assert!(r.insert(2, b"QQ"));
        r.insert(0, b"ab");
        assert_eq!(r.take_in_order(), b"abXXefghYY");
    }

    /// The exchange checked against Linux on the wire: `EFGH` at 4, then `cdXYgh` at 2
    /// (starts lower and covers it), then `ab`: Linux's application reads `abcdXYgh`.
    #[test]
    fn overlap_like_linux_a_lower_starting_copy_replaces() {
        let mut r = Reassembly::default();
        r.insert(4, b"EFGH");
        assert!(r.insert(2, b"cdXYgh"));
        r.insert(0, b"ab");
        assert_eq!(r.take_in_order(), b"abcdXYgh");
        // Same start, longer: replaces.
        let mut r = Reassembly::default();
        r.insert(2, b"cd");
        assert!(r.insert(2, b"CDE"));
        r.insert(0, b"ab");
        assert_eq!(r.take_in_order(), b"abCDE");
    }

    #[test]
    fn a_window_of_one_byte_islands_is_bounded() {
        let mut r = Reassembly::default();
        for i in 0..10_000u32 {
            r.insert(2 * i + 1, b"x");
        }
        assert_eq!(r.ranges.len(), MAX_RANGES);
        assert_eq!(r.buffered(), 2 * MAX_RANGES);
        // The lowest islands were kept: filling their holes delivers them in order.
        for i in 0..MAX_RANGES as u32 {
            r.insert(2 * i, b"h");
        }
        assert_eq!(r.take_in_order().len(), 2 * MAX_RANGES);
        assert_eq!(r.buffered(), 0);
        // An island above the kept ones, when they are as many as allowed, is dropped.
        let mut r = Reassembly::default();
        for i in 0..MAX_RANGES as u32 {
            r.insert(2 * i + 1, b"x");
        }
        r.insert(10_000, b"far");
        assert_eq!(
            r.blocks(None).iter().map(|b| b.1).max(),
            Some(2 * MAX_RANGES as u32)
        );
    }

    #[test]
    fn remaining_offsets_shift_after_delivery() {
        let mut r = Reassembly::default();
        r.insert(5, b"xy");
        r.insert(0, b"ab");
        assert_eq!(r.take_in_order(), b"ab");
        assert_eq!(r.blocks(None), vec![(3, 5)]);
    }
}
