//! The kernel program run on frames by BPF_PROG_TEST_RUN (root: CAP_BPF): what it sends is
//! what our TCP would have sent, byte for byte; anything it should not answer goes on.

use super::*;
use crate::netns::testutil::require_root;
use crate::run::build_segment;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tcpshake_proto::probe::{HttpRequest, Probe, ProbeConfig};
use tcpshake_proto::tcp;
use tcpshake_proto::time::Instant;
use tcpshake_proto::wire::ip::{IpRepr, PROTO_TCP};
use tcpshake_proto::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};

pub(super) const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 7, 1));
pub(super) const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 7, 2));
pub(super) const LOCAL_PORT: u16 = 40_000;
/// A millisecond boundary: the SYN and a SYN-ACK 100 µs later share a TSval.
pub(super) const T0: u64 = 1_700_000_000_000_000_000;
pub(super) const ISN: u32 = 0xfffffff0;
pub(super) const IRS: u32 = 7_000_000;

pub(super) fn at(us: u64) -> Instant {
    Instant::from_nanos(T0 + us * 1000)
}

/// A survey probe's configuration: HTTP, timestamps, the request on the handshake's ACK.
pub(super) fn config(ack_with_data: bool) -> ProbeConfig {
    ProbeConfig {
        target: "198.18.7.2:80".into(),
        tcp: tcp::Config {
            local: SocketAddr::new(CLIENT, LOCAL_PORT),
            remote: SocketAddr::new(SERVER, 80),
            isn: SeqNumber(ISN),
            mss: 1460,
            syn_window: 64240,
            rcv_buf: 128 * 1024,
            wscale: 7,
            sack_permitted: true,
            timestamps: true,
            ts_offset: 12345,
            syn_retries: 2,
            data_retries: 4,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            time_wait: Duration::from_millis(250),
            ack_with_data,
            known_path_mtu: None,
        },
        http: Some(HttpRequest::new("/", "198.18.7.2").expect("a valid request")),
        timeout: Duration::from_secs(5),
        linger: Duration::from_millis(200),
        tls: None,
        mss_hint: "`--mss {}`",
    }
}

/// An Ethernet frame to us (destination MAC zero: the loopback device's, so the test run
/// takes it as this host's) carrying `seg` from the server.
pub(super) fn frame(seg: &TcpRepr<'_>) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + seg.buffer_len()];
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = IpRepr::new(SERVER, CLIENT, PROTO_TCP, 64, seg.buffer_len());
    let n = ip.emit(&mut f[14..]).unwrap();
    seg.emit(SERVER, CLIENT, &mut f[14 + n..]).unwrap();
    f
}

/// The SYN-ACK Linux sends to our SYN (MSS, SACK-permitted, timestamps, window scale).
pub(super) fn synack(tsecr: u32) -> TcpRepr<'static> {
    TcpRepr {
        src_port: 80,
        dst_port: LOCAL_PORT,
        seq: SeqNumber(IRS),
        ack: SeqNumber(ISN.wrapping_add(1)),
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window: 65160,
        urgent: 0,
        options: TcpOptions {
            mss: Some(1460),
            wscale: Some(10),
            sack_permitted: true,
            timestamps: Some((99_000, tsecr)),
            ..Default::default()
        },
        payload: &[],
    }
}

#[test]
#[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
fn a_synack_gets_the_segment_our_tcp_would_send_byte_for_byte() {
    require_root("a_synack_gets_the_segment_our_tcp_would_send_byte_for_byte");
    let mut reflex = Reflex::new((LOCAL_PORT - 10, LOCAL_PORT + 10), 4, 0x7463).unwrap();
    let mut probe = Probe::new(config(true));
    probe.start(at(0));
    let syn = probe.poll_transmit(at(0)).unwrap();
    let tsval = syn.options.timestamps.unwrap().0;
    let plan = probe.handshake_ack().expect("the request rides on the ACK");
    assert!(!plan.payload.is_empty());
    let local = SocketAddr::new(CLIENT, LOCAL_PORT);
    let remote = SocketAddr::new(SERVER, 80);
    assert!(reflex.arm(2, local, remote, &plan, 777, 64));

    let f = frame(&synack(tsval));
    let (verdict, out) = reflex.test_run(&f).unwrap();
    assert_eq!(verdict, 7, "TC_ACT_REDIRECT");
    assert_eq!(reflex.phase(2), FIRED);
    assert_eq!(reflex.claim(2), Claim::Kernel);
    // Back to where it came from.
    assert_eq!(&out[0..6], &f[6..12]);
    assert_eq!(&out[6..12], &f[0..6]);

    // What our TCP sends for the same SYN-ACK, in the same millisecond.
    assert!(probe.handle_packet(at(100), false, &f[14..], false));
    let seg = probe.poll_transmit(at(100)).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut ident = 777;
    let n = build_segment(&seg, false, &mut buf, &mut ident, local, remote).unwrap();
    assert_eq!(&out[14..], &buf[..n], "the kernel's segment is our TCP's");
}

pub(super) const CLIENT6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 1));
pub(super) const SERVER6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 2));

/// An Ethernet frame carrying an IPv6 packet with `tcp` (the first word `word0`).
fn frame6(src: IpAddr, dst: IpAddr, word0: u32, seg: &TcpRepr<'_>) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
        unreachable!()
    };
    let mut f = vec![0u8; 14 + 40 + seg.buffer_len()];
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14..18].copy_from_slice(&word0.to_be_bytes());
    f[18..20].copy_from_slice(&(seg.buffer_len() as u16).to_be_bytes());
    f[20] = 6;
    f[21] = 64;
    f[22..38].copy_from_slice(&s.octets());
    f[38..54].copy_from_slice(&d.octets());
    seg.emit(src, dst, &mut f[54..]).unwrap();
    f
}

#[test]
#[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
fn an_ipv6_synack_gets_our_segment_with_the_flow_label_our_syn_carried() {
    require_root("an_ipv6_synack_gets_our_segment_with_the_flow_label_our_syn_carried");
    let mut reflex = Reflex::new((LOCAL_PORT - 10, LOCAL_PORT + 10), 4, 0x7463).unwrap();
    let mut cfg = config(true);
    cfg.tcp.local = SocketAddr::new(CLIENT6, LOCAL_PORT);
    cfg.tcp.remote = SocketAddr::new(SERVER6, 80);
    let mut probe = Probe::new(cfg);
    probe.start(at(0));
    let syn = probe.poll_transmit(at(0)).unwrap();
    let tsval = syn.options.timestamps.unwrap().0;
    let plan = probe.handshake_ack().expect("the request rides on the ACK");
    let local = SocketAddr::new(CLIENT6, LOCAL_PORT);
    let remote = SocketAddr::new(SERVER6, 80);
    assert!(reflex.arm(1, local, remote, &plan, 0, 64));

    let mut synack = synack(tsval);
    // Before our SYN was seen leaving, its flow label is unknown: not answered.
    let f = frame6(SERVER6, CLIENT6, 0x6000_0000 | 0xde4f, &synack);
    assert_eq!(reflex.test_run(&f).unwrap().0, -1);
    assert_eq!(reflex.phase(1), ARMED);
    // Our SYN leaves (the kernel chose label 0x0b7b2b for it).
    let repr = syn.repr(LOCAL_PORT, 80);
    let out = frame6(CLIENT6, SERVER6, 0x600b_7b2b, &repr);
    assert_eq!(reflex.test_run_egress(&out).unwrap().0, -1);
    let (verdict, out) = reflex.test_run(&f).unwrap();
    assert_eq!(verdict, 7, "TC_ACT_REDIRECT");
    assert_eq!(reflex.phase(1), FIRED);
    assert_eq!(&out[14..18], &0x600b_7b2bu32.to_be_bytes());
    assert_eq!(&out[20..22], &[6, 64]);

    // Our TCP's segment for the same SYN-ACK, with the same IPv6 header before it.
    assert!(probe.handle_packet(at(100), false, &f[14..], false));
    let seg = probe.poll_transmit(at(100)).unwrap();
    let repr = seg.repr(LOCAL_PORT, 80);
    let want = frame6(CLIENT6, SERVER6, 0x600b_7b2b, &repr);
    assert_eq!(&out[14..], &want[14..], "the kernel's segment is our TCP's");
    synack.ack = SeqNumber(ISN);
    let _ = synack;
}
