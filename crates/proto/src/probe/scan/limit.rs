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
//!   limiters the first reading gets wrong; low for one that banks little (its refill
//!   is lost while we wait), and over many late rounds of a few answers each random
//!   loss reads steady in it — so it is used only where the limiter is known to bank:
//!   a round a second after a silent one got answers (the schedule's allowance round),
//!   or two rounds slowed to the first reading still passed the same rate, at most half
//!   their SYNs ([`Rounds::steady_while_slowed`]).
//!
//! A reading says "limited" at round r when it passed at most half round r's SYN rate
//! and within a quarter of what it read before (the round before; the stretch before):
//! a limit passes the same rate whatever is sent; random loss does not — each round's
//! answers are a share of its SYNs, and on a host whose silent ports are mostly filtered
//! the share falls round by round (fewer of the ports still silent can answer at all).
//! A round sent slower to a limit answers a larger share of its SYNs than the round
//! before it; behind random loss the share stays where it was.
//!
//! Each round also keeps, per answering address and kind of answer (a limiter counts one
//! kind from one host), when the last SYN it answered left: a round that outran a
//! limiter's allowance has that source's answers stop part-way through its SYNs
//! ([`Rounds::stopped_early`]); closed ports among filtered ones, in the scan's random
//! order, answer to the end, and so do open ports and other hosts beside a limiter.
//!
//! Pure: counts in, rates out; the schedule decides what to do with them.

use crate::time::Instant;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// First answers a round needs before its pass rate is read.
pub const MIN_ANSWERS: u64 = 10;
/// The shortest round whose pass rate the summary names as a `--rate` to use: a limiter
/// that passes a second's allowance at once (FreeBSD's, 200 RSTs a second by default)
/// reads high over a shorter one.
pub const NAMED_SPAN: Duration = Duration::from_secs(1);

/// What kind of answer: a limiter counts one kind (FreeBSD limits RSTs, not SYN-ACKs; a
/// router limits its ICMP errors), so each is looked at apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    SynAck,
    Rst,
    Icmp,
}

/// Answering (address, kind)s a round keeps apart for [`Rounds::stopped_early`]: past
/// this a sweep's later addresses are not looked at one by one (bounded memory: rounds ×
/// this).
const SOURCES_MAX: usize = 4096;

/// One source's first answers in a round: how many, and when the last SYN it answered
/// left.
#[derive(Clone, Copy, Debug, Default)]
struct Source {
    answers: u64,
    last_answered: Option<Instant>,
}

/// One round's SYNs and the first answers to them.
#[derive(Clone, Debug, Default)]
struct Round {
    syns: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    answers: u64,
    /// By answering address and kind (at most [`SOURCES_MAX`]).
    sources: HashMap<(IpAddr, Kind), Source>,
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

    /// A pair of address `addr` got its first answer, of kind `kind`, to its SYN of round
    /// `attempt`, which left at `syn_at` (the answer's time less its RTT) when known.
    pub fn answer(&mut self, attempt: u8, addr: IpAddr, kind: Kind, syn_at: Option<Instant>) {
        let r = self.at(attempt);
        r.answers += 1;
        let room = r.sources.len() < SOURCES_MAX;
        let source = match r.sources.get_mut(&(addr, kind)) {
            Some(s) => Some(s),
            None if room => Some(r.sources.entry((addr, kind)).or_default()),
            None => None,
        };
        if let Some(src) = source {
            src.answers += 1;
            if let Some(t) = syn_at {
                src.last_answered = Some(src.last_answered.map_or(t, |l| l.max(t)));
            }
        }
        match r.from {
            None => r.from = Some(addr),
            Some(a) if a != addr => r.several = true,
            Some(_) => {}
        }
    }

    /// Whether some source's answers in `round` stopped part-way through the round's SYNs:
    /// an (address, kind) with [`MIN_ANSWERS`] or more, none to a tail of the span longer
    /// than k answers spread over it leave empty but once in a hundred rounds (1 −
    /// 0.01^(1/k) of it: 37 % at 10 answers, 9 % at 50, 2.3 % at 200; with m such sources,
    /// once in a hundred for any of them: 0.01/m). A host's closed ports, in the scan's
    /// random order, answer to the end; a limiter's spent allowance leaves the tail
    /// silent — of its kind, from its host: open ports' SYN-ACKs and other hosts go on.
    pub fn stopped_early(&self, round: u8) -> bool {
        let (Some(r), Some((first, last))) = (self.get(round), self.sent(round)) else {
            return false;
        };
        let span = last.saturating_since(first).as_secs_f64();
        let read: Vec<&Source> = r
            .sources
            .values()
            .filter(|s| s.answers >= MIN_ANSWERS)
            .collect();
        let chance = 0.01 / read.len().max(1) as f64;
        span > 0.0
            && read.iter().any(|s| {
                s.last_answered.is_some_and(|t| {
                    let tail = last.saturating_since(t).as_secs_f64();
                    tail > span * (1.0 - chance.powf(1.0 / s.answers as f64))
                })
            })
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
        for mut first in (0..=end).rev() {
            answers += self.answers(first);
            if answers < MIN_ANSWERS {
                continue;
            }
            // And back over the rounds before it that got nothing: a limiter's allowance
            // grew from the last round that spent some (a window's is renewed a second
            // after it, not after the silent round 50 ms later: ~5 % high otherwise).
            while first > 0 && self.answers(first - 1) == 0 {
                first -= 1;
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

    /// The rate to slow to first, after `round`: over time once the limiter is known to
    /// bank its allowance (`banks`: an allowance round got answers), else while sending.
    pub fn first_limit(&self, round: u8, banks: bool) -> Option<f64> {
        if banks {
            self.limit(round)
        } else {
            self.limit_while_sending(round)
        }
    }

    /// Rounds `slowed` and `next`, both sent at one slowed rate, each with [`MIN_ANSWERS`]
    /// answers or more, passed the same rate over time (within a quarter, of each other
    /// and of the rounds before the slowdown), at most half `next`'s SYN rate: still
    /// limited — the reading they were slowed to was too high (a limiter that banks its
    /// allowance, read while sending) — at `next`'s rate. A round slowed under the limit
    /// gets every answer it can, and the round after it, the same ports less those, gets
    /// none.
    pub fn steady_while_slowed(&self, slowed: u8, next: u8) -> Option<f64> {
        let a = self.stretch(slowed).filter(|s| s.first == slowed)?;
        let b = self.stretch(next).filter(|s| s.first == next)?;
        // And the rate over time before the slowdown agrees: a limit passes the same
        // whatever is sent. Behind random loss too, two slowed rounds can pass a few
        // answers each at one low rate (a bucket of 200 with half the packets lost: 69 and
        // 55 a second, against ~200 before: slowed again to 50 SYNs a second, 3 → 72 s).
        let before = self.pass_rate(slowed.checked_sub(1)?)?;
        let rate = b.rate();
        let agrees = (rate - before).abs() <= before / 4.0;
        (agrees && self.limited(next, rate, a.rate())).then_some(rate)
    }

    /// The limit for the summary to name (as [`Rounds::first_limit`] reads it): only from
    /// a round (a stretch, over time) of at least [`NAMED_SPAN`].
    pub fn named_limit(&self, round: u8, banks: bool) -> Option<u64> {
        let rate = if banks {
            let (rate, s) = self.limit_stretch(round)?;
            (s.time >= NAMED_SPAN).then_some(rate)?
        } else {
            (self.span(round)? >= NAMED_SPAN).then_some(())?;
            self.limit_while_sending(round)?
        };
        Some(rate.round() as u64)
    }

    /// Round `round`'s first answers a second over its own time: from the last SYN of
    /// the round before it to its own last (any number of answers, none included).
    pub fn rate_over_round(&self, round: u8) -> Option<f64> {
        let (_, last) = self.sent(round)?;
        let (_, before) = self.sent(round.checked_sub(1)?)?;
        let time = last.saturating_since(before).as_secs_f64();
        (time > 0.0).then(|| self.answers(round) as f64 / time)
    }

    /// Round `round`'s SYNs.
    pub fn syns(&self, round: u8) -> u64 {
        self.get(round).map_or(0, |r| r.syns)
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
            r.answer(n, IpAddr::from([198, 18, 0, 7]), Kind::Rst, None);
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
        assert_eq!(r.named_limit(1, true), None);
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
        // Round 2's stretch (rounds 1-2, from round 0's last SYN) passed 200 a second,
        // round 0's burst ~70 000.
        assert_eq!(r.limit(2), None);
        let p = r.pass_rate(2).unwrap();
        assert!((195.0..=205.0).contains(&p), "{p}");
        // Round 4's stretch (3-4) against round 2's: the same rate, far under the SYNs'.
        let l = r.limit(4).unwrap();
        assert!((195.0..=205.0).contains(&l), "{l}");
        assert!(r.named_limit(4, true).is_none_or(|n| n <= 205));
        assert_eq!(r.answers(3), 0);
    }

    /// 1 000 SYNs over 10 ms: a limiter's allowance of 200 answers the first 200, and the
    /// last answered SYN left at a fifth of the span; closed ports spread over the scan's
    /// random order answer to its end.
    #[test]
    fn answers_that_stop_part_way_through_a_round() {
        let addr = IpAddr::from([198, 18, 0, 7]);
        let mut r = Rounds::default();
        for k in 0..1_000 {
            r.syn(0, at_us(k * 10));
        }
        for k in 0..200 {
            r.answer(0, addr, Kind::Rst, Some(at_us(k * 10)));
        }
        assert!(r.stopped_early(0));
        // Every fifth port closed, all of them answered: to the end.
        let mut r = Rounds::default();
        for k in 0..1_000 {
            r.syn(0, at_us(k * 10));
            if k % 5 == 3 {
                r.answer(0, addr, Kind::Rst, Some(at_us(k * 10)));
            }
        }
        assert!(!r.stopped_early(0));
        // The same allowance spent, and an open port's SYN-ACKs (not limited) to the end:
        // the RSTs, looked at apart, still stopped.
        let mut r = Rounds::default();
        for k in 0..1_000 {
            r.syn(0, at_us(k * 10));
            if k % 10 == 0 {
                r.answer(0, addr, Kind::SynAck, Some(at_us(k * 10)));
            }
        }
        for k in 0..200 {
            r.answer(0, addr, Kind::Rst, Some(at_us(k * 10)));
        }
        assert!(r.stopped_early(0));
        // Too few answers to tell; no RTT to place them.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 1_000, 10, 200);
        assert!(!r.stopped_early(0));
        for k in 0..9 {
            r.answer(1, addr, Kind::Rst, Some(at_us(k)));
        }
        assert!(!r.stopped_early(1));
    }

    /// Two rounds slowed to 1 400 SYNs a second behind 200 answers a second: each passed
    /// ~200 over time — still limited. Slowed under a limit instead, the second round
    /// gets nothing (the first got every answer there was).
    #[test]
    fn slowed_rounds_that_still_pass_one_rate_are_limited() {
        // Rounds 1 and 2 (800 SYNs in 8 ms, 58 ms apart) got 12 each: ~200 a second over
        // time before the slowdown.
        let slowed = |before: u64, answers3: u64, answers4: u64| {
            let mut r = Rounds::default();
            round(&mut r, 1, 0, 800, 10, before);
            round(&mut r, 2, 58_000, 800, 10, before);
            round(&mut r, 3, 120_000, 800, 714, answers3);
            round(&mut r, 4, 740_000, 680, 714, answers4);
            r
        };
        let l = slowed(12, 120, 104).steady_while_slowed(3, 4).unwrap();
        assert!((180.0..=215.0).contains(&l), "{l}");
        assert_eq!(slowed(12, 240, 0).steady_while_slowed(3, 4), None);
        // Too few answers in the second to read it alone.
        assert_eq!(slowed(12, 120, 9).steady_while_slowed(3, 4), None);
        // The two slowed rounds agree with each other but not with the rate before them
        // (~200 a second then, ~50 now): random loss thinning what is left, not a limit.
        assert_eq!(slowed(12, 30, 26).steady_while_slowed(3, 4), None);
    }

    #[test]
    fn a_limit_is_named_from_a_stretch_of_a_second_or_more() {
        // 2 000 SYNs a second for 2 s each round, 0.1 s between them, 200 answers a second.
        let mut r = Rounds::default();
        round(&mut r, 0, 0, 4_000, 500, 400);
        round(&mut r, 1, 2_100_000, 3_600, 500, 380);
        assert_eq!(r.named_limit(1, true), Some(200));
        // While sending (380 over round 1's 1.8 s), as for a limiter that banks little.
        assert_eq!(r.named_limit(1, false), Some(211));
        assert_eq!(r.sole_answerer(1), Some(IpAddr::from([198, 18, 0, 7])));
        r.answer(1, IpAddr::from([198, 18, 0, 8]), Kind::Rst, None);
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
