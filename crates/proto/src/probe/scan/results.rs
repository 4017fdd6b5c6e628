//! What a scan found, host by host, for the reports written after it: the answered ports
//! as they were recorded, and the ports that never answered (filtered/no-response),
//! recomputed rather than remembered.
//!
//! A scan keeps no per-probe state (see the module above), so the silent ports are the
//! pairs it sent minus the pairs that answered. Which pairs it sent is a pure function of
//! the plan: the target set × the ports, permuted by the seed, cut by the shard, up to the
//! position the first round reached (all of them unless the scan was interrupted). The
//! permutation is inverted per pair ([`Permutation::position_of`]) to ask "did this shard,
//! before it stopped, send this pair?". Memory is the answered ports (as before) plus one
//! host's ports at a time; hosts are walked in ascending address order straight from the
//! target specs ([`TargetSet::ascending`]), never listed.

use super::neighbours::{HostLink, Neighbours};
use super::permute::{Permutation, Shard};
use super::targets::{Ascending, TargetSet};
use crate::probe::record::{Completion, PortState, Reason, ScanRecord};
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::net::IpAddr;

/// Which (address, port) pairs the first round of a scan sent a SYN to.
#[derive(Clone, Debug)]
pub struct Coverage<'a> {
    targets: &'a TargetSet,
    /// Ascending, as the plan holds them.
    ports: &'a [u16],
    perm: Permutation,
    shard: Shard,
    /// Positions of this shard the first round walked (sent, or skipped as excluded).
    walked: u64,
    /// Which on-link hosts resolution found (down ones were walked past, never sent to).
    neighbours: Option<&'a Neighbours>,
}

impl<'a> Coverage<'a> {
    /// `walked`: how many of the shard's positions the first round got through — the
    /// shard's length when it ran to the end.
    pub fn new(
        targets: &'a TargetSet,
        ports: &'a [u16],
        seed: u64,
        shard: Shard,
        walked: u64,
    ) -> Coverage<'a> {
        let n = targets.len().saturating_mul(ports.len() as u64);
        Coverage {
            targets,
            ports,
            perm: Permutation::new(n, seed),
            shard,
            walked,
            neighbours: None,
        }
    }

    /// Hosts `n` found down were not sent to; hosts it found get their MAC reported.
    pub fn with_neighbours(mut self, n: &'a Neighbours) -> Coverage<'a> {
        self.neighbours = Some(n);
        self
    }

    fn link(&self, addr: IpAddr) -> Option<HostLink> {
        self.neighbours.and_then(|n| n.host(addr))
    }

    /// Every pair was sent: no permutation needs inverting.
    fn is_everything(&self) -> bool {
        let n = self.perm.len();
        self.shard == Shard::WHOLE && self.walked >= n
    }

    /// Whether the first round sent a SYN to address number `a` of the target set and
    /// port number `p` of the port list. Never for a later copy of an address several
    /// specs name: the scan sends to its first index only.
    pub fn covers(&self, a: u64, p: usize) -> bool {
        self.targets.is_first_index(a) && self.reached(a, p)
    }

    /// [`Coverage::covers`] for address number `a` known to be its address's first copy.
    fn reached(&self, a: u64, p: usize) -> bool {
        if let Some(n) = self.neighbours
            && let Some(addr) = self.targets.get(a)
            && n.is_down(addr)
        {
            return false;
        }
        self.walk_reached(a, p)
    }

    /// Whether this shard's walk reached the position of address number `a` with port
    /// number `p` (sent or not: a host resolution did not find is this shard's to report
    /// down when it reached one of its pairs).
    fn walk_reached(&self, a: u64, p: usize) -> bool {
        let n_ports = self.ports.len() as u64;
        let v = a.saturating_mul(n_ports).saturating_add(p as u64);
        if p >= self.ports.len() || v >= self.perm.len() {
            return false;
        }
        if self.is_everything() {
            return true;
        }
        let i = self.perm.position_of(v);
        self.shard.rank(i).is_some_and(|r| r < self.walked)
    }

    /// The ports (ascending) sent to the address whose indices in the target set are
    /// `indices` (one, or more when specs overlap: then its first copy's pairs).
    pub fn ports_of<'s>(&'s self, indices: &'s [u64]) -> impl Iterator<Item = u16> + 's {
        let first = self.first_copy(indices);
        (0..self.ports.len())
            .filter(move |&p| first.is_some_and(|a| self.reached(a, p)))
            .map(|p| self.ports[p])
    }

    /// Of an address's indices, the one the scan sends to.
    fn first_copy(&self, indices: &[u64]) -> Option<u64> {
        indices
            .iter()
            .copied()
            .find(|&a| self.targets.is_first_index(a))
    }

    /// How many ports were sent to `addr`, an address of the set (0 for one excluded, or
    /// another shard's).
    pub fn sent_to(&self, addr: IpAddr) -> u64 {
        // A scan that ran to its end, unsharded, sent every port to every address of the
        // set once (duplicates are one host) and none to a host resolution found down: no
        // need to find the address's indices, which costs a look at every spec (an `-iL`
        // of 100 000 addresses is as many specs).
        // (`addr` is one the caller heard from, so one of the set.)
        if self.is_everything() {
            let down = self.neighbours.is_some_and(|n| n.is_down(addr));
            let excluded = self.targets.is_excluded(addr);
            return if down || excluded {
                0
            } else {
                self.ports.len() as u64
            };
        }
        let indices = self.targets.indices_of(addr);
        self.ports_of(&indices).count() as u64
    }

    /// Whether any port was sent to that address.
    pub fn any_port(&self, indices: &[u64]) -> bool {
        self.ports_of(indices).next().is_some()
    }

    /// Whether a host resolution found down is this shard's to report: its walk reached
    /// the host's pair with the first port (sent or not). One pair, so that of N shards
    /// exactly one reports the host.
    fn reports_down(&self, indices: &[u64]) -> bool {
        self.first_copy(indices)
            .is_some_and(|a| self.walk_reached(a, 0))
    }
}

/// One answered port as the reports keep it: the record without its address (about 40
/// bytes; what only some ports have is boxed: a `--complete` connection, open ports only,
/// or who sent an ICMP error that was not the target, filtered ports only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortAnswer {
    pub port: u16,
    pub state: PortState,
    pub reason: Reason,
    pub reply_ttl: u8,
    pub rtt_ns: Option<u64>,
    pub t_ns: u64,
    pub rare: Option<Box<Rare>>,
}

/// The rarely present parts of a [`PortAnswer`] (never both: a port that answered with
/// an ICMP error is not open, and only open ports are completed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rare {
    /// Boxed again: a router's address need not take a connection's room.
    Complete(Box<Completion>),
    From(IpAddr),
}

impl PortAnswer {
    pub fn of(r: &ScanRecord) -> PortAnswer {
        PortAnswer {
            port: r.port,
            state: r.state,
            reason: r.reason,
            reply_ttl: r.reply_ttl,
            rtt_ns: r.rtt_ns,
            t_ns: r.t_ns,
            rare: match (&r.complete, r.reply_from) {
                (Some(c), _) => Some(Box::new(Rare::Complete(Box::new(c.clone())))),
                (None, Some(ip)) => Some(Box::new(Rare::From(ip))),
                (None, None) => None,
            },
        }
    }

    /// The `--complete` connection to this (open) port.
    pub fn complete(&self) -> Option<&Completion> {
        match self.rare.as_deref() {
            Some(Rare::Complete(c)) => Some(c),
            _ => None,
        }
    }

    /// Who sent the answer, when not the target (nmap's `reason_ip`).
    pub fn reply_from(&self) -> Option<IpAddr> {
        match self.rare.as_deref() {
            Some(Rare::From(ip)) => Some(*ip),
            _ => None,
        }
    }

    /// Whether the target itself sent this answer: a SYN-ACK, a RST, or an ICMP error
    /// from its own address. A router's or a firewall's ICMP error about the SYN decides
    /// the port (filtered, `reply_from` naming who) but says nothing of the host: the
    /// address may not exist at all (a router's host-unreach after its ARP failed).
    pub fn from_target(&self) -> bool {
        self.reply_from().is_none()
    }

    pub fn record(&self, addr: IpAddr) -> ScanRecord {
        ScanRecord {
            addr,
            port: self.port,
            state: self.state,
            reason: self.reason,
            reply_ttl: self.reply_ttl,
            reply_from: self.reply_from(),
            rtt_ns: self.rtt_ns,
            t_ns: self.t_ns,
            complete: self.complete().cloned(),
        }
    }
}

/// A host's ports counted by state and reason, in the order first met: what a table that
/// lists the open ports only says it left out (nmap's `Not shown:` line).
pub type Tally = Vec<(PortState, Reason, u64)>;

/// Add `n` ports in `state` for `reason` to `t`.
pub fn tally_add(t: &mut Tally, state: PortState, reason: Reason, n: u64) {
    if n == 0 {
        return;
    }
    match t.iter_mut().find(|(s, r, _)| *s == state && *r == reason) {
        Some((_, _, c)) => *c += n,
        None => t.push((state, reason, n)),
    }
}

/// Hosts whose answers not kept are still counted ([`Answers::tally`]), at most: a sweep of
/// a /8 on one port that every host answers with a RST would otherwise hold a count per
/// host. The first 65 536 hosts (a /16) are counted; the others' tables say nothing of
/// what they left out.
const TALLIED_HOSTS: usize = 1 << 16;

/// A host's answers that were counted, not kept.
#[derive(Clone, Debug, Default)]
struct Counted {
    tally: Tally,
    /// One of them came from the host itself ([`PortAnswer::from_target`]): it is up.
    from_target: bool,
}

/// The answered ports of a scan, by host (ascending), ports ascending within each host.
#[derive(Clone, Debug, Default)]
pub struct Answers {
    hosts: BTreeMap<IpAddr, Vec<PortAnswer>>,
    sorted: bool,
    /// Answers not kept, counted per host.
    tallies: BTreeMap<IpAddr, Counted>,
    /// A host's answers went uncounted (more than [`TALLIED_HOSTS`] hosts).
    tallies_full: bool,
}

impl Answers {
    /// Keep one answered port (the scan hands each (address, port) over once).
    pub fn insert(&mut self, r: &ScanRecord) {
        self.hosts
            .entry(r.addr)
            .or_default()
            .push(PortAnswer::of(r));
        self.sorted = false;
    }

    /// Count an answered port that is not kept (for a table of open ports only, the closed
    /// and filtered ones): [`Answers::tallied`] gives the counts.
    pub fn tally(&mut self, r: &ScanRecord) {
        // One lookup for a host already counted: a full-port scan comes here per port.
        let from_target = r.reply_from.is_none();
        if let Some(c) = self.tallies.get_mut(&r.addr) {
            tally_add(&mut c.tally, r.state, r.reason, 1);
            c.from_target |= from_target;
        } else if self.tallies.len() < TALLIED_HOSTS {
            let tally = vec![(r.state, r.reason, 1)];
            self.tallies.insert(r.addr, Counted { tally, from_target });
        } else {
            self.tallies_full = true;
        }
    }

    /// The answers of `addr` that were counted, not kept; `None` when they went uncounted.
    pub fn tallied(&self, addr: IpAddr) -> Option<&[(PortState, Reason, u64)]> {
        match self.tallies.get(&addr) {
            Some(c) => Some(&c.tally),
            None if self.tallies_full => None,
            None => Some(&[]),
        }
    }

    /// What a table of `addr`'s kept ports leaves out, without the walk: the answers
    /// counted and not kept, and as filtered/no-response the ports `coverage` says were
    /// sent to it less every one that answered ([`HostPorts::not_open`] for the walk).
    /// `None` when its answers went uncounted.
    pub fn left_out(&self, addr: IpAddr, coverage: &Coverage<'_>) -> Option<Tally> {
        let mut t = self.tallied(addr)?.to_vec();
        let heard = self.host(addr).len() as u64 + t.iter().map(|x| x.2).sum::<u64>();
        let silent = coverage.sent_to(addr).saturating_sub(heard);
        tally_add(&mut t, PortState::Filtered, Reason::NoResponse, silent);
        Some(t)
    }

    /// Put every host's ports in order; call once the scan is over.
    pub fn sort(&mut self) {
        for v in self.hosts.values_mut() {
            v.sort_by_key(|a| a.port);
        }
        self.sorted = true;
    }

    /// A host's answered ports (ascending once [`Answers::sort`] ran).
    pub fn host(&self, addr: IpAddr) -> &[PortAnswer] {
        debug_assert!(self.sorted || self.hosts.is_empty());
        self.hosts.get(&addr).map_or(&[], Vec::as_slice)
    }

    /// Whether an answer of `addr`'s, kept or only counted, came from `addr` itself
    /// ([`PortAnswer::from_target`]).
    pub fn answered_itself(&self, addr: IpAddr) -> bool {
        self.host(addr).iter().any(PortAnswer::from_target)
            || self.tallies.get(&addr).is_some_and(|c| c.from_target)
    }

    /// Every host that answered itself ([`Answers::answered_itself`]), whether a port of
    /// it was kept or only counted, ascending by address: the hosts up, which a table of
    /// open ports has something to say of. A host only a router's ICMP errors spoke for
    /// is not among them.
    pub fn hosts_up(&self) -> Vec<IpAddr> {
        let all: std::collections::BTreeSet<IpAddr> = self
            .hosts
            .keys()
            .chain(self.tallies.keys())
            .copied()
            .filter(|&a| self.answered_itself(a))
            .collect();
        all.into_iter().collect()
    }

    /// The answered ports of every host that answered, ascending by address.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &[PortAnswer])> {
        self.hosts.iter().map(|(a, v)| (*a, v.as_slice()))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (IpAddr, &mut PortAnswer)> {
        self.hosts
            .iter_mut()
            .flat_map(|(a, v)| v.iter_mut().map(move |p| (*a, p)))
    }

    /// Hosts that answered at all.
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }
}

/// One scanned host: what answered, and which ports never did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPorts<'a> {
    pub addr: IpAddr,
    /// Ascending by port.
    pub answered: &'a [PortAnswer],
    /// Sent but never answered, after every retry: filtered/no-response. Ascending.
    pub silent: Vec<u16>,
    /// An on-link host: what neighbour resolution found (its MAC, or nothing: down).
    pub link: Option<HostLink>,
    /// Answers of the host itself were counted, not kept in `answered` (the table
    /// without the walk keeps the open ports only: [`Answers::tally`]).
    pub counted_up: bool,
}

impl HostPorts<'_> {
    /// Whether the host answered itself — a port (SYN-ACK, RST, or an ICMP error from its
    /// own address) or our ARP / ND request — which nmap's host discovery would call up.
    /// A router's ICMP errors about it do not count: they are all a host that does not
    /// exist gets (a router's host-unreach once its ARP failed, a prohibit route), and
    /// nmap -sS reports such a host down. tcpshake sends no ping, but it is not nmap -Pn
    /// either, which lists every target up (`user-set`): a host that answered nothing is
    /// not listed (README, "nmap's formats"), and one only a router answered for has
    /// answered nothing itself.
    pub fn is_up(&self) -> bool {
        self.counted_up
            || self.answered.iter().any(PortAnswer::from_target)
            || matches!(self.link, Some(HostLink::Resolved(..)))
    }

    /// An on-link host that never answered ARP / ND: down, not scanned.
    pub fn is_down(&self) -> bool {
        matches!(self.link, Some(HostLink::Unresolved(_)))
    }

    /// Its ports that are not open, counted by state and reason.
    pub fn not_open(&self) -> Tally {
        let mut t = Tally::new();
        for (_, state, reason) in self.verdicts().filter(|v| v.1 != PortState::Open) {
            tally_add(&mut t, state, reason, 1);
        }
        t
    }

    /// Every port with its state and reason, ascending: the answered ones as answered,
    /// the silent ones filtered/no-response.
    pub fn verdicts(&self) -> impl Iterator<Item = (u16, PortState, Reason)> + '_ {
        let mut a = self.answered.iter().peekable();
        let mut s = self.silent.iter().copied().peekable();
        std::iter::from_fn(move || match (a.peek(), s.peek()) {
            (Some(x), Some(&y)) if x.port > y => {
                s.next();
                Some((y, PortState::Filtered, Reason::NoResponse))
            }
            (Some(_), _) => a.next().map(|x| (x.port, x.state, x.reason)),
            (None, Some(_)) => s
                .next()
                .map(|y| (y, PortState::Filtered, Reason::NoResponse)),
            (None, None) => None,
        })
    }
}

/// Every scanned host in ascending address order, each once, with its silent ports
/// computed. Hosts that answered nothing themselves (silent, or answered for only by a
/// router's ICMP errors: [`HostPorts::is_up`]), and on-link hosts that never answered
/// ARP / ND (down, not scanned), are skipped unless asked for (`silent_hosts`); either way
/// they are counted ([`Walk::silent_hosts`], [`Walk::down_hosts`]). A host that answered
/// ARP / ND is up whatever its ports did.
pub struct Walk<'a> {
    coverage: &'a Coverage<'a>,
    answers: &'a Answers,
    addrs: Peekable<Ascending<'a>>,
    include_silent: bool,
    silent_hosts: u64,
    up_hosts: u64,
    down_hosts: u64,
}

impl<'a> Walk<'a> {
    pub fn new(coverage: &'a Coverage<'a>, answers: &'a Answers, silent_hosts: bool) -> Walk<'a> {
        Walk {
            coverage,
            answers,
            addrs: coverage.targets.ascending().peekable(),
            include_silent: silent_hosts,
            silent_hosts: 0,
            up_hosts: 0,
            down_hosts: 0,
        }
    }

    /// On-link hosts walked so far that never answered ARP / ND.
    pub fn down_hosts(&self) -> u64 {
        self.down_hosts
    }

    /// Hosts walked so far that were sent something and answered nothing.
    pub fn silent_hosts(&self) -> u64 {
        self.silent_hosts
    }

    /// Hosts walked so far that answered something.
    pub fn up_hosts(&self) -> u64 {
        self.up_hosts
    }
}

impl<'a> Iterator for Walk<'a> {
    type Item = HostPorts<'a>;

    fn next(&mut self) -> Option<HostPorts<'a>> {
        let mut indices: Vec<u64> = Vec::with_capacity(1);
        // Each turn consumes at least one address: bounded by the target set.
        while let Some((addr, first)) = self.addrs.next() {
            indices.clear();
            indices.push(first);
            while let Some((_, i)) = self.addrs.next_if(|&(a, _)| a == addr) {
                indices.push(i);
            }
            let answered = self.answers.host(addr);
            let link = self.coverage.link(addr);
            if let Some(HostLink::Unresolved(_)) = link {
                if !self.coverage.reports_down(&indices) {
                    continue; // another shard's, or after the interruption
                }
                self.down_hosts += 1;
                if !self.include_silent {
                    continue;
                }
                return Some(HostPorts {
                    addr,
                    answered,
                    silent: Vec::new(),
                    link,
                    counted_up: false,
                });
            }
            let resolved = matches!(link, Some(HostLink::Resolved(..)));
            let itself = answered.iter().any(PortAnswer::from_target);
            if !itself && !resolved {
                if answered.is_empty() && !self.coverage.any_port(&indices) {
                    continue; // another shard's, or after the interruption
                }
                // Silent, or only a router spoke for it: not up.
                self.silent_hosts += 1;
                if !self.include_silent {
                    continue;
                }
            } else if answered.is_empty() && !self.coverage.any_port(&indices) {
                continue; // found by ARP / ND, but another shard's
            } else {
                self.up_hosts += 1;
            }
            let mut answered_ports = answered.iter().map(|a| a.port).peekable();
            let silent = self
                .coverage
                .ports_of(&indices)
                .filter(|&p| {
                    while answered_ports.next_if(|&q| q < p).is_some() {}
                    answered_ports.next_if_eq(&p).is_none()
                })
                .collect();
            return Some(HostPorts {
                addr,
                answered,
                silent,
                link,
                counted_up: false,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::scan::targets::{self, Spec, TargetSpec};

    fn spec(t: &str) -> Spec {
        match targets::parse(t).unwrap() {
            TargetSpec::Addrs(s) => s,
            TargetSpec::Name { .. } => panic!("{t} is a name"),
        }
    }

    fn record(addr: &str, port: u16, state: PortState, reason: Reason) -> ScanRecord {
        ScanRecord {
            addr: addr.parse().unwrap(),
            port,
            state,
            reason,
            reply_ttl: 64,
            reply_from: None,
            rtt_ns: Some(1000),
            t_ns: 7,
            complete: None,
        }
    }

    /// The pairs a scan sends, as the driver walks them: this shard's positions in order,
    /// the first `walked` of them, an address's later copies walked past. Each once.
    fn sent(
        set: &TargetSet,
        ports: &[u16],
        seed: u64,
        shard: Shard,
        walked: u64,
    ) -> Vec<(IpAddr, u16)> {
        let n = set.len() * ports.len() as u64;
        let perm = Permutation::new(n, seed);
        let mut v: Vec<(IpAddr, u16)> = shard
            .positions(n)
            .take(walked as usize)
            .filter_map(|i| {
                let x = perm.at(i);
                let a = x / ports.len() as u64;
                let addr = set.get(a).filter(|_| set.is_first_index(a))?;
                Some((addr, ports[(x % ports.len() as u64) as usize]))
            })
            .collect();
        v.sort();
        let n = v.len();
        v.dedup();
        assert_eq!(v.len(), n, "a pair sent twice");
        v
    }

    fn walked_pairs(c: &Coverage<'_>, answers: &Answers) -> Vec<(IpAddr, u16)> {
        let mut v: Vec<(IpAddr, u16)> = Walk::new(c, answers, true)
            .flat_map(|h| {
                let addr = h.addr;
                h.verdicts()
                    .map(move |(p, _, _)| (addr, p))
                    .collect::<Vec<_>>()
            })
            .collect();
        let sorted = v.windows(2).all(|w| w[0] < w[1]);
        assert!(sorted, "hosts ascending, ports ascending, each pair once");
        v.sort();
        v
    }

    #[test]
    fn the_walk_recomputes_exactly_the_pairs_each_shard_sent() {
        let set = TargetSet::new(
            vec![spec("198.18.0.0/29"), spec("fd00::1"), spec("198.18.0.6-9")],
            vec![spec("198.18.0.3")],
        )
        .unwrap();
        let ports = [22, 80, 443];
        let n = set.len() * ports.len() as u64;
        let empty = Answers::default();
        for count in 1..=4 {
            let mut union = Vec::new();
            for index in 1..=count {
                let shard = Shard { index, count };
                let len = shard.len(n);
                // The whole shard, and interrupted after a third of it.
                for walked in [len, len / 3] {
                    let c = Coverage::new(&set, &ports, 42, shard, walked);
                    let got = walked_pairs(&c, &empty);
                    assert_eq!(
                        got,
                        sent(&set, &ports, 42, shard, walked),
                        "{index}/{count} {walked}"
                    );
                    if walked == len {
                        union.extend(got);
                    }
                }
            }
            // Each distinct pair in exactly one shard (.6 and .7 are named twice).
            union.sort();
            assert_eq!(union, sent(&set, &ports, 42, Shard::WHOLE, n));
            assert_eq!(union.len(), 10 * ports.len());
        }
    }

    /// Neighbours for 198.18.0.0/24 on-link from 198.18.0.1, where `live` answered ARP.
    fn resolved(set: &TargetSet, live: &[&str]) -> Neighbours {
        use crate::probe::scan::neighbours::{
            LinkRoutes, Prefix, ResolvePlan, ResolveStep, Resolver, Via,
        };
        use crate::probe::scan::rtt::Wait;
        use crate::time::Instant;
        use crate::wire::ethernet::MacAddr;
        let us: IpAddr = "198.18.0.1".parse().unwrap();
        let link = LinkRoutes::new(
            us,
            MacAddr([2, 0, 0, 0, 0, 1]),
            vec![Prefix::new(us, 32).unwrap()],
            vec![(
                Prefix::new("198.18.0.0".parse().unwrap(), 24).unwrap(),
                Via::OnLink,
            )],
        );
        let plan = ResolvePlan {
            rate: 1_000_000,
            retries: 0,
            wait: Wait::Fixed(std::time::Duration::from_millis(1)),
        };
        let mut now = Instant::from_nanos(1);
        let mut r = Resolver::new(set, [Some(link), None], Default::default(), plan, now);
        for _ in 0..10_000 {
            match r.poll(now, false) {
                ResolveStep::Ask(a) => {
                    r.sent(a, now);
                    if live.contains(&a.to_string().as_str()) {
                        r.answer(a, MacAddr([2, 0, 0, 0, 1, 9]), now);
                    }
                }
                ResolveStep::Wait(t) => now = t,
                ResolveStep::Done => break,
            }
        }
        r.finish()
    }

    #[test]
    fn hosts_resolution_found_down_are_not_sent_to_and_are_reported_once_by_one_shard() {
        let set = TargetSet::new(vec![spec("198.18.0.0/29")], vec![]).unwrap();
        let ports = [22, 80];
        let n = resolved(&set, &["198.18.0.3", "198.18.0.5"]);
        let mut answers = Answers::default();
        answers.insert(&record("198.18.0.3", 22, PortState::Open, Reason::SynAck));
        answers.sort();
        let c = Coverage::new(&set, &ports, 9, Shard::WHOLE, 16).with_neighbours(&n);
        // Not sent to: down hosts have no pairs; ourselves (.1, the kernel's) and the
        // resolved ones have all theirs.
        let pairs = walked_pairs(&c, &answers);
        let hosts: Vec<String> = pairs.iter().map(|p| p.0.to_string()).collect();
        assert!(
            hosts
                .iter()
                .all(|h| ["198.18.0.1", "198.18.0.3", "198.18.0.5"].contains(&h.as_str())),
            "{hosts:?}"
        );
        assert_eq!(pairs.len(), 6);
        let mut walk = Walk::new(&c, &answers, true);
        let all: Vec<HostPorts<'_>> = walk.by_ref().collect();
        assert_eq!(all.len(), 8);
        let down: Vec<String> = all
            .iter()
            .filter(|h| h.is_down())
            .map(|h| h.addr.to_string())
            .collect();
        assert_eq!(
            down,
            [
                "198.18.0.0",
                "198.18.0.2",
                "198.18.0.4",
                "198.18.0.6",
                "198.18.0.7"
            ]
        );
        // .5 answered ARP but no port: up all the same, its ports silent.
        let five = all
            .iter()
            .find(|h| h.addr.to_string() == "198.18.0.5")
            .unwrap();
        assert!(five.is_up() && five.silent == [22, 80]);
        assert_eq!(
            (walk.up_hosts(), walk.silent_hosts(), walk.down_hosts()),
            (2, 1, 5)
        );
        // Without --all, down and silent hosts are counted, not walked; found ones are.
        let mut walk = Walk::new(&c, &answers, false);
        let shown: Vec<String> = walk.by_ref().map(|h| h.addr.to_string()).collect();
        assert_eq!(shown, ["198.18.0.3", "198.18.0.5"]);
        assert_eq!(walk.down_hosts(), 5);
        // Two shards: each down host is reported by exactly one.
        let mut reported = Vec::new();
        for index in 1..=2 {
            let shard = Shard { index, count: 2 };
            let c = Coverage::new(&set, &ports, 9, shard, shard.len(16)).with_neighbours(&n);
            reported.extend(
                Walk::new(&c, &answers, true)
                    .filter(|h| h.is_down())
                    .map(|h| h.addr.to_string()),
            );
        }
        reported.sort();
        assert_eq!(reported, down);
    }

    #[test]
    fn silent_ports_are_the_sent_ones_that_did_not_answer() {
        let set = TargetSet::new(vec![spec("198.18.0.1-3")], vec![]).unwrap();
        let ports = [22, 23, 80, 81];
        let c = Coverage::new(&set, &ports, 1, Shard::WHOLE, 12);
        let mut answers = Answers::default();
        answers.insert(&record("198.18.0.2", 80, PortState::Open, Reason::SynAck));
        answers.insert(&record("198.18.0.2", 22, PortState::Open, Reason::SynAck));
        answers.insert(&record("198.18.0.3", 23, PortState::Closed, Reason::Reset));
        answers.sort();

        let mut walk = Walk::new(&c, &answers, false);
        let hosts: Vec<HostPorts<'_>> = walk.by_ref().collect();
        assert_eq!(hosts.len(), 2, "the silent host is skipped");
        assert_eq!(walk.silent_hosts(), 1);
        assert_eq!(walk.up_hosts(), 2);
        assert_eq!(hosts[0].addr.to_string(), "198.18.0.2");
        assert_eq!(hosts[0].silent, [23, 81]);
        let v: Vec<_> = hosts[0].verdicts().collect();
        assert_eq!(
            v,
            [
                (22, PortState::Open, Reason::SynAck),
                (23, PortState::Filtered, Reason::NoResponse),
                (80, PortState::Open, Reason::SynAck),
                (81, PortState::Filtered, Reason::NoResponse),
            ]
        );
        assert_eq!(hosts[1].silent, [22, 80, 81]);

        let all: Vec<HostPorts<'_>> = Walk::new(&c, &answers, true).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].addr.to_string(), "198.18.0.1");
        assert!(!all[0].is_up());
        assert_eq!(all[0].silent, ports);
    }

    /// Walk 14: behind a router with unreachable / prohibit routes, and for the absent
    /// addresses of an on-link /28 behind one, every SYN got the router's ICMP error, and
    /// every such host was listed up. A host is up only when it answered itself; the
    /// router's errors still decide its ports (filtered, from the router).
    #[test]
    fn a_routers_icmp_errors_do_not_make_a_host_up() {
        let set = TargetSet::new(vec![spec("198.18.4.1-3")], vec![]).unwrap();
        let ports = [22, 80];
        let c = Coverage::new(&set, &ports, 1, Shard::WHOLE, 6);
        let router: IpAddr = "198.18.1.254".parse().unwrap();
        let from = |addr: &str, port, reason, who: Option<IpAddr>| ScanRecord {
            reply_from: who,
            ..record(addr, port, PortState::Filtered, reason)
        };
        let records = [
            // .1: the router's host-unreach for both ports.
            from("198.18.4.1", 22, Reason::HostUnreach, Some(router)),
            from("198.18.4.1", 80, Reason::HostUnreach, Some(router)),
            // .2: the router's admin-prohibited for one, its own port-unreach for the other.
            from("198.18.4.2", 22, Reason::AdminProhibited, Some(router)),
            from("198.18.4.2", 80, Reason::PortUnreach, None),
            // .3: silent.
        ];
        let mut answers = Answers::default();
        for r in &records {
            answers.insert(r);
        }
        answers.sort();
        let mut walk = Walk::new(&c, &answers, false);
        let shown: Vec<String> = walk.by_ref().map(|h| h.addr.to_string()).collect();
        assert_eq!(shown, ["198.18.4.2"]);
        assert_eq!((walk.up_hosts(), walk.silent_hosts()), (1, 2));
        // With every host walked (--all), .1 is there with its ports, not up.
        let all: Vec<HostPorts<'_>> = Walk::new(&c, &answers, true).collect();
        assert_eq!(all.len(), 3);
        assert!(!all[0].is_up() && all[1].is_up() && !all[2].is_up());
        let v: Vec<_> = all[0].verdicts().collect();
        assert_eq!(
            v,
            [
                (22, PortState::Filtered, Reason::HostUnreach),
                (80, PortState::Filtered, Reason::HostUnreach)
            ]
        );
        assert_eq!(all[0].answered[0].reply_from(), Some(router));
        // The table without the walk counts what it does not keep: the same hosts up.
        let mut counted = Answers::default();
        for r in &records {
            counted.tally(r);
        }
        counted.sort();
        assert_eq!(
            counted.hosts_up(),
            ["198.18.4.2".parse::<IpAddr>().unwrap()]
        );
        assert!(!counted.answered_itself("198.18.4.1".parse().unwrap()));
    }

    #[test]
    fn an_interrupted_scan_reports_only_what_it_sent() {
        let set = TargetSet::new(vec![spec("198.18.0.0/28")], vec![]).unwrap();
        let ports = [1, 2, 3, 4, 5];
        let c = Coverage::new(&set, &ports, 3, Shard::WHOLE, 0);
        let none = Answers::default();
        let mut walk = Walk::new(&c, &none, true);
        assert!(walk.next().is_none());
        assert_eq!(walk.silent_hosts(), 0);
        let c = Coverage::new(&set, &ports, 3, Shard::WHOLE, 10);
        let pairs = walked_pairs(&c, &none);
        assert_eq!(pairs.len(), 10);
    }

    /// A down host named by two specs is reported by one shard, once.
    #[test]
    fn a_down_host_named_twice_is_reported_once() {
        let set = TargetSet::new(
            vec![
                spec("198.18.0.4/30"),
                spec("198.18.0.0/29"),
                spec("198.18.0.6"),
            ],
            vec![],
        )
        .unwrap();
        let ports = [22, 80];
        let n = resolved(&set, &["198.18.0.3"]);
        let none = Answers::default();
        // .1 is us (the kernel's), .3 answered.
        let down = [
            "198.18.0.0",
            "198.18.0.2",
            "198.18.0.4",
            "198.18.0.5",
            "198.18.0.6",
            "198.18.0.7",
        ];
        for seed in 0..8 {
            for count in [1, 2, 3] {
                let mut reported = Vec::new();
                for index in 1..=count {
                    let shard = Shard { index, count };
                    let c = Coverage::new(&set, &ports, seed, shard, shard.len(set.len() * 2))
                        .with_neighbours(&n);
                    reported.extend(
                        Walk::new(&c, &none, true)
                            .filter(|h| h.is_down())
                            .map(|h| h.addr.to_string()),
                    );
                }
                reported.sort();
                assert_eq!(reported, down, "seed {seed}, {count} shards");
            }
        }
    }

    #[test]
    fn duplicate_addresses_are_one_host() {
        let set = TargetSet::new(vec![spec("198.18.0.1"), spec("198.18.0.0/31")], vec![]).unwrap();
        let ports = [22];
        let c = Coverage::new(&set, &ports, 5, Shard { index: 1, count: 2 }, 2);
        let none = Answers::default();
        let hosts: Vec<_> = Walk::new(&c, &none, true).collect();
        let addrs: Vec<String> = hosts.iter().map(|h| h.addr.to_string()).collect();
        // Three pairs, two shards: whichever copy of .1 this shard sent, .1 is one host.
        let want = sent(&set, &ports, 5, Shard { index: 1, count: 2 }, 2);
        let want: Vec<String> = want.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(addrs, want);
    }

    /// What a host's table leaves out, computed without the walk (open ports kept, the rest
    /// counted, the silent ones the pairs sent less the answered), is what the walk says.
    #[test]
    fn counted_and_sent_ports_agree_with_the_walk() {
        let set = TargetSet::new(
            vec![spec("198.18.0.0/29"), spec("198.18.0.2-3")],
            vec![spec("198.18.0.5")],
        )
        .unwrap();
        let ports = [21, 22, 80, 443, 8080];
        for (shard, walked) in [
            (Shard::WHOLE, 50),
            (Shard { index: 2, count: 2 }, 11),
            (Shard::WHOLE, 17),
        ] {
            let c = Coverage::new(&set, &ports, 9, shard, walked);
            let pairs = sent(&set, &ports, 9, shard, walked);
            let (mut all, mut open_only) = (Answers::default(), Answers::default());
            for (i, &(a, p)) in pairs.iter().enumerate() {
                let (state, reason) = match i % 3 {
                    0 => (PortState::Open, Reason::SynAck),
                    1 => (PortState::Closed, Reason::Reset),
                    _ => continue, // silent
                };
                let r = record(&a.to_string(), p, state, reason);
                all.insert(&r);
                if state == PortState::Open {
                    open_only.insert(&r);
                } else {
                    open_only.tally(&r);
                }
            }
            all.sort();
            open_only.sort();
            for h in Walk::new(&c, &all, true) {
                let counted: u64 = open_only.tallied(h.addr).unwrap().iter().map(|x| x.2).sum();
                let answered = open_only.host(h.addr).len() as u64 + counted;
                assert!(
                    c.sent_to(h.addr) >= answered,
                    "{} answered more than sent",
                    h.addr
                );
                let mut t = open_only.left_out(h.addr, &c).unwrap();
                let mut want = h.not_open();
                want.sort_by_key(|x| (x.0.as_str(), x.1.as_str()));
                t.sort_by_key(|x| (x.0.as_str(), x.1.as_str()));
                assert_eq!(t, want, "{} {shard:?} {walked}", h.addr);
            }
        }
        assert_eq!(
            Coverage::new(&set, &ports, 9, Shard::WHOLE, 50).sent_to("198.18.0.5".parse().unwrap()),
            0
        );
    }

    #[test]
    fn tallies_stop_at_their_bound_and_say_so() {
        let mut a = Answers::default();
        for i in 0..TALLIED_HOSTS as u32 + 1 {
            let addr = std::net::Ipv4Addr::from(0xc612_0000 + i).to_string();
            a.tally(&record(&addr, 80, PortState::Closed, Reason::Reset));
        }
        a.tally(&record("198.18.0.0", 81, PortState::Closed, Reason::Reset));
        assert_eq!(
            a.tallied("198.18.0.0".parse().unwrap()),
            Some(&[(PortState::Closed, Reason::Reset, 2)][..])
        );
        let last = std::net::Ipv4Addr::from(0xc612_0000 + TALLIED_HOSTS as u32);
        assert_eq!(a.tallied(last.into()), None);
    }

    #[test]
    fn answers_keep_the_record_and_give_it_back() {
        let r = record("fd00::5", 443, PortState::Closed, Reason::Reset);
        let a = PortAnswer::of(&r);
        assert_eq!(a.record(r.addr), r);
        assert!(
            std::mem::size_of::<PortAnswer>() <= 48,
            "{}",
            std::mem::size_of::<PortAnswer>()
        );
    }
}
