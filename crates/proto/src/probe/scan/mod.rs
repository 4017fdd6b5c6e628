//! `tcpshake scan`: stateless half-open SYN scanning, decided without I/O.
//!
//! No per-probe state is kept to recognise replies: the SYN's sequence number is a keyed
//! SipHash of the 4-tuple and the attempt number (as masscan and zmap do, after the SYN
//! cookies of RFC 4987 §3.6), so a SYN-ACK or RST is ours exactly when its acknowledgment
//! number is one of those cookies plus one (RFC 9293 §3.4: the SYN consumes one sequence
//! number), and an ICMP error is ours when the segment it quotes carries one. Everything
//! else is counted and ignored.
//!
//! States and reasons are nmap's (`-sS --reason`): SYN-ACK → open/syn-ack, RST → closed/
//! reset, ICMP unreachable or time exceeded → filtered/`<icmp reason>`, nothing after every
//! retry → filtered/no-response.
//!
//! Timing: the I/O layer remembers, for a bounded window, the kernel timestamp of each SYN
//! as its outgoing copy passes the tap, keyed by (address, port, sequence number); a reply
//! names that key, so SYN→reply times are differences of two kernel timestamps.

pub mod limit;
pub mod neighbours;
pub mod nmap_services;
pub mod pairhash;
pub mod permute;
pub mod ports;
pub mod rate;
pub mod results;
pub mod rtt;
pub mod schedule;
pub mod targets;
pub mod unroutable;

pub use crate::probe::record::{Completion, ScanRecord};
use crate::probe::record::{PortState, Reason, Verdict};
use crate::wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetRepr, MacAddr};
use crate::wire::ip::{IPV6_HEADER_LEN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use crate::wire::{
    IcmpError, IcmpKind, IpPacket, IpRepr, SeqNumber, TcpFlags, TcpOptions, TcpRepr,
};
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

/// nmap's SYN: window 1024, MSS 1460 and nothing else (a bare SYN looks odd to some
/// middleboxes; nmap's `-sS` sends exactly this option).
pub const SYN_WINDOW: u16 = 1024;
pub const SYN_MSS: u16 = 1460;
/// TTL / hop limit of our probes.
pub const SYN_TTL: u8 = 64;

/// The keyed hash that makes sequence numbers into cookies.
#[derive(Clone, Copy, Debug)]
pub struct Cookie {
    k0: u64,
    k1: u64,
}

impl Cookie {
    pub fn new(k0: u64, k1: u64) -> Cookie {
        Cookie { k0, k1 }
    }

    /// The initial sequence number of attempt `attempt` from `local` to `remote`.
    pub fn seq(&self, local: SocketAddr, remote: SocketAddr, attempt: u8) -> SeqNumber {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        for a in [local.ip(), remote.ip()] {
            match a {
                IpAddr::V4(a) => h.write(&a.octets()),
                IpAddr::V6(a) => h.write(&a.octets()),
            }
        }
        h.write_u16(local.port());
        h.write_u16(remote.port());
        h.write_u8(attempt);
        SeqNumber(h.finish() as u32)
    }

    /// Which attempt (0..=`max_attempt`) sent `seq`, if any did.
    pub fn attempt_of(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        seq: SeqNumber,
        max_attempt: u8,
    ) -> Option<u8> {
        (0..=max_attempt).find(|&a| self.seq(local, remote, a) == seq)
    }
}

/// Build our SYN from `local` to `remote` in `buf`: the whole IPv4 datagram, or for IPv6
/// the TCP segment alone (the raw IPv6 socket writes the header). Returns its length.
pub fn build_syn(
    local: SocketAddr,
    remote: SocketAddr,
    seq: SeqNumber,
    ident: u16,
    buf: &mut [u8],
) -> crate::wire::Result<usize> {
    build_segment(local, remote, seq, SeqNumber(0), TcpFlags::SYN, ident, buf)
}

/// Build the RST that tells a SYN-ACKing target to drop its half-open connection: its
/// sequence number is the SYN-ACK's acknowledgment number (RFC 9293 §3.5.2, group 2).
pub fn build_rst(
    local: SocketAddr,
    remote: SocketAddr,
    seq: SeqNumber,
    ident: u16,
    buf: &mut [u8],
) -> crate::wire::Result<usize> {
    build_segment(local, remote, seq, SeqNumber(0), TcpFlags::RST, ident, buf)
}

/// [`build_syn`] as a whole Ethernet frame from `src_mac` to `dst_mac`, its IP header
/// included for either family (the frame path has no kernel to write IPv6's).
pub fn build_syn_frame(
    macs: (MacAddr, MacAddr),
    local: SocketAddr,
    remote: SocketAddr,
    seq: SeqNumber,
    ident: u16,
    buf: &mut [u8],
) -> crate::wire::Result<usize> {
    build_frame(macs, local, remote, seq, TcpFlags::SYN, ident, buf)
}

/// [`build_rst`] as a whole Ethernet frame.
pub fn build_rst_frame(
    macs: (MacAddr, MacAddr),
    local: SocketAddr,
    remote: SocketAddr,
    seq: SeqNumber,
    ident: u16,
    buf: &mut [u8],
) -> crate::wire::Result<usize> {
    build_frame(macs, local, remote, seq, TcpFlags::RST, ident, buf)
}

fn build_frame(
    (src_mac, dst_mac): (MacAddr, MacAddr),
    local: SocketAddr,
    remote: SocketAddr,
    seq: SeqNumber,
    flags: TcpFlags,
    ident: u16,
    buf: &mut [u8],
) -> crate::wire::Result<usize> {
    let eth = EthernetRepr {
        dst: dst_mac,
        src: src_mac,
        ethertype: if local.is_ipv6() {
            ETHERTYPE_IPV6
        } else {
            ETHERTYPE_IPV4
        },
    };
    let e = eth.emit(buf)?;
    let rest = buf.get_mut(e..).ok_or(crate::wire::Error::Truncated)?;
    let n = if local.is_ipv6() {
        // The segment after room for the IPv6 header, then the header for its length.
        let seg = rest
            .get_mut(IPV6_HEADER_LEN..)
            .ok_or(crate::wire::Error::Truncated)?;
        let n = build_segment(local, remote, seq, SeqNumber(0), flags, ident, seg)?;
        IpRepr::new(local.ip(), remote.ip(), PROTO_TCP, SYN_TTL, n).emit(rest)?;
        IPV6_HEADER_LEN + n
    } else {
        build_segment(local, remote, seq, SeqNumber(0), flags, ident, rest)?
    };
    crate::wire::ethernet::pad(buf, e + n)
}

/// The SYN a stamped frame carries, as the key of its send time: (destination, port,
/// sequence number), when the frame is one of our SYNs from `locals`.
pub fn syn_of_frame(frame: &[u8], locals: &Locals) -> Option<(IpAddr, u16, u32)> {
    let (_, ip) = EthernetRepr::parse(frame).ok()?;
    let pkt = IpPacket::parse(ip).ok()?;
    let local = locals.for_family(pkt.ip.src.is_ipv6())?;
    let seg = TcpRepr::parse_unchecked(pkt.payload).ok()?;
    (pkt.ip.protocol == PROTO_TCP
        && pkt.ip.src == local.ip()
        && seg.src_port == local.port()
        && seg.flags.syn()
        && !seg.flags.ack())
    .then_some((pkt.ip.dst, seg.dst_port, seg.seq.0))
}

fn build_segment(
    local: SocketAddr,
    remote: SocketAddr,
    seq: SeqNumber,
    ack: SeqNumber,
    flags: TcpFlags,
    ident: u16,
    buf: &mut [u8],
) -> crate::wire::Result<usize> {
    let options = if flags.syn() {
        TcpOptions::default().with_mss(SYN_MSS)
    } else {
        TcpOptions::default()
    };
    let tcp = TcpRepr {
        src_port: local.port(),
        dst_port: remote.port(),
        seq,
        ack,
        flags,
        window: if flags.syn() { SYN_WINDOW } else { 0 },
        urgent: 0,
        options,
        payload: &[],
    };
    let ip_len = if local.is_ipv6() {
        0
    } else {
        let mut ip = IpRepr::new(
            local.ip(),
            remote.ip(),
            PROTO_TCP,
            SYN_TTL,
            tcp.buffer_len(),
        );
        ip.ident = ident;
        ip.emit(buf)?
    };
    let n = tcp.emit(
        local.ip(),
        remote.ip(),
        buf.get_mut(ip_len..).unwrap_or(&mut []),
    )?;
    Ok(ip_len + n)
}

/// Our source endpoints, one per family in use.
#[derive(Clone, Copy, Debug, Default)]
pub struct Locals {
    pub v4: Option<SocketAddr>,
    pub v6: Option<SocketAddr>,
}

impl Locals {
    fn for_family(&self, v6: bool) -> Option<SocketAddr> {
        if v6 { self.v6 } else { self.v4 }
    }
}

/// A reply that answers one of our SYNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub remote: SocketAddr,
    pub state: PortState,
    pub reason: Reason,
    /// TTL (hop limit) of the reply as it arrived.
    pub ttl: u8,
    /// Who sent it: the target, or for an ICMP error the router (or anyone) that did.
    pub from: IpAddr,
    /// The sequence number of the SYN it answers (the key of its send time).
    pub syn_seq: SeqNumber,
    pub attempt: u8,
    /// For a SYN-ACK: the sequence number our RST must carry.
    pub rst_seq: Option<SeqNumber>,
}

/// What a packet off the tap is, for a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// One of our SYNs on its way out: its kernel timestamp is the send time.
    OurSyn {
        remote: SocketAddr,
        seq: SeqNumber,
    },
    Reply(Reply),
    /// Addressed to our port (or an ICMP error quoting it) but not answering a cookie:
    /// a stale reply from an earlier scan, a spoofer, or a corrupted packet.
    Unmatched,
    /// Not ours at all (other traffic, our own RSTs, ICMP errors about other flows).
    Other,
}

/// Classify one IP packet off the tap. Never panics, whatever the bytes.
pub fn inspect(
    bytes: &[u8],
    checksum_offloaded: bool,
    locals: &Locals,
    cookie: &Cookie,
    max_attempt: u8,
) -> Seen {
    let Ok(pkt) = IpPacket::parse(bytes) else {
        return Seen::Other;
    };
    let v6 = pkt.ip.src.is_ipv6();
    let Some(local) = locals.for_family(v6) else {
        return Seen::Other;
    };
    if pkt.fragment.is_some() {
        return Seen::Other;
    }
    match pkt.ip.protocol {
        PROTO_TCP => inspect_tcp(&pkt, checksum_offloaded, local, cookie, max_attempt),
        PROTO_ICMP | PROTO_ICMPV6 => inspect_icmp(&pkt, v6, local, cookie, max_attempt),
        _ => Seen::Other,
    }
}

fn inspect_tcp(
    pkt: &IpPacket<'_>,
    checksum_offloaded: bool,
    local: SocketAddr,
    cookie: &Cookie,
    max_attempt: u8,
) -> Seen {
    let Ok(seg) = TcpRepr::parse_unchecked(pkt.payload) else {
        return Seen::Other;
    };
    // Ours, leaving (the tap also sees what we send).
    if pkt.ip.src == local.ip() && seg.src_port == local.port() {
        if seg.flags.syn() && !seg.flags.ack() {
            return Seen::OurSyn {
                remote: SocketAddr::new(pkt.ip.dst, seg.dst_port),
                seq: seg.seq,
            };
        }
        return Seen::Other;
    }
    if pkt.ip.dst != local.ip() || seg.dst_port != local.port() {
        return Seen::Other;
    }
    if !checksum_offloaded && TcpRepr::parse(pkt.payload, pkt.ip.src, pkt.ip.dst).is_err() {
        return Seen::Unmatched;
    }
    let remote = SocketAddr::new(pkt.ip.src, seg.src_port);
    // Both answers acknowledge our SYN: ack = cookie + 1 (RFC 9293 §3.10.7.2 for the RST
    // of a closed port: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>).
    if !seg.flags.ack() {
        return Seen::Unmatched;
    }
    let syn_seq = seg.ack.sub(1);
    let Some(attempt) = cookie.attempt_of(local, remote, syn_seq, max_attempt) else {
        return Seen::Unmatched;
    };
    // A bare ACK of our cookie comes from a peer in SYN-RECEIVED (see `Verdict::of_reply`):
    // open, and reset like any half-open connection.
    let Some(Verdict { state, reason }) = Verdict::of_reply(seg.flags) else {
        return Seen::Unmatched;
    };
    let rst_seq = (state == PortState::Open).then_some(seg.ack);
    Seen::Reply(Reply {
        remote,
        state,
        reason,
        ttl: pkt.ip.ttl,
        from: pkt.ip.src,
        syn_seq,
        attempt,
        rst_seq,
    })
}

fn inspect_icmp(
    pkt: &IpPacket<'_>,
    v6: bool,
    local: SocketAddr,
    cookie: &Cookie,
    max_attempt: u8,
) -> Seen {
    let Ok(Some(err)) = IcmpError::parse(pkt.payload, v6, pkt.ip.src, pkt.ip.dst) else {
        return Seen::Other;
    };
    if err.quoted_src != local.ip() || err.quoted_src_port != local.port() {
        return Seen::Other;
    }
    let remote = SocketAddr::new(err.quoted_dst, err.quoted_dst_port);
    // RFC 5927 §4.1, the connection's rule (`tcp::icmp::quote_in_flight`): the quoted
    // sequence number must be in SND.UNA..SND.NXT, which for a SYN alone in flight is its
    // cookie exactly.
    let Some(attempt) = cookie.attempt_of(local, remote, err.quoted_seq, max_attempt) else {
        // An error about one of our RSTs (the one before a retry, or the one answering a
        // SYN-ACK: both carry the cookie + 1) is an error about a packet of ours, not a
        // reply matching none: a firewall that rejects every segment to a port rejects
        // the RST before a retry too. Neither a verdict nor a stranger's packet.
        if cookie
            .attempt_of(local, remote, err.quoted_seq.sub(1), max_attempt)
            .is_some()
        {
            return Seen::Other;
        }
        return Seen::Unmatched;
    };
    // Too-big is advice about size, not a verdict on the port (a SYN is never that big).
    // A parameter problem is no verdict either: nmap -sS ignores it, and so do we.
    if matches!(
        err.kind,
        IcmpKind::PacketTooBig { .. } | IcmpKind::ParameterProblem { .. }
    ) {
        return Seen::Other;
    }
    let Verdict { state, reason } = Verdict::of_icmp(err.kind);
    Seen::Reply(Reply {
        remote,
        state,
        reason,
        ttl: pkt.ip.ttl,
        from: pkt.ip.src,
        syn_seq: err.quoted_seq,
        attempt,
        rst_seq: None,
    })
}

/// Totals for the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanTotals {
    /// (address, port) pairs probed at least once.
    pub scanned: u64,
    pub open: u64,
    pub closed: u64,
    /// Answered with an ICMP error.
    pub filtered_icmp: u64,
    /// Packets sent: SYNs, retries and the RSTs that clear a retried tuple, and the RSTs
    /// that answer SYN-ACKs.
    pub sent: u64,
    /// Replies to our port that matched no cookie.
    pub unmatched: u64,
    /// Duplicate replies to a port already answered.
    pub duplicates: u64,
    /// Pairs whose first answer came to a retry: silent to the first SYN, so that SYN or
    /// its answer was lost on the way (or came later than the wait). Evidence that the
    /// pairs still silent may be loss rather than filtering.
    pub answered_on_retry: u64,
    /// The last retry round `--retries` allowed still got first answers: the pairs silent
    /// after it may be lost too, not filtered (a round that breaks no silence ends the
    /// retries before `--retries` runs out, and then silence is filtering).
    pub retries_ran_out: bool,
    /// `--retries`, the ceiling of the retry rounds.
    pub retries: u8,
    /// The rate the path passed answers at, a second, when the last rounds say the path
    /// limits them and they lasted long enough to read it (limit.rs:
    /// [`limit::Rounds::named_limit`]: read while sending, or over time once an allowance
    /// round got answers): with `retries_ran_out`, the rate to scan at.
    pub path_limit: Option<u64>,
    /// In a scan of several hosts, the one address the last round's first answers all
    /// came from: the host (or the way to it) that limits.
    pub path_limit_host: Option<std::net::IpAddr>,
    /// Retry rounds were slowed to a rate-limited path's answer rate.
    pub slowed: Option<schedule::Slowdown>,
    /// Retry rounds sent a second after the last answered round because the round
    /// between got no answer (a limiter's next allowance: `schedule::ALLOWANCE`).
    pub allowance_rounds: u8,
    /// First answers those rounds got.
    pub allowance_answers: u64,
}

impl ScanTotals {
    /// Filtered = every probed port that was neither open nor closed (ICMP or silence).
    pub fn filtered(&self) -> u64 {
        self.scanned.saturating_sub(self.open + self.closed)
    }

    /// Pairs that never answered (filtered with no reply at all).
    pub fn silent(&self) -> u64 {
        self.filtered().saturating_sub(self.filtered_icmp)
    }
}

#[cfg(test)]
mod tests;
