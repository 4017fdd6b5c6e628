//! Where each target's frames go, and the neighbour resolution that finds out, decided
//! without I/O. A scan that writes whole Ethernet frames (tcpshake_io::link) must name
//! each frame's destination MAC itself, as nmap and masscan do:
//!
//! - an **on-link** target (its longest matching route has no gateway): the MAC it
//!   answers ARP (RFC 826) or Neighbor Discovery (RFC 4861 §7.2) with, which the
//!   [`Resolver`] asks for before the scan — every on-link target, at the scan's rate,
//!   with more rounds for the silent ones as the scan's SYNs get them (one, and another
//!   while the last one resolved someone new, up to `--retries`). A target that never answers is
//!   **down** (`no-arp` / `no-nd`) and gets no SYN: the kernel would have queued its
//!   packets behind its own resolution (three probes a second apart, then a drop) and
//!   filled its neighbour table with INCOMPLETE entries — the crawl of issue 15;
//! - an **off-link** target: its gateway's MAC, from the kernel's neighbour table or, when
//!   the kernel has none, asked like an on-link target. A gateway that never answers sends
//!   its targets back to the kernel's path (raw sockets), which does its own resolution;
//! - this host's own addresses, multicast, routes through another interface, and whole
//!   families without an Ethernet interface: the **kernel's** path, as before.
//!
//! nmap's words are kept where nmap has them: a host found by ARP is up with reason
//! `arp-response` (`nd-response` for IPv6), a host that stayed silent is down with
//! `no-response` in its XML; tcpshake's JSON says which resolution failed (`no-arp`,
//! `no-nd`).
//!
//! The resolver's timing is the scan's (schedule.rs): the same token bucket and rate,
//! the same wait after each round (adaptive from the reply times, rtt.rs, or `--wait`),
//! and no further round once every asked address has answered.

use super::rtt::{self, RttEstimator, Wait};
use super::schedule::{TokenBucket, retry_rounds_allowed};
use super::targets::{TargetSet, WithinCursor};
use crate::probe::record::Reason;
use crate::time::Instant;
use crate::wire::arp::ArpRepr;
use crate::wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV6, EthernetRepr, MacAddr};
use crate::wire::ndp::Advertisement;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Reply times remembered per round for RTT samples, at most (≈ 40 bytes each).
const SENT_AT_CAP: usize = 1 << 16;

/// An address prefix (a route's destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// `None` when `len` is longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        (u32::from(len) <= bits(addr)).then_some(Prefix { addr, len })
    }

    /// The first and last address of the prefix, as numbers.
    pub fn bounds(&self) -> (u128, u128) {
        let host = bits(self.addr) - u32::from(self.len);
        let v = value(self.addr);
        let mask = if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        (v & !mask, v | mask)
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        if a.is_ipv6() != self.addr.is_ipv6() {
            return false;
        }
        let (lo, hi) = self.bounds();
        (lo..=hi).contains(&value(a))
    }
}

fn bits(a: IpAddr) -> u32 {
    if a.is_ipv6() { 128 } else { 32 }
}

fn value(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// What a route says about its destinations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// On the scan's interface, no gateway: resolve the target itself.
    OnLink,
    /// Through this gateway, on the scan's interface.
    Gateway(IpAddr),
    /// Another interface, a multipath route, a blackhole, unreachable or prohibit route:
    /// the kernel's business.
    Elsewhere,
}

/// Where a target's packets go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    OnLink,
    Gateway(IpAddr),
    Kernel,
}

/// How a family's addresses are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Arp,
    Nd,
}

impl Resolution {
    pub fn of(a: IpAddr) -> Resolution {
        if a.is_ipv6() {
            Resolution::Nd
        } else {
            Resolution::Arp
        }
    }

    /// The host's reason when it answered (nmap's words).
    pub fn up_reason(self) -> Reason {
        match self {
            Resolution::Arp => Reason::ArpResponse,
            Resolution::Nd => Reason::NdResponse,
        }
    }

    /// The host's reason when it did not (tcpshake's JSON; nmap's XML says `no-response`).
    pub fn down_reason(self) -> Reason {
        match self {
            Resolution::Arp => Reason::NoArp,
            Resolution::Nd => Reason::NoNd,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Resolution::Arp => "ARP",
            Resolution::Nd => "ND",
        }
    }
}

/// One family's routes as the scan's interface sees them: the I/O layer reads them from
/// the kernel (the main table and this host's own addresses) once, and every target is
/// classified here by longest-prefix match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRoutes {
    /// Our address on the interface: the source of our requests.
    pub us: IpAddr,
    /// Our interface's MAC: the source of our frames.
    pub mac: MacAddr,
    /// This host's own addresses and local prefixes (the kernel's local table).
    pub local: Vec<Prefix>,
    /// The main table's routes, longest prefix first.
    routes: Vec<(Prefix, Via)>,
}

impl LinkRoutes {
    pub fn new(
        us: IpAddr,
        mac: MacAddr,
        local: Vec<Prefix>,
        mut routes: Vec<(Prefix, Via)>,
    ) -> LinkRoutes {
        routes.retain(|(p, _)| p.addr.is_ipv6() == us.is_ipv6());
        routes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len));
        LinkRoutes {
            us,
            mac,
            local,
            routes,
        }
    }

    pub fn classify(&self, a: IpAddr) -> Class {
        if a.is_ipv6() != self.us.is_ipv6()
            || is_group(a)
            || self.local.iter().any(|p| p.contains(a))
        {
            return Class::Kernel;
        }
        match self.routes.iter().find(|(p, _)| p.contains(a)) {
            Some((_, Via::OnLink)) => Class::OnLink,
            Some((_, Via::Gateway(g))) => Class::Gateway(*g),
            Some((_, Via::Elsewhere)) | None => Class::Kernel,
        }
    }

    /// The on-link prefixes' bounds (a target inside one may still be classified
    /// otherwise by a longer route).
    fn on_link_ranges(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.routes
            .iter()
            .filter(|(_, v)| *v == Via::OnLink)
            .map(|(p, _)| p.bounds())
    }

    /// The gateways of this interface's routes, each once.
    pub fn gateways(&self) -> Vec<IpAddr> {
        let mut g: Vec<IpAddr> = self
            .routes
            .iter()
            .filter_map(|(_, v)| match v {
                Via::Gateway(g) => Some(*g),
                _ => None,
            })
            .collect();
        g.sort();
        g.dedup();
        g
    }
}

/// A multicast or broadcast address: no neighbour to resolve.
fn is_group(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_multicast() || a == Ipv4Addr::BROADCAST,
        IpAddr::V6(a) => a.is_multicast(),
    }
}

/// Where one packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// A frame to this MAC.
    Mac(MacAddr),
    /// The kernel's path (raw IP socket).
    Kernel,
    /// Nothing: an on-link host that never answered resolution.
    Down,
}

/// What resolution said about an on-link host, for the reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostLink {
    Resolved(MacAddr, Resolution),
    Unresolved(Resolution),
}

/// The outcome of resolution: where every target's packets go.
#[derive(Clone, Debug, Default)]
pub struct Neighbours {
    /// Per family (IPv4, IPv6): `None` sends the whole family through the kernel.
    links: [Option<LinkRoutes>; 2],
    macs: HashMap<IpAddr, MacAddr>,
    /// Resolution ran to its end: only then is a silent on-link host down.
    complete: bool,
}

impl Neighbours {
    /// Every target through the kernel (no Ethernet interface, or frames not wanted).
    pub fn kernel_only() -> Neighbours {
        Neighbours::default()
    }

    fn link(&self, a: IpAddr) -> Option<&LinkRoutes> {
        self.links[usize::from(a.is_ipv6())].as_ref()
    }

    /// The family's routes, if its frames are ours to address.
    pub fn routes(&self, v6: bool) -> Option<&LinkRoutes> {
        self.links[usize::from(v6)].as_ref()
    }

    pub fn next_hop(&self, a: IpAddr) -> NextHop {
        let Some(link) = self.link(a) else {
            return NextHop::Kernel;
        };
        match link.classify(a) {
            Class::OnLink => match self.macs.get(&a) {
                Some(m) => NextHop::Mac(*m),
                None => NextHop::Down,
            },
            Class::Gateway(g) => self
                .macs
                .get(&g)
                .map_or(NextHop::Kernel, |m| NextHop::Mac(*m)),
            Class::Kernel => NextHop::Kernel,
        }
    }

    /// An on-link host that did not answer resolution (which ran to its end).
    pub fn is_down(&self, a: IpAddr) -> bool {
        self.complete && self.next_hop(a) == NextHop::Down
    }

    /// What resolution found for `a`, when it is an on-link target.
    pub fn host(&self, a: IpAddr) -> Option<HostLink> {
        let link = self.link(a)?;
        if link.classify(a) != Class::OnLink {
            return None;
        }
        let how = Resolution::of(a);
        match self.macs.get(&a) {
            Some(m) => Some(HostLink::Resolved(*m, how)),
            None if self.complete => Some(HostLink::Unresolved(how)),
            None => None,
        }
    }

    /// MACs known (on-link hosts and gateways).
    pub fn resolved(&self) -> usize {
        self.macs.len()
    }
}

/// Parse a frame off the resolution socket: an ARP reply or a Neighbor Advertisement that
/// answers a request from one of our addresses, as (address, MAC). Anything else: `None`.
/// Never panics, whatever the bytes.
pub fn parse_reply(frame: &[u8], links: &[Option<LinkRoutes>; 2]) -> Option<(IpAddr, MacAddr)> {
    let (eth, rest) = EthernetRepr::parse(frame).ok()?;
    match eth.ethertype {
        ETHERTYPE_ARP => {
            let IpAddr::V4(us) = links[0].as_ref()?.us else {
                return None;
            };
            let (ip, mac) = ArpRepr::parse(rest).ok()?.as_reply_to(eth.src, us)?;
            Some((IpAddr::V4(ip), mac))
        }
        ETHERTYPE_IPV6 => {
            let IpAddr::V6(us) = links[1].as_ref()?.us else {
                return None;
            };
            let (ip, mac) = Advertisement::parse(rest).ok()??.as_answer_to(us)?;
            Some((IpAddr::V6(ip), mac))
        }
        _ => None,
    }
}

/// Rate, rounds and wait of a resolution: the scan's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvePlan {
    pub rate: u64,
    pub retries: u8,
    pub wait: Wait,
}

/// What the driver does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveStep {
    /// Send a request (ARP or NS, by the address's family) for this address.
    Ask(IpAddr),
    /// Send what is batched, read replies, and poll again at this time (or sooner).
    Wait(Instant),
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Sending,
    /// Waiting from the round's last request before round `next`.
    Between {
        next: u8,
    },
    /// Waiting for the last replies (from the last request).
    Draining,
    Done,
}

/// Counts for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolveTotals {
    /// Addresses asked about (first round; an address two specs name counts twice).
    pub asked: u64,
    /// Of them, how many answered.
    pub resolved: u64,
    /// Requests sent, retries included.
    pub sent: u64,
    pub rounds: u8,
    /// Of `asked` and `resolved`, the gateways that are no target (asked so that what goes
    /// through them is sent as frames): not hosts "down, not scanned" when silent.
    pub gateways_asked: u64,
    pub gateways_resolved: u64,
    /// A gateway asked about that never answered (what goes through it was left to the
    /// kernel, which cannot deliver it either: its targets are reported filtered).
    pub silent_gateway: Option<IpAddr>,
}

/// The resolution machine: asks every on-link target (and every gateway the kernel does
/// not know) for its MAC, in rounds, at the scan's rate. See the module doc.
#[derive(Debug)]
pub struct Resolver<'a> {
    targets: &'a TargetSet,
    links: [Option<LinkRoutes>; 2],
    /// (first, last, v6) of every on-link prefix, the order of the walk.
    ranges: Vec<(u128, u128, bool)>,
    /// Gateways to ask about (those the kernel did not know).
    gateways: Vec<IpAddr>,
    macs: HashMap<IpAddr, MacAddr>,
    /// The gateways the kernel knew at the start (in `macs`, never asked nor counted).
    preknown: Vec<IpAddr>,
    plan: ResolvePlan,
    bucket: TokenBucket,
    rtt: RttEstimator,
    phase: Phase,
    round: u8,
    /// The highest round that resolved some address (for [`retry_rounds_allowed`]).
    answered_round: u8,
    /// When the last request was asked for (sent later, with the driver's batch).
    last_ask: Option<Instant>,
    range_at: usize,
    cursor: WithinCursor,
    gateway_at: usize,
    sent_at: HashMap<IpAddr, Instant>,
    totals: ResolveTotals,
    last_send: Option<Instant>,
    started: Instant,
    send_time: Duration,
    round_first: Option<Instant>,
    interrupted: bool,
}

impl<'a> Resolver<'a> {
    /// `known`: what the kernel's neighbour table holds; only its gateways are taken (not
    /// asked again). On-link targets are always asked: a stale kernel entry must not make
    /// a host that is gone look up, and "down" means "did not answer us".
    pub fn new(
        targets: &'a TargetSet,
        links: [Option<LinkRoutes>; 2],
        mut known: HashMap<IpAddr, MacAddr>,
        plan: ResolvePlan,
        now: Instant,
    ) -> Resolver<'a> {
        let all_gateways: Vec<IpAddr> = links.iter().flatten().flat_map(|l| l.gateways()).collect();
        known.retain(|a, _| all_gateways.contains(a));
        let mut ranges = Vec::new();
        let mut gateways = Vec::new();
        for l in links.iter().flatten() {
            let v6 = l.us.is_ipv6();
            ranges.extend(l.on_link_ranges().map(|(lo, hi)| (lo, hi, v6)));
            // A gateway is asked about only when some target may need it: a spec of this
            // family not wholly inside one on-link prefix.
            let off_link = targets.bounds().any(|(lo, hi, sv6)| {
                sv6 == v6 && !l.on_link_ranges().any(|(plo, phi)| plo <= lo && hi <= phi)
            });
            if off_link {
                gateways.extend(
                    l.gateways()
                        .into_iter()
                        .filter(|g| !known.contains_key(g) && l.classify(*g) == Class::OnLink),
                );
            }
        }
        Resolver {
            targets,
            links,
            ranges,
            gateways,
            preknown: known.keys().copied().collect(),
            macs: known,
            plan,
            bucket: TokenBucket::new(plan.rate, now),
            rtt: RttEstimator::new(),
            phase: Phase::Sending,
            round: 0,
            answered_round: 0,
            last_ask: None,
            range_at: 0,
            cursor: WithinCursor::default(),
            gateway_at: 0,
            sent_at: HashMap::new(),
            totals: ResolveTotals::default(),
            last_send: None,
            started: now,
            send_time: Duration::ZERO,
            round_first: None,
            interrupted: false,
        }
    }

    // --- getters ---

    pub fn links(&self) -> &[Option<LinkRoutes>; 2] {
        &self.links
    }

    pub fn totals(&self) -> ResolveTotals {
        let silent_gateway = match self.phase {
            // Every gateway listed was asked about in round 0 (listed only when a target
            // may need it).
            Phase::Done if !self.interrupted => self
                .gateways
                .iter()
                .find(|g| !self.macs.contains_key(g) && !self.is_on_link_target(**g))
                .copied(),
            _ => None,
        };
        ResolveTotals {
            rounds: self.round.saturating_add(u8::from(self.totals.sent > 0)),
            silent_gateway,
            ..self.totals
        }
    }

    /// A gateway to ask about that is no on-link target: the short gateway list first, so
    /// the targets (a linear search of the specs) are searched for gateways only — per
    /// address asked, it made a 60 000-line list's resolution ten times slower (review).
    fn is_gateway_only(&self, a: IpAddr) -> bool {
        self.gateways.contains(&a) && !self.is_on_link_target(a)
    }

    /// An on-link address among the targets (asked about in the targets' walk).
    fn is_on_link_target(&self, a: IpAddr) -> bool {
        self.targets.contains(a)
            && self.links[usize::from(a.is_ipv6())]
                .as_ref()
                .is_some_and(|l| l.classify(a) == Class::OnLink)
    }

    /// The reply times measured (for the scan to start from).
    pub fn rtt(&self) -> RttEstimator {
        self.rtt
    }

    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Each round's first request to its last, summed.
    pub fn send_time(&self) -> Duration {
        self.send_time
    }

    // --- inputs ---

    /// The request for `addr` left at `at`.
    pub fn sent(&mut self, addr: IpAddr, at: Instant) {
        self.totals.sent += 1;
        self.last_send = Some(self.last_send.map_or(at, |l| l.max(at)));
        if self.sent_at.len() < SENT_AT_CAP {
            self.sent_at.insert(addr, at);
        }
    }

    /// A reply (from [`parse_reply`]) that arrived at `at`. True when it resolved an
    /// address we asked about for the first time; replies for anything else are ignored.
    pub fn answer(&mut self, addr: IpAddr, mac: MacAddr, at: Instant) -> bool {
        if self.macs.contains_key(&addr) || !self.is_asked(addr) {
            return false;
        }
        self.macs.insert(addr, mac);
        self.totals.resolved += 1;
        if self.is_gateway_only(addr) {
            self.totals.gateways_resolved += 1;
        }
        // The round whose request it answers: this one's when this round asked (its send
        // time is kept), else an earlier one's, late — which earns no further round (it
        // would, credited to this round: 11 rounds of broadcasts over an on-link /16).
        let asked = self.sent_at.remove(&addr);
        let round = if asked.is_some() {
            self.round
        } else {
            self.round.saturating_sub(1)
        };
        self.answered_round = self.answered_round.max(round);
        if let Some(t) = asked {
            self.rtt.sample(at.saturating_since(t));
        }
        true
    }

    /// Whether `addr` is one we ask about: an on-link target or a gateway to resolve.
    fn is_asked(&self, addr: IpAddr) -> bool {
        if self.gateways.contains(&addr) {
            return true;
        }
        let Some(l) = &self.links[usize::from(addr.is_ipv6())] else {
            return false;
        };
        l.classify(addr) == Class::OnLink && self.targets.contains(addr)
    }

    // --- outputs ---

    /// What to do at `now`; `stop`: the user asked to stop.
    /// How long a round waits for answers after its last request: the scan's wait, but a
    /// `--wait` of at least [`rtt::FLOOR`]. `--wait` is about the SYNs' replies (a scan
    /// may even ask for none, like masscan's `--wait 0`); a round of ARP / ND requests
    /// that waited less than any neighbour takes to answer would call every live host
    /// down and scan nothing — what `--wait 0s` did. A LAN answers well within the floor.
    fn round_wait(&self) -> Duration {
        match self.plan.wait {
            Wait::Fixed(d) => d.max(rtt::FLOOR),
            Wait::Adaptive => self.rtt.wait(Wait::Adaptive),
        }
    }

    #[must_use]
    pub fn poll(&mut self, now: Instant, stop: bool) -> ResolveStep {
        // Bounded: each pass changes the phase or hands out a request; the walk is bounded
        // by the targets.
        loop {
            match self.phase {
                Phase::Done => return ResolveStep::Done,
                Phase::Draining => {
                    // From the last request as the driver reported it (the round's last
                    // batch may leave after its walk ended).
                    let from = self.last_send.unwrap_or(self.started);
                    let until = from + self.round_wait();
                    if now >= until || self.all_answered() {
                        self.phase = Phase::Done;
                        return ResolveStep::Done;
                    }
                    return ResolveStep::Wait(until);
                }
                Phase::Between { next } => {
                    let from = self.last_send.unwrap_or(self.started);
                    let until = from + self.round_wait();
                    if stop {
                        self.interrupted = true;
                        self.phase = Phase::Draining;
                    } else if self.all_answered() {
                        self.phase = Phase::Done;
                    } else if now < until {
                        return ResolveStep::Wait(until);
                    } else if next > retry_rounds_allowed(self.plan.retries, self.answered_round) {
                        // The last round resolved nobody new: the silent are down.
                        self.phase = Phase::Done;
                    } else {
                        self.round = next;
                        self.range_at = 0;
                        self.cursor = WithinCursor::default();
                        self.gateway_at = 0;
                        self.sent_at.clear();
                        self.phase = Phase::Sending;
                    }
                }
                Phase::Sending => {
                    if stop {
                        self.interrupted = true;
                        self.end_round(now);
                        self.phase = Phase::Draining;
                        continue;
                    }
                    if let Err(wait) = self.bucket.ready(now) {
                        return ResolveStep::Wait(now + wait);
                    }
                    match self.next_ask() {
                        Some(a) => {
                            let _ = self.bucket.take(now);
                            if self.round == 0 {
                                self.totals.asked += 1;
                                if self.is_gateway_only(a) {
                                    self.totals.gateways_asked += 1;
                                }
                            }
                            self.round_first.get_or_insert(now);
                            self.last_ask = Some(now);
                            return ResolveStep::Ask(a);
                        }
                        None => {
                            let asked_any = self.round_first.is_some();
                            self.end_round(now);
                            self.phase = if !asked_any {
                                // Nothing to ask this round (nothing on-link): done.
                                Phase::Done
                            } else if self.round < self.plan.retries && !self.all_answered() {
                                Phase::Between {
                                    next: self.round + 1,
                                }
                            } else {
                                Phase::Draining
                            };
                        }
                    }
                }
            }
        }
    }

    /// Everything learnt, for the scan.
    pub fn finish(self) -> Neighbours {
        Neighbours {
            links: self.links,
            macs: self.macs,
            complete: !self.interrupted,
        }
    }

    // --- the policy's parts ---

    /// The next address of this round's walk to ask about: on-link targets prefix by
    /// prefix, then gateways; in later rounds only the silent ones.
    fn next_ask(&mut self) -> Option<IpAddr> {
        // Bounded by the targets within the on-link prefixes.
        while let Some(&(lo, hi, v6)) = self.ranges.get(self.range_at) {
            let Some(a) = self.targets.next_within(lo, hi, v6, &mut self.cursor) else {
                self.range_at += 1;
                self.cursor = WithinCursor::default();
                continue;
            };
            let on_link = self.links[usize::from(v6)]
                .as_ref()
                .is_some_and(|l| l.classify(a) == Class::OnLink);
            if on_link && !self.macs.contains_key(&a) {
                return Some(a);
            }
            if on_link {
                self.walked_past_answered(a);
            }
        }
        while let Some(&g) = self.gateways.get(self.gateway_at) {
            self.gateway_at += 1;
            // A gateway that is an on-link target too was asked in the walk above: asked
            // again here (its answer not back yet) it was counted twice, and the summary
            // called the copy down (a walk: "1 of 2 answered; 1 down" of two live hosts).
            if self.is_on_link_target(g) {
                continue;
            }
            if !self.macs.contains_key(&g) {
                return Some(g);
            }
            self.walked_past_answered(g);
        }
        None
    }

    /// Round 0's walk found `addr` answered before it was asked (a reply to the kernel's
    /// own ARP / ND refresh, or one nobody asked for): it counts as asked, as its answer
    /// counted as resolved. Else `all_answered` held one address early — with another's
    /// answer lost, resolution ended after round 0 and called a live host down.
    fn walked_past_answered(&mut self, addr: IpAddr) {
        if self.round == 0 && !self.preknown.contains(&addr) {
            self.totals.asked += 1;
            if self.is_gateway_only(addr) {
                self.totals.gateways_asked += 1;
            }
        }
    }

    fn all_answered(&self) -> bool {
        self.totals.resolved >= self.totals.asked
    }

    fn end_round(&mut self, now: Instant) {
        // This round's last requests may still wait in the driver's batch (reported in
        // `sent` when it flushes): its wait, and a Ctrl-C's drain, count from them, not
        // from the previous round's.
        if let Some(t) = self.last_ask {
            self.last_send = Some(self.last_send.map_or(t, |l| l.max(t)));
        }
        if let Some(first) = self.round_first.take() {
            let last = self.last_send.unwrap_or(now).max(first);
            self.send_time += last.saturating_since(first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::scan::targets::{self, TargetSpec};
    use crate::wire::ndp;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const T0: u64 = 1_700_000_000_000_000_000;
    const US_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn at_us(us: u64) -> Instant {
        Instant::from_nanos(T0 + us * 1000)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn prefix(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap();
        Prefix::new(ip(a), l.parse().unwrap()).unwrap()
    }

    fn targets(specs: &[&str]) -> TargetSet {
        let specs = specs
            .iter()
            .map(|t| match targets::parse(t).unwrap() {
                TargetSpec::Addrs(s) => s,
                TargetSpec::Name { .. } => panic!(),
            })
            .collect();
        TargetSet::new(specs, vec![]).unwrap()
    }

    /// Our lab's client: 198.18.77.1/24 and fd00:77::1/64 on one veth, a default route
    /// through 198.18.77.254, and 10.9.0.0/16 through another interface.
    fn links() -> [Option<LinkRoutes>; 2] {
        let v4 = LinkRoutes::new(
            ip("198.18.77.1"),
            US_MAC,
            vec![prefix("198.18.77.1/32"), prefix("127.0.0.0/8")],
            vec![
                (prefix("0.0.0.0/0"), Via::Gateway(ip("198.18.77.254"))),
                (prefix("198.18.77.0/24"), Via::OnLink),
                (prefix("10.9.0.0/16"), Via::Elsewhere),
            ],
        );
        let v6 = LinkRoutes::new(
            ip("fd00:77::1"),
            US_MAC,
            vec![prefix("fd00:77::1/128")],
            vec![(prefix("fd00:77::/64"), Via::OnLink)],
        );
        [Some(v4), Some(v6)]
    }

    fn plan(retries: u8) -> ResolvePlan {
        ResolvePlan {
            rate: 1_000_000,
            retries,
            wait: Wait::Adaptive,
        }
    }

    /// Runs a resolver in virtual time; `live` answer 30 µs after each request (unless
    /// `answers` says otherwise). Returns each request with its time and the end time.
    fn run(
        r: &mut Resolver<'_>,
        mut answers: impl FnMut(IpAddr, u8) -> Option<MacAddr>,
        stop_at_us: Option<u64>,
    ) -> (Vec<(u64, IpAddr)>, u64) {
        let mut now = 0u64;
        let mut asked = Vec::new();
        let mut pending: Vec<(u64, IpAddr, MacAddr)> = Vec::new();
        let mut round_of: HashMap<IpAddr, u8> = HashMap::new();
        for _ in 0..1_000_000 {
            pending.retain(|&(t, a, m)| {
                if t <= now {
                    r.answer(a, m, at_us(t));
                    false
                } else {
                    true
                }
            });
            let stop = stop_at_us.is_some_and(|t| now >= t);
            match r.poll(at_us(now), stop) {
                ResolveStep::Ask(a) => {
                    r.sent(a, at_us(now));
                    let n = round_of.entry(a).or_insert(0);
                    if let Some(m) = answers(a, *n) {
                        pending.push((now + 30, a, m));
                    }
                    *n += 1;
                    asked.push((now, a));
                }
                ResolveStep::Wait(t) => {
                    let t = (t.as_nanos() - T0).div_ceil(1000);
                    assert!(t >= now, "a wait goes forward");
                    // Wake for the next answer if it comes first.
                    let next = pending.iter().map(|p| p.0).min().unwrap_or(u64::MAX);
                    now = t.min(next).max(now + 1);
                }
                ResolveStep::Done => return (asked, now),
            }
        }
        panic!("the resolver never ended");
    }

    fn mac_of(a: IpAddr) -> MacAddr {
        let v = value(a) as u8;
        MacAddr([2, 0, 0, 0, 1, v])
    }

    #[test]
    fn routes_classify_by_longest_prefix() {
        let [Some(v4), Some(v6)] = links() else {
            panic!()
        };
        assert_eq!(v4.classify(ip("198.18.77.5")), Class::OnLink);
        assert_eq!(
            v4.classify(ip("198.18.77.1")),
            Class::Kernel,
            "our own address"
        );
        assert_eq!(
            v4.classify(ip("198.51.100.7")),
            Class::Gateway(ip("198.18.77.254"))
        );
        assert_eq!(
            v4.classify(ip("10.9.3.4")),
            Class::Kernel,
            "another interface"
        );
        assert_eq!(v4.classify(ip("224.0.0.1")), Class::Kernel);
        assert_eq!(v4.classify(ip("255.255.255.255")), Class::Kernel);
        assert_eq!(v4.classify(ip("fd00:77::5")), Class::Kernel, "other family");
        assert_eq!(v6.classify(ip("fd00:77::5")), Class::OnLink);
        assert_eq!(v6.classify(ip("2001:db8::1")), Class::Kernel, "no route");
        assert_eq!(v6.classify(ip("ff02::1")), Class::Kernel);
        assert_eq!(v4.gateways(), [ip("198.18.77.254")]);
        assert_eq!(prefix("0.0.0.0/0").bounds(), (0, u128::from(u32::MAX)));
        assert_eq!(prefix("::/0").bounds(), (0, u128::MAX));
        assert!(Prefix::new(ip("::"), 129).is_none());
    }

    /// As the scan's SYN rounds: another round only while the last one resolved someone new
    /// (a request or its answer lost), up to `--retries`; else one retry round.
    #[test]
    fn rounds_go_on_while_they_resolve_someone_new() {
        let t = targets(&["198.18.77.0/24"]);
        // .99 answers its first request, .2 its second, .3 its third.
        let answers = |a: IpAddr, n: u8| {
            let first = match a {
                a if a == ip("198.18.77.99") => 0,
                a if a == ip("198.18.77.2") => 1,
                a if a == ip("198.18.77.3") => 2,
                _ => return None,
            };
            (n == first).then(|| mac_of(a))
        };
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(10), at_us(0));
        let (asked, _) = run(&mut r, answers, None);
        // Round 3 resolves nobody: the last.
        assert_eq!(asked.len(), 255 + 254 + 253 + 252);
        assert_eq!((r.totals().resolved, r.totals().rounds), (3, 4));
        // Only first answers: one retry round, whatever --retries allows.
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(10), at_us(0));
        let (asked, _) = run(
            &mut r,
            |a, n| (n == 0 && a == ip("198.18.77.9")).then(|| mac_of(a)),
            None,
        );
        assert_eq!(asked.len(), 255 + 254);
        // --retries 1 caps it.
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(1), at_us(0));
        let (asked, _) = run(&mut r, answers, None);
        assert_eq!(asked.len(), 255 + 254);
    }

    /// A late answer to an earlier round's request earns no further round: it is not this
    /// round's request that got through.
    #[test]
    fn a_late_answer_to_an_earlier_round_earns_no_round() {
        let t = targets(&["198.18.77.8/30"]);
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(10), at_us(0));
        let (mut now, mut late_sent, mut asked) = (0u64, false, Vec::new());
        for _ in 0..10_000 {
            match r.poll(at_us(now), false) {
                ResolveStep::Ask(a) => {
                    r.sent(a, at_us(now));
                    asked.push((r.totals().rounds, a));
                    // Round 1 has begun: .11's round-0 request is answered now, before
                    // round 1 asks it again.
                    if !late_sent && asked.len() > 4 {
                        late_sent = true;
                        assert!(r.answer(
                            ip("198.18.77.11"),
                            mac_of(ip("198.18.77.11")),
                            at_us(now)
                        ));
                    }
                    now += 1;
                }
                ResolveStep::Wait(w) => {
                    now = now.max((w.as_nanos() - T0).div_ceil(1000)).max(now + 1);
                }
                ResolveStep::Done => break,
            }
        }
        assert!(late_sent);
        // Round 0 asked 4, round 1 the 3 silent ones; no round 2.
        assert_eq!(asked.len(), 4 + 3, "{asked:?}");
    }

    #[test]
    fn a_sparse_sweep_asks_everyone_then_the_silent_once_more() {
        let t = targets(&["198.18.77.0/24"]);
        let live: HashSet<IpAddr> = ["198.18.77.2", "198.18.77.3", "198.18.77.99"]
            .iter()
            .map(|a| ip(a))
            .collect();
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(1), at_us(0));
        let (asked, end) = run(&mut r, |a, _| live.contains(&a).then(|| mac_of(a)), None);
        // 255 (our own address is the kernel's), then the 252 that stayed silent.
        let first: Vec<_> = asked.iter().take(255).collect();
        assert!(!first.iter().any(|(_, a)| *a == ip("198.18.77.1")));
        assert_eq!(asked.len(), 255 + 252);
        assert_eq!(r.totals().asked, 255);
        assert_eq!(r.totals().resolved, 3);
        assert_eq!(r.totals().rounds, 2);
        // The second round starts one adaptive wait after the first ended: RTTs of 30 µs
        // give the floor, 50 ms.
        let last0 = asked[254].0;
        let first1 = asked[255].0;
        assert!(
            first1 >= last0 + 50_000 && first1 < last0 + 51_000,
            "{last0} {first1}"
        );
        assert!(
            end >= asked.last().unwrap().0 + 50_000,
            "and drains as long after the last"
        );
        let n = r.finish();
        assert_eq!(
            n.next_hop(ip("198.18.77.2")),
            NextHop::Mac(mac_of(ip("198.18.77.2")))
        );
        assert_eq!(n.next_hop(ip("198.18.77.4")), NextHop::Down);
        assert!(n.is_down(ip("198.18.77.4")));
        assert!(!n.is_down(ip("198.18.77.1")));
        assert_eq!(n.next_hop(ip("198.18.77.1")), NextHop::Kernel);
        assert_eq!(
            n.host(ip("198.18.77.99")),
            Some(HostLink::Resolved(
                mac_of(ip("198.18.77.99")),
                Resolution::Arp
            ))
        );
        assert_eq!(
            n.host(ip("198.18.77.4")),
            Some(HostLink::Unresolved(Resolution::Arp))
        );
        assert_eq!(n.host(ip("198.51.100.7")), None);
        // The default gateway was never asked about (no off-link target) and is unknown:
        // an off-link address goes the kernel's way.
        assert_eq!(n.next_hop(ip("198.51.100.7")), NextHop::Kernel);
    }

    /// An address several specs name is one neighbour: asked once a round, counted once
    /// (the summary's "N of M on-link addresses"), and no retry round for it once it
    /// answered.
    #[test]
    fn an_address_named_twice_is_asked_about_once() {
        let t = targets(&["198.18.77.9", "198.18.77.8/30", "198.18.77.9", "fd00:77::5"]);
        let live = [ip("198.18.77.9"), ip("fd00:77::5")];
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(1), at_us(0));
        let (asked, _) = run(&mut r, |a, _| live.contains(&a).then(|| mac_of(a)), None);
        let first: Vec<IpAddr> = asked.iter().map(|x| x.1).take(5).collect();
        let mut unique = first.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{first:?}");
        assert_eq!((r.totals().asked, r.totals().resolved), (5, 2));
        // The retry round asks the three silent ones of the /30, each once.
        assert_eq!(asked.len(), 5 + 3);
    }

    #[test]
    fn a_late_answer_is_caught_by_the_retry() {
        let t = targets(&["fd00:77::/120"]);
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(1), at_us(0));
        // fd00:77::5 answers only its second solicitation; the first answer comes too late.
        let (asked, _) = run(
            &mut r,
            |a, n| match a {
                a if a == ip("fd00:77::2") => Some(mac_of(a)),
                a if a == ip("fd00:77::5") && n == 1 => Some(mac_of(a)),
                _ => None,
            },
            None,
        );
        assert_eq!(asked.len(), 255 + 254);
        let n = r.finish();
        assert_eq!(
            n.host(ip("fd00:77::5")),
            Some(HostLink::Resolved(mac_of(ip("fd00:77::5")), Resolution::Nd))
        );
        assert_eq!(
            n.host(ip("fd00:77::6")),
            Some(HostLink::Unresolved(Resolution::Nd))
        );
    }

    #[test]
    fn everyone_answering_ends_at_once_without_a_retry() {
        let t = targets(&["198.18.77.2-9"]);
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(3), at_us(0));
        let (asked, end) = run(&mut r, |a, _| Some(mac_of(a)), None);
        assert_eq!(asked.len(), 8);
        // The last answer comes 30 µs after the last request: nothing is left to wait for.
        assert!(end <= asked.last().unwrap().0 + 31, "{end}");
    }

    #[test]
    fn gateways_the_kernel_knows_are_not_asked() {
        let t = targets(&["198.51.100.0/30"]);
        let gw = ip("198.18.77.254");
        let known = HashMap::from([(gw, MacAddr([2, 0, 0, 0, 0, 0xfe]))]);
        let mut r = Resolver::new(&t, links(), known, plan(1), at_us(0));
        let (asked, end) = run(&mut r, |_, _| None, None);
        assert!(asked.is_empty() && end == 0, "{asked:?}");
        let n = r.finish();
        assert_eq!(
            n.next_hop(ip("198.51.100.1")),
            NextHop::Mac(MacAddr([2, 0, 0, 0, 0, 0xfe]))
        );
        // Otherwise the gateway is asked about like an on-link target…
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(1), at_us(0));
        let (asked, _) = run(&mut r, |a, _| (a == gw).then(|| mac_of(a)), None);
        assert_eq!(asked.iter().map(|x| x.1).collect::<Vec<_>>(), [gw]);
        assert_eq!(
            r.finish().next_hop(ip("198.51.100.1")),
            NextHop::Mac(mac_of(gw))
        );
        // …and one that never answers sends its targets the kernel's way, not to nowhere.
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(1), at_us(0));
        let (asked, end) = run(&mut r, |_, _| None, None);
        assert_eq!(asked.len(), 2);
        // No reply at all: the initial wait (1 s) after each round.
        assert!(end >= 2_000_000, "{end}");
        // Counted as a gateway, not a host, and named for the summary's warning.
        let totals = r.totals();
        assert_eq!(
            (totals.asked, totals.gateways_asked, totals.resolved),
            (1, 1, 0)
        );
        assert_eq!(totals.silent_gateway, Some(gw));
        let n = r.finish();
        assert_eq!(n.next_hop(ip("198.51.100.1")), NextHop::Kernel);
        assert!(!n.is_down(ip("198.51.100.1")));
    }

    #[test]
    fn a_request_batched_but_not_yet_sent_is_still_waited_for() {
        // At a high rate the walk can end before the driver has sent (and reported) its
        // batch: the drain must wait from the send, not end for want of one.
        let t = targets(&["198.18.77.2"]);
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(0), at_us(0));
        assert_eq!(r.poll(at_us(0), false), ResolveStep::Ask(ip("198.18.77.2")));
        let step = r.poll(at_us(0), false);
        assert!(matches!(step, ResolveStep::Wait(_)), "{step:?}");
        r.sent(ip("198.18.77.2"), at_us(1));
        assert!(r.answer(ip("198.18.77.2"), US_MAC, at_us(40)));
        assert_eq!(r.poll(at_us(41), false), ResolveStep::Done);
    }

    #[test]
    fn the_kernels_entries_for_on_link_hosts_are_not_believed() {
        let t = targets(&["198.18.77.2-3"]);
        let stale = HashMap::from([(ip("198.18.77.2"), MacAddr([2, 0, 0, 0, 0, 2]))]);
        let mut r = Resolver::new(&t, links(), stale, plan(0), at_us(0));
        let (asked, _) = run(&mut r, |_, _| None, None);
        assert_eq!(asked.len(), 2, "both asked");
        assert!(
            r.finish().is_down(ip("198.18.77.2")),
            "gone, whatever the kernel remembers"
        );
    }

    #[test]
    fn stop_ends_the_asking_and_nobody_is_called_down() {
        let t = targets(&["198.18.77.0/24"]);
        let mut r = Resolver::new(
            &t,
            links(),
            HashMap::new(),
            ResolvePlan {
                rate: 1_000,
                retries: 1,
                wait: Wait::Fixed(Duration::from_millis(10)),
            },
            at_us(0),
        );
        let (asked, end) = run(&mut r, |_, _| None, Some(20_000));
        assert!(r.interrupted());
        assert!(asked.len() < 30, "{}", asked.len());
        assert!(
            end >= asked.last().unwrap().0 + 10_000,
            "the drain still runs"
        );
        let n = r.finish();
        assert!(!n.is_down(ip("198.18.77.200")));
        assert_eq!(n.host(ip("198.18.77.200")), None);
    }

    #[test]
    fn a_wait_too_short_for_any_answer_still_waits_the_floor_for_neighbours() {
        // `scan --wait 0s` (masscan's "do not wait"): the SYNs' affair. Its ARP round
        // waited nothing, the answers 30 µs later found it over, and the live host was
        // called down, nothing scanned.
        let t = targets(&["198.18.77.0/24"]);
        for wait in [
            Duration::ZERO,
            Duration::from_micros(1),
            Duration::from_millis(20),
        ] {
            let mut r = Resolver::new(
                &t,
                links(),
                HashMap::new(),
                ResolvePlan {
                    rate: 1_000_000,
                    retries: 0,
                    wait: Wait::Fixed(wait),
                },
                at_us(0),
            );
            let (asked, end) = run(
                &mut r,
                |a, _| (a == ip("198.18.77.7")).then(|| mac_of(a)),
                None,
            );
            assert_eq!(asked.len(), 255);
            let floor = u64::try_from(rtt::FLOOR.as_micros()).unwrap();
            assert_eq!(end, asked.last().unwrap().0 + floor, "{wait:?}");
            let n = r.finish();
            assert!(!n.is_down(ip("198.18.77.7")), "{wait:?}");
            assert!(n.is_down(ip("198.18.77.8")), "{wait:?}");
        }
    }

    #[test]
    fn the_rate_is_held_and_a_fixed_wait_is_kept() {
        let t = targets(&["198.18.77.0/24"]);
        let mut r = Resolver::new(
            &t,
            links(),
            HashMap::new(),
            ResolvePlan {
                rate: 10_000,
                retries: 0,
                wait: Wait::Fixed(Duration::from_millis(300)),
            },
            at_us(0),
        );
        let (asked, end) = run(
            &mut r,
            |a, _| (a == ip("198.18.77.7")).then(|| mac_of(a)),
            None,
        );
        assert_eq!(asked.len(), 255);
        let span = asked.last().unwrap().0 - asked[0].0;
        assert!((20_000..=25_500).contains(&span), "{span} µs");
        assert_eq!(end, asked.last().unwrap().0 + 300_000);
    }

    #[test]
    fn answers_for_addresses_not_asked_about_are_ignored() {
        let t = targets(&["198.18.77.2-3"]);
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(0), at_us(0));
        assert!(
            !r.answer(ip("198.18.77.50"), US_MAC, at_us(1)),
            "not a target"
        );
        assert!(
            !r.answer(ip("198.51.100.1"), US_MAC, at_us(1)),
            "not on-link"
        );
        assert!(r.answer(ip("198.18.77.2"), mac_of(ip("198.18.77.2")), at_us(1)));
        assert!(
            !r.answer(ip("198.18.77.2"), US_MAC, at_us(2)),
            "the first answer stays"
        );
        assert_eq!(
            r.finish().next_hop(ip("198.18.77.2")),
            NextHop::Mac(mac_of(ip("198.18.77.2")))
        );
    }

    #[test]
    fn replies_are_parsed_for_our_addresses_only() {
        let links = links();
        let them = MacAddr([2, 0, 0, 0, 0, 2]);
        let mut frame = [0u8; 64];
        let eth = EthernetRepr {
            dst: US_MAC,
            src: them,
            ethertype: ETHERTYPE_ARP,
        };
        eth.emit(&mut frame).unwrap();
        let reply = ArpRepr {
            op: crate::wire::arp::OP_REPLY,
            sender_mac: them,
            sender_ip: Ipv4Addr::new(198, 18, 77, 2),
            target_mac: US_MAC,
            target_ip: Ipv4Addr::new(198, 18, 77, 1),
        };
        reply.emit(&mut frame[14..]).unwrap();
        assert_eq!(
            parse_reply(&frame[..42], &links),
            Some((ip("198.18.77.2"), them))
        );
        assert_eq!(
            parse_reply(&frame[..42], &[None, links[1].clone()]),
            None,
            "no IPv4 link"
        );
        let to_other = ArpRepr {
            target_ip: Ipv4Addr::new(198, 18, 77, 9),
            ..reply
        };
        to_other.emit(&mut frame[14..]).unwrap();
        assert_eq!(parse_reply(&frame[..42], &links), None);
        // A solicitation of ours is not a reply.
        let mut ns = [0u8; 128];
        let n = ndp::emit_solicitation_frame(
            them,
            "fd00:77::2".parse().unwrap(),
            "fd00:77::1".parse().unwrap(),
            &mut ns,
        )
        .unwrap();
        assert_eq!(parse_reply(&ns[..n], &links), None);
    }

    proptest! {
        #[test]
        fn parse_reply_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_reply(&bytes, &links());
        }

        /// Whatever answers whenever, the resolver ends, asks each address at most
        /// 1 + retries times, and believes only what it asked about.
        #[test]
        fn any_answers_end_in_bounded_requests(
            live in proptest::collection::vec(any::<u8>(), 0..40),
            late in any::<u8>(),
            retries in 0u8..3,
        ) {
            let t = targets(&["198.18.77.0/26", "fd00:77::/122"]);
            let mut r = Resolver::new(&t, links(), HashMap::new(), plan(retries), at_us(0));
            let live: HashSet<u8> = live.into_iter().map(|b| b % 64).collect();
            let (asked, _) = run(&mut r, |a, n| {
                let low = (value(a) % 64) as u8;
                (live.contains(&low) && (n > 0 || low != late % 64)).then(|| mac_of(a))
            }, None);
            let mut per: HashMap<IpAddr, u32> = HashMap::new();
            for (_, a) in &asked {
                *per.entry(*a).or_default() += 1;
            }
            prop_assert!(per.values().all(|&n| n <= 1 + u32::from(retries)));
            prop_assert!(!per.contains_key(&ip("198.18.77.1")) && !per.contains_key(&ip("fd00:77::1")));
        }
    }

    /// A reply that comes before its address is asked (to the kernel's own ARP / ND
    /// refresh for a host it talks to, or sent unasked) resolves it, and round 0's walk
    /// then passes it by: it counts as asked too. Counted as resolved only, it made round
    /// 0's last lost answer look answered — no retry round, and the host that lost it was
    /// called down and got no SYN.
    #[test]
    fn a_reply_before_its_request_does_not_end_resolution_early() {
        let t = targets(&["198.18.77.8/30"]);
        // .10 loses its first answer; .11 is not there.
        let answers = |a: IpAddr, n: u8| match a {
            a if a == ip("198.18.77.10") => (n >= 1).then(|| mac_of(a)),
            a if a == ip("198.18.77.11") => None,
            a => Some(mac_of(a)),
        };
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(2), at_us(0));
        run(&mut r, answers, None);
        assert!(!r.finish().is_down(ip("198.18.77.10")), "round 1 finds it");
        // The same, with a reply for .11 before anything is asked.
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(2), at_us(0));
        assert!(r.answer(ip("198.18.77.11"), MacAddr([2, 0, 0, 0, 9, 9]), at_us(0)));
        let (asked, _) = run(&mut r, answers, None);
        assert_eq!(
            asked
                .iter()
                .filter(|&&(_, a)| a == ip("198.18.77.10"))
                .count(),
            2,
            "asked again in round 1: {asked:?}"
        );
        assert_eq!((r.totals().asked, r.totals().resolved), (4, 4));
        assert!(!r.finish().is_down(ip("198.18.77.10")));
    }

    /// A gateway the kernel knew is in `macs` from the start and never asked: walking past
    /// it (it is also a target) counts nothing, so a resolution that found everyone ends
    /// without a round more.
    #[test]
    fn a_known_gateway_among_the_targets_is_not_counted_as_asked() {
        let t = targets(&["198.18.77.1/32"]);
        let known = HashMap::from([(ip("198.18.77.1"), MacAddr([2, 0, 0, 0, 0, 1]))]);
        let mut r = Resolver::new(&t, links(), known, plan(2), at_us(0));
        let (asked, _) = run(&mut r, |a, _| Some(mac_of(a)), None);
        assert!(asked.is_empty(), "{asked:?}");
        assert_eq!((r.totals().asked, r.totals().resolved), (0, 0));
    }

    /// A gateway that is a target too is asked about once and counted once: both live,
    /// nobody down.
    #[test]
    fn a_gateway_among_the_targets_is_asked_and_counted_once() {
        let gw = ip("198.18.77.254");
        let t = targets(&["198.18.77.254", "198.51.100.2"]);
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(2), at_us(0));
        let (asked, _) = run(&mut r, |a, _| Some(mac_of(a)), None);
        assert_eq!(asked.iter().map(|x| x.1).collect::<Vec<_>>(), [gw]);
        assert_eq!((r.totals().asked, r.totals().resolved), (1, 1));
        assert_eq!(r.totals().gateways_asked, 0, "a target, not a gateway only");
        let n = r.finish();
        assert_eq!(n.next_hop(ip("198.51.100.2")), NextHop::Mac(mac_of(gw)));
        assert!(!n.is_down(gw));
    }

    /// `retries` 255 (the `u8` a `ResolvePlan` allows; the CLI caps it at 10) with every
    /// round resolving someone new: 256 rounds, counted without overflow.
    #[test]
    fn two_hundred_fifty_six_rounds_are_counted() {
        let t = targets(&["198.18.77.0/24"]);
        // .0 never answers; .k (k ≥ 2) answers its (k − 1)-th request: rounds 1 to 254
        // each resolve one address, so round 255 comes too.
        let answers = |a: IpAddr, n: u8| {
            let v = value(a) as u8;
            (v >= 2 && n == v - 1).then(|| mac_of(a))
        };
        let mut r = Resolver::new(&t, links(), HashMap::new(), plan(255), at_us(0));
        // `run`'s per-address request count is a u8 (.0 is asked 256 times): driven here.
        let (mut now, mut asks) = (0u64, HashMap::<IpAddr, u32>::new());
        // Bounded: 256 rounds of at most 256 requests, and their waits.
        for _ in 0..1_000_000 {
            match r.poll(at_us(now), false) {
                ResolveStep::Ask(a) => {
                    r.sent(a, at_us(now));
                    let n = asks.entry(a).or_insert(0);
                    if let Ok(k) = u8::try_from(*n)
                        && let Some(m) = answers(a, k)
                    {
                        r.answer(a, m, at_us(now + 1));
                    }
                    *n += 1;
                    now += 1;
                }
                ResolveStep::Wait(w) => now = now.max((w.as_nanos() - T0).div_ceil(1000)),
                ResolveStep::Done => break,
            }
        }
        assert_eq!(asks[&ip("198.18.77.0")], 256, "rounds 0 to 255");
        assert_eq!(r.totals().rounds, 255, "saturated");
    }
}
