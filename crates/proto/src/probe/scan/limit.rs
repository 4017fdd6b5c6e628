//! Does the path limit its answers? A host or middlebox that rate-limits its RSTs or ICMP
//! errors, or a policer, passes answers at a rate of its own whatever we send: every SYN
//! beyond it loses its answer, and a fast scan reads the ports behind it as filtered.
//!
//! Each round's SYNs and first answers are counted here, and two readings taken of the
//! rate the path passes answers at — a token bucket's, whatever its burst, lies between
//! them:
//! - *while sending*: a round's first answers over its SYNs' span (first SYN to last).
//!   Right for a limiter that banks little while we wait between rounds (nftables'
//!   `limit rate`, burst 5); high for one that banks a lot, or passes a second's
//!   allowance at once (FreeBSD's and macOS's RST limits): short rounds read its refill
//!   as thousands a second (a host passing 200 RSTs a second read 1 526 over 50 ms
//!   rounds);
//! - *over time*: the first answers of a *stretch* of rounds ending with a round, over
//!   the time from the last SYN of the round before the stretch (the scan's first SYN
//!   for a stretch from round 0) to the stretch's last SYN; a stretch is the fewest
//!   rounds with [`MIN_ANSWERS`] answers, so it reaches back over a round that fell in a
//!   spent window and got nothing. The wait between rounds is counted in: right for the
//!   limiters the first reading gets wrong; low for one that banks little (the wait
//!   counts, its refill is lost).
//!
//! Either says "limited" at round r when it passed at most half round r's SYN rate and
//! within a quarter of what it read before (the round before; the stretch before): a
//! limit passes the same rate whatever is sent; random loss does not — each round's
//! answers are a share of its SYNs, and on a host whose silent ports are mostly filtered
//! the share falls round by round (fewer of the ports still silent can answer at all).
//! The schedule slows to the higher reading that says so ([`Rounds::first_limit`]); a
//! round sent slower to a limit answers a larger share of its SYNs than the round before
//! it (behind random loss the share stays where it was), and one that still passed at
//! most half its SYNs, at the rate read over time before it, was sent at the wrong
//! reading: the schedule reads it again over time ([`Rounds::limit`]).
//!
//! Pure: counts in, rates out; the schedule decides what to do with them.

use crate::time::Instant;
use std::net::IpAddr;
use std::time::Duration;

/// First answers a round needs before its pass rate is read.
pub const MIN_ANSWERS: u64 = 10;
/// The shortest round whose pass rate the summary names as a `--rate` to use: a limiter
/// that passes a second's allowance at once (FreeBSD's, 200 RSTs a second by default)
/// reads high over a shorter one.
pub const NAMED_SPAN: Duration = Duration::from_secs(1);

/// One round's SYNs and the first answers to them.
#[derive(Clone, Copy, Debug, Default)]
struct Round {
    syns: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    answers: u64,
    /// Who the first answers came from: one address, or several (`None` then).
    from: Option<IpAddr>,
    several: bool,
}

/// Consecutive rounds, `first` to the one a reading ends with, and their first answers
/// over their time (see [`Rounds::stretch`]).
#[derive(Clone, Copy, Debug)]
struct Stretch {
    first: u8,
    answers: u64,
    time: Duration,
}

impl Stretch {
    fn rate(&self) -> f64 {
        self.answers as f64 / self.time.as_secs_f64()
    }
}

/// Every round's counts, by round number (at most `--retries` + 1 of them).
#[derive(Clone, Debug, Default)]
pub struct Rounds {
    rounds: Vec<Round>,
}

impl Rounds {
    fn at(&mut self, round: u8) -> &mut Round {
        let i = usize::from(round);
        if self.rounds.len() <= i {
            self.rounds.resize(i + 1, Round::default());
        }
        &mut self.rounds[i]
    }

    fn get(&self, round: u8) -> Option<&Round> {
        self.rounds.get(usize::from(round))
    }

    /// A SYN of `round` left at `at`.
    pub fn syn(&mut self, round: u8, at: Instant) {
        let r = self.at(round);
        r.syns += 1;
        r.first.get_or_insert(at);
        r.last = Some(at);
    }

    /// A pair of address `addr` got its first answer, to its SYN of round `attempt`.
    pub fn answer(&mut self, attempt: u8, addr: IpAddr) {
        let r = self.at(attempt);
        r.answers += 1;
        match r.from {
            None => r.from = Some(addr),
            Some(a) if a != addr => r.several = true,
            Some(_) => {}
        }
    }

    /// The one address every first answer to `round` came from (a sweep in which one host
    /// limits its answers: the others answered at once).
    pub fn sole_answerer(&self, round: u8) -> Option<IpAddr> {
        let r = self.get(round)?;
        if r.several { None } else { r.from }
    }

    /// When `round`'s first and last SYN left; none for a round that sent nothing.
    pub fn sent(&self, round: u8) -> Option<(Instant, Instant)> {
        let r = self.get(round)?;
        Some((r.first?, r.last?))
    }

    /// First SYN to last of `round`; none for a round of one SYN.
    fn span(&self, round: u8) -> Option<Duration> {
        let (first, last) = self.sent(round)?;
        let span = last.saturating_since(first);
        (!span.is_zero()).then_some(span)
    }

    /// The stretch of rounds ending with `end`: the fewest rounds back from it whose first
    /// answers reach [`MIN_ANSWERS`]. None while they do not, or when `end` sent nothing.
    fn stretch(&self, end: u8) -> Option<Stretch> {
        let (_, last) = self.sent(end)?;
        let mut answers = 0;
        // Bounded: at most `end` + 1 rounds.
        for first in (0..=end).rev() {
            answers += self.get(first).map_or(0, |r| r.answers);
            if answers < MIN_ANSWERS {
                continue;
            }
            let from = match first.checked_sub(1) {
                Some(before) => self.sent(before)?.1,
                None => self.sent(0)?.0,
            };
            let time = last.saturating_since(from);
            return (!time.is_zero()).then_some(Stretch {
                first,
                answers,
                time,
            });
        }
        None
    }

    /// First answers a second over time, over the stretch of rounds ending with `round`
    /// (module doc).
    pub fn pass_rate(&self, round: u8) -> Option<f64> {
        self.stretch(round).map(|s| s.rate())
    }

    /// First answers a second while `round` was sending, from [`MIN_ANSWERS`] on.
    fn pass_rate_while_sending(&self, round: u8) -> Option<f64> {
        let r = self.get(round)?;
        let span = self.span(round)?;
        (r.answers >= MIN_ANSWERS).then(|| r.answers as f64 / span.as_secs_f64())
    }

    fn syn_rate(&self, round: u8) -> Option<f64> {
        Some(self.get(round)?.syns as f64 / self.span(round)?.as_secs_f64())
    }

    /// The share of the round's SYNs that got a first answer.
    fn share(&self, round: u8) -> Option<f64> {
        let r = self.get(round)?;
        (r.syns > 0).then(|| r.answers as f64 / r.syns as f64)
    }

    /// Whether `rate`, read at `round`, says "limited" against `before` (module doc).
    fn limited(&self, round: u8, rate: f64, before: f64) -> bool {
        let under = self.syn_rate(round).is_some_and(|s| rate * 2.0 <= s);
        under && (rate - before).abs() <= before / 4.0
    }

    /// The rate the path passes answers at over time, when the stretch of rounds ending
    /// with `round` and the stretch before it say it limits them.
    pub fn limit(&self, round: u8) -> Option<f64> {
        self.limit_stretch(round).map(|(rate, _)| rate)
    }

    fn limit_stretch(&self, round: u8) -> Option<(f64, Stretch)> {
        let now = self.stretch(round)?;
        let before = self.stretch(now.first.checked_sub(1)?)?;
        let rate = now.rate();
        self.limited(round, rate, before.rate())
            .then_some((rate, now))
    }

    /// The rate the path passed answers at while rounds `round` − 1 and `round` were
    /// sending, when they say it limits them.
    pub fn limit_while_sending(&self, round: u8) -> Option<f64> {
        let before = self.pass_rate_while_sending(round.checked_sub(1)?)?;
        let rate = self.pass_rate_while_sending(round)?;
        self.limited(round, rate, before).then_some(rate)
    }

    /// The rate to slow to first, after `round`: the reading while sending when it says
    /// "limited" (the higher: a limiter that banks little between rounds is read right
    /// by it, and over time would be read at a fraction), else the reading over time.
    pub fn first_limit(&self, round: u8) -> Option<f64> {
        self.limit_while_sending(round)
            .or_else(|| self.limit(round))
    }

    /// [`Rounds::limit`] for the summary to name: only from a stretch of at least
    /// [`NAMED_SPAN`]. Over time, the lower reading: a `--rate` at it gets every answer.
    pub fn named_limit(&self, round: u8) -> Option<u64> {
        let (rate, s) = self.limit_stretch(round)?;
        (s.time >= NAMED_SPAN).then(|| rate.round() as u64)
    }

    /// Round `round`'s first answers.
    pub fn answers(&self, round: u8) -> u64 {
        self.get(round).map_or(0, |r| r.answers)
    }

    /// Whether `round`, sent slower, answered a larger share of its SYNs (by half again)
    /// than the round before it: the slowdown let answers through that were lost before.
    pub fn slower_helped(&self, round: u8) -> bool {
        let (Some(before), Some(now)) = (self.share(round.saturating_sub(1)), self.share(round))
        else {
            return false;
        };
        round > 0 && now >= before * 1.5 && now > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn at_us(us: u64) -> Instant {
        Instant::from_nanos(T0 + us * 1000)
    }

    /// A round of `syns` SYNs `gap` µs apart from `from`, `answers` of them answered.
    fn round(r: &mut Rounds, n: u8, from: u64, syns: u64, gap: u64, answers: u64) {
        for k in 0..syns {
            r.syn(n, at_us(from + k * gap));
        }
        for _ in 0..answers {
            r.answer(n, IpAddr::from([198, 18, 0, 7]));
        }
    }

    #[test]
    fn a_steady_pass_rate_under_the_syns_is_a_limit() {
        // 100 000 SYNs a second, 0.2 s each round, 0.1 s between rounds; the path passes
        // 5 000 answers a second: 1 000 in round 0, 1 500 in round 1 (its 0.2 s and the
        // 0.1 s before it).
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 20_000, 10, 1_000);
        round(&mut r, 1, 300_000, 20_000, 10, 1_480);
        assert_eq!(r.limit(0), None, "round 0 has no round before it");
        let l = r.limit(1).unwrap();
        assert!((4_850.0..=5_000.0).contains(&l), "{l}");
        // Too short a stretch to name it.
        assert_eq!(r.named_limit(1), None);
        // Random loss on a mostly filtered host: round 1 answers a fifth of round 0's rate.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 20_000, 10, 1_000);
        round(&mut r, 1, 300_000, 19_000, 10, 300);
        assert_eq!(r.limit(1), None);
        // Answers keeping pace with the SYNs (all ports closed, random loss): no limit.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 1_000, 10, 800);
        round(&mut r, 1, 300_000, 200, 10, 160);
        assert_eq!(r.limit(1), None);
        // Too few answers to read.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 1_000, 10, 9);
        round(&mut r, 1, 300_000, 991, 10, 0);
        assert_eq!((r.pass_rate(0), r.limit(1)), (None, None));
    }

    /// Short rounds (1 000 SYNs in 10 ms) 50 ms apart, behind a path that passes 200
    /// answers a second in bursts: what each round gets is what built up since the round
    /// before, 10 or 11. Over the SYNs' span alone that read ~1 000 a second; over the
    /// time since the round before, 200.
    #[test]
    fn the_wait_between_rounds_counts() {
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 1_000, 10, 200);
        round(&mut r, 1, 60_000, 800, 10, 11);
        round(&mut r, 2, 118_000, 790, 10, 12);
        assert_eq!(r.limit(1), None, "round 0 spent the burst");
        let l = r.limit(2).unwrap();
        assert!((190.0..=210.0).contains(&l), "{l}");
    }

    /// A FreeBSD-style window (200 answers at the start of each second, none after):
    /// rounds that fall in a spent window answer nothing; a stretch reaches back over them
    /// to the last answers, and the rate over it is the window's.
    #[test]
    fn stretches_reach_over_rounds_that_got_nothing() {
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 1_000, 3, 200);
        round(&mut r, 1, 53_000, 800, 5, 0);
        round(&mut r, 2, 1_003_000, 800, 5, 200);
        round(&mut r, 3, 1_060_000, 600, 5, 0);
        round(&mut r, 4, 2_006_000, 600, 5, 200);
        // Round 2's stretch (rounds 1-2) passed 210 a second, round 0's burst ~70 000.
        assert_eq!(r.limit(2), None);
        let p = r.pass_rate(2).unwrap();
        assert!((195.0..=215.0).contains(&p), "{p}");
        // Round 4's stretch (3-4) against round 2's: the same rate, far under the SYNs'.
        let l = r.limit(4).unwrap();
        assert!((195.0..=215.0).contains(&l), "{l}");
        assert!(r.named_limit(4).is_none_or(|n| n <= 215));
        assert_eq!(r.answers(3), 0);
    }

    #[test]
    fn a_limit_is_named_from_a_stretch_of_a_second_or_more() {
        // 2 000 SYNs a second for 2 s each round, 0.1 s between them, 200 answers a second.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 4_000, 500, 400);
        round(&mut r, 1, 2_100_000, 3_600, 500, 380);
        assert_eq!(r.named_limit(1), Some(200));
        assert_eq!(r.sole_answerer(1), Some(IpAddr::from([198, 18, 0, 7])));
        r.answer(1, IpAddr::from([198, 18, 0, 8]));
        assert_eq!(r.sole_answerer(1), None);
        assert_eq!(r.sole_answerer(5), None);
    }

    #[test]
    fn a_slowed_round_helped_when_it_answered_a_larger_share() {
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 20_000, 10, 1_000);
        round(&mut r, 1, 300_000, 19_000, 10, 1_000);
        // Behind a limit: sent at it, every closed port left answers.
        round(&mut r, 2, 600_000, 18_000, 222, 4_000);
        assert!(r.slower_helped(2));
        // Behind random loss: the same share as before.
        let mut r = Rounds::default();
        round(&mut r, 1, 300_000, 19_000, 10, 1_000);
        round(&mut r, 2, 600_000, 18_000, 222, 950);
        assert!(!r.slower_helped(2));
        assert!(!r.slower_helped(0));
    }
}
