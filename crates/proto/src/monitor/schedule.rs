//! The continuous surveys' clock: which (target, module) is due when.
//!
//! Each entry is probed every `interval`, on a fixed cadence (`first + k·interval`), so a
//! late start does not shift later ones. Entries of one interval start spread evenly over
//! it ([`spread`]), not all at the same instant: 1 000 targets every 10 s are 100 probes
//! a second, not 1 000 SYNs at once every 10 s.
//!
//! Two probes of one entry never overlap: an entry whose previous probe is still running
//! when it is due again skips that round (counted), as does one the exporter fell more
//! than an interval behind on (the rounds missed are counted, not made up in a burst).
//! Memory is one heap item per entry, whatever the run time.

use crate::time::Instant;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

struct Entry {
    interval: Duration,
    busy: bool,
}

/// A due entry handed out by [`Schedule::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub entry: usize,
    /// When it was due.
    pub due: Instant,
    /// How late it is handed out (the exporter's loop lag).
    pub lag: Duration,
}

#[derive(Default)]
pub struct Schedule {
    entries: Vec<Entry>,
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    skipped: u64,
}

/// When entry `i` of `n` sharing one interval first runs: spread over the interval in
/// steps of `tick`, so entries start in batches (a batch of probes keeps the loop busy
/// enough that it sleeps between passes, where probes started one by one would each make
/// it spin for the reply; see tcpshake-io's survey loop). A zero `tick` spreads evenly.
pub fn spread(start: Instant, interval: Duration, i: usize, n: usize, tick: Duration) -> Instant {
    if n == 0 {
        return start;
    }
    let step = interval.as_nanos() / n as u128;
    let mut offset = step.saturating_mul(i as u128);
    let tick = tick.as_nanos();
    if tick > 0 {
        offset -= offset % tick;
    }
    start + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
}

impl Schedule {
    pub fn new() -> Schedule {
        Schedule::default()
    }

    /// A new entry, first due at `first`, then every `interval` (not zero).
    pub fn add(&mut self, interval: Duration, first: Instant) -> usize {
        let i = self.entries.len();
        self.entries.push(Entry {
            interval: interval.max(Duration::from_millis(1)),
            busy: false,
        });
        self.heap.push(Reverse((first, i)));
        i
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Rounds skipped so far: the entry was still busy, or the exporter was behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The earliest due time, for the caller's sleep.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next entry due at `now`, if any; it is busy until [`Schedule::done`].
    pub fn poll(&mut self, now: Instant) -> Option<Due> {
        // Bounded: each turn pops an item and pushes it back strictly later, and a busy
        // entry is passed over only once per call.
        for _ in 0..self.entries.len().max(1) {
            let &Reverse((due, i)) = self.heap.peek()?;
            if due > now {
                return None;
            }
            self.heap.pop();
            let interval = self.entries[i].interval;
            // The next slot on the cadence after now: rounds already missed are skipped.
            let behind = now.saturating_since(due).as_nanos() / interval.as_nanos();
            let missed = u64::try_from(behind).unwrap_or(u64::MAX);
            self.skipped = self.skipped.saturating_add(missed);
            // In ns, not `Duration * u32`: more than 2^32 intervals behind (a clock stepped
            // by decades) must still land after `now`, not be due again at once.
            let ahead = interval.as_nanos().saturating_mul(behind + 1);
            let next = Instant::from_nanos(
                u64::try_from(u128::from(due.as_nanos()).saturating_add(ahead)).unwrap_or(u64::MAX),
            );
            self.heap.push(Reverse((next, i)));
            if self.entries[i].busy {
                self.skipped = self.skipped.saturating_add(1);
                continue;
            }
            self.entries[i].busy = true;
            return Some(Due {
                entry: i,
                due,
                lag: now.saturating_since(due),
            });
        }
        None
    }

    /// Entry `i`'s probe ended (or could not start): it may run again when next due.
    pub fn done(&mut self, i: usize) {
        if let Some(e) = self.entries.get_mut(i) {
            e.busy = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_nanos(1_000_000_000_000 + ms * 1_000_000)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn entries_run_on_their_cadence() {
        let mut s = Schedule::new();
        let a = s.add(ms(100), t(0));
        assert_eq!(s.poll(t(0)).map(|d| d.entry), Some(a));
        s.done(a);
        assert_eq!(s.poll(t(50)), None);
        assert_eq!(s.next_due(), Some(t(100)));
        // Handed out 7 ms late: the lag says so, and the cadence does not shift.
        let d = s.poll(t(107)).unwrap();
        assert_eq!((d.due, d.lag), (t(100), ms(7)));
        s.done(a);
        assert_eq!(s.next_due(), Some(t(200)));
        assert_eq!(s.skipped(), 0);
    }

    #[test]
    fn a_busy_entry_skips_its_round() {
        let mut s = Schedule::new();
        let a = s.add(ms(100), t(0));
        assert!(s.poll(t(0)).is_some());
        // Still running at its next due time: skipped, not queued.
        assert_eq!(s.poll(t(100)), None);
        assert_eq!(s.skipped(), 1);
        s.done(a);
        assert_eq!(s.poll(t(150)), None);
        assert_eq!(s.poll(t(200)).map(|d| d.entry), Some(a));
    }

    #[test]
    fn rounds_missed_while_behind_are_counted_not_burst() {
        let mut s = Schedule::new();
        let a = s.add(ms(100), t(0));
        assert!(s.poll(t(0)).is_some());
        s.done(a);
        // Nothing polled for 350 ms: the 100 ms slot runs once, 200 and 300 are skipped.
        let d = s.poll(t(350)).unwrap();
        assert_eq!(d.due, t(100));
        assert_eq!(s.skipped(), 2);
        s.done(a);
        assert_eq!(s.poll(t(350)), None);
        assert_eq!(s.next_due(), Some(t(400)));
    }

    #[test]
    fn entries_spread_over_their_interval() {
        let mut s = Schedule::new();
        let n = 4;
        for i in 0..n {
            s.add(ms(1000), spread(t(0), ms(1000), i, n, Duration::ZERO));
        }
        let mut starts = Vec::new();
        for step in 0..1000 {
            while let Some(d) = s.poll(t(step)) {
                starts.push((d.entry, step));
                s.done(d.entry);
            }
        }
        assert_eq!(starts, vec![(0, 0), (1, 250), (2, 500), (3, 750)]);
    }

    #[test]
    fn a_tick_starts_entries_in_batches() {
        let firsts: Vec<Instant> = (0..8)
            .map(|i| spread(t(0), ms(1000), i, 8, ms(250)))
            .collect();
        assert_eq!(
            firsts,
            vec![t(0), t(0), t(250), t(250), t(500), t(500), t(750), t(750)]
        );
    }

    #[test]
    fn memory_is_one_item_per_entry_however_long_it_runs() {
        let mut s = Schedule::new();
        for i in 0..10 {
            s.add(ms(10), spread(t(0), ms(10), i, 10, Duration::ZERO));
        }
        let mut n = 0;
        for step in 0..100_000u64 {
            while let Some(d) = s.poll(t(step)) {
                n += 1;
                s.done(d.entry);
            }
            assert!(s.heap.len() == 10);
        }
        assert_eq!(n, 100_000);
    }
}
