//! The filter, run by a classic BPF interpreter over hand-made packets and checked against
//! what the parser (wire/ip.rs) makes of the same bytes.

use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tcpshake_proto::wire::ip::{IpPacket, IpRepr};

/// Runs `prog` over `pkt` as the kernel would for a cooked packet of ethertype `proto` and
/// packet type `pkttype`. Returns the filter's verdict (bytes to keep; 0 drops). A load
/// past the packet's end returns 0, as in the kernel.
fn run(prog: &[Insn], proto: u32, pkttype: u32, pkt: &[u8]) -> u32 {
    run_seen(prog, proto, pkttype, (0, None), pkt)
}

/// [`run`] for a packet seen on interface `seen.0`, with a VLAN tag (TCI) still on it or not.
fn run_seen(prog: &[Insn], proto: u32, pkttype: u32, seen: (u32, Option<u32>), pkt: &[u8]) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    let load = |off: u32, size: usize| -> Option<u32> {
        match off {
            SKF_AD_PROTOCOL => return Some(proto),
            SKF_AD_PKTTYPE => return Some(pkttype),
            SKF_AD_IFINDEX => return Some(seen.0),
            SKF_AD_VLAN_TAG_PRESENT => return Some(u32::from(seen.1.is_some())),
            SKF_AD_VLAN_TAG => return Some(seen.1.unwrap_or(0)),
            _ => {}
        }
        let off = usize::try_from(off).ok()?;
        let b = pkt.get(off..off.checked_add(size)?)?;
        Some(b.iter().fold(0u32, |v, &byte| v << 8 | u32::from(byte)))
    };
    for _ in 0..10_000 {
        let i = prog[pc];
        pc += 1;
        let size = match i.code & 0x18 {
            W => 4,
            H => 2,
            _ => 1,
        };
        match i.code & 0x07 {
            LD => match i.code & 0xe0 {
                ABS => match load(i.k, size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                IND => match load(x.wrapping_add(i.k), size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                IMM => a = i.k,
                MEM => a = mem[i.k as usize],
                other => panic!("LD mode {other:#x}"),
            },
            LDX => match i.code & 0xe0 {
                IMM => x = i.k,
                MEM => x = mem[i.k as usize],
                MSH => match load(i.k, 1) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                other => panic!("LDX mode {other:#x}"),
            },
            ST => mem[i.k as usize] = a,
            ALU => {
                let operand = if i.code & X != 0 { x } else { i.k };
                match i.code & 0xf0 {
                    ADD => a = a.wrapping_add(operand),
                    AND => a &= operand,
                    LSH => a = a.wrapping_shl(operand),
                    other => panic!("ALU op {other:#x}"),
                }
            }
            JMP => {
                let taken = match i.code & 0xf0 {
                    JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    JEQ => a == i.k,
                    JGT => a > i.k,
                    JGE => a >= i.k,
                    JSET => a & i.k != 0,
                    other => panic!("JMP op {other:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            RET => return i.k,
            other => panic!("class {other:#x}"),
        }
    }
    panic!("program did not end");
}

const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const LO: u16 = 32768;
const HI: u16 = 60999;
const PACKET_HOST: u32 = 0;

fn filter() -> Vec<Insn> {
    range_filter(LO, HI).unwrap()
}

fn accepts(pkt: &[u8], outgoing: bool) -> bool {
    let proto = match pkt.first().map(|b| b >> 4) {
        Some(6) => ETH_P_IPV6,
        _ => ETH_P_IP,
    };
    let pkttype = if outgoing {
        PACKET_OUTGOING
    } else {
        PACKET_HOST
    };
    run(&filter(), proto, pkttype, pkt) != 0
}

/// TCP ports and a few more header bytes.
fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0; 16]);
    t
}

fn v4(protocol: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut ip = IpRepr::new(A4.into(), B4.into(), protocol, 64, payload.len());
    ip.dont_frag = false;
    let mut p = vec![0u8; 20];
    ip.emit(&mut p).unwrap();
    p[0] = 0x45 + (options.len() / 4) as u8;
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p
}

/// An IPv4 TCP packet from `src` to `dst` (DF, no options) carrying `tcp`.
fn v4_between(src: Ipv4Addr, dst: Ipv4Addr, tcp: &[u8]) -> Vec<u8> {
    let mut ip = IpRepr::new(src.into(), dst.into(), PROTO_TCP, 64, tcp.len());
    ip.dont_frag = true;
    let mut p = vec![0u8; 20];
    ip.emit(&mut p).unwrap();
    p.extend_from_slice(tcp);
    p
}

/// An IPv6 packet with extension headers `chain` (kind, body after the Next Header byte).
fn v6(chain: &[(u8, Vec<u8>)], upper: u8, payload: &[u8]) -> Vec<u8> {
    let mut after = Vec::new();
    for (i, (_, body)) in chain.iter().enumerate() {
        after.push(chain.get(i + 1).map_or(upper, |(k, _)| *k));
        after.extend_from_slice(body);
    }
    after.extend_from_slice(payload);
    let first = chain.first().map_or(upper, |(k, _)| *k);
    let ip = IpRepr::new(A6.into(), B6.into(), first, 64, after.len());
    let mut p = vec![0u8; 40];
    ip.emit(&mut p).unwrap();
    p.extend_from_slice(&after);
    p
}

fn hop() -> (u8, Vec<u8>) {
    (IPV6_HOP_BY_HOP, vec![0, 1, 4, 0, 0, 0, 0])
}
fn dest() -> (u8, Vec<u8>) {
    (
        IPV6_DEST_OPTS,
        vec![1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
}
fn routing(kind: u8) -> (u8, Vec<u8>) {
    // Type 0 or 4 (SRH), segments left 0, 24 bytes.
    let mut b = vec![2u8, kind, 0];
    b.resize(23, 0);
    (IPV6_ROUTING, b)
}
fn auth() -> (u8, Vec<u8>) {
    (IPV6_AUTH, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
}
fn frag(offset: u16, more: bool) -> (u8, Vec<u8>) {
    let word = (offset / 8) << 3 | u16::from(more);
    let w = word.to_be_bytes();
    (IPV6_FRAGMENT, vec![0, w[0], w[1], 0, 0, 0, 9])
}

#[test]
fn program_assembles_within_limits() {
    let p = filter();
    // BPF_MAXINSNS is 4096; every jump resolved forward.
    assert!(p.len() < 4096, "{}", p.len());
    assert_eq!(p.last().map(|i| (i.code, i.k)), Some((RET | K, 0)));
}

#[test]
fn v4_ports_follow_ihl() {
    assert!(accepts(&v4(PROTO_TCP, &[], &tcp(80, 40000)), false));
    assert!(accepts(&v4(PROTO_TCP, &[], &tcp(40000, 80)), true));
    assert!(accepts(&v4(PROTO_TCP, &[], &tcp(LO, 80)), false));
    assert!(accepts(&v4(PROTO_TCP, &[], &tcp(80, HI)), false));
    assert!(!accepts(&v4(PROTO_TCP, &[], &tcp(80, 443)), false));
    assert!(!accepts(&v4(PROTO_TCP, &[], &tcp(80, HI + 1)), false));
    assert!(!accepts(&v4(PROTO_TCP, &[], &tcp(LO - 1, 22)), false));
    // IHL 7: eight option bytes before TCP; the bytes at offset 20 would be out of range.
    let opts = [1u8, 1, 1, 1, 1, 1, 1, 0];
    assert!(accepts(&v4(PROTO_TCP, &opts, &tcp(80, 40000)), false));
    let mut lying = v4(PROTO_TCP, &[0x9c, 0x40, 0, 0x50], &tcp(80, 443));
    lying[0] = 0x46;
    assert!(!accepts(&lying, false), "ports are read after the options");
    assert!(accepts(&v4(PROTO_ICMP, &[], &[3, 3, 0, 0]), false));
    assert!(!accepts(&v4(17, &[], &tcp(80, 40000)), false), "UDP");
    assert!(!accepts(&v4(PROTO_TCP, &[], &[0x9c]), false), "cut short");
}

#[test]
fn v4_tcp_fragments_pass_when_arriving() {
    for word in [0x2000u16, 0x0001, 0x20b9, 0x1fff] {
        let mut p = v4(PROTO_TCP, &[], &tcp(80, 443));
        p[6..8].copy_from_slice(&word.to_be_bytes());
        assert!(accepts(&p, false), "{word:#06x}");
        assert!(!accepts(&p, true), "{word:#06x} leaving");
        let mut udp = p.clone();
        udp[9] = 17;
        assert!(!accepts(&udp, false), "UDP fragment {word:#06x}");
    }
    // DF alone is no fragment: ports decide.
    let mut p = v4(PROTO_TCP, &[], &tcp(80, 443));
    p[6] = 0x40;
    assert!(!accepts(&p, false));
}

#[test]
fn v6_plain() {
    assert!(accepts(&v6(&[], PROTO_TCP, &tcp(443, 50000)), false));
    assert!(!accepts(&v6(&[], PROTO_TCP, &tcp(443, 22)), false));
    assert!(accepts(&v6(&[], PROTO_ICMPV6, &[1, 4, 0, 0]), false));
    assert!(!accepts(&v6(&[], 17, &tcp(443, 50000)), false), "UDP");
    assert!(!accepts(&v6(&[], 59, &[]), false), "No Next Header");
}

#[test]
fn v6_each_extension_header_is_walked() {
    for (name, h) in [
        ("hop-by-hop", hop()),
        ("destination options", dest()),
        ("routing type 0", routing(0)),
        ("segment routing", routing(4)),
        ("authentication", auth()),
        ("atomic fragment", frag(0, false)),
    ] {
        let ours = v6(std::slice::from_ref(&h), PROTO_TCP, &tcp(443, 50000));
        assert!(accepts(&ours, false), "{name}");
        let other = v6(std::slice::from_ref(&h), PROTO_TCP, &tcp(443, 22));
        assert!(!accepts(&other, false), "{name}, other port");
        let icmp = v6(std::slice::from_ref(&h), PROTO_ICMPV6, &[1, 4, 0, 0]);
        assert!(accepts(&icmp, false), "{name}, ICMPv6");
    }
}

#[test]
fn v6_chains_of_any_length_reach_the_parser() {
    let chain = vec![hop(), dest(), routing(4), frag(0, false), auth(), dest()];
    assert!(accepts(&v6(&chain, PROTO_TCP, &tcp(443, 50000)), false));
    assert!(!accepts(&v6(&chain, PROTO_TCP, &tcp(443, 80)), false));
    // Exactly MAX_IPV6_EXTENSIONS: accepted, and the parser reads it.
    let long: Vec<_> = (0..MAX_IPV6_EXTENSIONS).map(|_| dest()).collect();
    let p = v6(&long, PROTO_TCP, &tcp(443, 50000));
    assert!(accepts(&p, false));
    assert_eq!(IpPacket::parse(&p).unwrap().ip.protocol, PROTO_TCP);
    // Longer: past the unroll, passed whatever its ports (rare), and the parser walks it
    // whole, as Linux does.
    for n in [MAX_IPV6_EXTENSIONS + 1, 20] {
        let longer: Vec<_> = (0..n).map(|_| dest()).collect();
        for port in [50000, 22] {
            let p = v6(&longer, PROTO_TCP, &tcp(443, port));
            assert!(accepts(&p, false), "{n} headers, port {port}");
            let ip = IpPacket::parse(&p).unwrap().ip;
            assert_eq!(ip.protocol, PROTO_TCP, "{n} headers");
        }
    }
    // An unknown header after the unroll (UDP) ends it as anywhere: dropped.
    let tail: Vec<_> = (0..MAX_IPV6_EXTENSIONS).map(|_| dest()).collect();
    assert!(!accepts(&v6(&tail, 17, &tcp(443, 50000)), false));
}

#[test]
fn v6_truncated_chains_are_dropped() {
    let p = v6(&[hop(), routing(0)], PROTO_TCP, &tcp(443, 50000));
    for cut in [41, 47, 48, 49, 60, 73] {
        assert!(!accepts(&p[..cut], false), "cut at {cut}");
    }
    // Cut inside the ports: dropped too (the kernel's load fails).
    let p = v6(&[hop()], PROTO_TCP, &tcp(443, 50000));
    assert!(!accepts(&p[..48 + 3], false));
}

#[test]
fn v6_fragments_pass_when_arriving_and_tcp() {
    for (offset, more) in [(0, true), (8, true), (1232, false)] {
        let p = v6(&[frag(offset, more)], PROTO_TCP, &[0xde; 24]);
        assert!(accepts(&p, false), "offset {offset} more {more}");
        assert!(!accepts(&p, true), "leaving");
        let p = v6(&[hop(), frag(offset, more)], PROTO_TCP, &[0xde; 24]);
        assert!(accepts(&p, false), "after hop-by-hop");
        let p = v6(&[frag(offset, more)], IPV6_DEST_OPTS, &[0xde; 24]);
        assert!(
            accepts(&p, false),
            "destination options heading the fragmentable part"
        );
        let p = v6(&[frag(offset, more)], 17, &[0xde; 24]);
        assert!(!accepts(&p, false), "UDP fragment");
    }
}

/// A random IPv6 packet: a chain of known extension headers (some possibly cut), an upper
/// layer, ports.
fn arb_v6() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let header = prop_oneof![
        Just(hop()),
        Just(dest()),
        Just(routing(0)),
        Just(routing(4)),
        Just(auth()),
        Just(frag(0, false)),
        (0u16..200, any::<bool>()).prop_map(|(o, m)| frag(o * 8, m)),
    ];
    (
        prop::collection::vec(header, 0..11),
        prop_oneof![Just(PROTO_TCP), Just(PROTO_ICMPV6), Just(17u8), Just(59u8)],
        any::<u16>(),
        prop_oneof![Just(50_000u16), any::<u16>()],
        any::<bool>(),
        any::<u16>(),
    )
        .prop_map(|(chain, upper, sport, dport, outgoing, cut)| {
            let p = v6(&chain, upper, &tcp(sport, dport));
            let keep = if cut % 4 == 0 {
                usize::from(cut) % p.len()
            } else {
                p.len()
            };
            (p[..keep].to_vec(), outgoing)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The filter never drops what the parser would hand a probe of ours: a TCP segment
    /// with one of our ports, any ICMPv6 message, or an arriving fragment of either.
    #[test]
    fn filter_keeps_everything_the_parser_delivers((pkt, outgoing) in arb_v6()) {
        let verdict = accepts(&pkt, outgoing);
        if let Ok(p) = IpPacket::parse(&pkt) {
            let in_range = |port: u16| (LO..=HI).contains(&port);
            let ports = p.payload.get(..4).map(|b| {
                (u16::from_be_bytes([b[0], b[1]]), u16::from_be_bytes([b[2], b[3]]))
            });
            let wanted = match (p.fragment, p.ip.protocol) {
                // Fragments go to reassembly, arriving ones only (we send none).
                (Some(_), PROTO_TCP | PROTO_ICMPV6 | IPV6_DEST_OPTS) => !outgoing,
                (None, PROTO_TCP) => ports.is_some_and(|(s, d)| in_range(s) || in_range(d)),
                (None, PROTO_ICMPV6) => true,
                _ => false,
            };
            if wanted {
                prop_assert!(verdict, "dropped a packet the parser delivers: {pkt:02x?}");
            }
        }
    }
}

/// Bound to every interface: what leaves is ours only on the route's interface (one copy
/// of each, not a bridge port's too); what arrives, only as Linux's IP layer would take it
/// (not another host's frame, not one still tagged for a VLAN) — on the route's
/// interface, or on another with an address (asymmetric routing) when it is for one of
/// ours (not traffic the host forwards). Anything else is not ours to see again.
#[test]
fn every_interface_takes_replies_on_others_once() {
    const OIF: u32 = 3;
    let ours4 = IpAddr::V4(B4);
    let ours6 = IpAddr::V6(B6);
    let prog = range_filter_on(LO, HI, OIF, &[5, 7], &[ours4, ours6]).unwrap();
    let reply = v4(PROTO_TCP, &[], &tcp(443, 50000));
    let leaving = v4(PROTO_TCP, &[], &tcp(50000, 443));
    let seen = |pkt: &[u8], pkttype: u32, ifindex: u32, vlan: Option<u32>| {
        let proto = if pkt[0] >> 4 == 6 {
            ETH_P_IPV6
        } else {
            ETH_P_IP
        };
        run_seen(&prog, proto, pkttype, (ifindex, vlan), pkt) != 0
    };
    assert!(seen(&leaving, PACKET_OUTGOING, OIF, None));
    assert!(
        !seen(&leaving, PACKET_OUTGOING, 5, None),
        "leaving elsewhere"
    );
    assert!(seen(&reply, PACKET_HOST, OIF, None));
    assert!(
        seen(&reply, PACKET_HOST, 7, None),
        "arriving on another link"
    );
    assert!(
        !seen(&reply, PACKET_HOST, 9, None),
        "an interface not listed"
    );
    assert!(
        !seen(&reply, PACKET_OTHERHOST, 5, None),
        "another host's frame"
    );
    assert!(
        !seen(&reply, PACKET_OTHERHOST, OIF, None),
        "… on the route's link too"
    );
    assert!(
        !seen(&reply, PACKET_HOST, OIF, Some(100)),
        "tagged: its VLAN device hands it up"
    );
    assert!(
        seen(&reply, PACKET_HOST, OIF, Some(0x2000)),
        "a priority tag (VLAN 0)"
    );
    // On another link, only for our addresses: not what the host forwards.
    let forwarded = v4_between(B4, Ipv4Addr::new(198, 18, 9, 9), &tcp(443, 50000));
    assert!(!seen(&forwarded, PACKET_HOST, 7, None), "forwarded");
    assert!(
        seen(&forwarded, PACKET_HOST, OIF, None),
        "the route's link: as before"
    );
    let reply6 = v6(&[], PROTO_TCP, &tcp(443, 50000));
    assert!(seen(&reply6, PACKET_HOST, 5, None), "IPv6, for our address");
    let other6 = {
        let mut p = reply6.clone();
        p[39] ^= 1; // another destination
        p
    };
    assert!(!seen(&other6, PACKET_HOST, 5, None), "IPv6, forwarded");
    // The port filter still applies after it.
    assert!(!seen(
        &v4(PROTO_TCP, &[], &tcp(443, 22)),
        PACKET_HOST,
        7,
        None
    ));
    // The most interfaces and addresses still assemble (every jump within reach).
    let many: Vec<u32> = (10..10 + crate::route::MAX_OTHER_INTERFACES as u32).collect();
    let addrs: Vec<IpAddr> = (0..crate::route::MAX_OWN_ADDRESSES as u16)
        .map(|i| IpAddr::V6(Ipv6Addr::new(0xfd00, i, 0, 0, 0, 0, 0, 1)))
        .collect();
    assert!(range_filter_on(LO, HI, OIF, &many, &addrs).is_ok());
}

#[test]
fn addresses_do_not_matter() {
    // One tap serves every peer: a packet from any address with our port passes.
    let p = v4_between(Ipv4Addr::new(198, 19, 7, 7), B4, &tcp(80, 40000));
    assert!(accepts(&p, false));
}
