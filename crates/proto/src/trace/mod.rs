//! `tcpshake trace`: find the hop — which router a TCP packet reaches, where it is
//! dropped, and which hop changes which header field on the way. Decided without I/O.
//!
//! # What is sent
//! - **SYN mode** (default): copies of the SYN a probe would send (`tcp::Connection`
//!   builds it: window, MSS from the route, SACK-permitted, timestamps, window scale), one
//!   per (TTL, attempt), with the TTL / hop limit set to the TTL being probed. The
//!   destination's SYN-ACK is answered with a RST at once (RFC 9293 §3.10.7.3: our RST
//!   carries the SYN-ACK's acknowledgment number), so it keeps no half-open connection.
//! - **In-session mode**: the handshake first (our `tcp::Connection`, full TTL), then
//!   TTL-limited segments inside the connection, then an orderly close. Each is a
//!   keep-alive with one garbage octet (RFC 9293 §3.8.4 allows the octet): sequence number
//!   SND.NXT−1, our current acknowledgment, window and timestamps. For the server it is a
//!   duplicate of data it has (it ends at its RCV.NXT): it drops the octet and answers
//!   with an immediate ACK (RFC 9293 §3.10.7.4) whose TSecr echoes the keep-alive's TSval
//!   (RFC 7323 §4.3: SEG.SEQ ≤ Last.ACK.sent updates TS.Recent) — that echo tells which
//!   probe reached it. A zero-length keep-alive would not do: Linux answers out-of-window
//!   segments without data at most twice a second (`tcp_invalid_ratelimit`), data ones at
//!   once. Stateful firewalls that drop a bare SYN (or a second SYN on a 5-tuple) let
//!   these through: they belong to a connection they saw open.
//!
//! # Flow identity (Paris traceroute)
//! Routers that balance load (ECMP) hash the 5-tuple, and some the IPv6 flow label (RFC
//! 6438, RFC 7098). Every probe therefore has the same addresses, ports and protocol, and
//! for IPv6 the kernel's flow label, which it derives from the flow and keeps constant (we
//! read it from our own packets on the tap and compare it like any field). What tells the
//! probes apart is something routers quote but do not hash:
//! - IPv4: the identification (the first probe gets `ident`, the next `ident + 1`…); it is
//!   in every quote, even RFC 792's minimal one;
//! - SYN mode: the sequence number, 2^22 apart from probe to probe (so no probe's SYN falls
//!   in the window of another's half-open connection at the destination, which would make
//!   Linux answer with a RST); a SYN-ACK or RST names its probe by acknowledgment − 1;
//!   TSval is the connection's clock plus the probe number, a last resort for a quote whose
//!   identification and sequence number were both rewritten;
//! - in-session: TSval (probes are paced one per millisecond, the timestamp clock's tick)
//!   and the garbage octet (the probe number, mod 256).
//!
//! A quote is ours when it names our 4-tuple on either side (a source rewritten by NAT
//! still has our destination); it belongs to the probe that shares the most of these keys
//! with it, the longer keys counting more (any one may have been rewritten, or collide by
//! chance). Answers to probes already given up are counted as unmatched.
//!
//! # Which TTLs when
//! Several TTLs are in flight at once, bounded: the first attempt at TTL t goes out while
//! t ≤ `frontier + parallel`, `frontier` being the highest TTL whose first attempt has an
//! answer or was given up; at most `parallel × probes` probes are unanswered at once.
//!
//! The window opens like TCP's slow start, one TTL per hop behind us: the first attempt at
//! TTL t also waits until t ≤ `passed + 1 + n`, where `passed` is the highest TTL known to
//! lie before the destination or to be silent, and `n` how many TTLs are (a TTL is passed
//! once it, or one above it, answered time-exceeded, or once its first attempt has been
//! unanswered for [`RAMP_PATIENCE`]). Every SYN beyond the destination's TTL reaches the
//! destination too, and one that arrives while the first one's connection is half-open
//! meets it (Linux answers the first such SYN with a challenge ACK, RFC 5961 §4, and
//! ignores the rest): so a destination at TTL d that answers within [`RAMP_PATIENCE`] gets
//! at most d − 1 SYNs after the one that reached it (none when it is the first hop, one
//! at the second), and never more than `parallel − 1`. It costs a near path nothing and a far one a few round trips to its
//! first routers; a silent hop holds the window back for [`RAMP_PATIENCE`], not for
//! `timeout`.
//!
//! Attempt k+1 at a TTL follows attempt k by `interval` (spreading what each router must
//! answer: Linux lets a peer have 6 ICMP errors at once, then one per second); at a TTL
//! that might be the destination it also waits for attempt k's answer (or, SYN mode,
//! `Trace::settle_patience`, then a clearing RST goes first), so that its SYN does not meet
//! the half-open connection of the one before. A TTL is known to lie before the
//! destination once any TTL at or above it got a time exceeded — not because the
//! destination answered a higher TTL: that TTL's SYNs may all have been lost.
//!
//! # One 4-tuple, one connection at the destination
//! The destination keeps one connection per 4-tuple, and a SYN that meets another
//! probe's half-open connection gets at most one ACK per `tcp_invalid_ratelimit` (RFC
//! 5961 §4, RFC 9293 §3.10.7.4) or nothing. So, in SYN mode: once the destination
//! answered, one SYN that may reach it is in flight at a time (`Trace::settled`);
//! before each such SYN goes a RST for every earlier probe that may have left a
//! connection there (`Trace::clearing_rsts`); and an ACK that only one probe can have
//! drawn is that probe's answer (it reached the destination).
//!
//! The trace ends when
//! - the destination answered (SYN-ACK, RST, or for in-session the echoing ACK), or a
//!   router answered with an unreachable: every attempt at lower TTLs is answered or given
//!   up, and higher TTLs are not probed any more;
//! - `gap` TTLs in a row above the last one that answered stayed silent: "no reply beyond
//!   TTL N", the likely place where the SYN is dropped;
//! - `max_ttl` is reached, or the user stops it.
//!
//! A probe is given up `timeout` after it was sent.

pub mod diff;
pub mod record;
mod schedule;
mod summary;
#[cfg(test)]
mod tests;

use crate::probe::record::{PortState, Verdict};
use crate::tcp::{self, Connection, Event, IcmpOutcome, State};
use crate::time::Instant;
use crate::wire::checksum;
use crate::wire::ip::{IPV6_HEADER_LEN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use crate::wire::quote::{IcmpBody, QuotedDatagram};
use crate::wire::{
    IcmpError, IcmpKind, IpPacket, IpRepr, SeqNumber, TcpFlags, TcpOptions, TcpRepr,
};
use record::TraceMode;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use summary::reply_word;

/// At most this many probes per trace (TTLs × attempts): the sequence numbers of SYN-mode
/// probes must stay [`SEQ_STRIDE`] apart around the 2^32 circle.
pub const MAX_PROBES: usize = 1024;
/// SYN-mode probes' sequence numbers are this far apart: beyond any window a half-open
/// connection at the destination offers (a SYN-ACK's window is at most 65535 unscaled,
/// RFC 7323 §2.2), so no probe lands in another's window.
pub const SEQ_STRIDE: u32 = 1 << 22;
/// The timestamp clock's tick (RFC 7323 §5.4, our connection's millisecond clock):
/// in-session probes are at least this far apart, so each has a TSval of its own.
pub const TSVAL_TICK: Duration = Duration::from_millis(1);
/// A first attempt unanswered this long opens the window one TTL further (the module
/// doc's "Which TTLs when"): longer than a first hop's round trip on any link that is not
/// a satellite's, short against the default `timeout` (1 s), so a silent router costs
/// the trace this, not a timeout.
pub const RAMP_PATIENCE: Duration = Duration::from_millis(50);
/// Bytes of a quote (and of a packet of ours) kept for the comparison.
const MAX_KEPT: usize = 256;
/// IPv4 identifications of our other segments (RSTs, the connection's) start this far
/// from the probes', so the two never collide.
const OTHER_IDENT_OFFSET: u16 = 0x8000;
/// Most notes a trace keeps.
const MAX_NOTES: usize = 16;
/// Other addresses kept per probe.
const MAX_OTHER_ADDRS: usize = 4;

/// What to trace and how; every value validated by the caller.
#[derive(Clone, Debug)]
pub struct TraceConfig {
    /// The target as the user wrote it.
    pub target: String,
    pub mode: TraceMode,
    /// The connection whose SYN the probes copy (and, in-session, the one opened):
    /// addresses, ports, the ISN of the first probe, options, timers.
    pub tcp: tcp::Config,
    pub first_ttl: u8,
    pub max_ttl: u8,
    /// Attempts per TTL.
    pub probes: u8,
    /// TTLs probed ahead of the frontier (see the module doc).
    pub parallel: u8,
    /// A probe unanswered this long is given up.
    pub timeout: Duration,
    /// Between the attempts at one TTL.
    pub interval: Duration,
    /// Silent TTLs in a row that end the trace.
    pub gap: u8,
    /// TOS byte / IPv6 traffic class of every packet (DSCP << 2 | ECN).
    pub tos: u8,
    /// IPv4 identification of the first probe.
    pub ident: u16,
    /// TTL of our packets that are no probes (RSTs, the connection's segments).
    pub hop_limit: u8,
    /// In-session: how long the close may take before we reset.
    pub close_timeout: Duration,
}

impl TraceConfig {
    /// Probes this configuration may send.
    pub fn probe_count(&self) -> usize {
        usize::from(self.max_ttl.saturating_sub(self.first_ttl)) * usize::from(self.probes)
            + usize::from(self.probes)
    }

    /// An upper bound on the whole trace, however the network behaves: the handshake's
    /// backoff, every attempt's spacing, the timeouts, the close, and a margin.
    pub fn hard_limit(&self) -> Duration {
        let t = &self.tcp;
        let (mut syn, mut rto) = (Duration::ZERO, t.rto_initial);
        for _ in 0..=t.syn_retries {
            syn += rto;
            rto = (rto * 2).min(t.rto_max);
        }
        let pacing = match self.mode {
            TraceMode::Syn => Duration::ZERO,
            TraceMode::InSession => TSVAL_TICK * self.probe_count() as u32,
        };
        let attempts = (self.interval + self.timeout) * u32::from(self.probes)
            + self.timeout * u32::from(self.max_ttl);
        syn + pacing + attempts + self.close_timeout * 2 + t.time_wait + Duration::from_secs(5)
    }
}

/// A packet to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// IPv4: the whole datagram (TTL and TOS in it); IPv6: the TCP segment alone (the
    /// kernel writes the header: the sender sets `hop_limit` and `tos`).
    pub bytes: Vec<u8>,
    pub dst: IpAddr,
    pub hop_limit: u8,
    pub tos: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// In-session: opening the connection.
    Handshake,
    Tracing,
    /// In-session: our FIN and the server's.
    Closing,
    /// Answering late SYN-ACKs before we go.
    Draining,
    Done,
}

#[derive(Clone, Debug)]
enum AnswerKind {
    Icmp {
        kind: IcmpKind,
        icmp_type: u8,
        code: u8,
        /// The quoted datagram (up to [`MAX_KEPT`] bytes) and its quoted length.
        quote: Vec<u8>,
        quote_len: usize,
        rfc4884: bool,
    },
    /// The destination's TCP answer.
    Tcp { flags: TcpFlags },
}

#[derive(Clone, Debug)]
struct Answer {
    at: Instant,
    from: IpAddr,
    reply_ttl: u8,
    kind: AnswerKind,
}

/// One probe: a (TTL, attempt).
#[derive(Clone, Debug)]
struct Slot {
    ttl: u8,
    k: u8,
    seq: SeqNumber,
    ident: u16,
    tsval: Option<u32>,
    /// In-session: the garbage octet.
    octet: u8,
    /// Handed to the driver.
    queued: Option<Instant>,
    /// Its copy on the tap (the kernel's timestamp).
    sent_at: Option<Instant>,
    /// The datagram as it left (the tap's copy; until then, as built).
    sent: Vec<u8>,
    answer: Option<Answer>,
    /// Other routers that answered it too.
    others: Vec<IpAddr>,
    lost: bool,
    /// Unanswered for [`RAMP_PATIENCE`] (first attempts only): the window may pass it.
    overdue: bool,
    /// SYN mode: a clearing RST went out for the connection this SYN may have opened at
    /// the destination ([`Trace::clearing_rsts`]).
    cleared: bool,
    /// Its place in the order probes were handed out (from 1; 0: not yet).
    order: u32,
    /// Unanswered for [`Trace::settle_patience`]: twice the longest round trip seen, so
    /// its SYN was lost, or reached the destination and the SYN-ACK was lost (the clearing
    /// RST before the next SYN resets that connection); it no longer holds the next SYN
    /// back ([`Trace::settled`]). It is still waited for until `timeout`.
    stale: bool,
}

impl Slot {
    fn resolved(&self) -> bool {
        self.answer.is_some() || self.lost
    }

    fn outstanding(&self) -> bool {
        self.queued.is_some() && !self.resolved()
    }
}

/// The far end, as far as known.
#[derive(Clone, Copy, Debug)]
struct End {
    ttl: u8,
    verdict: Verdict,
    addr: IpAddr,
}

/// One trace, sans-IO. Polling order after `start` and after every `handle_*`: drain
/// `poll_transmit`, then check `is_done`, then sleep until a packet or `poll_timeout`.
pub struct Trace {
    cfg: TraceConfig,
    phase: Phase,
    slots: Vec<Slot>,
    tx: VecDeque<Transmit>,
    conn: Option<Connection>,
    end: Option<End>,
    started: Option<Instant>,
    first_sent: Option<Instant>,
    finished_at: Option<Instant>,
    drain_until: Option<Instant>,
    close_deadline: Option<Instant>,
    give_up_at: Option<Instant>,
    other_ident: u16,
    last_probe_at: Option<Instant>,
    /// In-session: the end of the millisecond in which the connection last sent a segment
    /// with a timestamp. A probe before it would carry the same TSval (the clock counts
    /// milliseconds), and an ACK of that segment would read as the probe's answer.
    conn_tsval_until: Option<Instant>,
    /// What the last packet handed in was, for a capture's comment.
    note: Option<String>,
    /// In-session: the window our probes carry (their TSecr is the connection's TS.Recent).
    window: u16,
    timestamps: bool,
    handshake_syn_at: Option<Instant>,
    handshake_synack_at: Option<Instant>,
    /// In-session: echoes from the server that named no probe (no timestamps).
    untied_acks: u32,
    /// SYN mode: challenge ACKs, the destination's answers to SYNs that met the half-open
    /// connection of an earlier probe.
    challenge_acks: u32,
    /// Those of them taken as the answer of the one probe that could have drawn them.
    challenge_answers: u32,
    /// Probes handed out so far (each slot's `order`).
    probes_handed: u32,
    close_outcome: Option<String>,
    max_rtt: Duration,
    /// Packets handed to the driver to send.
    handed: u32,
    /// Packets of ours seen leaving (their copies on the tap): what was really sent. The
    /// kernel may hold what it was handed (an unresolved next hop) and drop it.
    packets_sent: u32,
    /// The driver's word that the next hop's link-layer address went unresolved.
    unresolved: Option<String>,
    /// Anything of ours came back (an answer, an error quoting us, a stray segment).
    heard: bool,
    /// The tap is on a loopback interface, which hands out arriving copies only: a packet
    /// from our address and port arriving there is ours ([`Trace::over_loopback`]).
    loopback: bool,
    /// The driver's word that the target is on a link of this host: no router between.
    on_link: bool,
    unmatched: u32,
    notes: Vec<String>,
    interrupted: bool,
    error: Option<String>,
}

impl Trace {
    pub fn new(cfg: TraceConfig) -> Trace {
        let count = cfg.probe_count().min(MAX_PROBES);
        let mut slots = Vec::with_capacity(count);
        'ttls: for ttl in cfg.first_ttl..=cfg.max_ttl {
            for k in 0..cfg.probes {
                let p = slots.len();
                if p >= MAX_PROBES {
                    break 'ttls;
                }
                slots.push(Slot {
                    ttl,
                    k,
                    seq: cfg.tcp.isn.add((p as u32).wrapping_mul(SEQ_STRIDE)),
                    ident: cfg.ident.wrapping_add(p as u16),
                    tsval: None,
                    octet: p as u8,
                    queued: None,
                    sent_at: None,
                    sent: Vec::new(),
                    answer: None,
                    others: Vec::new(),
                    lost: false,
                    overdue: false,
                    cleared: false,
                    order: 0,
                    stale: false,
                });
            }
        }
        let conn = (cfg.mode == TraceMode::InSession).then(|| Connection::new(cfg.tcp.clone()));
        Trace {
            other_ident: cfg.ident.wrapping_add(OTHER_IDENT_OFFSET),
            cfg,
            phase: Phase::Tracing,
            slots,
            tx: VecDeque::new(),
            conn,
            end: None,
            started: None,
            first_sent: None,
            finished_at: None,
            drain_until: None,
            close_deadline: None,
            give_up_at: None,
            last_probe_at: None,
            conn_tsval_until: None,
            note: None,
            window: 0,
            timestamps: false,
            handshake_syn_at: None,
            handshake_synack_at: None,
            untied_acks: 0,
            challenge_acks: 0,
            challenge_answers: 0,
            probes_handed: 0,
            close_outcome: None,
            max_rtt: Duration::ZERO,
            handed: 0,
            packets_sent: 0,
            unresolved: None,
            heard: false,
            loopback: false,
            on_link: false,
            unmatched: 0,
            notes: Vec::new(),
            interrupted: false,
            error: None,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.cfg.tcp.local
    }

    pub fn remote(&self) -> SocketAddr {
        self.cfg.tcp.remote
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn start(&mut self, now: Instant) {
        if self.started.is_some() {
            return;
        }
        self.started = Some(now);
        self.give_up_at = Some(now + self.cfg.hard_limit());
        if let Some(conn) = &mut self.conn {
            self.phase = Phase::Handshake;
            conn.connect(now);
        }
    }

    /// Whether packets were handed to the driver and nothing shows that any left: no copy
    /// on the tap, and nothing came back (an answer proves its probe left, whatever the
    /// tap missed).
    pub fn nothing_seen_leaving(&self) -> bool {
        self.handed > 0 && self.packets_sent == 0 && !self.heard
    }

    /// The driver asked the kernel why nothing left: the next hop's link-layer address
    /// went unresolved (`what`: which address, on which interface, by ARP or ND). The
    /// kernel holds packets for an unresolved neighbour and drops them when resolution
    /// fails, so no probe reached the wire and no router could answer: the record says
    /// so (as a probe's does) instead of blaming the first hop.
    pub fn next_hop_unresolved(&mut self, what: String) {
        self.unresolved = Some(what);
    }

    /// The user stopped us: no more probes; in-session, close the connection.
    pub fn interrupt(&mut self, now: Instant) {
        if self.phase == Phase::Done || self.interrupted {
            return;
        }
        self.interrupted = true;
        self.finish(now);
    }

    // --- outputs ---

    /// The next packet to send: RSTs and the connection's segments first, then a probe
    /// when one is due.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.tx.pop_front() {
            return Some(self.count(now, t));
        }
        if let Some(seg) = self.conn.as_mut().and_then(|c| c.poll_transmit(now)) {
            self.drain_events(now);
            if seg.flags.ack() && !seg.flags.rst() {
                self.window = seg.window;
            }
            if seg.options.timestamps.is_some() {
                let next_ms = (now.as_nanos() / 1_000_000 + 1) * 1_000_000;
                self.conn_tsval_until = Some(Instant::from_nanos(next_ms));
            }
            let repr = seg.repr(self.local().port(), self.remote().port());
            let ident = self.next_other_ident();
            let t = self.emit(&repr, self.cfg.hop_limit, ident).0;
            return Some(self.count(now, t));
        }
        self.step(now);
        if self.phase != Phase::Tracing {
            return None;
        }
        // A probe in the millisecond of the connection's last segment would share its
        // TSval: a SYN proxy's window update echoing the handshake's ACK read as the
        // destination's answer at hop 1, RTT 0 (fault walk, nft synproxy). Wait it out.
        match self.conn_tsval_until {
            Some(until) if now < until && self.timestamps => return None,
            Some(_) => self.conn_tsval_until = None,
            None => {}
        }
        let (ready, _) = self.schedule(now);
        let p = ready?;
        self.clearing_rsts(p);
        let t = self.build_probe(p, now)?;
        if self.tx.is_empty() {
            return Some(self.count(now, t));
        }
        // The clearing RSTs first, then the probe: on one path they arrive in that order.
        self.tx.push_back(t);
        let t = self.tx.pop_front()?;
        Some(self.count(now, t))
    }

    /// SYN mode, before probe `p` if it may reach the destination: a RST for each earlier
    /// probe that may have opened a connection there and got no clearing RST yet. All
    /// probes share one 4-tuple (the module doc's flow identity), and the destination
    /// keeps one connection per 4-tuple: a SYN that meets another probe's half-open
    /// connection (SYN-RECEIVED) is not answered with a SYN-ACK but with at most one ACK
    /// per `tcp_invalid_ratelimit` (RFC 9293 §3.10.7.4, RFC 5961 §4; Linux's
    /// `tcp_check_req`), and read as lost. The RST we send on a SYN-ACK may be lost on
    /// the way, a SYN-ACK may be, and a probe we gave up may have reached it: none of
    /// these is known to have left nothing half-open. The RST's sequence number is that
    /// probe's ISN + 1, the connection's RCV.NXT, in window (RFC 9293 §3.10.7.4, RFC 5961
    /// §3.2: in SYN-RECEIVED Linux takes any in-window RST); to a connection of another
    /// probe, or to none, it is out of window or finds no socket and is dropped unanswered
    /// (a RST is never answered, RFC 9293 §3.10.7.1).
    fn clearing_rsts(&mut self, p: usize) {
        // A destination that answered with a RST has no listener: nothing is half-open.
        let closed = self
            .end
            .is_some_and(|e| e.verdict.state == PortState::Closed && e.addr == self.remote().ip());
        if self.cfg.mode != TraceMode::Syn || closed || self.proven_intermediate(self.slots[p].ttl)
        {
            return;
        }
        // And, whatever was heard, an earlier attempt at this TTL that is unanswered: this
        // one goes out because that one is stale ([`Trace::settled`]), and it may be a
        // slow destination's SYN, half-open there until its SYN-ACK comes back.
        let ttl = self.slots[p].ttl;
        let same_ttl = |s: &Slot| s.ttl == ttl && s.answer.is_none() && s.queued.is_some();
        let dirty: Vec<usize> = (0..self.slots.len())
            .filter(|&q| {
                let s = &self.slots[q];
                q != p && !s.cleared && (same_ttl(s) || self.may_have_reached(q))
            })
            .collect();
        for q in dirty {
            let seq = self.slots[q].seq.add(1);
            self.queue_rst(seq);
            self.slots[q].cleared = true;
        }
    }

    /// The destination answered something: a SYN-ACK, a RST, an ACK.
    fn destination_heard(&self) -> bool {
        self.challenge_acks > 0
            || self.slots.iter().any(|s| {
                matches!(
                    s.answer,
                    Some(Answer {
                        kind: AnswerKind::Tcp { .. },
                        ..
                    })
                )
            })
    }

    /// SYN mode: probe `q` left, may have reached the destination (nothing at or beyond
    /// its TTL expired: [`Trace::proven_intermediate`]), and its fate leaves a connection
    /// there: it was given up (its SYN, or the SYN-ACK, may have been lost on the way), or
    /// answered with a SYN-ACK (our RST on it may have been lost) — not a RST, a router's
    /// error, an ACK drawn by a connection that was there already. One still waited for
    /// is only when it is settled ([`Trace::settled`]) or beyond the destination (it is
    /// waited for no more); else its SYN-ACK, when it comes, gets its RST at once.
    fn may_have_reached(&self, q: usize) -> bool {
        let s = &self.slots[q];
        s.queued.is_some()
            && !self.proven_intermediate(s.ttl)
            && match &s.answer {
                // Unanswered: only once the destination answered anything (a listener is
                // there). Until then a SYN that reached it and whose SYN-ACK was lost
                // shows in the next SYN's ACK, which is answered with a RST (and a silent
                // path, a firewall's drop, gets no RST per probe).
                None => {
                    self.destination_heard() && (s.lost || self.settled(q) || s.ttl > self.limit())
                }
                Some(Answer {
                    kind: AnswerKind::Tcp { flags },
                    ..
                }) => flags.syn() && !flags.rst(),
                Some(_) => false,
            }
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        let mut next = self.give_up_at;
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        at(self.conn.as_ref().and_then(|c| c.poll_timeout()));
        at(self.drain_until);
        // Only while closing, where `handle_timeout` acts on it: a close that ended by
        // itself leaves the deadline set, and a deadline nobody clears is one the driver
        // would wake for again at once, forever (a busy loop until the drain ends).
        if self.phase == Phase::Closing {
            at(self.close_deadline);
        }
        if self.phase == Phase::Tracing {
            at(self.conn_tsval_until.filter(|_| self.timestamps));
            at(self.schedule(Instant::from_nanos(0)).1);
            at(self
                .slots
                .iter()
                .filter(|s| s.outstanding())
                .filter_map(|s| s.queued)
                .min()
                .map(|q| q + self.cfg.timeout));
            at(self
                .slots
                .iter()
                .filter(|s| s.k == 0 && s.outstanding() && !s.overdue)
                .filter_map(|s| s.queued)
                .min()
                .map(|q| q + self.patience()));
            if self.cfg.mode == TraceMode::Syn {
                at(self
                    .slots
                    .iter()
                    .filter(|s| s.outstanding() && !s.stale)
                    .filter_map(|s| s.queued)
                    .min()
                    .map(|q| q + self.settle_patience()));
            }
        }
        next
    }

    // --- inputs ---

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        if self.give_up_at.is_some_and(|g| now >= g) {
            self.note("gave up: the trace exceeded its time budget".into());
            self.phase = Phase::Done;
            return;
        }
        if let Some(conn) = &mut self.conn {
            conn.handle_timeout(now);
            self.drain_events(now);
        }
        let patience = self.patience();
        let settle = self.settle_patience();
        for s in &mut self.slots {
            if s.outstanding() && s.queued.is_some_and(|q| now >= q + self.cfg.timeout) {
                s.lost = true;
            }
            if s.outstanding() && s.queued.is_some_and(|q| now >= q + settle) {
                s.stale = true;
            }
            if s.k == 0 && s.outstanding() && s.queued.is_some_and(|q| now >= q + patience) {
                s.overdue = true;
            }
        }
        if self.phase == Phase::Closing && self.close_deadline.is_some_and(|d| now >= d) {
            if let Some(conn) = &mut self.conn {
                conn.abort(now);
            }
            self.close_outcome = Some("timed out: reset".into());
            self.close_deadline = None;
            self.drain(now, Duration::from_millis(2));
        }
        self.step(now);
    }

    /// A packet the tap saw at `at`: `outgoing` copies of what left this host, or
    /// arrivals (whole datagrams: the driver reassembles fragments). Returns whether it
    /// belonged to this trace. Once the trace is done, only the copies of our own last
    /// packets are still taken (they count as sent, and a capture names them).
    pub fn handle_packet(
        &mut self,
        at: Instant,
        outgoing: bool,
        bytes: &[u8],
        checksum_offloaded: bool,
    ) -> bool {
        self.note = None;
        // A probe past its timeout is given up, whether or not a timeout was handled since
        // (while draining none is): an answer after it is late, not the probe's.
        for s in &mut self.slots {
            if s.outstanding() && s.queued.is_some_and(|q| at >= q + self.cfg.timeout) {
                s.lost = true;
            }
        }
        let Ok(pkt) = IpPacket::parse(bytes) else {
            return false;
        };
        if pkt.fragment.is_some() {
            return false;
        }
        // Ours: a copy leaving, or on loopback — whose tap keeps only the arriving copy of
        // each packet, ours too — an arrival from our address and port. Elsewhere such an
        // arrival is someone else's (a spoof, a reflection), and must not count as sent.
        let own =
            pkt.ip.protocol == PROTO_TCP && (outgoing || (self.loopback && self.sent_by_us(&pkt)));
        if self.phase == Phase::Done && !own {
            return false;
        }
        let ours = match pkt.ip.protocol {
            PROTO_TCP if own => self.on_own_segment(at, &pkt, bytes),
            PROTO_TCP => self.on_segment(at, &pkt, checksum_offloaded),
            PROTO_ICMP | PROTO_ICMPV6 if !outgoing => self.on_icmp(at, &pkt),
            _ => false,
        };
        self.heard |= ours && !own;
        self.step(at);
        ours
    }

    /// The driver's word that its tap is on a loopback interface (a trace to 127.0.0.1 or
    /// to this host's own address): our packets are seen there as arrivals only.
    pub fn over_loopback(&mut self, yes: bool) {
        self.loopback = yes;
    }

    /// The driver's word that the route to the target has no gateway: the target is on
    /// this host's link, so a silence is its own (or a filter's on the link), no router's.
    pub fn on_link(&mut self, yes: bool) {
        self.on_link = yes;
    }

    /// A TCP segment from our address and port to the target's.
    fn sent_by_us(&self, pkt: &IpPacket<'_>) -> bool {
        let (local, remote) = (self.local(), self.remote());
        let port = |at: usize| {
            pkt.payload
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        pkt.ip.src == local.ip()
            && pkt.ip.dst == remote.ip()
            && port(0) == Some(local.port())
            && port(2) == Some(remote.port())
    }

    /// What the packet last handed to [`Trace::handle_packet`] was to the trace, in words
    /// (`probe: TTL 3, attempt 2`, `time-exceeded from 198.18.0.30: TTL 2, attempt 1, rtt
    /// 41.2 µs`), for the comments of a capture file.
    pub fn packet_note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// `TTL t, attempt k`.
    fn describe_probe(&self, p: usize) -> String {
        let s = &self.slots[p];
        format!("TTL {}, attempt {}", s.ttl, s.k + 1)
    }

    /// `TTL t, attempt k` and the probe's round trip to `at`, if its send time is known.
    fn describe(&self, p: usize, at: Instant) -> String {
        let s = &self.slots[p];
        let rtt = s
            .sent_at
            .map(|t| {
                format!(
                    ", rtt {:.1} µs",
                    at.saturating_since(t).as_nanos() as f64 / 1e3
                )
            })
            .unwrap_or_default();
        format!("TTL {}, attempt {}{rtt}", s.ttl, s.k + 1)
    }

    // --- building packets ---

    fn next_other_ident(&mut self) -> u16 {
        let i = self.other_ident;
        self.other_ident = i.wrapping_add(1);
        i
    }

    /// A packet handed to the driver (counted as sent once its copy is seen leaving).
    fn count(&mut self, now: Instant, t: Transmit) -> Transmit {
        self.handed = self.handed.saturating_add(1);
        self.first_sent.get_or_insert(now);
        t
    }

    /// The bytes to hand the sender, and the datagram as it should leave (IPv6: with the
    /// header the kernel will write, flow label unknown until the tap shows it).
    fn emit(&self, repr: &TcpRepr<'_>, hop_limit: u8, ident: u16) -> (Transmit, Vec<u8>) {
        let (local, remote) = (self.local(), self.remote());
        let mut ip = IpRepr::new(
            local.ip(),
            remote.ip(),
            PROTO_TCP,
            hop_limit,
            repr.buffer_len(),
        );
        ip.ident = ident;
        let mut full = vec![0u8; ip.header_len() + repr.buffer_len()];
        let Ok(n) = ip.emit(&mut full) else {
            return (self.empty_transmit(), Vec::new());
        };
        if repr.emit(local.ip(), remote.ip(), &mut full[n..]).is_err() {
            return (self.empty_transmit(), Vec::new());
        }
        let tos = self.cfg.tos;
        if local.is_ipv6() {
            // Traffic class: the 8 bits after the version (RFC 8200 §3).
            full[0] = 0x60 | (tos >> 4);
            full[1] = (full[1] & 0x0f) | (tos << 4);
        } else {
            full[1] = tos;
            full[10..12].fill(0);
            let sum = checksum::internet_checksum(0, &full[..n]);
            full[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        let bytes = if local.is_ipv6() {
            full[IPV6_HEADER_LEN..].to_vec()
        } else {
            full.clone()
        };
        full.truncate(MAX_KEPT);
        (
            Transmit {
                bytes,
                dst: remote.ip(),
                hop_limit,
                tos,
            },
            full,
        )
    }

    fn empty_transmit(&self) -> Transmit {
        Transmit {
            bytes: Vec::new(),
            dst: self.remote().ip(),
            hop_limit: self.cfg.hop_limit,
            tos: self.cfg.tos,
        }
    }

    fn build_probe(&mut self, p: usize, now: Instant) -> Option<Transmit> {
        let (ttl, seq, ident, octet) = {
            let s = self.slots.get(p)?;
            (s.ttl, s.seq, s.ident, s.octet)
        };
        let (repr_seg, tsval) = match self.cfg.mode {
            TraceMode::Syn => {
                // Exactly the SYN our connection would send, at this probe's ISN.
                let mut c = self.cfg.tcp.clone();
                c.isn = seq;
                let mut conn = Connection::new(c);
                conn.connect(now);
                let mut seg = conn.poll_transmit(now)?;
                let tsval = seg.options.timestamps.map(|(v, e)| {
                    let v = v.wrapping_add(p as u32);
                    seg.options.timestamps = Some((v, e));
                    v
                });
                (seg, tsval)
            }
            TraceMode::InSession => {
                let conn = self.conn.as_ref()?;
                let tsval = self.timestamps.then(|| {
                    ((now.as_nanos() / 1_000_000) as u32).wrapping_add(self.cfg.tcp.ts_offset)
                });
                let mut options = TcpOptions::default();
                if let Some(v) = tsval {
                    // TS.Recent as the connection keeps it (RFC 7323 §4.3): from the
                    // SYN-ACK on, so the first keep-alive echoes it too.
                    options.timestamps = Some((v, conn.ts_recent().unwrap_or(0)));
                }
                let seg = tcp::Segment {
                    seq: conn.snd_nxt().sub(1),
                    ack: conn.rcv_nxt(),
                    flags: TcpFlags::ACK,
                    window: self.window,
                    options,
                    payload: vec![octet],
                    retransmission: false,
                    dont_frag: true,
                };
                (seg, tsval)
            }
        };
        let repr = repr_seg.repr(self.local().port(), self.remote().port());
        let (t, sent) = self.emit(&repr, ttl, ident);
        if t.bytes.is_empty() {
            return None;
        }
        let s = &mut self.slots[p];
        s.tsval = tsval;
        s.queued = Some(now);
        s.sent = sent;
        self.probes_handed = self.probes_handed.saturating_add(1);
        s.order = self.probes_handed;
        self.last_probe_at = Some(now);
        Some(t)
    }

    fn queue_rst(&mut self, seq: SeqNumber) {
        let repr = TcpRepr {
            src_port: self.local().port(),
            dst_port: self.remote().port(),
            seq,
            ack: SeqNumber(0),
            flags: TcpFlags::RST,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        let ident = self.next_other_ident();
        let (t, _) = self.emit(&repr, self.cfg.hop_limit, ident);
        if !t.bytes.is_empty() && self.tx.len() < 64 {
            self.tx.push_back(t);
        }
    }

    // --- packets in ---

    /// A packet of ours on its way out: the probe's send time and its header as sent.
    fn on_own_segment(&mut self, at: Instant, pkt: &IpPacket<'_>, bytes: &[u8]) -> bool {
        let Ok(seg) = TcpRepr::parse_unchecked(pkt.payload) else {
            return false;
        };
        let (local, remote) = (self.local(), self.remote());
        if pkt.ip.src != local.ip() || seg.src_port != local.port() || pkt.ip.dst != remote.ip() {
            return false;
        }
        self.packets_sent = self.packets_sent.saturating_add(1);
        let v6 = pkt.ip.src.is_ipv6();
        let tsval = seg.options.timestamps.map(|t| t.0);
        let octet = seg.payload.first().copied();
        let found = self.slots.iter().position(|s| {
            s.queued.is_some()
                && s.sent_at.is_none()
                && s.ttl == pkt.ip.ttl
                && match self.cfg.mode {
                    TraceMode::Syn => {
                        seg.flags == TcpFlags::SYN
                            && s.seq == seg.seq
                            && (v6 || s.ident == pkt.ip.ident)
                    }
                    TraceMode::InSession => {
                        seg.payload.len() == 1
                            && (v6 || s.ident == pkt.ip.ident)
                            && (s.tsval.is_none() || s.tsval == tsval)
                            && Some(s.octet) == octet
                    }
                }
        });
        match found {
            Some(p) => {
                let s = &mut self.slots[p];
                s.sent_at = Some(at);
                s.sent = bytes[..bytes.len().min(MAX_KEPT)].to_vec();
                self.note = Some(format!("probe: TTL {}, attempt {}", s.ttl, s.k + 1));
            }
            None => {
                if seg.flags == TcpFlags::SYN && self.conn.is_some() {
                    self.handshake_syn_at.get_or_insert(at);
                }
                self.note = Some(if seg.flags == TcpFlags::RST && self.conn.is_none() {
                    "sent: RST, so the destination keeps nothing half-open".into()
                } else {
                    format!("sent: {} (the connection's)", seg.flags)
                });
            }
        }
        true
    }

    /// A segment from the destination.
    fn on_segment(&mut self, at: Instant, pkt: &IpPacket<'_>, checksum_offloaded: bool) -> bool {
        let (local, remote) = (self.local(), self.remote());
        let Ok(seg) = TcpRepr::parse_unchecked(pkt.payload) else {
            return false;
        };
        if pkt.ip.src != remote.ip()
            || seg.src_port != remote.port()
            || pkt.ip.dst != local.ip()
            || seg.dst_port != local.port()
        {
            return false;
        }
        if !checksum_offloaded && TcpRepr::parse(pkt.payload, pkt.ip.src, pkt.ip.dst).is_err() {
            self.unmatched = self.unmatched.saturating_add(1);
            self.note = Some("bad checksum: ignored".into());
            return true;
        }
        if self.conn.is_some() {
            self.on_session_segment(at, pkt.ip.ttl, &seg);
            return true;
        }
        // SYN mode: a SYN-ACK or RST names its probe by acknowledgment − 1 (RFC 9293
        // §3.10.7.3: a RST answering a SYN acknowledges it).
        let verdict = Verdict::of_reply(seg.flags);
        let p = seg
            .flags
            .ack()
            .then(|| self.slots.iter().position(|s| s.seq == seg.ack.sub(1)))
            .flatten();
        if seg.flags.ack() && !seg.flags.syn() && !seg.flags.rst() && !seg.flags.fin() {
            self.on_challenge_ack(at, pkt.ip.src, pkt.ip.ttl, p, seg);
            return true;
        }
        // A half-open connection of ours (SYN-ACK, or a bare ACK from SYN-RECEIVED) is
        // reset at once, whether or not it names a probe we still wait for.
        if verdict.is_some_and(|v| v.state == PortState::Open) {
            self.queue_rst(seg.ack);
        }
        match (p, verdict) {
            (Some(p), Some(v)) if !self.slots[p].lost && self.slots[p].queued.is_some() => {
                let ttl = self.slots[p].ttl;
                let word = reply_word(&AnswerKind::Tcp { flags: seg.flags });
                self.note = Some(format!(
                    "{word} from the destination: {}",
                    self.describe(p, at)
                ));
                let first = self.record_answer(
                    p,
                    Answer {
                        at,
                        from: pkt.ip.src,
                        reply_ttl: pkt.ip.ttl,
                        kind: AnswerKind::Tcp { flags: seg.flags },
                    },
                );
                if first {
                    self.set_end(ttl, v, pkt.ip.src);
                }
            }
            _ => {
                self.unmatched = self.unmatched.saturating_add(1);
                self.note = Some(format!(
                    "received {} from the destination: no probe waits for it",
                    seg.flags
                ));
            }
        }
        true
    }

    /// A bare ACK in SYN mode: the destination's answer to a SYN that met the half-open
    /// connection of an earlier probe (RFC 9293 §3.10.7.4, RFC 5961 §4; Linux:
    /// `tcp_check_req` answers an out-of-window SYN with an ACK, at most one per
    /// `tcp_invalid_ratelimit`, 0.5 s). Its acknowledgment is that connection's RCV.NXT,
    /// the earlier probe's ISN + 1 (`named`): it names the connection, not the SYN that
    /// drew it. That SYN reached the destination all the same (traceroute -T takes any
    /// TCP answer as reaching it): when only one probe can have drawn the ACK — one still
    /// waited for, sent after the connection's SYN, at a TTL that may reach the
    /// destination — the ACK is that probe's answer. Several: no answer is recorded. The
    /// connection is reset either way (RST at the ACK's acknowledgment number: in window,
    /// RFC 9293 §3.10.7.4), whether or not a SYN-ACK of it was answered already: that
    /// RST may have been lost, which is why the connection is still there.
    fn on_challenge_ack(
        &mut self,
        at: Instant,
        from: IpAddr,
        reply_ttl: u8,
        named: Option<usize>,
        seg: TcpRepr<'_>,
    ) {
        self.challenge_acks = self.challenge_acks.saturating_add(1);
        self.queue_rst(seg.ack);
        if let Some(n) = named {
            // Its RSTs so far were lost (the connection is still there), and this one may
            // be: one more before the next SYN that may reach the destination.
            self.slots[n].cleared = false;
        }
        let since = named.and_then(|n| self.slots[n].queued);
        let candidates: Vec<usize> = (0..self.slots.len())
            .filter(|&c| {
                let s = &self.slots[c];
                Some(c) != named
                    && s.outstanding()
                    && s.queued.is_some_and(|q| since.is_none_or(|t| q >= t))
                    && s.sent_at.is_none_or(|t| t <= at)
                    && !self.proven_intermediate(s.ttl)
            })
            .collect();
        let met = match named {
            Some(n) => format!("the half-open connection of {}", self.describe_probe(n)),
            None => "a connection it holds".into(),
        };
        let [c] = candidates[..] else {
            self.unmatched = self.unmatched.saturating_add(1);
            self.note = Some(format!(
                "challenge ACK from the destination to a SYN that met {met}: {} probes may \
                 have drawn it, none is named; reset",
                candidates.len()
            ));
            return;
        };
        self.challenge_answers = self.challenge_answers.saturating_add(1);
        self.note = Some(format!(
            "challenge ACK from the destination to a SYN that met {met}: the answer of {}; \
             reset",
            self.describe(c, at)
        ));
        let ttl = self.slots[c].ttl;
        let first = self.record_answer(
            c,
            Answer {
                at,
                from,
                reply_ttl,
                kind: AnswerKind::Tcp { flags: seg.flags },
            },
        );
        if first {
            // Only a listener's SYN-ACK opens a connection: the port is open.
            let verdict = self.end.map_or(Verdict::OPEN, |e| e.verdict);
            self.set_end(ttl, verdict, from);
        }
    }

    fn on_session_segment(&mut self, at: Instant, reply_ttl: u8, seg: &TcpRepr<'_>) {
        self.note = Some(format!("received {} (the connection's)", seg.flags));
        let Some(conn) = &mut self.conn else { return };
        // Only an in-order segment's TSecr names a probe (an old duplicate may echo an
        // earlier one); the TSecr our probes carry is the connection's TS.Recent.
        let in_order = seg.seq == conn.rcv_nxt();
        conn.handle_segment(at, seg);
        if let Some((_, tsecr)) = seg.options.timestamps
            && in_order
        {
            // The server's answer to a probe echoes its TSval (no probe shares one with the
            // connection's segments: `conn_tsval_until`), and comes after the probe left
            // (when the tap saw it leave: an answer proves its probe left).
            let pure_ack = seg.flags == TcpFlags::ACK && seg.payload.is_empty();
            if pure_ack
                && self.phase != Phase::Handshake
                && let Some(p) = self.slots.iter().position(|s| {
                    s.queued.is_some()
                        && s.tsval == Some(tsecr)
                        && s.sent_at.is_none_or(|left| left <= at)
                })
            {
                if !self.slots[p].lost {
                    let ttl = self.slots[p].ttl;
                    self.note = Some(format!(
                        "ACK from the destination, its TSecr names {}",
                        self.describe(p, at)
                    ));
                    let first = self.record_answer(
                        p,
                        Answer {
                            at,
                            from: self.remote().ip(),
                            reply_ttl,
                            kind: AnswerKind::Tcp { flags: seg.flags },
                        },
                    );
                    if first {
                        self.set_end(ttl, Verdict::OPEN, self.remote().ip());
                    }
                } else {
                    self.unmatched = self.unmatched.saturating_add(1);
                }
            }
        } else if seg.flags == TcpFlags::ACK
            && seg.payload.is_empty()
            && self.phase == Phase::Tracing
            && !self.timestamps
        {
            self.untied_acks = self.untied_acks.saturating_add(1);
        }
        self.drain_events(at);
    }

    /// Events of the in-session connection.
    fn drain_events(&mut self, now: Instant) {
        let Some(conn) = &mut self.conn else { return };
        // Bounded: a connection queues a handful per input.
        let mut events = Vec::new();
        while let Some(e) = conn.poll_event() {
            if events.len() < 64 {
                events.push(e);
            }
        }
        for e in events {
            match e {
                Event::Connected { at, peer } => {
                    self.handshake_synack_at = Some(at);
                    self.timestamps = peer.timestamps;
                    if !peer.timestamps {
                        // Or a middlebox stripped the option from the SYN or the SYN-ACK
                        // (RFC 7323 §3.2: then neither side sends it).
                        self.note(
                            "the server does not do timestamps, or a middlebox strips them: its \
                             answers cannot say which probe reached it"
                                .into(),
                        );
                    }
                    if self.phase == Phase::Handshake {
                        self.phase = Phase::Tracing;
                    }
                }
                Event::Refused { at, .. } => {
                    self.handshake_synack_at = Some(at);
                    self.handshake_failed(now, Verdict::CLOSED, None);
                }
                Event::TimedOut {
                    state: State::SynSent,
                    ..
                } => {
                    self.handshake_failed(now, Verdict::NO_RESPONSE, None);
                }
                Event::TimedOut { state, .. } => {
                    self.close_outcome = Some(format!("timed out in {}", state.name()));
                    if self.phase != Phase::Done {
                        self.drain(now, Duration::ZERO);
                    }
                }
                Event::Reset { state, .. } => {
                    self.close_outcome = Some(format!("reset by the server in {}", state.name()));
                    if matches!(self.phase, Phase::Tracing | Phase::Handshake) {
                        self.error =
                            Some("the server reset the connection during the trace".into());
                    }
                    self.finished_at.get_or_insert(now);
                    self.drain(now, Duration::ZERO);
                }
                Event::Closed { .. } => {
                    self.close_outcome.get_or_insert_with(|| "closed".into());
                    self.drain(now, Duration::from_millis(2));
                }
                _ => {}
            }
        }
    }

    /// `from`: who answered in the destination's place (a router's ICMP error); the
    /// destination's own answer (a RST) or none otherwise.
    fn handshake_failed(&mut self, now: Instant, verdict: Verdict, from: Option<IpAddr>) {
        if self.end.is_none() {
            self.end = Some(End {
                ttl: 0,
                verdict,
                addr: from.unwrap_or(self.remote().ip()),
            });
        }
        // The handshake's answer may not be the server's (a firewall's RST in its name, a
        // router's unreachable): only a SYN trace, TTL by TTL, shows which hop sent it.
        let remote = self.remote();
        let by = match from.filter(|&a| a != remote.ip()) {
            Some(a) => format!(", from {a}"),
            None => String::new(),
        };
        self.error = Some(format!(
            "{remote}: the port is {} ({}{by}): an in-session trace needs an open port; \
             `tcpshake trace {remote}` without --in-session shows which hop answers",
            verdict.state, verdict.reason
        ));
        self.finished_at.get_or_insert(now);
        self.drain(now, Duration::ZERO);
    }

    /// An ICMP or ICMPv6 error: ours when it quotes our 4-tuple (on either side, so a
    /// rewritten source still counts) and one of the probe's keys.
    fn on_icmp(&mut self, at: Instant, pkt: &IpPacket<'_>) -> bool {
        let v6 = pkt.ip.protocol == PROTO_ICMPV6;
        let Ok(Some(err)) = IcmpError::parse(pkt.payload, v6, pkt.ip.src, pkt.ip.dst) else {
            return false;
        };
        let (local, remote) = (self.local(), self.remote());
        let to_target = err.quoted_dst == remote.ip() && err.quoted_dst_port == remote.port();
        let from_us = err.quoted_src == local.ip() && err.quoted_src_port == local.port();
        if !(to_target || from_us) {
            return false;
        }
        let Ok(body) = IcmpBody::parse(pkt.payload, v6) else {
            return false;
        };
        let Ok(quote) = QuotedDatagram::parse(body.datagram) else {
            return false;
        };
        let what = format!("{} from {}", err.kind.reason(), pkt.ip.src);
        let Some(p) = self.match_quote(&quote) else {
            self.note = Some(format!("{what}: quotes our flow, names no probe"));
            // The connection's own segments (in-session): the handshake SYN, our FIN.
            if let Some(conn) = &mut self.conn {
                if conn.handle_icmp(at, &err) == IcmpOutcome::Aborted {
                    self.handshake_failed(at, Verdict::of_icmp(err.kind), Some(pkt.ip.src));
                }
                self.drain_events(at);
            } else {
                self.unmatched = self.unmatched.saturating_add(1);
            }
            return true;
        };
        // Advice about size is no hop's answer (our probes are small).
        if matches!(err.kind, IcmpKind::PacketTooBig { .. }) {
            self.note = Some(format!("{what}: about size, not an answer"));
            return true;
        }
        if self.slots[p].lost {
            self.unmatched = self.unmatched.saturating_add(1);
            self.note = Some(format!(
                "{what}: {}, already given up",
                self.describe(p, at)
            ));
            return true;
        }
        self.note = Some(format!("{what}: {}", self.describe(p, at)));
        let ttl = self.slots[p].ttl;
        // What was quoted of our packet: an RFC 4884 original-datagram field is padded to
        // 128 bytes, which our packet may not fill.
        let declared = if quote.ip.v6 {
            IPV6_HEADER_LEN + usize::from(quote.ip.length)
        } else {
            usize::from(quote.ip.length)
        };
        let quote_len = body.datagram.len().min(declared.max(quote.ip.header_len));
        // Only our packet is kept: the padding after it is nothing the hop did to it (it
        // used to read as `tcp.payload none → 0000…`, 68 zero bytes the hop "added").
        let kept = &body.datagram[..quote_len.min(MAX_KEPT)];
        let first = self.record_answer(
            p,
            Answer {
                at,
                from: pkt.ip.src,
                reply_ttl: pkt.ip.ttl,
                kind: AnswerKind::Icmp {
                    kind: err.kind,
                    icmp_type: err.icmp_type,
                    code: err.code,
                    quote: kept.to_vec(),
                    quote_len,
                    rfc4884: body.rfc4884_len.is_some(),
                },
            },
        );
        if first && err.kind != IcmpKind::TimeExceeded {
            self.set_end(ttl, Verdict::of_icmp(err.kind), pkt.ip.src);
        }
        true
    }

    /// Which probe a quote is of (see the module doc for the keys). Any key may have been
    /// rewritten on the way (an ISN randomiser, a NAT that renumbers identifications), and
    /// a short one may name another probe by chance, so each probe scores the keys it
    /// shares with the quote, the longer the key the more: the sequence number (SYN mode,
    /// 32 bits), TSval, the identification (16 bits), the octet (8). The one probe with
    /// the best score is it; a tie names nobody.
    fn match_quote(&self, q: &QuotedDatagram<'_>) -> Option<usize> {
        let tcp = q.tcp?;
        let seq = tcp.seq().filter(|_| self.cfg.mode == TraceMode::Syn);
        let tsval = tcp.options().and_then(|o| o.timestamps).map(|t| t.0);
        let ident = (!q.ip.v6).then_some(q.ip.ident);
        let octet = tcp
            .payload()
            .and_then(|p| p.first().copied())
            .filter(|_| self.cfg.mode == TraceMode::InSession);
        let score = |s: &Slot| {
            u32::from(seq == Some(s.seq)) * 8
                + u32::from(tsval.is_some() && tsval == s.tsval) * 4
                + u32::from(ident == Some(s.ident)) * 2
                + u32::from(octet == Some(s.octet))
        };
        let (mut best, mut best_score, mut tie) = (None, 0, false);
        for (p, s) in self.slots.iter().enumerate() {
            if s.queued.is_none() {
                continue;
            }
            let sc = score(s);
            if sc > best_score {
                (best, best_score, tie) = (Some(p), sc, false);
            } else if sc == best_score && sc > 0 {
                tie = true;
            }
        }
        if tie { None } else { best }
    }

    /// Keep `answer` for probe `p`. Returns whether it is the probe's first: a probe is
    /// one packet with one fate, so only its first answer may end the trace (traceroute,
    /// tcptraceroute and mtr take the first too). A later one that contradicts it — an
    /// unreachable after the probe's own hop said time-exceeded, from a duplicate or from
    /// someone who saw the SYN go by — is only listed among the hop's other addresses.
    fn record_answer(&mut self, p: usize, answer: Answer) -> bool {
        let s = &mut self.slots[p];
        match &s.answer {
            None => {
                if let Some(sent) = s.sent_at {
                    self.max_rtt = self.max_rtt.max(answer.at.saturating_since(sent));
                }
                s.answer = Some(answer);
                true
            }
            Some(first) => {
                if first.from != answer.from
                    && !s.others.contains(&answer.from)
                    && s.others.len() < MAX_OTHER_ADDRS
                {
                    s.others.push(answer.from);
                }
                false
            }
        }
    }

    /// The far end answered at `ttl` (the smallest such TTL wins).
    fn set_end(&mut self, ttl: u8, verdict: Verdict, addr: IpAddr) {
        if self.end.is_none_or(|e| ttl < e.ttl) {
            self.end = Some(End { ttl, verdict, addr });
        }
    }

    fn note(&mut self, n: String) {
        if self.notes.len() < MAX_NOTES && !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }
}
