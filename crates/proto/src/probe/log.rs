//! The segment log, bounded: however many segments a peer sends, a probe keeps at most
//! [`Bounds::head`] + [`Bounds::pinned`] + [`Bounds::tail`] records of them, and its record
//! says how many it left out and where.
//!
//! What is kept: the first `head` records (an exchange that goes well is all there: 8–10
//! segments, a 90-segment burst, a 1 MiB response head), the last `tail` (how it ended),
//! and in between every record a leg or the view needs — the ones [`legs::Watch`] names
//! (`compute`'s searches), the marked ones (the SYN-ACK, the segment that completed the
//! response, TLS's), those with state changes, and the last usable one. Legs computed on
//! the kept records are therefore the legs of the whole log: every record a search picks
//! is kept, and a kept record that a search skips would have been skipped in the whole log
//! too. Records left out are counted; the first kept record after a gap carries the gap's
//! size (`omitted_before`).
//!
//! Records are numbered by arrival (their *id*): marks are ids, and [`Kept::position`]
//! turns one into an index of the kept records when the record is written.

use super::legs::{self, Watch};
use super::record::SegmentRecord;
use crate::wire::SeqNumber;
use std::borrow::Cow;
use std::collections::VecDeque;

/// How many records of each kind a log keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The first records, all kept.
    pub head: usize,
    /// Records a leg or the view needs, after the head and before the tail.
    pub pinned: usize,
    /// The last records.
    pub tail: usize,
}

impl Bounds {
    /// 896 records at most (192 bytes each, 170 KB): a probe's log stays far below the
    /// 32 MiB a tcpshake process may use under any flood, even with `-j 64` probes flooded
    /// at once, and a record stays readable. The head holds a whole 128 KiB window of
    /// 536-byte segments with an ACK for each (490 records), the tail how it ended, and
    /// the pinned ones are far more than a leg can need (about 20; TLS's records a few
    /// more).
    pub const DEFAULT: Bounds = Bounds {
        head: 512,
        pinned: 256,
        tail: 128,
    };
}

/// One record after the head, with its id; `pinned`: a leg or the view needs it.
#[derive(Clone, Debug)]
struct Entry {
    id: usize,
    pinned: bool,
    rec: SegmentRecord,
}

#[derive(Clone, Debug)]
pub struct SegmentLog {
    bounds: Bounds,
    /// Records `0..head.len()`: their id is their index.
    head: Vec<SegmentRecord>,
    /// Pinned records that left the tail, in id order (all older than the tail's).
    kept: Vec<Entry>,
    /// The newest records, consecutive ids.
    tail: VecDeque<Entry>,
    /// Records ever logged: the next id.
    total: usize,
    /// The newest record a leg may end at (`total` runs to it).
    last_usable: Option<usize>,
    /// Pinned records dropped because `kept` was full: legs may be wrong.
    pinned_dropped: usize,
    watch: Watch,
}

impl SegmentLog {
    /// A log that keeps nothing yet and holds no memory: what is left behind when a
    /// probe's log is taken for its record.
    pub fn taken() -> SegmentLog {
        SegmentLog {
            bounds: Bounds::DEFAULT,
            head: Vec::new(),
            kept: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
            last_usable: None,
            pinned_dropped: 0,
            watch: Watch::default(),
        }
    }

    pub fn new(bounds: Bounds) -> SegmentLog {
        SegmentLog {
            bounds: Bounds {
                head: bounds.head.max(1),
                pinned: bounds.pinned,
                tail: bounds.tail.max(1),
            },
            // A probe that goes well logs 8–10 segments: no regrowing on the way.
            head: Vec::with_capacity(12.min(bounds.head.max(1))),
            ..SegmentLog::taken()
        }
    }

    /// Log `rec`; returns its id.
    pub fn push(&mut self, rec: SegmentRecord) -> usize {
        let id = self.total;
        self.total += 1;
        let pinned = self.watch.needs(&rec) || !rec.transitions.is_empty();
        if legs::usable(&rec) {
            self.last_usable = Some(id);
        }
        if self.head.len() < self.bounds.head {
            self.head.push(rec);
            return id;
        }
        self.tail.push_back(Entry { id, pinned, rec });
        if self.tail.len() > self.bounds.tail
            && let Some(old) = self.tail.pop_front()
            && (old.pinned || self.last_usable == Some(old.id))
        {
            if self.kept.len() < self.bounds.pinned {
                self.kept.push(old);
            } else {
                self.pinned_dropped += 1;
            }
        }
        id
    }

    /// Keep record `id` whatever comes after it (a mark points at it).
    pub fn pin(&mut self, id: usize) {
        if let Some(e) = self.tail_entry(id) {
            e.pinned = true;
        }
    }

    /// The SYN-ACK was just marked (the newest record): our next ACK is a leg's end.
    pub fn synack_marked(&mut self, id: usize) {
        self.pin(id);
        let irs = self.get(id).map(|r| SeqNumber(r.seq));
        self.watch.synack_marked(irs);
    }

    fn tail_entry(&mut self, id: usize) -> Option<&mut Entry> {
        let first = self.tail.front()?.id;
        self.tail.get_mut(id.checked_sub(first)?)
    }

    /// Record `id`, if it is still kept.
    pub fn get(&self, id: usize) -> Option<&SegmentRecord> {
        if id < self.head.len() {
            return self.head.get(id);
        }
        let first = self.tail.front()?.id;
        if first <= id {
            return self.tail.get(id - first).map(|e| &e.rec);
        }
        let i = self.kept.binary_search_by_key(&id, |e| e.id).ok()?;
        self.kept.get(i).map(|e| &e.rec)
    }

    /// Whether record `id` is kept for a leg or the view, whatever comes after it: every
    /// record of the head is; after it, those pinned so far (the newest record's pins are
    /// all set once its packet is handled).
    pub fn needed(&self, id: usize) -> bool {
        if id < self.head.len() {
            return true;
        }
        let first = self.tail.front().map_or(usize::MAX, |e| e.id);
        match id.checked_sub(first) {
            Some(i) => self.tail.get(i).is_some_and(|e| e.pinned),
            None => self.kept.binary_search_by_key(&id, |e| e.id).is_ok(),
        }
    }

    /// Record `id`, if it is still kept.
    pub fn get_mut(&mut self, id: usize) -> Option<&mut SegmentRecord> {
        if id < self.head.len() {
            return self.head.get_mut(id);
        }
        if self.tail.front().is_some_and(|e| e.id <= id) {
            return self.tail_entry(id).map(|e| &mut e.rec);
        }
        let i = self.kept.binary_search_by_key(&id, |e| e.id).ok()?;
        self.kept.get_mut(i).map(|e| &mut e.rec)
    }

    /// The first record logged.
    pub fn first(&self) -> Option<&SegmentRecord> {
        self.head.first()
    }

    /// Records logged so far, kept or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Records left out so far.
    pub fn omitted(&self) -> usize {
        self.total - self.head.len() - self.kept.len() - self.tail.len()
    }

    /// Records a leg needed that were left out all the same (more than the log keeps).
    pub fn pinned_dropped(&self) -> usize {
        self.pinned_dropped
    }

    /// Every kept record, in order, each after a gap saying how many were left out there:
    /// borrowed while every record is in the head (ids are then positions), a copy after.
    pub fn kept(&self) -> Kept<'_> {
        if self.all_in_head() {
            return Kept::whole(Cow::Borrowed(&self.head));
        }
        Kept::build(
            self.pinned_dropped,
            self.head.iter().cloned().enumerate(),
            self.kept
                .iter()
                .chain(self.tail.iter())
                .map(|e| (e.id, e.rec.clone())),
        )
    }

    /// Every record logged is in the head: ids are positions and nothing was left out.
    fn all_in_head(&self) -> bool {
        self.total == self.head.len()
    }

    /// [`SegmentLog::kept`], moving the records out.
    pub fn into_kept(self) -> Kept<'static> {
        // The usual probe's records all fit the head: the head is the record as it is (no
        // copy, no id list).
        if self.all_in_head() {
            return Kept::whole(Cow::Owned(self.head));
        }
        Kept::build(
            self.pinned_dropped,
            self.head.into_iter().enumerate(),
            self.kept
                .into_iter()
                .chain(self.tail)
                .map(|e| (e.id, e.rec)),
        )
    }
}

/// The records a log kept, ready to be written, and where each id went.
#[derive(Clone, Debug, Default)]
pub struct Kept<'a> {
    pub records: Cow<'a, [SegmentRecord]>,
    /// The id of each record (ascending); None when ids are positions.
    ids: Option<Vec<usize>>,
    /// Records left out (the sum of the records' `omitted_before`).
    pub omitted: u64,
    /// Of those, records a leg needed (see [`SegmentLog::pinned_dropped`]).
    pub pinned_dropped: usize,
}

impl<'a> Kept<'a> {
    /// All of a log's records, ids their positions (see [`SegmentLog::all_in_head`]).
    fn whole(records: Cow<'a, [SegmentRecord]>) -> Kept<'a> {
        Kept {
            records,
            ids: None,
            omitted: 0,
            pinned_dropped: 0,
        }
    }

    fn build(
        pinned_dropped: usize,
        head: impl Iterator<Item = (usize, SegmentRecord)>,
        rest: impl Iterator<Item = (usize, SegmentRecord)>,
    ) -> Kept<'static> {
        let (mut records, mut ids, mut omitted) = (Vec::new(), Vec::new(), 0);
        records.reserve(head.size_hint().0 + rest.size_hint().0);
        ids.reserve(records.capacity());
        let mut next = 0;
        for (id, mut rec) in head.chain(rest) {
            rec.omitted_before = (id - next) as u64;
            omitted += rec.omitted_before;
            next = id + 1;
            records.push(rec);
            ids.push(id);
        }
        Kept {
            records: Cow::Owned(records),
            ids: Some(ids),
            omitted,
            pinned_dropped,
        }
    }

    /// Where record `id` is among the kept ones (None: it was left out).
    pub fn position(&self, id: usize) -> Option<usize> {
        match &self.ids {
            Some(ids) => ids.binary_search(&id).ok(),
            None => (id < self.records.len()).then_some(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::record::Dir;
    use crate::wire::{TcpFlags, TcpOptions};

    fn rec(dir: Dir, seq: u32, flags: TcpFlags, len: u32) -> SegmentRecord {
        SegmentRecord {
            dir,
            t_ns: 0,
            ts_ns: u64::from(seq),
            flags,
            seq,
            ack: 0,
            win: 0,
            len,
            options: TcpOptions::default(),
            ttl: 64,
            retransmission: false,
            transitions: Vec::new(),
            bad_checksum: false,
            foreign: false,
            kernel: false,
            urgent: None,
            fragments: 1,
            omitted_before: 0,
        }
    }

    const SMALL: Bounds = Bounds {
        head: 4,
        pinned: 2,
        tail: 3,
    };

    #[test]
    fn keeps_head_and_tail_and_counts_the_gap() {
        let mut log = SegmentLog::new(SMALL);
        for i in 0..100 {
            log.push(rec(Dir::In, i, TcpFlags::ACK, 0));
        }
        assert_eq!(log.total(), 100);
        let k = log.kept();
        // The last usable record is the newest: nothing older needs keeping.
        let seqs: Vec<u32> = k.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 97, 98, 99]);
        assert_eq!(log.omitted(), 93);
        let gaps: Vec<u64> = k.records.iter().map(|r| r.omitted_before).collect();
        assert_eq!(gaps, [0, 0, 0, 0, 93, 0, 0]);
        assert_eq!(k.position(97), Some(4));
        assert_eq!(k.position(50), None);
    }

    /// Taking the log for a record keeps what looking at it shows, whether every record
    /// fit the head (handed over as it is) or some were left out.
    #[test]
    fn into_kept_keeps_what_kept_shows() {
        for n in [0, 3, 4, 5, 100] {
            let mut log = SegmentLog::new(SMALL);
            for i in 0..n {
                log.push(rec(Dir::In, i, TcpFlags::ACK, 0));
            }
            let seen = log.kept();
            let (seqs, gaps, omitted) = (
                seen.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
                seen.records
                    .iter()
                    .map(|r| r.omitted_before)
                    .collect::<Vec<_>>(),
                seen.omitted,
            );
            let positions: Vec<_> = (0..n as usize + 1).map(|id| seen.position(id)).collect();
            let taken = log.into_kept();
            assert_eq!(
                taken.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
                seqs,
                "{n} records"
            );
            assert_eq!(
                taken
                    .records
                    .iter()
                    .map(|r| r.omitted_before)
                    .collect::<Vec<_>>(),
                gaps,
                "{n} records"
            );
            assert_eq!(taken.omitted, omitted, "{n} records");
            let taken_positions: Vec<_> =
                (0..n as usize + 1).map(|id| taken.position(id)).collect();
            assert_eq!(taken_positions, positions, "{n} records");
        }
    }

    #[test]
    fn pinned_records_survive_the_flood_in_order() {
        let mut log = SegmentLog::new(SMALL);
        for i in 0..10 {
            log.push(rec(Dir::In, i, TcpFlags::ACK, 0));
        }
        let marked = log.push(rec(Dir::In, 10, TcpFlags::ACK, 0));
        log.pin(marked);
        for i in 11..50 {
            log.push(rec(Dir::In, i, TcpFlags::ACK, 0));
        }
        // The first FIN is a leg's start: kept by the watch, not by a mark.
        log.push(rec(Dir::In, 50, TcpFlags::FIN | TcpFlags::ACK, 0));
        for i in 51..90 {
            log.push(rec(Dir::In, i, TcpFlags::ACK, 0));
        }
        let k = log.kept();
        let seqs: Vec<u32> = k.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 10, 50, 87, 88, 89]);
        let gaps: Vec<u64> = k.records.iter().map(|r| r.omitted_before).collect();
        assert_eq!(gaps, [0, 0, 0, 0, 6, 39, 36, 0, 0]);
        assert_eq!(
            gaps.iter().sum::<u64>(),
            log.omitted() as u64,
            "every left-out record is counted once"
        );
        assert_eq!(log.get_mut(marked).map(|r| r.seq), Some(10));
        assert_eq!(log.pinned_dropped(), 0);
    }

    #[test]
    fn the_last_usable_record_is_kept_behind_a_flood_of_bad_checksums() {
        let mut log = SegmentLog::new(SMALL);
        for i in 0..10 {
            log.push(rec(Dir::In, i, TcpFlags::ACK, 0));
        }
        for i in 10..100 {
            let mut r = rec(Dir::In, i, TcpFlags::ACK, 10);
            r.bad_checksum = true;
            log.push(r);
        }
        let k = log.kept();
        let seqs: Vec<u32> = k.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 9, 97, 98, 99]);
    }

    #[test]
    fn more_pins_than_room_are_counted() {
        let mut log = SegmentLog::new(SMALL);
        for i in 0..20 {
            let id = log.push(rec(Dir::In, i, TcpFlags::ACK, 0));
            log.pin(id);
        }
        assert_eq!(log.kept().records.len(), 4 + 2 + 3);
        assert_eq!(log.pinned_dropped(), 20 - 9);
        assert_eq!(log.omitted(), 11);
    }
}
