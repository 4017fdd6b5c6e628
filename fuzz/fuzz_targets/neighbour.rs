//! The scan's link layer on arbitrary frames: Ethernet, ARP, Neighbor Advertisements and
//! the resolver's reply reader (`neighbours::parse_reply`), which must never panic and
//! only believe answers to our own addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpshake_fuzz::*;
use tcpshake_proto::probe::scan::neighbours::{LinkRoutes, Prefix, Via, parse_reply};
use tcpshake_proto::wire::arp::ArpRepr;
use tcpshake_proto::wire::ethernet::{EthernetRepr, MacAddr};
use tcpshake_proto::wire::ndp::Advertisement;

fuzz_target!(|data: &[u8]| {
    let mac = MacAddr([2, 0, 0, 0, 0, 1]);
    let link = |us| {
        LinkRoutes::new(us, mac, vec![], vec![(Prefix::new(us, 24).unwrap(), Via::OnLink)])
    };
    let links = [Some(link(CLIENT4)), Some(link(CLIENT6))];
    if let Some((ip, m)) = parse_reply(data, &links) {
        assert!(m.is_unicast());
        assert_eq!(ip.is_ipv6(), data.get(12..14) == Some(&[0x86, 0xdd][..]));
    }
    if let Ok((_, rest)) = EthernetRepr::parse(data) {
        let _ = ArpRepr::parse(rest);
        let _ = Advertisement::parse(rest);
    }
});
