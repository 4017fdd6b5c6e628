//! The sizes our data went out in, while it is unacknowledged.
//!
//! After a fragmentation-needed / Packet Too Big, only segments longer than the new MSS
//! were dropped for their size; the shorter ones may well have arrived (the peer often
//! SACKs them before the ICMP error is even read). Linux's `tcp_simple_retransmit` marks
//! just the long ones lost and sends their bytes again, cut at the new size; this is what
//! lets us do the same. Each byte in flight is remembered with the length of the last
//! segment that carried it.

use crate::wire::SeqNumber;
use std::collections::VecDeque;

/// Entries kept at most; beyond it the oldest two are merged into one (longer) entry, so
/// the worst case is sending a short segment's bytes again, never leaving a long one out.
const MAX_ENTRIES: usize = 256;

#[derive(Clone, Debug, Default)]
pub(super) struct Flight {
    /// `(seq, len)` of each segment, in sequence order, not overlapping.
    segs: VecDeque<(SeqNumber, u32)>,
}

impl Flight {
    /// A segment carrying `[seq, seq + len)` left, new or again: it replaces what carried
    /// those bytes before.
    pub(super) fn sent(&mut self, seq: SeqNumber, len: u32) {
        if len == 0 {
            return;
        }
        let end = seq.add(len);
        let mut out = VecDeque::with_capacity(self.segs.len() + 2);
        let mut placed = false;
        for &(s, l) in &self.segs {
            let e = s.add(l);
            if e.le(seq) {
                out.push_back((s, l));
                continue;
            }
            if s.lt(seq) {
                out.push_back((s, seq.diff(s) as u32));
            }
            if !placed {
                out.push_back((seq, len));
                placed = true;
            }
            if end.lt(e) {
                if end.le(s) {
                    out.push_back((s, l));
                } else {
                    out.push_back((end, e.diff(end) as u32));
                }
            }
        }
        if !placed {
            out.push_back((seq, len));
        }
        self.segs = out;
        while self.segs.len() > MAX_ENTRIES {
            if let (Some((s, a)), Some((_, b))) = (self.segs.pop_front(), self.segs.pop_front()) {
                self.segs.push_front((s, a.saturating_add(b)));
            }
        }
    }

    /// Everything before `una` is acknowledged.
    pub(super) fn acked(&mut self, una: SeqNumber) {
        while let Some(&(s, l)) = self.segs.front() {
            let e = s.add(l);
            if e.le(una) {
                self.segs.pop_front();
            } else {
                if s.lt(una) {
                    self.segs[0] = (una, e.diff(una) as u32);
                }
                break;
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.segs.clear();
    }

    /// The runs of bytes that went out in segments longer than `mss`, adjacent ones
    /// joined (cut again at `mss` they fill segments, as Linux's retransmit collapses
    /// them), oldest first.
    pub(super) fn runs_longer_than(&self, mss: u32) -> Vec<(SeqNumber, u32)> {
        let mut runs: Vec<(SeqNumber, u32)> = Vec::new();
        for &(s, l) in &self.segs {
            if l <= mss {
                continue;
            }
            match runs.last_mut() {
                Some((rs, rl)) if rs.add(*rl) == s => *rl = rl.saturating_add(l),
                _ => runs.push((s, l)),
            }
        }
        runs
    }

    #[cfg(test)]
    fn entries(&self) -> Vec<(u32, u32)> {
        self.segs.iter().map(|&(s, l)| (s.0, l)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(f: &mut Flight, seq: u32, len: u32) {
        f.sent(SeqNumber(seq), len);
    }

    #[test]
    fn new_segments_append_and_acks_trim() {
        let mut f = Flight::default();
        sent(&mut f, 1, 1448);
        sent(&mut f, 1449, 1448);
        sent(&mut f, 2897, 104);
        assert_eq!(f.entries(), [(1, 1448), (1449, 1448), (2897, 104)]);
        assert_eq!(
            f.runs_longer_than(948),
            [(SeqNumber(1), 2896)],
            "adjacent long segments form one run; the short tail is left alone"
        );
        f.acked(SeqNumber(1000));
        assert_eq!(f.entries(), [(1000, 449), (1449, 1448), (2897, 104)]);
        f.acked(SeqNumber(3001));
        assert!(f.entries().is_empty());
    }

    #[test]
    fn a_retransmission_replaces_what_it_covers() {
        let mut f = Flight::default();
        sent(&mut f, 1, 500);
        sent(&mut f, 501, 500);
        sent(&mut f, 1001, 500);
        // The RTO sends 1000 bytes from the front: one long segment now.
        sent(&mut f, 1, 1000);
        assert_eq!(f.entries(), [(1, 1000), (1001, 500)]);
        // Cut smaller again after a Packet Too Big.
        sent(&mut f, 1, 600);
        sent(&mut f, 601, 400);
        assert_eq!(f.entries(), [(1, 600), (601, 400), (1001, 500)]);
        // Covering part of one entry keeps the rest of it.
        sent(&mut f, 601, 100);
        assert_eq!(f.entries(), [(1, 600), (601, 100), (701, 300), (1001, 500)]);
        assert_eq!(
            f.runs_longer_than(450),
            [(SeqNumber(1), 600), (SeqNumber(1001), 500)]
        );
    }

    #[test]
    fn wraps_around_2_pow_32() {
        let mut f = Flight::default();
        sent(&mut f, u32::MAX - 99, 1000);
        sent(&mut f, 900, 1000);
        assert_eq!(f.runs_longer_than(948), [(SeqNumber(u32::MAX - 99), 2000)]);
        f.acked(SeqNumber(400));
        assert_eq!(f.entries(), [(400, 500), (900, 1000)]);
    }

    #[test]
    fn bounded_by_merging_the_oldest() {
        let mut f = Flight::default();
        for i in 0..1000u32 {
            sent(&mut f, 1 + i * 10, 10);
        }
        assert_eq!(f.segs.len(), MAX_ENTRIES);
        let total: u32 = f.segs.iter().map(|&(_, l)| l).sum();
        assert_eq!(total, 10_000, "every byte still accounted for");
        assert_eq!(f.segs[0].0, SeqNumber(1));
    }
}
