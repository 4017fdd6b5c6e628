//! Review 15: a trace against a hostile network — ICMP errors that quote our probes cut
//! anywhere or with any bytes changed, any ICMP type and code, segments of any flags,
//! numbers and options from the destination's address and port, raw junk — in virtual
//! time driven only by the trace's own deadlines. No panic, no busy loop (a deadline that
//! stays due after it was handled), the end within the hard limit, a record that reads
//! back.

use super::*;

#[derive(Clone, Debug)]
enum Hostile {
    /// An ICMP error quoting the `probe`-th packet we sent (mod how many), its quote cut
    /// to `cut` bytes, `flip` bytes xored in, from a router or the destination.
    Icmp {
        probe: usize,
        ty: u8,
        code: u8,
        cut: usize,
        flip: Vec<(usize, u8)>,
        rfc4884: Option<u8>,
    },
    /// A TCP segment from the destination's address and port.
    Segment {
        seq: u32,
        ack_probe: Option<usize>,
        ack: u32,
        flags: u16,
        window: u16,
        ts: Option<(u32, u32)>,
        payload: Vec<u8>,
    },
    Raw(Vec<u8>),
    /// Let virtual time run to the next deadline.
    Wait,
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        4 => (
            any::<usize>(),
            prop_oneof![Just(11u8), Just(3u8), any::<u8>()],
            prop_oneof![0u8..16, any::<u8>()],
            prop_oneof![0usize..80, Just(usize::MAX)],
            proptest::collection::vec((0usize..80, any::<u8>()), 0..3),
            proptest::option::of(any::<u8>()),
        )
            .prop_map(|(probe, ty, code, cut, flip, rfc4884)| Hostile::Icmp {
                probe,
                ty,
                code,
                cut,
                flip,
                rfc4884,
            }),
        3 => (
            any::<u32>(),
            proptest::option::of(any::<usize>()),
            any::<u32>(),
            0u16..0x200,
            any::<u16>(),
            proptest::option::of((any::<u32>(), any::<u32>())),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(seq, ack_probe, ack, flags, window, ts, payload)| {
                Hostile::Segment {
                    seq,
                    ack_probe,
                    ack,
                    flags,
                    window,
                    ts,
                    payload,
                }
            }),
        1 => proptest::collection::vec(any::<u8>(), 0..120).prop_map(Hostile::Raw),
        3 => Just(Hostile::Wait),
    ]
}

/// `m` (an ICMP message from `from`) in an IP packet to us, checksummed.
fn icmp_packet(v6: bool, from: IpAddr, to: IpAddr, mut m: Vec<u8>) -> Vec<u8> {
    let proto = if v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
    m[2..4].fill(0);
    let sum = if v6 {
        checksum::upper_layer_checksum(from, to, PROTO_ICMPV6, &m)
    } else {
        checksum::internet_checksum(0, &m)
    };
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    let ip = IpRepr::new(from, to, proto, 60, m.len());
    let mut out = vec![0u8; ip.header_len()];
    ip.emit(&mut out).unwrap();
    out.extend_from_slice(&m);
    out
}

fn run_hostile(v6: bool, mode: TraceMode, inputs: Vec<Hostile>) {
    let c = cfg(v6, mode);
    let (local, remote) = (c.tcp.local, c.tcp.remote);
    let limit = c.hard_limit();
    let mut t = Trace::new(c);
    let mut now = at0();
    t.start(now);
    // What we sent, as full datagrams (IPv6: with the header the kernel would write).
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let flush = |t: &mut Trace, now: Instant, sent: &mut Vec<Vec<u8>>| {
        let mut n = 0;
        while let Some(x) = t.poll_transmit(now) {
            n += 1;
            assert!(n < 10_000, "poll_transmit never ran dry");
            let dgram = if v6 {
                let ip = IpRepr::new(
                    local.ip(),
                    remote.ip(),
                    PROTO_TCP,
                    x.hop_limit,
                    x.bytes.len(),
                );
                let mut out = vec![0u8; ip.header_len()];
                ip.emit(&mut out).unwrap();
                out.extend_from_slice(&x.bytes);
                out
            } else {
                x.bytes.clone()
            };
            t.handle_packet(now + Duration::from_micros(1), true, &dgram, false);
            sent.push(dgram);
        }
    };
    // A deadline handled at `now` that is still due at `now`: the driver would spin.
    let fire = |t: &mut Trace, now: &mut Instant, sent: &mut Vec<Vec<u8>>| {
        flush(t, *now, sent);
        if let Some(d) = t.poll_timeout() {
            *now = (*now).max(d);
            t.handle_timeout(*now);
            flush(t, *now, sent);
            if let Some(next) = t.poll_timeout() {
                assert!(
                    next > *now,
                    "deadline {next:?} still due after handling {:?}",
                    *now
                );
            }
        }
    };
    for inp in inputs {
        if t.is_done() {
            break;
        }
        flush(&mut t, now, &mut sent);
        now += Duration::from_micros(50);
        match inp {
            Hostile::Wait => fire(&mut t, &mut now, &mut sent),
            Hostile::Raw(bytes) => {
                t.handle_packet(now, false, &bytes, false);
            }
            Hostile::Icmp {
                probe,
                ty,
                code,
                cut,
                flip,
                rfc4884,
            } => {
                if sent.is_empty() {
                    continue;
                }
                let mut quote = sent[probe % sent.len()].clone();
                for (at, x) in flip {
                    if let Some(b) = quote.get_mut(at) {
                        *b ^= x;
                    }
                }
                quote.truncate(cut);
                let ty = if v6 { ty % 5 } else { ty };
                let mut m = vec![ty, code, 0, 0, 0, 0, 0, 0];
                if let Some(l) = rfc4884 {
                    m[if v6 { 4 } else { 5 }] = l;
                }
                m.extend_from_slice(&quote);
                let from = if probe % 2 == 0 {
                    remote.ip()
                } else if v6 {
                    IpAddr::V6(Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, 1))
                } else {
                    IpAddr::V4(Ipv4Addr::new(198, 18, 7, 1))
                };
                let pkt = icmp_packet(v6, from, local.ip(), m);
                t.handle_packet(now, false, &pkt, false);
            }
            Hostile::Segment {
                seq,
                ack_probe,
                ack,
                flags,
                window,
                ts,
                payload,
            } => {
                // An acknowledgment that names a probe (its ISN + 1) or any number.
                let ack = match ack_probe {
                    Some(p) if !sent.is_empty() => {
                        let d = &sent[p % sent.len()];
                        let at = if v6 { 40 } else { usize::from(d[0] & 0xf) * 4 };
                        u32::from_be_bytes([d[at + 4], d[at + 5], d[at + 6], d[at + 7]])
                            .wrapping_add(1)
                    }
                    _ => ack,
                };
                let options = match ts {
                    Some((v, e)) => TcpOptions::default().with_timestamps(v, e),
                    None => TcpOptions::default(),
                };
                let seg = TcpRepr {
                    src_port: remote.port(),
                    dst_port: local.port(),
                    seq: SeqNumber(seq),
                    ack: SeqNumber(ack),
                    flags: TcpFlags(flags),
                    window,
                    urgent: 0,
                    options,
                    payload: &payload,
                };
                let ip = IpRepr::new(remote.ip(), local.ip(), PROTO_TCP, 50, seg.buffer_len());
                let mut out = vec![0u8; ip.header_len() + seg.buffer_len()];
                let n = ip.emit(&mut out).unwrap();
                seg.emit(remote.ip(), local.ip(), &mut out[n..]).unwrap();
                t.handle_packet(now, false, &out, false);
            }
        }
        if t.poll_timeout().is_some_and(|d| d <= now) {
            t.handle_timeout(now);
        }
    }
    // Then silence: the trace ends by its own deadlines, within its hard limit.
    for _ in 0..200_000 {
        if t.is_done() {
            break;
        }
        fire(&mut t, &mut now, &mut sent);
        if t.poll_timeout().is_none() && !t.is_done() {
            panic!("a trace that is not done has no deadline");
        }
    }
    assert!(t.is_done(), "the trace did not end");
    assert!(
        now.saturating_since(at0()) <= limit,
        "took {:?}, limit {limit:?}",
        now.saturating_since(at0())
    );
    assert!(
        sent.len() <= MAX_PROBES + 64 + 200,
        "{} packets sent",
        sent.len()
    );
    let r = t.into_record();
    let json = serde_json::to_string(&r).unwrap();
    let back: Result<TraceRecord, _> = serde_json::from_str(&json);
    assert_eq!(
        back.as_ref().ok(),
        Some(&r),
        "{:?}\n{json}",
        back.as_ref().err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn prop_review15_trace_survives_a_hostile_network(
        v6 in any::<bool>(),
        in_session in any::<bool>(),
        inputs in proptest::collection::vec(hostile(), 0..80),
    ) {
        let mode = if in_session { TraceMode::InSession } else { TraceMode::Syn };
        run_hostile(v6, mode, inputs);
    }
}
