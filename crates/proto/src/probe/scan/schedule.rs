//! What a scan sends and when, decided in virtual time: the permuted walk over (address,
//! port) pairs, the rate, the retry rounds, the wait for replies, and the deduplication
//! of answers. The I/O layer (`tcpshake_io::scan`) only builds, batches and sends what
//! [`Schedule::poll`] asks for, and hands back what the taps matched.
//!
//! ```text
//!   Sending(round 0) ──end of walk──► Between(last send + wait) ──► Sending(round 1) …
//!          │ every pair answered, or no round left                          │
//!          └──────────────► Draining(last send + wait) ──► Done ◄────────────┘
//!   Ctrl-C (stop) in Sending or Between ──► Draining: it stops the sending, not the
//!   listening for what is on its way.
//! ```
//!
//! Rules:
//! - The rate is a token bucket: tokens arrive at `rate` per second up to a 5 ms burst; each
//!   packet takes one (RFC 2697's idea with one rate). A retry's RST and SYN go together on
//!   one token, as nmap counts a probe.
//! - A round > 0 sends only to pairs that have not answered, and only after the previous
//!   round's last SYN had its full `--wait`; when every pair has answered there is no next
//!   round.
//! - Before a retry's SYN goes a RST at the previous attempt's cookie + 1: a target whose
//!   SYN-ACK was lost sits in SYN-RECEIVED with rcv_nxt = that cookie + 1 and would answer
//!   the new SYN (same 4-tuple, another sequence number) with a rate-limited ACK only. The
//!   RST, in its window, removes the half-open connection (RFC 9293 §3.10.7.4); where no such
//!   state exists it is silently dropped (§3.10.7.1).
//! - An answer is counted once per pair, whatever else arrives for it later (duplicates
//!   are counted as such).

use super::permute::{Permutation, Shard};
use super::targets::TargetSet;
use super::{Reply, ScanTotals};
use crate::probe::record::{PortState, ScanRecord};
use crate::time::Instant;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What to scan and how; validated by the command line.
#[derive(Clone, Debug)]
pub struct ScanPlan {
    pub targets: TargetSet,
    pub ports: Vec<u16>,
    /// Keys the permutation: the same seed gives the same order (needed by shards).
    pub seed: u64,
    pub shard: Shard,
    /// Packets per second (SYNs, retries included).
    pub rate: u64,
    /// Extra SYNs for ports that stayed silent.
    pub retries: u8,
    /// After the last SYN (and before each retry round): how long to wait for replies.
    pub wait: Duration,
    /// Use this source port instead of a kernel-chosen one.
    pub source_port: Option<u16>,
}

impl ScanPlan {
    /// (address, port) pairs this shard covers, excluded addresses included.
    pub fn planned(&self) -> u64 {
        self.shard.len(self.targets.len() * self.ports.len() as u64)
    }
}

/// Progress as the sender sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub totals: ScanTotals,
    /// Positions of the permutation walked in the current round.
    pub done: u64,
    pub planned: u64,
    pub round: u8,
}

/// A token bucket: `rate` tokens a second, at most `burst` banked.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u64, now: Instant) -> TokenBucket {
        let rate = rate.max(1) as f64;
        TokenBucket {
            rate,
            // 5 ms worth: enough to ride out the scheduler, small enough to stay smooth.
            burst: (rate / 200.0).max(1.0),
            tokens: 1.0,
            last: now,
        }
    }

    /// Whether a token is there at `now`; if not, how long until one is.
    pub fn ready(&mut self, now: Instant) -> Result<(), Duration> {
        let dt = now.saturating_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            // Rounded up to a whole ns, so the token is surely there then.
            let wait = ((1.0 - self.tokens) / self.rate * 1e9).ceil();
            Err(Duration::from_nanos(wait as u64))
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.ready(now)?;
        self.tokens -= 1.0;
        Ok(())
    }
}

/// One SYN to send (after a RST, for a retry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendSyn {
    pub remote: SocketAddr,
    /// 0 for the first SYN to this pair, 1 for the first retry…
    pub attempt: u8,
    /// Send a RST at attempt − 1's cookie + 1 first (a retry; see the module doc).
    pub reset_previous: bool,
}

/// What the driver does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Send(SendSyn),
    /// Send what is batched, take answers, and call `poll` again at this time (or sooner).
    Wait(Instant),
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Sending,
    /// The wait after a round, before round `next`.
    Between {
        until: Instant,
        next: u8,
    },
    Draining {
        until: Instant,
    },
    Done,
}

/// The scan's sending policy. See the module doc.
#[derive(Debug)]
pub struct Schedule<'p> {
    plan: &'p ScanPlan,
    /// Which families have a sender (an address we can send from).
    families: [bool; 2],
    perm: Permutation,
    /// (address, port) pairs in all shards.
    pairs: u64,
    bucket: TokenBucket,
    phase: Phase,
    round: u8,
    /// Where this round's walk over the shard's positions stands.
    next_position: u64,
    answered: HashSet<(IpAddr, u16)>,
    totals: ScanTotals,
    /// First-round positions walked: each sent or skipped as excluded.
    walked: u64,
    done_in_round: u64,
    started: Instant,
    last_send: Instant,
    round_first: Option<Instant>,
    round_last: Option<Instant>,
    send_time: Duration,
    interrupted: bool,
}

impl<'p> Schedule<'p> {
    pub fn new(plan: &'p ScanPlan, families: [bool; 2], now: Instant) -> Schedule<'p> {
        let pairs = plan.targets.len() * plan.ports.len() as u64;
        Schedule {
            plan,
            families,
            perm: Permutation::new(pairs, plan.seed),
            pairs,
            bucket: TokenBucket::new(plan.rate, now),
            phase: Phase::Sending,
            round: 0,
            next_position: plan.shard.index - 1,
            answered: HashSet::new(),
            totals: ScanTotals::default(),
            walked: 0,
            done_in_round: 0,
            started: now,
            last_send: now,
            round_first: None,
            round_last: None,
            send_time: Duration::ZERO,
            interrupted: false,
        }
    }

    // --- getters ---

    pub fn totals(&self) -> ScanTotals {
        self.totals
    }

    pub fn progress(&self) -> Progress {
        Progress {
            totals: self.totals,
            done: self.done_in_round,
            planned: self.plan.planned(),
            round: self.round,
        }
    }

    /// Positions of this shard the first round got through (each sent, or skipped as
    /// excluded): the shard's length unless interrupted. With the plan it says which pairs
    /// were sent (`results::Coverage`).
    pub fn walked(&self) -> u64 {
        self.walked
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Each round's first SYN to its last, summed.
    pub fn send_time(&self) -> Duration {
        self.send_time
    }

    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    // --- inputs ---

    /// `n` packets left this host (SYNs and RSTs); the last of them at `now`, which is
    /// when the wait for replies to them starts.
    pub fn sent(&mut self, n: u64, now: Instant) {
        self.totals.sent += n;
        if n > 0 {
            self.last_send = self.last_send.max(now);
        }
    }

    /// Replies to our port that matched no cookie (counted by the receiver).
    pub fn set_unmatched(&mut self, n: u64) {
        self.totals.unmatched = n;
    }

    /// An answer the receiver matched, at `at` (its kernel timestamp), `rtt` after its SYN.
    /// The record to report, or `None` for a pair already answered.
    pub fn answer(
        &mut self,
        reply: &Reply,
        at: Instant,
        rtt: Option<Duration>,
    ) -> Option<ScanRecord> {
        let key = (reply.remote.ip(), reply.remote.port());
        if !self.answered.insert(key) {
            self.totals.duplicates += 1;
            return None;
        }
        match reply.state {
            PortState::Open => self.totals.open += 1,
            PortState::Closed => self.totals.closed += 1,
            PortState::Filtered => self.totals.filtered_icmp += 1,
            // A scan's reply is never "interrupted": that is a probe's state.
            PortState::Interrupted => {}
        }
        Some(ScanRecord {
            addr: key.0,
            port: key.1,
            state: reply.state,
            reason: reply.reason,
            reply_ttl: reply.ttl,
            rtt_ns: rtt.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            t_ns: at.as_nanos(),
            complete: None,
        })
    }

    // --- outputs ---

    /// What to do at `now`; `stop`: the user asked to stop (Ctrl-C).
    #[must_use]
    pub fn poll(&mut self, now: Instant, stop: bool) -> Step {
        // Bounded: each pass changes the phase or moves the walk on, and the walk is
        // bounded by the shard's positions.
        loop {
            match self.phase {
                Phase::Done => return Step::Done,
                Phase::Draining { until } => {
                    if now >= until {
                        self.phase = Phase::Done;
                        return Step::Done;
                    }
                    return Step::Wait(until);
                }
                Phase::Between { until, next } => {
                    if stop {
                        self.interrupt(until);
                    } else if now < until {
                        return Step::Wait(until);
                    } else if self.all_answered() {
                        self.phase = Phase::Draining { until };
                    } else {
                        self.round = next;
                        self.next_position = self.plan.shard.index - 1;
                        self.done_in_round = 0;
                        self.phase = Phase::Sending;
                    }
                }
                Phase::Sending => {
                    if stop {
                        self.end_round(now);
                        self.interrupt(self.last_send + self.plan.wait);
                        continue;
                    }
                    if let Err(wait) = self.bucket.ready(now) {
                        return Step::Wait(now + wait);
                    }
                    match self.next_pair() {
                        Some(remote) => {
                            let _ = self.bucket.take(now);
                            if self.round == 0 {
                                self.totals.scanned += 1;
                            }
                            self.round_first.get_or_insert(now);
                            self.round_last = Some(now);
                            return Step::Send(SendSyn {
                                remote,
                                attempt: self.round,
                                reset_previous: self.round > 0,
                            });
                        }
                        None => {
                            self.end_round(now);
                            let until = self.last_send + self.plan.wait;
                            self.phase = if self.round < self.plan.retries && !self.all_answered() {
                                Phase::Between {
                                    until,
                                    next: self.round + 1,
                                }
                            } else {
                                Phase::Draining { until }
                            };
                        }
                    }
                }
            }
        }
    }

    // --- the policy's parts ---

    /// The next pair of this round's walk that is to get a SYN; `None` at the walk's end.
    fn next_pair(&mut self) -> Option<SocketAddr> {
        let n_ports = self.plan.ports.len() as u64;
        let step = self.plan.shard.count;
        // Bounded by the shard's positions.
        while self.next_position < self.pairs {
            let i = self.next_position;
            self.next_position += step;
            self.done_in_round += 1;
            if self.round == 0 {
                self.walked += 1;
            }
            let v = self.perm.at(i);
            let Some(addr) = self.plan.targets.get(v / n_ports) else {
                continue; // excluded
            };
            let port = self.plan.ports[(v % n_ports) as usize];
            if self.round > 0 && self.answered.contains(&(addr, port)) {
                continue;
            }
            if !self.families[usize::from(addr.is_ipv6())] {
                continue; // no route for this family
            }
            return Some(SocketAddr::new(addr, port));
        }
        None
    }

    fn all_answered(&self) -> bool {
        self.answered.len() as u64 >= self.totals.scanned
    }

    fn end_round(&mut self, now: Instant) {
        if let (Some(a), Some(b)) = (self.round_first.take(), self.round_last.take()) {
            let last = now.max(b);
            self.send_time += last.saturating_since(a);
        }
    }

    fn interrupt(&mut self, drain_until: Instant) {
        self.interrupted = true;
        self.phase = Phase::Draining { until: drain_until };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::record::Reason;
    use crate::probe::scan::targets::{self, TargetSpec};
    use crate::wire::SeqNumber;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn at_us(us: u64) -> Instant {
        Instant::from_nanos(T0 + us * 1000)
    }

    fn plan(spec: &str, ports: &[u16], rate: u64, retries: u8, shard: Shard) -> ScanPlan {
        let TargetSpec::Addrs(s) = targets::parse(spec).unwrap() else {
            panic!()
        };
        ScanPlan {
            targets: TargetSet::new(vec![s], vec![]).unwrap(),
            ports: ports.to_vec(),
            seed: 7,
            shard,
            rate,
            retries,
            wait: Duration::from_millis(100),
            source_port: None,
        }
    }

    fn reply(remote: SocketAddr, state: PortState) -> Reply {
        Reply {
            remote,
            state,
            reason: if state == PortState::Open {
                Reason::SynAck
            } else {
                Reason::Reset
            },
            ttl: 64,
            syn_seq: SeqNumber(0),
            attempt: 0,
            rst_seq: None,
        }
    }

    /// Runs the schedule in virtual time, jumping to each Wait, sending at once; `answers`
    /// decides which sends get an answer (1 µs later).
    fn run(
        s: &mut Schedule<'_>,
        mut answers: impl FnMut(&SendSyn) -> Option<PortState>,
        stop_at_us: Option<u64>,
    ) -> (Vec<(u64, SendSyn)>, u64) {
        let mut now = 0u64;
        let mut sent = Vec::new();
        for _ in 0..1_000_000 {
            let stop = stop_at_us.is_some_and(|t| now >= t);
            match s.poll(at_us(now), stop) {
                Step::Send(p) => {
                    s.sent(1 + u64::from(p.reset_previous), at_us(now));
                    if let Some(state) = answers(&p) {
                        let _ = s.answer(&reply(p.remote, state), at_us(now + 1), None);
                    }
                    sent.push((now, p));
                }
                Step::Wait(t) => {
                    let t = (t.as_nanos() - T0).div_ceil(1000);
                    assert!(t >= now, "a wait goes forward");
                    now = t.max(now + 1);
                }
                Step::Done => return (sent, now),
            }
        }
        panic!("the schedule never ended");
    }

    #[test]
    fn every_pair_once_in_the_first_round_then_retries_only_the_silent() {
        let p = plan("198.18.0.0/30", &[22, 80], 1_000_000, 2, Shard::WHOLE);
        let mut s = Schedule::new(&p, [true, false], at_us(0));
        let open: SocketAddr = "198.18.0.1:80".parse().unwrap();
        let (sent, _) = run(
            &mut s,
            |p| {
                if p.remote.port() == 22 {
                    Some(PortState::Closed)
                } else {
                    (p.remote == open && p.attempt == 1).then_some(PortState::Open)
                }
            },
            None,
        );
        let first: Vec<_> = sent.iter().filter(|(_, p)| p.attempt == 0).collect();
        assert_eq!(first.len(), 8, "4 addresses × 2 ports");
        assert!(first.iter().all(|(_, p)| !p.reset_previous));
        // Round 1: the 4 silent port-80 pairs, each after a RST; round 2: the 3 still silent.
        let r1: Vec<_> = sent.iter().filter(|(_, p)| p.attempt == 1).collect();
        let r2: Vec<_> = sent.iter().filter(|(_, p)| p.attempt == 2).collect();
        assert_eq!((r1.len(), r2.len()), (4, 3));
        assert!(
            r1.iter()
                .chain(&r2)
                .all(|(_, p)| p.reset_previous && p.remote.port() == 80)
        );
        assert!(!r2.iter().any(|(_, p)| p.remote == open));
        // Each round starts a full --wait after the previous round's last SYN.
        let last0 = first.iter().map(|(t, _)| *t).max().unwrap();
        let first1 = r1.iter().map(|(t, _)| *t).min().unwrap();
        assert!(first1 >= last0 + 100_000, "{last0} {first1}");
        let t = s.totals();
        assert_eq!((t.scanned, t.closed, t.open), (8, 4, 1));
        assert_eq!(t.sent, 8 + 2 * 4 + 2 * 3);
    }

    #[test]
    fn no_retry_round_when_everything_answered() {
        let p = plan("198.18.0.0/30", &[22], 1_000_000, 3, Shard::WHOLE);
        let mut s = Schedule::new(&p, [true, false], at_us(0));
        let (sent, end) = run(&mut s, |_| Some(PortState::Closed), None);
        assert_eq!(sent.len(), 4);
        // The drain: one --wait after the last SYN, no more.
        assert!((100_000..101_000).contains(&end), "{end}");
    }

    #[test]
    fn the_rate_is_held() {
        let p = plan("198.18.0.0/24", &[80], 10_000, 0, Shard::WHOLE);
        let mut s = Schedule::new(&p, [true, false], at_us(0));
        let (sent, _) = run(&mut s, |_| None, None);
        assert_eq!(sent.len(), 256);
        // 10 000 pps: 256 SYNs take ~25.5 ms, less the 50-token burst (5 ms) at most.
        let span = sent.last().unwrap().0 - sent[0].0;
        assert!((20_000..=25_600).contains(&span), "{span} µs");
    }

    #[test]
    fn stop_ends_the_sending_but_not_the_drain() {
        let p = plan("198.18.0.0/24", &[80], 1_000, 2, Shard::WHOLE);
        let mut s = Schedule::new(&p, [true, false], at_us(0));
        let (sent, end) = run(&mut s, |_| None, Some(50_000));
        assert!(s.interrupted());
        let last = sent.last().unwrap().0;
        assert!(last < 50_000, "no SYN after the stop");
        assert!(end >= last + 100_000, "the drain still runs: {last} {end}");
        assert_eq!(s.walked(), sent.len() as u64);
        assert!(sent.iter().all(|(_, p)| p.attempt == 0));
    }

    #[test]
    fn shards_walk_their_own_positions_and_skip_unsendable_families() {
        let p = plan(
            "198.18.0.0/29",
            &[1, 2, 3],
            1_000_000,
            0,
            Shard { index: 2, count: 3 },
        );
        let mut s = Schedule::new(&p, [true, false], at_us(0));
        let (sent, _) = run(&mut s, |_| None, None);
        assert_eq!(sent.len() as u64, p.planned());
        assert_eq!(s.walked(), p.planned());
        let p6 = plan("fd00::/126", &[80], 1_000_000, 0, Shard::WHOLE);
        let mut s = Schedule::new(&p6, [true, false], at_us(0));
        let (sent, _) = run(&mut s, |_| None, None);
        assert!(sent.is_empty(), "no IPv6 sender: nothing to send");
        assert_eq!(s.walked(), 4, "but the walk went through");
    }

    #[test]
    fn answers_are_counted_once() {
        let p = plan("198.18.0.1", &[80], 1_000, 0, Shard::WHOLE);
        let mut s = Schedule::new(&p, [true, false], at_us(0));
        let r = reply("198.18.0.1:80".parse().unwrap(), PortState::Open);
        assert!(
            s.answer(&r, at_us(5), Some(Duration::from_micros(4)))
                .is_some()
        );
        assert!(s.answer(&r, at_us(6), None).is_none());
        let t = s.totals();
        assert_eq!((t.open, t.duplicates), (1, 1));
    }

    #[test]
    fn the_bucket_banks_at_most_its_burst() {
        let mut b = TokenBucket::new(1_000, at_us(0));
        assert!(b.take(at_us(0)).is_ok());
        assert_eq!(b.take(at_us(0)), Err(Duration::from_millis(1)));
        // A long idle time banks 5 ms worth (5 tokens), not more.
        let t = at_us(10_000_000);
        for _ in 0..5 {
            assert!(b.take(t).is_ok());
        }
        assert!(b.take(t).is_err());
    }
}
