//! Ethernet II headers (IEEE 802.3 §3.2.6, RFC 894 for IPv4, RFC 2464 for IPv6): what a
//! scan puts in front of its packets when it writes whole frames, and what it reads off
//! ARP and Neighbor Discovery replies.
//!
//! No VLAN tags: a tagged frame (EtherType 0x8100) parses as [`Error::Unsupported`] —
//! the kernel strips tags before an AF_PACKET socket of the VLAN's own interface sees it.

use super::{Error, Result};
use std::fmt;
use std::net::Ipv6Addr;

pub const HEADER_LEN: usize = 14;
/// The shortest frame without its FCS (IEEE 802.3 §4.2.3.3: 64 bytes with it). Drivers pad
/// short frames; ours are padded when built, so no driver has to.
pub const MIN_FRAME_LEN: usize = 60;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// A unicast address that names a station: not a group address (the I/G bit, IEEE
    /// 802 §8.2.2) and not all zeros. ARP and Neighbor Discovery replies must carry one.
    pub fn is_unicast(self) -> bool {
        self.0[0] & 1 == 0 && self != MacAddr::ZERO
    }

    /// The Ethernet group address of an IPv6 multicast address: 33:33 and its last 32
    /// bits (RFC 2464 §7).
    pub fn ipv6_multicast(group: Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    pub fn from_slice(b: &[u8]) -> Option<MacAddr> {
        Some(MacAddr(b.get(..6)?.try_into().ok()?))
    }
}

/// nmap's spelling (`9A:86:31:63:91:AC`), which its XML carries.
impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;

    /// `aa:bb:cc:dd:ee:ff` (either case; `-` also separates).
    fn from_str(s: &str) -> std::result::Result<MacAddr, String> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for o in out.iter_mut() {
            let p = parts
                .next()
                .ok_or_else(|| format!("{s}: not a MAC address"))?;
            if p.len() != 2 {
                return Err(format!("{s}: not a MAC address"));
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| format!("{s}: not a MAC address"))?;
        }
        if parts.next().is_some() {
            return Err(format!("{s}: not a MAC address"));
        }
        Ok(MacAddr(out))
    }
}

/// An Ethernet II header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ethertype: u16,
}

impl EthernetRepr {
    /// The header and the rest of the frame (the payload, padding included: the layer
    /// above knows its own length). Lengths below 1536 are IEEE 802.3 length fields, not
    /// EtherTypes (802.3 §3.2.6), and VLAN tags are not handled: both `Unsupported`.
    pub fn parse(frame: &[u8]) -> Result<(EthernetRepr, &[u8])> {
        let h = frame.get(..HEADER_LEN).ok_or(Error::Truncated)?;
        let ethertype = u16::from_be_bytes([h[12], h[13]]);
        if ethertype < 0x0600 || ethertype == 0x8100 || ethertype == 0x88a8 {
            return Err(Error::Unsupported);
        }
        let repr = EthernetRepr {
            dst: MacAddr::from_slice(&h[0..6]).ok_or(Error::Truncated)?,
            src: MacAddr::from_slice(&h[6..12]).ok_or(Error::Truncated)?,
            ethertype,
        };
        Ok((repr, frame.get(HEADER_LEN..).unwrap_or(&[])))
    }

    /// Writes the 14-byte header at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let h = buf.get_mut(..HEADER_LEN).ok_or(Error::Truncated)?;
        h[0..6].copy_from_slice(&self.dst.0);
        h[6..12].copy_from_slice(&self.src.0);
        h[12..14].copy_from_slice(&self.ethertype.to_be_bytes());
        Ok(HEADER_LEN)
    }
}

/// Zero-pads a frame of `len` bytes in `buf` to [`MIN_FRAME_LEN`]; returns the new length.
pub fn pad(buf: &mut [u8], len: usize) -> Result<usize> {
    if len >= MIN_FRAME_LEN {
        return Ok(len);
    }
    buf.get_mut(len..MIN_FRAME_LEN)
        .ok_or(Error::Truncated)?
        .fill(0);
    Ok(MIN_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trips_and_macs_print_as_nmap_does() {
        let e = EthernetRepr {
            dst: "9a:86:31:63:91:ac".parse().unwrap(),
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            ethertype: ETHERTYPE_IPV6,
        };
        let mut buf = [0u8; 20];
        assert_eq!(e.emit(&mut buf), Ok(14));
        let (p, rest) = EthernetRepr::parse(&buf).unwrap();
        assert_eq!(p, e);
        assert_eq!(rest.len(), 6);
        assert_eq!(e.dst.to_string(), "9A:86:31:63:91:AC");
        assert_eq!(&buf[12..14], &[0x86, 0xdd]);
    }

    #[test]
    fn lengths_and_tags_are_not_ethertypes() {
        let mut buf = [0u8; 14];
        buf[12..14].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(EthernetRepr::parse(&buf), Err(Error::Unsupported));
        buf[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        assert_eq!(EthernetRepr::parse(&buf), Err(Error::Unsupported));
        assert_eq!(EthernetRepr::parse(&buf[..13]), Err(Error::Truncated));
    }

    #[test]
    fn ipv6_multicast_macs_and_unicast() {
        let g: Ipv6Addr = "ff02::1:ff00:1234".parse().unwrap();
        assert_eq!(
            MacAddr::ipv6_multicast(g),
            MacAddr([0x33, 0x33, 0xff, 0x00, 0x12, 0x34])
        );
        assert!(!MacAddr::ipv6_multicast(g).is_unicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert!(MacAddr([2, 0, 0, 0, 0, 1]).is_unicast());
        for bad in [
            "",
            "00:11:22:33:44",
            "00:11:22:33:44:55:66",
            "0g:11:22:33:44:55",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn short_frames_are_padded() {
        let mut buf = [0xaau8; 64];
        assert_eq!(pad(&mut buf, 42), Ok(60));
        assert!(buf[42..60].iter().all(|&b| b == 0));
        assert_eq!(pad(&mut buf, 61), Ok(61));
        assert_eq!(pad(&mut buf[..50], 42), Err(Error::Truncated));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok((e, rest)) = EthernetRepr::parse(&bytes) {
                let mut buf = [0u8; 14];
                e.emit(&mut buf).unwrap();
                prop_assert_eq!(&buf[..], &bytes[..14]);
                prop_assert_eq!(rest.len(), bytes.len() - 14);
            }
        }
    }
}
