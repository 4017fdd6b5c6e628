//! Reply matching and classification: built packets in, verdicts out.

use super::*;
use crate::probe::record::Leg;
use crate::wire::checksum;
use crate::wire::ip::PROTO_ICMP;
use proptest::prelude::*;

const COOKIE: Cookie = Cookie { k0: 1, k1: 2 };

fn v4(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn locals() -> Locals {
    Locals {
        v4: Some(v4("198.18.0.1:40000")),
        v6: Some("[fd00::1]:40001".parse().unwrap()),
    }
}

/// A segment from `src` to `dst` as a whole IP packet (IPv6 header added by hand).
fn packet(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, flags: TcpFlags) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags,
        window: 100,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    };
    let ip = IpRepr::new(src.ip(), dst.ip(), PROTO_TCP, 57, tcp.buffer_len());
    let mut buf = vec![0u8; ip.buffer_len()];
    let n = ip.emit(&mut buf).unwrap();
    tcp.emit(src.ip(), dst.ip(), &mut buf[n..]).unwrap();
    buf
}

#[test]
fn syn_ack_to_our_cookie_is_open_and_asks_for_a_rst() {
    let l = locals().v4.unwrap();
    let r = v4("198.18.0.9:22");
    let isn = COOKIE.seq(l, r, 1);
    let pkt = packet(
        r,
        l,
        777,
        isn.0.wrapping_add(1),
        TcpFlags::SYN | TcpFlags::ACK,
    );
    let Seen::Reply(rep) = inspect(&pkt, false, &locals(), &COOKIE, 2) else {
        panic!("not a reply")
    };
    assert_eq!(rep.state, PortState::Open);
    assert_eq!(rep.reason, "syn-ack");
    assert_eq!(rep.attempt, 1);
    assert_eq!(rep.ttl, 57);
    assert_eq!(rep.syn_seq, isn);
    assert_eq!(rep.rst_seq, Some(isn.add(1)));
    // The RST we build from it is a valid segment with that sequence number.
    let mut buf = [0u8; 80];
    let n = build_rst(l, r, rep.rst_seq.unwrap(), 1, &mut buf).unwrap();
    let ip = IpPacket::parse(&buf[..n]).unwrap();
    let seg = TcpRepr::parse(ip.payload, ip.ip.src, ip.ip.dst).unwrap();
    assert_eq!(seg.flags, TcpFlags::RST);
    assert_eq!(seg.seq, isn.add(1));
}

#[test]
fn a_bare_ack_of_our_cookie_is_a_peer_in_syn_received_so_open() {
    let l = locals().v4.unwrap();
    let r = v4("198.18.0.9:22");
    let isn = COOKIE.seq(l, r, 0);
    let pkt = packet(r, l, 778, isn.0.wrapping_add(1), TcpFlags::ACK);
    let Seen::Reply(rep) = inspect(&pkt, false, &locals(), &COOKIE, 1) else {
        panic!("not a reply")
    };
    assert_eq!((rep.state, rep.attempt), (PortState::Open, 0));
    assert_eq!(rep.rst_seq, Some(isn.add(1)));
    let fin = packet(
        r,
        l,
        778,
        isn.0.wrapping_add(1),
        TcpFlags::ACK | TcpFlags::FIN,
    );
    assert_eq!(inspect(&fin, false, &locals(), &COOKIE, 1), Seen::Unmatched);
}

#[test]
fn rst_ack_is_closed_but_a_wrong_ack_or_a_bare_rst_is_unmatched() {
    let l = locals().v4.unwrap();
    let r = v4("198.18.0.9:23");
    let isn = COOKIE.seq(l, r, 0);
    let rst = packet(
        r,
        l,
        0,
        isn.0.wrapping_add(1),
        TcpFlags::RST | TcpFlags::ACK,
    );
    let Seen::Reply(rep) = inspect(&rst, false, &locals(), &COOKIE, 0) else {
        panic!()
    };
    assert_eq!((rep.state, rep.reason), (PortState::Closed, Reason::Reset));
    let wrong = packet(
        r,
        l,
        0,
        isn.0.wrapping_add(2),
        TcpFlags::RST | TcpFlags::ACK,
    );
    assert_eq!(
        inspect(&wrong, false, &locals(), &COOKIE, 0),
        Seen::Unmatched
    );
    let bare = packet(r, l, isn.0.wrapping_add(1), 0, TcpFlags::RST);
    assert_eq!(
        inspect(&bare, false, &locals(), &COOKIE, 0),
        Seen::Unmatched
    );
    // A later attempt's cookie is not accepted when that attempt was never sent.
    let isn2 = COOKIE.seq(l, r, 2);
    let late = packet(
        r,
        l,
        0,
        isn2.0.wrapping_add(1),
        TcpFlags::RST | TcpFlags::ACK,
    );
    assert_eq!(
        inspect(&late, false, &locals(), &COOKIE, 1),
        Seen::Unmatched
    );
    // Another key, another cookie.
    let other = Cookie::new(3, 4);
    assert_eq!(inspect(&rst, false, &locals(), &other, 0), Seen::Unmatched);
}

#[test]
fn a_corrupted_reply_is_unmatched_unless_the_checksum_is_offloaded() {
    let l = locals().v4.unwrap();
    let r = v4("198.18.0.9:80");
    let isn = COOKIE.seq(l, r, 0);
    let mut pkt = packet(
        r,
        l,
        5,
        isn.0.wrapping_add(1),
        TcpFlags::SYN | TcpFlags::ACK,
    );
    pkt[34] ^= 0x40; // the window field: the cookie still matches, the checksum does not
    assert_eq!(inspect(&pkt, false, &locals(), &COOKIE, 0), Seen::Unmatched);
    assert!(matches!(
        inspect(&pkt, true, &locals(), &COOKIE, 0),
        Seen::Reply(_)
    ));
}

#[test]
fn our_own_syn_is_recognised_on_its_way_out() {
    let l = locals().v4.unwrap();
    let r = v4("198.18.0.9:443");
    let seq = COOKIE.seq(l, r, 0);
    let mut buf = [0u8; 80];
    let n = build_syn(l, r, seq, 9, &mut buf).unwrap();
    assert_eq!(
        inspect(&buf[..n], false, &locals(), &COOKIE, 0),
        Seen::OurSyn { remote: r, seq }
    );
    let ip = IpPacket::parse(&buf[..n]).unwrap();
    let seg = TcpRepr::parse(ip.payload, ip.ip.src, ip.ip.dst).unwrap();
    assert_eq!(seg.options.mss, Some(SYN_MSS));
    assert_eq!(seg.window, SYN_WINDOW);
    assert_eq!(ip.ip.ttl, SYN_TTL);
}

/// An ICMP error from `router` quoting our SYN to `r` (IPv4).
fn icmp_quoting(
    router: &str,
    icmp_type: u8,
    code: u8,
    l: SocketAddr,
    r: SocketAddr,
    seq: SeqNumber,
) -> Vec<u8> {
    let mut syn = [0u8; 80];
    let n = build_syn(l, r, seq, 1, &mut syn).unwrap();
    icmp_quoting_bytes(router, icmp_type, code, &syn[..n], n)
}

#[test]
fn icmp_errors_quoting_our_cookie_are_filtered_with_nmaps_reasons() {
    let l = locals().v4.unwrap();
    let r = v4("198.18.0.9:25");
    let seq = COOKIE.seq(l, r, 0);
    for (code, reason) in [
        (3, "port-unreach"),
        (13, "admin-prohibited"),
        (1, "host-unreach"),
    ] {
        let pkt = icmp_quoting("198.18.0.254", 3, code, l, r, seq);
        let Seen::Reply(rep) = inspect(&pkt, false, &locals(), &COOKIE, 0) else {
            panic!("code {code}")
        };
        assert_eq!(
            (rep.state, rep.reason.as_str(), rep.ttl),
            (PortState::Filtered, reason, 250)
        );
        assert_eq!(rep.remote, r);
        // Who said so: the router, not the target (nmap's reason_ip).
        assert_eq!(rep.from, "198.18.0.254".parse::<IpAddr>().unwrap());
    }
    let te = icmp_quoting("198.18.0.254", 11, 0, l, r, seq);
    assert!(matches!(
        inspect(&te, false, &locals(), &COOKIE, 0),
        Seen::Reply(Reply {
            reason: Reason::TimeExceeded,
            ..
        })
    ));
    // RFC 5927 §4.1, the connection's rule: only the SYN's own sequence number counts;
    // the one just past it (which Linux's inclusive check would take) does not: it is
    // our RST's (an error about it decides nothing, see the next test).
    for wrong in [seq.add(7), seq.sub(1)] {
        let forged = icmp_quoting("198.18.0.254", 3, 3, l, r, wrong);
        assert_eq!(
            inspect(&forged, false, &locals(), &COOKIE, 0),
            Seen::Unmatched,
            "{wrong}"
        );
    }
    let past = icmp_quoting("198.18.0.254", 3, 3, l, r, seq.add(1));
    assert!(!matches!(
        inspect(&past, false, &locals(), &COOKIE, 0),
        Seen::Reply(_)
    ));
    // Frag-needed about our SYN is a hint about size, never a verdict on the port.
    let big = icmp_quoting("198.18.0.254", 3, 4, l, r, seq);
    assert_eq!(inspect(&big, false, &locals(), &COOKIE, 0), Seen::Other);
    // Quoting someone else's flow is none of our business.
    let other = icmp_quoting("198.18.0.254", 3, 3, v4("198.18.0.1:5555"), r, seq);
    assert_eq!(inspect(&other, false, &locals(), &COOKIE, 0), Seen::Other);
}

/// An ICMP error from `router` quoting the first `keep` bytes of `quoted` (an IPv4 packet).
fn icmp_quoting_bytes(
    router: &str,
    icmp_type: u8,
    code: u8,
    quoted: &[u8],
    keep: usize,
) -> Vec<u8> {
    let mut icmp = vec![icmp_type, code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[..keep.min(quoted.len())]);
    let sum = checksum::internet_checksum(0, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let router: IpAddr = router.parse().unwrap();
    let dst = match quoted[12..16] {
        [a, b, c, d] => IpAddr::from([a, b, c, d]),
        _ => unreachable!(),
    };
    let ip = IpRepr::new(router, dst, PROTO_ICMP, 250, icmp.len());
    let mut buf = vec![0u8; ip.buffer_len()];
    let h = ip.emit(&mut buf).unwrap();
    buf[h..].copy_from_slice(&icmp);
    buf
}

#[test]
fn an_icmp_error_about_our_own_rst_is_not_an_unmatched_reply() {
    // A firewall that rejects every segment to a port (`nft ... reject with icmp
    // admin-prohibited`) rejects the RST a retry sends first too, and the RST that answers
    // a SYN-ACK: their sequence number is the cookie + 1. Such an error is about a packet
    // of ours, not a stale or forged reply: not counted as unmatched, and no verdict.
    let l = locals().v4.unwrap();
    let r = v4("198.18.0.9:3000");
    for attempt in [0u8, 3] {
        let mut rst = [0u8; 80];
        let n = build_rst(l, r, COOKIE.seq(l, r, attempt).add(1), 9, &mut rst).unwrap();
        // The whole RST, and RFC 792's minimum: its IP header and 8 bytes of TCP.
        for keep in [n, 28] {
            let pkt = icmp_quoting_bytes("198.18.0.254", 3, 13, &rst[..n], keep);
            assert_eq!(
                inspect(&pkt, false, &locals(), &COOKIE, 3),
                Seen::Other,
                "attempt {attempt}, {keep} bytes quoted"
            );
        }
    }
    // A sequence number near the cookie but not ours is still unmatched.
    let mut rst = [0u8; 80];
    let n = build_rst(l, r, COOKIE.seq(l, r, 0).add(2), 9, &mut rst).unwrap();
    let pkt = icmp_quoting_bytes("198.18.0.254", 3, 13, &rst[..n], n);
    assert_eq!(inspect(&pkt, false, &locals(), &COOKIE, 3), Seen::Unmatched);
}

#[test]
fn ipv6_syn_ack_matches_the_v6_endpoint() {
    let l = locals().v6.unwrap();
    let r: SocketAddr = "[fd00::9]:8080".parse().unwrap();
    let isn = COOKIE.seq(l, r, 0);
    let pkt = packet(
        r,
        l,
        1,
        isn.0.wrapping_add(1),
        TcpFlags::SYN | TcpFlags::ACK,
    );
    assert!(matches!(
        inspect(&pkt, false, &locals(), &COOKIE, 0),
        Seen::Reply(Reply {
            state: PortState::Open,
            ..
        })
    ));
    // IPv6 SYNs are the bare TCP segment (the kernel writes the IPv6 header).
    let mut buf = [0u8; 80];
    let n = build_syn(l, r, isn, 0, &mut buf).unwrap();
    assert_eq!(n, 24);
}

#[test]
fn cookies_depend_on_every_part_of_the_tuple() {
    let l = v4("198.18.0.1:40000");
    let r = v4("198.18.0.9:22");
    let base = COOKIE.seq(l, r, 0);
    assert_ne!(base, COOKIE.seq(v4("198.18.0.2:40000"), r, 0));
    assert_ne!(base, COOKIE.seq(v4("198.18.0.1:40001"), r, 0));
    assert_ne!(base, COOKIE.seq(l, v4("198.18.0.9:23"), 0));
    assert_ne!(base, COOKIE.seq(l, v4("198.18.0.10:22"), 0));
    assert_ne!(base, COOKIE.seq(l, r, 1));
    assert_eq!(COOKIE.attempt_of(l, r, base, 3), Some(0));
}

#[test]
fn totals_count_silence_as_filtered() {
    let t = ScanTotals {
        scanned: 100,
        open: 3,
        closed: 90,
        filtered_icmp: 2,
        ..ScanTotals::default()
    };
    assert_eq!(t.filtered(), 7);
}

proptest! {
    #[test]
    fn inspect_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120), off: bool) {
        let _ = inspect(&bytes, off, &locals(), &COOKIE, 3);
    }

    #[test]
    fn mutated_replies_never_panic(flip in 0usize..60, bit in 0u8..8) {
        let l = locals().v4.unwrap();
        let r = v4("198.18.0.9:22");
        let isn = COOKIE.seq(l, r, 0);
        let mut pkt = packet(r, l, 1, isn.0.wrapping_add(1), TcpFlags::SYN | TcpFlags::ACK);
        let i = flip % pkt.len();
        pkt[i] ^= 1 << bit;
        let _ = inspect(&pkt, false, &locals(), &COOKIE, 0);
    }
}

/// Without `--complete` the JSON line keeps exactly the issue's keys; with it the probe's
/// `legs_ns` and `close_initiator` sit beside them.
#[test]
fn completion_is_flattened_into_the_record_only_when_present() {
    let mut r = ScanRecord {
        addr: "198.18.0.9".parse().unwrap(),
        port: 22,
        state: PortState::Open,
        reason: Reason::SynAck,
        reply_ttl: 64,
        reply_from: None,
        rtt_ns: Some(41_500),
        t_ns: 7,
        complete: None,
    };
    let plain = serde_json::to_value(&r).unwrap();
    let keys: Vec<&str> = plain
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys.len(),
        7,
        "addr port state reason reply_ttl rtt_ns t_ns: {plain}"
    );
    r.complete = Some(Completion {
        legs_ns: {
            let mut l = crate::probe::record::Legs::default();
            l.set(Leg::SynackToAck, Some(12_000));
            l.set(Leg::FinToAck, Some(30_000));
            l
        },
        close_initiator: Some(crate::probe::record::CloseInitiator::Client),
        complete_error: None,
    });
    let full = serde_json::to_value(&r).unwrap();
    assert_eq!(full["legs_ns"]["synack_to_ack"], 12_000, "{full}");
    assert_eq!(full["legs_ns"]["fin_to_ack"], 30_000, "{full}");
    assert_eq!(full["close_initiator"], "client", "{full}");
    assert!(full["complete_error"].is_null(), "{full}");
    assert_eq!(full["state"], "open", "{full}");
}

#[test]
fn syn_and_rst_frames_are_valid_segments_in_both_families() {
    use crate::wire::ethernet::{EthernetRepr, MacAddr};
    let macs = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
    let l = locals();
    for (local, remote) in [
        (l.v4.unwrap(), v4("198.18.0.9:443")),
        (l.v6.unwrap(), "[fd00::9]:443".parse().unwrap()),
    ] {
        let mut buf = [0u8; 128];
        let n = build_syn_frame(macs, local, remote, SeqNumber(7), 3, &mut buf).unwrap();
        let (eth, ip) = EthernetRepr::parse(&buf[..n]).unwrap();
        assert_eq!((eth.src, eth.dst), macs);
        let pkt = IpPacket::parse(ip).unwrap();
        assert_eq!(
            (pkt.ip.src, pkt.ip.dst, pkt.ip.ttl),
            (local.ip(), remote.ip(), SYN_TTL)
        );
        // The checksum is ours to get right (no kernel fills it in on this path).
        let seg = TcpRepr::parse(pkt.payload, pkt.ip.src, pkt.ip.dst).unwrap();
        assert!(seg.flags.syn() && !seg.flags.ack());
        assert_eq!(
            (seg.seq, seg.window, seg.options.mss),
            (SeqNumber(7), SYN_WINDOW, Some(SYN_MSS))
        );
        assert_eq!(syn_of_frame(&buf[..n], &l), Some((remote.ip(), 443, 7)));
        // The same packet as the raw path's (IPv4: the whole datagram).
        if local.is_ipv4() {
            let mut raw = [0u8; 64];
            let m = build_syn(local, remote, SeqNumber(7), 3, &mut raw).unwrap();
            assert_eq!(&buf[14..14 + m], &raw[..m]);
        }
        let n = build_rst_frame(macs, local, remote, SeqNumber(8), 4, &mut buf).unwrap();
        assert!(n >= 60, "padded to Ethernet's minimum");
        let (_, ip) = EthernetRepr::parse(&buf[..n]).unwrap();
        let pkt = IpPacket::parse(ip).unwrap();
        let seg = TcpRepr::parse(pkt.payload, pkt.ip.src, pkt.ip.dst).unwrap();
        assert!(seg.flags.rst() && seg.seq == SeqNumber(8));
        assert_eq!(
            syn_of_frame(&buf[..n], &l),
            None,
            "a RST is not a SYN to time"
        );
        assert!(build_syn_frame(macs, local, remote, SeqNumber(7), 3, &mut buf[..40]).is_err());
    }
}

#[test]
fn a_down_host_is_one_json_line_without_a_port() {
    use crate::probe::record::{HostRecord, HostState};
    let h = HostRecord {
        addr: "198.18.77.4".parse().unwrap(),
        state: HostState::Down,
        reason: Reason::NoArp,
        t_ns: 7,
    };
    let line = serde_json::to_string(&h).unwrap();
    assert_eq!(
        line,
        r#"{"addr":"198.18.77.4","state":"down","reason":"no-arp","t_ns":7}"#
    );
    assert_eq!(serde_json::from_str::<HostRecord>(&line).unwrap(), h);
    assert!(
        serde_json::from_str::<ScanRecord>(&line).is_err(),
        "not a port line"
    );
}
