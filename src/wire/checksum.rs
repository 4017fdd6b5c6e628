//! The Internet checksum (RFC 1071) and the TCP/ICMPv6 pseudo-headers (RFC 9293 §3.1,
//! RFC 8200 §8.1).

use std::net::IpAddr;

/// One's-complement sum of `data` folded into 16 bits and inverted, with `initial` (an
/// unfolded partial sum, e.g. of a pseudo-header) added first.
pub fn internet_checksum(initial: u32, data: &[u8]) -> u16 {
    let _ = (initial, data);
    todo!()
}

/// Partial sum of the pseudo-header for an upper-layer protocol.
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: u32) -> u32 {
    let _ = (src, dst, protocol, len);
    todo!()
}
