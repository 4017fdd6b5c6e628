//! The trace against a simulated path in virtual time: routers that decrement the TTL,
//! quote what expired (all of it, or RFC 792's 8 bytes of TCP), rewrite fields on the way
//! in or out, drop SYNs or answer with unreachables; a destination that answers SYNs (and,
//! in-session, keep-alives and the close) as Linux does. Every packet the trace sends is
//! "seen on the tap" 1 µs later, every answer after the path's round trip.

use super::record::{self, QuoteKind, TraceMode, TraceRecord};
use super::summary::nanos;
use super::*;
use crate::probe::record::Reason;
use crate::wire::checksum;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const T0: u64 = 1_700_000_000_000_000_000;
const C4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const S4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 9, 2));
const C6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
const S6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 2));
/// The flow label the simulated kernel writes on our IPv6 packets.
const FLOW: u32 = 0x5_a5a5;
const SERVER_ISN: u32 = 777_000;

fn at0() -> Instant {
    Instant::from_nanos(T0)
}

fn cfg(v6: bool, mode: TraceMode) -> TraceConfig {
    let (c, s) = if v6 { (C6, S6) } else { (C4, S4) };
    TraceConfig {
        target: SocketAddr::new(s, 80).to_string(),
        mode,
        tcp: tcp::Config {
            local: SocketAddr::new(c, 40000),
            remote: SocketAddr::new(s, 80),
            isn: SeqNumber(0xffff_f000),
            mss: 1460,
            syn_window: 64240,
            rcv_buf: 128 * 1024,
            wscale: 7,
            sack_permitted: true,
            timestamps: true,
            ts_offset: 5000,
            syn_retries: 2,
            data_retries: 4,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            time_wait: Duration::from_millis(100),
            ack_with_data: false,
            known_path_mtu: None,
        },
        first_ttl: 1,
        max_ttl: 30,
        probes: 3,
        parallel: 8,
        timeout: Duration::from_secs(1),
        interval: Duration::from_millis(10),
        gap: 5,
        tos: 0,
        ident: 0xfff0,
        hop_limit: 64,
        close_timeout: Duration::from_secs(2),
    }
}

// --- packet surgery ---

fn tcp_at(pkt: &[u8]) -> usize {
    if pkt[0] >> 4 == 4 {
        usize::from(pkt[0] & 0xf) * 4
    } else {
        40
    }
}

fn addrs(pkt: &[u8]) -> (IpAddr, IpAddr) {
    if pkt[0] >> 4 == 4 {
        let a = |o: usize| IpAddr::V4(Ipv4Addr::new(pkt[o], pkt[o + 1], pkt[o + 2], pkt[o + 3]));
        (a(12), a(16))
    } else {
        let a = |o: usize| {
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&pkt[o..o + 16]).unwrap(),
            ))
        };
        (a(8), a(24))
    }
}

/// Put the IPv4 header checksum and the TCP checksum right again.
fn fix(pkt: &mut [u8]) {
    let at = tcp_at(pkt);
    if pkt[0] >> 4 == 4 {
        pkt[10..12].fill(0);
        let c = checksum::internet_checksum(0, &pkt[..at]);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let (s, d) = addrs(pkt);
    pkt[at + 16..at + 18].fill(0);
    let c = checksum::upper_layer_checksum(s, d, PROTO_TCP, &pkt[at..]);
    pkt[at + 16..at + 18].copy_from_slice(&c.to_be_bytes());
}

fn ttl_of(pkt: &[u8]) -> u8 {
    if pkt[0] >> 4 == 4 { pkt[8] } else { pkt[7] }
}

fn set_ttl(pkt: &mut [u8], ttl: u8) {
    if pkt[0] >> 4 == 4 {
        pkt[8] = ttl;
        pkt[10..12].fill(0);
        let at = tcp_at(pkt);
        let c = checksum::internet_checksum(0, &pkt[..at]);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        pkt[7] = ttl;
    }
}

fn set_tos(pkt: &mut [u8], tos: u8) {
    if pkt[0] >> 4 == 4 {
        pkt[1] = tos;
    } else {
        pkt[0] = 0x60 | (tos >> 4);
        pkt[1] = (pkt[1] & 0x0f) | (tos << 4);
    }
    fix(pkt);
}

fn tos_of(pkt: &[u8]) -> u8 {
    if pkt[0] >> 4 == 4 {
        pkt[1]
    } else {
        (pkt[0] << 4) | (pkt[1] >> 4)
    }
}

/// Rewrite the MSS option (as `tcp option maxseg size set` does) and the checksum.
fn clamp_mss(pkt: &mut [u8], mss: u16) {
    let at = tcp_at(pkt);
    let end = at + usize::from(pkt[at + 12] >> 4) * 4;
    let mut i = at + 20;
    while i + 1 < end {
        match pkt[i] {
            0 => break,
            1 => i += 1,
            2 => {
                pkt[i + 2..i + 4].copy_from_slice(&mss.to_be_bytes());
                break;
            }
            _ => i += usize::from(pkt[i + 1]).max(2),
        }
    }
    fix(pkt);
}

/// SACK-permitted replaced by two NOPs (`reset tcp option sack-perm`).
fn strip_sack_permitted(pkt: &mut [u8]) {
    let at = tcp_at(pkt);
    let end = at + usize::from(pkt[at + 12] >> 4) * 4;
    let mut i = at + 20;
    while i + 1 < end {
        match pkt[i] {
            0 => break,
            1 => i += 1,
            4 => {
                pkt[i] = 1;
                pkt[i + 1] = 1;
                break;
            }
            _ => i += usize::from(pkt[i + 1]).max(2),
        }
    }
    fix(pkt);
}

fn set_src(pkt: &mut [u8], src: IpAddr) {
    match src {
        IpAddr::V4(a) => pkt[12..16].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => pkt[8..24].copy_from_slice(&a.octets()),
    }
    fix(pkt);
}

fn is_syn(pkt: &[u8]) -> bool {
    let at = tcp_at(pkt);
    pkt[at + 13] & 0x12 == 0x02
}

// --- the simulated path ---

type Mutate = Box<dyn Fn(&mut Vec<u8>)>;
/// Says which packets a link drops.
type Dropper = Box<dyn FnMut(&[u8]) -> bool>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Forward,
    /// A firewall that drops SYNs it would forward.
    DropSyn,
    /// Forwarding fails: this ICMP error instead (type, code).
    Unreach(u8, u8),
    /// A firewall that answers the SYNs it would forward with a RST in the destination's
    /// name (nftables `reject with tcp reset`), sent with TTL 64 from where it stands.
    ResetSyn,
}

struct Router {
    addr: IpAddr,
    /// On arrival: shows in this router's own quote.
    pre: Option<Mutate>,
    /// On the way out: shows from the next hop on.
    post: Option<Mutate>,
    /// `None`: sends no ICMP at all; else quotes at most this many bytes.
    quote: Option<usize>,
    /// Quotes padded to 128 bytes with an RFC 4884 length and an extension after them.
    rfc4884: bool,
    action: Action,
    /// The TTL its ICMP errors arrive with, when the way back is not the way out.
    back_ttl: Option<u8>,
    /// How long its unreachables take (Linux: ~3 s of failed ARP / ND before a host
    /// unreachable).
    unreach_delay: Duration,
}

impl Router {
    fn new(addr: IpAddr) -> Router {
        Router {
            addr,
            pre: None,
            post: None,
            quote: Some(576),
            rfc4884: false,
            action: Action::Forward,
            back_ttl: None,
            unreach_delay: Duration::ZERO,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dest {
    Open,
    Closed,
    Silent,
}

struct Tapped {
    at: Instant,
    outgoing: bool,
    bytes: Vec<u8>,
}

struct Net {
    v6: bool,
    routers: Vec<Router>,
    dest: Dest,
    /// One way, per link.
    link: Duration,
    events: Vec<Tapped>,
    /// Everything the trace sent: (when, where to, hop limit).
    sent: Vec<(Instant, IpAddr, u8, Vec<u8>)>,
    /// The server's side of an in-session connection: its RCV.NXT once synchronized.
    rcv_nxt: Option<u32>,
    server_fin_sent: bool,
    /// Half-open connection at the destination (SYN mode): the SYN's sequence number.
    half_open: Option<u32>,
    /// SYNs that met the half-open connection. Linux answers the first with a challenge
    /// ACK (`tcp_check_req`: an out-of-window SYN) and the rest with nothing (at most one
    /// such ACK per `tcp_invalid_ratelimit`, 500 ms).
    collisions: u32,
    /// When the half-open connection last sent a challenge ACK (Linux: one per
    /// `tcp_invalid_ratelimit`, 500 ms, per connection: `last_oow_ack_time`).
    challenged_at: Option<Instant>,
    /// Loss on the last link, toward the destination: drops the packets it says yes to.
    drop_last_link: Option<Dropper>,
    /// Extra delay on the last link, each way (a slow link to the server).
    last_link_delay: Duration,
    /// The TTL each SYN that reached the destination left us with, in order.
    syns_at_dest: Vec<u8>,
    rsts_received: u32,
    /// The destination does not do timestamps (Windows' default).
    no_timestamps: bool,
    /// The kernel holds every packet (an on-link next hop that never answers ARP / ND):
    /// nothing reaches the tap or the wire.
    held: bool,
    /// Loopback: the destination is this host (same address at both ends, no routers),
    /// and the tap keeps only the arriving copy of each packet, ours included.
    loopback: bool,
    /// The tap misses the copies of our packets (a full queue), which still go out.
    untapped: bool,
}

impl Net {
    fn new(v6: bool, hops: usize, dest: Dest) -> Net {
        let routers = (1..=hops)
            .map(|i| {
                Router::new(if v6 {
                    IpAddr::V6(Ipv6Addr::new(0xfd00, i as u16, 0, 0, 0, 0, 0, 0xfe))
                } else {
                    IpAddr::V4(Ipv4Addr::new(198, 18, i as u8, 254))
                })
            })
            .collect();
        Net {
            v6,
            routers,
            dest,
            link: Duration::from_micros(100),
            events: Vec::new(),
            sent: Vec::new(),
            rcv_nxt: None,
            server_fin_sent: false,
            half_open: None,
            collisions: 0,
            challenged_at: None,
            drop_last_link: None,
            last_link_delay: Duration::ZERO,
            syns_at_dest: Vec::new(),
            rsts_received: 0,
            no_timestamps: false,
            held: false,
            loopback: false,
            untapped: false,
        }
    }

    fn local(&self) -> IpAddr {
        match (self.loopback, self.v6) {
            (true, false) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (true, true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            (false, true) => C6,
            (false, false) => C4,
        }
    }

    fn remote(&self) -> IpAddr {
        match (self.loopback, self.v6) {
            (true, _) => self.local(),
            (false, true) => S6,
            (false, false) => S4,
        }
    }

    fn rtt(&self, hop: usize) -> Duration {
        self.link * (2 * hop as u32)
    }

    fn tap(&mut self, at: Instant, outgoing: bool, bytes: Vec<u8>) {
        self.events.push(Tapped {
            at,
            outgoing,
            bytes,
        });
    }

    fn next_at(&self) -> Option<Instant> {
        self.events.iter().map(|e| e.at).min()
    }

    fn take_due(&mut self, now: Instant) -> Vec<Tapped> {
        let mut due: Vec<Tapped> = Vec::new();
        let mut i = 0;
        while i < self.events.len() {
            if self.events[i].at <= now {
                due.push(self.events.remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|e| e.at);
        due
    }

    /// What the kernel makes of a transmit: the datagram on the wire.
    fn datagram(&self, t: &Transmit) -> Vec<u8> {
        if !self.v6 {
            return t.bytes.clone();
        }
        let mut p = vec![0u8; 40];
        let word = 0x6000_0000u32 | (u32::from(t.tos) << 20) | FLOW;
        p[0..4].copy_from_slice(&word.to_be_bytes());
        p[4..6].copy_from_slice(&(t.bytes.len() as u16).to_be_bytes());
        p[6] = PROTO_TCP;
        p[7] = t.hop_limit;
        if let (IpAddr::V6(s), IpAddr::V6(d)) = (self.local(), t.dst) {
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
        }
        p.extend_from_slice(&t.bytes);
        p
    }

    fn send(&mut self, now: Instant, t: &Transmit) {
        let mut pkt = self.datagram(t);
        self.sent.push((now, t.dst, ttl_of(&pkt), pkt.clone()));
        if self.held {
            return;
        }
        // On loopback the copy the tap keeps is the arriving one (tap.rs).
        if !self.untapped {
            self.tap(now + Duration::from_micros(1), !self.loopback, pkt.clone());
        }
        for i in 0..self.routers.len() {
            let hop = i + 1;
            if let Some(m) = &self.routers[i].pre {
                m(&mut pkt);
            }
            if ttl_of(&pkt) <= 1 {
                if let Some(n) = self.routers[i].quote {
                    let mut q = pkt[..pkt.len().min(n)].to_vec();
                    let (ty, code) = if self.v6 { (3, 0) } else { (11, 0) };
                    let icmp = if self.routers[i].rfc4884 {
                        // RFC 4884 §5.1: padded to 128 bytes, then an extension structure
                        // (version 2, an MPLS label stack object, RFC 4950).
                        q.resize(128, 0);
                        q.extend_from_slice(&[0x20, 0, 0, 0, 0, 8, 1, 1, 0, 0x10, 0x01, 0xff]);
                        let mut m = self.icmp(self.routers[i].addr, ty, code, &q);
                        let at = if self.v6 { 40 } else { 20 };
                        if self.v6 {
                            m[at + 4] = 16; // 128 bytes in 64-bit words
                        } else {
                            m[at + 5] = 32; // in 32-bit words
                        }
                        refresh_icmp(&mut m);
                        m
                    } else {
                        self.icmp(self.routers[i].addr, ty, code, &q)
                    };
                    self.tap(now + self.rtt(hop), false, icmp);
                }
                return;
            }
            match self.routers[i].action {
                Action::Forward => {}
                Action::DropSyn if is_syn(&pkt) => return,
                Action::DropSyn => {}
                Action::ResetSyn if is_syn(&pkt) => {
                    let ip = IpPacket::parse(&pkt).expect("valid");
                    let seg = TcpRepr::parse(ip.payload, ip.ip.src, ip.ip.dst).expect("valid");
                    let mut rst = self.segment(
                        0,
                        seg.seq.0.wrapping_add(1),
                        TcpFlags::RST | TcpFlags::ACK,
                        TcpOptions::default(),
                    );
                    set_ttl(&mut rst, 64 - i as u8);
                    self.tap(now + self.rtt(hop), false, rst);
                    return;
                }
                Action::ResetSyn => {}
                Action::Unreach(ty, code) => {
                    let q = pkt[..pkt.len().min(576)].to_vec();
                    let icmp = self.icmp(self.routers[i].addr, ty, code, &q);
                    let delay = self.routers[i].unreach_delay;
                    self.tap(now + self.rtt(hop) + delay, false, icmp);
                    return;
                }
            }
            if let Some(m) = &self.routers[i].post {
                m(&mut pkt);
            }
            let ttl = ttl_of(&pkt) - 1;
            set_ttl(&mut pkt, ttl);
        }
        if let Some(drop) = &mut self.drop_last_link
            && drop(&pkt)
        {
            return;
        }
        let hop = self.routers.len() + 1;
        let at = now + self.rtt(hop) + self.last_link_delay * 2;
        let arrival = now + self.link * hop as u32 + self.last_link_delay;
        if let Some(reply) = self.destination(arrival, &pkt) {
            self.tap(at, false, reply);
        }
    }

    /// An ICMP error from `from` to us quoting `quote`.
    fn icmp(&self, from: IpAddr, ty: u8, code: u8, quote: &[u8]) -> Vec<u8> {
        let mut m = vec![ty, code, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(quote);
        let proto = if self.v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
        let sum = if self.v6 {
            checksum::upper_layer_checksum(from, self.local(), PROTO_ICMPV6, &m)
        } else {
            checksum::internet_checksum(0, &m)
        };
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        // Sent with Linux's 64, less one for each router on the way back (a router
        // that is not on the path: 60).
        let ttl = match self.routers.iter().position(|r| r.addr == from) {
            Some(i) => self.routers[i].back_ttl.unwrap_or(64 - i as u8),
            None => 60,
        };
        let ip = IpRepr::new(from, self.local(), proto, ttl, m.len());
        let mut out = vec![0u8; ip.header_len()];
        ip.emit(&mut out).unwrap();
        out.extend_from_slice(&m);
        out
    }

    fn segment(&self, seq: u32, ack: u32, flags: TcpFlags, options: TcpOptions) -> Vec<u8> {
        let seg = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            flags,
            window: 509,
            urgent: 0,
            options,
            payload: &[],
        };
        let ttl = 64 - self.routers.len() as u8;
        let ip = IpRepr::new(
            self.remote(),
            self.local(),
            PROTO_TCP,
            ttl,
            seg.buffer_len(),
        );
        let mut out = vec![0u8; ip.header_len() + seg.buffer_len()];
        let n = ip.emit(&mut out).unwrap();
        seg.emit(self.remote(), self.local(), &mut out[n..])
            .unwrap();
        out
    }

    /// The destination's answer, Linux-like.
    fn destination(&mut self, now: Instant, pkt: &[u8]) -> Option<Vec<u8>> {
        let ip = IpPacket::parse(pkt).expect("a valid packet reaches the destination");
        let seg = TcpRepr::parse(ip.payload, ip.ip.src, ip.ip.dst).expect("valid TCP");
        let no_ts = self.no_timestamps;
        let ts = |echo: u32| {
            if no_ts {
                TcpOptions::default()
            } else {
                TcpOptions::default().with_timestamps(4242, echo)
            }
        };
        let tsval = seg.options.timestamps.map_or(0, |t| t.0);
        if seg.flags.syn() {
            let hops = self.routers.len() as u8;
            self.syns_at_dest.push(ip.ip.ttl.saturating_add(hops));
        }
        if seg.flags.rst() {
            self.rsts_received += 1;
            // In window only: the half-open connection's RCV.NXT, its SYN's ISN + 1
            // (RFC 9293 §3.10.7.4; our probes' ISNs are 2^22 apart, beyond any window).
            if self
                .half_open
                .is_some_and(|s| seg.seq.0 == s.wrapping_add(1))
            {
                self.half_open = None;
            }
            return None;
        }
        match self.dest {
            Dest::Silent => None,
            Dest::Closed if seg.flags.syn() => Some(self.segment(
                0,
                seg.seq.0.wrapping_add(1),
                TcpFlags::RST | TcpFlags::ACK,
                TcpOptions::default(),
            )),
            Dest::Closed => None,
            Dest::Open if seg.flags.syn() => {
                if self.rcv_nxt.is_none() {
                    if let Some(first) = self.half_open {
                        self.collisions += 1;
                        // The challenge ACK: the half-open connection's own numbers.
                        let first_one = self
                            .challenged_at
                            .is_none_or(|t| now.saturating_since(t) >= Duration::from_millis(500));
                        if first_one {
                            self.challenged_at = Some(now);
                        }
                        return first_one.then(|| {
                            self.segment(
                                SERVER_ISN.wrapping_add(1),
                                first.wrapping_add(1),
                                TcpFlags::ACK,
                                ts(tsval),
                            )
                        });
                    }
                    self.half_open = Some(seg.seq.0);
                    self.challenged_at = None;
                }
                let mut o = ts(tsval).with_mss(1460).with_wscale(7);
                o.sack_permitted = true;
                Some(self.segment(
                    SERVER_ISN,
                    seg.seq.0.wrapping_add(1),
                    TcpFlags::SYN | TcpFlags::ACK,
                    o,
                ))
            }
            Dest::Open => {
                // In-session: the handshake's ACK, keep-alives, the close.
                let next = *self.rcv_nxt.get_or_insert(seg.seq.0);
                let ours = SERVER_ISN.wrapping_add(1) + u32::from(self.server_fin_sent);
                if seg.payload.len() == 1 && seg.seq.0.wrapping_add(1) == next {
                    // A duplicate of data we have: an immediate ACK echoing its TSval.
                    return Some(self.segment(ours, next, TcpFlags::ACK, ts(tsval)));
                }
                if seg.flags.fin() {
                    let next = seg.seq.0.wrapping_add(1);
                    self.rcv_nxt = Some(next);
                    self.server_fin_sent = true;
                    return Some(self.segment(
                        ours,
                        next,
                        TcpFlags::FIN | TcpFlags::ACK,
                        ts(tsval),
                    ));
                }
                None
            }
        }
    }
}

/// Recompute the checksum of the ICMP message in the IP packet `m`.
fn refresh_icmp(m: &mut [u8]) {
    let v6 = m[0] >> 4 == 6;
    let at = if v6 { 40 } else { 20 };
    m[at + 2..at + 4].fill(0);
    let (s, d) = addrs(m);
    let sum = if v6 {
        checksum::upper_layer_checksum(s, d, PROTO_ICMPV6, &m[at..])
    } else {
        checksum::internet_checksum(0, &m[at..])
    };
    m[at + 2..at + 4].copy_from_slice(&sum.to_be_bytes());
}

/// Run the trace to the end (bounded), in virtual time.
fn run(trace: &mut Trace, net: &mut Net) -> Instant {
    let mut now = at0();
    // As the driver does: it knows its tap's interface.
    trace.over_loopback(net.loopback);
    trace.start(now);
    for _ in 0..200_000 {
        while let Some(t) = trace.poll_transmit(now) {
            net.send(now, &t);
        }
        if trace.is_done() {
            // The driver's drain: what is still on its way to the tap (the copies of our
            // last packets; a done trace takes nothing else).
            for e in net.take_due(now + Duration::from_millis(20)) {
                trace.handle_packet(e.at, e.outgoing, &e.bytes, false);
            }
            return now;
        }
        let next = match (net.next_at(), trace.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).expect("a trace that is not done has a deadline"),
        };
        now = now.max(next);
        for e in net.take_due(now) {
            trace.handle_packet(e.at, e.outgoing, &e.bytes, false);
            while let Some(t) = trace.poll_transmit(now) {
                net.send(now, &t);
            }
        }
        if trace.poll_timeout().is_some_and(|d| d <= now) {
            trace.handle_timeout(now);
        }
    }
    panic!("the trace did not end");
}

fn trace(v6: bool, mode: TraceMode, net: &mut Net) -> (TraceRecord, Duration) {
    trace_with(cfg(v6, mode), net)
}

fn trace_with(c: TraceConfig, net: &mut Net) -> (TraceRecord, Duration) {
    let mut t = Trace::new(c);
    let end = run(&mut t, net);
    let r = t.into_record();
    // Nothing ever goes anywhere but the target.
    for (_, dst, _, _) in &net.sent {
        assert_eq!(*dst, net.remote());
    }
    // What is counted as sent is what was seen leaving: all of it, unless the kernel
    // held it.
    let left = if net.held || net.untapped {
        0
    } else {
        net.sent.len()
    };
    assert_eq!(r.packets_sent as usize, left, "{r:#?}");
    (r, end.saturating_since(at0()))
}

fn changes(r: &TraceRecord, ttl: u8) -> Vec<(String, String, String)> {
    r.hops
        .iter()
        .find(|h| h.ttl == ttl)
        .map(|h| {
            h.changes
                .iter()
                .map(|c| (c.field.clone(), c.sent.clone(), c.seen.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn fields(r: &TraceRecord, ttl: u8) -> Vec<String> {
    changes(r, ttl).into_iter().map(|c| c.0).collect()
}

#[test]
fn syn_three_routers_then_open() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 3, Dest::Open);
        let (r, took) = trace(v6, TraceMode::Syn, &mut net);
        assert_eq!(r.hops.len(), 4, "{r:#?}");
        for (i, h) in r.hops.iter().take(3).enumerate() {
            assert_eq!(h.ttl, i as u8 + 1);
            assert_eq!(h.addr, Some(net.routers[i].addr));
            assert_eq!(h.reply.as_deref(), Some("time-exceeded"));
            assert_eq!((h.sent, h.lost), (3, 0));
            // Tap to tap: exactly the path's round trip (the copy is stamped 1 µs later).
            let rtt = nanos(net.rtt(i + 1)) - 1000;
            assert_eq!(h.rtt_ns, vec![rtt; 3], "hop {}", h.ttl);
            assert_eq!(h.quote, Some(QuoteKind::Full));
            assert_eq!(h.quoted_ttl, Some(1));
            assert!(h.changes.is_empty(), "{:?}", h.changes);
        }
        let d = &r.hops[3];
        assert_eq!(d.reply.as_deref(), Some("syn-ack"));
        assert_eq!(d.addr, Some(net.remote()));
        assert_eq!(r.destination.state, PortState::Open);
        assert_eq!(r.destination.reason, Reason::SynAck);
        assert_eq!(r.destination.ttl, Some(4));
        assert_eq!(r.destination.rtt_ns.len(), 3);
        assert_eq!(r.lost_after_ttl, None);
        // Every SYN-ACK got its RST: nothing half-open stays at the destination.
        assert_eq!(net.half_open, None);
        assert!(net.rsts_received >= 3);
        assert!(took < Duration::from_millis(100), "{took:?}");
    }
}

#[test]
fn probes_keep_the_flow_and_differ_in_their_keys() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 3, Dest::Open);
        trace(v6, TraceMode::Syn, &mut net);
        let probes: Vec<&Vec<u8>> = net
            .sent
            .iter()
            .filter(|s| is_syn(&s.3))
            .map(|s| &s.3)
            .collect();
        assert!(probes.len() >= 12);
        let q: Vec<QuotedDatagram<'_>> = probes
            .iter()
            .map(|p| QuotedDatagram::parse(p).unwrap())
            .collect();
        let first = &q[0];
        let mut seqs = Vec::new();
        for p in &q {
            let t = p.tcp.unwrap();
            assert_eq!((p.ip.src, p.ip.dst), (first.ip.src, first.ip.dst));
            assert_eq!((t.src_port(), t.dst_port()), (Some(40000), Some(80)));
            assert_eq!(p.ip.flow_label, first.ip.flow_label);
            assert_eq!(p.ip.tos, 0);
            // The probe's SYN: Linux's options.
            let o = t.options().unwrap();
            assert_eq!(
                (o.mss, o.wscale, o.sack_permitted),
                (Some(1460), Some(7), true)
            );
            assert_eq!(t.window(), Some(64240));
            seqs.push(t.seq().unwrap());
        }
        // Sequence numbers 2^22 apart (across the wrap: the first ISN is 0xfffff000).
        for (i, s) in seqs.iter().enumerate() {
            assert!(
                seqs[i + 1..]
                    .iter()
                    .all(|o| o.diff(*s).unsigned_abs() >= SEQ_STRIDE)
            );
        }
        if !v6 {
            let mut ids: Vec<u16> = q.iter().map(|p| p.ip.ident).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), q.len(), "one identification per probe");
        }
    }
}

#[test]
fn changes_are_attributed_to_the_first_hop_that_shows_them() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 4, Dest::Open);
        // Hop 1 quotes RFC 792's minimum; hop 2 clamps the MSS on the way out (seen from
        // hop 3 on); hop 3 marks DSCP cs1 on the way in (seen in its own quote); hop 4
        // strips SACK-permitted on the way in.
        net.routers[0].quote = Some(if v6 { 48 } else { 28 });
        net.routers[1].post = Some(Box::new(|p: &mut Vec<u8>| clamp_mss(p, 1200)));
        net.routers[2].pre = Some(Box::new(|p: &mut Vec<u8>| {
            let t = tos_of(p);
            set_tos(p, (8 << 2) | (t & 3))
        }));
        net.routers[3].pre = Some(Box::new(|p: &mut Vec<u8>| strip_sack_permitted(p)));
        let (r, _) = trace(v6, TraceMode::Syn, &mut net);
        assert_eq!(r.hops[0].quote, Some(QuoteKind::Rfc792));
        assert!(r.hops[0].changes.is_empty());
        assert!(r.hops[1].changes.is_empty(), "{:?}", r.hops[1].changes);
        let h3 = changes(&r, 3);
        assert!(
            h3.contains(&("tcp.mss".into(), "1460".into(), "1200".into())),
            "{h3:?}"
        );
        assert!(
            h3.contains(&("ip.dscp".into(), "cs0 (0)".into(), "cs1 (8)".into())),
            "{h3:?}"
        );
        assert!(fields(&r, 3).contains(&"tcp.checksum".to_string()));
        // The checksum changes again where SACK-permitted is stripped: listed there too.
        let h4 = fields(&r, 4);
        assert_eq!(
            h4,
            vec!["tcp.sack_permitted".to_string(), "tcp.checksum".to_string()],
            "{:?}",
            changes(&r, 4)
        );
        assert!(
            changes(&r, 5).is_empty(),
            "the destination's row quotes nothing"
        );
        assert_eq!(r.destination.ttl, Some(5));
    }
}

#[test]
fn rfc4884_quotes_are_read_to_their_length() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 3, Dest::Open);
        net.routers[1].rfc4884 = true;
        net.routers[1].pre = Some(Box::new(|p: &mut Vec<u8>| clamp_mss(p, 1300)));
        let (r, _) = trace(v6, TraceMode::Syn, &mut net);
        let h = &r.hops[1];
        assert!(h.rfc4884 && !r.hops[0].rfc4884);
        assert_eq!(
            h.quote_len,
            Some(if v6 { 80 } else { 60 }),
            "the SYN, not the padding"
        );
        assert_eq!(h.quote, Some(QuoteKind::Full));
        assert!(fields(&r, 2).contains(&"tcp.mss".to_string()), "{r:#?}");
        // The padding after our SYN is no payload the hop added (fault walk: a scripted
        // hop's RFC 4884 time-exceeded with an MPLS label stack).
        assert!(
            !fields(&r, 2).contains(&"tcp.payload".to_string()),
            "{r:#?}"
        );
    }
}

#[test]
fn ecn_cleared_and_source_rewritten() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 3, Dest::Open);
        let nat: IpAddr = if v6 {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x77))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 77))
        };
        net.routers[0].post = Some(Box::new(move |p: &mut Vec<u8>| set_src(p, nat)));
        net.routers[1].post = Some(Box::new(|p: &mut Vec<u8>| {
            let t = tos_of(p);
            set_tos(p, t & !3)
        }));
        let mut c = cfg(v6, TraceMode::Syn);
        c.tos = 0x02; // ECT(0)
        let (r, _) = trace_with(c, &mut net);
        let h2 = changes(&r, 2);
        assert!(
            h2.contains(&("ip.src".into(), net.local().to_string(), nat.to_string())),
            "{h2:?}"
        );
        let h3 = changes(&r, 3);
        assert_eq!(
            h3,
            vec![("ip.ecn".into(), "ect(0)".into(), "not-ect".into())],
            "{r:#?}"
        );
    }
}

#[test]
fn identification_rewritten_still_matches_by_sequence_number() {
    let mut net = Net::new(false, 3, Dest::Open);
    net.routers[0].post = Some(Box::new(|p: &mut Vec<u8>| {
        p[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
        fix(p);
    }));
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.hops[1].addr, Some(net.routers[1].addr));
    assert_eq!(r.hops[1].lost, 0);
    assert_eq!(fields(&r, 2), vec!["ip.id".to_string()]);
    assert!(fields(&r, 3).is_empty());
}

#[test]
fn identification_rewritten_to_another_probes_still_matches_each_its_own() {
    // Router 1 gives every packet the identification of probe 7 (TTL 3, attempt 1): the
    // sequence numbers still tell them apart.
    let mut net = Net::new(false, 3, Dest::Open);
    let other = cfg(false, TraceMode::Syn).ident.wrapping_add(7);
    net.routers[0].post = Some(Box::new(move |p: &mut Vec<u8>| {
        p[4..6].copy_from_slice(&other.to_be_bytes());
        fix(p);
    }));
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    for h in &r.hops[1..3] {
        assert_eq!((h.sent, h.lost), (3, 0), "{r:#?}");
        assert_eq!(h.rtt_ns.len(), 3);
    }
    assert_eq!(changed_at_ttl(&r, "ip.id"), vec![2]);
}

fn changed_at_ttl(r: &TraceRecord, field: &str) -> Vec<u8> {
    r.hops
        .iter()
        .filter(|h| h.changes.iter().any(|c| c.field == field))
        .map(|h| h.ttl)
        .collect()
}

#[test]
fn a_firewall_that_drops_syns_is_after_the_last_hop_that_answered() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 5, Dest::Open);
        net.routers[2].action = Action::DropSyn;
        let (r, took) = trace(v6, TraceMode::Syn, &mut net);
        assert_eq!(r.lost_after_ttl, Some(3), "{r:#?}");
        assert_eq!(r.destination.state, PortState::Filtered);
        assert_eq!(r.destination.reason, Reason::NoResponse);
        assert_eq!(r.hops.len(), 8, "three that answered, then five silent");
        assert!(
            r.hops[3..]
                .iter()
                .all(|h| h.addr.is_none() && h.lost == h.sent)
        );
        // Silent TTLs cost one timeout (in parallel), not one each.
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }
}

#[test]
fn closed_port_and_router_unreachable() {
    let mut net = Net::new(false, 2, Dest::Closed);
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.destination.state, PortState::Closed);
    assert_eq!(r.destination.reason, Reason::Reset);
    assert_eq!(r.hops[2].reply.as_deref(), Some("reset"));
    assert_eq!(net.rsts_received, 0, "no RST answers a RST");

    let mut net = Net::new(false, 4, Dest::Open);
    net.routers[2].action = Action::Unreach(3, 13);
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.destination.state, PortState::Filtered);
    assert_eq!(r.destination.reason, Reason::AdminProhibited);
    assert_eq!(r.destination.addr, Some(net.routers[2].addr));
    // TTL 3 expires at router 3 (the TTL is checked first); TTL 4 is refused there.
    assert_eq!(r.destination.ttl, Some(4));
    assert_eq!(
        r.hops.last().unwrap().reply.as_deref(),
        Some("admin-prohibited")
    );
    assert_eq!(
        r.hops.last().unwrap().icmp,
        Some(record::IcmpRecord {
            icmp_type: 3,
            code: 13
        })
    );
    // Row 4 shows router 3's address: the note says it is hop 3 that refuses.
    let want = format!(
        "hop 4: admin-prohibited from {}, which is hop 3: that router refuses",
        net.routers[2].addr
    );
    assert!(
        r.notes.iter().any(|n| n.starts_with(&want)),
        "{:#?}",
        r.notes
    );
}

#[test]
fn host_unreachable_from_the_last_router_is_no_filter() {
    // Walk 15: the last router's ARP / ND for the address failed; it answers host
    // unreachable (IPv4 code 1, ICMPv6 address unreachable 1/3). Before the fix the note
    // said it "refuses what it would forward … its filter for port 80".
    for v6 in [false, true] {
        let mut net = Net::new(v6, 3, Dest::Open);
        net.routers[2].action = if v6 {
            Action::Unreach(1, 3)
        } else {
            Action::Unreach(3, 1)
        };
        let (r, _) = trace(v6, TraceMode::Syn, &mut net);
        assert_eq!(r.destination.ttl, Some(4), "{r:#?}");
        let notes = notes_with(&r, "host-unreach from");
        assert_eq!(notes.len(), 1, "{:#?}", r.notes);
        let n = &notes[0];
        let (nd, host) = if v6 {
            ("Neighbor Discovery", S6)
        } else {
            ("ARP", S4)
        };
        assert!(
            n.contains(&format!(
                "which is hop 3: that router could not deliver to {host} on its link: {host} \
                 did not answer its {nd}"
            )) && n.contains("not a filter"),
            "{n}"
        );
        assert!(!n.contains("filter for port"), "{n}");
    }
}

#[test]
fn a_slow_unreachable_does_not_hold_each_attempt_back() {
    // Walk 15: the last router answers host unreachable after 3 s of failed ARP. With -w
    // 5s the attempts at that TTL went one after another, each waiting for the one
    // before: 9.2 s (traceroute -T: 3.07 s). An attempt at a TTL that may be the
    // destination waits for the one before only twice the longest round trip seen (a
    // clearing RST before it resets what the earlier one may have opened there).
    let mut net = Net::new(false, 3, Dest::Open);
    net.routers[2].action = Action::Unreach(3, 1);
    net.routers[2].unreach_delay = Duration::from_secs(3);
    let mut c = cfg(false, TraceMode::Syn);
    c.timeout = Duration::from_secs(5);
    let (r, took) = trace_with(c, &mut net);
    assert_eq!(r.destination.ttl, Some(4), "{r:#?}");
    let h = &r.hops[3];
    assert_eq!((h.sent, h.lost), (3, 0), "{h:#?}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
}

#[test]
fn a_slow_destination_behind_fast_routers_loses_no_attempt() {
    // The routers answer in 0.8 ms, the destination in 300 ms: the attempt after one
    // unanswered for twice the longest round trip seen goes out while the first SYN's
    // connection is half-open. A RST for that earlier attempt goes first, so the next
    // SYN is fresh (before: the third met the first's connection and was dropped).
    let mut net = Net::new(false, 3, Dest::Open);
    net.last_link_delay = Duration::from_millis(150);
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.destination.ttl, Some(4), "{r:#?}");
    let h = &r.hops[3];
    assert_eq!((h.sent, h.lost), (3, 0), "{h:#?}");
    assert_eq!(r.destination.rtt_ns.len(), 3);
    assert_eq!(net.half_open, None);
}

/// The hops as tcpshake's text shows them, for a failing assertion.
fn notes_with(r: &TraceRecord, word: &str) -> Vec<String> {
    r.notes
        .iter()
        .filter(|n| n.contains(word))
        .cloned()
        .collect()
}

/// A firewall at router 2 of 3 rejects SYNs with a RST in the server's name: every tool
/// shows "closed at hop 4", but the RST came back through one router, not three, as
/// router 2's time-exceeded did. The note names router 2 and the port.
#[test]
fn a_reset_from_a_middlebox_is_told_from_the_destination() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 3, Dest::Open);
        net.routers[1].action = Action::ResetSyn;
        let (r, _) = trace(v6, TraceMode::Syn, &mut net);
        assert_eq!(r.destination.reason, Reason::Reset);
        assert_eq!(r.destination.ttl, Some(3), "{r:#?}");
        let notes = notes_with(&r, "came back through 1 router");
        assert_eq!(notes.len(), 1, "{:#?}", r.notes);
        let n = &notes[0];
        let want = format!("hop 2 ({})", net.routers[1].addr);
        assert!(n.starts_with("hop 3: the reset in"), "{n}");
        assert!(n.contains(&want) && n.contains("port 80"), "{n}");
        assert!(n.contains("passed 2 routers"), "{n}");
    }
    // The real destination, closed: no such note.
    let mut net = Net::new(false, 3, Dest::Closed);
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.destination.reason, Reason::Reset);
    assert!(
        notes_with(&r, "came back through").is_empty(),
        "{:#?}",
        r.notes
    );
}

#[test]
fn a_reset_from_a_middlebox_names_every_hop_that_matches_its_ttl() {
    // Walk 15: router 5 resets SYNs to the port (its RST arrives with TTL 60), and the way
    // back from routers 3 and 4 is shorter than the way out, so their time-exceeded also
    // arrive with TTL 60. Before the fix the note blamed hop 3 alone (the first match).
    for v6 in [false, true] {
        let mut net = Net::new(v6, 6, Dest::Open);
        net.routers[4].action = Action::ResetSyn;
        net.routers[2].back_ttl = Some(60);
        net.routers[3].back_ttl = Some(60);
        let (r, _) = trace(v6, TraceMode::Syn, &mut net);
        assert_eq!(r.destination.ttl, Some(6), "{r:#?}");
        let notes = notes_with(&r, "came back through 4 routers");
        assert_eq!(notes.len(), 1, "{:#?}", r.notes);
        let n = &notes[0];
        let (h3, h4, h5) = (
            net.routers[2].addr,
            net.routers[3].addr,
            net.routers[4].addr,
        );
        assert!(
            n.contains(&format!(
                "by hop 5 ({h5}) or a device beside it — the nearest the destination of the \
                 hops whose time-exceeded came back with the same TTL; hop 4 ({h4}), hop 3 \
                 ({h3}) did too"
            )),
            "{n}"
        );
    }
}

/// Router 1 of 3 sets the TTL of what it forwards to 64: TTL 2 reaches the server, as mtr
/// and `traceroute -T` show it, but the SYN-ACK came back through 3 routers.
#[test]
fn a_router_that_sets_the_ttl_is_said_to_hide_hops() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 3, Dest::Open);
        net.routers[0].post = Some(Box::new(|p: &mut Vec<u8>| set_ttl(p, 65)));
        let (r, _) = trace(v6, TraceMode::Syn, &mut net);
        assert_eq!(r.destination.ttl, Some(2), "{r:#?}");
        let notes = notes_with(&r, "sets the TTL");
        assert_eq!(notes.len(), 1, "{:#?}", r.notes);
        assert!(
            notes[0].contains("(1 router on the way), but its syn-ack came back through 3 routers")
                && notes[0].contains(&format!(
                    "hop 1 ({}) or the router after it",
                    net.routers[0].addr
                )),
            "{}",
            notes[0]
        );
    }
    // A path without one says nothing of distances or ICMP limits.
    let mut net = Net::new(false, 3, Dest::Open);
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    assert!(
        notes_with(&r, "came back through").is_empty(),
        "{:#?}",
        r.notes
    );
    assert!(notes_with(&r, "RFC 1812").is_empty(), "{:#?}", r.notes);
}

/// The way back one router shorter than the way out (a second link from router 2 to us):
/// router 2's time-exceeded shows it too, so the note says asymmetric routing and blames
/// no middlebox; without router 2's witness it is the middlebox note.
#[test]
fn a_shorter_way_back_is_told_from_a_middlebox() {
    let mut net = Net::new(false, 3, Dest::Open);
    let (mut r, _) = trace(false, TraceMode::Syn, &mut net);
    let remote = SocketAddr::new(net.remote(), 80);
    assert_eq!(summary::distance_note(&r.hops, 4, remote), None);
    // Routers 2 and 3 and the server answer through one router fewer.
    for h in r.hops.iter_mut().skip(1) {
        h.reply_ttl = h.reply_ttl.map(|t| t + 1);
    }
    let n = summary::distance_note(&r.hops, 4, remote).expect("a note");
    assert!(
        n.contains("hop 2's time-exceeded did likewise (0 routers back, 1 router on the way out)")
            && n.contains("asymmetric routing")
            && n.contains("or a router on the way does not decrement the TTL"),
        "{n}"
    );
    // Only the server's answer is short: something before it answered.
    r.hops[1].reply_ttl = r.hops[1].reply_ttl.map(|t| t - 1);
    r.hops[2].reply_ttl = r.hops[2].reply_ttl.map(|t| t - 1);
    let n = summary::distance_note(&r.hops, 4, remote).expect("a note");
    assert!(n.contains("firewall or SYN proxy"), "{n}");
}

/// `--first-ttl` past the destination (it answers the first TTL tried): how far it is,
/// the trace does not know — its answer's TTL says nearer, and the note says that, not
/// that a device answered in its name (README walk: `trace -f 5` of a host 2 hops away).
#[test]
fn a_first_ttl_past_the_destination_blames_no_device() {
    let mut net = Net::new(false, 1, Dest::Open);
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    let remote = SocketAddr::new(net.remote(), 80);
    let dest = r
        .hops
        .iter()
        .find(|h| h.ttl == 2)
        .expect("the server at hop 2")
        .clone();
    let hops = vec![super::record::HopRecord { ttl: 5, ..dest }];
    let n = summary::distance_note(&hops, 5, remote).expect("a note");
    assert!(
        n.contains("answered the first TTL tried")
            && n.contains("likely 2 hops away, nearer than --first-ttl 5")
            && !n.contains("firewall"),
        "{n}"
    );
}

/// A router that sends no time-exceeded shows 100% loss, but the hops beyond it answer:
/// the note says our SYNs passed it (mtr shows `???  100.0`).
#[test]
fn a_hop_that_sends_no_icmp_is_not_loss_on_the_path() {
    let mut net = Net::new(false, 3, Dest::Open);
    net.routers[1].quote = None;
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.destination.state, PortState::Open);
    assert_eq!((r.hops[1].addr, r.hops[1].lost), (None, 3));
    let notes = notes_with(&r, "RFC 1812 §4.3.2.8");
    assert_eq!(notes.len(), 1, "{:#?}", r.notes);
    assert!(
        notes[0]
            .starts_with("hop 2 (no answer, 3 of 3 lost): unanswered, but hop 4 beyond lost none"),
        "{}",
        notes[0]
    );
    // From 3 probes it may be loss too (walk 15: it was).
    assert!(
        notes[0].contains("or, from so few probes, loss on the path"),
        "{}",
        notes[0]
    );
    // Silent at the end (a firewall dropping SYNs): nothing beyond answered, no such note.
    let mut net = Net::new(false, 3, Dest::Open);
    net.routers[1].action = Action::DropSyn;
    let c = TraceConfig {
        timeout: Duration::from_millis(200),
        ..cfg(false, TraceMode::Syn)
    };
    let (r, _) = trace_with(c, &mut net);
    assert!(notes_with(&r, "RFC 1812").is_empty(), "{:#?}", r.notes);
}

#[test]
fn parallel_ten_hops_far_away() {
    // 10 ms per link: a 10-hop path of 220 ms round trip to the destination.
    let mut net = Net::new(false, 10, Dest::Open);
    net.link = Duration::from_millis(10);
    let mut t = Trace::new(cfg(false, TraceMode::Syn));
    let mut now = at0();
    t.start(now);
    let mut max_out = 0;
    for _ in 0..100_000 {
        while let Some(x) = t.poll_transmit(now) {
            net.send(now, &x);
        }
        let out = t.slots.iter().filter(|s| s.outstanding()).count();
        max_out = max_out.max(out);
        if t.is_done() {
            break;
        }
        let next = [net.next_at(), t.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        now = now.max(next);
        for e in net.take_due(now) {
            t.handle_packet(e.at, e.outgoing, &e.bytes, false);
        }
        if t.poll_timeout().is_some_and(|d| d <= now) {
            t.handle_timeout(now);
        }
    }
    assert!(t.is_done());
    assert!(
        max_out > 8 && max_out <= 24,
        "bounded parallelism: {max_out}"
    );
    let took = now.saturating_since(at0());
    // Sequential probing would take 33 round trips; in parallel: a few.
    assert!(took < Duration::from_millis(1000), "{took:?}");
    let r = t.into_record();
    assert_eq!(r.destination.ttl, Some(11));
    assert!(r.hops.iter().all(|h| h.lost == 0), "{r:#?}");
}

#[test]
fn destination_probes_wait_for_the_answer_before() {
    // The destination is far (RTT 80 ms) and the attempts 10 ms apart: the second SYN at
    // the destination's TTL must not meet the half-open connection of the first.
    let mut net = Net::new(false, 3, Dest::Open);
    net.link = Duration::from_millis(10);
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.destination.rtt_ns.len(), 3, "{r:#?}");
    let d = r.hops.last().unwrap();
    assert_eq!(d.lost, 0);
    // Each SYN at the destination's TTL left after the answer to the one before.
    let at_dest: Vec<Instant> = net
        .sent
        .iter()
        .filter(|s| s.2 == 4 && is_syn(&s.3))
        .map(|s| s.0)
        .collect();
    assert_eq!(at_dest.len(), 3);
    for w in at_dest.windows(2) {
        assert!(w[1].saturating_since(w[0]) >= net.rtt(4), "{at_dest:?}");
    }
    // TTL 2 lies before the destination once TTL 3 expired: 10 ms apart, no waiting.
    let ttl2: Vec<Instant> = net.sent.iter().filter(|s| s.2 == 2).map(|s| s.0).collect();
    assert_eq!(ttl2[2].saturating_since(ttl2[1]), Duration::from_millis(10));
}

#[test]
fn in_session_trace() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 3, Dest::Open);
        net.routers[1].post = Some(Box::new(|p: &mut Vec<u8>| {
            let t = tos_of(p);
            set_tos(p, (10 << 2) | (t & 3))
        }));
        let (r, _) = trace(v6, TraceMode::InSession, &mut net);
        assert_eq!(r.error, None, "{r:#?}");
        assert_eq!(r.hops.len(), 4);
        for h in &r.hops[..3] {
            assert_eq!(h.reply.as_deref(), Some("time-exceeded"));
            assert_eq!(h.lost, 0);
        }
        assert_eq!(
            changes(&r, 3),
            vec![("ip.dscp".into(), "cs0 (0)".into(), "af11 (10)".into())]
        );
        assert_eq!(r.hops[3].reply.as_deref(), Some("ack"));
        assert_eq!(r.destination.ttl, Some(4));
        assert_eq!(r.destination.rtt_ns.len(), 3);
        assert!(r.destination.handshake_rtt_ns.is_some());
        assert_eq!(r.destination.close.as_deref(), Some("closed"), "{r:#?}");
        // Probes: ACK, one octet at SND.NXT−1, each TSval its own.
        let probes: Vec<QuotedDatagram<'_>> = net
            .sent
            .iter()
            .filter(|s| s.2 < 64)
            .map(|s| QuotedDatagram::parse(&s.3).unwrap())
            .collect();
        assert_eq!(probes.len(), 12);
        let mut tsvals: Vec<u32> = probes
            .iter()
            .map(|p| {
                let t = p.tcp.unwrap();
                assert_eq!(t.flags(), Some(TcpFlags::ACK));
                assert_eq!(
                    t.seq(),
                    Some(SeqNumber(0xffff_f000)),
                    "SND.NXT − 1 = the ISN"
                );
                assert_eq!(t.payload().map(|p| p.len()), Some(1));
                t.options().unwrap().timestamps.unwrap().0
            })
            .collect();
        tsvals.sort_unstable();
        tsvals.dedup();
        assert_eq!(tsvals.len(), 12);
        // Nor does a probe share a TSval with the connection's segments before it (the
        // handshake's ACK, in the same millisecond): an ACK of that one would read as the
        // probe's answer (the close comes after every probe is answered or lost).
        let first_probe = net.sent.iter().find(|s| s.2 < 64).unwrap().0;
        let conn_tsvals: Vec<u32> = net
            .sent
            .iter()
            .filter(|s| s.2 >= 64 && s.0 < first_probe)
            .filter_map(|s| QuotedDatagram::parse(&s.3).ok()?.tcp?.options()?.timestamps)
            .map(|t| t.0)
            .collect();
        assert!(!conn_tsvals.is_empty());
        assert!(
            tsvals.iter().all(|v| !conn_tsvals.contains(v)),
            "{tsvals:?} {conn_tsvals:?}"
        );
        assert!(net.server_fin_sent);
    }
}

#[test]
fn in_session_without_timestamps() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 3, Dest::Open);
        net.no_timestamps = true;
        let (r, took) = trace(v6, TraceMode::InSession, &mut net);
        assert_eq!(r.error, None, "{r:#?}");
        // The hops are matched (IPv4: identification; IPv6: the garbage octet).
        assert_eq!(r.hops.len(), 3, "{r:#?}");
        assert!(r.hops.iter().all(|h| h.lost == 0 && h.addr.is_some()));
        assert_eq!(r.destination.state, PortState::Open);
        assert_eq!(r.destination.ttl, None);
        assert_eq!(r.lost_after_ttl, None);
        assert!(
            r.notes.iter().any(|n| n.contains("without timestamps")),
            "{r:#?}"
        );
        // A middlebox may have stripped them (walk 15): said as the other reading.
        assert!(
            r.notes.iter().any(
                |n| n.contains("the server does not do timestamps, or a middlebox strips them")
            ),
            "{:#?}",
            r.notes
        );
        assert_eq!(r.destination.close.as_deref(), Some("closed"));
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
}

#[test]
fn in_session_on_a_closed_port_says_so() {
    let mut net = Net::new(false, 2, Dest::Closed);
    let (r, _) = trace(false, TraceMode::InSession, &mut net);
    assert_eq!(r.destination.state, PortState::Closed);
    let e = r.error.as_deref().unwrap();
    assert!(e.contains("needs an open port"), "{e}");
    assert!(
        e.contains("without --in-session shows which hop answers"),
        "{e}"
    );
    assert!(r.hops.is_empty());
}

/// In-session, a router refusing the handshake's SYN (admin-prohibited): the verdict is
/// the router's, and the destination line and the error name it, not the destination.
#[test]
fn in_session_refused_by_a_router_names_the_router() {
    let mut net = Net::new(false, 4, Dest::Open);
    net.routers[2].action = Action::Unreach(3, 13);
    let (r, _) = trace(false, TraceMode::InSession, &mut net);
    assert_eq!(r.destination.state, PortState::Filtered);
    assert_eq!(r.destination.reason, Reason::AdminProhibited);
    assert_eq!(r.destination.addr, Some(net.routers[2].addr));
    let e = r.error.as_deref().unwrap();
    assert!(
        e.contains(&format!("(admin-prohibited, from {})", net.routers[2].addr)),
        "{e}"
    );
}

#[test]
fn interrupted_in_session_closes() {
    // The handshake takes 28 ms; the user stops the trace 12 ms into its probes.
    let mut net = Net::new(false, 6, Dest::Open);
    net.link = Duration::from_millis(2);
    let mut t = Trace::new(cfg(false, TraceMode::InSession));
    let mut now = at0();
    t.start(now);
    let stop_at = at0() + Duration::from_millis(40);
    let mut stopped = false;
    for _ in 0..100_000 {
        while let Some(x) = t.poll_transmit(now) {
            net.send(now, &x);
        }
        if t.is_done() {
            break;
        }
        if !stopped && now >= stop_at {
            t.interrupt(now);
            stopped = true;
            continue;
        }
        let next = [
            net.next_at(),
            t.poll_timeout(),
            (!stopped).then_some(stop_at),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap();
        now = now.max(next);
        for e in net.take_due(now) {
            t.handle_packet(e.at, e.outgoing, &e.bytes, false);
        }
        if t.poll_timeout().is_some_and(|d| d <= now) {
            t.handle_timeout(now);
        }
    }
    assert!(t.is_done());
    let r = t.into_record();
    assert!(r.interrupted);
    assert!(!r.hops.is_empty());
    assert_eq!(r.destination.close.as_deref(), Some("closed"), "{r:#?}");
    assert!(net.server_fin_sent);
}

#[test]
fn strangers_are_not_matched() {
    let mut t = Trace::new(cfg(false, TraceMode::Syn));
    let net = Net::new(false, 2, Dest::Open);
    t.start(at0());
    let x = t.poll_transmit(at0()).unwrap();
    let at = tcp_at(&x.bytes);
    // Our probe, its source address and port rewritten (a NAT): still ours, by its
    // destination and its identification.
    let mut p = net.datagram(&x);
    set_src(&mut p, IpAddr::V4(Ipv4Addr::new(198, 18, 7, 7)));
    p[at..at + 2].copy_from_slice(&1234u16.to_be_bytes());
    fix(&mut p);
    let icmp = net.icmp(net.routers[0].addr, 11, 0, &p);
    assert!(t.handle_packet(at0(), false, &icmp, false));
    assert_eq!(
        t.slots[0].answer.as_ref().map(|a| a.from),
        Some(net.routers[0].addr)
    );
    // Our 4-tuple, but identification, sequence number and TSval that name no probe:
    // counted, not matched.
    let mut q = net.datagram(&x);
    q[4..6].copy_from_slice(&0x1111u16.to_be_bytes());
    q[at + 4..at + 8].copy_from_slice(&5u32.to_be_bytes());
    let ts = at + 20 + 8; // MSS (4), SACK-permitted (2), kind 8, length 10, then TSval
    assert_eq!(q[ts - 2], 8);
    q[ts..ts + 4].copy_from_slice(&9u32.to_be_bytes());
    fix(&mut q);
    let icmp = net.icmp(net.routers[1].addr, 11, 0, &q);
    assert!(t.handle_packet(at0(), false, &icmp, false));
    assert_eq!(t.unmatched, 1);
    assert!(t.slots[1..].iter().all(|s| s.answer.is_none()));
    // Someone else's flow through the same router is not ours at all.
    let mut other = net.datagram(&x);
    set_src(&mut other, IpAddr::V4(Ipv4Addr::new(198, 18, 7, 7)));
    other[at + 2..at + 4].copy_from_slice(&443u16.to_be_bytes());
    fix(&mut other);
    let icmp = net.icmp(net.routers[1].addr, 11, 0, &other);
    assert!(!t.handle_packet(at0(), false, &icmp, false));
    assert_eq!(t.unmatched, 1);
}

#[test]
fn late_answers_are_not_taken() {
    // 520 ms to hop 1, 1040 ms to hop 2: beyond the 1 s timeout. Hop 1's attempts go one
    // after the other's answer (it might be the destination), so the trace is still
    // running when hop 2's answers come, late.
    let mut net = Net::new(false, 2, Dest::Open);
    net.link = Duration::from_millis(260);
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.hops[0].lost, 0);
    assert_eq!(r.hops[1].lost, r.hops[1].sent, "{r:#?}");
    assert!(r.unmatched >= 1);
    assert_eq!(r.lost_after_ttl, Some(1));
}

#[test]
fn path_longer_than_max_ttl() {
    let mut net = Net::new(false, 6, Dest::Open);
    let mut c = cfg(false, TraceMode::Syn);
    c.max_ttl = 4;
    let (r, _) = trace_with(c, &mut net);
    assert_eq!(r.hops.len(), 4);
    assert_eq!(r.lost_after_ttl, None);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("not reached within 4 hops")),
        "{r:#?}"
    );
}

/// A target on this host's link (no router) that answers no probe: its silence is said
/// as its own — no "first router" blamed, no "not reached within N hops" (a walk: a host
/// on the link with its port filtered read as dropped before the first router).
#[test]
fn a_silent_target_on_the_link_is_not_blamed_on_routers() {
    let mut net = Net::new(false, 0, Dest::Silent);
    let mut c = cfg(false, TraceMode::Syn);
    c.max_ttl = 3;
    let mut t = Trace::new(c);
    t.on_link(true);
    run(&mut t, &mut net);
    let r = t.into_record();
    assert!(r.on_link);
    assert_eq!(r.lost_after_ttl, None, "{r:#?}");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("is on this host's link (no router in between)")),
        "{r:#?}"
    );
    assert!(
        !r.notes.iter().any(|n| n.contains("not reached within")),
        "{r:#?}"
    );
    // Off the link, the same silence is the routers' to explain.
    let mut net = Net::new(false, 0, Dest::Silent);
    let mut c = cfg(false, TraceMode::Syn);
    c.max_ttl = 3;
    let (r, _) = trace_with(c, &mut net);
    assert!(!r.on_link);
    assert_eq!(r.lost_after_ttl, Some(0));
}

#[test]
fn nothing_answers_at_all() {
    let mut net = Net::new(false, 3, Dest::Silent);
    for r in &mut net.routers {
        r.quote = None;
    }
    let (r, took) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.lost_after_ttl, Some(0));
    assert_eq!(r.hops.len(), 5);
    assert!(took < Duration::from_secs(4), "{took:?}");
    // Nothing says a listener is there: no RST to reset what a probe may have opened at
    // another TTL — only one before each attempt after the first at a TTL, for the
    // attempt before it (it may be a slow destination's, still half-open).
    let syns: Vec<u8> = net
        .sent
        .iter()
        .filter(|s| is_syn(&s.3))
        .map(|s| s.2)
        .collect();
    let mut ttls = syns.clone();
    ttls.sort_unstable();
    ttls.dedup();
    let rsts = net.sent.iter().filter(|s| is_rst(&s.3)).count();
    assert!(
        rsts <= syns.len() - ttls.len(),
        "{rsts} RSTs, SYNs at {syns:?}"
    );
}

#[test]
fn nothing_answers_from_the_first_ttl_on_blames_no_ttl_never_sent() {
    // Walk 15: `-f 3`, router 3 drops the SYNs and sends no time-exceeded. Before the fix:
    // "no reply beyond TTL 2 … dropped after hop 2", `lost_after_ttl: 2`, TTL 2 never sent.
    let mut net = Net::new(false, 4, Dest::Open);
    net.routers[2].quote = None;
    net.routers[2].action = Action::DropSyn;
    let mut c = cfg(false, TraceMode::Syn);
    c.first_ttl = 3;
    let (r, _) = trace_with(c, &mut net);
    assert_eq!(r.lost_after_ttl, None, "{r:#?}");
    assert!(r.hops.iter().all(|h| h.ttl >= 3 && h.addr.is_none()));
    assert_eq!(
        notes_with(&r, "no reply from any hop from TTL 3 on").len(),
        1,
        "{:#?}",
        r.notes
    );
    assert!(
        notes_with(&r, "not reached within").is_empty(),
        "{:#?}",
        r.notes
    );
}

#[test]
fn silent_ttls_up_to_a_short_max_ttl_take_one_timeout() {
    // Walk 15: `-m 4` with TTLs 3 and 4 silent took 3.0 s (each attempt at TTL 3 and 4
    // waited for the one before to time out: they may be the destination), the default
    // -m 30 1.0 s; traceroute -T 1.0 s. Since an attempt waits for the one before at most
    // twice the longest round trip seen, about one timeout.
    let mut net = Net::new(false, 4, Dest::Open);
    net.routers[2].quote = None;
    net.routers[2].action = Action::DropSyn;
    let mut c = cfg(false, TraceMode::Syn);
    c.max_ttl = 4;
    let (r, took) = trace_with(c, &mut net);
    assert_eq!(r.hops.len(), 4, "{r:#?}");
    assert!(
        r.hops[2..].iter().all(|h| (h.sent, h.lost) == (3, 3)),
        "{r:#?}"
    );
    assert!(took < Duration::from_millis(1200), "{took:?}");
}

/// An on-link next hop that never answers ARP / ND: the kernel holds every packet and
/// drops it, so the tap sees none leave. Nothing counts as sent, no hop is shown, no
/// router is blamed; with the driver's word on the neighbour the error says it as a
/// probe's does (an in-session trace's failed handshake included); without it, a note.
#[test]
fn packets_the_kernel_never_sent_are_not_counted_and_blame_no_router() {
    let what = "198.18.9.2 had not answered ARP on eth0 (down, or not on this link), so the \
                kernel held our SYNs";
    for (v6, mode, explained) in [
        (false, TraceMode::Syn, true),
        (true, TraceMode::Syn, true),
        (false, TraceMode::InSession, true),
        (false, TraceMode::Syn, false),
    ] {
        let mut net = Net::new(v6, 3, Dest::Silent);
        net.held = true;
        let mut c = cfg(v6, mode);
        c.timeout = Duration::from_millis(200);
        let mut t = Trace::new(c);
        run(&mut t, &mut net);
        assert!(!net.sent.is_empty());
        assert!(t.nothing_seen_leaving());
        if explained {
            t.next_hop_unresolved(what.into());
        }
        let r = t.into_record();
        assert_eq!(r.packets_sent, 0, "{r:#?}");
        assert!(r.hops.is_empty(), "{r:#?}");
        assert_eq!(r.lost_after_ttl, None, "{r:#?}");
        assert_eq!(r.destination.state, PortState::Filtered);
        assert!(!r.notes.iter().any(|n| n.contains("not reached")), "{r:#?}");
        if explained {
            assert_eq!(
                r.error.as_deref(),
                Some(format!("none of our SYNs left this host: {what}").as_str()),
                "{r:#?}"
            );
            assert!(r.notes.is_empty(), "{r:#?}");
        } else {
            assert_eq!(r.error, None);
            let handed = net.sent.len();
            assert!(
                r.notes.iter().any(|n| n.contains(&format!(
                    "none of the {handed} packets handed to the kernel was seen leaving"
                ))),
                "{r:#?}"
            );
        }
    }
}

/// A trace to this host (loopback, or its own address): one address at both ends, and
/// the tap keeps only the arriving copy of each packet, ours included. Our packets are
/// still ours (by address and port), so every probe is timed and counted.
#[test]
fn loopback_probes_are_timed_from_their_arriving_copies() {
    for (v6, mode) in [
        (false, TraceMode::Syn),
        (true, TraceMode::Syn),
        (false, TraceMode::InSession),
    ] {
        let mut net = Net::new(v6, 0, Dest::Open);
        net.loopback = true;
        let mut c = cfg(v6, mode);
        c.tcp.local = SocketAddr::new(net.local(), 40000);
        c.tcp.remote = SocketAddr::new(net.remote(), 80);
        c.target = c.tcp.remote.to_string();
        let (r, _) = trace_with(c, &mut net);
        assert_eq!(r.hops.len(), 1, "{r:#?}");
        let rtt = nanos(net.rtt(1)) - 1000;
        let answered = if mode == TraceMode::Syn { 3 } else { 1 };
        assert!(r.hops[0].rtt_ns.len() >= answered, "{r:#?}");
        assert!(r.hops[0].rtt_ns.iter().all(|&n| n == rtt), "{r:#?}");
        assert_eq!(r.destination.rtt_ns, r.hops[0].rtt_ns, "{r:#?}");
        assert_eq!(r.destination.state, PortState::Open);
        if mode == TraceMode::InSession {
            assert_eq!(r.destination.handshake_rtt_ns, Some(rtt), "{r:#?}");
        }
        assert!(r.notes.is_empty(), "{r:#?}");
    }
}

/// On a real interface an arriving packet from our address and port is someone else's (a
/// spoof, a reflection): it does not count as sent, nor hide that nothing of ours left.
#[test]
fn an_arrival_from_our_address_off_loopback_is_not_ours() {
    let c = cfg(false, TraceMode::Syn);
    let (local, remote) = (c.tcp.local, c.tcp.remote);
    let mut t = Trace::new(c);
    t.over_loopback(false);
    t.start(at0());
    let syn = t.poll_transmit(at0()).expect("a first probe");
    // The very SYN, arriving from the link rather than leaving.
    assert!(!t.handle_packet(at0() + Duration::from_micros(5), false, &syn.bytes, false));
    assert!(t.nothing_seen_leaving(), "{local} → {remote}");
    // On loopback the same arrival is our SYN's copy.
    let mut t = Trace::new(cfg(false, TraceMode::Syn));
    t.over_loopback(true);
    t.start(at0());
    let syn = t.poll_transmit(at0()).expect("a first probe");
    assert!(t.handle_packet(at0() + Duration::from_micros(5), false, &syn.bytes, false));
    assert!(!t.nothing_seen_leaving());
}

/// Answers to probes whose copy leaving the tap missed cannot be timed: the record says so
/// in a note (and the table `not timed`), never with a round trip from another clock.
#[test]
fn answers_to_probes_not_seen_leaving_are_said_to_be_untimed() {
    let mut net = Net::new(false, 2, Dest::Open);
    net.untapped = true;
    let (r, _) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.hops.len(), 3, "{r:#?}");
    for h in &r.hops {
        assert!(h.addr.is_some() && h.rtt_ns.is_empty(), "{r:#?}");
        assert_eq!((h.sent, h.lost), (3, 0), "answered, so sent: {r:#?}");
    }
    assert!(
        r.notes.iter().any(|n| n
            == "9 answer(s) not timed: the copy of their probe leaving was not \
                            seen on the tap"),
        "{r:#?}"
    );
}

/// The trace is done as the last SYN-ACK's RST goes out: that RST's copy is read after
/// (the driver's drain), and is counted and named like every other RST.
#[test]
fn the_last_rst_is_counted_and_named_after_the_trace_is_done() {
    for loopback in [false, true] {
        let mut net = Net::new(false, 0, Dest::Open);
        net.loopback = loopback;
        let mut c = cfg(false, TraceMode::Syn);
        c.tcp.local = SocketAddr::new(net.local(), 40000);
        c.tcp.remote = SocketAddr::new(net.remote(), 80);
        let mut t = Trace::new(c);
        let end = run(&mut t, &mut net);
        let (at, _, _, last) = net.sent.last().unwrap();
        let flags = last[tcp_at(last) + 13];
        assert_eq!(
            (*at, flags),
            (end, 0x04),
            "the last packet is a RST sent at the end"
        );
        assert_eq!(
            t.packet_note(),
            Some("sent: RST, so the destination keeps nothing half-open")
        );
        assert_eq!(t.into_record().packets_sent as usize, net.sent.len());
    }
}

#[test]
fn json_round_trip() {
    let mut net = Net::new(true, 2, Dest::Open);
    net.routers[0].post = Some(Box::new(|p: &mut Vec<u8>| clamp_mss(p, 1000)));
    let (r, _) = trace(true, TraceMode::Syn, &mut net);
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        json.contains(r#""changes":[{"field":"tcp.mss","sent":"1460","seen":"1000"}"#),
        "{json}"
    );
    let back: TraceRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Whatever the path does, the trace ends within its hard limit, sends only to the
    /// target, and keeps its bounds.
    #[test]
    fn any_path_ends(
        hops in 1usize..8,
        drop_at in proptest::option::of(0usize..8),
        silent in proptest::collection::vec(any::<bool>(), 8),
        short in proptest::collection::vec(any::<bool>(), 8),
        dest in 0u8..3,
        link_us in 1u64..200_000,
        v6 in any::<bool>(),
        in_session in any::<bool>(),
    ) {
        let dest = [Dest::Open, Dest::Closed, Dest::Silent][usize::from(dest)];
        let mut net = Net::new(v6, hops, dest);
        net.link = Duration::from_micros(link_us);
        for (i, r) in net.routers.iter_mut().enumerate() {
            if silent[i] {
                r.quote = None;
            } else if short[i] {
                r.quote = Some(if v6 { 48 } else { 28 });
            }
            if drop_at == Some(i) {
                r.action = Action::DropSyn;
            }
        }
        let mode = if in_session { TraceMode::InSession } else { TraceMode::Syn };
        let c = cfg(v6, mode);
        let limit = c.hard_limit();
        let (r, took) = trace_with(c, &mut net);
        prop_assert!(took <= limit);
        prop_assert!(r.hops.len() <= 30);
        prop_assert!(net.sent.len() <= MAX_PROBES + 64);
    }
}

// --- the window's slow start (a destination closer than the TTLs in flight) ---

/// An arriving packet and the capture note the trace gave it.
type Noted = (Vec<u8>, Option<String>);

/// Run to the end in virtual time, keeping each arriving packet's capture note.
fn run_noting(t: &mut Trace, net: &mut Net) -> (Instant, Vec<Noted>) {
    let mut now = at0();
    let mut notes = Vec::new();
    t.start(now);
    for _ in 0..200_000 {
        while let Some(x) = t.poll_transmit(now) {
            net.send(now, &x);
        }
        if t.is_done() {
            return (now, notes);
        }
        let next = [net.next_at(), t.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .expect("a deadline");
        now = now.max(next);
        for e in net.take_due(now) {
            t.handle_packet(e.at, e.outgoing, &e.bytes, false);
            if !e.outgoing {
                notes.push((e.bytes.clone(), t.packet_note().map(String::from)));
            }
            while let Some(x) = t.poll_transmit(now) {
                net.send(now, &x);
            }
        }
        if t.poll_timeout().is_some_and(|d| d <= now) {
            t.handle_timeout(now);
        }
    }
    panic!("the trace did not end");
}

#[test]
fn syn_one_hop_destination_gets_no_syn_beyond_its_ttl() {
    // The user's case: the destination is the neighbour. Only TTL 1 goes out until it is
    // known not to be the destination, and it never is: no SYN meets a half-open
    // connection, no challenge ACK.
    for v6 in [false, true] {
        let mut net = Net::new(v6, 0, Dest::Open);
        net.link = Duration::from_micros(10);
        let (r, _) = trace(v6, TraceMode::Syn, &mut net);
        assert_eq!(net.syns_at_dest, vec![1, 1, 1], "{r:#?}");
        assert_eq!((net.collisions, r.unmatched), (0, 0));
        assert_eq!(r.destination.ttl, Some(1));
        // 20 µs, less the 1 µs our SYN takes to the tap.
        assert_eq!(r.destination.rtt_ns, vec![19_000; 3]);
        assert_eq!(net.half_open, None);
    }
}

#[test]
fn syn_near_destinations_get_at_most_d_minus_one_extra_syns() {
    // A destination d hops away gets at most d − 1 SYNs beyond its TTL (and never more
    // than parallel − 1 = 7); before the slow start it got 7 wherever it was.
    for d in 1..=12usize {
        let mut net = Net::new(false, d - 1, Dest::Open);
        let (r, _) = trace(false, TraceMode::Syn, &mut net);
        assert_eq!(r.destination.ttl, Some(d as u8));
        let extra = net.syns_at_dest.iter().filter(|&&t| t > d as u8).count();
        assert!(
            extra < d.min(8),
            "d {d}: {extra} extra SYNs {:?}",
            net.syns_at_dest
        );
        assert!(r.hops.iter().all(|h| h.lost == 0), "d {d}: {r:#?}");
        assert_eq!(net.half_open, None, "d {d}");
    }
}

#[test]
fn syn_challenge_ack_is_labelled_and_changes_nothing() {
    // One router: TTL 1 expires, then TTLs 2 and 3 go out together; the TTL-3 SYN meets
    // the half-open connection of the TTL-2 one and the destination answers it with a
    // challenge ACK acknowledging the TTL-2 SYN (its ISN + 1). Only the TTL-3 SYN can
    // have drawn it: its answer, beyond the destination's TTL, which stays 2.
    let mut net = Net::new(false, 1, Dest::Open);
    let mut t = Trace::new(cfg(false, TraceMode::Syn));
    let (_, notes) = run_noting(&mut t, &mut net);
    let r = t.into_record();
    assert_eq!(net.collisions, 1);
    let challenge: Vec<&String> = notes
        .iter()
        .filter_map(|(b, n)| {
            let p = IpPacket::parse(b).ok()?;
            let seg = TcpRepr::parse_unchecked(p.payload).ok()?;
            (p.ip.protocol == PROTO_TCP && seg.flags == TcpFlags::ACK).then_some(n.as_ref()?)
        })
        .collect();
    assert_eq!(challenge.len(), 1);
    assert!(
        challenge[0].starts_with(
            "challenge ACK from the destination to a SYN that met the half-open connection \
             of TTL 2, attempt 1: the answer of TTL 3, attempt 1"
        ),
        "{challenge:?}"
    );
    // The verdict and round trips are the SYN-ACKs' (3 attempts at TTL 2, 400 µs each, less the 1 µs to the tap).
    assert_eq!(r.destination.ttl, Some(2));
    assert_eq!(r.destination.reason, Reason::SynAck);
    assert_eq!(r.destination.rtt_ns, vec![399_000; 3], "{r:#?}");
    assert_eq!(r.hops.len(), 2);
    assert_eq!(r.hops[1].reply.as_deref(), Some("syn-ack"));
    assert_eq!(r.unmatched, 0);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("answered 1 SYN(s) with an ACK instead of a SYN-ACK")),
        "{:?}",
        r.notes
    );
    // The SYN-ACKs' RSTs and the challenge ACK's reset the connections.
    assert_eq!(net.half_open, None);
}

#[test]
fn syn_challenge_ack_without_its_syn_ack_resets_and_is_no_verdict() {
    // The SYN-ACK was lost on its way back, its connection's challenge ACK was not: the
    // connection is reset all the same, and the ACK is no answer of the probe it names.
    let mut t = Trace::new(cfg(false, TraceMode::Syn));
    let now = at0();
    t.start(now);
    let syn = t.poll_transmit(now).expect("the first SYN");
    let net = Net::new(false, 0, Dest::Open);
    let isn = u32::from_be_bytes(syn.bytes[24..28].try_into().unwrap());
    let ack = net.segment(
        SERVER_ISN.wrapping_add(1),
        isn.wrapping_add(1),
        TcpFlags::ACK,
        TcpOptions::default(),
    );
    let later = now + Duration::from_micros(30);
    assert!(t.handle_packet(later, false, &ack, false));
    assert!(t.packet_note().unwrap().starts_with("challenge ACK"));
    let rst = t.poll_transmit(later).expect("a RST");
    assert_eq!(rst.bytes[20 + 13], 0x04);
    assert_eq!(
        u32::from_be_bytes(rst.bytes[24..28].try_into().unwrap()),
        isn.wrapping_add(1)
    );
    assert!(t.end.is_none());
    assert!(t.slots[0].answer.is_none());
}

#[test]
fn syn_silent_first_hop_holds_the_window_for_patience_not_timeout() {
    let mut net = Net::new(false, 4, Dest::Open);
    net.routers[0].quote = None;
    let (r, took) = trace(false, TraceMode::Syn, &mut net);
    assert_eq!(r.destination.ttl, Some(5));
    let first_ttl2 = net.sent.iter().find(|s| s.2 == 2).map(|s| s.0).unwrap();
    assert_eq!(first_ttl2.saturating_since(at0()), RAMP_PATIENCE);
    // TTL 1's three attempts are given up after 1 s each, 10 ms apart (hop 2's time
    // exceeded proves TTL 1 is no destination): the trace waits for them, no longer.
    assert!(took < Duration::from_millis(1100), "{took:?}");
}

/// Fault walk: a probe at TTL 1 drew its router's time-exceeded, then an
/// admin-prohibited quoting the same SYN from an address off the path (someone who saw
/// it go by; `scapy` on the first router). The probe died at hop 1, so the second error
/// cannot be the destination's verdict: the trace went on, as traceroute -T,
/// tcptraceroute and mtr --tcp did on the same wire. It used to end at hop 1,
/// "filtered (admin-prohibited) at hop 1 (198.18.99.99)".
#[test]
fn a_later_contradicting_error_for_an_answered_probe_does_not_end_the_trace() {
    for v6 in [false, true] {
        let mut t = Trace::new(cfg(v6, TraceMode::Syn));
        let net = Net::new(v6, 2, Dest::Open);
        t.start(at0());
        let x = t.poll_transmit(at0()).unwrap();
        let p = net.datagram(&x);
        assert_eq!(ttl_of(&p), 1);
        let (te, unreach) = if v6 {
            ((3, 0), (1, 1))
        } else {
            ((11, 0), (3, 13))
        };
        let icmp = net.icmp(net.routers[0].addr, te.0, te.1, &p);
        assert!(t.handle_packet(at0(), false, &icmp, false));
        let stranger = if v6 {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x99))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 18, 99, 99))
        };
        let icmp = net.icmp(stranger, unreach.0, unreach.1, &p);
        assert!(t.handle_packet(at0() + Duration::from_millis(5), false, &icmp, false));
        assert!(t.end.is_none(), "v6 {v6}: ended by a second answer");
        assert_eq!(t.slots[0].others, vec![stranger]);
        assert_eq!(
            t.slots[0].answer.as_ref().map(|a| a.from),
            Some(net.routers[0].addr)
        );
    }
}

/// Fault walk: a hop answered time-exceeded from the destination's own address (a
/// scripted hop; a middlebox that answers in a server's name does the same). The trace
/// showed the destination at hop 2 and again at hop 3 without a word; mtr --tcp stopped
/// at hop 2, taking it for the destination. Now a note says why it cannot be.
#[test]
fn time_exceeded_in_the_destinations_name_is_noted() {
    for v6 in [false, true] {
        let mut net = Net::new(v6, 2, Dest::Open);
        net.routers[1].addr = net.remote();
        let (r, _) = trace(v6, TraceMode::Syn, &mut net);
        assert_eq!(r.hops[1].addr, Some(net.remote()), "{r:#?}");
        assert_eq!(r.destination.ttl, Some(3), "{r:#?}");
        let note = format!(
            "hop 2: time-exceeded from the destination's own address ({})",
            net.remote()
        );
        assert!(
            r.notes.iter().any(|n| n.starts_with(&note)),
            "{:?}",
            r.notes
        );
        // An ordinary path says nothing of the kind.
        let mut net = Net::new(v6, 2, Dest::Open);
        let (r, _) = trace(v6, TraceMode::Syn, &mut net);
        assert!(
            !r.notes
                .iter()
                .any(|n| n.contains("destination's own address")),
            "{:?}",
            r.notes
        );
    }
}

// --- loss toward the destination: half-open connections on our one 4-tuple ---

/// The sequence number of probe `p` (its index: (TTL − first) × probes + attempt).
fn probe_seq(p: u32) -> u32 {
    cfg(false, TraceMode::Syn)
        .tcp
        .isn
        .add(p.wrapping_mul(SEQ_STRIDE))
        .0
}

fn seq_of(pkt: &[u8]) -> u32 {
    let t = tcp_at(pkt);
    u32::from_be_bytes(pkt[t + 4..t + 8].try_into().unwrap())
}

fn is_rst(pkt: &[u8]) -> bool {
    pkt[tcp_at(pkt) + 13] & 0x04 != 0
}

#[test]
fn syn_loss_on_the_last_link_does_not_move_the_destination() {
    // The walk's lab in virtual time: the destination is 6 hops away and the last link
    // loses packets toward it. The first SYN at TTL 6 is lost; TTL 7's reaches the
    // destination, and the RST we send on its SYN-ACK is lost too. The destination keeps
    // TTL 7's half-open connection: later SYNs on our 4-tuple get at most one ACK per
    // 0.5 s, not a SYN-ACK. Before the fix, hop 6 showed `*` (3 of 3 lost) and the
    // destination was put at hop 7; a RST clearing that connection before the next SYN
    // that may reach the destination lets TTL 6's next attempts in.
    for v6 in [false, true] {
        let mut net = Net::new(v6, 5, Dest::Open);
        let (ttl6_a1, ttl7_a1) = (probe_seq(15), probe_seq(18));
        let mut rst_dropped = false;
        net.drop_last_link = Some(Box::new(move |pkt: &[u8]| {
            if is_syn(pkt) {
                return seq_of(pkt) == ttl6_a1;
            }
            if is_rst(pkt) && !rst_dropped && seq_of(pkt) == ttl7_a1.wrapping_add(1) {
                rst_dropped = true;
                return true;
            }
            false
        }));
        let (r, _) = trace(v6, TraceMode::Syn, &mut net);
        assert_eq!(r.destination.ttl, Some(6), "v6 {v6}: {r:#?}");
        let h6 = &r.hops[5];
        assert_eq!((h6.sent, h6.lost), (3, 1), "v6 {v6}: {h6:#?}");
        assert_eq!(h6.reply.as_deref(), Some("syn-ack"));
        assert_eq!(r.destination.rtt_ns.len(), 2);
        assert!(
            !r.notes.iter().any(|n| n.contains("firewall")),
            "{:?}",
            r.notes
        );
        assert_eq!(net.half_open, None, "v6 {v6}");
    }
}

#[test]
fn syn_challenge_ack_is_the_answer_of_the_one_probe_that_drew_it() {
    // The destination is the neighbour; the RST on the first SYN-ACK and the clearing RST
    // before the second SYN are both lost, so the second SYN meets the first one's
    // half-open connection and draws an ACK. Only that SYN can have drawn it: it reached
    // the destination, and the ACK is its answer. Before the fix it was lost, and so was
    // the third (the connection was never reset: its SYN-ACK had been answered, and Linux
    // drops the SYNs after one ACK for 0.5 s).
    for v6 in [false, true] {
        let mut net = Net::new(v6, 0, Dest::Open);
        net.link = Duration::from_micros(10);
        let first = probe_seq(0).wrapping_add(1);
        let mut dropped = 0;
        net.drop_last_link = Some(Box::new(move |pkt: &[u8]| {
            let drop = is_rst(pkt) && seq_of(pkt) == first && dropped < 2;
            dropped += u32::from(drop);
            drop
        }));
        let mut t = Trace::new(cfg(v6, TraceMode::Syn));
        let (_, notes) = run_noting(&mut t, &mut net);
        let r = t.into_record();
        assert_eq!(net.collisions, 1, "v6 {v6}");
        assert!(
            notes
                .iter()
                .any(|(_, n)| n.as_deref().is_some_and(|n| n.starts_with(
                    "challenge ACK from the destination to a SYN that met the half-open \
                 connection of TTL 1, attempt 1: the answer of TTL 1, attempt 2"
                ))),
            "{notes:?}"
        );
        assert_eq!(r.destination.ttl, Some(1));
        assert_eq!((r.hops[0].sent, r.hops[0].lost), (3, 0), "{r:#?}");
        assert_eq!(r.destination.rtt_ns.len(), 3);
        assert_eq!(r.unmatched, 0);
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("1 is taken as the answer of the one probe")),
            "{:?}",
            r.notes
        );
        assert_eq!(net.half_open, None, "v6 {v6}");
    }
}

mod review15;
