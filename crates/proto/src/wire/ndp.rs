//! IPv6 Neighbor Discovery's address resolution (RFC 4861 §7.2): the Neighbor
//! Solicitations a scan sends to on-link targets' solicited-node groups, and the Neighbor
//! Advertisements it reads back.
//!
//! ```text
//!  NS (type 135) / NA (type 136), after the 40-byte IPv6 header (hop limit 255):
//!  0     1     2          4                 8                       24
//!  │type │code │ checksum │ reserved / R S O│ target address (16)   │ options…
//!  options: type 1 source / type 2 target link-layer address, length in units of 8
//! ```

use super::checksum;
use super::ethernet::{ETHERTYPE_IPV6, EthernetRepr, MacAddr};
use super::ip::{IPV6_HEADER_LEN, IpPacket, IpRepr, PROTO_ICMPV6};
use super::{Error, Result};
use std::net::{IpAddr, Ipv6Addr};

pub const TYPE_NEIGHBOR_SOLICITATION: u8 = 135;
pub const TYPE_NEIGHBOR_ADVERTISEMENT: u8 = 136;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// Type, code, checksum, the 4-byte field and the target.
const NDP_FIXED_LEN: usize = 24;
/// Our solicitation: the fixed part and one 8-byte source link-layer address option.
pub const NS_LEN: usize = NDP_FIXED_LEN + 8;
/// RFC 4861 §7.1: Neighbor Discovery messages carry hop limit 255, so a receiver knows
/// they were not forwarded by a router.
pub const ND_HOP_LIMIT: u8 = 255;
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// The solicited-node multicast group of `addr`: ff02::1:ff00:0/104 and its last 24 bits
/// (RFC 4291 §2.7.1). Every node joins it for each of its addresses.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The whole frame of a Neighbor Solicitation for `target`, from `src` at `mac`, to the
/// target's solicited-node group (RFC 4861 §7.2.2), with our link-layer address (which
/// the target needs to answer, §4.3) — the frame Linux sends, byte for byte.
pub fn emit_solicitation_frame(
    mac: MacAddr,
    src: Ipv6Addr,
    target: Ipv6Addr,
    buf: &mut [u8],
) -> Result<usize> {
    let group = solicited_node(target);
    let eth = EthernetRepr {
        dst: MacAddr::ipv6_multicast(group),
        src: mac,
        ethertype: ETHERTYPE_IPV6,
    };
    let e = eth.emit(buf)?;
    let ip = IpRepr::new(
        IpAddr::V6(src),
        IpAddr::V6(group),
        PROTO_ICMPV6,
        ND_HOP_LIMIT,
        NS_LEN,
    );
    let i = ip.emit(buf.get_mut(e..).ok_or(Error::Truncated)?)?;
    let m = buf.get_mut(e + i..e + i + NS_LEN).ok_or(Error::Truncated)?;
    m.fill(0);
    m[0] = TYPE_NEIGHBOR_SOLICITATION;
    m[8..24].copy_from_slice(&target.octets());
    m[24] = OPT_SOURCE_LL;
    m[25] = 1;
    m[26..32].copy_from_slice(&mac.0);
    let sum = checksum::upper_layer_checksum(IpAddr::V6(src), IpAddr::V6(group), PROTO_ICMPV6, m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    Ok(e + i + NS_LEN)
}

/// A Neighbor Advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertisement {
    /// Where it was sent (ours, for an answer to our solicitation).
    pub dst: Ipv6Addr,
    pub target: Ipv6Addr,
    /// The target link-layer address option, if present.
    pub target_mac: Option<MacAddr>,
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
}

impl Advertisement {
    /// The advertisement in an IPv6 packet, if it is one that passes RFC 4861 §7.1.2's
    /// validity checks: hop limit 255, a correct ICMPv6 checksum, code 0, at least 24
    /// bytes, a target that is not multicast, options none of which has length 0.
    /// `Ok(None)` for any other packet (another ICMPv6 type, another protocol).
    pub fn parse(packet: &[u8]) -> Result<Option<Advertisement>> {
        let pkt = IpPacket::parse(packet)?;
        let (IpAddr::V6(_), IpAddr::V6(dst)) = (pkt.ip.src, pkt.ip.dst) else {
            return Ok(None);
        };
        if pkt.ip.protocol != PROTO_ICMPV6 || pkt.fragment.is_some() {
            return Ok(None);
        }
        let m = pkt.payload;
        if m.first() != Some(&TYPE_NEIGHBOR_ADVERTISEMENT) {
            return Ok(None);
        }
        if m.len() < NDP_FIXED_LEN {
            return Err(Error::Truncated);
        }
        if pkt.ip.ttl != ND_HOP_LIMIT || m[1] != 0 {
            return Err(Error::Unsupported);
        }
        if !checksum::verify_upper_layer(pkt.ip.src, pkt.ip.dst, PROTO_ICMPV6, m) {
            return Err(Error::BadChecksum);
        }
        let target = Ipv6Addr::from(<[u8; 16]>::try_from(&m[8..24]).map_err(|_| Error::Truncated)?);
        if target.is_multicast() {
            return Err(Error::Unsupported);
        }
        let mut target_mac = None;
        let mut opts = &m[NDP_FIXED_LEN..];
        // Bounded: each option is at least 8 bytes long (a zero length is refused).
        while !opts.is_empty() {
            let (ty, len) = match opts {
                [ty, len, ..] => (*ty, usize::from(*len) * 8),
                _ => return Err(Error::Truncated),
            };
            if len == 0 {
                return Err(Error::BadLength);
            }
            let opt = opts.get(..len).ok_or(Error::Truncated)?;
            if ty == OPT_TARGET_LL && target_mac.is_none() {
                target_mac = MacAddr::from_slice(&opt[2..]);
            }
            opts = &opts[len..];
        }
        let flags = m[4];
        Ok(Some(Advertisement {
            dst,
            target,
            target_mac,
            router: flags & FLAG_ROUTER != 0,
            solicited: flags & FLAG_SOLICITED != 0,
            override_: flags & FLAG_OVERRIDE != 0,
        }))
    }

    /// What it says about the target's link address, if a resolver that asked from `us`
    /// may believe it: solicited (an answer to a solicitation, RFC 4861 §7.2.4), to us,
    /// with a unicast target link-layer address (which an answer to a multicast
    /// solicitation must carry, §7.2.4).
    pub fn as_answer_to(&self, us: Ipv6Addr) -> Option<(Ipv6Addr, MacAddr)> {
        let mac = self.target_mac.filter(|m| m.is_unicast())?;
        (self.solicited && self.dst == us).then_some((self.target, mac))
    }
}

/// The IPv6 header's length: where an NS's ICMPv6 message starts after the Ethernet
/// header (for tests and the driver's buffer sizes).
pub const NS_FRAME_LEN: usize = 14 + IPV6_HEADER_LEN + NS_LEN;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Linux 6.18's solicitation in the lab (tcpdump -xx): fd00:77::1 at be:40:91:51:31:16
    /// asks ff02::1:ff00:2 who has fd00:77::2.
    const LINUX_NS: [u8; 86] = [
        0x33, 0x33, 0xff, 0x00, 0x00, 0x02, 0xbe, 0x40, 0x91, 0x51, 0x31, 0x16, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x02, 0x87, 0x00, 0xfe, 0x01, 0x00, 0x00,
        0x00, 0x00, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x02, 0x01, 0x01, 0xbe, 0x40, 0x91, 0x51, 0x31, 0x16,
    ];
    /// The answer: fd00:77::2 is at 9a:86:31:63:91:ac, solicited and override.
    const LINUX_NA: [u8; 86] = [
        0xbe, 0x40, 0x91, 0x51, 0x31, 0x16, 0x9a, 0x86, 0x31, 0x63, 0x91, 0xac, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0x00, 0xbf, 0xa0, 0x60, 0x00,
        0x00, 0x00, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x02, 0x02, 0x01, 0x9a, 0x86, 0x31, 0x63, 0x91, 0xac,
    ];

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn our_solicitation_is_linuxs_byte_for_byte() {
        let mut buf = [0u8; 128];
        let n = emit_solicitation_frame(
            "be:40:91:51:31:16".parse().unwrap(),
            a("fd00:77::1"),
            a("fd00:77::2"),
            &mut buf,
        )
        .unwrap();
        assert_eq!(n, NS_FRAME_LEN);
        assert_eq!(&buf[..n], &LINUX_NS[..]);
        assert!(
            emit_solicitation_frame(MacAddr::ZERO, a("::1"), a("::2"), &mut buf[..85]).is_err()
        );
    }

    #[test]
    fn linuxs_advertisement_parses_and_is_believed() {
        let na = Advertisement::parse(&LINUX_NA[14..]).unwrap().unwrap();
        assert_eq!(na.target, a("fd00:77::2"));
        assert_eq!(na.target_mac, Some("9a:86:31:63:91:ac".parse().unwrap()));
        assert!(na.solicited && na.override_ && !na.router);
        assert_eq!(
            na.as_answer_to(a("fd00:77::1")),
            Some((a("fd00:77::2"), "9a:86:31:63:91:ac".parse().unwrap()))
        );
        assert_eq!(na.as_answer_to(a("fd00:77::9")), None);
        let unsolicited = Advertisement {
            solicited: false,
            ..na
        };
        assert_eq!(unsolicited.as_answer_to(a("fd00:77::1")), None);
        let no_mac = Advertisement {
            target_mac: None,
            ..na
        };
        assert_eq!(no_mac.as_answer_to(a("fd00:77::1")), None);
        // A solicitation is not an advertisement.
        assert_eq!(Advertisement::parse(&LINUX_NS[14..]), Ok(None));
    }

    #[test]
    fn rfc_4861_validity_checks() {
        let mut p = LINUX_NA[14..].to_vec();
        p[7] = 64; // forwarded by a router: hop limit no longer 255
        assert_eq!(Advertisement::parse(&p), Err(Error::Unsupported));
        let mut p = LINUX_NA[14..].to_vec();
        p[40 + 4] ^= 0x80; // a flag changed, checksum not
        assert_eq!(Advertisement::parse(&p), Err(Error::BadChecksum));
        // A zero-length option (checksum repaired).
        let mut p = LINUX_NA[14..].to_vec();
        p[40 + 25] = 0;
        repair(&mut p);
        assert_eq!(Advertisement::parse(&p), Err(Error::BadLength));
        // A multicast target.
        let mut p = LINUX_NA[14..].to_vec();
        p[40 + 8] = 0xff;
        repair(&mut p);
        assert_eq!(Advertisement::parse(&p), Err(Error::Unsupported));
    }

    fn repair(p: &mut [u8]) {
        let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap()));
        let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).unwrap()));
        p[42] = 0;
        p[43] = 0;
        let sum = checksum::upper_layer_checksum(src, dst, PROTO_ICMPV6, &p[40..]);
        p[42..44].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn solicited_node_groups() {
        assert_eq!(solicited_node(a("fd00:77::1:2:3")), a("ff02::1:ff02:3"));
        assert_eq!(
            solicited_node(a("2001:db8::abcd:ef01")),
            a("ff02::1:ffcd:ef01")
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Advertisement::parse(&bytes);
        }

        #[test]
        fn mutated_advertisements_never_panic(i in 0usize..72, v in any::<u8>(), fix in any::<bool>(),
                                               cut in 0usize..80) {
            let mut p = LINUX_NA[14..].to_vec();
            p[i] = v;
            if fix {
                repair(&mut p);
            }
            let _ = Advertisement::parse(&p);
            let _ = Advertisement::parse(&p[..cut.min(p.len())]);
        }
    }
}
