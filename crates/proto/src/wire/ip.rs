//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers.
//!
//! Lengths are checked here, by hand, before pnet's views are made: pnet's `new()` only
//! checks the fixed header, and its `payload()` trusts the length fields.

use super::checksum;
use super::{Error, Result};
use pnet_packet::ip::IpNextHeaderProtocol;
use pnet_packet::ipv4::{Ipv4Packet, MutableIpv4Packet};
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_ICMPV6: u8 = 58;

/// IPv6 extension headers that [`skip_ipv6_extensions`] steps over (RFC 8200 §4.1).
pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_FRAGMENT: u8 = 44;
/// Authentication Header (RFC 4302 §2.2): its length counts 4-byte units, minus 2.
pub const IPV6_AUTH: u8 = 51;
pub const IPV6_DEST_OPTS: u8 = 60;

/// Fixed header sizes.
pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;

/// The tap's BPF filter walks at most this many extension headers in the kernel (classic
/// BPF has no loops: each one is unrolled); a longer chain goes to user space whatever its
/// ports, where [`skip_ipv6_extensions`] walks it whole. RFC 8200 §4.1 recommends each
/// kind once (destination options twice) but has receivers process any chain, and Linux
/// does: a SYN-ACK behind nine headers is a SYN-ACK.
pub const MAX_IPV6_EXTENSIONS: usize = 8;

// The IPv4 flags as pnet's 3-bit field holds them (RFC 791 §3.1: reserved, DF, MF).
const IPV4_FLAG_DF: u8 = 0b010;
const IPV4_FLAG_MF: u8 = 0b001;

/// The fields of an IP header that tcpshake reads or writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IpRepr {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 protocol, or the IPv6 upper-layer protocol after skipping extension headers.
    pub protocol: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// IPv4 identification (0 for IPv6).
    pub ident: u16,
    /// IPv4 don't-fragment bit. Always true for a parsed IPv6 packet: routers never
    /// fragment IPv6 (RFC 8200 §5), which is what DF asks of IPv4 routers.
    pub dont_frag: bool,
    /// Length of the upper-layer payload in bytes.
    pub payload_len: usize,
}

/// A parsed IP packet: its header and the upper-layer bytes (trimmed to the length the
/// header gives; link-layer padding is dropped).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IpPacket<'a> {
    pub ip: IpRepr,
    pub payload: &'a [u8],
    /// Set when this packet is one fragment of a larger datagram: `payload` is then only a
    /// piece of the upper-layer bytes (for a later fragment, not even their start) and must
    /// go through reassembly ([`super::defrag`]) before anything reads it as TCP. An IPv6
    /// atomic fragment (offset 0, M clear) is whole: RFC 6946 §4 has it processed as a
    /// packet that was never fragmented, so it parses with `fragment: None`.
    pub fragment: Option<Fragment>,
}

/// Where a fragment belongs in its datagram (RFC 791 §3.1, RFC 8200 §4.5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fragment {
    /// IPv4 Identification (16 bits) or IPv6 Fragment Identification (32 bits).
    pub ident: u32,
    /// Where this fragment's data starts in the datagram's fragmentable part, in bytes.
    pub offset: usize,
    /// More fragments follow (IPv4 MF, IPv6 M).
    pub more: bool,
}

/// Where the extension-header chain of an IPv6 packet ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ipv6Upper {
    /// The upper-layer protocol (the first next-header value that is not skipped); for a
    /// fragment, the Fragment header's Next Header.
    pub protocol: u8,
    /// Offset of the upper-layer header from the end of the fixed header; for a fragment,
    /// of the fragment's data (right after the Fragment header).
    pub offset: usize,
    /// A Fragment header that is not atomic (RFC 6946: offset 0 and M clear is atomic).
    pub fragment: Option<Fragment>,
    /// A Fragment header was seen, atomic or not.
    pub fragment_header: Option<FragmentHeaderAt>,
    /// The Fragment header's offset field is non-zero: the upper-layer header is in an
    /// earlier fragment, so the bytes at `offset` are not a header.
    pub later_fragment: bool,
}

/// Where a Fragment header sits, for reassembly (RFC 8200 §4.5): offsets from the end of
/// the fixed header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FragmentHeaderAt {
    /// The Fragment header itself; the unfragmentable part is everything before it.
    pub at: usize,
    /// The header whose Next Header field names the Fragment header (its first byte);
    /// `None`: the fixed header's (byte 6 of the packet).
    pub named_by: Option<usize>,
    /// The Fragment header's own Next Header: the first header of the fragmentable part.
    pub next_header: u8,
}

/// Walk the IPv6 extension headers in `bytes` (everything after the fixed header),
/// starting with `next_header` from the fixed header (RFC 8200 §4). `Truncated` if a
/// header runs past `bytes`. Any number of headers: each is at least 8 bytes, so the walk
/// ends within `bytes.len() / 8` steps. The tap's BPF filter (net/bpf.rs) walks the first
/// [`MAX_IPV6_EXTENSIONS`] in the kernel and hands longer chains to this walk.
pub fn skip_ipv6_extensions(mut next_header: u8, bytes: &[u8]) -> Result<Ipv6Upper> {
    let mut offset = 0usize;
    let mut previous: Option<usize> = None;
    let mut upper = Ipv6Upper {
        protocol: 0,
        offset: 0,
        fragment: None,
        fragment_header: None,
        later_fragment: false,
    };
    for _ in 0..=bytes.len() / 8 {
        let len = match next_header {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                // RFC 8200 §4.3–4.6: Hdr Ext Len in 8-octet units, not counting the first 8.
                let units = *bytes.get(offset + 1).ok_or(Error::Truncated)?;
                (usize::from(units) + 1) * 8
            }
            IPV6_FRAGMENT => {
                // RFC 8200 §4.5: always 8 bytes; offset in the top 13 bits of bytes 2–3,
                // M in the lowest bit, the identification in bytes 4–7.
                let hdr = bytes.get(offset..offset + 8).ok_or(Error::Truncated)?;
                let word = u16::from_be_bytes([hdr[2], hdr[3]]);
                let frag = Fragment {
                    ident: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
                    offset: usize::from(word >> 3) * 8,
                    more: word & 1 != 0,
                };
                upper.fragment_header = Some(FragmentHeaderAt {
                    at: offset,
                    named_by: previous,
                    next_header: hdr[0],
                });
                // RFC 6946 §4: an atomic fragment is a whole packet; the walk goes on.
                // A real fragment ends the walk: what follows is the fragmentable part,
                // whole or cut short by the fragmentation, to be reassembled first.
                if frag.offset != 0 || frag.more {
                    upper.fragment = Some(frag);
                    upper.later_fragment = frag.offset != 0;
                    upper.protocol = hdr[0];
                    upper.offset = offset + 8;
                    return Ok(upper);
                }
                8
            }
            IPV6_AUTH => {
                let units = *bytes.get(offset + 1).ok_or(Error::Truncated)?;
                (usize::from(units) + 2) * 4
            }
            protocol => {
                upper.protocol = protocol;
                upper.offset = offset;
                return Ok(upper);
            }
        };
        let hdr = bytes.get(offset..offset + len).ok_or(Error::Truncated)?;
        next_header = hdr[0];
        previous = Some(offset);
        offset += len;
    }
    if is_ipv6_extension(next_header) {
        // More headers than bytes to hold them.
        return Err(Error::Truncated);
    }
    upper.protocol = next_header;
    upper.offset = offset;
    Ok(upper)
}

/// The extension headers [`skip_ipv6_extensions`] knows how to step over.
pub fn is_ipv6_extension(next_header: u8) -> bool {
    matches!(
        next_header,
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_AUTH | IPV6_DEST_OPTS
    )
}

impl<'a> IpPacket<'a> {
    /// Parse an IPv4 or IPv6 packet (version from the first nibble). IPv4 header checksum
    /// is verified (`BadChecksum`); IPv6 extension headers (hop-by-hop, routing, fragment,
    /// destination options) are skipped to find the upper-layer protocol.
    pub fn parse(bytes: &'a [u8]) -> Result<IpPacket<'a>> {
        let first = *bytes.first().ok_or(Error::Truncated)?;
        match first >> 4 {
            4 => parse_v4(bytes),
            6 => parse_v6(bytes),
            _ => Err(Error::Unsupported),
        }
    }
}

fn parse_v4(bytes: &[u8]) -> Result<IpPacket<'_>> {
    // RFC 791 §3.1: IHL counts 32-bit words and must be at least 5.
    let pkt = Ipv4Packet::new(bytes).ok_or(Error::Truncated)?;
    let header_len = usize::from(pkt.get_header_length()) * 4;
    if header_len < IPV4_HEADER_LEN {
        return Err(Error::BadLength);
    }
    let header = bytes.get(..header_len).ok_or(Error::Truncated)?;
    let total_len = usize::from(pkt.get_total_length());
    if total_len < header_len {
        return Err(Error::BadLength);
    }
    // Bytes beyond total length are link-layer padding; fewer bytes are a cut packet.
    let payload = bytes.get(header_len..total_len).ok_or(Error::Truncated)?;
    if checksum::internet_checksum(0, header) != 0 {
        return Err(Error::BadChecksum);
    }
    // pnet's 3-bit flags field is (reserved, DF, MF), RFC 791 §3.1.
    let flags = pkt.get_flags();
    let ip = IpRepr {
        src: IpAddr::V4(pkt.get_source()),
        dst: IpAddr::V4(pkt.get_destination()),
        protocol: pkt.get_next_level_protocol().0,
        ttl: pkt.get_ttl(),
        ident: pkt.get_identification(),
        dont_frag: flags & IPV4_FLAG_DF != 0,
        payload_len: payload.len(),
    };
    let more = flags & IPV4_FLAG_MF != 0;
    let offset = usize::from(pkt.get_fragment_offset()) * 8;
    let fragment = (more || offset != 0).then_some(Fragment {
        ident: u32::from(ip.ident),
        offset,
        more,
    });
    Ok(IpPacket {
        ip,
        payload,
        fragment,
    })
}

fn parse_v6(bytes: &[u8]) -> Result<IpPacket<'_>> {
    let pkt = Ipv6Packet::new(bytes).ok_or(Error::Truncated)?;
    // RFC 8200 §3: payload length counts everything after the fixed header, extension
    // headers included. Jumbograms (RFC 2675, length 0 + hop-by-hop option) are not
    // supported: with length 0 the hop-by-hop header is out of bounds → Truncated.
    let payload_len = usize::from(pkt.get_payload_length());
    let after_fixed = bytes
        .get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len)
        .ok_or(Error::Truncated)?;
    let upper = skip_ipv6_extensions(pkt.get_next_header().0, after_fixed)?;
    // `offset` was reached through bounds-checked slices, so it is ≤ after_fixed.len().
    let payload = after_fixed.get(upper.offset..).ok_or(Error::Truncated)?;
    let ip = IpRepr {
        src: IpAddr::V6(pkt.get_source()),
        dst: IpAddr::V6(pkt.get_destination()),
        protocol: upper.protocol,
        ttl: pkt.get_hop_limit(),
        ident: 0,
        dont_frag: true,
        payload_len: payload.len(),
    };
    Ok(IpPacket {
        ip,
        payload,
        fragment: upper.fragment,
    })
}

impl IpRepr {
    /// A header for `src`→`dst` carrying `payload_len` bytes of `protocol`.
    pub fn new(src: IpAddr, dst: IpAddr, protocol: u8, ttl: u8, payload_len: usize) -> IpRepr {
        IpRepr {
            src,
            dst,
            protocol,
            ttl,
            ident: 0,
            dont_frag: true,
            payload_len,
        }
    }

    /// 20 for IPv4 (we never emit options), 40 for IPv6.
    pub fn header_len(&self) -> usize {
        match self.src {
            IpAddr::V4(_) => IPV4_HEADER_LEN,
            IpAddr::V6(_) => IPV6_HEADER_LEN,
        }
    }

    /// Header + payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Write the header (with checksum for IPv4) into `buf`. `Err(Unsupported)` if src and
    /// dst are of different families, `Err(Truncated)` if `buf` is too short,
    /// `Err(BadLength)` if the payload does not fit the 16-bit length field.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => self.emit_v4(src, dst, buf),
            (IpAddr::V6(src), IpAddr::V6(dst)) => self.emit_v6(src, dst, buf),
            _ => Err(Error::Unsupported),
        }
    }

    fn emit_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, buf: &mut [u8]) -> Result<usize> {
        let total_len =
            u16::try_from(IPV4_HEADER_LEN + self.payload_len).map_err(|_| Error::BadLength)?;
        let header = buf.get_mut(..IPV4_HEADER_LEN).ok_or(Error::Truncated)?;
        let mut pkt = MutableIpv4Packet::new(header).ok_or(Error::Truncated)?;
        pkt.set_version(4);
        pkt.set_header_length(5);
        pkt.set_dscp(0);
        pkt.set_ecn(0);
        pkt.set_total_length(total_len);
        pkt.set_identification(self.ident);
        pkt.set_flags(if self.dont_frag { IPV4_FLAG_DF } else { 0 });
        pkt.set_fragment_offset(0);
        pkt.set_ttl(self.ttl);
        pkt.set_next_level_protocol(IpNextHeaderProtocol(self.protocol));
        pkt.set_checksum(0);
        pkt.set_source(src);
        pkt.set_destination(dst);
        let sum = checksum::internet_checksum(0, &buf[..IPV4_HEADER_LEN]);
        buf[10..12].copy_from_slice(&sum.to_be_bytes());
        Ok(IPV4_HEADER_LEN)
    }

    fn emit_v6(&self, src: Ipv6Addr, dst: Ipv6Addr, buf: &mut [u8]) -> Result<usize> {
        let payload_len = u16::try_from(self.payload_len).map_err(|_| Error::BadLength)?;
        let header = buf.get_mut(..IPV6_HEADER_LEN).ok_or(Error::Truncated)?;
        let mut pkt = MutableIpv6Packet::new(header).ok_or(Error::Truncated)?;
        pkt.set_version(6);
        pkt.set_traffic_class(0);
        // Flow label 0: RFC 6437 §3 allows a source that does not label flows to send 0.
        pkt.set_flow_label(0);
        pkt.set_payload_length(payload_len);
        pkt.set_next_header(IpNextHeaderProtocol(self.protocol));
        pkt.set_hop_limit(self.ttl);
        pkt.set_source(src);
        pkt.set_destination(dst);
        Ok(IPV6_HEADER_LEN)
    }
}

/// Helper for tests and callers: both addresses of a packet as v4 or v6.
pub fn same_family(a: IpAddr, b: IpAddr) -> bool {
    matches!(
        (a, b),
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::LINUX_SYN_V4;

    const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

    fn packet(repr: &IpRepr, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; repr.header_len() + payload.len()];
        let n = repr.emit(&mut buf).unwrap();
        buf[n..].copy_from_slice(payload);
        buf
    }

    #[test]
    fn linux_v4_header_parses() {
        let p = IpPacket::parse(&LINUX_SYN_V4).unwrap();
        assert_eq!(p.ip.src, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(p.ip.protocol, PROTO_TCP);
        assert_eq!(p.ip.ttl, 64);
        assert_eq!(p.ip.ident, 0x84c0);
        assert!(p.ip.dont_frag);
        assert_eq!(p.fragment, None);
        assert_eq!(p.payload.len(), 40);
        // Re-emitting the same fields gives the same bytes, checksum included.
        let mut out = [0u8; 20];
        p.ip.emit(&mut out).unwrap();
        assert_eq!(out[..], LINUX_SYN_V4[..20]);
    }

    #[test]
    fn v4_round_trip_and_padding_trimmed() {
        let mut repr = IpRepr::new(A4.into(), B4.into(), PROTO_TCP, 63, 5);
        repr.ident = 0xbeef;
        let mut bytes = packet(&repr, b"hello");
        bytes.extend_from_slice(&[0; 6]); // Ethernet minimum-frame padding
        let p = IpPacket::parse(&bytes).unwrap();
        assert_eq!(p.ip, repr);
        assert_eq!(p.payload, b"hello");
        assert_eq!(p.fragment, None);
    }

    #[test]
    fn v6_round_trip() {
        let repr = IpRepr::new(A6.into(), B6.into(), PROTO_TCP, 64, 3);
        let bytes = packet(&repr, b"abc");
        assert_eq!(
            &bytes[..4],
            &[0x60, 0, 0, 0],
            "version 6, class 0, flow label 0"
        );
        let p = IpPacket::parse(&bytes).unwrap();
        assert_eq!(p.ip, repr);
        assert_eq!(p.payload, b"abc");
    }

    #[test]
    fn emit_errors() {
        let mixed = IpRepr::new(A4.into(), B6.into(), PROTO_TCP, 64, 0);
        assert_eq!(mixed.emit(&mut [0; 40]), Err(Error::Unsupported));
        let v4 = IpRepr::new(A4.into(), B4.into(), PROTO_TCP, 64, 0);
        assert_eq!(v4.emit(&mut [0; 19]), Err(Error::Truncated));
        let v6 = IpRepr::new(A6.into(), B6.into(), PROTO_TCP, 64, 0);
        assert_eq!(v6.emit(&mut [0; 39]), Err(Error::Truncated));
        let big4 = IpRepr::new(A4.into(), B4.into(), PROTO_TCP, 64, 65_516);
        assert_eq!(big4.emit(&mut [0; 20]), Err(Error::BadLength));
        let big6 = IpRepr::new(A6.into(), B6.into(), PROTO_TCP, 64, 65_536);
        assert_eq!(big6.emit(&mut [0; 40]), Err(Error::BadLength));
    }

    #[test]
    fn v4_malformed() {
        let repr = IpRepr::new(A4.into(), B4.into(), PROTO_TCP, 64, 4);
        let good = packet(&repr, &[1, 2, 3, 4]);
        assert_eq!(IpPacket::parse(&[]), Err(Error::Truncated));
        assert_eq!(IpPacket::parse(&good[..19]), Err(Error::Truncated));
        assert_eq!(
            IpPacket::parse(&good[..23]),
            Err(Error::Truncated),
            "total length lies"
        );
        assert_eq!(
            IpPacket::parse(&[0x50; 40]),
            Err(Error::Unsupported),
            "version 5"
        );

        let mut ihl4 = good.clone();
        ihl4[0] = 0x44;
        assert_eq!(IpPacket::parse(&ihl4), Err(Error::BadLength));
        let mut ihl15 = good.clone();
        ihl15[0] = 0x4f; // 60-byte header in a 24-byte packet
        assert_eq!(IpPacket::parse(&ihl15), Err(Error::Truncated));
        let mut short_total = good.clone();
        short_total[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(IpPacket::parse(&short_total), Err(Error::BadLength));
        let mut bad_sum = good.clone();
        bad_sum[8] ^= 1; // TTL changed, checksum not
        assert_eq!(IpPacket::parse(&bad_sum), Err(Error::BadChecksum));
    }

    fn fix_v4_checksum(bytes: &mut [u8]) {
        bytes[10] = 0;
        bytes[11] = 0;
        let ihl = usize::from(bytes[0] & 0xf) * 4;
        let c = checksum::internet_checksum(0, &bytes[..ihl]);
        bytes[10..12].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn v4_options_and_fragments() {
        // IHL 6: one word of options (NOP NOP NOP EOL) is skipped.
        let repr = IpRepr::new(A4.into(), B4.into(), PROTO_TCP, 64, 0);
        let mut bytes = packet(&repr, &[]);
        bytes[0] = 0x46;
        bytes.extend_from_slice(&[1, 1, 1, 0, 9, 9]);
        bytes[2..4].copy_from_slice(&26u16.to_be_bytes());
        fix_v4_checksum(&mut bytes);
        let p = IpPacket::parse(&bytes).unwrap();
        assert_eq!(p.payload, &[9, 9]);

        let frag = |offset, more| {
            Some(Fragment {
                ident: 0,
                offset,
                more,
            })
        };
        for (word, want) in [
            (0x2000u16, frag(0, true)),
            (0x0001, frag(8, false)),
            (0x3fff, frag(0x1fff * 8, true)),
            (0x4000, None),
            (0, None),
        ] {
            bytes[6..8].copy_from_slice(&word.to_be_bytes());
            fix_v4_checksum(&mut bytes);
            let p = IpPacket::parse(&bytes).unwrap();
            assert_eq!(p.fragment, want, "flags/offset word {word:#06x}");
            assert_eq!(p.ip.dont_frag, word & 0x4000 != 0);
        }
    }

    /// An IPv6 packet with the given extension headers (each given as its body after the
    /// next-header byte, already sized) in front of `payload`.
    fn v6_with_extensions(chain: &[(u8, Vec<u8>)], upper: u8, payload: &[u8]) -> Vec<u8> {
        let mut after = Vec::new();
        for (i, (_, body)) in chain.iter().enumerate() {
            let next = chain.get(i + 1).map_or(upper, |(kind, _)| *kind);
            after.push(next);
            after.extend_from_slice(body);
        }
        after.extend_from_slice(payload);
        let first = chain.first().map_or(upper, |(kind, _)| *kind);
        let mut repr = IpRepr::new(A6.into(), B6.into(), first, 64, after.len());
        repr.protocol = first;
        packet(&repr, &after)
    }

    #[test]
    fn v6_extension_chain_is_skipped() {
        let hop = (IPV6_HOP_BY_HOP, vec![0, 1, 4, 0, 0, 0, 0]); // PadN, 8 bytes
        let routing = (IPV6_ROUTING, {
            let mut b = vec![1u8]; // Hdr Ext Len 1 → 16 bytes
            b.resize(15, 0);
            b
        });
        let dest = (IPV6_DEST_OPTS, vec![0, 1, 4, 0, 0, 0, 0]);
        let auth = (IPV6_AUTH, {
            let mut b = vec![1u8]; // (1 + 2) * 4 = 12 bytes
            b.resize(11, 0);
            b
        });
        let bytes = v6_with_extensions(&[hop, routing, dest, auth], PROTO_TCP, b"tcp!");
        let p = IpPacket::parse(&bytes).unwrap();
        assert_eq!(p.ip.protocol, PROTO_TCP);
        assert_eq!(p.payload, b"tcp!");
        assert_eq!(p.ip.payload_len, 4);
        assert_eq!(p.fragment, None);

        let frag = (IPV6_FRAGMENT, vec![0, 0, 1, 0, 0, 0, 42]); // offset 0, M=1
        let bytes = v6_with_extensions(&[frag], PROTO_TCP, b"x");
        let p = IpPacket::parse(&bytes).unwrap();
        assert_eq!(
            p.fragment,
            Some(Fragment {
                ident: 42,
                offset: 0,
                more: true
            })
        );
        assert_eq!(p.ip.protocol, PROTO_TCP);
        assert_eq!(p.payload, b"x");
    }

    #[test]
    fn v6_each_extension_header_alone() {
        let routing0 = {
            // Type 0 (RFC 5095 deprecates it; with Segments Left 0 it is skipped, §4.4).
            let mut b = vec![2u8, 0, 0]; // len 2 → 24 bytes, type 0, segments left 0
            b.resize(23, 0);
            b
        };
        let srh = {
            // Segment Routing Header (RFC 8754): routing type 4, segments left 0.
            let mut b = vec![2u8, 4, 0, 0, 0, 0, 0];
            b.resize(23, 0);
            b
        };
        for (kind, body, len) in [
            (IPV6_HOP_BY_HOP, vec![0, 1, 4, 0, 0, 0, 0], 8),
            (
                IPV6_DEST_OPTS,
                vec![1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                16,
            ),
            (IPV6_ROUTING, routing0, 24),
            (IPV6_ROUTING, srh, 24),
            (IPV6_AUTH, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 12),
            (IPV6_FRAGMENT, vec![0, 0, 0, 0, 0, 0, 7], 8), // atomic: offset 0, M=0
        ] {
            let bytes = v6_with_extensions(&[(kind, body)], PROTO_TCP, b"seg");
            let p = IpPacket::parse(&bytes).unwrap();
            assert_eq!(p.ip.protocol, PROTO_TCP, "header {kind}");
            assert_eq!(p.payload, b"seg", "header {kind}");
            assert_eq!(
                p.fragment, None,
                "header {kind}: atomic fragments are whole"
            );
            let up = skip_ipv6_extensions(kind, &bytes[40..]).unwrap();
            assert_eq!(up.offset, len, "header {kind}");
            assert_eq!(
                up.fragment_header.is_some(),
                kind == IPV6_FRAGMENT,
                "header {kind}"
            );
        }
    }

    #[test]
    fn v6_unknown_next_header_ends_the_walk() {
        // 59 (No Next Header) and an unassigned 253 are not extension headers we know: the
        // walk stops there and reports them as the upper layer, which nobody here reads.
        for upper in [59u8, 253, 17] {
            let hop = (IPV6_HOP_BY_HOP, vec![0, 1, 4, 0, 0, 0, 0]);
            let bytes = v6_with_extensions(&[hop], upper, b"zz");
            let p = IpPacket::parse(&bytes).unwrap();
            assert_eq!(p.ip.protocol, upper);
            assert_eq!(p.payload, b"zz");
        }
    }

    #[test]
    fn v6_fragment_header_position_is_reported() {
        let hop = (IPV6_HOP_BY_HOP, vec![0, 1, 4, 0, 0, 0, 0]);
        let dest = (IPV6_DEST_OPTS, vec![0, 1, 4, 0, 0, 0, 0]);
        let frag = (IPV6_FRAGMENT, vec![0, 0x00, 0x11, 0xde, 0xad, 0xbe, 0xef]); // offset 2, M
        let bytes = v6_with_extensions(&[hop, dest, frag], PROTO_TCP, b"datadata");
        let up = skip_ipv6_extensions(bytes[6], &bytes[40..]).unwrap();
        assert_eq!(
            up.fragment_header,
            Some(FragmentHeaderAt {
                at: 16,
                named_by: Some(8),
                next_header: PROTO_TCP
            })
        );
        assert_eq!(
            up.fragment,
            Some(Fragment {
                ident: 0xdead_beef,
                offset: 16,
                more: true
            })
        );
        assert!(up.later_fragment);
        assert_eq!(up.offset, 24);
        let p = IpPacket::parse(&bytes).unwrap();
        assert_eq!(
            p.payload, b"datadata",
            "a later fragment's payload is its data"
        );
        // Fragment header first: named by the fixed header.
        let frag = (IPV6_FRAGMENT, vec![0, 0, 1, 0, 0, 0, 1]);
        let bytes = v6_with_extensions(&[frag], PROTO_TCP, b"x");
        let up = skip_ipv6_extensions(bytes[6], &bytes[40..]).unwrap();
        assert_eq!(up.fragment_header.map(|f| f.named_by), Some(None));
        assert!(!up.later_fragment);
    }

    #[test]
    fn v6_later_fragment_is_flagged() {
        let after = [PROTO_TCP, 0, 0x00, 0x08, 0, 0, 0, 1]; // offset 1 (8 bytes)
        let up = skip_ipv6_extensions(IPV6_FRAGMENT, &after).unwrap();
        assert!(up.fragment.is_some() && up.later_fragment);
        assert_eq!(up.offset, 8);
        // A later fragment whose Next Header names an extension header: its data is not
        // walked (it is the middle of the fragmentable part), even when it is too short to
        // be the header it would claim to be.
        let after = [IPV6_DEST_OPTS, 0, 0x00, 0x08, 0, 0, 0, 1, 0];
        let up = skip_ipv6_extensions(IPV6_FRAGMENT, &after).unwrap();
        assert_eq!((up.protocol, up.offset), (IPV6_DEST_OPTS, 8));
    }

    #[test]
    fn v6_malformed() {
        let repr = IpRepr::new(A6.into(), B6.into(), PROTO_TCP, 64, 4);
        let good = packet(&repr, &[1, 2, 3, 4]);
        assert_eq!(IpPacket::parse(&good[..39]), Err(Error::Truncated));
        assert_eq!(
            IpPacket::parse(&good[..43]),
            Err(Error::Truncated),
            "payload length lies"
        );
        let mut padded = good.clone();
        padded.push(0xaa);
        assert_eq!(IpPacket::parse(&padded).unwrap().payload, &[1, 2, 3, 4]);

        // Hop-by-hop header claiming 16 bytes in an 8-byte payload.
        let bytes = v6_with_extensions(&[(IPV6_HOP_BY_HOP, vec![1, 0, 0, 0, 0, 0, 0])], 6, &[]);
        assert_eq!(IpPacket::parse(&bytes), Err(Error::Truncated));
        // Next header says hop-by-hop but there is nothing after the fixed header.
        let bare = packet(
            &IpRepr::new(A6.into(), B6.into(), IPV6_HOP_BY_HOP, 64, 0),
            &[],
        );
        assert_eq!(IpPacket::parse(&bare), Err(Error::Truncated));
        // Fragment header cut short.
        let bytes = v6_with_extensions(&[(IPV6_FRAGMENT, vec![0, 0])], 6, &[]);
        assert_eq!(IpPacket::parse(&bytes), Err(Error::Truncated));
        // Truncated inside a chain: the second header's length byte is missing.
        let bytes = v6_with_extensions(&[(IPV6_HOP_BY_HOP, vec![0, 1, 4, 0, 0, 0, 0])], 60, &[]);
        assert_eq!(IpPacket::parse(&bytes), Err(Error::Truncated));
        // Any number of headers is walked (RFC 8200 §4.1, as Linux): nine, or forty.
        let chain: Vec<_> = (0..40).map(|_| (IPV6_DEST_OPTS, vec![0; 7])).collect();
        for n in [8, 9, 40] {
            let bytes = v6_with_extensions(&chain[..n], 6, &[]);
            let p = IpPacket::parse(&bytes).unwrap();
            assert_eq!((p.ip.protocol, p.payload.len()), (6, 0), "{n} headers");
        }
        // A chain that claims more than the packet holds is truncated, however long.
        let bytes = v6_with_extensions(&chain, 60, &[]);
        assert_eq!(IpPacket::parse(&bytes), Err(Error::Truncated));
    }
}
