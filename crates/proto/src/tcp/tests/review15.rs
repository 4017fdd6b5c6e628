//! Review 15: hostile peers beyond what the other properties try — any sequence and
//! acknowledgment number on the 2^32 circle, any options on any segment (window scale,
//! SACK blocks out of range, timestamps next to the wrap), payloads up to the largest a
//! TCP segment can carry, and the clock driven only by the connection's own deadlines.
//! Checked after every input: no panic, the queues stay bounded, and a deadline the
//! connection hands out is never one it leaves due after it was fired (a busy loop).

use super::*;

/// One hostile input.
#[derive(Clone, Debug)]
enum Hostile {
    Segment {
        /// Offsets from RCV.NXT / SND.UNA (small, to hit the windows) or absolute values.
        seq: (bool, u32),
        ack: (bool, u32),
        flags: u16,
        window: u16,
        len: usize,
        urgent: u16,
        opts: TcpOptions,
    },
    /// Fire the next deadline (exactly at it).
    Fire,
    Advance(u32),
    Send(usize),
    Close,
    Abort,
    /// An ICMP error quoting SND.UNA + `off` (kind as in `icmp_kind`), or this host's own
    /// EMSGSIZE with `mtu`.
    Icmp {
        kind: u8,
        off: i32,
        mtu: u32,
    },
    LocalTooBig(u32),
}

fn icmp_kind(kind: u8, mtu: u32) -> IcmpKind {
    match kind % 6 {
        0 => IcmpKind::PortUnreachable,
        1 => IcmpKind::TimeExceeded,
        2 | 3 => IcmpKind::PacketTooBig { mtu },
        4 => IcmpKind::OtherUnreachable {
            code: (mtu % 256) as u8,
        },
        _ => IcmpKind::HostUnreachable,
    }
}

fn hostile_opts() -> impl Strategy<Value = TcpOptions> {
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u8>()),
        any::<bool>(),
        proptest::option::of((
            prop_oneof![any::<u32>(), Just(u32::MAX), Just(0u32), Just(1u32 << 31)],
            any::<u32>(),
        )),
        proptest::collection::vec(proptest::option::of((any::<u32>(), any::<u32>())), 4),
    )
        .prop_map(|(mss, wscale, sack_permitted, timestamps, sack)| {
            let mut o = TcpOptions {
                mss,
                wscale,
                sack_permitted,
                timestamps,
                ..TcpOptions::default()
            };
            for (slot, b) in o.sack_blocks.iter_mut().zip(sack) {
                *slot = b.map(|(a, z)| (SeqNumber(a), SeqNumber(z)));
            }
            o
        })
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let near = prop_oneof![
        (Just(true), (-3000i32..3000).prop_map(|v| v as u32)),
        (Just(true), Just(0u32)),
        (Just(false), any::<u32>()),
    ];
    prop_oneof![
        8 => (
            near.clone(),
            near,
            0u16..0x200,
            any::<u16>(),
            prop_oneof![Just(0usize), 0usize..2000, Just(65_495usize), 60_000usize..65_536],
            any::<u16>(),
            hostile_opts(),
        )
            .prop_map(|(seq, ack, flags, window, len, urgent, opts)| Hostile::Segment {
                seq,
                ack,
                flags,
                window,
                len,
                urgent,
                opts,
            }),
        3 => Just(Hostile::Fire),
        1 => prop_oneof![0u32..5_000, Just(u32::MAX)].prop_map(Hostile::Advance),
        1 => (0usize..70_000).prop_map(Hostile::Send),
        1 => Just(Hostile::Close),
        1 => Just(Hostile::Abort),
        2 => (any::<u8>(), prop_oneof![Just(0i32), -2000i32..2000, any::<i32>()],
              prop_oneof![0u32..2000, 1200u32..1600, any::<u32>()])
            .prop_map(|(kind, off, mtu)| Hostile::Icmp { kind, off, mtu }),
        1 => prop_oneof![0u32..2000, any::<u32>()].prop_map(Hostile::LocalTooBig),
    ]
}

/// The driver's contract: after `handle_timeout(now)` nothing is due at `now` any more
/// (else it would be woken again at once, forever).
fn fire_checked(h: &mut Harness) {
    if let Some(at) = h.conn.poll_timeout() {
        h.now = h.now.max(at);
        h.conn.handle_timeout(h.now);
        if let Some(next) = h.conn.poll_timeout() {
            assert!(
                next > h.now,
                "a deadline at {next:?} is still due after firing at {:?} (state {:?})",
                h.now,
                h.conn.state()
            );
        }
    }
}

fn run_hostile(mut h: Harness, inputs: Vec<Hostile>) {
    let payload = vec![0x5au8; 65_536];
    for inp in inputs {
        let tx_before = h.conn.tx.len();
        match inp {
            Hostile::Segment {
                seq,
                ack,
                flags,
                window,
                len,
                urgent,
                opts,
            } => {
                let seq = if seq.0 {
                    h.conn.rcv_nxt().add(seq.1)
                } else {
                    SeqNumber(seq.1)
                };
                let ack = if ack.0 {
                    h.conn.snd_una().add(ack.1)
                } else {
                    SeqNumber(ack.1)
                };
                let mut s = seg(seq.0, ack.0, TcpFlags(flags), &payload[..len]);
                s.window = window;
                s.urgent = urgent;
                s.options = opts;
                let events_before = h.conn.pending_events();
                h.recv(s);
                assert!(
                    h.conn.pending_events() - events_before <= 32,
                    "one segment queued {} events",
                    h.conn.pending_events() - events_before
                );
                // Two, plus what RACK sends again for what the ACK delivered (RFC 8985
                // §6.2, one per segment delivered as Linux's PRR: at most MAX_RESEND).
                assert!(
                    h.conn.tx.len() <= tx_before + 2 + MAX_RESEND as usize,
                    "one segment queued {} segments",
                    h.conn.tx.len() - tx_before
                );
            }
            Hostile::Fire => fire_checked(&mut h),
            Hostile::Advance(ms_) => {
                h.advance(ms(u64::from(ms_)));
                h.conn.handle_timeout(h.now);
                if let Some(next) = h.conn.poll_timeout() {
                    assert!(next > h.now, "still due after firing at {:?}", h.now);
                }
            }
            Hostile::Send(n) => h.conn.send(&payload[..n.min(payload.len())]),
            Hostile::Close => h.conn.close(h.now),
            Hostile::Abort => {
                h.conn.abort(h.now);
            }
            Hostile::Icmp { kind, off, mtu } => {
                let seq = h.conn.snd_una().add(off as u32);
                let mss = h.conn.send_mss();
                let err = icmp_about(&h, icmp_kind(kind, mtu), seq);
                let _ = h.conn.handle_icmp(h.now, &err);
                assert!(h.conn.send_mss() <= mss, "an ICMP error raised the MSS");
                assert!(h.conn.send_mss() >= 1);
            }
            Hostile::LocalTooBig(mtu) => {
                let _ = h.conn.handle_local_too_big(h.now, mtu);
                assert!(h.conn.send_mss() >= 1);
            }
        }
        assert!(
            h.conn.reassembly_buffered() <= h.conn.rcv_wnd() as usize,
            "reassembly holds {} bytes, window {}",
            h.conn.reassembly_buffered(),
            h.conn.rcv_wnd()
        );
        assert!(h.conn.ts_sent.len() <= 64);
        // Drain as a driver does; bounded by the window / MSS.
        let mut n = 0;
        while h.conn.poll_transmit(h.now).is_some() {
            n += 1;
            assert!(n < 5_000, "poll_transmit never ran dry");
        }
        let _ = h.events();
        if h.conn.state() == State::Closed {
            assert_eq!(h.conn.poll_timeout(), None, "no timer survives CLOSED");
        }
    }
    // However the peer behaved, the connection ends by its own timers, or waits only in
    // the states a caller's deadline ends (ESTABLISHED, FIN-WAIT-2, CLOSE-WAIT with
    // nothing to send).
    for _ in 0..10_000 {
        if h.conn.poll_timeout().is_none() {
            break;
        }
        fire_checked(&mut h);
        while h.conn.poll_transmit(h.now).is_some() {}
        let _ = h.events();
    }
    assert!(
        h.conn.poll_timeout().is_none(),
        "timers still armed after 10 000 firings in {:?}",
        h.conn.state()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn prop_review15_hostile_peer_from_syn_sent(
        isn in prop_oneof![any::<u32>(), Just(u32::MAX), Just(u32::MAX - 1), Just(1u32 << 31)],
        ts_offset in prop_oneof![any::<u32>(), Just(u32::MAX - 5)],
        v6 in any::<bool>(),
        inputs in proptest::collection::vec(hostile(), 0..60),
    ) {
        let mut c = if v6 { cfg_v6(isn) } else { cfg(isn) };
        c.ts_offset = ts_offset;
        let (h, _) = conn_syn_sent_with(c);
        run_hostile(h, inputs);
    }

    #[test]
    fn prop_review15_hostile_peer_from_established(
        isn in any::<u32>(),
        irs in prop_oneof![any::<u32>(), Just(u32::MAX)],
        synack_opts in hostile_opts(),
        window in any::<u16>(),
        rcv_buf in prop_oneof![Just(0u32), 1u32..100, 100u32..2_000_000],
        our_wscale in 0u8..20,
        ack_with_data in any::<bool>(),
        v6 in any::<bool>(),
        inputs in proptest::collection::vec(hostile(), 0..60),
    ) {
        let mut c = if v6 { cfg_v6(isn) } else { cfg(isn) };
        c.rcv_buf = rcv_buf;
        c.wscale = our_wscale;
        c.ack_with_data = ack_with_data;
        let (mut h, syn) = conn_syn_sent_with(c);
        h.advance(ms(10));
        let mut synack = seg(irs, syn.seq.add(1).0, SYN | ACK, &[]);
        synack.options = synack_opts;
        synack.window = window;
        h.recv(synack);
        let _ = h.sent();
        let _ = h.events();
        run_hostile(h, inputs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A peer whose stream is consistent (byte i is always the same) sent in segments out
    /// of order, overlapping, repeated, partly beyond the window, across the 2^32 wrap:
    /// what is delivered is always a prefix of the stream, and once everything has been
    /// sent in order too, all of it.
    #[test]
    fn prop_review15_reassembly_delivers_the_stream(
        irs in prop_oneof![any::<u32>(), Just(u32::MAX - 100), Just(u32::MAX)],
        rcv_buf in prop_oneof![Just(1u32), 1u32..5000, 5000u32..70_000],
        sack in any::<bool>(),
        segs in proptest::collection::vec((0u32..20_000, 0usize..3000), 0..80),
    ) {
        const LEN: usize = 20_000;
        let stream: Vec<u8> = (0..LEN + 3000).map(|i| (i * 7 % 251) as u8).collect();
        let mut c = cfg(1000);
        c.rcv_buf = rcv_buf;
        let opts = TcpOptions { mss: Some(1460), sack_permitted: sack, ..TcpOptions::default() };
        let mut h = conn_established_with(c, irs, opts, 65535);
        let first = irs.wrapping_add(1);
        let mut got: Vec<u8> = Vec::new();
        let deliver = |h: &mut Harness, got: &mut Vec<u8>| {
            let _ = h.sent();
            for e in h.events() {
                if let Event::Data { bytes, .. } = e {
                    got.extend(bytes);
                }
            }
        };
        for (off, len) in segs {
            let (o, l) = (off as usize, len.min(LEN - (off as usize).min(LEN)));
            h.recv(seg(first.wrapping_add(off), 1001, ACK, &stream[o..o + l]));
            deliver(&mut h, &mut got);
            prop_assert_eq!(&got[..], &stream[..got.len()], "not a prefix");
            prop_assert!(h.conn.reassembly_buffered() <= h.conn.rcv_wnd() as usize);
        }
        // Everything again, in order, a window at a time.
        for _ in 0..100_000 {
            if got.len() >= LEN {
                break;
            }
            let o = got.len();
            let l = (LEN - o).min(1000);
            h.recv(seg(first.wrapping_add(o as u32), 1001, ACK, &stream[o..o + l]));
            deliver(&mut h, &mut got);
            prop_assert_eq!(&got[..], &stream[..got.len()], "not a prefix");
            prop_assert!(got.len() > o, "no progress at {}", o);
        }
        prop_assert_eq!(got.len(), LEN);
    }
}
