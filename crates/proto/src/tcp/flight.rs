//! Our data while it is unacknowledged: the segments it went out in, when, and what the
//! peer's SACK blocks say arrived.
//!
//! Two uses. After a fragmentation-needed / Packet Too Big, only segments longer than the
//! new MSS were dropped for their size; the shorter ones may well have arrived (the peer
//! often SACKs them before the ICMP error is even read). Linux's `tcp_simple_retransmit`
//! marks just the long ones lost and sends their bytes again, cut at the new size; the
//! lengths let us do the same. And RACK (RFC 8985, [`super::rack`]) judges a segment lost
//! when one sent after it was delivered: that needs each segment's send time and whether
//! the peer SACKed it. Each byte in flight is remembered with the last segment that
//! carried it.

use crate::time::Instant;
use crate::wire::SeqNumber;
use std::collections::VecDeque;

/// Entries kept at most; beyond it the oldest two are merged into one (longer) entry, so
/// the worst case is sending a short segment's bytes again, never leaving a long one out.
const MAX_ENTRIES: usize = 256;

/// One segment's worth of bytes in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Sent {
    pub(super) seq: SeqNumber,
    pub(super) len: u32,
    /// When it (last) left.
    pub(super) at: Instant,
    /// It went out more than once: an ACK of it cannot say which copy arrived (Karn).
    pub(super) again: bool,
    /// A SACK block of the peer's covers it (RFC 2018).
    pub(super) sacked: bool,
}

impl Sent {
    pub(super) fn end(&self) -> SeqNumber {
        self.seq.add(self.len)
    }

    /// The part of it from `from` on (or before `to`): the rest keeps its history.
    fn cut(self, from: SeqNumber, to: SeqNumber) -> Sent {
        Sent {
            seq: from,
            len: to.diff(from) as u32,
            ..self
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Flight {
    /// In sequence order, not overlapping.
    segs: VecDeque<Sent>,
}

impl Flight {
    /// A segment carrying `[seq, seq + len)` left at `at` (`again`: those bytes had gone
    /// before): it replaces what carried them before, and nothing of it is SACKed now.
    pub(super) fn sent(&mut self, seq: SeqNumber, len: u32, at: Instant, again: bool) {
        if len == 0 {
            return;
        }
        let end = seq.add(len);
        let new = Sent {
            seq,
            len,
            at,
            again,
            sacked: false,
        };
        let mut out = VecDeque::with_capacity(self.segs.len() + 2);
        let mut placed = false;
        for &e in &self.segs {
            if e.end().le(seq) {
                out.push_back(e);
                continue;
            }
            if e.seq.lt(seq) {
                out.push_back(e.cut(e.seq, seq));
            }
            if !placed {
                out.push_back(new);
                placed = true;
            }
            if end.lt(e.end()) {
                if end.le(e.seq) {
                    out.push_back(e);
                } else {
                    out.push_back(e.cut(end, e.end()));
                }
            }
        }
        if !placed {
            out.push_back(new);
        }
        self.segs = out;
        while self.segs.len() > MAX_ENTRIES {
            if let (Some(a), Some(b)) = (self.segs.pop_front(), self.segs.pop_front()) {
                // The later send time and "sent again" if either was: RACK then waits
                // longer before it calls the pair lost, never less; SACKed only if both.
                self.segs.push_front(Sent {
                    seq: a.seq,
                    len: a.len.saturating_add(b.len),
                    at: a.at.max(b.at),
                    again: a.again || b.again,
                    sacked: a.sacked && b.sacked,
                });
            }
        }
    }

    /// Everything before `una` is acknowledged. `each` sees the segments it takes off
    /// whole (RACK learns from the newest of them).
    pub(super) fn acked(&mut self, una: SeqNumber, mut each: impl FnMut(&Sent)) {
        while let Some(&e) = self.segs.front() {
            if e.end().le(una) {
                self.segs.pop_front();
                each(&e);
            } else {
                if e.seq.lt(una) {
                    self.segs[0] = e.cut(una, e.end());
                }
                break;
            }
        }
    }

    /// The peer's SACK blocks (`[left, right)`, RFC 2018 §3): marks the segments they
    /// cover whole; `each` sees those newly marked. A block below the first byte in flight
    /// (a D-SACK, RFC 2883) or reaching past what we sent marks nothing it does not cover.
    pub(super) fn sack(
        &mut self,
        blocks: impl Iterator<Item = (SeqNumber, SeqNumber)>,
        mut each: impl FnMut(&Sent),
    ) {
        for (left, right) in blocks {
            if !left.lt(right) {
                continue;
            }
            for e in self.segs.iter_mut() {
                if !e.sacked && left.le(e.seq) && e.end().le(right) {
                    e.sacked = true;
                    each(e);
                }
            }
        }
    }

    /// RFC 2018 §8: the peer reneged (it may drop what it SACKed): every SACK mark goes,
    /// and its next SACK blocks mark again what it still holds.
    pub(super) fn forget_sacks(&mut self) {
        for e in self.segs.iter_mut() {
            e.sacked = false;
        }
    }

    /// The first segment in flight (at SND.UNA) is marked SACKed: a peer that held it
    /// would have acknowledged it, so it reneged (Linux's `FLAG_SACK_RENEGING`).
    pub(super) fn head_sacked(&self) -> bool {
        self.segs.front().is_some_and(|e| e.sacked)
    }

    /// The segments not SACKed, oldest sequence first.
    pub(super) fn unsacked(&self) -> impl Iterator<Item = &Sent> {
        self.segs.iter().filter(|e| !e.sacked)
    }

    /// The segment sent last in sequence (the tail a loss probe sends again).
    pub(super) fn last(&self) -> Option<&Sent> {
        self.segs.back()
    }

    /// Segments in flight.
    pub(super) fn len(&self) -> usize {
        self.segs.len()
    }

    /// How many segments the peer SACKed.
    pub(super) fn sacked_count(&self) -> usize {
        self.segs.iter().filter(|e| e.sacked).count()
    }

    pub(super) fn clear(&mut self) {
        self.segs.clear();
    }

    /// The runs of bytes that went out in segments longer than `mss`, adjacent ones
    /// joined (cut again at `mss` they fill segments, as Linux's retransmit collapses
    /// them), oldest first. Not the SACKed ones: those arrived whatever their size
    /// (RFC 2018 §4: the sender need not send them again; Linux's `tcp_mark_skb_lost`
    /// leaves them out of `tcp_simple_retransmit`).
    pub(super) fn runs_longer_than(&self, mss: u32) -> Vec<(SeqNumber, u32)> {
        let mut runs: Vec<(SeqNumber, u32)> = Vec::new();
        for e in &self.segs {
            if e.len <= mss || e.sacked {
                continue;
            }
            match runs.last_mut() {
                Some((rs, rl)) if rs.add(*rl) == e.seq => *rl = rl.saturating_add(e.len),
                _ => runs.push((e.seq, e.len)),
            }
        }
        runs
    }

    #[cfg(test)]
    fn entries(&self) -> Vec<(u32, u32)> {
        self.segs.iter().map(|e| (e.seq.0, e.len)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(f: &mut Flight, seq: u32, len: u32) {
        f.sent(
            SeqNumber(seq),
            len,
            Instant::from_nanos(u64::from(seq)),
            false,
        );
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
        f.acked(SeqNumber(1000), |_| {});
        assert_eq!(f.entries(), [(1000, 449), (1449, 1448), (2897, 104)]);
        f.acked(SeqNumber(3001), |_| {});
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
        f.acked(SeqNumber(400), |_| {});
        assert_eq!(f.entries(), [(400, 500), (900, 1000)]);
    }

    #[test]
    fn bounded_by_merging_the_oldest() {
        let mut f = Flight::default();
        for i in 0..1000u32 {
            sent(&mut f, 1 + i * 10, 10);
        }
        assert_eq!(f.segs.len(), MAX_ENTRIES);
        let total: u32 = f.segs.iter().map(|e| e.len).sum();
        assert_eq!(total, 10_000, "every byte still accounted for");
        assert_eq!(f.segs[0].seq, SeqNumber(1));
        assert_eq!(
            f.segs[0].at,
            Instant::from_nanos(1 + 10 * 744),
            "a merged entry keeps the later send time of what it holds"
        );
    }

    /// What one SACK block newly marks.
    fn sack(f: &mut Flight, left: u32, right: u32) -> Vec<Sent> {
        let mut newly = Vec::new();
        f.sack([(SeqNumber(left), SeqNumber(right))].into_iter(), |e| {
            newly.push(*e)
        });
        newly
    }

    fn acked(f: &mut Flight, una: u32) -> Vec<Sent> {
        let mut gone = Vec::new();
        f.acked(SeqNumber(una), |e| gone.push(*e));
        gone
    }

    #[test]
    fn sack_marks_whole_segments_and_acks_return_what_they_took() {
        let mut f = Flight::default();
        sent(&mut f, 1, 500);
        sent(&mut f, 501, 500);
        sent(&mut f, 1001, 398);
        // A block covering the second and half the third: only the second is whole.
        let newly = sack(&mut f, 501, 1200);
        assert_eq!(newly.iter().map(|e| e.seq.0).collect::<Vec<_>>(), [501]);
        assert_eq!(f.sacked_count(), 1);
        // The same block again marks nothing new; a D-SACK below the flight, or a block
        // the wrong way round, nothing.
        assert!(sack(&mut f, 501, 1200).is_empty());
        assert!(sack(&mut f, 0, 1).is_empty());
        assert!(sack(&mut f, 900, 600).is_empty());
        assert_eq!(f.unsacked().map(|e| e.seq.0).collect::<Vec<_>>(), [1, 1001]);
        // Sent again: no longer SACKed (a reneging peer's data goes back in flight).
        f.sent(SeqNumber(501), 500, Instant::from_nanos(9_000), true);
        assert_eq!(f.sacked_count(), 0);
        let gone = acked(&mut f, 1001);
        assert_eq!(gone.len(), 2);
        assert!(gone[1].again && gone[1].at == Instant::from_nanos(9_000));
        assert_eq!(f.entries(), [(1001, 398)]);
    }
}
