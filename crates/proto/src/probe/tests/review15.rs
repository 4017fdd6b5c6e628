//! Review 15: records a hostile server can make, read back; HTTP heads and TLS bytes of
//! hostile shapes; the probe's deadlines.

use super::*;

/// A server that answers our SYN with a bare SYN (a "split handshake", nmap's
/// `split-handshake-syn`) makes a record with a `SYN-SENT → SYN-RECEIVED` transition. It is
/// written, but `ProbeResult::from_json_line` (what `report` reads saved records with)
/// refused it: `State::from_name` did not know `SYN-RECEIVED`.
#[test]
fn a_split_handshake_record_reads_back() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(50),
        false,
        &server_seg(7000, 0, TcpFlags::SYN, &[]),
        false,
    );
    pump(&mut p, 60);
    let r = p.result();
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("SYN-RECEIVED"), "{json}");
    let back = ProbeResult::from_json_line(&json);
    assert_eq!(back.as_ref().ok(), Some(&r), "{back:?}");
}

/// Every state's name reads back as the state.
#[test]
fn every_state_name_reads_back() {
    use State::*;
    for s in [
        Closed,
        SynSent,
        SynReceived,
        Established,
        FinWait1,
        FinWait2,
        Closing,
        TimeWait,
        CloseWait,
        LastAck,
    ] {
        assert_eq!(State::from_name(s.name()), Some(s), "{}", s.name());
    }
}

/// An IPv4 packet from the server carrying a TCP header whose options are `opts` as they
/// are (a multiple of 4 bytes, at most 40), no payload, checksum zero.
fn raw_options_segment(seq: u32, ack: u32, flags: u16, opts: &[u8]) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    let words = (20 + opts.len()) / 4;
    tcp[12] = ((words as u8) << 4) | ((flags >> 8) as u8 & 1);
    tcp[13] = flags as u8;
    tcp[14..16].copy_from_slice(&1000u16.to_be_bytes());
    tcp.extend_from_slice(opts);
    let ip = IpRepr::new(SERVER, CLIENT, PROTO_TCP, 64, tcp.len());
    let mut out = vec![0u8; ip.header_len()];
    ip.emit(&mut out).unwrap();
    out.extend_from_slice(&tcp);
    out
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever arrives — arbitrary bytes, segments on the probe's own 4-tuple in and
        /// out, options of any kind, timeouts between them — no panic, and the record the
        /// probe writes is one tcpshake reads back (`report` reads saved records): the same
        /// record, not an error.
        #[test]
        fn prop_review15_every_record_reads_back(
            isn in any::<u32>(),
            http in any::<bool>(),
            inputs in proptest::collection::vec(
                (0u8..6, any::<u32>(), any::<u32>(), 0u16..0x200, any::<u16>(),
                 proptest::collection::vec(any::<u8>(), 0..80), any::<bool>()),
                0..40,
            ),
        ) {
            let mut p = Probe::new(config(isn, http));
            p.start(at(0));
            let mut t = 0;
            let mut irs = 7000u32;
            for (kind, seq, ack, flags, window, bytes, outgoing) in inputs {
                pump(&mut p, t);
                t += 1000;
                match kind {
                    0 => { let _ = p.handle_packet(at(t), outgoing, &bytes, false); }
                    5 => {
                        // The server's segment with these bytes as its options (any kinds,
                        // lengths, counts), its checksum left to "hardware".
                        let opts = &bytes[..bytes.len().min(40) / 4 * 4];
                        let _ = p.handle_packet(at(t), false, &raw_options_segment(irs.wrapping_add(seq % 4), isn.wrapping_add(1 + ack % 3), flags, opts), true);
                    }
                    1 => {
                        if let Some(d) = p.poll_timeout() {
                            p.handle_timeout(d);
                            t = t.max((d.as_nanos() - T0) / 1000);
                        }
                    }
                    _ => {
                        let flags = if kind == 4 { (flags & !0x2) | 0x12 } else { flags };
                        if kind == 4 { irs = seq % 8 + 7000; }
                        let seg = TcpRepr {
                            src_port: 80,
                            dst_port: 40000,
                            seq: SeqNumber(if kind == 2 { seq } else { irs.wrapping_add(seq % 4) }),
                            ack: SeqNumber(match kind {
                                2 => ack,
                                // Near our ISN (its edge cases) or anywhere in what we sent.
                                _ if ack % 2 == 0 => isn.wrapping_add(ack % 3),
                                _ => isn.wrapping_add(1 + ack % 200),
                            }),
                            flags: TcpFlags(flags),
                            window,
                            urgent: 0,
                            options: TcpOptions::default(),
                            payload: &bytes,
                        };
                        let _ = p.handle_packet(at(t), false, &packet(SERVER, CLIENT, &seg, 64), false);
                    }
                }
            }
            let r = p.result();
            let json = serde_json::to_string(&r).unwrap();
            let back = ProbeResult::from_json_line(&json);
            prop_assert_eq!(back.as_ref().ok(), Some(&r), "{:?}\n{}", back.as_ref().err(), json);
        }
    }
}

mod tls_junk {
    use super::*;
    use crate::probe::tls::{TlsSession, TlsSetup};
    use proptest::prelude::*;
    use rustls::RootCertStore;
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    fn setup() -> TlsSetup {
        TlsSetup {
            server_name: ServerName::try_from("lab.test".to_string()).unwrap(),
            roots: Arc::new(RootCertStore::empty()),
            roots_from: "none".into(),
            insecure: false,
            insecure_hint: "--insecure",
            key_log: None,
        }
    }

    /// A TLS record header of any type, version and length, then some bytes of body.
    fn record() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![20u8..=24, any::<u8>()],
            prop_oneof![Just(0x0303u16), Just(0x0301u16), any::<u16>()],
            prop_oneof![
                Just(0u16),
                Just(0x4000u16),
                Just(0x4001u16),
                Just(0x4100u16),
                Just(0x4800u16),
                Just(0xffffu16),
                any::<u16>()
            ],
            proptest::collection::vec(any::<u8>(), 0..600),
        )
            .prop_map(|(ty, ver, len, body)| {
                let mut r = vec![ty];
                r.extend_from_slice(&ver.to_be_bytes());
                r.extend_from_slice(&len.to_be_bytes());
                r.extend(body);
                r
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Records of hostile sizes and kinds, in chunks of any size: the session never
        /// panics, never hands back more than a few records to send, never plaintext
        /// before a handshake, and once failed stays failed.
        #[test]
        fn prop_review15_tls_session_survives_hostile_records(
            records in proptest::collection::vec(record(), 1..8),
            cut in proptest::collection::vec(1usize..2000, 1..8),
        ) {
            let mut s = TlsSession::new(setup(), at(0)).unwrap();
            let hello = s.client_hello();
            prop_assert!(!hello.is_empty());
            let stream: Vec<u8> = records.concat();
            let mut off = 0;
            let mut i = 0;
            let mut failed = false;
            while off < stream.len() {
                let n = cut[i % cut.len()].min(stream.len() - off);
                let step = s.handle_data(at(1 + i as u64), &stream[off..off + n], Some(i));
                off += n;
                i += 1;
                prop_assert!(step.to_send.len() < 64 * 1024, "{} bytes to send", step.to_send.len());
                prop_assert!(step.plaintext.is_empty(), "plaintext from junk");
                prop_assert!(!step.handshake_done, "handshake done on junk");
                if failed {
                    prop_assert!(step.error.is_none() && step.to_send.is_empty());
                }
                failed |= step.error.is_some();
            }
            let _ = s.close_notify(true);
            let _ = s.record(&[], 1000, &|i| Some(i));
        }
    }
}

/// A server that acknowledges our request one byte at a time, each byte a little inside
/// `--timeout` after the one before (a tarpit; a peer that wants to hold a survey's or the
/// exporter's probe slots): every partial acknowledgment is "progress", so the wait for
/// the response is pushed on again and again, and the connection's retries start over
/// each time. The probe is held for as many `--timeout`s as the request has bytes (100 ×
/// 5 s), past `hard_limit` — the driver's backstop, whose reaching "means a bug".
#[test]
fn a_server_acknowledging_a_byte_at_a_time_does_not_outlast_the_hard_limit() {
    let cfg = config(1_000, true);
    let limit_us = cfg.hard_limit().as_micros() as u64;
    let timeout_us = cfg.timeout.as_micros() as u64;
    let (mut p, seq, full_ack) = requested(1_000, 9_000);
    let first = 1_001u32; // our request's first byte
    let mut acked = first;
    let mut next_ack_us = 100 + timeout_us - 100_000;
    let mut now_us = 100;
    // Bounded: each turn is a deadline of the probe's or one of the server's ACKs.
    for _ in 0..100_000 {
        if p.is_done() || now_us > 2 * limit_us {
            break;
        }
        let deadline_us = p
            .poll_timeout()
            .map(|d| (d.as_nanos() - T0) / 1000)
            .unwrap_or(u64::MAX);
        if next_ack_us <= deadline_us && acked < full_ack {
            now_us = next_ack_us;
            acked += 1;
            p.handle_packet(
                at(now_us),
                false,
                &server_seg(seq, acked, TcpFlags::ACK, &[]),
                false,
            );
            pump(&mut p, now_us);
            next_ack_us = now_us + timeout_us - 100_000;
        } else if deadline_us != u64::MAX {
            now_us = now_us.max(deadline_us);
            p.handle_timeout(at(now_us));
            pump(&mut p, now_us);
        } else {
            break;
        }
    }
    assert!(p.is_done(), "not done at {now_us} µs");
    assert!(
        now_us < limit_us,
        "ended at {} s, hard_limit {} s ({} of {} bytes acknowledged)",
        now_us / 1_000_000,
        limit_us / 1_000_000,
        acked - first,
        full_ack - first
    );
}

/// A SYN-ACK with ten options of a kind nobody knows (`opt-99`, 2 bytes each) and five
/// malformed ones: the record keeps eight and four of them, and its count of all of them
/// (`unknown_count` 10, `malformed_count` 5) — but the JSON writes only the kept kinds,
/// so the record read back says 8 and 4: not the record that was written.
#[test]
fn a_segment_with_more_options_than_kept_reads_back_the_same() {
    let mut p = Probe::new(config(1000, false));
    p.start(at(0));
    pump(&mut p, 0);
    let mut opts = Vec::new();
    for _ in 0..10 {
        opts.extend_from_slice(&[99, 2]);
    }
    // MSS with length 3, five times: malformed.
    for _ in 0..5 {
        opts.extend_from_slice(&[2, 3, 0]);
    }
    opts.resize(40, 0);
    let synack = raw_options_segment(7000, 1001, 0x12, &opts);
    assert!(p.handle_packet(at(50), false, &synack, true));
    pump(&mut p, 60);
    let r = p.result();
    let o = r.segments[1].options;
    assert_eq!((o.unknown_count, o.malformed_count), (10, 5), "{o:?}");
    let json = serde_json::to_string(&r).unwrap();
    let back = ProbeResult::from_json_line(&json).unwrap();
    let b = back.segments[1].options;
    assert_eq!(
        (b.unknown_count, b.malformed_count),
        (10, 5),
        "read back: {:?}",
        (b.unknown_count, b.malformed_count)
    );
}

/// `--timeout 1ms` (accepted: any positive duration) with a request the server does not
/// acknowledge: while the connection is still sending it again (fewer than three times),
/// each deadline is pushed on by `--timeout` from now, so the driver is woken every
/// millisecond until the third retransmission (RTO 200 ms after a fast handshake, backed
/// off: 1.4 s) — 1 400 wake-ups where the connection's own timer has three; with `1us`,
/// 1.4 million: a busy loop.
#[test]
fn a_short_timeout_does_not_wake_the_driver_between_retransmissions() {
    let mut cfg = config(1_000, true);
    cfg.timeout = Duration::from_millis(1);
    let (mut p, _, _) = requested_from(Probe::new(cfg), 1_000, 9_000);
    let mut wakeups = 0u32;
    let mut now = 0;
    while let Some(d) = p.poll_timeout() {
        wakeups += 1;
        now = (d.as_nanos() - T0) / 1000;
        p.handle_timeout(d);
        pump(&mut p, now);
        if p.is_done() || wakeups > 100_000 {
            break;
        }
    }
    assert!(p.is_done());
    assert!(wakeups < 100, "{wakeups} wake-ups in {} ms", now / 1000);
}

mod icmp_and_http {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        /// An ICMP error quoting the `which`-th segment we sent, its sequence number moved by
        /// `off`, any type/code, any MTU.
        Icmp {
            which: usize,
            off: i32,
            t: u8,
            code: u8,
            mtu: u16,
        },
        /// Bytes of a response head (any, or HTTP-shaped), acknowledging `ack` of ours.
        Data {
            bytes: Vec<u8>,
            ack: u32,
            gap: u32,
        },
        Ack(u32),
        Fin,
        Wait,
    }

    fn head_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::sample::select(vec![
                &b"HTTP/1.1 200 OK\r\n"[..],
                b"Content-Length: 99999999999999999999999999\r\n",
                b"Transfer-Encoding: chunked\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"X: \x00\x7f\xff\r\n",
                b" folded\r\n",
                b"\r\n",
                b"\n\n",
                b"HTTP/1.1 999999 x\r\n",
                b"HTTP/9.9 200 OK\r\n",
            ])
            .prop_map(<[u8]>::to_vec),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            2 => (any::<usize>(), prop_oneof![Just(0i32), -3i32..3, any::<i32>()],
                  prop_oneof![Just(3u8), Just(11u8), Just(12u8), any::<u8>()],
                  prop_oneof![0u8..16, any::<u8>()], any::<u16>())
                .prop_map(|(which, off, t, code, mtu)| Step::Icmp { which, off, t, code, mtu }),
            4 => (head_bytes(), 0u32..200, prop_oneof![Just(0u32), 0u32..3000])
                .prop_map(|(bytes, ack, gap)| Step::Data { bytes, ack, gap }),
            1 => (0u32..200).prop_map(Step::Ack),
            1 => Just(Step::Fin),
            2 => Just(Step::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// After the handshake the server (or a router) does anything: the probe never
        /// panics, ends by its own timers once the server is silent — within
        /// `hard_limit` — and its record reads back.
        #[test]
        fn prop_review15_hostile_icmp_and_http_after_the_handshake(
            isn in any::<u32>(),
            steps in proptest::collection::vec(step(), 0..40),
        ) {
            let cfg = config(isn, true);
            let limit_us = cfg.hard_limit().as_micros() as u64;
            let mut p = Probe::new(cfg);
            p.start(at(0));
            let mut sent = pump(&mut p, 0);
            p.handle_packet(
                at(50),
                false,
                &server_seg(9_000, isn.wrapping_add(1), TcpFlags::SYN | TcpFlags::ACK, &[]),
                false,
            );
            sent.extend(pump(&mut p, 60));
            let mut seq = 9_001u32;
            let mut now = 100u64;
            for s in steps {
                if p.is_done() {
                    break;
                }
                now += 1_000;
                match s {
                    Step::Icmp { which, off, t, code, mtu } => {
                        let seg = &sent[which % sent.len()];
                        let quoted = seg.seq.0.wrapping_add(off as u32);
                        let pkt = icmp_quoting(SERVER, t, code, mtu, seg, quoted);
                        p.handle_packet(at(now), false, &pkt, false);
                    }
                    Step::Data { bytes, ack, gap } => {
                        let a = isn.wrapping_add(1).wrapping_add(ack);
                        let pkt = server_seg(seq.wrapping_add(gap), a, TcpFlags::ACK, &bytes);
                        p.handle_packet(at(now), false, &pkt, false);
                        if gap == 0 {
                            seq = seq.wrapping_add(bytes.len() as u32);
                        }
                    }
                    Step::Ack(ack) => {
                        let a = isn.wrapping_add(1).wrapping_add(ack);
                        p.handle_packet(at(now), false, &server_seg(seq, a, TcpFlags::ACK, &[]), false);
                    }
                    Step::Fin => {
                        let a = p.conn.snd_nxt().0;
                        p.handle_packet(at(now), false, &server_seg(seq, a, TcpFlags::ACK | TcpFlags::FIN, &[]), false);
                        seq = seq.wrapping_add(1);
                    }
                    Step::Wait => {
                        if let Some(d) = p.poll_timeout() {
                            now = now.max((d.as_nanos() - T0) / 1000);
                            p.handle_timeout(at(now));
                            pump(&mut p, now);
                            if let Some(next) = p.poll_timeout() {
                                prop_assert!(next > at(now), "deadline {:?} still due at {:?}", next, at(now));
                            }
                        }
                    }
                }
                sent.extend(pump(&mut p, now));
            }
            // Silence: the probe's own timers end it.
            for _ in 0..10_000 {
                if p.is_done() {
                    break;
                }
                let Some(d) = p.poll_timeout() else { break };
                now = now.max((d.as_nanos() - T0) / 1000);
                p.handle_timeout(at(now));
                pump(&mut p, now);
                // The driver's loop: a deadline still due after it was handled is a spin.
                if let Some(next) = p.poll_timeout() {
                    prop_assert!(next > at(now), "deadline {:?} still due at {:?}", next, at(now));
                }
            }
            prop_assert!(p.is_done(), "not done at {} µs", now);
            prop_assert!(now < limit_us, "ended at {} µs, hard_limit {} µs", now, limit_us);
            let r = p.result();
            prop_assert!(r.anomalies.len() <= 2 * MAX_NOTES + 3);
            let json = serde_json::to_string(&r).unwrap();
            let back = ProbeResult::from_json_line(&json);
            prop_assert_eq!(back.as_ref().ok(), Some(&r), "{:?}", back.as_ref().err());
        }
    }
}

mod tls_probe_junk {
    use super::*;
    use crate::probe::tls::TlsSetup;
    use proptest::prelude::*;
    use rustls::RootCertStore;
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    fn tls_config(isn: u32) -> ProbeConfig {
        let mut c = config(isn, true);
        c.tls = Some(TlsSetup {
            server_name: ServerName::try_from("lab.test".to_string()).unwrap(),
            roots: Arc::new(RootCertStore::empty()),
            roots_from: "none".into(),
            insecure: true,
            insecure_hint: "--insecure",
            key_log: None,
        });
        c
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// An HTTPS probe whose server answers the ClientHello with anything — records of
        /// any type and length, cleartext, a FIN, a RST — in any cuts: no panic, the probe
        /// ends by its own timers within `hard_limit`, and its record reads back.
        #[test]
        fn prop_review15_https_probe_survives_junk(
            isn in any::<u32>(),
            chunks in proptest::collection::vec(
                (prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..300),
                    (prop_oneof![20u8..=24, any::<u8>()], any::<u16>(), proptest::collection::vec(any::<u8>(), 0..100))
                        .prop_map(|(t, l, b)| { let mut v = vec![t, 3, 3]; v.extend(l.to_be_bytes()); v.extend(b); v }),
                ], 0u8..10),
                0..12,
            ),
        ) {
            let cfg = tls_config(isn);
            let limit_us = cfg.hard_limit().as_micros() as u64;
            let mut p = Probe::new(cfg);
            p.start(at(0));
            pump(&mut p, 0);
            p.handle_packet(
                at(50),
                false,
                &server_seg(9_000, isn.wrapping_add(1), TcpFlags::SYN | TcpFlags::ACK, &[]),
                false,
            );
            let hello = pump(&mut p, 60);
            prop_assert!(hello.iter().any(|s| s.payload.len() > 100), "no ClientHello: {:?}", hello);
            let mut seq = 9_001u32;
            let mut now = 100u64;
            for (bytes, how) in chunks {
                if p.is_done() {
                    break;
                }
                now += 1_000;
                let ack = p.conn.snd_nxt().0;
                let flags = match how {
                    0 => TcpFlags::ACK | TcpFlags::FIN,
                    1 => TcpFlags::ACK | TcpFlags::RST,
                    _ => TcpFlags::ACK | TcpFlags::PSH,
                };
                p.handle_packet(at(now), false, &server_seg(seq, ack, flags, &bytes), false);
                seq = seq.wrapping_add(bytes.len() as u32 + u32::from(how == 0));
                pump(&mut p, now);
                if how == 2 && let Some(d) = p.poll_timeout() {
                    now = now.max((d.as_nanos() - T0) / 1000);
                    p.handle_timeout(at(now));
                    pump(&mut p, now);
                }
            }
            for _ in 0..10_000 {
                if p.is_done() {
                    break;
                }
                let Some(d) = p.poll_timeout() else { break };
                now = now.max((d.as_nanos() - T0) / 1000);
                p.handle_timeout(at(now));
                pump(&mut p, now);
                if let Some(next) = p.poll_timeout() {
                    prop_assert!(next > at(now), "deadline {:?} still due at {:?}", next, at(now));
                }
            }
            prop_assert!(p.is_done(), "not done at {} µs", now);
            prop_assert!(now < limit_us, "ended at {} µs, hard_limit {} µs", now, limit_us);
            let r = p.result();
            let json = serde_json::to_string(&r).unwrap();
            let back = ProbeResult::from_json_line(&json);
            prop_assert_eq!(back.as_ref().ok(), Some(&r), "{:?}", back.as_ref().err());
        }
    }
}

/// The status line's reason phrase and header values are the server's text: UTF-8 of C1
/// controls (U+009B is CSI, an escape sequence's start for terminals that honour 8-bit
/// controls) is obs-text to httparse (RFC 9110 §15.1). Neither keeps a control character
/// (sound: `header_value` escapes, the reason phrase comes back without it).
#[test]
fn the_reason_phrase_has_no_control_characters() {
    let (mut p, seq, ack) = requested(1_000, 9_000);
    let head = b"HTTP/1.1 200 O\xc2\x9b2J\xc2\x85K\r\nX: \xc2\x9b2J\r\n\r\n";
    feed(&mut p, seq, ack, head, 1448, 100);
    let r = p.result();
    let h = r.http.as_ref().expect("a response");
    assert!(
        !h.headers["x"].chars().any(char::is_control),
        "header: {:?}",
        h.headers["x"]
    );
    assert!(
        !h.reason.chars().any(char::is_control),
        "reason: {:?}",
        h.reason
    );
}
