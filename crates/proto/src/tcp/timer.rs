//! The connection's timers: one enum indexing a small table of deadlines (after
//! quinn-proto's `connection/timer.rs`), so there are no scattered `Option<Instant>`s and
//! `poll_timeout` is a minimum over one array.

use crate::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Timer {
    /// RFC 6298 §5: retransmit the earliest unacknowledged segment (SYN, data or FIN).
    Retransmit = 0,
    /// RFC 9293 §3.8.6.1: probe a zero window.
    Persist = 1,
    /// RFC 9293 §3.6: TIME-WAIT (configured length instead of 2×MSL).
    TimeWait = 2,
    /// RFC 8985 §6.2 step 5: a segment sent before a delivered one will be lost once its
    /// reordering window has passed.
    Reorder = 3,
    /// RFC 8985 §7.2: the tail loss probe's timeout (PTO).
    Probe = 4,
}

impl Timer {
    /// In the order they are fired when several are due at once (the retransmission
    /// timer before RACK's: what it sends again is no longer judged by older deliveries).
    pub(super) const ALL: [Timer; 5] = [
        Timer::TimeWait,
        Timer::Retransmit,
        Timer::Reorder,
        Timer::Probe,
        Timer::Persist,
    ];
}

#[derive(Clone, Copy, Default, Debug)]
pub(super) struct TimerTable {
    deadlines: [Option<Instant>; 5],
}

impl TimerTable {
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    pub(super) fn is_set(&self, timer: Timer) -> bool {
        self.deadlines[timer as usize].is_some()
    }

    pub(super) fn stop_all(&mut self) {
        self.deadlines = [None; 5];
    }

    /// Whether `timer` is due at `now`; a due timer is cleared (the caller re-arms it).
    pub(super) fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        match self.deadlines[timer as usize] {
            Some(at) if at <= now => {
                self.deadlines[timer as usize] = None;
                true
            }
            _ => false,
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_deadline_wins_and_expired_timers_clear() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_deadline(), None);
        t.set(Timer::Retransmit, Instant::from_nanos(30));
        t.set(Timer::TimeWait, Instant::from_nanos(10));
        assert_eq!(t.next_deadline(), Some(Instant::from_nanos(10)));
        assert!(!t.take_expired(Timer::Retransmit, Instant::from_nanos(29)));
        assert!(t.take_expired(Timer::TimeWait, Instant::from_nanos(10)));
        assert!(!t.is_set(Timer::TimeWait));
        assert_eq!(t.next_deadline(), Some(Instant::from_nanos(30)));
        t.stop_all();
        assert_eq!(t.next_deadline(), None);
    }
}
