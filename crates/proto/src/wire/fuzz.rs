//! The no-panic contract of this module, tested: arbitrary bytes into every parse entry
//! point, byte-by-byte mutations of real packets (with checksums repaired so the parsers
//! get past them), and emit→parse round trips of arbitrary segments.

use super::arp::ArpRepr;
use super::checksum;
use super::ethernet::EthernetRepr;
use super::http::{HttpParse, parse_response};
use super::ip::{IpPacket, IpRepr, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use super::ndp::Advertisement;
use super::options::MAX_SACK_BLOCKS;
use super::quote::{IcmpBody, QuotedDatagram};
use super::testdata::*;
use super::{IcmpError, SeqNumber, TcpFlags, TcpOptions, TcpRepr};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

/// What `emit` makes of `options`: unknown kinds dropped, SACK blocks packed to the front
/// and cut to what fits.
fn as_emitted(options: &TcpOptions) -> TcpOptions {
    let mut out = TcpOptions {
        sack_blocks: [None; MAX_SACK_BLOCKS],
        unknown: Default::default(),
        unknown_count: 0,
        malformed: Default::default(),
        malformed_count: 0,
        ..*options
    };
    for (slot, block) in out
        .sack_blocks
        .iter_mut()
        .zip(options.sack().take(options.sack_blocks_emitted()))
    {
        *slot = Some(block);
    }
    out
}

/// Checks on a successful TCP parse: the payload is the tail of the input, and what we
/// parsed survives emit → parse (in its emitted form).
fn check_tcp(bytes: &[u8], seg: &TcpRepr<'_>, src: IpAddr, dst: IpAddr) {
    assert!(bytes.ends_with(seg.payload));
    let expected = TcpRepr {
        options: as_emitted(&seg.options),
        ..*seg
    };
    let mut buf = vec![0u8; expected.buffer_len()];
    match expected.emit(src, dst, &mut buf) {
        Ok(n) => {
            assert_eq!(n, buf.len());
            assert_eq!(TcpRepr::parse(&buf, src, dst), Ok(expected));
        }
        // Only a segment too long for a 16-bit length may be refused.
        Err(e) => assert!(expected.buffer_len() > 65_535, "{e}"),
    }
}

/// Every parser on `bytes`, the way `net` would chain them, plus each one on its own.
fn parse_everything(bytes: &[u8]) {
    if let Ok(p) = IpPacket::parse(bytes) {
        assert_eq!(p.payload.len(), p.ip.payload_len);
        assert!(p.payload.len() <= bytes.len());
        match p.ip.protocol {
            PROTO_TCP => {
                if let Ok(seg) = TcpRepr::parse(p.payload, p.ip.src, p.ip.dst) {
                    check_tcp(p.payload, &seg, p.ip.src, p.ip.dst);
                }
                let _ = TcpRepr::parse_unchecked(p.payload);
            }
            PROTO_ICMP | PROTO_ICMPV6 => {
                let v6 = p.ip.protocol == PROTO_ICMPV6;
                let _ = IcmpError::parse(p.payload, v6, p.ip.src, p.ip.dst);
                if let Ok(body) = IcmpBody::parse(p.payload, v6) {
                    check_quote(body.datagram);
                }
            }
            _ => {}
        }
    }
    for (src, dst) in [(A4, B4), (A6, B6), (A4, B6)] {
        if let Ok(seg) = TcpRepr::parse(bytes, src, dst) {
            check_tcp(bytes, &seg, src, dst);
        }
        let _ = IcmpError::parse(bytes, false, src, dst);
        let _ = IcmpError::parse(bytes, true, src, dst);
    }
    let _ = TcpRepr::parse_unchecked(bytes);
    let _ = TcpOptions::parse(bytes);
    for v6 in [false, true] {
        if let Ok(body) = IcmpBody::parse(bytes, v6) {
            assert!(body.datagram.len() + body.extensions.len() <= bytes.len());
            check_quote(body.datagram);
        }
    }
    check_quote(bytes);
    // The link layer a scan reads: Ethernet, ARP and Neighbor Advertisements.
    if let Ok((eth, rest)) = EthernetRepr::parse(bytes) {
        assert_eq!(rest.len() + 14, bytes.len());
        let _ = eth.dst.is_unicast();
    }
    if let Ok(a) = ArpRepr::parse(bytes) {
        let mut out = [0u8; 28];
        a.emit(&mut out).unwrap();
        assert_eq!(&out[..], &bytes[..28]);
    }
    if let Ok(Some(na)) = Advertisement::parse(bytes) {
        assert!(!na.target.is_multicast());
    }
    if let HttpParse::Complete(r) = parse_response(bytes) {
        assert!(r.head_len <= bytes.len());
    }
}

/// The lenient quote view of `bytes`, every accessor exercised.
fn check_quote(bytes: &[u8]) {
    let Ok(q) = QuotedDatagram::parse(bytes) else {
        return;
    };
    assert!(q.ip.header_len <= bytes.len());
    let _ = (
        q.ip.dscp(),
        q.ip.ecn(),
        q.ip.segment_len(),
        q.tcp_checksum_valid(),
    );
    if let Some(t) = q.tcp {
        assert_eq!(t.bytes.len(), bytes.len() - q.ip.header_len);
        let _ = (t.src_port(), t.dst_port(), t.seq(), t.ack(), t.flags());
        let _ = (
            t.window(),
            t.checksum(),
            t.urgent(),
            t.options(),
            t.payload(),
        );
        if let Some(o) = t.option_bytes() {
            assert!(o.len() <= 40);
        }
    }
}

/// Every single-byte change, truncation and small extension of `base`.
fn mutations(base: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let changed = (0..base.len()).flat_map(move |i| {
        let b = base[i];
        [
            0x00,
            0x01,
            0x02,
            0x05,
            0x0a,
            0x0f,
            0x28,
            0x40,
            0x7f,
            0x80,
            0xff,
            b ^ 0x01,
            b ^ 0x10,
            b ^ 0xf0,
            b.wrapping_add(1),
            b.wrapping_sub(1),
        ]
        .into_iter()
        .map(move |v| {
            let mut m = base.to_vec();
            m[i] = v;
            m
        })
    });
    let truncated = (0..base.len()).map(move |len| base[..len].to_vec());
    let extended = [1usize, 3, 8, 40].into_iter().map(move |n| {
        let mut m = base.to_vec();
        m.extend(std::iter::repeat_n(0xa5, n));
        m
    });
    changed.chain(truncated).chain(extended)
}

/// Put a correct IPv4 header checksum back, if the header length allows.
fn repair_ipv4_header(pkt: &mut [u8]) {
    let Some(&first) = pkt.first() else { return };
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || pkt.len() < ihl {
        return;
    }
    pkt[10..12].fill(0);
    let c = checksum::internet_checksum(0, &pkt[..ihl]);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Put a correct checksum at `at` for `protocol` over `msg` (`None` pseudo-header for
/// ICMPv4, which has none).
fn repair_upper(msg: &mut [u8], at: usize, pseudo: Option<(IpAddr, IpAddr, u8)>) {
    if msg.len() < at + 2 {
        return;
    }
    msg[at..at + 2].fill(0);
    let c = match pseudo {
        Some((src, dst, protocol)) => checksum::upper_layer_checksum(src, dst, protocol, msg),
        None => checksum::internet_checksum(0, msg),
    };
    msg[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Whole IP packets: the captures plus emitted ones with data, SACK and IPv6 extension
/// headers.
fn ip_corpus() -> Vec<Vec<u8>> {
    let mut corpus: Vec<Vec<u8>> = vec![
        SYN_1460_V4.to_vec(),
        LINUX_SYN_V4.to_vec(),
        LINUX_RST_ACK_V4.to_vec(),
        LINUX_SYN_V6.to_vec(),
        LINUX_RST_ACK_V6.to_vec(),
        ICMP_PORT_UNREACH_V4.to_vec(),
        ICMP_ADMIN_PROHIBITED_V4.to_vec(),
        ICMPV6_PORT_UNREACH.to_vec(),
        ICMPV6_ADMIN_PROHIBITED.to_vec(),
    ];
    let seg = TcpRepr {
        src_port: 40000,
        dst_port: 80,
        seq: SeqNumber(1),
        ack: SeqNumber(2),
        flags: TcpFlags::PSH | TcpFlags::ACK,
        window: 100,
        urgent: 0,
        options: TcpOptions::default()
            .with_timestamps(3, 4)
            .with_sack_block(SeqNumber(5), SeqNumber(6))
            .with_sack_block(SeqNumber(7), SeqNumber(8)),
        payload: b"HTTP/1.1 200 OK\r\n\r\n",
    };
    for (src, dst) in [(A4, B4), (A6, B6)] {
        let ip = IpRepr::new(src, dst, PROTO_TCP, 64, seg.buffer_len());
        let mut buf = vec![0u8; ip.header_len() + seg.buffer_len()];
        let n = ip.emit(&mut buf).unwrap();
        seg.emit(src, dst, &mut buf[n..]).unwrap();
        corpus.push(buf);
    }
    // IPv6 with hop-by-hop and fragment headers in front of the TCP segment.
    let mut tcp = vec![0u8; seg.buffer_len()];
    seg.emit(A6, B6, &mut tcp).unwrap();
    let mut after = vec![44, 0, 1, 4, 0, 0, 0, 0, PROTO_TCP, 0, 0, 0, 0, 0, 0, 9];
    after.extend_from_slice(&tcp);
    let ip = IpRepr::new(A6, B6, 0, 64, after.len());
    let mut buf = vec![0u8; 40];
    ip.emit(&mut buf).unwrap();
    buf.extend_from_slice(&after);
    corpus.push(buf);
    corpus
}

#[test]
fn mutated_ip_packets_never_panic() {
    for base in ip_corpus() {
        assert!(IpPacket::parse(&base).is_ok(), "corpus packets are valid");
        for mut m in mutations(&base) {
            parse_everything(&m);
            repair_ipv4_header(&mut m);
            parse_everything(&m);
        }
    }
}

#[test]
fn mutated_tcp_segments_never_panic() {
    for base in ip_corpus() {
        let p = IpPacket::parse(&base).unwrap();
        if p.ip.protocol != PROTO_TCP {
            continue;
        }
        let (src, dst) = (p.ip.src, p.ip.dst);
        assert!(TcpRepr::parse(p.payload, src, dst).is_ok());
        for mut m in mutations(p.payload) {
            parse_everything(&m);
            repair_upper(&mut m, 16, Some((src, dst, PROTO_TCP)));
            // With the checksum right, only the header itself can be at fault.
            if let Ok(seg) = TcpRepr::parse(&m, src, dst) {
                check_tcp(&m, &seg, src, dst);
            }
        }
    }
}

#[test]
fn mutated_icmp_errors_never_panic() {
    let mut parsed_some = 0;
    for base in ip_corpus() {
        let p = IpPacket::parse(&base).unwrap();
        let v6 = match p.ip.protocol {
            PROTO_ICMP => false,
            PROTO_ICMPV6 => true,
            _ => continue,
        };
        let (src, dst) = (p.ip.src, p.ip.dst);
        let pseudo = v6.then_some((src, dst, PROTO_ICMPV6));
        for mut m in mutations(p.payload) {
            parse_everything(&m);
            repair_upper(&mut m, 2, pseudo);
            if let Ok(Some(e)) = IcmpError::parse(&m, v6, src, dst) {
                assert_eq!(e.quoted_src.is_ipv6(), v6);
                parsed_some += 1;
            }
        }
    }
    // Most mutations leave a readable error: the repair really lets them through.
    assert!(
        parsed_some > 1000,
        "only {parsed_some} mutated ICMP errors parsed"
    );
}

#[test]
fn mutated_http_heads_never_panic() {
    let base =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nServer: x\r\nX-Fold: a\r\n b\r\n\r\n";
    for m in mutations(base) {
        parse_everything(&m);
    }
}

fn arb_addrs() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))),
        (any::<u128>(), any::<u128>())
            .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))),
    ]
}

fn arb_options() -> impl Strategy<Value = TcpOptions> {
    let block = proptest::option::of(
        (any::<u32>(), any::<u32>()).prop_map(|(l, r)| (SeqNumber(l), SeqNumber(r))),
    );
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u8>()),
        any::<bool>(),
        proptest::option::of((any::<u32>(), any::<u32>())),
        [block.clone(), block.clone(), block.clone(), block],
    )
        .prop_map(
            |(mss, wscale, sack_permitted, timestamps, sack_blocks)| TcpOptions {
                mss,
                wscale,
                sack_permitted,
                timestamps,
                sack_blocks,
                ..TcpOptions::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        parse_everything(&bytes);
    }

    /// Bytes that start like an IPv4/IPv6/TCP header get further than pure noise.
    #[test]
    fn header_like_bytes_never_panic(
        first in proptest::sample::select(vec![0x45u8, 0x46, 0x4f, 0x60, 0x50, 0xa0]),
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut bytes = vec![first];
        bytes.extend_from_slice(&rest);
        parse_everything(&bytes);
        repair_ipv4_header(&mut bytes);
        parse_everything(&bytes);
    }

    #[test]
    fn arbitrary_options_never_panic(opts in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = TcpOptions::parse(&opts);
        // The same bytes as the options of a real header.
        let mut seg = LINUX_SYN_V4[20..40].to_vec();
        let words = opts.len().div_ceil(4);
        seg[12] = ((5 + words) as u8) << 4;
        seg.extend_from_slice(&opts);
        seg.resize(20 + words * 4, 0);
        if let Ok(s) = TcpRepr::parse_unchecked(&seg) {
            prop_assert!(s.payload.is_empty());
        }
    }

    #[test]
    fn emit_then_parse_round_trips(
        (src, dst) in arb_addrs(),
        ports in any::<(u16, u16)>(),
        seq in any::<u32>(),
        ack in any::<u32>(),
        flags in 0u16..0x200,
        window in any::<u16>(),
        urgent in any::<u16>(),
        options in arb_options(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        ttl in any::<u8>(),
    ) {
        let seg = TcpRepr {
            src_port: ports.0,
            dst_port: ports.1,
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            flags: TcpFlags(flags),
            window,
            urgent,
            options,
            payload: &payload,
        };
        prop_assert!(seg.header_len() <= 60 && seg.header_len().is_multiple_of(4));
        let ip = IpRepr::new(src, dst, PROTO_TCP, ttl, seg.buffer_len());
        let mut buf = vec![0u8; ip.header_len() + seg.buffer_len()];
        let n = ip.emit(&mut buf).unwrap();
        prop_assert_eq!(seg.emit(src, dst, &mut buf[n..]), Ok(seg.buffer_len()));

        let p = IpPacket::parse(&buf).unwrap();
        prop_assert_eq!(p.ip, ip);
        let back = TcpRepr::parse(p.payload, p.ip.src, p.ip.dst).unwrap();
        let expected = TcpRepr { options: as_emitted(&options), ..seg };
        prop_assert_eq!(back, expected);
        // Nothing that fits is dropped.
        if options.sack().count() <= options.sack_blocks_emitted() {
            let sent: Vec<_> = options.sack().collect();
            prop_assert_eq!(back.options.sack().collect::<Vec<_>>(), sent);
        }
    }
}
