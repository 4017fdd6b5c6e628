//! ICMP (RFC 792) and ICMPv6 (RFC 4443) error messages that quote one of our TCP segments.

use super::{Result, SeqNumber};
use std::net::IpAddr;

/// What kind of error, with nmap's reason word available through [`IcmpKind::reason`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IcmpKind {
    NetUnreachable,
    HostUnreachable,
    ProtocolUnreachable,
    PortUnreachable,
    /// Fragmentation needed / packet too big, with the next-hop MTU.
    PacketTooBig { mtu: u32 },
    NetProhibited,
    HostProhibited,
    /// Communication administratively prohibited (ICMP 3/13, ICMPv6 1/1 and 1/5, 1/6).
    AdminProhibited,
    TimeExceeded,
    /// Any other destination-unreachable code.
    OtherUnreachable { code: u8 },
}

impl IcmpKind {
    /// nmap's `--reason` word for this error.
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
            IcmpKind::TimeExceeded => "time-exceeded",
            IcmpKind::OtherUnreachable { .. } => "unreach",
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
        let _ = (bytes, v6, src, dst);
        todo!()
    }
}
