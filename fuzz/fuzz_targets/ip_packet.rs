//! IpPacket::parse on arbitrary bytes, and whatever it finds inside (TCP with and without
//! the checksum, ICMP/ICMPv6 errors): no panic, and a parsed payload lies within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpshake_proto::wire::ip::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use tcpshake_proto::wire::{IcmpError, IpPacket, TcpRepr};

fuzz_target!(|data: &[u8]| {
    let Ok(pkt) = IpPacket::parse(data) else {
        return;
    };
    assert!(pkt.payload.len() <= data.len());
    match pkt.ip.protocol {
        PROTO_TCP => {
            let _ = TcpRepr::parse(pkt.payload, pkt.ip.src, pkt.ip.dst);
            if let Ok(seg) = TcpRepr::parse_unchecked(pkt.payload) {
                assert!(seg.payload.len() <= pkt.payload.len());
            }
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            let v6 = pkt.ip.protocol == PROTO_ICMPV6;
            let _ = IcmpError::parse(pkt.payload, v6, pkt.ip.src, pkt.ip.dst);
        }
        _ => {}
    }
});
