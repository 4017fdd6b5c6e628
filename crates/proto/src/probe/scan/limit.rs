//! Does the path limit its answers? A host or middlebox that rate-limits its RSTs or ICMP
//! errors, or a policer, passes answers at a rate of its own whatever we send: every SYN
//! beyond it loses its answer, and a fast scan reads the ports behind it as filtered.
//!
//! Each round's SYNs and first answers are counted here, and the evidence read from them:
//! - a round's *pass rate* is its first answers over its SYNs' span (first SYN to last):
//!   what the path let through while the round was sending, an average that a limiter
//!   passing its allowance in bursts cannot push above its own rate for long;
//! - a limit passes the same rate round after round, and less than the round's SYN rate;
//!   random loss does not — each round's answers are a share of its SYNs, and on a host
//!   whose silent ports are mostly filtered the share falls round by round (fewer of the
//!   ports still silent can answer at all). So round r says "limited" when its pass rate
//!   is at most half its SYN rate and within a quarter of round r − 1's;
//! - a round sent slower to a limit answers a larger share of its SYNs than the round
//!   before it; behind random loss the share stays where it was.
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

    /// First answers a second over the round's SYN span, from [`MIN_ANSWERS`] on.
    pub fn pass_rate(&self, round: u8) -> Option<f64> {
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

    /// The rate the path passes answers at, when round `round` (a retry) and the one
    /// before it say it limits them: see the module doc.
    pub fn limit(&self, round: u8) -> Option<f64> {
        let before = self.pass_rate(round.checked_sub(1)?)?;
        let now = self.pass_rate(round)?;
        let under = now * 2.0 <= self.syn_rate(round)?;
        let steady = (now - before).abs() <= before / 4.0;
        (under && steady).then_some(now)
    }

    /// [`Rounds::limit`] for the summary to name: only from a round of at least
    /// [`NAMED_SPAN`].
    pub fn named_limit(&self, round: u8) -> Option<u64> {
        let long = self.span(round)? >= NAMED_SPAN;
        self.limit(round).filter(|_| long).map(|r| r.round() as u64)
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
        // 100 000 SYNs a second, 0.2 s each round; 1 000 answers in each: 5 000 a second.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 20_000, 10, 1_000);
        round(&mut r, 1, 300_000, 20_000, 10, 980);
        assert_eq!(r.limit(0), None, "round 0 has no round before it");
        let l = r.limit(1).unwrap();
        assert!((4_850.0..=5_000.0).contains(&l), "{l}");
        // Too short a round to name it.
        assert_eq!(r.named_limit(1), None);
        // Random loss on a mostly filtered host: round 1 answers a fifth of round 0's rate.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 20_000, 10, 1_000);
        round(&mut r, 1, 300_000, 19_000, 10, 200);
        assert_eq!(r.limit(1), None);
        // Answers keeping pace with the SYNs (all ports closed, random loss): no limit.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 1_000, 10, 800);
        round(&mut r, 1, 300_000, 200, 10, 160);
        assert_eq!(r.limit(1), None);
        // Too few answers to read.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 1_000, 10, 9);
        round(&mut r, 1, 300_000, 991, 10, 9);
        assert_eq!((r.pass_rate(0), r.limit(1)), (None, None));
    }

    #[test]
    fn a_limit_is_named_from_a_round_of_a_second_or_more() {
        // 2 000 SYNs a second for 2 s each round, 200 answers a second.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 4_000, 500, 400);
        round(&mut r, 1, 3_000_000, 3_600, 500, 360);
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
