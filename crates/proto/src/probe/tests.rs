//! The probe driven by a scripted server in virtual time: every segment the probe sends is
//! "seen on the tap" a few µs later, and the server's answers are built with `wire`.

use super::record::{CloseInitiator, Dir, Leg, PortState};
use super::*;
use crate::wire::ip::{IpRepr, PROTO_ICMP};
use crate::wire::{TcpFlags, TcpOptions};
use std::net::{IpAddr, Ipv4Addr};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const T0: u64 = 1_700_000_000_000_000_000;

fn at(us: u64) -> Instant {
    Instant::from_nanos(T0 + us * 1000)
}

pub(super) fn config(isn: u32, http: bool) -> ProbeConfig {
    ProbeConfig {
        target: "198.18.0.2:80".into(),
        tcp: tcp::Config {
            local: SocketAddr::new(CLIENT, 40000),
            remote: SocketAddr::new(SERVER, 80),
            isn: SeqNumber(isn),
            mss: 1460,
            syn_window: 64240,
            rcv_buf: 128 * 1024,
            wscale: 7,
            sack_permitted: true,
            timestamps: false,
            ts_offset: 0,
            syn_retries: 2,
            data_retries: 4,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            time_wait: Duration::from_millis(250),
            ack_with_data: false,
            known_path_mtu: None,
        },
        http: http.then(|| HttpRequest::new("/", "198.18.0.2").expect("a valid request")),
        timeout: Duration::from_secs(5),
        linger: Duration::from_millis(200),
        tls: None,
        mss_hint: "`--mss {}`",
    }
}

/// Bytes of an IPv4 packet carrying `seg`.
fn packet(src: IpAddr, dst: IpAddr, seg: &TcpRepr<'_>, ttl: u8) -> Vec<u8> {
    let mut buf = vec![0u8; 20 + seg.buffer_len()];
    let ip = IpRepr::new(src, dst, PROTO_TCP, ttl, seg.buffer_len());
    let n = ip.emit(&mut buf).unwrap();
    seg.emit(src, dst, &mut buf[n..]).unwrap();
    buf
}

pub(super) fn server_seg(seq: u32, ack: u32, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
    let options = if flags.syn() {
        TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_permitted: true,
            ..Default::default()
        }
    } else {
        TcpOptions::default()
    };
    let seg = TcpRepr {
        src_port: 80,
        dst_port: 40000,
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags,
        window: 509,
        urgent: 0,
        options,
        payload,
    };
    packet(SERVER, CLIENT, &seg, 64)
}

/// Send what the probe queued; each copy reaches the tap `delay_us` later. Returns the
/// segments sent.
/// The record's JSON, byte for byte, against `golden/NAME.json` (the schema README.md
/// documents), and read back into the same record. `UPDATE_GOLDEN=1` rewrites the file:
/// only when the schema is meant to change, and README.md with it.
fn golden(name: &str, r: &ProbeResult) {
    let json = serde_json::to_string(r).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/probe/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{json}\n")).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(json, want.trim_end(), "{name}: the JSON schema changed");
    let back = ProbeResult::from_json_line(&json).unwrap();
    assert_eq!(&back, r, "{name}: read back differs");
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}

#[test]
fn records_written_before_the_icmp_fields_read_back_with_their_defaults() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/probe/golden/closed_reset.json");
    let now = std::fs::read_to_string(path).unwrap();
    let old = now.replace(
        r#""icmp_ignored":0,"path_mtu":null,"pmtu_black_hole":false,"#,
        "",
    );
    assert_ne!(old, now);
    let r = ProbeResult::from_json_line(old.trim_end()).unwrap();
    assert_eq!(
        (r.icmp_ignored, r.path_mtu, r.pmtu_black_hole),
        (0, None, false)
    );
    assert_eq!(serde_json::to_string(&r).unwrap(), now.trim_end());
}

fn pump(p: &mut Probe, now_us: u64) -> Vec<tcp::Segment> {
    let mut sent = Vec::new();
    while let Some(seg) = p.poll_transmit(at(now_us)) {
        let bytes = packet(CLIENT, SERVER, &seg.repr(40000, 80), 64);
        assert!(p.handle_packet(at(now_us + 2), true, &bytes, false));
        sent.push(seg);
    }
    sent
}

#[test]
fn open_port_with_http_and_server_close_has_every_leg() {
    let isn = u32::MAX - 1; // the exchange crosses 2^32
    let irs = 7_000;
    let mut p = Probe::new(config(isn, true));
    p.start(at(0));
    let syn = pump(&mut p, 0);
    assert_eq!(syn.len(), 1);
    assert!(syn[0].flags.syn());

    p.handle_packet(
        at(50),
        false,
        &server_seg(irs, isn.wrapping_add(1), TcpFlags::SYN | TcpFlags::ACK, &[]),
        false,
    );
    let out = pump(&mut p, 60);
    let request: Vec<u8> = out.iter().flat_map(|s| s.payload.clone()).collect();
    assert!(
        request.starts_with(b"HEAD / HTTP/1.1\r\nHost: 198.18.0.2\r\n"),
        "{:?}",
        String::from_utf8_lossy(&request)
    );
    let req_len = request.len() as u32;

    let response = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Length: 3\r\n\r\n";
    let ack = isn.wrapping_add(1).wrapping_add(req_len);
    p.handle_packet(
        at(300),
        false,
        &server_seg(irs + 1, ack, TcpFlags::PSH | TcpFlags::ACK, response),
        false,
    );
    pump(&mut p, 305);
    let fin_seq = irs + 1 + response.len() as u32;
    p.handle_packet(
        at(310),
        false,
        &server_seg(fin_seq, ack, TcpFlags::FIN | TcpFlags::ACK, &[]),
        false,
    );
    let out = pump(&mut p, 320);
    assert!(
        out.iter().any(|s| s.flags.fin()),
        "we close after the server's FIN"
    );
    p.handle_packet(
        at(400),
        false,
        &server_seg(fin_seq + 1, ack.wrapping_add(1), TcpFlags::ACK, &[]),
        false,
    );
    pump(&mut p, 400);
    assert!(p.is_done());

    let r = p.result();
    golden("open_http_server_closes", &r);
    assert_eq!(r.state, PortState::Open);
    assert_eq!(r.reason, "syn-ack");
    assert_eq!(r.reply_ttl, Some(64));
    assert_eq!(r.http.as_ref().map(|h| h.status), Some(200));
    assert_eq!(r.http.as_ref().unwrap().headers["server"], "nginx/1.22.1");
    assert_eq!(r.close_initiator, Some(CloseInitiator::Server));
    assert_eq!(r.error, None);
    let l = r.legs_ns;
    assert_eq!(l.get(Leg::SynToSynack), Some(48_000)); // SYN on the tap at 2 µs, SYN-ACK at 50
    assert_eq!(l.get(Leg::SynackToAck), Some(12_000));
    assert_eq!(l.get(Leg::RequestToFirstByte), Some(300_000 - 62_000));
    assert_eq!(
        l.get(Leg::RequestToComplete),
        l.get(Leg::RequestToFirstByte)
    );
    assert!(
        l.get(Leg::FinToAck).is_some()
            && l.get(Leg::FinToPeerFin).is_some()
            && l.get(Leg::PeerFinToLastAck).is_some()
    );
    assert_eq!(l.get(Leg::PeerFinToLastAck), Some(400_000 - 322_000));
    assert_eq!(l.get(Leg::Total), Some(400_000 - 2_000));
    assert_eq!(r.segments[0].t_ns, 0);
    assert!(
        r.segments[0]
            .transitions
            .iter()
            .any(|t| t.to_string() == "CLOSED → SYN-SENT")
    );
    assert!(r.segments.iter().any(|s| {
        s.dir == Dir::In
            && s.transitions
                .iter()
                .any(|t| t.to_string() == "SYN-SENT → ESTABLISHED")
    }));
    assert!(r.segments.iter().all(|s| !s.foreign && !s.bad_checksum));
    // A survey takes the result by value: the same record, moved rather than copied.
    assert_eq!(p.into_result(), r);
}

/// `scan --complete`'s connection (`probe --no-http`) as the flaky lab run had it: our FIN
/// right behind the handshake's ACK (never on it: a SYN proxy drops what rides on the
/// third segment), the loaded server's FIN+ACK comes 2 ms later, and its pure
/// ACK of our FIN, overtaken by its FIN, comes after our last ACK. We ACK that old segment
/// again (RFC 9293 §3.10.7.4, as Linux), and the server, closed by then, answers with a RST
/// at our RCV.NXT. The close had completed: the record says the client closed, with every
/// close leg, and notes the RST; it is no reset and no error.
#[test]
fn rst_in_time_wait_after_the_close_leaves_it_a_client_close() {
    let (isn, irs) = (1000, 7000);
    let mut p = Probe::new(config(isn, false));
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(30),
        false,
        &server_seg(irs, isn + 1, TcpFlags::SYN | TcpFlags::ACK, &[]),
        false,
    );
    let sent = pump(&mut p, 70);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        sent[0].flags,
        TcpFlags::ACK,
        "the handshake's ACK alone: {sent:?}"
    );
    assert!(sent[1].flags.fin() && sent[1].flags.ack(), "{sent:?}");
    p.handle_packet(
        at(2_700),
        false,
        &server_seg(irs + 1, isn + 2, TcpFlags::FIN | TcpFlags::ACK, &[]),
        false,
    );
    assert_eq!(pump(&mut p, 2_720).len(), 1, "our last ACK");
    // The server's ACK of our FIN, from before its FIN, overtaken by it.
    p.handle_packet(
        at(2_725),
        false,
        &server_seg(irs + 1, isn + 2, TcpFlags::ACK, &[]),
        false,
    );
    let dup = pump(&mut p, 2_750);
    assert_eq!(dup.len(), 1, "ACKed again, as Linux does in TIME-WAIT");
    assert!(!p.is_done());
    p.handle_packet(
        at(2_760),
        false,
        &server_seg(irs + 2, 0, TcpFlags::RST, &[]),
        false,
    );
    assert!(pump(&mut p, 2_770).is_empty());
    assert!(p.is_done(), "the RST ended TIME-WAIT");

    let r = p.result();
    assert_eq!(r.close_initiator, Some(CloseInitiator::Client), "{r:#?}");
    assert_eq!(r.error, None);
    let l = r.legs_ns;
    assert_eq!(l.get(Leg::FinToAck), Some(2_628_000)); // our FIN on the tap at 72 µs
    assert_eq!(l.get(Leg::FinToPeerFin), Some(2_628_000));
    assert_eq!(l.get(Leg::PeerFinToLastAck), Some(22_000));
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.contains("TIME-WAIT") && a.contains("RST")),
        "{:?}",
        r.anomalies
    );
    let last = r.segments.last().unwrap();
    assert!(last.flags.rst() && last.dir == Dir::In);
    assert_eq!(
        last.transitions,
        [Transition {
            from: State::TimeWait,
            to: State::Closed
        }]
    );
}

#[test]
fn rst_to_syn_is_closed_reset() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(40),
        false,
        &server_seg(0, 1001, TcpFlags::RST | TcpFlags::ACK, &[]),
        false,
    );
    assert!(p.is_done());
    let r = p.result();
    golden("closed_reset", &r);
    assert_eq!((r.state, r.reason.as_str()), (PortState::Closed, "reset"));
    assert_eq!(r.legs_ns.get(Leg::SynToSynack), None);
    assert!(!r.succeeded());
}

#[test]
fn silence_is_filtered_no_response_after_retries() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    let mut now = 0;
    for _ in 0..10 {
        let Some(d) = p.poll_timeout() else { break };
        now = (d.as_nanos() - T0) / 1000;
        p.handle_timeout(d);
        pump(&mut p, now);
        if p.is_done() {
            break;
        }
    }
    assert!(p.is_done());
    let r = p.result();
    golden("filtered_no_response", &r);
    assert_eq!(
        (r.state, r.reason.as_str()),
        (PortState::Filtered, "no-response")
    );
    assert_eq!(r.retransmissions, 2);
    assert!(r.segments.iter().filter(|s| s.retransmission).count() == 2);
    // 1 s + 2 s + 4 s of backoff before giving up.
    assert!(now >= 7_000_000, "gave up at {now} µs");
    // Timer records too (the state changes no segment went with).
    assert!(!r.timers.is_empty());
    assert_eq!(p.into_result(), r);
}

/// SYNs our TCP sent that never left this host (a neighbour that never answered ARP: the
/// kernel dropped them): the give-up line says so, beside the record's 0 retransmissions,
/// and the error names the neighbour (it read "gave up after 2 retransmissions" beside
/// `"retransmissions": 0`).
#[test]
fn syns_that_never_left_are_said_so_where_the_probe_gives_up() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    // Bounded: three SYNs, then the give-up.
    for _ in 0..10 {
        while p.poll_transmit(at(0)).is_some() {}
        let Some(d) = p.poll_timeout() else { break };
        p.handle_timeout(d);
        if p.is_done() {
            break;
        }
    }
    p.next_hop_unresolved("198.18.0.2 did not answer ARP on veth0".into());
    assert!(p.is_done());
    let r = p.result();
    assert_eq!(r.retransmissions, 0);
    let gave_up: Vec<&str> = r
        .timers
        .iter()
        .map(|t| t.what.as_str())
        .filter(|w| w.starts_with("gave up"))
        .collect();
    assert_eq!(
        gave_up,
        ["gave up in SYN-SENT after 2 retransmissions, none of which left this host"]
    );
    assert_eq!(
        r.error.as_deref(),
        Some("none of our SYNs left this host: 198.18.0.2 did not answer ARP on veth0")
    );
}

const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 254));

/// A probe (ISN 1000, no HTTP) started at 0, and the SYN it sent.
fn syn_sent() -> (Probe, tcp::Segment) {
    let mut p = Probe::new(config(1000, false));
    p.start(at(0));
    let syn = pump(&mut p, 0).remove(0);
    (p, syn)
}

/// An ICMPv4 error from `from` (type, code, MTU) quoting our segment `seg` with its
/// sequence number replaced by `quoted_seq`.
fn icmp_quoting(
    from: IpAddr,
    t: u8,
    code: u8,
    mtu: u16,
    seg: &tcp::Segment,
    quoted_seq: u32,
) -> Vec<u8> {
    let mut quote = packet(CLIENT, SERVER, &seg.repr(40000, 80), 64);
    quote[24..28].copy_from_slice(&quoted_seq.to_be_bytes());
    quote.truncate(20 + 8 + 20); // what a router quotes of a big segment is cut short
    let [m0, m1] = mtu.to_be_bytes();
    let mut icmp = vec![t, code, 0, 0, 0, 0, m0, m1];
    icmp.extend_from_slice(&quote);
    let sum = crate::wire::checksum::internet_checksum(0, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let ip = IpRepr::new(from, CLIENT, PROTO_ICMP, 63, icmp.len());
    let mut buf = vec![0u8; 20 + icmp.len()];
    let n = ip.emit(&mut buf).unwrap();
    buf[n..].copy_from_slice(&icmp);
    buf
}

#[test]
fn icmp_in_syn_sent_must_quote_our_isn() {
    let (mut p, syn) = syn_sent();
    // Someone who knows the 4-tuple but not our ISN: port-unreach from the target,
    // host-unreach and frag-needed from a "router", the sequence number one past and far.
    let spoofs = [
        icmp_quoting(SERVER, 3, 3, 0, &syn, 1001),
        icmp_quoting(ROUTER, 3, 1, 0, &syn, 0xdead_beef),
        icmp_quoting(ROUTER, 3, 4, 600, &syn, 999),
    ];
    for (i, b) in spoofs.iter().enumerate() {
        assert!(
            p.handle_packet(at(10 + i as u64), false, b, false),
            "ours: {i}"
        );
    }
    assert!(!p.is_done());
    // The real SYN-ACK arrives: open.
    p.handle_packet(
        at(50),
        false,
        &server_seg(7000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]),
        false,
    );
    pump(&mut p, 60);
    let r = p.result();
    assert_eq!((r.state, r.reason.as_str()), (PortState::Open, "syn-ack"));
    assert_eq!(r.icmp_ignored, 3);
    assert_eq!(r.path_mtu, None, "a forged frag-needed teaches nothing");
    let notes = r.anomalies.join("\n");
    assert!(
        notes.contains("ignored ICMP port-unreach from 198.18.0.2")
            && notes.contains("quotes sequence number 1, not one in flight (0 ≤ seq < 1")
            && notes.contains("ignored ICMP frag-needed mtu 600 from 198.19.0.254"),
        "{notes}"
    );
    // An error about another connection is none of ours.
    let mut other = icmp_quoting(ROUTER, 3, 1, 0, &syn, 1000);
    other[20 + 8 + 20..20 + 8 + 22].copy_from_slice(&40001u16.to_be_bytes());
    let sum_at = 20 + 2;
    other[sum_at..sum_at + 2].copy_from_slice(&[0, 0]);
    let sum = crate::wire::checksum::internet_checksum(0, &other[20..]);
    other[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
    assert!(!p.handle_packet(at(70), false, &other, false));
    assert_eq!(p.result().icmp_ignored, 3);
}

#[test]
fn icmp_quoting_our_isn_filters_the_port_but_frag_needed_does_not() {
    let (mut p, syn) = syn_sent();
    assert!(p.handle_packet(
        at(20),
        false,
        &icmp_quoting(ROUTER, 3, 4, 1000, &syn, 1000),
        false
    ));
    assert!(!p.is_done(), "frag-needed is a hint, not a verdict");
    assert!(p.handle_packet(
        at(30),
        false,
        &icmp_quoting(ROUTER, 3, 1, 0, &syn, 1000),
        false
    ));
    assert!(p.is_done());
    let r = p.result();
    assert_eq!(
        (r.state, r.reason.as_str(), r.reply_from.as_deref()),
        (PortState::Filtered, "host-unreach", Some("198.19.0.254"))
    );
    assert_eq!(r.icmp_ignored, 0);
    assert_eq!(r.path_mtu, Some(1000));
    // SYN on the tap at 2 µs, the ICMP error at 30: the exchange lasted until the error.
    assert_eq!(r.legs_ns.get(Leg::Total), Some(28_000));
    let lines: Vec<&str> = r.timers.iter().map(|t| t.what.as_str()).collect();
    assert!(
        lines.contains(
            &"ICMP frag-needed mtu 1000 from 198.19.0.254: path MTU 1000, used once connected"
        ) && lines.contains(&"ICMP host-unreach from 198.19.0.254"),
        "{lines:?}"
    );
}

/// The handshake's ACK foreseen while we wait for the SYN-ACK (`Probe::handshake_ack`,
/// which a driver may hand to the kernel, io/reflex.rs) is what we would send now: a
/// frag-needed in SYN-SENT that lowers the path MTU changes it, so a driver holding the
/// old one knows to take it back.
#[test]
fn a_frag_needed_in_syn_sent_changes_the_foreseen_ack() {
    let mut cfg = config(1000, true);
    cfg.tcp.ack_with_data = true;
    let mut p = Probe::new(cfg);
    p.start(at(0));
    let syn = pump(&mut p, 0).remove(0);
    let before = p.handshake_ack().expect("a plan with the request");
    assert!(!before.payload.is_empty());
    assert!(p.handle_packet(
        at(20),
        false,
        &icmp_quoting(ROUTER, 3, 4, 100, &syn, 1000),
        false
    ));
    assert!(p.awaiting_synack());
    assert_ne!(p.handshake_ack(), Some(before));
}

/// The server's SYN-ACK to ISN 1000 with room for a whole long request: its window
/// 65535, not scaled.
fn roomy_synack() -> Vec<u8> {
    let mut synack = server_seg(7000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]);
    synack[20 + 14..20 + 16].copy_from_slice(&65535u16.to_be_bytes());
    synack[20 + 16..20 + 18].copy_from_slice(&[0, 0]);
    let sum = crate::wire::checksum::upper_layer_checksum(SERVER, CLIENT, PROTO_TCP, &synack[20..]);
    synack[20 + 16..20 + 18].copy_from_slice(&sum.to_be_bytes());
    synack
}

#[test]
fn frag_needed_after_the_handshake_resegments_the_request() {
    let mut cfg = config(1000, true);
    if let Some(h) = cfg.http.as_mut() {
        h.path = format!("/{}", "a".repeat(3000));
    }
    let mut p = Probe::new(cfg);
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(at(50), false, &roomy_synack(), false);
    let out = pump(&mut p, 60);
    let request: Vec<&tcp::Segment> = out.iter().filter(|s| !s.payload.is_empty()).collect();
    assert_eq!(request[0].payload.len(), 1460);
    let total: usize = request.iter().map(|s| s.payload.len()).sum();
    // The router refuses the first segment (and the second) for its size.
    let big = request[0].clone();
    p.handle_packet(
        at(80),
        false,
        &icmp_quoting(ROUTER, 3, 4, 1000, &big, 1001),
        false,
    );
    let again = pump(&mut p, 85);
    assert!(
        again
            .iter()
            .all(|s| s.payload.len() <= 960 && s.retransmission)
    );
    assert_eq!(again.iter().map(|s| s.payload.len()).sum::<usize>(), 2920);
    p.handle_packet(
        at(90),
        false,
        &icmp_quoting(ROUTER, 3, 4, 1000, request[1], 2461),
        false,
    );
    assert!(pump(&mut p, 95).is_empty(), "nothing more to resend");
    let r = p.result();
    assert_eq!(r.path_mtu, Some(1000));
    assert_eq!(r.icmp_ignored, 0);
    // The log marks the re-cut segments as retransmissions (they cover sent bytes).
    let data_out: Vec<_> = r
        .segments
        .iter()
        .filter(|s| s.dir == Dir::Out && s.len > 0)
        .collect();
    assert_eq!(data_out.len(), request.len() + again.len());
    assert!(data_out[..request.len()].iter().all(|s| !s.retransmission));
    assert!(data_out[request.len()..].iter().all(|s| s.retransmission));
    assert_eq!(r.retransmissions as usize, again.len());
    let lines: Vec<&str> = r.timers.iter().map(|t| t.what.as_str()).collect();
    assert!(
        lines.contains(&"ICMP frag-needed mtu 1000 from 198.19.0.254: path MTU 1000, MSS 1460 → 960, 4 segments sent again")
            && lines.contains(&"ICMP frag-needed mtu 1000 from 198.19.0.254: path MTU stays 1000"),
        "{lines:?}"
    );
    assert!(total > 3000);
}

/// This host's kernel declining a segment (EMSGSIZE below a cached or locked path MTU,
/// ENOBUFS on the way out) is a loss, as Linux's TCP takes it: the probe went on. It ended
/// with "Message too long" and no record, leaving the server an established connection.
#[test]
fn a_segment_this_host_would_not_send_is_lost_not_the_end() {
    let mut cfg = config(1000, true);
    if let Some(h) = cfg.http.as_mut() {
        h.path = format!("/{}", "a".repeat(1400));
    }
    let mut p = Probe::new(cfg);
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(at(50), false, &roomy_synack(), false);
    let out = pump(&mut p, 60);
    let big: Vec<&tcp::Segment> = out.iter().filter(|s| !s.payload.is_empty()).collect();
    assert!(big[0].payload.len() > 1000, "{}", big[0].payload.len());
    // EMSGSIZE, the route saying 552: cut again at once, below it.
    p.send_refused(at(61), LocalRefusal::TooBig { mtu: Some(552) }, 1500);
    assert!(!p.is_done());
    let again = pump(&mut p, 62);
    assert!(!again.is_empty());
    assert!(
        again
            .iter()
            .all(|s| s.payload.len() <= 552 - 40 && s.retransmission),
        "{:?}",
        again.iter().map(|s| s.payload.len()).collect::<Vec<_>>()
    );
    let r = p.result();
    assert_eq!(r.path_mtu, Some(552));
    assert!(
        r.timers.iter().any(|t| t.what.starts_with(
            "this host would not send a 1500-byte segment (EMSGSIZE): its path MTU to the server is 552, MSS"
        )),
        "{:?}",
        r.timers
    );
    // ENOBUFS: lost, said once, sent again by the retransmission timer.
    p.send_refused(at(63), LocalRefusal::Dropped, 552);
    assert!(!p.is_done());
    assert!(pump(&mut p, 64).is_empty(), "nothing at once");
    let rto = p.poll_timeout().expect("the retransmission timer runs");
    p.handle_timeout(rto);
    let t = rto.as_nanos() / 1000 - at(0).as_nanos() / 1000;
    assert!(pump(&mut p, t).iter().any(|s| s.retransmission));
    let r = p.result();
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.contains("dropped by this host on its way out (ENOBUFS): counted as lost")),
        "{:?}",
        r.anomalies
    );
}

/// Fault walk: a router answered each of our SYNs with a parameter problem (IPv4 type 12;
/// ICMPv6 type 4 likewise). It was not even read as an ICMP error: the record said
/// filtered/no-response with no word of it. Linux's connect() fails at once with EPROTO;
/// we keep to RFC 1122 §4.2.3.9 (a soft error, conformance `icmp-parameter-problem-soft`)
/// and keep waiting, but now say so, as for any soft error.
#[test]
fn a_parameter_problem_in_syn_sent_is_a_soft_error_and_noted() {
    let (mut p, syn) = syn_sent();
    assert!(p.handle_packet(
        at(20),
        false,
        &icmp_quoting(ROUTER, 12, 0, 0, &syn, 1000),
        false
    ));
    assert!(!p.is_done(), "a soft error: the SYN-ACK is still awaited");
    let r = p.result();
    assert_eq!(r.icmp_ignored, 0);
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.starts_with("ICMP param-problem from 198.19.0.254")
                && a.contains("soft error in SYN-SENT")),
        "{:?}",
        r.anomalies
    );
    // The SYN-ACK still opens the port.
    p.handle_packet(
        at(50),
        false,
        &server_seg(7000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]),
        false,
    );
    pump(&mut p, 60);
    assert_eq!(p.result().state, PortState::Open);
}

#[test]
fn soft_icmp_after_the_handshake_is_noted_and_named_on_timeout() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(50),
        false,
        &server_seg(7000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]),
        false,
    );
    let out = pump(&mut p, 60);
    let req = out.iter().find(|s| !s.payload.is_empty()).unwrap().clone();
    p.handle_packet(
        at(70),
        false,
        &icmp_quoting(ROUTER, 11, 0, 0, &req, 1001),
        false,
    );
    assert!(!p.is_done());
    for _ in 0..50 {
        let Some(d) = p.poll_timeout() else { break };
        let now = (d.as_nanos() - T0) / 1000;
        p.handle_timeout(d);
        pump(&mut p, now);
        if p.is_done() {
            break;
        }
    }
    let r = p.result();
    assert_eq!(r.state, PortState::Open);
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.starts_with("ICMP time-exceeded from 198.19.0.254")
                && a.contains("soft error in ESTABLISHED")),
        "{:?}",
        r.anomalies
    );
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains("(last ICMP error: time-exceeded from 198.19.0.254)"),
        "{err}"
    );
}

#[test]
fn bad_checksum_is_ignored_and_reported() {
    let mut p = Probe::new(config(1000, false));
    p.start(at(0));
    pump(&mut p, 0);
    let mut bytes = server_seg(5, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]);
    bytes[20 + 14] ^= 0xff; // the window field: the checksum no longer matches
    assert!(p.handle_packet(at(40), false, &bytes, false));
    assert!(!p.is_done());
    let r = p.result();
    golden("bad_checksum", &r);
    assert!(r.segments.iter().any(|s| s.bad_checksum));
    assert!(r.anomalies.iter().any(|a| a.contains("bad TCP checksum")));
    assert_ne!(r.state, PortState::Open);
}

#[test]
fn segments_of_other_connections_are_not_ours() {
    let mut p = Probe::new(config(1000, false));
    p.start(at(0));
    pump(&mut p, 0);
    let seg = TcpRepr {
        src_port: 80,
        dst_port: 40001,
        seq: SeqNumber(5),
        ack: SeqNumber(1001),
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window: 100,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    };
    assert!(!p.handle_packet(at(40), false, &packet(SERVER, CLIENT, &seg, 64), false));
    assert_eq!(p.result().segments.len(), 1);
}

#[test]
fn synack_with_a_malformed_option_costs_only_the_option() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    // A SYN-ACK whose only option is a SACK (kind 5) of length 3, which RFC 2018 §3 does
    // not allow, then a NOP: data offset 6 words, IP total length 44.
    let mut with_opts = server_seg(7000, 1001, TcpFlags::ACK, &[]);
    with_opts[20 + 13] = 0x12;
    with_opts[20 + 12] = 6 << 4;
    with_opts.extend_from_slice(&[5, 3, 0, 1]);
    with_opts[2..4].copy_from_slice(&44u16.to_be_bytes());
    with_opts[10..12].copy_from_slice(&[0, 0]);
    let sum = crate::wire::checksum::internet_checksum(0, &with_opts[..20]);
    with_opts[10..12].copy_from_slice(&sum.to_be_bytes());
    assert!(p.handle_packet(at(40), false, &with_opts, true));
    let r = p.result();
    golden("malformed_segment", &r);
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.contains("TCP option kind 5 with a bad length")),
        "{:?}",
        r.anomalies
    );
    // The option is ignored, the SYN-ACK is not (RFC 9293 §3.1 MUST-7, as Linux): open.
    assert_eq!(r.state, PortState::Open);
    assert_eq!(r.peer_options.map(|o| o.sack_permitted), Some(false));
}

#[test]
fn a_burst_of_our_segments_is_never_called_foreign() {
    // The request as 48-byte segments (the server's MSS of 1 is raised to Linux's floor,
    // and the path is long): every copy arrives on the tap only after the whole burst was
    // handed to net.
    let mut cfg = config(1000, true);
    if let Some(h) = cfg.http.as_mut() {
        h.path = format!("/{}", "x".repeat(4000));
    }
    let mut p = Probe::new(cfg);
    p.start(at(0));
    pump(&mut p, 0);
    let synack = TcpRepr {
        src_port: 80,
        dst_port: 40000,
        seq: SeqNumber(7000),
        ack: SeqNumber(1001),
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window: 65535,
        urgent: 0,
        options: TcpOptions {
            mss: Some(1),
            ..TcpOptions::default()
        },
        payload: &[],
    };
    let csum_fixed = packet(SERVER, CLIENT, &synack, 64);
    p.handle_packet(at(40), false, &csum_fixed, false);
    let mut copies = Vec::new();
    while let Some(seg) = p.poll_transmit(at(50)) {
        copies.push(packet(CLIENT, SERVER, &seg.repr(40000, 80), 64));
    }
    assert!(copies.len() > 64, "{} segments", copies.len());
    for c in &copies {
        assert!(p.handle_packet(at(60), true, c, false));
    }
    let r = p.result();
    assert!(!r.segments.iter().any(|s| s.foreign), "{:?}", r.anomalies);
}

/// Run the probe's timers until it is done or `limit_us` passes; returns when it ended.
fn run_timers(p: &mut Probe, limit_us: u64) -> u64 {
    let mut now = 0;
    for _ in 0..1000 {
        let Some(d) = p.poll_timeout() else { break };
        now = (d.as_nanos() - T0) / 1000;
        if now > limit_us {
            break;
        }
        p.handle_timeout(d);
        pump(p, now);
        if p.is_done() {
            break;
        }
    }
    now
}

/// A server that answers our SYN with a bare SYN (simultaneous open, or a "split
/// handshake"): open, with nmap's reason for it, and the exchange goes on.
#[test]
fn bare_syn_reply_is_open_split_handshake_syn() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(50),
        false,
        &server_seg(7000, 0, TcpFlags::SYN, &[]),
        false,
    );
    let out = pump(&mut p, 60);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, TcpFlags::SYN | TcpFlags::ACK);
    p.handle_packet(
        at(100),
        false,
        &server_seg(7000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]),
        false,
    );
    let out = pump(&mut p, 110);
    let request: Vec<u8> = out.iter().flat_map(|s| s.payload.clone()).collect();
    assert!(request.starts_with(b"HEAD /"), "{out:?}");
    let r = p.result();
    assert_eq!(
        (r.state, r.reason.as_str()),
        (PortState::Open, "split-handshake-syn")
    );
    assert_eq!(r.irs, Some(7000));
    assert!(
        !r.segments[2].retransmission,
        "our SYN-ACK is no repeat of the SYN"
    );
    assert_eq!(r.retransmissions, 0);
    assert_eq!(r.legs_ns.get(Leg::SynToSynack), Some(48_000));
    assert_eq!(r.legs_ns.get(Leg::SynackToAck), None);
    assert!(r.leg_notes["synack_to_ack"].contains("simultaneous open"));
    assert!(
        r.segments[1]
            .transitions
            .iter()
            .any(|t| t.to == State::SynReceived)
    );
}

/// The whole response in the SYN-ACK, before our request: the request legs cannot be
/// measured and say why, instead of a clamped 0.
#[test]
fn response_in_the_synack_leaves_request_legs_null_with_a_note() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    p.handle_packet(
        at(50),
        false,
        &server_seg(7000, 1001, TcpFlags::SYN | TcpFlags::ACK, response),
        false,
    );
    pump(&mut p, 60);
    let r = p.result();
    golden("response_in_synack", &r);
    assert_eq!(r.http.as_ref().map(|h| h.status), Some(200));
    assert_eq!(r.legs_ns.get(Leg::RequestToComplete), None);
    assert_eq!(r.legs_ns.get(Leg::RequestToFirstByte), None);
    assert!(r.leg_notes["request_to_complete"].contains("before our request"));
    assert!(r.leg_notes.contains_key("request_to_first_byte"));
}

/// A server whose window never opens: the exchange ends at `--timeout` (not after
/// minutes of probing), with a RST the server can accept (SEQ = its RCV.NXT, our
/// SND.UNA, not past the probe byte it never took), and an error that says so.
#[test]
fn zero_window_forever_ends_at_timeout_with_an_acceptable_rst() {
    let err = zero_window_forever(true);
    assert!(err.contains("window stayed closed"), "{err}");
}

/// The window 0 came (a SYN proxy's SYN-ACK) and then nothing at all: the probes were
/// never answered, and the error does not say they were (a fault walk through nft
/// synproxy to a server that drops the SYN read "zero-window probes were answered").
#[test]
fn a_closed_window_nobody_answers_for_is_called_silence() {
    let err = zero_window_forever(false);
    assert!(
        err.contains("nothing answered our zero-window probes") && err.contains("SYN proxy"),
        "{err}"
    );
    assert!(!err.contains("were answered"), "{err}");
}

/// A SYN-ACK with window 0, then each zero-window probe answered "still zero" (`answer`)
/// or by nothing, until `--timeout`: the probe's error.
fn zero_window_forever(answer: bool) -> String {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    let mut synack = server_seg(7000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]);
    // Window 0 (bytes 34..36 of the packet: 20 of IP, then 14 into TCP); checksum fixed.
    synack[34..36].copy_from_slice(&[0, 0]);
    let fixed = crate::wire::TcpRepr::parse_unchecked(&synack[20..]).unwrap();
    let synack = packet(SERVER, CLIENT, &fixed, 64);
    p.handle_packet(at(50), false, &synack, false);
    pump(&mut p, 60);
    let mut now = 60;
    // Answer every probe with "still zero".
    for _ in 0..100 {
        let Some(d) = p.poll_timeout() else { break };
        now = (d.as_nanos() - T0) / 1000;
        p.handle_timeout(d);
        let out = pump(&mut p, now);
        if p.is_done() {
            break;
        }
        if answer && out.iter().any(|s| s.payload.len() == 1) {
            let mut zero = server_seg(7001, 1001, TcpFlags::ACK, &[]);
            zero[34..36].copy_from_slice(&[0, 0]);
            let fixed = crate::wire::TcpRepr::parse_unchecked(&zero[20..]).unwrap();
            p.handle_packet(
                at(now + 20),
                false,
                &packet(SERVER, CLIENT, &fixed, 64),
                false,
            );
            pump(&mut p, now + 25);
        }
    }
    assert!(p.is_done());
    // `--timeout` (5 s) after the handshake, not later.
    assert!(now <= 5_000_100, "ended at {now} µs");
    let r = p.result();
    let rst = r
        .segments
        .iter()
        .rev()
        .find(|s| s.flags.rst())
        .expect("a RST");
    assert_eq!(rst.seq, 1001, "{:?}", r.segments);
    r.error.unwrap_or_default()
}

/// Unanswered retransmissions while the server keeps talking: not "stopped answering".
#[test]
fn server_that_answers_but_never_acks_is_not_called_silent() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(50),
        false,
        &server_seg(7000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]),
        false,
    );
    pump(&mut p, 60);
    let mut now = 60;
    for _ in 0..100 {
        let Some(d) = p.poll_timeout() else { break };
        now = (d.as_nanos() - T0) / 1000;
        p.handle_timeout(d);
        pump(&mut p, now);
        if p.is_done() {
            break;
        }
        // A duplicate ACK of the SYN only, never of the request.
        p.handle_packet(
            at(now + 20),
            false,
            &server_seg(7001, 1001, TcpFlags::ACK, &[]),
            false,
        );
        pump(&mut p, now + 25);
    }
    let r = p.result();
    let err = r.error.unwrap_or_default();
    assert!(!err.contains("stopped answering"), "{err}");
    assert!(
        err.contains("never acknowledged") || err.contains("no complete HTTP response"),
        "{err}"
    );
    let _ = run_timers(&mut p, now);
}

/// URG is reported in the segment record.
#[test]
fn urgent_pointer_is_in_the_segment_record() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    let seg = TcpRepr {
        src_port: 80,
        dst_port: 40000,
        seq: SeqNumber(7000),
        ack: SeqNumber(1001),
        flags: TcpFlags::SYN | TcpFlags::ACK | TcpFlags::URG,
        window: 1000,
        urgent: 9,
        options: TcpOptions::default(),
        payload: &[],
    };
    p.handle_packet(at(50), false, &packet(SERVER, CLIENT, &seg, 64), false);
    let r = p.result();
    golden("urgent_pointer", &r);
    assert_eq!(r.segments[1].urgent, Some(9));
    assert_eq!(r.segments[0].urgent, None);
    assert!(r.anomalies.iter().any(|a| a.contains("urgent pointer 9")));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["segments"][1]["urgent"], 9);
    assert!(json["segments"][0].get("urgent").is_none());
}

/// A probe past its handshake with the request sent: (probe, the server's next seq, the
/// ack that covers our request).
fn requested(isn: u32, irs: u32) -> (Probe, u32, u32) {
    requested_with(crate::probe::log::Bounds::DEFAULT, isn, irs)
}

/// [`requested`] with a segment log that keeps `bounds`.
fn requested_with(bounds: crate::probe::log::Bounds, isn: u32, irs: u32) -> (Probe, u32, u32) {
    requested_from(Probe::with_log_bounds(config(isn, true), bounds), isn, irs)
}

/// [`requested`] for a probe made with a configuration of the test's own (ISN `isn`).
fn requested_from(mut p: Probe, isn: u32, irs: u32) -> (Probe, u32, u32) {
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(50),
        false,
        &server_seg(irs, isn.wrapping_add(1), TcpFlags::SYN | TcpFlags::ACK, &[]),
        false,
    );
    let out = pump(&mut p, 60);
    let req_len: u32 = out.iter().map(|s| s.payload.len() as u32).sum();
    (p, irs + 1, isn.wrapping_add(1).wrapping_add(req_len))
}

/// Feeds `data` to the probe in segments of `chunk` bytes, from `seq`; returns the next seq.
fn feed(p: &mut Probe, mut seq: u32, ack: u32, data: &[u8], chunk: usize, t_us: u64) -> u32 {
    for (i, c) in data.chunks(chunk).enumerate() {
        let t = t_us + i as u64;
        p.handle_packet(at(t), false, &server_seg(seq, ack, TcpFlags::ACK, c), false);
        pump(p, t);
        seq = seq.wrapping_add(c.len() as u32);
    }
    seq
}

/// A request the server never answered is in the record all the same: `http` is null
/// (no response), `request_sent` says what left and where, and it reads back.
#[test]
fn an_unanswered_request_is_recorded_as_sent() {
    let isn = u32::MAX - 20; // its first byte's seq wraps like any other
    let (mut p, _, _) = requested(isn, 9_000);
    let now = run_timers(&mut p, 600_000_000);
    assert!(p.is_done(), "ended at {now} µs");
    let r = p.result();
    assert_eq!(r.http, None);
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("no complete HTTP response")),
        "{:?}",
        r.error
    );
    let q = r.request_sent.clone().expect("the request left");
    assert_eq!(q.line, "HEAD / HTTP/1.1");
    assert_eq!(q.seq, isn.wrapping_add(1));
    let carrier = r
        .segments
        .iter()
        .find(|s| s.dir == Dir::Out && s.len > 0)
        .unwrap();
    assert_eq!((carrier.seq, carrier.t_ns), (q.seq, q.t_ns));
    let line = serde_json::to_string(&r).unwrap();
    assert!(
        line.contains("\"request_sent\":{\"line\":\"HEAD / HTTP/1.1\""),
        "{line}"
    );
    assert_eq!(ProbeResult::from_json_line(&line).unwrap(), r);
}

/// The server acknowledges our request at `at_us` (`ack`, its sequence number `seq`); what
/// the probe sends then goes out at `pump_us`.
fn request_acked(p: &mut Probe, seq: u32, ack: u32, at_us: u64, pump_us: u64) {
    p.handle_packet(
        at(at_us),
        false,
        &server_seg(seq, ack, TcpFlags::ACK, &[]),
        false,
    );
    pump(p, pump_us);
}

/// The server's request ACK, then its response as a path that drops big packets leaves
/// it: the short last segment and the FIN, never the full-sized one before them.
fn black_holed_response(p: &mut Probe, seq: u32, ack: u32, first: &[u8], tail: usize) {
    request_acked(p, seq, ack, 200, 200);
    let seq = feed(p, seq, ack, first, first.len().max(1), 250);
    black_holed_response_after(p, seq, ack, 1460, tail);
}

/// The tail of a black-holed response: `hole` bytes from `seq` missing, then `tail` bytes
/// and the FIN.
fn black_holed_response_after(p: &mut Probe, seq: u32, ack: u32, hole: u32, tail: usize) {
    let fin = TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN;
    let tail = vec![b'h'; tail];
    p.handle_packet(
        at(300),
        false,
        &server_seg(seq + hole, ack, fin, &tail),
        false,
    );
    pump(p, 300);
}

/// Only the server's short last segment and its FIN come; the full-sized one before them
/// never does, however often the server sends it again. At `--timeout` the error says
/// which bytes are missing and calls it what it looks like — a path MTU black hole on the
/// way back (RFC 2923 §2.1) — with the MSS every IPv4 path carries to check it.
#[test]
fn a_hole_that_only_small_segments_pass_is_called_a_black_hole_on_the_way_back() {
    let (mut p, seq, ack) = requested(1000, 9_000);
    black_holed_response(&mut p, seq, ack, &[], 649);
    let now = run_timers(&mut p, 60_000_000);
    assert!(p.is_done(), "ended at {now} µs");
    let err = p.result().error.expect("no response");
    assert!(
        err.starts_with(
            "no complete HTTP response within 5s: bytes 1–1460 from the server never arrived, \
             though 649 bytes after them and its FIN did — no segment that came carried more \
             than 649 bytes where a full-sized one carries 1460"
        ),
        "{err}"
    );
    assert!(
        err.contains("(a path MTU black hole, RFC 2923 §2.1); `--mss 536` asks the server"),
        "{err}"
    );
}

/// A middlebox clamped the MSS our SYN offered (1460 → 1000): the server's segments carry
/// 988 bytes, two of them arrive, two are lost, then one more and the FIN. Segments of
/// that size passed, so the hole is loss: no black hole is blamed and no `--mss` advised;
/// the error names the clamping (a walk: it was called a black hole).
#[test]
fn a_hole_behind_a_clamped_mss_is_loss_not_a_black_hole() {
    let (mut p, seq, ack) = requested(1000, 9_000);
    request_acked(&mut p, seq, ack, 200, 200);
    let mut head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    head.resize(2 * 988, b'a');
    let next = feed(&mut p, seq, ack, &head, 988, 250);
    let fin = TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN;
    p.handle_packet(
        at(300),
        false,
        &server_seg(next + 2 * 988, ack, fin, &[b'h'; 988]),
        false,
    );
    pump(&mut p, 300);
    run_timers(&mut p, 60_000_000);
    let err = p.result().error.expect("no response");
    assert!(
        err.contains(
            ": bytes 1977–3952 from the server never arrived, though 988 bytes after them and its \
             FIN did — the server's segments carried at most 988 bytes, where a full-sized one \
             carries 1460, and several of that size came: a middlebox on the path seems to lower \
             the MSS our SYN offered (MSS clamping)"
        ),
        "{err}"
    );
    assert!(
        !err.contains("black hole") && !err.contains("--mss"),
        "{err}"
    );
}

/// A hole after full-sized segments came is loss, not the path's size limit: the bytes
/// are named, no black hole is.
#[test]
fn a_hole_after_full_sized_segments_is_named_without_blaming_the_path_mtu() {
    let (mut p, seq, ack) = requested(1000, 9_000);
    let mut head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    head.resize(1460, b'a');
    black_holed_response(&mut p, seq, ack, &head, 1460);
    run_timers(&mut p, 60_000_000);
    let err = p.result().error.expect("no response");
    assert!(
        err.contains(": bytes 1461–2920 from the server never arrived, though 1460 bytes after them and its FIN did; connection reset"),
        "{err}"
    );
}

/// Holes the path's size limit cannot explain are named without blaming it: a small one
/// after a bigger segment came (loss), and a small one before a bare FIN (below what every
/// path carries).
#[test]
fn holes_no_black_hole_explains_are_named_without_blaming_the_path() {
    let mut head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    head.resize(1000, b'a');
    let (mut p, seq, ack) = requested(1000, 9_000);
    // 1000 bytes came, then 100 are missing before the last 460 and the FIN.
    request_acked(&mut p, seq, ack, 200, 200);
    let next = feed(&mut p, seq, ack, &head, 1000, 250);
    let fin = TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN;
    p.handle_packet(
        at(300),
        false,
        &server_seg(next + 100, ack, fin, &[b'h'; 460]),
        false,
    );
    pump(&mut p, 300);
    run_timers(&mut p, 60_000_000);
    let err = p.result().error.expect("no response");
    assert!(
        err.contains(": bytes 1001–1100 from the server never arrived, though 460 bytes after them and its FIN did; connection reset"),
        "{err}"
    );
    // 50 bytes lost, then a bare FIN: no data segment came at all, but 50 bytes is less
    // than any path carries.
    let (mut p, seq, ack) = requested(1000, 9_000);
    request_acked(&mut p, seq, ack, 200, 200);
    let fin = TcpFlags::ACK | TcpFlags::FIN;
    p.handle_packet(at(300), false, &server_seg(seq + 50, ack, fin, &[]), false);
    pump(&mut p, 300);
    run_timers(&mut p, 60_000_000);
    let err = p.result().error.expect("no response");
    assert!(
        err.contains(
            ": bytes 1–50 from the server never arrived, though its FIN did; connection reset"
        ),
        "{err}"
    );
}

/// request→first byte ends at the response's first byte, not at whatever data came first:
/// reordered, it is the later-arriving first segment; lost for good, the leg is null and
/// says why (the record's view and every output read the leg).
#[test]
fn the_first_byte_is_the_responses_first_byte() {
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n".to_vec();
    let tail = b"Connection: close\r\n\r\n".to_vec();
    // Reordered: the tail at 300 µs, the head at 400 µs.
    let (mut p, seq, ack) = requested(1000, 9_000);
    let req_at = p.result().request_sent.expect("sent").t_ns;
    let late = seq + head.len() as u32;
    p.handle_packet(
        at(300),
        false,
        &server_seg(late, ack, TcpFlags::ACK, &tail),
        false,
    );
    pump(&mut p, 300);
    p.handle_packet(
        at(400),
        false,
        &server_seg(seq, ack, TcpFlags::ACK, &head),
        false,
    );
    pump(&mut p, 400);
    let r = p.result();
    assert_eq!(r.http.as_ref().map(|h| h.status), Some(200));
    // From the request to the head's segment (the later one), not the tail's.
    let head_at = r
        .segments
        .iter()
        .find(|s| s.dir == Dir::In && s.len as usize == head.len())
        .expect("the head")
        .t_ns;
    let want = u64::try_from(head_at - req_at).expect("after the request");
    assert_eq!(r.legs_ns.get(Leg::RequestToFirstByte), Some(want));
    // 100 µs after the tail's arrival, which the old leg ended at.
    let tail_at = r
        .segments
        .iter()
        .find(|s| s.dir == Dir::In && s.len as usize == tail.len())
        .expect("the tail")
        .t_ns;
    assert_eq!(head_at - tail_at, 100_000);
    // Lost for good: only the tail came.
    head.clear();
    let (mut p, seq, ack) = requested(1000, 9_000);
    black_holed_response(&mut p, seq, ack, &head, 649);
    run_timers(&mut p, 60_000_000);
    let r = p.result();
    assert_eq!(r.legs_ns.get(Leg::RequestToFirstByte), None);
    assert_eq!(
        r.leg_notes.get("request_to_first_byte").map(String::as_str),
        Some("the response's first byte never arrived, though later bytes of it did")
    );
}

/// A RST that says why (RFC 9293 §3.5.3) is quoted in the error.
#[test]
fn a_rst_that_says_why_is_quoted() {
    let (mut p, seq, ack) = requested(1000, 9_000);
    let rst = server_seg(
        seq,
        ack,
        TcpFlags::RST | TcpFlags::ACK,
        b"blocked by policy 42\r\n",
    );
    p.handle_packet(at(200), false, &rst, false);
    pump(&mut p, 200);
    assert_eq!(
        p.result().error.as_deref(),
        Some(
            "connection reset by the server in ESTABLISHED before any byte of the response; its RST said \"blocked by policy 42\\r\\n\""
        )
    );
}

/// A RST with another TTL than every segment the server sent (a firewall resetting the
/// connection a hop nearer: 65 where the server's came with 64) is said not to be the
/// server's (fault walk: `reject with tcp reset` on a router read "reset by the server");
/// one with the server's TTL is the server's. With only the handshake to compare (it may
/// have been a SYN proxy's), the note says either may be.
#[test]
fn a_rst_with_another_ttl_than_the_servers_is_not_blamed_on_it() {
    let ttl_rst = |p: &mut Probe, seq: u32, ack: u32, ttl: u8| {
        let rst = server_seg(seq, ack, TcpFlags::RST | TcpFlags::ACK, &[]);
        let fixed = crate::wire::TcpRepr::parse_unchecked(&rst[20..]).unwrap();
        p.handle_packet(at(900), false, &packet(SERVER, CLIENT, &fixed, ttl), false);
        pump(p, 900);
        p.result().error.unwrap_or_default()
    };
    let strong = "the RST came with TTL 65 where every segment of the server's came with 64: \
                  it was sent from fewer hops away than the server";
    for (rst_ttl, blamed) in [(65, false), (64, true)] {
        // Part of the response came (TTL 64), then the RST.
        let (mut p, seq, ack) = requested(1000, 9_000);
        let seq = feed(&mut p, seq, ack, b"HTTP/1.1 200 OK\r\n", 100, 300);
        let err = ttl_rst(&mut p, seq, ack, rst_ttl);
        assert!(
            err.starts_with(
                "connection reset by the server in ESTABLISHED after 17 bytes of the response \
                 head, before its end"
            ),
            "{err}"
        );
        assert_eq!(!err.contains(strong), blamed, "{err}");
        assert!(!err.contains("SYN proxy"), "{err}");
    }
    // Only the handshake came: a SYN proxy may have answered it.
    let (mut p, seq, ack) = requested(1000, 9_000);
    let err = ttl_rst(&mut p, seq, ack, 63);
    assert!(
        err.contains("the RST came with TTL 63 where the server's handshake came with 64: the two came from different hops — a firewall resetting the connection, or a SYN proxy"),
        "{err}"
    );
}

/// A RST that refuses our SYN and says why is quoted in the record's notes (the port is
/// closed; the reason is the server's or a firewall's).
#[test]
fn a_refusing_rst_that_says_why_is_noted() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    let rst = server_seg(
        0,
        1001,
        TcpFlags::RST | TcpFlags::ACK,
        b"port closed by policy",
    );
    p.handle_packet(at(50), false, &rst, false);
    pump(&mut p, 50);
    let r = p.result();
    assert_eq!(r.state, PortState::Closed);
    assert!(
        r.anomalies
            .contains(&"the RST that refused our SYN said \"port closed by policy\"".to_string()),
        "{:?}",
        r.anomalies
    );
}

/// A server that takes our FIN after a complete response but never closes its own side
/// (it ignored `Connection: close`): the probe did what it was asked — exit 0, a note,
/// the client's close, and a RST ends the server's half-open connection (curl returns at
/// once; its kernel's FIN-WAIT-2 lingers orphaned).
#[test]
fn a_server_that_keeps_its_side_open_after_the_response_is_a_note_not_a_failure() {
    let (mut p, seq, ack) = requested(1000, 9_000);
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let next = feed(&mut p, seq, ack, head, head.len(), 200);
    // `--linger` passes: our FIN.
    let d = p.poll_timeout().expect("the linger deadline");
    p.handle_timeout(d);
    let out = pump(&mut p, 300_000);
    let fin = out.iter().find(|s| s.flags.fin()).expect("our FIN");
    let fin_ack = server_seg(next, fin.seq.0.wrapping_add(1), TcpFlags::ACK, &[]);
    p.handle_packet(at(300_100), false, &fin_ack, false);
    pump(&mut p, 300_100);
    run_timers(&mut p, 60_000_000);
    assert!(p.is_done());
    let r = p.result();
    assert_eq!(r.error, None);
    assert_eq!(r.http.as_ref().map(|h| h.status), Some(200));
    assert_eq!(r.close_initiator, Some(CloseInitiator::Client));
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.starts_with("the server acknowledged our FIN but kept its side")),
        "{:?}",
        r.anomalies
    );
    let last = r.segments.last().expect("segments");
    assert!(last.dir == Dir::Out && last.flags.rst(), "{last:?}");
}

/// Our close completed (both FINs acknowledged), but the server sends its FIN again every
/// 150 ms, sooner than TIME-WAIT (250 ms) ends, for longer than `--timeout`: our ACKs of it
/// are lost on the way back. The exchange was complete; Linux's client returned long
/// before. A note, no error, and no RST (TIME-WAIT ends without a word). A fault walk's
/// scripted server had "close did not finish within 1s (stuck in TIME-WAIT); connection
/// reset" and exit 1 for it, with no RST sent.
#[test]
fn fins_again_in_time_wait_past_the_timeout_are_a_note_not_a_failure() {
    let (mut p, seq, ack) = requested(1000, 9_000);
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let next = feed(&mut p, seq, ack, head, head.len(), 200);
    // `--linger` passes: our FIN.
    let d = p.poll_timeout().expect("the linger deadline");
    p.handle_timeout(d);
    let t0 = (d.as_nanos() - T0) / 1000;
    let out = pump(&mut p, t0);
    let fin = out.iter().find(|s| s.flags.fin()).expect("our FIN");
    let fin_ack = server_seg(
        next,
        fin.seq.0.wrapping_add(1),
        TcpFlags::FIN | TcpFlags::ACK,
        &[],
    );
    let mut sent_after = Vec::new();
    let mut t = t0 + 100;
    // Bounded: 60 s of FINs every 150 ms; the probe must end long before.
    for _ in 0..400 {
        while let Some(d) = p.poll_timeout() {
            let due = (d.as_nanos() - T0) / 1000;
            if due > t {
                break;
            }
            p.handle_timeout(d);
            sent_after.extend(pump(&mut p, due));
        }
        if p.is_done() {
            break;
        }
        p.handle_packet(at(t), false, &fin_ack, false);
        sent_after.extend(pump(&mut p, t));
        t += 150_000;
    }
    assert!(p.is_done(), "still running at {t} µs");
    // --timeout (5 s) after the close began, not the hard limit.
    assert!(t < t0 + 6_000_000, "ended at {t} µs");
    let r = p.result();
    assert_eq!(r.error, None);
    assert_eq!(r.close_initiator, Some(CloseInitiator::Client));
    assert!(
        r.anomalies.iter().any(|a| a.starts_with("the server kept sending its FIN again in TIME-WAIT (")
            && a.ends_with(" times; our ACKs of it lost on the way back, or ignored), past --timeout (5s) after our close began: TIME-WAIT cut short")),
        "{:?}",
        r.anomalies
    );
    assert!(
        sent_after.iter().all(|s| !s.flags.rst()),
        "no RST from TIME-WAIT: {sent_after:?}"
    );
}

/// `--time-wait` longer than what `--timeout` leaves of the close, and the server's FIN
/// sent once: TIME-WAIT is waited out as asked, no note (a review's repro, `lab --no-http
/// --time-wait 3s --timeout 1s`, said "the server kept sending its FIN again" of a FIN
/// sent once, and cut TIME-WAIT at 1 s).
#[test]
fn a_time_wait_longer_than_the_timeout_is_waited_out_without_a_note() {
    let mut cfg = config(1000, true);
    cfg.tcp.time_wait = Duration::from_secs(3);
    cfg.timeout = Duration::from_secs(1);
    let mut p = in_time_wait(requested_from(Probe::new(cfg), 1000, 9_000));
    let t0 = 200_400;
    run_timers(&mut p, 60_000_000);
    assert!(p.is_done());
    let r = p.result();
    assert_eq!(r.error, None);
    assert!(
        !r.anomalies.iter().any(|a| a.contains("TIME-WAIT")),
        "{:?}",
        r.anomalies
    );
    let ended = u64::try_from(r.timers.last().expect("TIME-WAIT's end").t_ns / 1000).unwrap();
    assert!(
        ended > t0 + 2_900_000,
        "TIME-WAIT ended at {ended} µs, entered at {t0}"
    );
}

/// The same without a request (`--no-http`): a listener that never accepts takes our FIN
/// and keeps its side open. There was no response and no `Connection: close` to ignore,
/// so the note names neither (a fault walk's survey of 2 000 such ports said both).
#[test]
fn a_server_that_keeps_its_side_open_without_a_request_is_not_said_to_ignore_one() {
    let mut p = Probe::new(config(1_000, false));
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(50),
        false,
        &server_seg(9_000, 1_001, TcpFlags::SYN | TcpFlags::ACK, &[]),
        false,
    );
    let out = pump(&mut p, 60);
    let fin = out
        .iter()
        .find(|s| s.flags.fin())
        .expect("--no-http closes at once");
    let fin_ack = server_seg(9_001, fin.seq.0.wrapping_add(1), TcpFlags::ACK, &[]);
    p.handle_packet(at(7_000), false, &fin_ack, false);
    pump(&mut p, 7_000);
    run_timers(&mut p, 60_000_000);
    assert!(p.is_done());
    let r = p.result();
    assert_eq!(r.error, None);
    assert_eq!(r.close_initiator, Some(CloseInitiator::Client));
    let note = r
        .anomalies
        .iter()
        .find(|a| a.starts_with("the server acknowledged our FIN but kept its side"))
        .unwrap_or_else(|| panic!("{:?}", r.anomalies));
    assert_eq!(
        note,
        "the server acknowledged our FIN but kept its side of the connection open for 5s: reset"
    );
}

/// With timestamps on, every segment carries 12 bytes of option: a full-sized one from a
/// server whose MSS and ours are 1460 carries 1448 bytes. Segments of 1448 came, so a hole
/// after them is loss, not the path's size limit.
#[test]
fn with_timestamps_a_segment_of_mss_less_12_is_full_sized() {
    let mut cfg = config(1000, true);
    cfg.tcp.timestamps = true;
    let mut p = Probe::new(cfg);
    p.start(at(0));
    let syn = pump(&mut p, 0);
    let tsval = syn[0].options.timestamps.expect("our SYN's timestamps").0;
    let ts = TcpOptions {
        timestamps: Some((5_000, tsval)),
        ..Default::default()
    };
    let seg = |seq: u32, ack: u32, flags: TcpFlags, payload: &[u8], o: TcpOptions| {
        let repr = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            flags,
            window: 509,
            urgent: 0,
            options: o,
            payload,
        };
        packet(SERVER, CLIENT, &repr, 64)
    };
    let synack = TcpOptions {
        mss: Some(1460),
        wscale: Some(7),
        sack_permitted: true,
        ..ts
    };
    let flags = TcpFlags::SYN | TcpFlags::ACK;
    p.handle_packet(at(50), false, &seg(9_000, 1001, flags, &[], synack), false);
    let out = pump(&mut p, 60);
    let ack = 1001 + out.iter().map(|s| s.payload.len() as u32).sum::<u32>();
    p.handle_packet(
        at(200),
        false,
        &seg(9_001, ack, TcpFlags::ACK, &[], ts),
        false,
    );
    pump(&mut p, 200);
    let mut head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    head.resize(1448, b'a');
    p.handle_packet(
        at(250),
        false,
        &seg(9_001, ack, TcpFlags::ACK, &head, ts),
        false,
    );
    pump(&mut p, 250);
    // Two full-sized segments missing, then the last one with the FIN.
    let fin = TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN;
    let tail = seg(9_001 + 3 * 1448, ack, fin, &[b'h'; 1448], ts);
    p.handle_packet(at(300), false, &tail, false);
    pump(&mut p, 300);
    run_timers(&mut p, 60_000_000);
    let err = p.result().error.expect("no response");
    assert!(
        err.contains(": bytes 1449–4344 from the server never arrived, though 1448 bytes after them and its FIN did; connection reset"),
        "{err}"
    );
}

/// Already at the MSS every IPv4 path carries, a black hole is still named, without the
/// suggestion to go lower.
#[test]
fn a_black_hole_at_the_floor_mss_is_named_without_a_suggestion() {
    let mut cfg = config(1000, true);
    cfg.tcp.mss = 536;
    let mut p = Probe::new(cfg);
    p.start(at(0));
    pump(&mut p, 0);
    let synack = server_seg(9_000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]);
    p.handle_packet(at(50), false, &synack, false);
    let out = pump(&mut p, 60);
    let ack = 1001 + out.iter().map(|s| s.payload.len() as u32).sum::<u32>();
    black_holed_response_after(&mut p, 9_001, ack, 2 * 536, 200);
    run_timers(&mut p, 60_000_000);
    let err = p.result().error.expect("no response");
    assert!(
        err.contains("bytes 1–1072 from the server never arrived, though 200 bytes after them and its FIN did — no segment that came carried more than 200 bytes where a full-sized one carries 536"),
        "{err}"
    );
    assert!(
        err.contains("even at an MSS of 536, what every IPv4 path must carry")
            && !err.contains("--mss"),
        "{err}"
    );
}

/// The server acknowledges the request and says nothing more: a hung server or a black
/// hole that drops its every segment; the error names both and how to tell them apart,
/// unless our MSS is already one every path carries.
#[test]
fn silence_after_the_request_is_acknowledged_names_both_causes() {
    for (mss, hint) in [(1460, true), (536, false)] {
        let mut cfg = config(1000, true);
        cfg.tcp.mss = mss;
        let mut p = Probe::new(cfg);
        p.start(at(0));
        pump(&mut p, 0);
        let synack = server_seg(9_000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]);
        p.handle_packet(at(50), false, &synack, false);
        let out = pump(&mut p, 60);
        let req: u32 = out.iter().map(|s| s.payload.len() as u32).sum();
        let ack = server_seg(9_001, 1001 + req, TcpFlags::ACK, &[]);
        p.handle_packet(at(200), false, &ack, false);
        pump(&mut p, 200);
        run_timers(&mut p, 60_000_000);
        let err = p.result().error.expect("no response");
        assert!(
            err.contains("within 5s: the server acknowledged the request but sent nothing back"),
            "{err}"
        );
        assert_eq!(err.contains("a server that hangs does this"), hint, "{err}");
        assert_eq!(err.contains("`--mss 536`"), hint, "{err}");
        // At any MSS: a stateful box that forgot the connection drops the answer too.
        assert!(
            err.contains("a stateful firewall or NAT on the path"),
            "{err}"
        );
    }
}

/// Runs the probe's timers up to `until_us`, sending what they queue; returns what went.
fn advance(p: &mut Probe, until_us: u64) -> Vec<tcp::Segment> {
    let mut sent = Vec::new();
    for _ in 0..1000 {
        let Some(d) = p.poll_timeout() else { break };
        let now = (d.as_nanos() - T0) / 1000;
        if now > until_us || p.is_done() {
            break;
        }
        p.handle_timeout(d);
        sent.extend(pump(p, now));
    }
    sent
}

/// A request lost once and acknowledged when it came again, 3 s after it first left: the
/// server has had it only since then, so `--timeout` (5 s) counts from that
/// acknowledgment, not from the first send — seen on the wire as a survey through 10%
/// loss giving up 1.5 s after the acknowledgment, while the server's answer was still to
/// be retransmitted. A server silent after such an acknowledgment still ends the probe
/// at acknowledgment + `--timeout`.
#[test]
fn timeout_counts_from_the_acknowledgment_of_a_repeated_request() {
    for answers in [true, false] {
        let mut p = Probe::new(config(1000, true));
        p.start(at(0));
        pump(&mut p, 0);
        let synack = server_seg(9_000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]);
        p.handle_packet(at(50_000), false, &synack, false);
        let out = pump(&mut p, 50_000);
        let req: u32 = out.iter().map(|s| s.payload.len() as u32).sum();
        assert!(req > 0, "the request left: {out:?}");
        // Lost: the retransmission timer sends it again (1 s RTO).
        let again = advance(&mut p, 3_000_000);
        assert!(
            again.iter().any(|s| !s.payload.is_empty()),
            "the request went again: {again:?}"
        );
        let ack = server_seg(9_001, 1001 + req, TcpFlags::ACK, &[]);
        p.handle_packet(at(3_000_000), false, &ack, false);
        pump(&mut p, 3_000_000);
        // Past the first send + 5 s: still waiting.
        advance(&mut p, 7_900_000);
        assert!(
            !p.is_done(),
            "gave up before ack + timeout: {:?}",
            p.result().error
        );
        if answers {
            let response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            let fin = TcpFlags::PSH | TcpFlags::ACK | TcpFlags::FIN;
            p.handle_packet(
                at(7_900_000),
                false,
                &server_seg(9_001, 1001 + req, fin, response),
                false,
            );
            pump(&mut p, 7_900_000);
            // Our FIN (the server closed first) is acknowledged: the close completes.
            let last = 9_001 + response.len() as u32 + 1;
            let fin_ack = server_seg(last, 1001 + req + 1, TcpFlags::ACK, &[]);
            p.handle_packet(at(7_950_000), false, &fin_ack, false);
            pump(&mut p, 7_950_000);
            run_timers(&mut p, 60_000_000);
            let r = p.result();
            assert_eq!(r.error, None);
            assert_eq!(r.http.map(|h| h.status), Some(200));
        } else {
            advance(&mut p, 8_000_000);
            assert!(p.is_done(), "still waiting past ack + timeout");
            let err = p.result().error.expect("no response");
            assert!(err.contains("no complete HTTP response within 5s"), "{err}");
        }
    }
}

/// No request without a connection: a closed port's record has no `request_sent` (nor
/// the key: records without a request are as before).
#[test]
fn no_connection_no_request_sent() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(50),
        false,
        &server_seg(0, 1001, TcpFlags::RST | TcpFlags::ACK, &[]),
        false,
    );
    let r = p.result();
    assert_eq!(r.request_sent, None);
    assert!(!serde_json::to_string(&r).unwrap().contains("request_sent"));
}

#[test]
fn awaiting_response_any_number_of_headers_in_many_segments_is_read() {
    let (mut p, seq, ack) = requested(1_000, 9_000);
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..3_000 {
        head.extend_from_slice(format!("Set-Cookie: c{i}=v\r\n").as_bytes());
    }
    head.extend_from_slice(b"Server: big\r\n\r\n");
    feed(&mut p, seq, ack, &head, 1448, 300);
    let r = p.result();
    assert_eq!(r.error, None, "{:?}", r.anomalies);
    let h = r.http.expect("the head was read");
    assert_eq!(h.headers["server"], "big");
    assert_eq!(h.headers["set-cookie"].matches(", ").count(), 2_999);
}

#[test]
fn awaiting_response_head_over_the_limit_is_refused_as_too_large() {
    let (mut p, seq, ack) = requested(1_000, 9_000);
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    while head.len() <= MAX_HEAD {
        head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    feed(&mut p, seq, ack, &head, 16_000, 300);
    let r = p.result();
    let e = r.error.expect("refused");
    assert!(e.contains("larger than 1024 KiB"), "{e}");
    assert!(r.http.is_none());
}

#[test]
fn awaiting_response_not_http_with_the_servers_fin_says_the_server_closed_first() {
    let (mut p, seq, ack) = requested(1_000, 9_000);
    let junk = b"SSH-2.0-OpenSSH_9.6\r\n";
    p.handle_packet(
        at(300),
        false,
        &server_seg(
            seq,
            ack,
            TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK,
            junk,
        ),
        false,
    );
    pump(&mut p, 300);
    let r = p.result();
    assert!(
        r.error.as_deref().unwrap_or("").contains("not HTTP"),
        "{:?}",
        r.error
    );
    assert_eq!(r.close_initiator, Some(CloseInitiator::Server));
}

#[test]
fn awaiting_response_not_http_without_fin_is_our_reset() {
    let (mut p, seq, ack) = requested(1_000, 9_000);
    feed(&mut p, seq, ack, b"SSH-2.0-OpenSSH_9.6\r\n", 1448, 300);
    let r = p.result();
    // And what came, so the banner names what listens there.
    assert!(
        r.error.as_deref().unwrap_or("").contains("not HTTP")
            && r.error
                .as_deref()
                .unwrap_or("")
                .contains("(it began \"SSH-2.0-OpenSSH_…\")"),
        "{:?}",
        r.error
    );
    assert_eq!(r.close_initiator, Some(CloseInitiator::Reset));
}

#[test]
fn a_dropped_fragment_is_noted_unless_it_changes_nothing() {
    use crate::wire::defrag::Discard;
    let (mut p, _, _) = requested(1_000, 9_000);
    p.fragment_dropped(at(300), Discard::Duplicate);
    p.fragment_dropped(at(300), Discard::Foreign);
    assert!(p.result().anomalies.is_empty());
    p.fragment_dropped(at(310), Discard::Overlap);
    let r = p.result();
    assert_eq!(r.anomalies.len(), 1, "{:?}", r.anomalies);
    assert!(r.anomalies[0].contains("was dropped: it overlapped fragments"));
}

/// `datagram` cut into IPv4 fragments of `piece` data bytes each (a multiple of 8).
fn fragments_of(datagram: &[u8], piece: usize) -> Vec<Vec<u8>> {
    let data = &datagram[20..];
    (0..data.len())
        .step_by(piece)
        .map(|start| {
            let end = (start + piece).min(data.len());
            let mut f = datagram[..20].to_vec();
            f.extend_from_slice(&data[start..end]);
            let total = f.len() as u16;
            f[2..4].copy_from_slice(&total.to_be_bytes());
            let more = if end < data.len() { 0x2000 } else { 0 };
            f[6..8].copy_from_slice(&((start / 8) as u16 | more).to_be_bytes());
            f[10..12].copy_from_slice(&[0, 0]);
            let sum = crate::wire::checksum::internet_checksum(0, &f[..20]);
            f[10..12].copy_from_slice(&sum.to_be_bytes());
            f
        })
        .collect()
}

#[test]
fn syn_sent_fragmented_synack_reassembled_is_open_and_counted() {
    let isn = 1000;
    let mut p = Probe::new(config(isn, false));
    p.start(at(0));
    pump(&mut p, 0);
    let mut synack = server_seg(5000, isn + 1, TcpFlags::SYN | TcpFlags::ACK, &[]);
    synack[6] = 0; // DF clear: a router may fragment it
    synack[10..12].copy_from_slice(&[0, 0]);
    let sum = crate::wire::checksum::internet_checksum(0, &synack[..20]);
    synack[10..12].copy_from_slice(&sum.to_be_bytes());
    // A tiny first fragment (ports and sequence number only, RFC 1858), then the rest.
    let frags = fragments_of(&synack, 8);
    let n = frags.len();
    assert_eq!(n, (synack.len() - 20).div_ceil(8));
    // Fragments fed to the probe as they are are not segments: not ours, no anomaly.
    for f in &frags {
        assert!(!p.handle_packet(at(40), false, f, false));
    }
    assert!(
        p.result().anomalies.is_empty(),
        "{:?}",
        p.result().anomalies
    );
    assert!(p.awaiting_synack());
    // Through the reassembler, as the drivers do.
    let mut defrag = crate::wire::defrag::Defrag::new(false);
    let mut done = None;
    for (i, f) in frags.iter().enumerate() {
        if let crate::wire::defrag::Defragged::Complete(r) =
            defrag.push(at(40 + i as u64), f, false)
        {
            done = Some(r);
        }
    }
    let r = done.expect("reassembled");
    assert_eq!(usize::from(r.fragments), n);
    let last = at(40 + n as u64 - 1);
    assert!(p.handle_datagram(last, false, &r.bytes, false, r.fragments));
    pump(&mut p, 50);
    let res = p.result();
    assert_eq!(
        (res.state, res.reason.as_str()),
        (PortState::Open, "syn-ack")
    );
    let seg = res.segments.iter().find(|s| s.dir == Dir::In).unwrap();
    assert_eq!(usize::from(seg.fragments), n);
    assert_eq!(
        seg.ts_ns,
        last.as_nanos(),
        "stamped when the last fragment came"
    );
    assert_eq!(
        res.legs_ns.get(Leg::SynToSynack),
        Some(last.as_nanos() - at(2).as_nanos())
    );
    let json = serde_json::to_value(&res).unwrap();
    let segs = json["segments"].as_array().unwrap();
    let synack_json = segs.iter().find(|s| s["dir"] == "in").unwrap();
    assert_eq!(synack_json["fragments"], n);
    // Unfragmented segments say nothing: the JSON stays as it was for them.
    assert!(
        segs.iter()
            .filter(|s| s["dir"] == "out")
            .all(|s| s.get("fragments").is_none())
    );
}

#[test]
fn syn_sent_interrupt_is_interrupted_not_filtered() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    p.interrupt(at(500));
    pump(&mut p, 500);
    assert!(p.is_done());
    let r = p.result();
    assert_eq!(
        (r.state, r.reason.as_str(), r.interrupted),
        (PortState::Interrupted, "interrupted", true)
    );
    assert!(crate::probe::stats::Sample::of(&r).is_none());
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        json.contains(r#""state":"interrupted","reason":"interrupted""#),
        "{json}"
    );
    assert_eq!(ProbeResult::from_json_line(&json).unwrap(), r);
}

#[test]
fn established_interrupt_keeps_the_verdict_and_is_marked() {
    let (mut p, _, _) = requested(1_000, 9_000);
    p.interrupt(at(400));
    let out = pump(&mut p, 400);
    assert!(
        out.iter().any(|s| s.flags.rst()),
        "an open connection is reset"
    );
    let r = p.result();
    assert_eq!((r.state, r.interrupted), (PortState::Open, true));
    assert_eq!(r.error.as_deref(), Some("interrupted"));
    assert!(crate::probe::stats::Sample::of(&r).is_none());
}

/// After a complete response the server keeps the connection open past `--linger` (200 ms
/// here): we close first, and the record says the client did.
#[test]
fn lingering_expiry_closes_from_our_side() {
    let (mut p, seq, ack) = requested(1_000, 9_000);
    let head = b"HTTP/1.1 204 No Content\r\n\r\n";
    feed(&mut p, seq, ack, head, 1448, 300);
    assert!(p.result().http.is_some());
    // Nothing from the server: the linger deadline fires and our FIN goes.
    let d = p.poll_timeout().expect("the linger deadline");
    assert_eq!(
        d,
        at(300 + 200_000),
        "linger counts from the completing segment"
    );
    p.handle_timeout(d);
    let out = pump(&mut p, 200_300);
    assert!(out.iter().any(|s| s.flags.fin()), "{out:?}");
    // The server ACKs and closes; our last ACK ends it.
    let srv = seq + head.len() as u32;
    p.handle_packet(
        at(200_400),
        false,
        &server_seg(srv, ack + 1, TcpFlags::FIN | TcpFlags::ACK, &[]),
        false,
    );
    pump(&mut p, 200_400);
    run_timers(&mut p, 2_000_000);
    let r = p.result();
    assert!(p.is_done());
    assert_eq!(r.close_initiator, Some(CloseInitiator::Client));
    assert_eq!(r.error, None);
}

/// Our FIN is never acknowledged and the server never closes: the close gives up within
/// `--timeout` with a RST and says where it was stuck.
#[test]
fn close_that_never_finishes_gives_up_at_timeout() {
    let mut cfg = config(1_000, false);
    cfg.timeout = Duration::from_secs(2);
    let mut p = Probe::new(cfg);
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(50),
        false,
        &server_seg(9_000, 1_001, TcpFlags::SYN | TcpFlags::ACK, &[]),
        false,
    );
    let out = pump(&mut p, 60);
    assert!(
        out.iter().any(|s| s.flags.fin()),
        "--no-http closes at once"
    );
    let end = run_timers(&mut p, 10_000_000);
    assert!(p.is_done());
    assert!(
        end <= 60 + 2_000_000 + 1_000,
        "gave up at {end} µs, later than --timeout"
    );
    let r = p.result();
    let e = r.error.expect("an error");
    assert!(
        e.contains("close did not finish") && e.contains("FIN-WAIT-1"),
        "{e}"
    );
    assert_eq!(r.close_initiator, Some(CloseInitiator::Client));
    let last = r.segments.last().unwrap();
    assert!(last.flags.rst() && last.dir == Dir::Out, "{:?}", last.flags);
}
/// A simultaneous close whose FINs cross at the tap: the linger deadline makes us close
/// (FIN queued and sent), and the server's FIN, which reached the tap a few µs before
/// ours left, is read only after. The record keeps each state change beside its cause:
/// ESTABLISHED → FIN-WAIT-1 with our FIN (our own call), FIN-WAIT-1 → CLOSING with the
/// server's FIN, which the log lists first (it was on the wire first).
fn crossing_fins() -> Probe {
    let (mut p, fin_seq, ack) = fins_crossed();
    p.handle_packet(
        at(200_400),
        false,
        &server_seg(fin_seq + 1, ack.wrapping_add(1), TcpFlags::ACK, &[]),
        false,
    );
    run_timers(&mut p, 2_000_000);
    assert!(p.is_done());
    p
}

/// The FINs of [`crossing_fins`] crossed, the server's read after ours left (CLOSING);
/// with the server's FIN's sequence number and its ACK field.
fn fins_crossed() -> (Probe, u32, u32) {
    let (mut p, seq, ack) = requested(1_000, 5_000);
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    p.handle_packet(
        at(300),
        false,
        &server_seg(seq, ack, TcpFlags::PSH | TcpFlags::ACK, response),
        false,
    );
    pump(&mut p, 305);
    let fin_seq = seq + response.len() as u32;
    // --linger 200ms after the response: we close.
    let deadline = p.poll_timeout().expect("lingering");
    assert_eq!(deadline, at(200_300));
    p.handle_timeout(deadline);
    let our_fin = p.poll_transmit(deadline).expect("our FIN");
    assert!(our_fin.flags.fin());
    assert_eq!(
        our_fin.ack.0, fin_seq,
        "built before the server's FIN was read"
    );
    // The server's FIN was on the tap 3 µs before our FIN's copy: read after we sent.
    p.handle_packet(
        at(200_302),
        false,
        &server_seg(fin_seq, ack, TcpFlags::FIN | TcpFlags::ACK, &[]),
        false,
    );
    let bytes = packet(CLIENT, SERVER, &our_fin.repr(40000, 80), 64);
    assert!(p.handle_packet(at(200_305), true, &bytes, false));
    pump(&mut p, 200_306);
    (p, fin_seq, ack)
}

#[test]
fn fin_wait_1_crossing_fin_read_after_ours_left_keeps_each_change_with_its_cause() {
    let r = crossing_fins().result();
    golden("simultaneous_close_crossing", &r);
    assert_eq!(r.close_initiator, Some(CloseInitiator::Simultaneous));
    let lines: Vec<String> = r
        .segments
        .iter()
        .map(|s| {
            let t: Vec<String> = s.transitions.iter().map(ToString::to_string).collect();
            format!("{:?} {} {}", s.dir, s.flags, t.join(", "))
        })
        .collect();
    let tail: Vec<&str> = lines[lines.len() - 4..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "In F. FIN-WAIT-1 → CLOSING",
            "Out F. ESTABLISHED → FIN-WAIT-1",
            "Out . ",
            "In . CLOSING → TIME-WAIT",
        ],
        "{lines:#?}"
    );
}

/// The user's race (a server that answers and closes at once): our FIN, built before the
/// server's FIN was read, crossed it and carried the stale ACK; the closed server answers
/// it with a RST taken from that ACK field, at its FIN's sequence number (RCV.NXT - 1).
/// Accepted as Linux accepts it in CLOSING: the probe ends there, with no retransmission
/// 200 ms later. The close keeps its initiator (the FINs crossed: `simultaneous`, as
/// without the RST); the RST is a note, not `reset`.
#[test]
fn closing_rst_at_the_servers_fin_seq_ends_the_close_it_began_without_retransmission() {
    let (mut p, fin_seq, _) = fins_crossed();
    p.handle_packet(
        at(200_330),
        false,
        &server_seg(fin_seq, 0, TcpFlags::RST, &[]),
        false,
    );
    assert!(pump(&mut p, 200_331).is_empty(), "nothing answers the RST");
    assert!(p.is_done(), "the RST ended the probe at once");
    let r = p.result();
    assert_eq!(r.retransmissions, 0);
    assert_eq!(r.close_initiator, Some(CloseInitiator::Simultaneous));
    assert_eq!(r.error, None);
    // Our first SYN was on the tap at 2 µs; the RST is the exchange's last segment.
    assert_eq!(r.legs_ns.get(Leg::Total), Some(200_328_000));
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.contains("reset the connection in CLOSING")
                && a.contains("did not yet acknowledge its FIN")),
        "{:#?}",
        r.anomalies
    );
}

/// The server closed first (CLOSE-WAIT, then our FIN: LAST-ACK) and resets a segment of
/// ours that did not acknowledge its FIN: `server`, not `reset`. Any other RST that ends
/// the close is still `reset`.
#[test]
fn last_ack_rst_at_the_servers_fin_seq_keeps_server_but_an_exact_rst_is_reset() {
    for (rst_at_fin, want) in [
        (true, CloseInitiator::Server),
        (false, CloseInitiator::Reset),
    ] {
        let (mut p, seq, ack) = requested(1_000, 5_000);
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let flags = TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK;
        p.handle_packet(
            at(300),
            false,
            &server_seg(seq, ack, flags, response),
            false,
        );
        pump(&mut p, 305);
        assert_eq!(p.conn.state(), State::LastAck);
        let fin_seq = seq + response.len() as u32;
        let rst_seq = if rst_at_fin { fin_seq } else { fin_seq + 1 };
        p.handle_packet(
            at(400),
            false,
            &server_seg(rst_seq, 0, TcpFlags::RST, &[]),
            false,
        );
        assert!(pump(&mut p, 401).is_empty());
        assert!(p.is_done());
        let r = p.result();
        assert_eq!(
            r.close_initiator,
            Some(want),
            "RST at the FIN: {rst_at_fin}"
        );
        assert_eq!(r.retransmissions, 0);
    }
}

/// Ctrl-C in SYN-SENT: nothing was connected, nothing is sent (no RST either way), so
/// there is no close to name: `close_initiator` is null, as when the SYNs time out.
#[test]
fn syn_sent_interrupt_claims_no_reset() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    let d = p.poll_timeout().expect("the SYN's RTO");
    p.handle_timeout(d);
    pump(&mut p, (d.as_nanos() - T0) / 1000);
    p.interrupt(d + Duration::from_millis(300));
    let out = pump(&mut p, (d.as_nanos() - T0) / 1000 + 300_000);
    assert!(out.is_empty(), "{out:?}");
    let r = p.result();
    let flags: Vec<String> = r.segments.iter().map(|s| s.flags.to_string()).collect();
    assert_eq!(flags, ["S", "S"]);
    assert_eq!(r.close_initiator, None);
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""close_initiator":null"#), "{json}");
}

/// Ctrl-C on an open connection: our RST goes out, and `reset` says so.
#[test]
fn established_interrupt_is_our_reset() {
    let (mut p, _, _) = requested(1_000, 9_000);
    p.interrupt(at(400));
    let out = pump(&mut p, 400);
    assert!(out.iter().any(|s| s.flags.rst()));
    assert_eq!(p.result().close_initiator, Some(CloseInitiator::Reset));
}

/// A [`requested`] probe taken to TIME-WAIT at 200.4 ms: a 204 at 0.3 ms, our FIN when
/// `--linger` ran out, the server's FIN+ACK of it.
fn in_time_wait((mut p, seq, ack): (Probe, u32, u32)) -> Probe {
    let head = b"HTTP/1.1 204 No Content\r\n\r\n";
    feed(&mut p, seq, ack, head, 1448, 300);
    let d = p.poll_timeout().expect("the linger deadline");
    p.handle_timeout(d);
    pump(&mut p, 200_300);
    let srv = seq + head.len() as u32;
    p.handle_packet(
        at(200_400),
        false,
        &server_seg(srv, ack + 1, TcpFlags::FIN | TcpFlags::ACK, &[]),
        false,
    );
    pump(&mut p, 200_400);
    assert_eq!(p.conn.state(), State::TimeWait);
    p
}

/// Ctrl-C in TIME-WAIT: the close had completed; nothing is sent and it keeps its
/// initiator.
#[test]
fn time_wait_interrupt_keeps_the_close() {
    let mut p = in_time_wait(requested(1_000, 9_000));
    p.interrupt(at(200_500));
    assert!(pump(&mut p, 200_500).is_empty(), "no RST from TIME-WAIT");
    assert_eq!(p.result().close_initiator, Some(CloseInitiator::Client));
}

/// The caller's deadline (the exporter's scrape timeout) in TIME-WAIT: the exchange had
/// completed, so TIME-WAIT ends early with a note, no error, nothing sent; in SYN-SENT it
/// is the probe's error (`gave up: …`), the port filtered.
#[test]
fn out_of_time_in_time_wait_keeps_the_exchange_a_success() {
    let mut p = in_time_wait(requested(1_000, 9_000));
    p.out_of_time(at(200_500), "the scrape's timeout ran out");
    assert!(
        pump(&mut p, 200_500).is_empty(),
        "nothing sent from TIME-WAIT"
    );
    assert!(p.is_done());
    let r = p.result();
    assert_eq!(r.error, None, "{:?}", r.error);
    assert!(r.succeeded(), "{r:?}");
    assert_eq!(r.close_initiator, Some(CloseInitiator::Client));
    assert!(
        r.anomalies
            .iter()
            .any(|n| n.starts_with("TIME-WAIT ended early at")
                && n.ends_with("the scrape's timeout ran out")),
        "{:?}",
        r.anomalies
    );

    let mut p = Probe::new(config(1_000, true));
    p.start(at(0));
    pump(&mut p, 0);
    p.out_of_time(at(500_000), "the scrape's timeout ran out");
    let r = p.result();
    assert_eq!(
        r.error.as_deref(),
        Some("gave up: the scrape's timeout ran out")
    );
    assert_eq!(r.state.as_str(), "filtered");
}

/// A capture's comments say, packet by packet, what the probe made of each segment when
/// it handled it: the state changes, the legs it ended (with the values the record then
/// has), the request and the completed response.
#[test]
fn packet_notes_name_each_segments_changes_legs_and_http_as_handled() {
    let isn = 1_000;
    let irs = 5_000;
    let mut p = Probe::new(config(isn, true));
    let mut notes: Vec<PacketNote> = Vec::new();
    let mut hand = |p: &mut Probe, t: u64, out: bool, bytes: &[u8]| {
        assert!(p.handle_packet(at(t), out, bytes, false));
        notes.push(p.packet_note());
    };
    p.start(at(0));
    let syn = p.poll_transmit(at(0)).unwrap();
    hand(
        &mut p,
        2,
        true,
        &packet(CLIENT, SERVER, &syn.repr(40000, 80), 64),
    );
    let synack = server_seg(irs, isn + 1, TcpFlags::SYN | TcpFlags::ACK, &[]);
    hand(&mut p, 50, false, &synack);
    let mut req_len = 0;
    while let Some(seg) = p.poll_transmit(at(60)) {
        req_len += seg.payload.len() as u32;
        hand(
            &mut p,
            62,
            true,
            &packet(CLIENT, SERVER, &seg.repr(40000, 80), 64),
        );
    }
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let ack = isn + 1 + req_len;
    hand(
        &mut p,
        300,
        false,
        &server_seg(
            irs + 1,
            ack,
            TcpFlags::PSH | TcpFlags::ACK | TcpFlags::FIN,
            response,
        ),
    );
    while let Some(seg) = p.poll_transmit(at(305)) {
        hand(
            &mut p,
            307,
            true,
            &packet(CLIENT, SERVER, &seg.repr(40000, 80), 64),
        );
    }
    let last = server_seg(irs + 2 + response.len() as u32, ack + 1, TcpFlags::ACK, &[]);
    hand(&mut p, 400, false, &last);
    assert!(p.is_done());

    let legs_of = |n: &PacketNote| n.legs.iter().map(|(l, _)| *l).collect::<Vec<_>>();
    let changes = |n: &PacketNote| {
        n.segment
            .as_ref()
            .map(|s| {
                s.transitions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(changes(&notes[0]), ["CLOSED → SYN-SENT"]);
    assert!(notes[0].legs.is_empty());
    assert_eq!(changes(&notes[1]), ["SYN-SENT → ESTABLISHED"]);
    assert_eq!(notes[1].legs, [(Leg::SynToSynack, 48_000)]);
    assert_eq!(legs_of(&notes[2]), [Leg::SynackToAck], "the bare ACK");
    assert_eq!(notes[3].label.as_deref(), Some("HEAD / HTTP/1.1"));
    let resp = &notes[4];
    assert_eq!(
        legs_of(resp),
        [Leg::RequestToFirstByte, Leg::RequestToComplete]
    );
    assert_eq!(
        resp.label.as_deref(),
        Some("HTTP/1.1 200 OK (response complete)")
    );
    assert_eq!(changes(resp), ["ESTABLISHED → CLOSE-WAIT"]);
    // Our FIN answers at once (ACK and FIN in one segment): it ends the server's FIN→ACK.
    let fin = &notes[5];
    assert_eq!(changes(fin), ["CLOSE-WAIT → LAST-ACK"]);
    assert_eq!(legs_of(fin), [Leg::FinToAck, Leg::FinToPeerFin]);
    let end = notes.last().unwrap();
    assert_eq!(legs_of(end), [Leg::PeerFinToLastAck]);
    assert_eq!(changes(end), ["LAST-ACK → CLOSED"]);
    // Every leg a note named has the value the final record gives it.
    let r = p.result();
    for n in &notes {
        for (leg, ns) in &n.legs {
            assert_eq!(r.legs_ns.get(*leg), Some(*ns), "{leg:?}");
        }
        if let Some(s) = &n.segment {
            assert!(r.segments.contains(s), "{s:?} differs from the record");
        }
    }
    assert!(notes.iter().all(|n| n.notes.is_empty()), "{notes:?}");
}

#[test]
fn packet_notes_carry_what_a_packet_added_to_the_notes() {
    let (mut p, seq, ack) = requested(1_000, 5_000);
    let mut bad = server_seg(seq, ack, TcpFlags::ACK, b"xx");
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(p.handle_packet(at(500), false, &bad, false));
    let n = p.packet_note();
    assert!(n.segment.as_ref().is_some_and(|s| s.bad_checksum));
    assert_eq!(n.notes.len(), 1, "{n:?}");
    assert!(n.notes[0].contains("bad TCP checksum"), "{n:?}");
    // A packet of someone else's connection leaves no note of ours.
    let other = packet(
        SERVER,
        CLIENT,
        &TcpRepr {
            src_port: 81,
            dst_port: 40000,
            seq: SeqNumber(1),
            ack: SeqNumber(1),
            flags: TcpFlags::ACK,
            window: 1,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        },
        64,
    );
    assert!(!p.handle_packet(at(600), false, &other, false));
    assert_eq!(p.packet_note(), PacketNote::default());
}

/// An ICMP error is no segment: its capture comment is what the probe made of it.
#[test]
fn packet_notes_of_icmp_errors_say_what_they_did() {
    let (mut p, syn) = syn_sent();
    // A forged one (wrong sequence number): ignored, and the note says why.
    assert!(p.handle_packet(
        at(10),
        false,
        &icmp_quoting(ROUTER, 3, 1, 0, &syn, 7),
        false
    ));
    let n = p.packet_note();
    assert_eq!((n.segment.is_none(), n.notes.len()), (true, 1), "{n:?}");
    assert!(n.notes[0].starts_with("ignored ICMP host-unreach"), "{n:?}");
    // Our ISN quoted: the attempt is over, the port filtered.
    assert!(p.handle_packet(
        at(20),
        false,
        &icmp_quoting(SERVER, 3, 3, 0, &syn, 1000),
        false
    ));
    let n = p.packet_note();
    assert!(n.segment.is_none() && !n.notes.is_empty(), "{n:?}");
    assert!(n.notes.iter().any(|t| t.contains("port-unreach")), "{n:?}");
}

mod flood;

/// The driver's backstop is never what ends an exchange: a silent server, and one that
/// takes the handshake and then says nothing, both end by the probe's own timers, well
/// inside `hard_limit`.
#[test]
fn every_exchange_ends_before_the_hard_limit() {
    let cfg = config(1_000, true);
    let limit_us = cfg.hard_limit().as_micros() as u64;
    // Silence.
    let mut p = Probe::new(cfg.clone());
    p.start(at(0));
    pump(&mut p, 0);
    let end = run_timers(&mut p, limit_us);
    assert!(
        p.is_done() && end < limit_us / 2,
        "silent: {end} of {limit_us} µs"
    );
    // The handshake, then nothing: the request is retransmitted, then given up.
    let (mut p, _, _) = requested(1_000, 9_000);
    let end = run_timers(&mut p, limit_us);
    assert!(
        p.is_done() && end < limit_us / 2,
        "mute: {end} of {limit_us} µs"
    );
    assert!(p.result().error.is_some());
}

/// Reset with the request unacknowledged (it never reached the server): our RST carries
/// SND.NXT, the server's RCV.NXT is SND.UNA, and it answers with a challenge ACK (RFC 5961
/// §3.2) instead of closing. The probe waits for it and the closed connection answers it
/// with a RST at its ACK number, as Linux's stack does once its socket is gone; without
/// that the server's side stayed ESTABLISHED (walk 14).
#[test]
fn a_challenge_ack_to_our_reset_is_answered_with_a_reset_at_its_ack() {
    let (mut p, seq, ack) = requested(1_000, 9_000);
    let una = 1_001; // the request's first byte: never acknowledged
    assert_ne!(ack, una);
    p.abort(at(5_000_000), "gave up");
    let out = pump(&mut p, 5_000_000);
    assert!(out.iter().any(|s| s.flags.rst()), "{out:?}");
    let wait = p.challenge_wait().expect("data in flight at the reset");
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    assert!(!p.answered_challenge());
    p.handle_packet(
        at(5_000_100),
        false,
        &server_seg(seq, una, TcpFlags::ACK, &[]),
        false,
    );
    let out = pump(&mut p, 5_000_110);
    let rst = out
        .iter()
        .find(|s| s.flags.rst())
        .expect("a RST answering the challenge");
    assert_eq!(rst.seq.0, una, "at the challenge ACK's ACK number");
    assert!(p.answered_challenge());
}

/// Nothing in flight at a reset (the server had acknowledged everything): nothing to wait
/// for.
#[test]
fn a_reset_with_nothing_in_flight_waits_for_no_challenge() {
    let (mut p, seq, ack) = requested(1_000, 9_000);
    request_acked(&mut p, seq, ack, 100, 110);
    p.abort(at(200), "gave up");
    pump(&mut p, 200);
    assert_eq!(p.challenge_wait(), None);
}

/// The request never acknowledged: the wait is pushed on while it is still being sent
/// again (at least three times), so it lasts longer than `--timeout`; the error says how
/// long in all (the fault walk: "within 5s" after 25 s).
#[test]
fn an_extended_wait_says_how_long_it_lasted() {
    // A 2 s RTO floor: by the first deadline the request went only twice.
    let mut cfg = config(1_000, true);
    cfg.tcp.rto_min = Duration::from_secs(2);
    let (mut p, _, _) = requested_from(Probe::new(cfg), 1_000, 9_000);
    // Bounded: each turn fires the probe's next deadline.
    for _ in 0..100 {
        let Some(t) = p.poll_timeout() else { break };
        p.handle_timeout(t);
        let now_us = (t.as_nanos() - at(0).as_nanos()) / 1000;
        pump(&mut p, now_us);
        if p.is_done() {
            break;
        }
    }
    let r = p.result();
    let e = r.error.as_deref().unwrap_or("");
    let timeout = format!("{:?}", config(1_000, true).timeout);
    assert!(
        e.starts_with(&format!(
            "no complete HTTP response within {timeout} of the server's silence ("
        )) && e.contains(" in all, while what we sent was being sent again)"),
        "{e}"
    );
}

mod review15;

/// A server whose segments all arrive outside our receive window (a SYN proxy that handed
/// over another ISN, a firewall rewriting sequence numbers one way only): they may well
/// acknowledge the request, but none can be read. The error says so, rather than only that
/// the server "never acknowledged our request though it sent N segments" (a walk).
#[test]
fn segments_all_dropped_unread_are_named_in_the_error() {
    let (mut p, seq, full_ack) = requested(1_000, 9_000);
    let far = seq.wrapping_add(1_000_000_000);
    let mut now_us = 100;
    // Bounded: each turn is a server segment or one of the probe's deadlines.
    for i in 0..10_000u32 {
        if p.is_done() {
            break;
        }
        let deadline_us = p
            .poll_timeout()
            .map(|d| (d.as_nanos() - T0) / 1000)
            .unwrap_or(u64::MAX);
        // The server's segment every 300 ms, acknowledging the request.
        let next_us = 100 + u64::from(i) * 300_000;
        if next_us <= deadline_us {
            now_us = next_us;
            p.handle_packet(
                at(now_us),
                false,
                &server_seg(
                    far,
                    full_ack,
                    TcpFlags::ACK | TcpFlags::PSH,
                    b"HTTP/1.1 200 OK\r\n",
                ),
                false,
            );
        } else {
            now_us = deadline_us;
            p.handle_timeout(at(now_us));
        }
        pump(&mut p, now_us);
    }
    assert!(p.is_done(), "not done at {now_us} µs");
    let error = p.result().error.unwrap_or_default();
    assert!(
        error.contains("the server never acknowledged our request")
            && error.contains(
                "segments meanwhile, all dropped unread: outside our receive window or refused \
                 by PAWS (see the notes)"
            ),
        "{error}"
    );
}
