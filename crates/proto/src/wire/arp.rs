//! ARP for IPv4 over Ethernet (RFC 826): the requests a scan sends to learn which
//! on-link addresses are there and at which MAC, and the replies it reads.
//!
//! ```text
//!  0      2      4    5    6      8           14      18          24      28
//!  │ htype│ ptype│hlen│plen│  op  │ sender MAC│ sndr IP│ target MAC│ tgt IP │
//!  │  1   │0x0800│ 6  │ 4  │ 1, 2 │           │        │           │        │
//! ```
//!
//! Only Ethernet/IPv4 ARP parses; anything else is [`Error::Unsupported`].

use super::ethernet::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, EthernetRepr, MacAddr};
use super::{Error, Result};
use std::net::Ipv4Addr;

pub const ARP_LEN: usize = 28;
const HTYPE_ETHERNET: u16 = 1;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    pub op: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// "Who has `target`? Tell `ip` (at `mac`)": the target MAC is zero in a request
    /// (RFC 826 "it does not matter"; Linux's own requests leave it zero too).
    pub fn request(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            op: OP_REQUEST,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: MacAddr::ZERO,
            target_ip: target,
        }
    }

    /// The ARP packet at the start of `bytes` (an Ethernet payload may carry padding
    /// after it).
    pub fn parse(bytes: &[u8]) -> Result<ArpRepr> {
        let b = bytes.get(..ARP_LEN).ok_or(Error::Truncated)?;
        let htype = u16::from_be_bytes([b[0], b[1]]);
        let ptype = u16::from_be_bytes([b[2], b[3]]);
        if htype != HTYPE_ETHERNET || ptype != ETHERTYPE_IPV4 || b[4] != 6 || b[5] != 4 {
            return Err(Error::Unsupported);
        }
        let ip = |o: usize| Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
        Ok(ArpRepr {
            op: u16::from_be_bytes([b[6], b[7]]),
            sender_mac: MacAddr::from_slice(&b[8..14]).ok_or(Error::Truncated)?,
            sender_ip: ip(14),
            target_mac: MacAddr::from_slice(&b[18..24]).ok_or(Error::Truncated)?,
            target_ip: ip(24),
        })
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let b = buf.get_mut(..ARP_LEN).ok_or(Error::Truncated)?;
        b[0..2].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac.0);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac.0);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        Ok(ARP_LEN)
    }

    /// The whole broadcast request frame (padded to Ethernet's minimum) into `buf`.
    pub fn emit_request_frame(
        mac: MacAddr,
        ip: Ipv4Addr,
        target: Ipv4Addr,
        buf: &mut [u8],
    ) -> Result<usize> {
        let eth = EthernetRepr {
            dst: MacAddr::BROADCAST,
            src: mac,
            ethertype: ETHERTYPE_ARP,
        };
        let n = eth.emit(buf)?;
        let m =
            ArpRepr::request(mac, ip, target).emit(buf.get_mut(n..).ok_or(Error::Truncated)?)?;
        ethernet::pad(buf, n + m)
    }

    /// What this packet says about its sender's link address, if it is an answer a
    /// resolver may believe: a reply (RFC 826's "reply" opcode), from a unicast MAC that
    /// matches the frame's source (a proxy could answer for another address, but not with
    /// another station's frame), addressed to `us`.
    pub fn as_reply_to(&self, frame_src: MacAddr, us: Ipv4Addr) -> Option<(Ipv4Addr, MacAddr)> {
        (self.op == OP_REPLY
            && self.sender_mac.is_unicast()
            && self.sender_mac == frame_src
            && self.target_ip == us)
            .then_some((self.sender_ip, self.sender_mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reply Linux 6.18 sent in the lab (tcpdump -xx on the asking side's veth): "ARP,
    /// Reply 198.18.77.2 is-at 9a:86:31:63:91:ac" to 198.18.77.1 at be:40:91:51:31:16;
    /// 42 bytes, unpadded (veth pads nothing).
    const LINUX_REPLY: [u8; 42] = [
        0xbe, 0x40, 0x91, 0x51, 0x31, 0x16, 0x9a, 0x86, 0x31, 0x63, 0x91, 0xac, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x9a, 0x86, 0x31, 0x63, 0x91, 0xac, 0xc6, 0x12,
        0x4d, 0x02, 0xbe, 0x40, 0x91, 0x51, 0x31, 0x16, 0xc6, 0x12, 0x4d, 0x01,
    ];
    /// Linux's own request before it (kernel ARP): target MAC zero.
    const LINUX_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbe, 0x40, 0x91, 0x51, 0x31, 0x16, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0xbe, 0x40, 0x91, 0x51, 0x31, 0x16, 0xc6, 0x12,
        0x4d, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x4d, 0x02,
    ];

    #[test]
    fn a_linux_reply_parses_and_is_believed() {
        let (eth, rest) = EthernetRepr::parse(&LINUX_REPLY).unwrap();
        assert_eq!(eth.ethertype, ETHERTYPE_ARP);
        let a = ArpRepr::parse(rest).unwrap();
        assert_eq!(a.op, OP_REPLY);
        let us = Ipv4Addr::new(198, 18, 77, 1);
        assert_eq!(
            a.as_reply_to(eth.src, us),
            Some((
                Ipv4Addr::new(198, 18, 77, 2),
                "9a:86:31:63:91:ac".parse().unwrap()
            ))
        );
        // Not to us, or from another station's frame, or a request: not an answer.
        assert_eq!(a.as_reply_to(eth.src, Ipv4Addr::new(198, 18, 77, 9)), None);
        assert_eq!(a.as_reply_to(MacAddr([2, 0, 0, 0, 0, 9]), us), None);
        assert_eq!(a.target_mac, "be:40:91:51:31:16".parse().unwrap());
        let req = ArpRepr {
            op: OP_REQUEST,
            ..a
        };
        assert_eq!(req.as_reply_to(eth.src, us), None);
        let bcast = ArpRepr {
            sender_mac: MacAddr::BROADCAST,
            ..a
        };
        assert_eq!(bcast.as_reply_to(MacAddr::BROADCAST, us), None);
    }

    #[test]
    fn request_frame_is_linuxs_request_padded() {
        let mac: MacAddr = "be:40:91:51:31:16".parse().unwrap();
        let mut buf = [0xeeu8; 64];
        let n = ArpRepr::emit_request_frame(
            mac,
            Ipv4Addr::new(198, 18, 77, 1),
            Ipv4Addr::new(198, 18, 77, 2),
            &mut buf,
        )
        .unwrap();
        assert_eq!(n, 60);
        let (eth, rest) = EthernetRepr::parse(&buf[..n]).unwrap();
        assert_eq!((eth.dst, eth.src), (MacAddr::BROADCAST, mac));
        let a = ArpRepr::parse(rest).unwrap();
        assert_eq!(
            a,
            ArpRepr::request(
                mac,
                Ipv4Addr::new(198, 18, 77, 1),
                Ipv4Addr::new(198, 18, 77, 2)
            )
        );
        assert_eq!(&buf[..42], &LINUX_REQUEST[..]);
        assert!(buf[42..60].iter().all(|&b| b == 0));
        assert!(
            ArpRepr::emit_request_frame(mac, a.sender_ip, a.target_ip, &mut buf[..59]).is_err()
        );
    }

    #[test]
    fn other_hardware_or_protocols_are_unsupported() {
        let mut b = LINUX_REPLY[14..42].to_vec();
        b[1] = 6; // IEEE 802 networks
        assert_eq!(ArpRepr::parse(&b), Err(Error::Unsupported));
        let mut b = LINUX_REPLY[14..42].to_vec();
        b[5] = 16;
        assert_eq!(ArpRepr::parse(&b), Err(Error::Unsupported));
        assert_eq!(ArpRepr::parse(&LINUX_REPLY[14..41]), Err(Error::Truncated));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(a) = ArpRepr::parse(&bytes) {
                let mut out = [0u8; ARP_LEN];
                a.emit(&mut out).unwrap();
                prop_assert_eq!(&out[..], &bytes[..ARP_LEN]);
            }
        }

        #[test]
        fn emit_parse_round_trips(op in any::<u16>(), sm in any::<[u8; 6]>(), si in any::<u32>(),
                                  tm in any::<[u8; 6]>(), ti in any::<u32>()) {
            let a = ArpRepr { op, sender_mac: MacAddr(sm), sender_ip: si.into(),
                              target_mac: MacAddr(tm), target_ip: ti.into() };
            let mut out = [0u8; ARP_LEN];
            a.emit(&mut out).unwrap();
            prop_assert_eq!(ArpRepr::parse(&out), Ok(a));
        }
    }
}
