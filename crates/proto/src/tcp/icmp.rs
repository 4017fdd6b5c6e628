//! ICMP errors about a connection: when to believe one, what it does (RFC 5927, RFC 1122
//! §4.2.3.9, RFC 5461, RFC 1191, RFC 8201), and the path MTU it teaches.
//!
//! The rule that an error must prove it is about a segment of ours lives here, once: the
//! connection applies it to SND.UNA..SND.NXT in every state. A scan's SYN is alone in
//! flight, so there the rule is that the quoted sequence number is its keyed-hash cookie
//! (`probe::scan::inspect`).

use crate::wire::{IcmpError, IcmpKind, SeqNumber};
use std::fmt;
use std::net::SocketAddr;

/// RFC 8200 §5: every IPv6 link carries 1280 bytes. RFC 8201 §4: a Packet Too Big that
/// reports less is discarded (Linux's `tcp_v6_err` drops it too).
pub const IPV6_MIN_MTU: u32 = 1280;
/// Linux's `net.ipv4.route.min_pmtu` (512 + 20 + 20): a frag-needed reporting less (or 0,
/// from a pre-RFC 1191 router) lowers the path MTU to this and no further, so a forged
/// message cannot make us send tiny segments.
pub const IPV4_MIN_PMTU: u32 = 552;
/// Where a path MTU black hole sends IPv4: 576 bytes, the datagram every host accepts
/// (RFC 1122 §3.3.3 EMTU_R), i.e. segments of RFC 9293 §3.7.1's default MSS of 536.
pub const IPV4_SAFE_MTU: u32 = 576;
/// The largest ICMPv4 destination-unreachable code Linux knows (`NR_ICMP_UNREACH`); it
/// ignores errors with higher codes.
const MAX_UNREACH_CODE_V4: u8 = 15;

/// RFC 5927 §4.1: an ICMP error is about a segment of ours only if the sequence number it
/// quotes is one we sent and is not yet acknowledged, SND.UNA ≤ SEG.SEQ < SND.NXT. In
/// SYN-SENT that is exactly the ISN.
///
/// Linux's `tcp_v4_err` accepts SEG.SEQ = SND.NXT as well (`between()` is inclusive);
/// RFC 5927's bound is kept: the only segment of ours starting there is a pure ACK, which
/// no router refuses for its size and whose loss costs nothing.
pub fn quote_in_flight(seq: SeqNumber, snd_una: SeqNumber, snd_nxt: SeqNumber) -> bool {
    seq.ge(snd_una) && seq.lt(snd_nxt)
}

/// The quoted segment went from `local` to `remote`: the 4-tuple is this connection's.
pub fn quote_names(err: &IcmpError, local: SocketAddr, remote: SocketAddr) -> bool {
    err.quoted_src == local.ip()
        && err.quoted_src_port == local.port()
        && err.quoted_dst == remote.ip()
        && err.quoted_dst_port == remote.port()
}

/// Why an ICMP error quoting this connection's 4-tuple changed nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IcmpIgnored {
    /// It quotes another connection (addresses or ports differ): not ours at all.
    OtherConnection,
    /// The quoted sequence number is not in flight (RFC 5927 §4.1): a forgery by someone
    /// who knows the 4-tuple, or a stale error about a segment long acknowledged.
    SeqOutside {
        seq: SeqNumber,
        snd_una: SeqNumber,
        snd_nxt: SeqNumber,
    },
    /// The connection is closed (or in TIME-WAIT): there is nothing left to be wrong about.
    Closed,
    /// An ICMPv4 destination-unreachable code Linux does not know (> 15).
    UnknownCode { code: u8 },
    /// A Packet Too Big reporting less than IPv6's minimum MTU (RFC 8201 §4).
    MtuBelowMinimum { mtu: u32 },
}

impl fmt::Display for IcmpIgnored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IcmpIgnored::OtherConnection => f.write_str("it quotes another connection"),
            IcmpIgnored::SeqOutside {
                seq,
                snd_una,
                snd_nxt,
            } => write!(
                f,
                "it quotes sequence number {seq}, not one in flight \
                 (SND.UNA {snd_una} ≤ seq < SND.NXT {snd_nxt}, RFC 5927 §4.1)"
            ),
            IcmpIgnored::Closed => f.write_str("the connection is closed"),
            IcmpIgnored::UnknownCode { code } => {
                write!(f, "unknown destination-unreachable code {code}")
            }
            IcmpIgnored::MtuBelowMinimum { mtu } => write!(
                f,
                "it reports MTU {mtu}, below IPv6's minimum {IPV6_MIN_MTU} (RFC 8201 §4)"
            ),
        }
    }
}

/// What a fragmentation-needed / Packet Too Big did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PmtuChange {
    /// The MTU the message reported.
    pub reported: u32,
    /// The path MTU now (the reported one, raised to IPv4's floor; or unchanged when the
    /// message reported no less than what we already use).
    pub path_mtu: u32,
    /// Whether the path MTU went down.
    pub lowered: bool,
    /// Whether this message (an IPv4 MTU below the floor) locked the path MTU at the
    /// floor: segments go without DF from now on (`Connection::pmtu_locked`).
    pub locked: bool,
    /// Payload bytes per segment before and after.
    pub mss_before: u16,
    pub mss_after: u16,
    /// Segments queued again at once at the new size (RFC 1191 §6.4: the dropped segment
    /// is retransmitted without waiting for the timer; Linux's `tcp_simple_retransmit`).
    pub resent: u32,
    /// Segments an earlier error had queued again that were taken back unsent, too big
    /// for this one's path MTU (two errors read at once): their bytes are among `resent`.
    pub withdrawn: u32,
}

/// What an ICMP error did to the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IcmpOutcome {
    /// Not believed or not applicable: nothing changed.
    Ignored(IcmpIgnored),
    /// A hard error in SYN-SENT: the connection is CLOSED (see `Connection::handle_icmp`).
    Aborted,
    /// A soft error (RFC 1122 §4.2.3.9, RFC 5461): the connection goes on.
    Soft,
    /// A soft error that undid one back-off of the retransmission timer (RFC 6069): the
    /// path itself said why our segment went unanswered, so it is no sign of congestion.
    SoftReverted,
    /// Fragmentation needed / Packet Too Big.
    PathMtu(PmtuChange),
}

/// Would Linux abort a connecting socket for this (validated) error? `tcp_v4_err` does for
/// time exceeded and every destination-unreachable code up to 15 but frag-needed;
/// `tcp_v6_err` for every ICMPv6 error but Packet Too Big. One exception of ours: a
/// parameter problem, which Linux also aborts on (EPROTO), is the soft error RFC 1122
/// §4.2.3.9 and RFC 9293 §3.9.2.2 call it (conformance `icmp-parameter-problem-soft`).
pub(super) fn aborts_syn_sent(err: &IcmpError) -> bool {
    match err.kind {
        IcmpKind::PacketTooBig { .. } | IcmpKind::ParameterProblem { .. } => false,
        IcmpKind::OtherUnreachable { code } => {
            err.quoted_src.is_ipv6() || code <= MAX_UNREACH_CODE_V4
        }
        _ => true,
    }
}

/// RFC 6069 §4: a net or host unreachable (ICMPv6: no route) about the segment being
/// retransmitted says the path is down, not congested: one back-off step is undone, so
/// the connection finds the path again soon after it comes back. Linux's
/// `tcp_ld_RTO_revert`, for exactly these codes (`tcp_v4_err`: ICMP_NET_UNREACH,
/// ICMP_HOST_UNREACH; `tcp_v6_err`: ICMPV6_NOROUTE).
pub(super) fn reverts_backoff(err: &IcmpError) -> bool {
    match err.kind {
        IcmpKind::NetUnreachable | IcmpKind::HostUnreachable => err.quoted_src.is_ipv4(),
        IcmpKind::NoRoute => err.quoted_src.is_ipv6(),
        _ => false,
    }
}

/// [`aborts_syn_sent`]'s other half: an ICMPv4 code Linux ignores in every state.
pub(super) fn unknown_code(err: &IcmpError) -> Option<u8> {
    match err.kind {
        IcmpKind::OtherUnreachable { code }
            if err.quoted_src.is_ipv4() && code > MAX_UNREACH_CODE_V4 =>
        {
            Some(code)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn err(kind: IcmpKind, v6: bool) -> IcmpError {
        let (a, b): (IpAddr, IpAddr) = if v6 {
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
        } else {
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap())
        };
        IcmpError {
            kind,
            icmp_type: 3,
            code: 0,
            quoted_src: a,
            quoted_dst: b,
            quoted_src_port: 40000,
            quoted_dst_port: 80,
            quoted_seq: SeqNumber(7),
        }
    }

    #[test]
    fn in_flight_is_half_open_and_wraps() {
        let una = SeqNumber(u32::MAX - 1);
        let nxt = una.add(4); // 2^32 - 2 .. 2 (exclusive)
        for s in [u32::MAX - 1, u32::MAX, 0, 1] {
            assert!(quote_in_flight(SeqNumber(s), una, nxt), "{s}");
        }
        for s in [u32::MAX - 2, 2, 3, 1 << 31] {
            assert!(!quote_in_flight(SeqNumber(s), una, nxt), "{s}");
        }
        // SYN-SENT: exactly the ISN; nothing at all before the SYN left.
        let isn = SeqNumber(1000);
        assert!(quote_in_flight(isn, isn, isn.add(1)));
        assert!(!quote_in_flight(isn.add(1), isn, isn.add(1)));
        assert!(!quote_in_flight(isn.sub(1), isn, isn.add(1)));
        assert!(!quote_in_flight(isn, isn, isn));
    }

    #[test]
    fn quote_names_every_part_of_the_tuple() {
        let local: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let remote: SocketAddr = "198.18.0.2:80".parse().unwrap();
        let e = err(IcmpKind::PortUnreachable, false);
        assert!(quote_names(&e, local, remote));
        let mut x = e;
        x.quoted_src_port = 40001;
        assert!(!quote_names(&x, local, remote));
        let mut x = e;
        x.quoted_dst_port = 81;
        assert!(!quote_names(&x, local, remote));
        let mut x = e;
        x.quoted_dst = "198.18.0.3".parse().unwrap();
        assert!(!quote_names(&x, local, remote));
        let mut x = e;
        x.quoted_src = "198.18.0.9".parse().unwrap();
        assert!(!quote_names(&x, local, remote));
        assert!(!quote_names(&e, remote, local));
    }

    #[test]
    fn linux_abort_table() {
        for kind in [
            IcmpKind::NetUnreachable,
            IcmpKind::HostUnreachable,
            IcmpKind::ProtocolUnreachable,
            IcmpKind::PortUnreachable,
            IcmpKind::NetProhibited,
            IcmpKind::HostProhibited,
            IcmpKind::AdminProhibited,
            IcmpKind::TimeExceeded,
            IcmpKind::OtherUnreachable { code: 15 },
        ] {
            assert!(aborts_syn_sent(&err(kind, false)), "{kind:?}");
            assert!(aborts_syn_sent(&err(kind, true)), "{kind:?} v6");
        }
        let big = IcmpKind::PacketTooBig { mtu: 1000 };
        assert!(!aborts_syn_sent(&err(big, false)));
        assert!(!aborts_syn_sent(&err(big, true)));
        let pp = IcmpKind::ParameterProblem { pointer: 9 };
        assert!(!aborts_syn_sent(&err(pp, false)));
        assert!(!aborts_syn_sent(&err(pp, true)));
        let odd = IcmpKind::OtherUnreachable { code: 16 };
        assert!(!aborts_syn_sent(&err(odd, false)));
        assert_eq!(unknown_code(&err(odd, false)), Some(16));
        assert!(aborts_syn_sent(&err(odd, true)));
        assert_eq!(unknown_code(&err(odd, true)), None);
    }
}
