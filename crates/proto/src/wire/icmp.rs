//! ICMP (RFC 792) and ICMPv6 (RFC 4443) error messages that quote one of our TCP segments.

use super::checksum;
use super::ip::{
    IPV4_HEADER_LEN, IPV6_HEADER_LEN, PROTO_ICMPV6, PROTO_TCP, same_family, skip_ipv6_extensions,
};
use super::{Error, Result, SeqNumber};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// ICMP types (RFC 792).
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;
/// ICMPv6 error types (RFC 4443 §3).
pub const ICMPV6_DEST_UNREACHABLE: u8 = 1;
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
pub const ICMPV6_PARAMETER_PROBLEM: u8 = 4;

/// Type, code, checksum and the 4-byte field before the quoted packet.
pub const ICMP_HEADER_LEN: usize = 8;
/// Bytes of the quoted TCP header we need: ports and sequence number. RFC 792 promises
/// the first 64 bits of the original datagram's data, exactly these.
pub const QUOTED_TCP_LEN: usize = 8;

/// What kind of error, with nmap's reason word available through [`IcmpKind::reason`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IcmpKind {
    NetUnreachable,
    HostUnreachable,
    ProtocolUnreachable,
    PortUnreachable,
    /// Fragmentation needed / packet too big, with the next-hop MTU.
    PacketTooBig {
        mtu: u32,
    },
    NetProhibited,
    HostProhibited,
    /// Communication administratively prohibited (ICMP 3/13, ICMPv6 1/1), or a source
    /// address that failed an ingress/egress policy (ICMPv6 1/5), as nmap reads both.
    AdminProhibited,
    /// ICMPv6 1/0, no route to destination (RFC 4443 §3.1).
    NoRoute,
    /// ICMPv6 1/2, beyond scope of source address.
    BeyondScope,
    /// ICMPv6 1/6, reject route to destination (a `prohibit`/`reject` route, nftables'
    /// `reject-route`).
    RejectRoute,
    TimeExceeded,
    /// Any other destination-unreachable code.
    OtherUnreachable {
        code: u8,
    },
    /// Parameter problem (RFC 792 type 12; RFC 4443 §3.4): a host or router could not
    /// read a header field at `pointer` (an octet offset into the quoted packet) and
    /// discarded the packet.
    ParameterProblem {
        pointer: u32,
    },
}

impl IcmpKind {
    /// nmap's `--reason` word for this error (nmap's `icmp_to_reason`, portreasons.cc:
    /// ICMPv6's codes have words of their own, and a code it does not name is
    /// `dest-unreach` in either family).
    pub fn reason(self) -> &'static str {
        match self {
            IcmpKind::NetUnreachable => "net-unreach",
            IcmpKind::HostUnreachable => "host-unreach",
            IcmpKind::ProtocolUnreachable => "proto-unreach",
            IcmpKind::PortUnreachable => "port-unreach",
            IcmpKind::PacketTooBig { .. } => "frag-needed",
            IcmpKind::NetProhibited => "net-prohibited",
            IcmpKind::HostProhibited => "host-prohibited",
            IcmpKind::AdminProhibited => "admin-prohibited",
            IcmpKind::NoRoute => "no-route",
            IcmpKind::BeyondScope => "beyond-scope",
            IcmpKind::RejectRoute => "reject-route",
            IcmpKind::TimeExceeded => "time-exceeded",
            IcmpKind::OtherUnreachable { .. } => "dest-unreach",
            IcmpKind::ParameterProblem { .. } => "param-problem",
        }
    }
}

/// An ICMP/ICMPv6 error and the TCP header fields it quotes (RFC 792 quotes at least 8
/// bytes of the original datagram: ports and sequence number).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IcmpError {
    pub kind: IcmpKind,
    pub icmp_type: u8,
    pub code: u8,
    /// The quoted packet's addresses and TCP fields.
    pub quoted_src: IpAddr,
    pub quoted_dst: IpAddr,
    pub quoted_src_port: u16,
    pub quoted_dst_port: u16,
    pub quoted_seq: SeqNumber,
}

impl IcmpError {
    /// Parse the ICMP (`v6 == false`) or ICMPv6 message in `bytes` (the IP payload). Returns
    /// `Ok(None)` for messages that are not errors quoting a TCP segment (echo, ND, errors
    /// about UDP…). The ICMP checksum is verified (ICMPv6 needs the pseudo-header: pass
    /// the outer `src`/`dst`).
    pub fn parse(bytes: &[u8], v6: bool, src: IpAddr, dst: IpAddr) -> Result<Option<IcmpError>> {
        let header = bytes.get(..ICMP_HEADER_LEN).ok_or(Error::Truncated)?;
        let (icmp_type, code) = (header[0], header[1]);
        let rest = [header[4], header[5], header[6], header[7]];
        let sum = if v6 {
            // RFC 4443 §2.3: ICMPv6 covers the IPv6 pseudo-header.
            if !same_family(src, dst) || src.is_ipv4() {
                return Err(Error::Unsupported);
            }
            checksum::upper_layer_checksum(src, dst, PROTO_ICMPV6, bytes)
        } else {
            // RFC 792: the checksum covers the ICMP message alone.
            checksum::internet_checksum(0, bytes)
        };
        if sum != 0 {
            return Err(Error::BadChecksum);
        }
        let kind = if v6 {
            kind_v6(icmp_type, code, rest)
        } else {
            kind_v4(icmp_type, code, rest)
        };
        let Some(kind) = kind else {
            return Ok(None);
        };
        let quoted = bytes.get(ICMP_HEADER_LEN..).unwrap_or(&[]);
        let found = if v6 {
            quoted_tcp_v6(quoted)?
        } else {
            quoted_tcp_v4(quoted)?
        };
        let Some((quoted_src, quoted_dst, tcp)) = found else {
            return Ok(None);
        };
        Ok(Some(IcmpError {
            kind,
            icmp_type,
            code,
            quoted_src,
            quoted_dst,
            quoted_src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
            quoted_dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
            quoted_seq: SeqNumber(u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]])),
        }))
    }
}

/// RFC 792 / RFC 1122 §3.2.2.1 codes for destination unreachable, RFC 1191 for the MTU.
fn kind_v4(icmp_type: u8, code: u8, rest: [u8; 4]) -> Option<IcmpKind> {
    Some(match (icmp_type, code) {
        (ICMP_DEST_UNREACHABLE, 0) => IcmpKind::NetUnreachable,
        (ICMP_DEST_UNREACHABLE, 1) => IcmpKind::HostUnreachable,
        (ICMP_DEST_UNREACHABLE, 2) => IcmpKind::ProtocolUnreachable,
        (ICMP_DEST_UNREACHABLE, 3) => IcmpKind::PortUnreachable,
        // RFC 1191 §4: next-hop MTU in the low-order 16 bits of the unused field.
        (ICMP_DEST_UNREACHABLE, 4) => IcmpKind::PacketTooBig {
            mtu: u32::from(u16::from_be_bytes([rest[2], rest[3]])),
        },
        (ICMP_DEST_UNREACHABLE, 9) => IcmpKind::NetProhibited,
        (ICMP_DEST_UNREACHABLE, 10) => IcmpKind::HostProhibited,
        // RFC 1812 §5.2.7.1: communication administratively prohibited.
        (ICMP_DEST_UNREACHABLE, 13) => IcmpKind::AdminProhibited,
        (ICMP_DEST_UNREACHABLE, code) => IcmpKind::OtherUnreachable { code },
        (ICMP_TIME_EXCEEDED, _) => IcmpKind::TimeExceeded,
        // RFC 792: the pointer is the first octet of the 4-byte field.
        (ICMP_PARAMETER_PROBLEM, _) => IcmpKind::ParameterProblem {
            pointer: u32::from(rest[0]),
        },
        _ => return None,
    })
}

/// RFC 4443 §3.1–3.3. Destination-unreachable codes are read as nmap reads them
/// (`icmpv6_to_reason`, portreasons.cc), so each has nmap's reason word: 0 `no-route`, 1
/// and 5 `admin-prohibited`, 2 `beyond-scope`, 3 `host-unreach`, 4 `port-unreach`, 6
/// `reject-route`, any other `dest-unreach`. ICMPv6 has no "network unreachable": code 0
/// is a router's missing route, which is not IPv4's net-unreach word to nmap's tools.
fn kind_v6(icmp_type: u8, code: u8, rest: [u8; 4]) -> Option<IcmpKind> {
    Some(match (icmp_type, code) {
        (ICMPV6_DEST_UNREACHABLE, 0) => IcmpKind::NoRoute,
        (ICMPV6_DEST_UNREACHABLE, 1) => IcmpKind::AdminProhibited,
        (ICMPV6_DEST_UNREACHABLE, 2) => IcmpKind::BeyondScope,
        (ICMPV6_DEST_UNREACHABLE, 3) => IcmpKind::HostUnreachable, // address unreachable
        (ICMPV6_DEST_UNREACHABLE, 4) => IcmpKind::PortUnreachable,
        // Source address failed ingress/egress policy: nmap's admin-prohibited too.
        (ICMPV6_DEST_UNREACHABLE, 5) => IcmpKind::AdminProhibited,
        (ICMPV6_DEST_UNREACHABLE, 6) => IcmpKind::RejectRoute,
        (ICMPV6_DEST_UNREACHABLE, code) => IcmpKind::OtherUnreachable { code },
        (ICMPV6_PACKET_TOO_BIG, _) => IcmpKind::PacketTooBig {
            mtu: u32::from_be_bytes(rest),
        },
        (ICMPV6_TIME_EXCEEDED, _) => IcmpKind::TimeExceeded,
        (ICMPV6_PARAMETER_PROBLEM, _) => IcmpKind::ParameterProblem {
            pointer: u32::from_be_bytes(rest),
        },
        _ => return None,
    })
}

/// Addresses and the first 8 TCP bytes of a quoted IPv4 packet, `None` if it is not TCP
/// or is a non-first fragment (its "TCP header" would be data). The quoted total length
/// and header checksum are not checked: the quote is cut short by design, and routers
/// and NATs on the way may have rewritten fields.
fn quoted_tcp_v4(quoted: &[u8]) -> Result<Option<(IpAddr, IpAddr, &[u8])>> {
    let fixed = quoted.get(..IPV4_HEADER_LEN).ok_or(Error::Truncated)?;
    if fixed[0] >> 4 != 4 {
        return Err(Error::Unsupported);
    }
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    if header_len < IPV4_HEADER_LEN {
        return Err(Error::BadLength);
    }
    if fixed[9] != PROTO_TCP || u16::from_be_bytes([fixed[6], fixed[7]]) & 0x1fff != 0 {
        return Ok(None);
    }
    let tcp = quoted
        .get(header_len..header_len + QUOTED_TCP_LEN)
        .ok_or(Error::Truncated)?;
    let src = Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]);
    let dst = Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]);
    Ok(Some((src.into(), dst.into(), tcp)))
}

/// The same for a quoted IPv6 packet, stepping over its extension headers within the
/// bytes quoted (its payload length describes the original packet, not the quote).
fn quoted_tcp_v6(quoted: &[u8]) -> Result<Option<(IpAddr, IpAddr, &[u8])>> {
    let fixed = quoted.get(..IPV6_HEADER_LEN).ok_or(Error::Truncated)?;
    if fixed[0] >> 4 != 6 {
        return Err(Error::Unsupported);
    }
    let after = quoted.get(IPV6_HEADER_LEN..).unwrap_or(&[]);
    let upper = skip_ipv6_extensions(fixed[6], after)?;
    if upper.protocol != PROTO_TCP || upper.later_fragment {
        return Ok(None);
    }
    let tcp = after
        .get(upper.offset..upper.offset + QUOTED_TCP_LEN)
        .ok_or(Error::Truncated)?;
    let addr = |b: &[u8]| -> Option<Ipv6Addr> { <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from) };
    let src = addr(&fixed[8..24]).ok_or(Error::Truncated)?;
    let dst = addr(&fixed[24..40]).ok_or(Error::Truncated)?;
    Ok(Some((src.into(), dst.into(), tcp)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::{
        IPV6_DEST_OPTS, IPV6_FRAGMENT, IPV6_HOP_BY_HOP, IPV6_ROUTING, IpPacket, IpRepr, PROTO_ICMP,
    };
    use crate::wire::testdata::*;
    use crate::wire::{TcpFlags, TcpOptions, TcpRepr};

    const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    const R4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 254));
    const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
    const R6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe));

    /// Our SYN from `src` to `dst`, as a whole IP packet.
    fn our_syn(src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 40001,
            dst_port: 443,
            seq: SeqNumber(0xa1b2_c3d4),
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window: 64240,
            urgent: 0,
            options: TcpOptions::default().with_mss(1460).with_timestamps(1, 0),
            payload: &[],
        };
        let ip = IpRepr::new(src, dst, PROTO_TCP, 64, tcp.buffer_len());
        let mut buf = vec![0u8; ip.header_len() + tcp.buffer_len()];
        let n = ip.emit(&mut buf).unwrap();
        tcp.emit(src, dst, &mut buf[n..]).unwrap();
        buf
    }

    /// An ICMP(v6) message `router`→`to` with a correct checksum.
    fn icmp(v6: bool, icmp_type: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
        let mut m = vec![icmp_type, code, 0, 0];
        m.extend_from_slice(&rest);
        m.extend_from_slice(quoted);
        let sum = if v6 {
            checksum::upper_layer_checksum(R6, A6, PROTO_ICMPV6, &m)
        } else {
            checksum::internet_checksum(0, &m)
        };
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        m
    }

    fn parse4(m: &[u8]) -> Result<Option<IcmpError>> {
        IcmpError::parse(m, false, R4, A4)
    }

    fn parse6(m: &[u8]) -> Result<Option<IcmpError>> {
        IcmpError::parse(m, true, R6, A6)
    }

    #[test]
    fn linux_reject_v4() {
        let ip = IpPacket::parse(&ICMP_PORT_UNREACH_V4).unwrap();
        assert_eq!(ip.ip.protocol, PROTO_ICMP);
        let e = IcmpError::parse(ip.payload, false, ip.ip.src, ip.ip.dst)
            .unwrap()
            .unwrap();
        assert_eq!(e.kind, IcmpKind::PortUnreachable);
        assert_eq!((e.icmp_type, e.code), (3, 3));
        assert_eq!((e.quoted_src, e.quoted_dst), (A4, A4));
        assert_eq!((e.quoted_src_port, e.quoted_dst_port), (49874, 8082));
        assert_eq!(e.quoted_seq, SeqNumber(3_796_416_165));
        assert_eq!(e.kind.reason(), "port-unreach");

        let ip = IpPacket::parse(&ICMP_ADMIN_PROHIBITED_V4).unwrap();
        let e = IcmpError::parse(ip.payload, false, ip.ip.src, ip.ip.dst)
            .unwrap()
            .unwrap();
        assert_eq!(e.kind, IcmpKind::AdminProhibited);
        assert_eq!((e.quoted_src_port, e.quoted_dst_port), (34382, 8083));
        assert_eq!(e.quoted_seq, SeqNumber(4_014_570_699));
    }

    #[test]
    fn linux_reject_v6() {
        for (bytes, kind, port, seq) in [
            (
                &ICMPV6_PORT_UNREACH,
                IcmpKind::PortUnreachable,
                8082,
                0x6bae_004f,
            ),
            (
                &ICMPV6_ADMIN_PROHIBITED,
                IcmpKind::AdminProhibited,
                8083,
                0x247b_a68e,
            ),
        ] {
            let ip = IpPacket::parse(bytes).unwrap();
            assert_eq!(ip.ip.protocol, PROTO_ICMPV6);
            let e = IcmpError::parse(ip.payload, true, ip.ip.src, ip.ip.dst)
                .unwrap()
                .unwrap();
            assert_eq!(e.kind, kind);
            assert_eq!(e.quoted_dst_port, port);
            assert_eq!(e.quoted_seq, SeqNumber(seq));
            assert_eq!(
                e.quoted_dst,
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1))
            );
            // ICMPv6 checksums cover the pseudo-header: other outer addresses fail.
            assert_eq!(
                IcmpError::parse(ip.payload, true, ip.ip.src, B6),
                Err(Error::BadChecksum)
            );
        }
    }

    #[test]
    fn v4_codes() {
        let quote = our_syn(A4, B4);
        let cases = [
            (3, 0, IcmpKind::NetUnreachable),
            (3, 1, IcmpKind::HostUnreachable),
            (3, 2, IcmpKind::ProtocolUnreachable),
            (3, 3, IcmpKind::PortUnreachable),
            (3, 4, IcmpKind::PacketTooBig { mtu: 1400 }),
            (3, 9, IcmpKind::NetProhibited),
            (3, 10, IcmpKind::HostProhibited),
            (3, 13, IcmpKind::AdminProhibited),
            (3, 6, IcmpKind::OtherUnreachable { code: 6 }),
            (3, 15, IcmpKind::OtherUnreachable { code: 15 }),
            (11, 0, IcmpKind::TimeExceeded),
            (11, 1, IcmpKind::TimeExceeded),
            // RFC 792: the pointer is the first octet (0 here).
            (12, 0, IcmpKind::ParameterProblem { pointer: 0 }),
            (12, 1, IcmpKind::ParameterProblem { pointer: 0 }),
        ];
        for (t, c, kind) in cases {
            // RFC 1191: the MTU sits in the low 16 bits; only code 4 reads it.
            let m = icmp(false, t, c, [0, 0, 0x05, 0x78], &quote);
            let e = parse4(&m).unwrap().unwrap();
            assert_eq!(e.kind, kind, "type {t} code {c}");
            assert_eq!((e.quoted_src, e.quoted_dst), (A4, B4));
            assert_eq!((e.quoted_src_port, e.quoted_dst_port), (40001, 443));
            assert_eq!(e.quoted_seq, SeqNumber(0xa1b2_c3d4));
        }
    }

    #[test]
    fn v6_codes() {
        let quote = our_syn(A6, B6);
        let cases = [
            (1, 0, IcmpKind::NoRoute),
            (1, 1, IcmpKind::AdminProhibited),
            (1, 2, IcmpKind::BeyondScope),
            (1, 3, IcmpKind::HostUnreachable),
            (1, 4, IcmpKind::PortUnreachable),
            (1, 5, IcmpKind::AdminProhibited),
            (1, 6, IcmpKind::RejectRoute),
            (1, 7, IcmpKind::OtherUnreachable { code: 7 }),
            (2, 0, IcmpKind::PacketTooBig { mtu: 0x0001_0500 }),
            (3, 0, IcmpKind::TimeExceeded),
            (3, 1, IcmpKind::TimeExceeded),
            // RFC 4443 §3.4: a 32-bit pointer.
            (
                4,
                0,
                IcmpKind::ParameterProblem {
                    pointer: 0x0001_0500,
                },
            ),
            (
                4,
                1,
                IcmpKind::ParameterProblem {
                    pointer: 0x0001_0500,
                },
            ),
        ];
        for (t, c, kind) in cases {
            let m = icmp(true, t, c, [0, 1, 0x05, 0x00], &quote);
            let e = parse6(&m).unwrap().unwrap();
            assert_eq!(e.kind, kind, "type {t} code {c}");
            assert_eq!((e.quoted_src, e.quoted_dst), (A6, B6));
            assert_eq!(e.quoted_seq, SeqNumber(0xa1b2_c3d4));
        }
    }

    /// Walk 14: ICMPv6 codes 0 and 6 read `net-unreach` and `admin-prohibited` where nmap
    /// says `no-route` and `reject-route`. Every destination-unreachable code with nmap's
    /// word (nmap's `icmp_to_reason`, portreasons.cc), and IPv4's beside them.
    #[test]
    fn reason_words_are_nmaps_for_every_unreachable_code() {
        let v6 = [
            "no-route",
            "admin-prohibited",
            "beyond-scope",
            "host-unreach",
            "port-unreach",
            "admin-prohibited",
            "reject-route",
            "dest-unreach",
        ];
        let quote = our_syn(A6, B6);
        for (code, word) in v6.into_iter().enumerate() {
            let m = icmp(true, 1, code as u8, [0; 4], &quote);
            let e = parse6(&m).unwrap().unwrap();
            assert_eq!(e.kind.reason(), word, "ICMPv6 1/{code}");
        }
        let v4 = [
            (0, "net-unreach"),
            (1, "host-unreach"),
            (2, "proto-unreach"),
            (3, "port-unreach"),
            (9, "net-prohibited"),
            (10, "host-prohibited"),
            (13, "admin-prohibited"),
            (5, "dest-unreach"),
            (15, "dest-unreach"),
        ];
        let quote = our_syn(A4, B4);
        for (code, word) in v4 {
            let m = icmp(false, 3, code, [0; 4], &quote);
            let e = parse4(&m).unwrap().unwrap();
            assert_eq!(e.kind.reason(), word, "ICMP 3/{code}");
        }
    }

    #[test]
    fn minimal_rfc792_quote_is_enough() {
        let quote = our_syn(A4, B4);
        let m = icmp(false, 11, 0, [0; 4], &quote[..28]);
        assert_eq!(parse4(&m).unwrap().unwrap().quoted_dst_port, 443);
    }

    #[test]
    fn not_errors_or_not_tcp_are_none() {
        let quote = our_syn(A4, B4);
        // Echo reply, echo request, redirect, source quench (RFC 6633: deprecated).
        for t in [0u8, 8, 5, 4] {
            assert_eq!(
                parse4(&icmp(false, t, 0, [0; 4], &quote)),
                Ok(None),
                "type {t}"
            );
        }
        let mut udp = quote.clone();
        udp[9] = 17;
        assert_eq!(parse4(&icmp(false, 3, 3, [0; 4], &udp)), Ok(None));
        // A non-first fragment: its first bytes are not a TCP header.
        let mut frag = quote.clone();
        frag[6..8].copy_from_slice(&[0x00, 0x10]);
        assert_eq!(parse4(&icmp(false, 3, 3, [0; 4], &frag)), Ok(None));

        let quote6 = our_syn(A6, B6);
        // Echo request/reply, neighbour solicitation, redirect.
        for t in [128u8, 129, 135, 137] {
            assert_eq!(
                parse6(&icmp(true, t, 0, [0; 4], &quote6)),
                Ok(None),
                "type {t}"
            );
        }
        let mut udp6 = quote6.clone();
        udp6[6] = 17;
        assert_eq!(parse6(&icmp(true, 1, 4, [0; 4], &udp6)), Ok(None));
    }

    #[test]
    fn v4_quote_with_ip_options() {
        let syn = our_syn(A4, B4);
        // IHL 6: four option bytes (NOP NOP NOP EOL) before the TCP header.
        let mut quote = vec![0x46];
        quote.extend_from_slice(&syn[1..20]);
        quote.extend_from_slice(&[1, 1, 1, 0]);
        quote.extend_from_slice(&syn[20..28]);
        let e = parse4(&icmp(false, 3, 1, [0; 4], &quote)).unwrap().unwrap();
        assert_eq!(e.quoted_src_port, 40001);
        assert_eq!(e.quoted_seq, SeqNumber(0xa1b2_c3d4));
    }

    #[test]
    fn v6_quote_with_extension_headers() {
        let syn = our_syn(A6, B6);
        let mut quote = syn[..40].to_vec();
        quote[6] = IPV6_HOP_BY_HOP;
        quote.extend_from_slice(&[IPV6_FRAGMENT, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop, PadN
        quote.extend_from_slice(&[PROTO_TCP, 0, 0, 0, 0, 0, 0, 1]); // fragment, offset 0
        quote.extend_from_slice(&syn[40..48]);
        let e = parse6(&icmp(true, 1, 3, [0; 4], &quote)).unwrap().unwrap();
        assert_eq!(e.kind, IcmpKind::HostUnreachable);
        assert_eq!(e.quoted_dst_port, 443);
        // The same with a non-zero fragment offset quotes no TCP header.
        let at = 40 + 8 + 2;
        quote[at..at + 2].copy_from_slice(&[0x00, 0x08]);
        assert_eq!(parse6(&icmp(true, 1, 3, [0; 4], &quote)), Ok(None));
    }

    /// A quote of our segment behind `chain` (kind, body after the Next Header byte), cut
    /// to `keep` bytes of TCP.
    fn quote_behind(chain: &[(u8, Vec<u8>)], keep: usize) -> Vec<u8> {
        let syn = our_syn(A6, B6);
        let mut quote = syn[..40].to_vec();
        quote[6] = chain.first().map_or(PROTO_TCP, |(k, _)| *k);
        for (i, (_, body)) in chain.iter().enumerate() {
            quote.push(chain.get(i + 1).map_or(PROTO_TCP, |(k, _)| *k));
            quote.extend_from_slice(body);
        }
        quote.extend_from_slice(&syn[40..40 + keep]);
        quote
    }

    #[test]
    fn v6_quote_chains() {
        let hop = (IPV6_HOP_BY_HOP, vec![0, 1, 4, 0, 0, 0, 0]);
        let dest = (IPV6_DEST_OPTS, vec![0, 1, 4, 0, 0, 0, 0]);
        let srh = (IPV6_ROUTING, {
            let mut b = vec![2u8, 4, 0];
            b.resize(23, 0);
            b
        });
        let atomic = (IPV6_FRAGMENT, vec![0, 0, 0, 0, 0, 0, 1]);
        let first = (IPV6_FRAGMENT, vec![0, 0, 1, 0, 0, 0, 1]); // offset 0, M=1
        for chain in [
            vec![hop.clone(), dest.clone(), srh.clone()],
            vec![hop.clone(), srh.clone(), atomic.clone(), dest.clone()],
            vec![srh.clone(), first.clone()],
        ] {
            let e = parse6(&icmp(true, 1, 4, [0; 4], &quote_behind(&chain, 8)))
                .unwrap()
                .unwrap_or_else(|| panic!("{chain:?}"));
            assert_eq!((e.quoted_src_port, e.quoted_dst_port), (40001, 443));
            assert_eq!(e.quoted_seq, SeqNumber(0xa1b2_c3d4));
        }
        // The router cut its quote inside the chain, or before 8 bytes of TCP: truncated.
        let long = quote_behind(&[hop.clone(), srh.clone()], 8);
        for cut in [41, 48, 60, 71, 72 + 7] {
            assert_eq!(
                parse6(&icmp(true, 1, 4, [0; 4], &long[..cut])),
                Err(Error::Truncated),
                "cut at {cut}"
            );
        }
        // A chain longer than the tap's kernel walk: read whole, like any other (whether
        // the quote is of a segment of ours is the caller's to match).
        let chain: Vec<_> = (0..9).map(|_| dest.clone()).collect();
        let e = parse6(&icmp(true, 1, 4, [0; 4], &quote_behind(&chain, 8)))
            .unwrap()
            .expect("a quote");
        assert_eq!((e.quoted_src_port, e.quoted_dst_port), (40001, 443));
    }

    #[test]
    fn malformed() {
        let quote = our_syn(A4, B4);
        for len in 0..8 {
            let m = icmp(false, 3, 3, [0; 4], &[]);
            assert_eq!(parse4(&m[..len]), Err(Error::Truncated), "len {len}");
        }
        let mut bad = icmp(false, 3, 3, [0; 4], &quote);
        bad[30] ^= 1;
        assert_eq!(parse4(&bad), Err(Error::BadChecksum));
        let good6 = icmp(true, 1, 4, [0; 4], &our_syn(A6, B6));
        assert_eq!(
            IcmpError::parse(&good6, true, R4, A4),
            Err(Error::Unsupported)
        );
        assert_eq!(
            IcmpError::parse(&good6, true, R6, A4),
            Err(Error::Unsupported)
        );
        assert_eq!(
            IcmpError::parse(&good6, true, R6, B6),
            Err(Error::BadChecksum)
        );

        // Quoted header shorter than 20 bytes; IHL past the quote; fewer than 8 TCP bytes.
        assert_eq!(
            parse4(&icmp(false, 3, 3, [0; 4], &quote[..19])),
            Err(Error::Truncated)
        );
        assert_eq!(
            parse4(&icmp(false, 3, 3, [0; 4], &quote[..27])),
            Err(Error::Truncated)
        );
        let mut long_ihl = quote[..28].to_vec();
        long_ihl[0] = 0x4f;
        assert_eq!(
            parse4(&icmp(false, 3, 3, [0; 4], &long_ihl)),
            Err(Error::Truncated)
        );
        let mut short_ihl = quote.clone();
        short_ihl[0] = 0x43;
        assert_eq!(
            parse4(&icmp(false, 3, 3, [0; 4], &short_ihl)),
            Err(Error::BadLength)
        );
        let mut wrong_version = quote.clone();
        wrong_version[0] = 0x65;
        assert_eq!(
            parse4(&icmp(false, 3, 3, [0; 4], &wrong_version)),
            Err(Error::Unsupported)
        );

        let quote6 = our_syn(A6, B6);
        assert_eq!(
            parse6(&icmp(true, 1, 4, [0; 4], &quote6[..39])),
            Err(Error::Truncated)
        );
        assert_eq!(
            parse6(&icmp(true, 1, 4, [0; 4], &quote6[..47])),
            Err(Error::Truncated)
        );
        assert_eq!(
            parse6(&icmp(true, 1, 4, [0; 4], &quote[..48])),
            Err(Error::Unsupported)
        );
        let mut hop = quote6[..40].to_vec();
        hop[6] = IPV6_HOP_BY_HOP;
        hop.extend_from_slice(&[PROTO_TCP, 3, 0, 0]); // claims 32 bytes
        assert_eq!(
            parse6(&icmp(true, 1, 4, [0; 4], &hop)),
            Err(Error::Truncated)
        );
    }
}
