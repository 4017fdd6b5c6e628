//! How a single probe's run loop waits for a reply it must answer at once — spin, and at
//! which priority, or sleep — decided in virtual time.
//!
//! Our ACK of a SYN-ACK is a user-space reaction, and the server times it as part of our
//! handshake. Sleeping until the packet comes adds the scheduler's wake-up delay (tens of
//! µs on a VM); spinning (polling the tap without sleeping) does not, and at real-time
//! priority (`SCHED_FIFO`) no waking task — tcpdump, say — preempts the spin between the
//! packet's arrival and our answer. But a real-time task is never preempted by an ordinary
//! one: while it spins, whatever else wanted that CPU waits, a local forwarder carrying our
//! own SYN included (it was ~3 ms late, the whole spin, in 17 runs of 22).
//!
//! So the spin is bounded, as the kernel's own busy polling is (`napi_busy_loop` stops at
//! `need_resched()`, after at most `busy_poll` µs):
//! - at real-time priority (held only while awaiting the SYN-ACK) the loop spins for at
//!   most [`SpinPolicy::slice`] (100 µs) after each transmit, and never longer than that
//!   since it took the priority ([`Spinner::held_since`]: the SYN's send, over veth with
//!   the server's handling of it inside, counts too; the rehearsal before it runs at
//!   ordinary priority), then sleeps until a packet or a deadline. Asleep it takes no
//!   CPU; a packet wakes it at once, ahead of any
//!   ordinary task (a real-time wake-up preempts), and it answers and sleeps again. No
//!   task waits longer than a slice for us per segment we send (SYNs are RTO apart);
//! - at ordinary priority (after the handshake, or without the privilege) it spins
//!   politely, yielding every turn, for at most [`SpinPolicy::window`] (3 ms), in slices
//!   of 100 µs with a sleep of up to [`SpinPolicy::hand_over`] (50 µs, a packet ends it
//!   sooner) between them ([`Wait::HandOver`]): under the kernel's fair scheduler (EEVDF)
//!   a yielding spinner was measured keeping a woken task off its CPU for a whole slice
//!   (~1 ms); a sleep gives it the CPU.
//!
//! Slicing the real-time spin the same way (100 µs spin, 50 µs sleep, for 3 ms) was tried
//! and measured: with a third task on the CPU the sleeper still waited up to 2 ms, the
//! hand-overs going to the other task while the spin took two thirds of the CPU.
//!
//! The trade-off: a SYN-ACK that comes within 100 µs of the SYN (a server on this host or
//! a near one) is answered by the spin as before; one that comes later is answered after a
//! real-time wake-up (a few µs when the CPU is busy, the idle exit when it is idle) rather
//! than from a spin that kept the CPU from everyone else for up to 3 ms.

use crate::time::Instant;
use std::time::Duration;

/// The bounds; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpinPolicy {
    /// How long after a transmit the loop spins at all.
    pub window: Duration,
    /// The longest spin without giving the CPU away.
    pub slice: Duration,
    /// How long the loop sleeps between two slices, at most (a packet ends it sooner).
    pub hand_over: Duration,
}

impl Default for SpinPolicy {
    fn default() -> Self {
        SpinPolicy {
            window: Duration::from_millis(3),
            slice: Duration::from_micros(100),
            hand_over: Duration::from_micros(50),
        }
    }
}

/// What the loop does next while it has nothing to handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Poll again at once: spinning at real-time priority when the loop holds it,
    /// otherwise yielding first to any runnable task.
    Spin,
    /// A slice is over: sleep until a packet comes or this much time passes, so that any
    /// task waiting for this CPU runs; then poll.
    HandOver(Duration),
    /// Sleep until a packet or the next deadline.
    Sleep,
}

/// The spin's state: when the current slice began.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spinner {
    policy: SpinPolicy,
    slice_from: Option<Instant>,
    /// Since when the loop has held its CPU at real-time priority without sleeping.
    held_from: Option<Instant>,
}

impl Spinner {
    pub fn new(policy: SpinPolicy) -> Spinner {
        Spinner {
            policy,
            slice_from: None,
            held_from: None,
        }
    }

    /// The loop took real-time priority at `at` and has run since: its real-time spin
    /// ends a slice after this even if a transmit came later. Forgotten once it sleeps.
    pub fn held_since(&mut self, at: Instant) {
        self.held_from = Some(at);
    }

    /// What to do at `now`, our last transmit having left at `last_tx`; `realtime`: the
    /// loop holds real-time priority.
    pub fn next(&mut self, now: Instant, last_tx: Instant, realtime: bool) -> Wait {
        let window = if realtime {
            self.policy.slice.min(self.policy.window)
        } else {
            self.policy.window
        };
        let mut end = last_tx + window;
        if realtime && let Some(held) = self.held_from {
            end = end.min(held + self.policy.slice);
        }
        if now >= end {
            self.slice_from = None;
            self.held_from = None;
            return Wait::Sleep;
        }
        match self.slice_from {
            Some(from) if now >= from + self.policy.slice => {
                // The next slice starts when the loop polls after the hand-over.
                self.slice_from = None;
                Wait::HandOver(self.policy.hand_over)
            }
            Some(_) => Wait::Spin,
            None => {
                self.slice_from = Some(now);
                Wait::Spin
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn at_us(us: u64) -> Instant {
        Instant::from_nanos(T0 + us * 1_000)
    }

    /// Drives a spinner polling every `step` µs from a transmit at 0 until it sleeps;
    /// returns what it did at each step.
    fn drive(step: u64, realtime: bool) -> Vec<(u64, Wait)> {
        let mut s = Spinner::new(SpinPolicy::default());
        let mut out = Vec::new();
        let mut now = 0;
        // Bounded: the window ends.
        for _ in 0..1_000_000 {
            let w = s.next(at_us(now), at_us(0), realtime);
            out.push((now, w));
            now += match w {
                Wait::Sleep => break,
                Wait::HandOver(d) => d.as_micros() as u64,
                Wait::Spin => step,
            };
        }
        out
    }

    #[test]
    fn a_realtime_spin_lasts_one_slice_after_a_transmit_then_sleeps() {
        let run = drive(1, true);
        assert!(
            run.iter().all(|&(t, w)| (w == Wait::Spin) == (t < 100)),
            "{run:?}"
        );
        assert_eq!(run.last(), Some(&(100, Wait::Sleep)));
    }

    #[test]
    fn the_time_before_the_transmit_at_realtime_priority_counts_against_the_slice() {
        // Priority taken 45 µs before the SYN left (building, sending): the spin
        // after it ends 55 µs after the SYN, so the CPU is held 100 µs in all.
        let mut s = Spinner::new(SpinPolicy::default());
        s.held_since(at_us(0));
        let syn = at_us(45);
        assert_eq!(s.next(at_us(46), syn, true), Wait::Spin);
        assert_eq!(s.next(at_us(99), syn, true), Wait::Spin);
        assert_eq!(s.next(at_us(100), syn, true), Wait::Sleep);
        // Woken later (a retransmission's timer): a new transmit spins its whole slice.
        let again = at_us(1_000_000);
        assert_eq!(s.next(again, again, true), Wait::Spin);
        assert_eq!(s.next(at_us(1_000_099), again, true), Wait::Spin);
        assert_eq!(s.next(at_us(1_000_100), again, true), Wait::Sleep);
        // At ordinary priority the hold does not matter: the polite window applies.
        let mut p = Spinner::new(SpinPolicy::default());
        p.held_since(at_us(0));
        assert_eq!(p.next(at_us(500), syn, false), Wait::Spin);
    }

    #[test]
    fn a_polite_spin_gives_the_cpu_away_every_slice_until_the_window_ends() {
        let run = drive(1, false);
        let mut since = None;
        for &(t, w) in &run {
            match w {
                Wait::Spin => {
                    let from = *since.get_or_insert(t);
                    assert!(
                        t - from <= 100,
                        "spun from {from} to {t} µs without a break"
                    );
                }
                Wait::HandOver(d) => {
                    assert_eq!(d, Duration::from_micros(50));
                    since = None;
                }
                Wait::Sleep => assert!(t >= 3_000, "slept at {t} µs, inside the window"),
            }
        }
        let handovers = run
            .iter()
            .filter(|r| matches!(r.1, Wait::HandOver(_)))
            .count();
        assert!(
            (18..=21).contains(&handovers),
            "{handovers} hand-overs in 3 ms"
        );
        assert_eq!(run.last().map(|r| r.1), Some(Wait::Sleep));
    }

    #[test]
    fn a_slow_poll_still_hands_over_once_the_slice_is_over() {
        // A loop that polls every 70 µs (busy handling packets): the third poll is past
        // the slice, so it gives the CPU away.
        let run = drive(70, false);
        assert_eq!(run[0].1, Wait::Spin);
        assert_eq!(run[1].1, Wait::Spin);
        assert!(matches!(run[2].1, Wait::HandOver(_)));
        assert_eq!(run[3].1, Wait::Spin, "a new slice after the hand-over");
    }

    #[test]
    fn a_new_transmit_opens_a_new_window() {
        let mut s = Spinner::new(SpinPolicy::default());
        assert_eq!(s.next(at_us(2_950), at_us(0), false), Wait::Spin);
        assert_eq!(s.next(at_us(3_000), at_us(0), false), Wait::Sleep);
        assert_eq!(s.next(at_us(3_000), at_us(3_000), true), Wait::Spin);
        assert_eq!(s.next(at_us(3_099), at_us(3_000), true), Wait::Spin);
        assert_eq!(s.next(at_us(3_100), at_us(3_000), true), Wait::Sleep);
        assert_eq!(s.next(at_us(3_100), at_us(3_000), false), Wait::Spin);
    }
}
