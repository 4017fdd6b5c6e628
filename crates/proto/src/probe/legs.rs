//! Legs of the exchange, read off the segment log: each is the difference of two kernel
//! timestamps of segments that the tap saw, so the numbers agree with tcpdump's.

use super::record::{Dir, Leg, Legs, SegmentRecord};
use crate::wire::SeqNumber;
use std::collections::BTreeMap;

/// Why a leg is `null` although the segments it would join were seen (or why a leg was
/// measured between other segments than its name says), by leg name.
pub type LegNotes = BTreeMap<String, String>;

/// Indices into the log that the probe learned while the exchange ran (which SYN-ACK was
/// accepted, which incoming segment completed the HTTP response).
#[derive(Clone, Copy, Debug, Default)]
pub struct Marks {
    /// The SYN-ACK accepted; in a simultaneous open, the peer's bare SYN.
    pub synack: Option<usize>,
    pub response_complete: Option<usize>,
    /// The peer answered our SYN with a SYN of its own (SYN-RECEIVED).
    pub simultaneous_open: bool,
    /// The kernel timestamp (ns) of the ICMP error that ended the exchange: the last
    /// packet of it, though not a segment of the log.
    pub icmp_end_ns: Option<u64>,
}

/// The time from record `from` to record `to`; `None` when `to` came first (never a
/// clamped 0: a leg that ran backwards was not measured).
fn gap(log: &[SegmentRecord], from: usize, to: usize) -> Option<u64> {
    let (a, b) = (log.get(from)?, log.get(to)?);
    b.ts_ns.checked_sub(a.ts_ns)
}

/// The legs as measured, with the two segments each one runs between (indices into the
/// log) where both ends are segments: what a capture's comments name (a leg that ends at
/// an ICMP error, `total` then, has a value but no span).
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    pub legs: Legs,
    spans: [Option<(usize, usize)>; Leg::COUNT],
}

impl Measured {
    /// Leg `leg` from record `from` to record `to` of `log`; not measured (`None`) when an
    /// end is missing or `to` came first.
    pub fn between(
        &mut self,
        log: &[SegmentRecord],
        leg: Leg,
        from: Option<usize>,
        to: Option<usize>,
    ) {
        let ends = from.zip(to);
        let ns = ends.and_then(|(a, b)| gap(log, a, b));
        self.legs.set(leg, ns);
        self.spans[leg.index()] = ns.and(ends);
    }

    /// A leg whose end is no segment of the log.
    pub fn set_value(&mut self, leg: Leg, ns: Option<u64>) {
        self.legs.set(leg, ns);
        self.spans[leg.index()] = None;
    }

    /// (first, last) segment of `leg`, when it was measured between two of them.
    pub fn span(&self, leg: Leg) -> Option<(usize, usize)> {
        self.spans[leg.index()]
    }
}

/// Sequence number just past `r` (what acknowledges all of it).
fn end_seq(r: &SegmentRecord) -> SeqNumber {
    let syn_fin = u32::from(r.flags.syn()) + u32::from(r.flags.fin());
    SeqNumber(r.seq).add(r.len + syn_fin)
}

/// First record after `after` in direction `dir` that acknowledges everything up to `end`.
fn first_ack_of(log: &[SegmentRecord], after: usize, dir: Dir, end: SeqNumber) -> Option<usize> {
    log.iter()
        .enumerate()
        .skip(after + 1)
        .find(|(_, r)| acks(r, dir, end))
        .map(|(i, _)| i)
}

fn other(dir: Dir) -> Dir {
    match dir {
        Dir::Out => Dir::In,
        Dir::In => Dir::Out,
    }
}

/// A segment a leg may start or end at: not ignored for a bad checksum, and ours when it
/// says it is.
pub fn usable(r: &SegmentRecord) -> bool {
    !r.bad_checksum && !r.foreign
}

/// One of our SYNs (or, in a simultaneous open, our SYN-ACK): where SYN→SYN-ACK may start.
fn our_syn(r: &SegmentRecord) -> bool {
    r.dir == Dir::Out && r.flags.syn() && usable(r)
}

/// Our ACK of the SYN-ACK, when it is the first such segment after it.
fn our_ack(r: &SegmentRecord) -> bool {
    r.dir == Dir::Out && r.flags.ack() && !r.flags.syn() && !r.flags.rst() && usable(r)
}

/// Our request's first segment, when it is the first such segment.
fn our_data(r: &SegmentRecord) -> bool {
    r.dir == Dir::Out && r.len > 0 && usable(r)
}

/// A segment of the server's carrying data.
fn peer_data(r: &SegmentRecord) -> bool {
    r.dir == Dir::In && r.len > 0 && !r.flags.rst() && usable(r)
}

/// A segment of the server's whose data holds sequence number `byte` (its data starts after
/// its SYN, if it carries one).
fn carries(r: &SegmentRecord, byte: SeqNumber) -> bool {
    let start = SeqNumber(r.seq).add(u32::from(r.flags.syn()));
    peer_data(r) && byte.diff(start) >= 0 && (byte.diff(start) as u32) < r.len
}

/// A FIN that may open the close.
fn a_fin(r: &SegmentRecord) -> bool {
    r.flags.fin() && !r.flags.syn() && usable(r)
}

/// `r` acknowledges everything up to `end`, from side `dir`.
fn acks(r: &SegmentRecord, dir: Dir, end: SeqNumber) -> bool {
    r.dir == dir && r.flags.ack() && !r.flags.rst() && SeqNumber(r.ack).ge(end)
}

/// Which records [`compute`] may pick, decided as they are logged: the segment log keeps
/// every record this names even when a flood makes it leave others out (probe/log.rs), so
/// legs computed on what it kept are the legs of the whole exchange.
///
/// It follows `compute`'s searches one by one: every SYN of ours (SYN→SYN-ACK picks the one
/// the SYN-ACK echoes), the first ACK of ours after the SYN-ACK, the first segment of data
/// each way, the first FIN, the other side's first ACK of it and its own FIN, and that FIN's
/// ACK. The marks (the SYN-ACK, the segment that completed the response, TLS's) and the last
/// usable record are kept by the log itself.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    /// The SYN-ACK was marked; our next ACK answers it.
    synack_marked: bool,
    request_seen: bool,
    first_byte_seen: bool,
    /// The server's ISN, from the SYN-ACK marked (as `compute` takes it).
    irs: Option<SeqNumber>,
    response_start_seen: bool,
    /// The first FIN: its side and what acknowledges it.
    fin1: Option<(Dir, SeqNumber)>,
    fin1_acked: bool,
    /// The other side's FIN after it, and what acknowledges that.
    fin2: Option<SeqNumber>,
    fin2_acked: bool,
}

impl Watch {
    /// The SYN-ACK (or the bare SYN of a simultaneous open), whose sequence number is the
    /// server's ISN `irs`, was just marked: the response's first byte is the next.
    pub fn synack_marked(&mut self, irs: Option<SeqNumber>) {
        self.synack_marked = true;
        if irs.is_some() {
            self.irs = irs;
        }
    }

    /// Record `r` was just logged (after every earlier one): may a leg need it?
    pub fn needs(&mut self, r: &SegmentRecord) -> bool {
        let mut needed = our_syn(r);
        if self.synack_marked && our_ack(r) {
            self.synack_marked = false;
            needed = true;
        }
        if !self.request_seen && our_data(r) {
            self.request_seen = true;
            needed = true;
        }
        if !self.first_byte_seen && peer_data(r) {
            self.first_byte_seen = true;
            needed = true;
        }
        if !self.response_start_seen
            && let Some(irs) = self.irs
            && carries(r, irs.add(1))
        {
            self.response_start_seen = true;
            needed = true;
        }
        // Each ACK search starts after its FIN, so a record is looked at as an ACK before
        // it may become a FIN itself.
        match self.fin1 {
            None => {
                if a_fin(r) {
                    self.fin1 = Some((r.dir, end_seq(r)));
                    needed = true;
                }
            }
            Some((d1, end1)) => {
                if !self.fin1_acked && acks(r, other(d1), end1) {
                    self.fin1_acked = true;
                    needed = true;
                }
                match self.fin2 {
                    Some(end2) => {
                        if !self.fin2_acked && acks(r, d1, end2) {
                            self.fin2_acked = true;
                            needed = true;
                        }
                    }
                    None => {
                        if r.dir == other(d1) && r.flags.fin() && usable(r) {
                            self.fin2 = Some(end_seq(r));
                            needed = true;
                        }
                    }
                }
            }
        }
        needed
    }
}

pub fn compute(log: &[SegmentRecord], marks: Marks) -> (Measured, LegNotes) {
    let mut legs = Measured::default();
    let mut notes = LegNotes::new();
    let mut note = |leg: Leg, why: &str| {
        notes.insert(leg.name().to_string(), why.to_string());
    };
    let first_syn = log.iter().position(our_syn);

    if let Some(sa) = marks.synack {
        let synack = &log[sa];
        // The SYN this SYN-ACK answers: the one whose TSval it echoes (RFC 7323 §3.2) when
        // timestamps are on; otherwise the latest SYN sent before it.
        let echoed = synack.options.timestamps.map(|(_, ecr)| ecr);
        let syns: Vec<usize> = (0..sa).filter(|&i| our_syn(&log[i])).collect();
        let syn = syns
            .iter()
            .rev()
            .find(|&&i| echoed.is_some() && log[i].options.timestamps.map(|(v, _)| v) == echoed)
            .or(syns.last())
            .copied();
        if let Some(s) = syn {
            legs.between(log, Leg::SynToSynack, Some(s), Some(sa));
        }
        if marks.simultaneous_open {
            // The server answered with a bare SYN (simultaneous open): the first leg ends
            // at that SYN, and there is no SYN-ACK of the server's for us to acknowledge.
            note(
                Leg::SynToSynack,
                "simultaneous open: measured to the server's SYN, which came without an ACK",
            );
            note(
                Leg::SynackToAck,
                "simultaneous open: the server sent no SYN-ACK for us to acknowledge",
            );
        } else {
            let ack = log
                .iter()
                .enumerate()
                .skip(sa + 1)
                .find(|(_, r)| our_ack(r));
            if let Some((a, _)) = ack {
                legs.between(log, Leg::SynackToAck, Some(sa), Some(a));
            }
        }
    }

    let request = log.iter().position(our_data);
    if let Some(rq) = request {
        // The response's first byte: the one after the server's ISN, whenever it came (a
        // reordered or lost first segment is not the response's start because later bytes
        // came first; curl's time_starttransfer also waits for it). Without a SYN-ACK to
        // name the ISN, the first segment with data.
        let first_byte = match marks.synack {
            Some(sa) => {
                let byte = SeqNumber(log[sa].seq).add(1);
                log.iter().position(|r| carries(r, byte))
            }
            None => log.iter().position(peer_data),
        };
        match first_byte {
            Some(fb) if fb < rq => note(
                Leg::RequestToFirstByte,
                "the server sent data before our request (in its SYN-ACK or right after it)",
            ),
            Some(fb) => legs.between(log, Leg::RequestToFirstByte, Some(rq), Some(fb)),
            None if log.iter().skip(rq).any(peer_data) => note(
                Leg::RequestToFirstByte,
                "the response's first byte never arrived, though later bytes of it did",
            ),
            None => {}
        }
        match marks.response_complete {
            Some(done) if done < rq => note(
                Leg::RequestToComplete,
                "the response was complete before our request left (the server sent it unasked, in its SYN-ACK or right after it)",
            ),
            Some(done) => legs.between(log, Leg::RequestToComplete, Some(rq), Some(done)),
            None => {}
        }
    }

    // The close: the first FIN of either side, then the other side's.
    let first_fin = log.iter().position(a_fin);
    if let Some(f1) = first_fin {
        let d1 = log[f1].dir;
        if let Some(a) = first_ack_of(log, f1, other(d1), end_seq(&log[f1])) {
            legs.between(log, Leg::FinToAck, Some(f1), Some(a));
        }
        let second_fin = log
            .iter()
            .enumerate()
            .skip(f1 + 1)
            .find(|(_, r)| r.dir == other(d1) && r.flags.fin() && usable(r))
            .map(|(i, _)| i);
        if let Some(f2) = second_fin {
            legs.between(log, Leg::FinToPeerFin, Some(f1), Some(f2));
            if let Some(a) = first_ack_of(log, f2, d1, end_seq(&log[f2])) {
                legs.between(log, Leg::PeerFinToLastAck, Some(f2), Some(a));
            }
        }
    }

    if let (Some(s), Some(last)) = (first_syn, log.iter().rposition(usable)) {
        legs.between(log, Leg::Total, Some(s), Some(last));
        // An ICMP error that ended the exchange is its last packet: the total runs to it.
        if let Some(end) = marks.icmp_end_ns
            && end > log[last].ts_ns
        {
            legs.set_value(Leg::Total, end.checked_sub(log[s].ts_ns));
        }
    }
    (legs, notes)
}
