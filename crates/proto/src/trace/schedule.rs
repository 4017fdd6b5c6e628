//! Which probe goes out when, and when the trace is over (the module doc of [`super`]
//! says why: the window of TTLs, the attempts at one TTL, the end).

use super::{Answer, AnswerKind, Phase, RAMP_PATIENCE, Slot, TSVAL_TICK, Trace};
use crate::tcp::State;
use crate::time::Instant;
use crate::trace::record::TraceMode;
use crate::wire::IcmpKind;
use std::time::Duration;

impl Trace {
    // --- scheduling ---

    pub(super) fn index(&self, ttl: u8, k: u8) -> Option<usize> {
        let p = usize::from(ttl.checked_sub(self.cfg.first_ttl)?) * usize::from(self.cfg.probes)
            + usize::from(k);
        (p < self.slots.len() && k < self.cfg.probes).then_some(p)
    }

    pub(super) fn slots_at(&self, ttl: u8) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(move |s| s.ttl == ttl)
    }

    /// The highest TTL whose first attempt is answered or given up.
    pub(super) fn frontier(&self) -> Option<u8> {
        self.slots
            .iter()
            .filter(|s| s.k == 0 && s.resolved())
            .map(|s| s.ttl)
            .max()
    }

    /// The highest TTL with any answer.
    pub(super) fn last_answered(&self) -> Option<u8> {
        self.slots
            .iter()
            .filter(|s| s.answer.is_some())
            .map(|s| s.ttl)
            .max()
    }

    /// `gap` TTLs in a row above the last that answered had their first attempt given up.
    pub(super) fn gap_reached(&self) -> bool {
        let from = self
            .last_answered()
            .map_or(self.cfg.first_ttl, |t| t.saturating_add(1));
        let gap = self.cfg.gap.max(1);
        let mut run = 0u8;
        for ttl in from..=self.cfg.max_ttl {
            match self.index(ttl, 0).map(|p| &self.slots[p]) {
                Some(s) if s.lost => run += 1,
                _ => break,
            }
            if run >= gap {
                return true;
            }
        }
        false
    }

    /// Every TTL up to the last was given up or answered without reaching the end.
    pub(super) fn all_silent_to_max(&self) -> bool {
        self.end.is_none()
            && self.slots.iter().all(|s| s.resolved())
            && self
                .slots
                .iter()
                .rev()
                .take(usize::from(self.cfg.probes))
                .all(|s| s.lost)
    }

    /// The highest TTL whose first attempt may go out: one beyond the highest TTL passed,
    /// plus one per TTL passed (the module doc's slow start), so a destination closer than
    /// the window's end is not sent the SYNs of the TTLs beyond it. A TTL is passed when it
    /// lies before the destination (`proven_intermediate`) or its first attempt was given
    /// up or is overdue.
    pub(super) fn ramp(&self) -> u8 {
        // `proven_intermediate` for every TTL at once: at or below the highest that expired.
        let expired = self
            .slots
            .iter()
            .filter(|s| {
                matches!(
                    s.answer,
                    Some(Answer {
                        kind: AnswerKind::Icmp {
                            kind: IcmpKind::TimeExceeded,
                            ..
                        },
                        ..
                    })
                )
            })
            .map(|s| s.ttl)
            .max()
            .unwrap_or(0);
        let before_end = self.end.map_or(0, |e| e.ttl.saturating_sub(1));
        let proven = expired.max(before_end);
        let (mut highest, mut count) = (self.cfg.first_ttl.saturating_sub(1), 0u8);
        for s in self.slots.iter().filter(|s| s.k == 0) {
            if s.ttl <= proven || s.lost || s.overdue {
                highest = s.ttl;
                count = count.saturating_add(1);
            }
        }
        let ahead = count.saturating_add(1).min(self.cfg.parallel.max(1));
        highest.saturating_add(ahead)
    }

    /// How long a first attempt may stay unanswered before the window passes it.
    pub(super) fn patience(&self) -> Duration {
        RAMP_PATIENCE.min(self.cfg.timeout)
    }

    /// The highest TTL that is still worth probing.
    pub(super) fn limit(&self) -> u8 {
        if let Some(end) = self.end {
            return end.ttl;
        }
        if self.gap_reached() {
            return self.last_answered().unwrap_or(0);
        }
        self.cfg.max_ttl
    }

    /// TTL `ttl` lies before the destination: something at or above it expired there.
    /// That the destination answered a higher TTL proves nothing: the SYNs at this one
    /// may all have been lost on the way (loss on the last link), and the next one may
    /// reach it — so it is still probed as a TTL that may be the destination, one SYN at
    /// a time (walk 15: with 30 % loss on the last link the destination was put one or
    /// two hops too far in 4 runs of 10).
    pub(super) fn proven_intermediate(&self, ttl: u8) -> bool {
        self.slots.iter().any(|s| {
            s.ttl >= ttl
                && matches!(
                    s.answer,
                    Some(Answer {
                        kind: AnswerKind::Icmp {
                            kind: IcmpKind::TimeExceeded,
                            ..
                        },
                        ..
                    })
                )
        })
    }

    /// SYN mode: probe `q` can no longer open a connection at the destination that a
    /// probe sent now would meet (or, stale, likely did not, and the clearing RST before
    /// the next SYN undoes it if it did): it is answered or given up, or a probe sent after it got
    /// the destination's SYN-ACK or RST. Probes share one path, in order: had `q` left a
    /// half-open connection there, that later SYN would have met it and drawn an ACK (or
    /// nothing), not a fresh answer (RFC 9293 §3.10.7.4, RFC 5961 §4).
    pub(super) fn settled(&self, q: usize) -> bool {
        let s = &self.slots[q];
        if s.resolved() {
            return true;
        }
        let fresh = self
            .slots
            .iter()
            .filter(|r| {
                matches!(&r.answer, Some(Answer { kind: AnswerKind::Tcp { flags }, .. })
                    if flags.syn() || flags.rst())
            })
            .map(|r| r.order)
            .max()
            .unwrap_or(0);
        self.cfg.mode == TraceMode::Syn && s.order != 0 && (s.order < fresh || s.stale)
    }

    /// How long an unanswered probe holds back the next SYN that may reach the
    /// destination: twice the longest round trip seen (at least [`RAMP_PATIENCE`], at
    /// most `timeout`). Past it, its SYN or its answer was likely lost, or its answer is
    /// slow (a router's host unreachable comes after ~3 s of failed ARP); a clearing RST
    /// before the next SYN undoes what it may have opened, and its answer is still taken
    /// until `timeout` (walk 15: with -w 5s the three attempts at such a TTL took 9.2 s).
    pub(super) fn settle_patience(&self) -> Duration {
        (self.max_rtt * 2).max(RAMP_PATIENCE).min(self.cfg.timeout)
    }

    /// SYN mode, once the destination answered: a probe that may reach it waits while
    /// another that may (at a TTL up to the destination's, none at or above it expired)
    /// is not settled. All probes share one 4-tuple, and the destination one connection
    /// per 4-tuple: a SYN that arrives while another probe's connection is half-open (a
    /// round trip, until our RST arrives) gets at most one ACK per 0.5 s (Linux's
    /// `tcp_invalid_ratelimit`) or nothing, and would read as lost — walk 15, 30 % loss on
    /// the last link: TTL 6's attempts went out 10 ms apart beside TTL 7's and all met
    /// each other's connections. Before the destination answered, the window's slow start
    /// bounds what may meet its first connection (the module doc's "Which TTLs when").
    fn waits_for_another(&self, p: usize) -> bool {
        if self.cfg.mode != TraceMode::Syn {
            return false;
        }
        let Some(end) = self.end else { return false };
        let limit = self.limit();
        if self.slots[p].ttl > end.ttl || self.proven_intermediate(self.slots[p].ttl) {
            return false;
        }
        (0..self.slots.len()).any(|q| {
            let s = &self.slots[q];
            q != p
                && s.queued.is_some()
                && s.ttl <= limit
                && !self.proven_intermediate(s.ttl)
                && !self.settled(q)
        })
    }

    /// The probe to send now, if any; else when the next one may become due by time
    /// alone (others wait for an answer or a timeout).
    pub(super) fn schedule(&self, now: Instant) -> (Option<usize>, Option<Instant>) {
        if self.phase != Phase::Tracing || self.slots.is_empty() {
            return (None, None);
        }
        let limit = self.limit();
        let in_flight = self
            .slots
            .iter()
            .filter(|s| s.outstanding() && s.ttl <= limit)
            .count();
        let max_in_flight = usize::from(self.cfg.parallel.max(1)) * usize::from(self.cfg.probes);
        if in_flight >= max_in_flight {
            return (None, None);
        }
        let window = self.cfg.parallel.max(1);
        let horizon = self
            .frontier()
            .map_or(self.cfg.first_ttl.saturating_add(window - 1), |f| {
                f.saturating_add(window)
            })
            .max(self.cfg.first_ttl.saturating_add(window - 1))
            .min(self.ramp())
            .min(limit);
        // In-session probes are told apart by TSval: one per tick.
        let paced = match (self.cfg.mode, self.last_probe_at) {
            (TraceMode::InSession, Some(last)) => Some(last + TSVAL_TICK),
            _ => None,
        };
        let mut earliest: Option<Instant> = None;
        for ttl in self.cfg.first_ttl..=horizon {
            for k in 0..self.cfg.probes {
                let Some(p) = self.index(ttl, k) else { break };
                if self.slots[p].queued.is_some() {
                    continue;
                }
                let due = if self.waits_for_another(p) {
                    None
                } else if k == 0 {
                    Some(Instant::from_nanos(0))
                } else {
                    let prev = &self.slots[p - 1];
                    let gate = self.settled(p - 1) || self.proven_intermediate(ttl);
                    gate.then(|| prev.queued.unwrap_or_default() + self.cfg.interval)
                };
                if let Some(due) = due {
                    let due = paced.map_or(due, |p| due.max(p));
                    if due <= now {
                        return (Some(p), None);
                    }
                    earliest = Some(earliest.map_or(due, |e| e.min(due)));
                }
                break;
            }
        }
        (None, earliest)
    }

    /// Move on when the current phase is over.
    pub(super) fn step(&mut self, now: Instant) {
        match self.phase {
            Phase::Tracing if self.tracing_finished() => self.finish(now),
            Phase::Draining if self.drain_until.is_none_or(|d| now >= d) => {
                self.phase = Phase::Done;
            }
            _ => {}
        }
    }

    pub(super) fn tracing_finished(&self) -> bool {
        if self.started.is_none() {
            return false;
        }
        if self.all_silent_to_max() {
            return true;
        }
        let limit = self.limit();
        if self.end.is_none() && !self.gap_reached() {
            // Still going up: done only when every TTL to the maximum is settled.
            return self.slots.iter().all(|s| s.resolved());
        }
        self.slots
            .iter()
            .filter(|s| s.ttl <= limit)
            .all(|s| s.resolved())
    }

    /// No more probes: in-session, close; then answer stragglers for a moment.
    pub(super) fn finish(&mut self, now: Instant) {
        if self.finished_at.is_none() {
            self.finished_at = Some(now);
        }
        match self.phase {
            Phase::Handshake | Phase::Tracing if self.conn.is_some() => {
                let conn = self.conn.as_mut().map(|c| {
                    c.close(now);
                    c.state()
                });
                if conn == Some(State::Closed) {
                    self.drain(now, Duration::ZERO);
                } else {
                    self.phase = Phase::Closing;
                    self.close_deadline = Some(now + self.cfg.close_timeout);
                }
            }
            Phase::Handshake | Phase::Tracing => {
                // Probes beyond the end may still bring SYN-ACKs: stay to reset them.
                let stragglers = self.slots.iter().any(|s| s.outstanding());
                let wait = if stragglers {
                    (self.max_rtt * 2).clamp(Duration::from_millis(2), Duration::from_millis(200))
                } else {
                    Duration::ZERO
                };
                self.drain(now, wait.min(self.cfg.timeout));
            }
            Phase::Closing | Phase::Draining | Phase::Done => {}
        }
    }

    pub(super) fn drain(&mut self, now: Instant, wait: Duration) {
        self.phase = Phase::Draining;
        self.drain_until = Some(now + wait);
        self.step(now);
    }
}
