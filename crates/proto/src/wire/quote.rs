//! What an ICMP/ICMPv6 error quotes of the packet that caused it, field by field — and the
//! same view of a whole packet of ours, so the two can be compared (`trace`).
//!
//! How much a router quotes differs, and says something about it:
//! - RFC 792: the IP header and the first 64 bits of the datagram's data — for TCP the
//!   ports and the sequence number, nothing more;
//! - RFC 1812 §4.3.2.3: as much of the original datagram as fits in 576 bytes (IPv4);
//!   RFC 4443 §2.4(c): as much as fits in the minimum IPv6 MTU, 1280 bytes;
//! - RFC 4884: a length attribute (ICMP byte 5, in 32-bit words; ICMPv6 byte 4, in 64-bit
//!   words) says where the original datagram ends, and an extension structure follows
//!   (MPLS label stacks, RFC 4950; interface information, RFC 5837).
//!
//! Nothing here trusts the quoted length fields: a quote is cut short by design, and the
//! routers on the way may have rewritten any field. Every accessor of a quoted TCP header
//! returns `None` for a field the quote does not reach. Same no-panic contract as the rest
//! of [`super`].

use super::checksum;
use super::ip::{IPV4_HEADER_LEN, IPV6_HEADER_LEN, PROTO_TCP, skip_ipv6_extensions};
use super::options::TcpOptions;
use super::tcp::{TCP_HEADER_LEN, TcpFlags};
use super::{Error, Result, SeqNumber};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// ICMP header: type, code, checksum, the 4-byte field before the quote.
const ICMP_HEADER_LEN: usize = 8;
/// RFC 4884 §5.1: an original datagram field followed by extensions is at least 128 bytes.
pub const RFC4884_MIN_DATAGRAM: usize = 128;

/// The parts of an ICMP or ICMPv6 error message around the quoted datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpBody<'a> {
    pub icmp_type: u8,
    pub code: u8,
    /// The original-datagram field: everything after the ICMP header, or the first
    /// `length` bytes when an RFC 4884 length attribute is set.
    pub datagram: &'a [u8],
    /// The RFC 4884 length attribute, in bytes, when the router set one.
    pub rfc4884_len: Option<usize>,
    /// What follows the original datagram when the length attribute is set: the extension
    /// structure (RFC 4884 §7), not parsed here.
    pub extensions: &'a [u8],
}

impl<'a> IcmpBody<'a> {
    /// Split an ICMP (`v6 == false`) or ICMPv6 error message (already checksummed, e.g. by
    /// [`super::IcmpError::parse`]). The length attribute is read only for the types that
    /// have one (RFC 4884 §4: ICMP destination unreachable, time exceeded, parameter
    /// problem; ICMPv6 destination unreachable and time exceeded); a length that points
    /// past the message is ignored (the router cut its own quote: treat it as legacy).
    pub fn parse(bytes: &'a [u8], v6: bool) -> Result<IcmpBody<'a>> {
        let header = bytes.get(..ICMP_HEADER_LEN).ok_or(Error::Truncated)?;
        let (icmp_type, code) = (header[0], header[1]);
        let rest = bytes.get(ICMP_HEADER_LEN..).unwrap_or(&[]);
        let words = match (v6, icmp_type) {
            (false, 3 | 11 | 12) => usize::from(header[5]) * 4,
            (true, 1 | 3) => usize::from(header[4]) * 8,
            _ => 0,
        };
        let (datagram, extensions, rfc4884_len) = match rest.get(..words) {
            Some(d) if words > 0 => (d, rest.get(words..).unwrap_or(&[]), Some(words)),
            _ => (rest, &[][..], None),
        };
        Ok(IcmpBody {
            icmp_type,
            code,
            datagram,
            rfc4884_len,
            extensions,
        })
    }
}

/// The IP header of a quoted (or our own) datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedIp {
    pub v6: bool,
    /// IPv4 IHL × 4; IPv6 40 plus the extension headers walked.
    pub header_len: usize,
    /// IPv4 TOS byte / IPv6 Traffic Class: DSCP in the top six bits, ECN in the low two
    /// (RFC 2474, RFC 3168).
    pub tos: u8,
    /// IPv6 flow label (RFC 6437); 0 for IPv4.
    pub flow_label: u32,
    /// IPv4 total length / IPv6 payload length, as the header says.
    pub length: u16,
    /// IPv4 identification (0 for IPv6).
    pub ident: u16,
    pub dont_frag: bool,
    /// TTL / hop limit as the quoting router received it.
    pub ttl: u8,
    /// IPv4 protocol / the IPv6 upper-layer protocol after the extension headers.
    pub protocol: u8,
    /// IPv4 header checksum (0 for IPv6).
    pub checksum: u16,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 option bytes / IPv6 extension-header bytes.
    pub options_len: usize,
    /// A fragment other than the first: what follows is no TCP header.
    pub later_fragment: bool,
}

impl QuotedIp {
    pub fn dscp(&self) -> u8 {
        self.tos >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.tos & 0b11
    }

    /// Bytes of the transport segment the header announces (it may be cut in a quote).
    pub fn segment_len(&self) -> usize {
        if self.v6 {
            usize::from(self.length).saturating_sub(self.options_len)
        } else {
            usize::from(self.length).saturating_sub(self.header_len)
        }
    }
}

/// The start of a TCP header, as far as it was quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedTcp<'a> {
    /// The quoted bytes from the TCP header on (possibly fewer than a header).
    pub bytes: &'a [u8],
}

impl<'a> QuotedTcp<'a> {
    fn u16_at(&self, at: usize) -> Option<u16> {
        let b = self.bytes.get(at..at + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b = self.bytes.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn src_port(&self) -> Option<u16> {
        self.u16_at(0)
    }
    pub fn dst_port(&self) -> Option<u16> {
        self.u16_at(2)
    }
    pub fn seq(&self) -> Option<SeqNumber> {
        self.u32_at(4).map(SeqNumber)
    }
    pub fn ack(&self) -> Option<SeqNumber> {
        self.u32_at(8).map(SeqNumber)
    }
    /// Data offset in bytes (RFC 9293 §3.1), when it is a possible one (≥ 20).
    pub fn header_len(&self) -> Option<usize> {
        let len = usize::from(*self.bytes.get(12)? >> 4) * 4;
        (len >= TCP_HEADER_LEN).then_some(len)
    }
    /// The nine flag bits (NS and the eight of byte 13).
    pub fn flags(&self) -> Option<TcpFlags> {
        let b = self.bytes.get(12..14)?;
        Some(TcpFlags((u16::from(b[0] & 1) << 8) | u16::from(b[1])))
    }
    pub fn window(&self) -> Option<u16> {
        self.u16_at(14)
    }
    pub fn checksum(&self) -> Option<u16> {
        self.u16_at(16)
    }
    pub fn urgent(&self) -> Option<u16> {
        self.u16_at(18)
    }
    /// The option bytes, when the quote holds all of them.
    pub fn option_bytes(&self) -> Option<&'a [u8]> {
        let len = self.header_len()?;
        self.bytes.get(TCP_HEADER_LEN..len)
    }
    /// The options, when the quote holds all of them.
    pub fn options(&self) -> Option<TcpOptions> {
        self.option_bytes().map(TcpOptions::parse)
    }
    /// Payload bytes quoted (after a whole header; possibly cut).
    pub fn payload(&self) -> Option<&'a [u8]> {
        self.bytes.get(self.header_len()?..)
    }
}

/// An IP datagram carrying TCP, read leniently: a quote from an ICMP error, or a whole
/// packet of ours (the same view, so the two compare field by field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedDatagram<'a> {
    pub ip: QuotedIp,
    /// From the TCP header on; `None` when the protocol is not TCP or the datagram is a
    /// later fragment.
    pub tcp: Option<QuotedTcp<'a>>,
    /// Bytes of the datagram that were quoted.
    pub quoted_len: usize,
}

impl<'a> QuotedDatagram<'a> {
    /// The IP header must be whole (IPv4: IHL bytes; IPv6: 40 bytes and every extension
    /// header); the TCP bytes may be any length, none included. No length field and no
    /// checksum is checked.
    pub fn parse(bytes: &'a [u8]) -> Result<QuotedDatagram<'a>> {
        let first = *bytes.first().ok_or(Error::Truncated)?;
        let (ip, rest) = match first >> 4 {
            4 => parse_v4(bytes)?,
            6 => parse_v6(bytes)?,
            _ => return Err(Error::Unsupported),
        };
        let tcp =
            (ip.protocol == PROTO_TCP && !ip.later_fragment).then_some(QuotedTcp { bytes: rest });
        Ok(QuotedDatagram {
            ip,
            tcp,
            quoted_len: bytes.len(),
        })
    }

    /// Bytes of the TCP segment quoted.
    pub fn tcp_quoted(&self) -> usize {
        self.tcp.map_or(0, |t| t.bytes.len())
    }

    /// Whether the quoted TCP checksum is right for the quoted addresses and bytes: `None`
    /// unless the whole segment (as long as the IP header says) is in the quote.
    pub fn tcp_checksum_valid(&self) -> Option<bool> {
        let tcp = self.tcp?;
        let seg = tcp.bytes.get(..self.ip.segment_len())?;
        if seg.len() < TCP_HEADER_LEN {
            return None;
        }
        Some(checksum::verify_upper_layer(
            self.ip.src,
            self.ip.dst,
            PROTO_TCP,
            seg,
        ))
    }
}

fn parse_v4(bytes: &[u8]) -> Result<(QuotedIp, &[u8])> {
    let fixed = bytes.get(..IPV4_HEADER_LEN).ok_or(Error::Truncated)?;
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    if header_len < IPV4_HEADER_LEN {
        return Err(Error::BadLength);
    }
    let rest = bytes.get(header_len..).ok_or(Error::Truncated)?;
    let frag = u16::from_be_bytes([fixed[6], fixed[7]]);
    let src = Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]);
    let dst = Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]);
    let ip = QuotedIp {
        v6: false,
        header_len,
        tos: fixed[1],
        flow_label: 0,
        length: u16::from_be_bytes([fixed[2], fixed[3]]),
        ident: u16::from_be_bytes([fixed[4], fixed[5]]),
        // RFC 791 §3.1: flags in the top three bits (reserved, DF, MF).
        dont_frag: frag & 0x4000 != 0,
        ttl: fixed[8],
        protocol: fixed[9],
        checksum: u16::from_be_bytes([fixed[10], fixed[11]]),
        src: src.into(),
        dst: dst.into(),
        options_len: header_len - IPV4_HEADER_LEN,
        later_fragment: frag & 0x1fff != 0,
    };
    Ok((ip, rest))
}

fn parse_v6(bytes: &[u8]) -> Result<(QuotedIp, &[u8])> {
    let fixed = bytes.get(..IPV6_HEADER_LEN).ok_or(Error::Truncated)?;
    let after = bytes.get(IPV6_HEADER_LEN..).unwrap_or(&[]);
    let upper = skip_ipv6_extensions(fixed[6], after)?;
    let rest = after.get(upper.offset..).ok_or(Error::Truncated)?;
    let addr = |b: &[u8]| -> Option<Ipv6Addr> { <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from) };
    let word = u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
    let ip = QuotedIp {
        v6: true,
        header_len: IPV6_HEADER_LEN + upper.offset,
        // RFC 8200 §3: version (4 bits), traffic class (8), flow label (20).
        tos: ((word >> 20) & 0xff) as u8,
        flow_label: word & 0x000f_ffff,
        length: u16::from_be_bytes([fixed[4], fixed[5]]),
        ident: 0,
        dont_frag: true,
        ttl: fixed[7],
        protocol: upper.protocol,
        checksum: 0,
        src: addr(&fixed[8..24]).ok_or(Error::Truncated)?.into(),
        dst: addr(&fixed[24..40]).ok_or(Error::Truncated)?.into(),
        options_len: upper.offset,
        later_fragment: upper.later_fragment,
    };
    Ok((ip, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::IpRepr;
    use crate::wire::{TcpFlags, TcpRepr};

    const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

    fn syn(src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 40001,
            dst_port: 443,
            seq: SeqNumber(0xa1b2_c3d4),
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window: 64240,
            urgent: 0,
            options: TcpOptions::default()
                .with_mss(1460)
                .with_sack_permitted()
                .with_timestamps(7, 0)
                .with_wscale(7),
            payload: &[],
        };
        let mut ip = IpRepr::new(src, dst, PROTO_TCP, 5, tcp.buffer_len());
        ip.ident = 0x1234;
        let mut buf = vec![0u8; ip.header_len() + tcp.buffer_len()];
        let n = ip.emit(&mut buf).unwrap();
        tcp.emit(src, dst, &mut buf[n..]).unwrap();
        buf
    }

    #[test]
    fn whole_v4_syn() {
        let mut b = syn(A4, B4);
        b[1] = 0x22; // DSCP 8 (cs1), ECN 2 (ECT(0))
        let q = QuotedDatagram::parse(&b).unwrap();
        assert_eq!((q.ip.dscp(), q.ip.ecn()), (8, 2));
        assert_eq!((q.ip.ttl, q.ip.ident, q.ip.dont_frag), (5, 0x1234, true));
        assert_eq!((q.ip.src, q.ip.dst), (A4, B4));
        assert_eq!(q.ip.segment_len(), 40);
        let t = q.tcp.unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (Some(40001), Some(443)));
        assert_eq!(t.seq(), Some(SeqNumber(0xa1b2_c3d4)));
        assert_eq!(t.flags(), Some(TcpFlags::SYN));
        assert_eq!(t.window(), Some(64240));
        let o = t.options().unwrap();
        assert_eq!(
            (o.mss, o.wscale, o.sack_permitted),
            (Some(1460), Some(7), true)
        );
        assert_eq!(t.payload(), Some(&[][..]));
        assert_eq!(q.tcp_checksum_valid(), Some(true));
    }

    #[test]
    fn rfc792_quote_has_ports_and_seq_only() {
        let b = syn(A4, B4);
        let q = QuotedDatagram::parse(&b[..28]).unwrap();
        let t = q.tcp.unwrap();
        assert_eq!(t.seq(), Some(SeqNumber(0xa1b2_c3d4)));
        assert_eq!(
            (t.ack(), t.flags(), t.window(), t.options()),
            (None, None, None, None)
        );
        assert_eq!(q.tcp_checksum_valid(), None);
        assert_eq!(q.tcp_quoted(), 8);
        // Every cut parses (or says Truncated inside the IP header), never panics.
        for cut in 0..b.len() {
            let r = QuotedDatagram::parse(&b[..cut]);
            assert_eq!(r.is_err(), cut < 20, "cut {cut}");
        }
    }

    #[test]
    fn whole_v6_syn_and_flow_label() {
        let mut b = syn(A6, B6);
        // Traffic class 0x20 (cs1), flow label 0x12345.
        b[0..4].copy_from_slice(&(0x6000_0000u32 | 0x20 << 20 | 0x12345).to_be_bytes());
        let q = QuotedDatagram::parse(&b).unwrap();
        assert!(q.ip.v6);
        assert_eq!((q.ip.tos, q.ip.flow_label, q.ip.ttl), (0x20, 0x12345, 5));
        assert_eq!(q.ip.segment_len(), 40);
        assert_eq!(q.tcp.unwrap().options().unwrap().mss, Some(1460));
        assert_eq!(q.tcp_checksum_valid(), Some(true));
        // A changed option without a recomputed checksum.
        let mut bad = b.clone();
        bad[40 + 23] = 0xb0; // MSS 1460 → 0x05b0
        let q = QuotedDatagram::parse(&bad).unwrap();
        assert_eq!(q.tcp.unwrap().options().unwrap().mss, Some(0x05b0));
        assert_eq!(q.tcp_checksum_valid(), Some(false));
    }

    #[test]
    fn icmp_body_and_rfc4884_length() {
        let b = syn(A4, B4);
        // Legacy time exceeded: no length, the whole rest is the datagram.
        let mut m = vec![11, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&b);
        let body = IcmpBody::parse(&m, false).unwrap();
        assert_eq!((body.icmp_type, body.rfc4884_len), (11, None));
        assert_eq!(body.datagram, &b[..]);
        // RFC 4884: datagram padded to 128 bytes (32 words), then an extension structure.
        let mut m = vec![11, 0, 0, 0, 0, 32, 0, 0];
        m.extend_from_slice(&b);
        m.resize(8 + 128, 0);
        m.extend_from_slice(&[0x20, 0, 0, 0, 0, 8, 1, 1, 0, 0, 0x10, 0xff]);
        let body = IcmpBody::parse(&m, false).unwrap();
        assert_eq!(body.rfc4884_len, Some(128));
        assert_eq!(body.datagram.len(), 128);
        assert_eq!(body.extensions.len(), 12);
        let q = QuotedDatagram::parse(body.datagram).unwrap();
        assert_eq!(q.tcp.unwrap().seq(), Some(SeqNumber(0xa1b2_c3d4)));
        // ICMPv6: the length sits in byte 4, in 64-bit words.
        let b6 = syn(A6, B6);
        let mut m = vec![3, 0, 0, 0, 16, 0, 0, 0];
        m.extend_from_slice(&b6);
        m.resize(8 + 128, 0);
        m.extend_from_slice(&[0x20, 0, 0, 0]);
        let body = IcmpBody::parse(&m, true).unwrap();
        assert_eq!((body.rfc4884_len, body.extensions.len()), (Some(128), 4));
        // A length past the end is ignored; packet too big has no length attribute.
        let mut m = vec![3, 0, 0, 0, 200, 0, 0, 0];
        m.extend_from_slice(&b6);
        assert_eq!(IcmpBody::parse(&m, true).unwrap().rfc4884_len, None);
        m[0] = 2;
        m[4] = 1;
        assert_eq!(IcmpBody::parse(&m, true).unwrap().rfc4884_len, None);
        assert_eq!(IcmpBody::parse(&m[..7], true), Err(Error::Truncated));
    }

    #[test]
    fn not_tcp_or_later_fragment() {
        let mut b = syn(A4, B4);
        b[9] = 17;
        assert!(QuotedDatagram::parse(&b).unwrap().tcp.is_none());
        let mut b = syn(A4, B4);
        b[6..8].copy_from_slice(&[0x00, 0x10]);
        assert!(QuotedDatagram::parse(&b).unwrap().tcp.is_none());
        let mut b = syn(A4, B4);
        b[0] = 0x44;
        assert_eq!(QuotedDatagram::parse(&b), Err(Error::BadLength));
        b[0] = 0x55;
        assert_eq!(QuotedDatagram::parse(&b), Err(Error::Unsupported));
    }

    #[test]
    fn quoted_tcp_with_a_silly_offset() {
        let mut b = syn(A4, B4);
        b[20 + 12] = 0x10; // data offset 1 word: impossible
        let t = QuotedDatagram::parse(&b).unwrap().tcp.unwrap();
        assert_eq!(
            (t.header_len(), t.options(), t.payload()),
            (None, None, None)
        );
        b[20 + 12] = 0xf0; // 60 bytes: past the quote
        let t = QuotedDatagram::parse(&b).unwrap().tcp.unwrap();
        assert_eq!(t.header_len(), Some(60));
        assert_eq!((t.options(), t.payload()), (None, None));
    }
}
