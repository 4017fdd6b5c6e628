//! A survey's policy, decided in virtual time: which target gets its next probe when, and
//! which source ports a new probe must not use. The I/O layer (`tcpshake_io::survey`)
//! opens the sockets, runs the probes and asks these two.
//!
//! Scheduling ([`Schedule`]):
//! - At most `jobs` probes are in flight. A free place goes first to a target whose next
//!   probe is due (in due order), then to a new target from the caller's feed.
//! - Each target gets `count` probes; the next starts `interval` after the previous one
//!   *started*, and never before it ended: the probes of one target never overlap.
//! - Targets waiting for their next probe are bounded too (`4 × jobs`, at least 16): with an
//!   interval most targets idle between probes, and a few times `jobs` of them keep `jobs`
//!   probes busy without holding the whole list in memory.
//!
//! Port reuse ([`RecentPairs`]): a probe's source port is not used again towards the same
//! server while that server may still hold the earlier connection in TIME-WAIT (RFC 9293
//! §3.6.1): a new SYN would land on it, and RFC 6191's rules for accepting it differ
//! between stacks. The last 65 536 (server, port) pairs are remembered, as 64-bit hashes.
//!
//! A loop pass ([`Pass`]) answers first and keeps its books after. A reply a probe must
//! answer at once — above all a SYN-ACK, whose ACK the server times as our reaction — is
//! read and answered before anything else is done, and never waits behind book-keeping:
//! - Packets are read from a tap a run at a time (what its ring holds filled, or one
//!   `recvmmsg` batch of its queue), and what the probes they touched have to send goes
//!   out before the tap is read again — at once, before the rest of the run, when a
//!   packet was a probe's SYN-ACK ([`Pass::answer_now`]).
//! - In what goes out together, each probe's answer (its first segment: the ACK) goes
//!   ahead of everything else (requests, SYNs, retransmissions), and the answer to a
//!   SYN-ACK ahead of all ([`Pass::send_rank`]): a FIN's ACK sent before it cost it the
//!   server's handling of that FIN, ~20 µs.
//! - Probes that ended are settled (record, port given back) one at a time, and the taps
//!   are read again as soon as the last read is [`Pass::reread_after`] old (20 µs; after
//!   every probe was an empty `recvmmsg` for two probes in five); new probes start
//!   [`Pass::start_group`] at a time, with the taps read after each group's SYNs: over a
//!   veth pair the server answers a SYN inside our `sendmmsg`, so a SYN-ACK waits for the
//!   rest of the train of SYNs sent with it.
//! - With nothing to do, the loop spins (polls without sleeping) for a while after it sent
//!   something, while few probes are in flight ([`Pass::idle`]); otherwise it sleeps until
//!   a packet or a deadline.

use crate::tcp::KnownPathMtu;
use crate::time::Instant;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What to do with a free place in the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Start the next probe of active target `id` now (it counts as in flight).
    Start(usize),
    /// Room for a new target: ask the feed, then [`Schedule::add`] it.
    AskFeed,
    /// Nothing to start now (no room, or nothing due and no new targets wanted).
    Wait,
}

#[derive(Debug)]
struct Active<T> {
    target: T,
    /// Probes still to start, the one in flight included.
    remaining: u32,
}

/// Which target gets the next probe. See the module doc.
#[derive(Debug)]
pub struct Schedule<T> {
    jobs: usize,
    count: u32,
    interval: Duration,
    actives: Vec<Option<Active<T>>>,
    free: Vec<usize>,
    active_count: usize,
    /// (due time, order of scheduling, active id): the order breaks ties first come,
    /// first served.
    due: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    due_seq: u64,
    in_flight: usize,
}

impl<T> Schedule<T> {
    pub fn new(jobs: usize, count: u32, interval: Duration) -> Schedule<T> {
        Schedule {
            jobs: jobs.max(1),
            count: count.max(1),
            interval,
            actives: Vec::new(),
            free: Vec::new(),
            active_count: 0,
            due: BinaryHeap::new(),
            due_seq: 0,
            in_flight: 0,
        }
    }

    /// Targets kept waiting for their next probe at most.
    pub fn max_active(&self) -> usize {
        self.jobs.saturating_mul(4).max(16)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn target(&self, id: usize) -> Option<&T> {
        self.actives.get(id)?.as_ref().map(|a| &a.target)
    }

    /// What a free place is for at `now`; `feed_open`: the feed may still give targets.
    pub fn admit(&mut self, now: Instant, feed_open: bool) -> Admit {
        if self.in_flight >= self.jobs {
            return Admit::Wait;
        }
        if let Some(&Reverse((at, _, id))) = self.due.peek()
            && at <= now
        {
            self.due.pop();
            self.in_flight += 1;
            return Admit::Start(id);
        }
        if feed_open && self.active_count < self.max_active() {
            Admit::AskFeed
        } else {
            Admit::Wait
        }
    }

    /// Whether [`Schedule::admit`] at `now` would start a probe or ask the feed: a loop
    /// that sleeps while this holds leaves a free place empty until some packet or deadline
    /// wakes it (at `-j 1`, the 100 ms sleep cap between every two probes).
    pub fn can_start(&self, now: Instant, feed_open: bool) -> bool {
        if self.in_flight >= self.jobs {
            return false;
        }
        let due = self
            .due
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= now);
        due || (feed_open && self.active_count < self.max_active())
    }

    /// A new target from the feed; its first probe starts now (in flight). Its id.
    pub fn add(&mut self, target: T) -> usize {
        let a = Active {
            target,
            remaining: self.count,
        };
        self.active_count += 1;
        self.in_flight += 1;
        match self.free.pop() {
            Some(i) => {
                self.actives[i] = Some(a);
                i
            }
            None => {
                self.actives.push(Some(a));
                self.actives.len() - 1
            }
        }
    }

    /// The probe of `id` that started at `started` is over at `now` (or never got going):
    /// its target's next probe is due `interval` after `started`, never before `now`; or
    /// the target is done. The target, when it is done (the caller may want it back).
    pub fn over(&mut self, id: usize, started: Instant, now: Instant) -> Option<T> {
        let act = self.actives.get_mut(id)?.as_mut()?;
        self.in_flight = self.in_flight.saturating_sub(1);
        act.remaining = act.remaining.saturating_sub(1);
        if act.remaining == 0 {
            self.free.push(id);
            self.active_count -= 1;
            return self.actives[id].take().map(|a| a.target);
        }
        let next = (started + self.interval).max(now);
        self.due_seq += 1;
        self.due.push(Reverse((next, self.due_seq, id)));
        None
    }

    /// When the next probe falls due, if there is room for it then.
    pub fn next_due(&self) -> Option<Instant> {
        if self.in_flight >= self.jobs {
            return None;
        }
        self.due.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Whether a probe may still start: the feed may give targets (`feed_open`), or a
    /// target has a probe to come after the one in flight, or one is waiting for its
    /// next.
    pub fn more_to_start(&self, feed_open: bool) -> bool {
        feed_open || !self.due.is_empty() || self.actives.iter().flatten().any(|a| a.remaining > 1)
    }

    /// Nothing in flight and nothing left to start (`stopping`: waiting targets are given
    /// up).
    pub fn finished(&self, feed_open: bool, stopping: bool) -> bool {
        self.in_flight == 0 && (stopping || (!feed_open && self.active_count == 0))
    }
}

/// What the loop does when a pass found nothing more to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// Poll the taps again at once: an answer is likely soon, and a sleep would add the
    /// scheduler's wake-up delay to our reaction.
    Spin,
    /// Sleep until a packet or the next deadline.
    Sleep,
}

/// How a survey's loop pass is paced; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass {
    /// Probes started between two reads of the taps.
    pub start_group: usize,
    /// Book-keeping reads the taps again once the last read is this old.
    pub reread_after: Duration,
    /// How long after our last transmit the loop spins rather than sleeps.
    pub spin: Duration,
    /// Spin only with at most this many probes in flight: with more, the loop is busy
    /// anyway, and empty polls would only take the CPU from the work (and, on a small
    /// machine, from a local server).
    pub spin_max_in_flight: usize,
    /// Answer at least once every this many packets read, even while more wait: a ring
    /// that a burst keeps filled would otherwise hold every ACK (of data, of a FIN) and TLS
    /// flight back until it is empty — up to thousands of packets, ~1 µs each.
    pub answer_every: usize,
}

impl Default for Pass {
    fn default() -> Self {
        Pass {
            // The batch a queue-read tap hands in per `recvmmsg`: answers went out that
            // often before taps read rings.
            answer_every: 16,
            start_group: 1,
            reread_after: Duration::from_micros(20),
            spin: Duration::from_millis(3),
            spin_max_in_flight: 8,
        }
    }
}

impl Pass {
    /// Probes to start before the taps are read again (at least one).
    pub fn start_group(&self) -> usize {
        self.start_group.max(1)
    }

    /// Whether the answers queued so far go out before the rest of what a tap holds is
    /// handed in: when nothing more is there (`batch_left`: packets still to hand in), when
    /// `run` packets were read since the last answer and that is [`Pass::answer_every`],
    /// or at once when a packet just ended a probe's wait for its SYN-ACK — the server
    /// times our ACK, and the rest of a run took up to ~1 µs a packet.
    pub fn answer_now(&self, synack: bool, batch_left: bool, run: usize) -> bool {
        synack || !batch_left || run >= self.answer_every.max(1)
    }

    /// The order in which segments queued together go out (lowest first; equals keep the
    /// order they were queued in): over veth the server's kernel handles each segment we
    /// send inside our system call, ~5–20 µs each, so what goes out first waits for no one.
    /// A SYN-ACK's answer first (the server times it), then the first segment of every
    /// other answer (ACKs of data and FINs), then the rest (requests, SYNs, FINs we start,
    /// retransmissions). `answer`: the segment is the first of a probe's answer to packets
    /// that just came; `synack`: they included its SYN-ACK.
    pub fn send_rank(&self, answer: bool, synack: bool) -> u8 {
        match (answer, synack) {
            (true, true) => 0,
            (true, false) => 1,
            (false, _) => 2,
        }
    }

    /// Whether book-keeping at `now` should read the taps again, last read at `last_read`.
    pub fn reread(&self, last_read: Instant, now: Instant) -> bool {
        now >= last_read + self.reread_after
    }

    /// Spin or sleep, at `now`, having last sent at `last_tx`, with `in_flight` probes.
    pub fn idle(&self, now: Instant, last_tx: Instant, in_flight: usize) -> Idle {
        if in_flight > 0 && in_flight <= self.spin_max_in_flight && now < last_tx + self.spin {
            Idle::Spin
        } else {
            Idle::Sleep
        }
    }
}

/// (server, local port) pairs used lately; see the module doc.
#[derive(Debug)]
pub struct RecentPairs {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    cap: usize,
}

impl Default for RecentPairs {
    fn default() -> Self {
        RecentPairs::new(RecentPairs::CAP)
    }
}

impl RecentPairs {
    /// Pairs remembered by default: more than the ports of one address (so a port comes
    /// back to one server only after a whole walk through the range), 8 bytes each.
    pub const CAP: usize = 65_536;

    pub fn new(cap: usize) -> RecentPairs {
        RecentPairs {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Whether `port` was used towards `remote` lately (a hash collision only makes a
    /// free port look used: never the other way round).
    pub fn contains(&self, remote: SocketAddr, port: u16) -> bool {
        self.set.contains(&key(remote, port))
    }

    /// `port` was used towards `remote`; the oldest pair is forgotten past the bound.
    pub fn remember(&mut self, remote: SocketAddr, port: u16) {
        let k = key(remote, port);
        if self.set.insert(k) {
            self.order.push_back(k);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// The path MTUs a survey's probes learned from ICMP errors, by destination (RFC 1191 §5:
/// a host caches them per destination; Linux keeps one in the route for
/// `net.ipv4.route.mtu_expires`, 10 minutes): the next probes to that address start with
/// it ([`crate::tcp::Config::known_path_mtu`]) instead of each meeting the frag-needed and
/// sending again. An entry is used for [`PathMtuCache::EXPIRES`] from when it was learned
/// (RFC 1191 §6.3: try larger after a while); a probe that used it does not renew it, so
/// the next one after that finds the path anew. Bounded: full, it starts over, as the
/// route cache does.
#[derive(Debug, Default)]
pub struct PathMtuCache {
    entries: HashMap<IpAddr, (KnownPathMtu, Instant)>,
}

impl PathMtuCache {
    pub const EXPIRES: Duration = Duration::from_secs(600);
    pub const CAP: usize = 4_096;

    /// What a probe to `addr` starting `now` may take as known.
    pub fn known(&self, addr: IpAddr, now: Instant) -> Option<KnownPathMtu> {
        self.entries
            .get(&addr)
            .filter(|(_, at)| now.saturating_since(*at) < Self::EXPIRES)
            .map(|&(k, _)| k)
    }

    /// A probe to `addr` learned `k` at `now`.
    pub fn learned(&mut self, addr: IpAddr, k: KnownPathMtu, now: Instant) {
        if self.entries.len() >= Self::CAP && !self.entries.contains_key(&addr) {
            self.entries.clear();
        }
        self.entries.insert(addr, (k, now));
    }
}

/// When a probe that starts `now` is given up: at its own `hard_limit` from now, or at the
/// caller's `deadline` when that comes first (the exporter's: the scrape's timeout, from
/// the request). `Deadline::Passed` when the deadline came while the probe waited for a
/// place: it is not started — no SYN for an answer nobody waits for.
pub fn give_up_at(now: Instant, hard_limit: Duration, deadline: Option<Instant>) -> GiveUp {
    match deadline {
        _ if deadline_passed(now, deadline) => GiveUp::Passed,
        Some(d) if d < now + hard_limit => GiveUp::At {
            at: d,
            callers: true,
        },
        _ => GiveUp::At {
            at: now + hard_limit,
            callers: false,
        },
    }
}

/// The caller's deadline has come: a probe not started yet is not started (asked before
/// its port is reserved; [`give_up_at`] says the same).
pub fn deadline_passed(now: Instant, deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| d <= now)
}

/// See [`give_up_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// Give up at `at`; `callers`: it is the caller's deadline, not the probe's own limit.
    At { at: Instant, callers: bool },
    /// The caller's deadline has passed: do not start.
    Passed,
}

fn key(remote: SocketAddr, port: u16) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (remote, port).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A learned path MTU is known to the next probes for 10 minutes from when it was
    /// learned, not renewed by using it; the cache stays bounded.
    #[test]
    fn a_path_mtu_is_known_for_ten_minutes() {
        let t0 = Instant::from_nanos(1_000_000_000);
        let a: IpAddr = "198.18.0.2".parse().unwrap();
        let k = KnownPathMtu {
            mtu: 1300,
            locked: false,
        };
        let mut c = PathMtuCache::default();
        assert_eq!(c.known(a, t0), None);
        c.learned(a, k, t0);
        assert_eq!(c.known(a, t0 + Duration::from_secs(599)), Some(k));
        assert_eq!(c.known(a, t0 + Duration::from_secs(600)), None);
        assert_eq!(c.known("198.18.0.3".parse().unwrap(), t0), None);
        for i in 0..(PathMtuCache::CAP as u32 + 10) {
            c.learned(IpAddr::from(i.to_be_bytes()), k, t0);
        }
        assert!(c.entries.len() <= PathMtuCache::CAP);
    }

    #[test]
    fn a_probe_gives_up_at_its_own_limit_or_the_callers_deadline_whichever_first() {
        let now = Instant::from_nanos(1_000_000_000);
        let limit = Duration::from_secs(10);
        let own = GiveUp::At {
            at: now + limit,
            callers: false,
        };
        assert_eq!(give_up_at(now, limit, None), own);
        let soon = now + Duration::from_millis(1500);
        assert_eq!(
            give_up_at(now, limit, Some(soon)),
            GiveUp::At {
                at: soon,
                callers: true
            }
        );
        assert_eq!(
            give_up_at(now, limit, Some(now + Duration::from_secs(60))),
            own
        );
        // Past, or due now: a queued /probe whose scrape has gone is not started.
        assert_eq!(give_up_at(now, limit, Some(now)), GiveUp::Passed);
        assert_eq!(give_up_at(soon, limit, Some(now)), GiveUp::Passed);
    }

    const T0: u64 = 1_700_000_000_000_000_000;

    fn at_ms(ms: u64) -> Instant {
        Instant::from_nanos(T0 + ms * 1_000_000)
    }

    /// Runs a survey of `n` targets, each probe taking `took` ms, in virtual time; the
    /// (target, start ms) of every probe.
    fn run(jobs: usize, count: u32, interval_ms: u64, n: usize, took: u64) -> Vec<(usize, u64)> {
        let mut s: Schedule<usize> = Schedule::new(jobs, count, Duration::from_millis(interval_ms));
        let mut feed = 0..n;
        let mut feed_open = true;
        let mut running: Vec<(usize, u64)> = Vec::new(); // (id, started)
        let mut starts = Vec::new();
        for now in 0..100_000u64 {
            // End what is over.
            let (over, rest): (Vec<_>, Vec<_>) =
                running.into_iter().partition(|&(_, st)| st + took <= now);
            running = rest;
            for (id, st) in over {
                s.over(id, at_ms(st), at_ms(now));
            }
            loop {
                match s.admit(at_ms(now), feed_open) {
                    Admit::Start(id) => {
                        starts.push((*s.target(id).unwrap(), now));
                        running.push((id, now));
                    }
                    Admit::AskFeed => match feed.next() {
                        Some(t) => {
                            let id = s.add(t);
                            starts.push((t, now));
                            running.push((id, now));
                        }
                        None => feed_open = false,
                    },
                    Admit::Wait => break,
                }
            }
            assert!(s.in_flight() <= jobs);
            if s.finished(feed_open, false) {
                return starts;
            }
        }
        panic!("the survey never ended");
    }

    #[test]
    fn every_target_gets_count_probes_never_overlapping_and_interval_apart() {
        let starts = run(4, 3, 100, 10, 30);
        assert_eq!(starts.len(), 30);
        for t in 0..10 {
            let mine: Vec<u64> = starts.iter().filter(|s| s.0 == t).map(|s| s.1).collect();
            assert_eq!(mine.len(), 3, "target {t}");
            for w in mine.windows(2) {
                assert!(w[1] >= w[0] + 100, "target {t}: {mine:?}");
            }
        }
    }

    #[test]
    fn a_probe_longer_than_the_interval_delays_the_next_not_overlaps() {
        let starts = run(1, 3, 10, 1, 50);
        let times: Vec<u64> = starts.iter().map(|s| s.1).collect();
        assert_eq!(times, [0, 50, 100]);
    }

    #[test]
    fn due_targets_come_before_new_ones_and_waiting_targets_are_bounded() {
        let mut s: Schedule<u32> = Schedule::new(1, 2, Duration::ZERO);
        assert_eq!(s.max_active(), 16);
        assert_eq!(s.admit(at_ms(0), true), Admit::AskFeed);
        let a = s.add(7);
        assert_eq!(s.admit(at_ms(0), true), Admit::Wait, "jobs = 1: no room");
        assert!(s.over(a, at_ms(0), at_ms(1)).is_none());
        assert_eq!(s.admit(at_ms(1), true), Admit::Start(a), "due first");
        assert_eq!(s.over(a, at_ms(1), at_ms(2)), Some(7), "done after count");
        assert!(s.finished(false, false));
        // With an interval, waiting targets pile up to max_active, then the feed waits.
        let mut s: Schedule<u32> = Schedule::new(2, 2, Duration::from_secs(60));
        for i in 0..40 {
            match s.admit(at_ms(0), true) {
                Admit::AskFeed => {
                    let id = s.add(i);
                    s.over(id, at_ms(0), at_ms(0));
                }
                other => {
                    assert_eq!(other, Admit::Wait);
                    assert_eq!(i, 16, "stopped at max_active");
                    break;
                }
            }
        }
        assert_eq!(s.next_due(), Some(at_ms(60_000)));
    }

    #[test]
    fn more_to_start_while_the_feed_is_open_or_a_target_has_probes_left() {
        let mut s: Schedule<u32> = Schedule::new(4, 2, Duration::from_millis(10));
        assert!(s.more_to_start(true));
        assert!(!s.more_to_start(false), "nothing added, the feed closed");
        let a = s.add(1);
        assert!(s.more_to_start(false), "its second probe is to come");
        s.over(a, at_ms(0), at_ms(1));
        assert!(s.more_to_start(false), "waiting for its second");
        assert_eq!(s.admit(at_ms(10), false), Admit::Start(a));
        assert!(!s.more_to_start(false), "its last probe is in flight");
        let mut one: Schedule<u32> = Schedule::new(4, 1, Duration::ZERO);
        one.add(1);
        one.add(2);
        assert!(
            !one.more_to_start(false),
            "-c 1: both in flight, none to come"
        );
        assert!(one.more_to_start(true));
    }

    #[test]
    fn can_start_agrees_with_admit() {
        let mut s: Schedule<u32> = Schedule::new(1, 2, Duration::from_millis(10));
        assert!(s.can_start(at_ms(0), true), "room and an open feed");
        assert!(!s.can_start(at_ms(0), false), "room but nothing to start");
        let a = s.add(1);
        assert!(!s.can_start(at_ms(0), true), "jobs = 1: no room");
        s.over(a, at_ms(0), at_ms(1));
        assert!(
            !s.can_start(at_ms(5), false),
            "the next probe is not due yet"
        );
        assert!(s.can_start(at_ms(10), false), "due at start + interval");
        assert_eq!(s.admit(at_ms(10), false), Admit::Start(a));
        // Random walks: whenever can_start says no, admit says Wait.
        let mut s: Schedule<u32> = Schedule::new(3, 3, Duration::from_millis(2));
        let mut running: Vec<(usize, u64)> = Vec::new();
        let mut x = 12345u64;
        for now in 0..2_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let feed_open = now < 1_000;
            if !running.is_empty() && x >> 62 == 0 {
                let (id, st) = running.remove((x >> 20) as usize % running.len());
                s.over(id, at_ms(st), at_ms(now));
            }
            let can = s.can_start(at_ms(now), feed_open);
            match s.admit(at_ms(now), feed_open) {
                Admit::Start(id) => {
                    assert!(can);
                    running.push((id, now));
                }
                Admit::AskFeed => {
                    assert!(can);
                    running.push((s.add(0), now));
                }
                Admit::Wait => assert!(!can, "at {now}"),
            }
        }
    }

    #[test]
    fn a_pass_starts_one_probe_between_reads_and_spins_only_briefly_with_few_in_flight() {
        let p = Pass::default();
        assert_eq!(
            p.start_group(),
            1,
            "every SYN is followed by a read of the taps"
        );
        assert_eq!(
            Pass {
                start_group: 0,
                ..p
            }
            .start_group(),
            1,
            "never zero"
        );
        let sent = at_ms(10);
        assert_eq!(
            p.idle(at_ms(10), sent, 1),
            Idle::Spin,
            "an answer may come at once"
        );
        assert_eq!(p.idle(at_ms(12), sent, 8), Idle::Spin);
        assert_eq!(
            p.idle(at_ms(13), sent, 8),
            Idle::Sleep,
            "the spin ends after 3 ms"
        );
        assert_eq!(
            p.idle(at_ms(10), sent, 9),
            Idle::Sleep,
            "busy enough: no empty polls"
        );
        assert_eq!(
            p.idle(at_ms(10), sent, 0),
            Idle::Sleep,
            "nothing can answer"
        );
        assert!(
            p.send_rank(true, true) < p.send_rank(true, false),
            "a SYN-ACK's answer before a FIN's"
        );
        assert!(p.send_rank(true, false) < p.send_rank(false, false));
        assert_eq!(p.send_rank(false, true), p.send_rank(false, false));
        assert!(p.answer_now(false, false, 1), "the batch is used up");
        assert!(
            p.answer_now(true, true, 1),
            "a SYN-ACK is answered before the rest"
        );
        assert!(
            !p.answer_now(false, true, 15),
            "other answers wait for the batch's end"
        );
        assert!(
            p.answer_now(false, true, 16),
            "but not past 16 packets while a burst keeps the ring filled"
        );
        assert!(
            Pass {
                answer_every: 0,
                ..p
            }
            .answer_now(false, true, 1),
            "never zero"
        );
        let read = at_ms(20);
        assert!(!p.reread(read, read + Duration::from_micros(19)));
        assert!(
            p.reread(read, read + Duration::from_micros(20)),
            "book-keeping waits 20 µs"
        );
    }

    #[test]
    fn recent_pairs_are_bounded_and_per_server() {
        let a: SocketAddr = "198.18.0.2:80".parse().unwrap();
        let b: SocketAddr = "198.18.0.3:80".parse().unwrap();
        let mut r = RecentPairs::new(3);
        r.remember(a, 40000);
        assert!(r.contains(a, 40000));
        assert!(!r.contains(b, 40000), "another server may have the port");
        r.remember(a, 40001);
        r.remember(a, 40002);
        r.remember(a, 40003);
        assert!(!r.contains(a, 40000), "the oldest is forgotten");
        assert!(r.contains(a, 40003));
    }
}
