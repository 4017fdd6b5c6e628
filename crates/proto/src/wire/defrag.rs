//! IP reassembly of what the tap sees: IPv4 (RFC 791 §3.2, RFC 1122 §3.3.2) and IPv6
//! (RFC 8200 §4.5) fragments back into the datagram a peer sent.
//!
//! The kernel reassembles fragments for its own sockets; an AF_PACKET tap sees them as
//! they came off the wire. Without this, the first fragment of a SYN-ACK or a response is
//! a TCP segment cut short (a "bad checksum") and the others are noise.
//!
//! Why it lives here: it is pure policy over packet formats — bytes and the caller's
//! kernel timestamps in, whole datagrams out, no clock read — next to the parser whose
//! views it uses; every driver (net/run.rs, survey.rs, scan.rs) puts its tap's packets
//! through one before it looks for ports, since a later fragment carries none. It is
//! named `defrag` so it is not mistaken for TCP's stream reassembly (tcp/reassembly.rs).
//!
//! # Policy
//! Where the RFCs leave room, Linux's behaviour (net/ipv4/ip_fragment.c,
//! net/ipv6/reassembly.c, net/ipv4/inet_fragment.c) is the model: a Linux client given
//! the same fragments completes the same datagrams.
//! - **Key**: (source, destination, protocol, identification) for IPv4 (RFC 791 §3.2);
//!   (source, destination, identification) for IPv6 (RFC 8200 §4.5).
//! - **Bounds**: [`MAX_DATAGRAMS`] datagrams in reassembly at once — a new one evicts the
//!   one that started first; 65 535 bytes per datagram (IPv4 total length, IPv6 payload
//!   length); [`MAX_FRAGMENTS`] fragments per datagram. Memory is what has arrived, at
//!   most `MAX_DATAGRAMS` × 64 KiB (twice that when the fragments are kept for a capture).
//! - **Timeout**: [`TIMEOUT`] (Linux's `ipfrag_time`, 30 s; RFC 1122 §3.3.2 suggests
//!   60–120 s, but a probe's whole budget is shorter) from a datagram's first fragment,
//!   measured on the kernel timestamps the caller passes in: each fragment pushed first
//!   forgets datagrams older than that (whole packets skip the reassembler, so between
//!   fragments nothing is looked at; memory stays bounded by the datagram limit anyway).
//! - **Overlaps**: a fragment that overlaps data already received, without lying wholly
//!   inside what has arrived, discards the whole datagram — RFC 5722 §4 for IPv6, and
//!   what Linux does for IPv4 as well since 4.19 (inet_frag_queue_insert returns
//!   IPFRAG_OVERLAP and the queue is killed). Later fragments of it start afresh and time
//!   out, as in Linux.
//! - **Duplicates**: a fragment wholly inside what has arrived is ignored and the
//!   datagram kept (RFC 5722 errata 3089; Linux's IPFRAG_DUP). Its bytes are not compared.
//! - **Out of order** arrival is fine; the datagram completes when every byte from 0 to
//!   the last fragment's end has come.
//! - **Odd lengths**: a fragment other than the last whose length is not a multiple of 8:
//!   IPv4 trims it to one (Linux); IPv6 drops that fragment (RFC 8200 §4.5 asks for a
//!   Parameter Problem and a discard; Linux drops it and keeps the rest). An empty
//!   fragment, or a last fragment that disagrees with what came before (a second, other
//!   end; data past it), discards the datagram (Linux).
//! - **Past 65 535**: an IPv4 fragment that would put the datagram past 65 535 bytes
//!   discards it (Linux fails such a datagram at reassembly); an IPv6 fragment ending past
//!   65 535 is dropped alone (Linux: Parameter Problem, fragment dropped).
//! - **Tiny first fragments** (RFC 1858: the TCP header itself split): IPv4 reassembles
//!   them like any other (so does Linux); the datagram is checked as a whole once it is
//!   complete. IPv6 drops a first fragment that does not hold every header through the
//!   upper-layer header (RFC 8200 §4.5, from RFC 7112; Linux's
//!   `ipv6frag_thdr_truncated`: 20 bytes of TCP, 8 of ICMPv6 or UDP), so its datagram
//!   never completes, as with a Linux receiver.
//! - **Atomic fragments** (IPv6, offset 0 and M clear, RFC 6946 §4) are whole packets:
//!   returned as [`Defragged::Whole`] at once, never queued, never mixed with a
//!   reassembly of the same identification.
//!
//! # Time
//! A reassembled datagram is as old as the fragment that completed it: that is when the
//! segment inside it exists for a receiver (Linux delivers it then). [`Reassembled`] also
//! carries when its first fragment came; tcpdump shows every fragment with its own stamp,
//! and so does a `--pcap` (the fragments are kept for it).
//!
//! Allocation: only for fragments (a buffer per datagram in reassembly); whole packets
//! pass through untouched.

use super::checksum;
use super::ip::{IPV4_HEADER_LEN, IPV6_HEADER_LEN, IpPacket, skip_ipv6_extensions};
use crate::time::Instant;
use std::net::IpAddr;
use std::time::Duration;

/// Datagrams in reassembly at once; a new one beyond this evicts the one that started first.
pub const MAX_DATAGRAMS: usize = 16;
/// Fragments accepted per datagram (a 64 KiB datagram over a 576-byte IPv4 path takes 120).
pub const MAX_FRAGMENTS: u16 = 128;
/// How long a datagram may wait for its missing fragments (Linux's `ipfrag_time`).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest datagram: IPv4 total length, IPv6 payload length.
pub const MAX_LEN: usize = 65_535;

/// What became of one packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Defragged {
    /// Not a fragment (or an IPv6 atomic fragment, or not a packet at all): use the bytes as
    /// they came.
    Whole,
    /// A fragment of a datagram still incomplete: kept.
    Held,
    /// This fragment completed a datagram.
    Complete(Reassembled),
    /// Dropped, and why.
    Dropped(Discard),
}

/// A datagram put back together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembled {
    /// The whole IP packet, header rewritten as if it had never been fragmented (IPv4:
    /// MF and offset clear, total length and checksum new; IPv6: the Fragment header
    /// removed, payload length new — RFC 8200 §4.5).
    pub bytes: Vec<u8>,
    /// How many fragments it came in (duplicates not counted).
    pub fragments: u16,
    /// When its first fragment arrived; it completed at the `at` of the last `push`.
    pub first_at: Instant,
    /// Some fragment's transport checksum was left to hardware (the tap's
    /// TP_STATUS_CSUMNOTREADY): the reassembled checksum cannot be verified either.
    pub checksum_offloaded: bool,
    /// Each fragment as it came, with its timestamp (only when asked for, for a capture).
    pub originals: Vec<(Instant, Vec<u8>)>,
}

/// Why a fragment (or its whole datagram) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discard {
    /// Wholly inside what had arrived: ignored, the datagram kept.
    Duplicate,
    /// It overlapped data received before: the whole datagram is gone (RFC 5722).
    Overlap,
    /// Past 65 535 bytes (the datagram, for IPv4; the fragment, for IPv6).
    TooBig,
    /// More than [`MAX_FRAGMENTS`] fragments: the whole datagram is gone.
    TooManyFragments,
    /// Empty, inconsistent with the last fragment (datagram gone), or an IPv6 fragment other
    /// than the last whose length is not a multiple of 8, or an IPv6 first fragment without
    /// the whole header chain (fragment dropped).
    Malformed,
    /// From a source the caller hears nothing from ([`Defrag::push_from`]: a probe hears
    /// only its server): dropped before it can take a slot — else anyone who knows our
    /// address could evict the server's datagram with 16 junk fragments.
    Foreign,
}

impl Discard {
    /// In words, for a record's note; `None` for what needs no word (a duplicate, which
    /// changes nothing; a fragment from a source nobody listens to).
    pub fn describe(self) -> Option<&'static str> {
        match self {
            Discard::Duplicate | Discard::Foreign => None,
            Discard::Overlap => Some(
                "it overlapped fragments that had arrived: the whole datagram was discarded \
                 (RFC 5722; Linux discards it too)",
            ),
            Discard::TooBig => Some("it would have made a datagram of more than 65 535 bytes"),
            Discard::TooManyFragments => Some("the datagram came in too many fragments"),
            Discard::Malformed => Some(
                "it was malformed (empty, an end other than the last fragment's, a length not \
                 a multiple of 8, or an IPv6 first fragment without the whole TCP header)",
            ),
        }
    }
}

/// What happened so far, for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefragStats {
    pub reassembled: u64,
    pub duplicates: u64,
    pub overlaps: u64,
    pub too_big: u64,
    pub too_many_fragments: u64,
    pub malformed: u64,
    pub foreign: u64,
    /// Datagrams forgotten after [`TIMEOUT`].
    pub timed_out: u64,
    /// Datagrams forgotten to make room for a new one.
    pub evicted: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    /// IPv4 only: RFC 8200 §4.5 keys IPv6 datagrams without it.
    protocol: Option<u8>,
    ident: u32,
}

#[derive(Debug)]
struct Datagram {
    key: Key,
    first_at: Instant,
    /// From the fragment at offset 0, once it came: the IPv4 header (options included), or
    /// the IPv6 fixed header and the unfragmentable extension headers.
    header: Vec<u8>,
    /// IPv6: where in `header` the Next Header byte naming the Fragment header is, and the
    /// Fragment header's own Next Header, which takes its place.
    next_header: Option<(usize, u8)>,
    /// The fragmentable part, as far as it has arrived.
    data: Vec<u8>,
    /// What has arrived, as sorted, disjoint, coalesced `[start, end)` ranges.
    have: Vec<(usize, usize)>,
    /// Where the datagram ends, once its last fragment (MF clear) came.
    end: Option<usize>,
    fragments: u16,
    checksum_offloaded: bool,
    originals: Vec<(Instant, Vec<u8>)>,
}

/// The reassembler. See the module doc for its policy.
#[derive(Debug, Default)]
pub struct Defrag {
    datagrams: Vec<Datagram>,
    keep_fragments: bool,
    stats: DefragStats,
}

/// One fragment, located.
struct Piece<'a> {
    key: Key,
    offset: usize,
    more: bool,
    /// The header to rebuild the datagram with, if this is the fragment at offset 0.
    header: &'a [u8],
    next_header: Option<(usize, u8)>,
    data: &'a [u8],
    v6: bool,
}

impl Defrag {
    /// A reassembler; `keep_fragments`: hand each fragment's bytes back with the datagram
    /// (for a capture file).
    pub fn new(keep_fragments: bool) -> Defrag {
        Defrag {
            datagrams: Vec::new(),
            keep_fragments,
            stats: DefragStats::default(),
        }
    }

    pub fn stats(&self) -> DefragStats {
        self.stats
    }

    /// Datagrams waiting for fragments.
    pub fn pending(&self) -> usize {
        self.datagrams.len()
    }

    /// One packet off the tap, seen at `at` (its kernel timestamp). `checksum_offloaded`:
    /// the tap said its transport checksum is not filled in. Never panics, whatever the
    /// bytes.
    pub fn push(&mut self, at: Instant, bytes: &[u8], checksum_offloaded: bool) -> Defragged {
        self.push_from(at, bytes, checksum_offloaded, |_| true)
    }

    /// [`Defrag::push`], taking fragments only from the sources `wanted` names: the others
    /// are dropped ([`Discard::Foreign`]) before they can take a slot.
    pub fn push_from(
        &mut self,
        at: Instant,
        bytes: &[u8],
        checksum_offloaded: bool,
        wanted: impl Fn(IpAddr) -> bool,
    ) -> Defragged {
        // Nearly every packet is whole: decide that from a byte or two, before any parse
        // (this runs on the way from a SYN-ACK to our ACK).
        if !may_be_fragment(bytes) {
            return Defragged::Whole;
        }
        self.expire(at);
        let Some(piece) = locate(bytes) else {
            return Defragged::Whole;
        };
        if !wanted(piece.key.src) {
            return self.drop_fragment(Discard::Foreign);
        }
        let start = piece.offset;
        let mut end = start + piece.data.len();
        if piece.more && end % 8 != 0 {
            // RFC 791 §3.2 / RFC 8200 §4.5: every fragment but the last is a multiple of 8.
            if piece.v6 {
                return self.drop_fragment(Discard::Malformed);
            }
            end &= !7;
        }
        if end == start {
            return self.drop_datagram(&piece.key, Discard::Malformed);
        }
        if piece.v6 && end > MAX_LEN {
            return self.drop_fragment(Discard::TooBig);
        }
        if piece.v6 && start == 0 && !first_holds_upper_header(&piece) {
            return self.drop_fragment(Discard::Malformed);
        }
        // IPv4: even with the shortest header the datagram would not fit its total length
        // (the first fragment's real header length is checked again when it completes).
        if !piece.v6 && end + IPV4_HEADER_LEN > MAX_LEN {
            return self.drop_datagram(&piece.key, Discard::TooBig);
        }
        let i = match self.datagrams.iter().position(|d| d.key == piece.key) {
            Some(i) => i,
            None => self.open(piece.key, at),
        };
        let d = &mut self.datagrams[i];
        let received_end = d.have.last().map_or(0, |r| r.1);
        if !piece.more {
            // The last fragment fixes the end: data already past it, or another end, is a
            // datagram that cannot be right (Linux discards the queue).
            if end < received_end || d.end.is_some_and(|e| e != end) {
                return self.drop_datagram(&piece.key, Discard::Malformed);
            }
        } else if d.end.is_some_and(|e| end > e) {
            return self.drop_datagram(&piece.key, Discard::Malformed);
        }
        if d.have.iter().any(|&(a, b)| a <= start && end <= b) {
            self.stats.duplicates += 1;
            return Defragged::Dropped(Discard::Duplicate);
        }
        if d.have.iter().any(|&(a, b)| start < b && a < end) {
            return self.drop_datagram(&piece.key, Discard::Overlap);
        }
        if d.fragments >= MAX_FRAGMENTS {
            return self.drop_datagram(&piece.key, Discard::TooManyFragments);
        }
        if !piece.more {
            d.end = Some(end);
        }
        if start == 0 {
            d.header.clear();
            d.header.extend_from_slice(piece.header);
            d.next_header = piece.next_header;
        }
        if d.data.len() < end {
            d.data.resize(end, 0);
        }
        d.data[start..end].copy_from_slice(&piece.data[..end - start]);
        insert_range(&mut d.have, start, end);
        d.fragments += 1;
        d.checksum_offloaded |= checksum_offloaded;
        if self.keep_fragments {
            d.originals.push((at, bytes.to_vec()));
        }
        let complete = d.end.is_some_and(|e| d.have.as_slice() == [(0, e)]) && !d.header.is_empty();
        if !complete {
            return Defragged::Held;
        }
        let d = self.datagrams.swap_remove(i);
        match rebuild(&d) {
            Some(bytes) => {
                self.stats.reassembled += 1;
                Defragged::Complete(Reassembled {
                    bytes,
                    fragments: d.fragments,
                    first_at: d.first_at,
                    checksum_offloaded: d.checksum_offloaded,
                    originals: d.originals,
                })
            }
            None => {
                self.stats.too_big += 1;
                Defragged::Dropped(Discard::TooBig)
            }
        }
    }

    /// Forget datagrams whose first fragment came [`TIMEOUT`] or more before `now`.
    pub fn expire(&mut self, now: Instant) {
        let before = self.datagrams.len();
        self.datagrams
            .retain(|d| now.saturating_since(d.first_at) < TIMEOUT);
        self.stats.timed_out += (before - self.datagrams.len()) as u64;
    }

    /// A slot for a new datagram, evicting the one that started first when all are taken.
    fn open(&mut self, key: Key, at: Instant) -> usize {
        if self.datagrams.len() >= MAX_DATAGRAMS
            && let Some(oldest) = self
                .datagrams
                .iter()
                .enumerate()
                .min_by_key(|(_, d)| d.first_at)
                .map(|(i, _)| i)
        {
            self.datagrams.swap_remove(oldest);
            self.stats.evicted += 1;
        }
        self.datagrams.push(Datagram {
            key,
            first_at: at,
            header: Vec::new(),
            next_header: None,
            data: Vec::new(),
            have: Vec::new(),
            end: None,
            fragments: 0,
            checksum_offloaded: false,
            originals: Vec::new(),
        });
        self.datagrams.len() - 1
    }

    fn drop_fragment(&mut self, why: Discard) -> Defragged {
        self.count(why);
        Defragged::Dropped(why)
    }

    fn drop_datagram(&mut self, key: &Key, why: Discard) -> Defragged {
        self.datagrams.retain(|d| d.key != *key);
        self.count(why);
        Defragged::Dropped(why)
    }

    fn count(&mut self, why: Discard) {
        let s = &mut self.stats;
        match why {
            Discard::Duplicate => s.duplicates += 1,
            Discard::Overlap => s.overlaps += 1,
            Discard::TooBig => s.too_big += 1,
            Discard::TooManyFragments => s.too_many_fragments += 1,
            Discard::Malformed => s.malformed += 1,
            Discard::Foreign => s.foreign += 1,
        }
    }
}

/// False when `bytes` is surely not a fragment: IPv4 without MF and offset, IPv6 whose
/// first Next Header is neither a Fragment header nor an extension header that may precede
/// one.
fn may_be_fragment(bytes: &[u8]) -> bool {
    match bytes.first().map(|b| b >> 4) {
        Some(4) => bytes
            .get(6..8)
            .is_some_and(|w| u16::from_be_bytes([w[0], w[1]]) & 0x3fff != 0),
        Some(6) => bytes
            .get(6)
            .is_some_and(|&nh| super::ip::is_ipv6_extension(nh)),
        _ => false,
    }
}

/// Where `bytes` belongs, if it is a fragment that parses. A packet that does not parse is
/// not ours to judge: it goes on as `Whole` and its reader fails it as before.
fn locate(bytes: &[u8]) -> Option<Piece<'_>> {
    let pkt = IpPacket::parse(bytes).ok()?;
    let frag = pkt.fragment?;
    let v6 = pkt.ip.src.is_ipv6();
    let (header, next_header, protocol) = if v6 {
        let plen = usize::from(u16::from_be_bytes([*bytes.get(4)?, *bytes.get(5)?]));
        let after = bytes.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + plen)?;
        let at = skip_ipv6_extensions(*bytes.get(6)?, after)
            .ok()?
            .fragment_header?;
        let header = bytes.get(..IPV6_HEADER_LEN + at.at)?;
        let field = at.named_by.map_or(6, |p| IPV6_HEADER_LEN + p);
        (header, Some((field, at.next_header)), None)
    } else {
        let ihl = usize::from(bytes.first()? & 0x0f) * 4;
        (bytes.get(..ihl)?, None, Some(pkt.ip.protocol))
    };
    Some(Piece {
        key: Key {
            src: pkt.ip.src,
            dst: pkt.ip.dst,
            protocol,
            ident: frag.ident,
        },
        offset: frag.offset,
        more: frag.more,
        header: if frag.offset == 0 { header } else { &[] },
        next_header,
        data: pkt.payload,
        v6,
    })
}

/// RFC 8200 §4.5: an IPv6 first fragment must hold the whole header chain through the
/// upper-layer header. As Linux counts it: the fixed part of a TCP header (20 bytes), of an
/// ICMPv6 or UDP header (8); other upper layers, nothing more.
fn first_holds_upper_header(piece: &Piece<'_>) -> bool {
    let Some((_, first)) = piece.next_header else {
        return true;
    };
    let Ok(upper) = skip_ipv6_extensions(first, piece.data) else {
        return false;
    };
    let need = match upper.protocol {
        super::ip::PROTO_TCP => 20,
        super::ip::PROTO_ICMPV6 | 17 => 8,
        _ => 0,
    };
    piece.data.len() >= upper.offset + need
}

/// Add `[start, end)` (disjoint from every range in `have`) and merge neighbours.
fn insert_range(have: &mut Vec<(usize, usize)>, start: usize, end: usize) {
    let at = have.partition_point(|&(a, _)| a < start);
    have.insert(at, (start, end));
    // Merge with the next, then with the previous.
    if at + 1 < have.len() && have[at].1 == have[at + 1].0 {
        have[at].1 = have[at + 1].1;
        have.remove(at + 1);
    }
    if at > 0 && have[at - 1].1 == have[at].0 {
        have[at - 1].1 = have[at].1;
        have.remove(at);
    }
}

/// The datagram as if never fragmented, or `None` when it would exceed 65 535 bytes.
fn rebuild(d: &Datagram) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(d.header.len() + d.data.len());
    out.extend_from_slice(&d.header);
    out.extend_from_slice(&d.data);
    match d.next_header {
        None => {
            // IPv4, RFC 791 §3.2: total length is the header and all the data; flags keep
            // DF (and the reserved bit) but lose MF; the offset is 0.
            let total = u16::try_from(out.len()).ok()?;
            let ihl = d.header.len();
            out.get_mut(2..4)?.copy_from_slice(&total.to_be_bytes());
            let flags = u16::from_be_bytes([*out.get(6)?, *out.get(7)?]) & !0x3fff;
            out.get_mut(6..8)?.copy_from_slice(&flags.to_be_bytes());
            out.get_mut(10..12)?.copy_from_slice(&[0, 0]);
            let sum = checksum::internet_checksum(0, out.get(..ihl)?);
            out.get_mut(10..12)?.copy_from_slice(&sum.to_be_bytes());
        }
        Some((field, next)) => {
            // RFC 8200 §4.5: the Next Header field of the last unfragmentable header takes
            // the first fragment's Fragment header's Next Header; payload length covers
            // the unfragmentable extension headers and the fragmentable part.
            let plen = u16::try_from(out.len() - IPV6_HEADER_LEN).ok()?;
            *out.get_mut(field)? = next;
            out.get_mut(4..6)?.copy_from_slice(&plen.to_be_bytes());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
