//! The state machine fed arbitrary inputs: segments with fuzzer-chosen sequence numbers
//! (near rcv_nxt / snd_una or anywhere), flags, windows, options and payloads; timeouts;
//! clock jumps; sends; ICMP errors (any kind, quoting sequence numbers in flight or not,
//! any MTU); close and abort. After every input the invariants hold:
//! snd_una ≤ snd_nxt in sequence space, snd_nxt within SYN + queued data + FIN, no ACK
//! of data the peer never sent, and every payload byte we send is a byte we queued.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tcpshake_proto::tcp::{Connection, IcmpOutcome, State};
use tcpshake_proto::time::Instant;
use tcpshake_proto::wire::{IcmpError, IcmpKind, SeqNumber, TcpFlags, TcpOptions, TcpRepr};
use tcpshake_fuzz::*;

const T0: u64 = 1_700_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let isn = match b.u8() % 4 {
        0 => u32::MAX - u32::from(b.u8()),
        _ => b.u32(),
    };
    let irs = b.u32();
    let mut conn = Connection::new(tcp_config(isn, false));
    let mut now = Instant::from_nanos(T0);
    conn.connect(now);
    let isn = SeqNumber(isn);
    let mut queued: Vec<u8> = Vec::new();
    let mut closed_by_us = false;
    // The sequence ranges the peer has used (SYN and FIN count), so our ACKs can be
    // checked against what it really sent: rcv_nxt only ever moves to a point inside one
    // of them (the end of in-order data, or the window's edge when data was trimmed).
    // One "highest" value would not do: random sequence numbers wrap around the circle.
    let mut peer_ranges: Vec<(SeqNumber, SeqNumber)> = Vec::new();
    let payload = [0x5au8; 3000];
    // FUZZ_TRACE=1 prints every input and output, for triaging a finding.
    let trace = std::env::var_os("FUZZ_TRACE").is_some();
    for _ in 0..256 {
        if b.is_empty() {
            break;
        }
        match b.u8() % 9 {
            0..=3 => {
                let flags = TcpFlags(b.u16() & 0x1ff);
                let seq = match b.u8() % 4 {
                    0 => SeqNumber(irs),
                    1 => conn.rcv_nxt().add(u32::from(b.u16() % 64)),
                    2 => conn.rcv_nxt().sub(u32::from(b.u16())),
                    _ => SeqNumber(b.u32()),
                };
                let ack = match b.u8() % 3 {
                    0 => conn.snd_nxt(),
                    1 => conn.snd_una().add(u32::from(b.u16() % 512)),
                    _ => SeqNumber(b.u32()),
                };
                let len = usize::from(b.u16()) % payload.len();
                let len = if b.u8() % 2 == 0 { 0 } else { len };
                let window = b.u16();
                let options = TcpOptions {
                    mss: (b.u8() % 2 == 0).then(|| b.u16()),
                    wscale: (b.u8() % 2 == 0).then(|| b.u8()),
                    sack_permitted: b.u8() % 2 == 0,
                    timestamps: (b.u8() % 2 == 0).then(|| (b.u32(), b.u32())),
                    sack_blocks: [
                        (b.u8() % 4 == 0).then(|| (SeqNumber(b.u32()), SeqNumber(b.u32()))),
                        None,
                        None,
                        None,
                    ],
                    ..TcpOptions::default()
                };
                let seg = TcpRepr {
                    src_port: 80,
                    dst_port: 40000,
                    seq,
                    ack,
                    flags,
                    window,
                    urgent: 0,
                    options,
                    payload: &payload[..len],
                };
                if !flags.rst() {
                    peer_ranges.push((seq, seq.add(seg.segment_len())));
                }
                now += Duration::from_micros(u64::from(b.u16()));
                if trace {
                    eprintln!(
                        "in  {:?} seq={} ack={} len={} win={} {:?} [{:?} rcv_nxt={} snd_una={} snd_nxt={}]",
                        flags,
                        seq.0,
                        ack.0,
                        len,
                        window,
                        options,
                        conn.state(),
                        conn.rcv_nxt().0,
                        conn.snd_una().0,
                        conn.snd_nxt().0
                    );
                }
                conn.handle_segment(now, &seg);
            }
            4 => {
                if let Some(at) = conn.poll_timeout() {
                    now = now.max(at);
                    conn.handle_timeout(now);
                }
            }
            5 => {
                now += Duration::from_millis(u64::from(b.u16()));
                conn.handle_timeout(now);
            }
            6 => {
                let n = usize::from(b.u16() % 4000);
                if matches!(conn.state(), State::Established | State::CloseWait) && !closed_by_us {
                    let bytes: Vec<u8> = (0..n).map(|i| (queued.len() + i) as u8).collect();
                    conn.send(&bytes);
                    queued.extend(bytes);
                }
            }
            7 => {
                let kind = match b.u8() % 4 {
                    0 => IcmpKind::PortUnreachable,
                    1 => IcmpKind::TimeExceeded,
                    2 => IcmpKind::HostUnreachable,
                    _ => IcmpKind::PacketTooBig {
                        mtu: u32::from(b.u16()),
                    },
                };
                let seq = match b.u8() % 3 {
                    0 => conn.snd_una().add(u32::from(b.u16() % 4096)),
                    1 => conn.snd_una().sub(u32::from(b.u16())),
                    _ => SeqNumber(b.u32()),
                };
                let cfg = conn.config();
                let err = IcmpError {
                    kind,
                    icmp_type: 3,
                    code: 0,
                    quoted_src: cfg.local.ip(),
                    quoted_dst: cfg.remote.ip(),
                    quoted_src_port: cfg.local.port(),
                    quoted_dst_port: cfg.remote.port(),
                    quoted_seq: seq,
                };
                let in_flight = seq.ge(conn.snd_una()) && seq.lt(conn.snd_nxt());
                let (state, mss) = (conn.state(), conn.send_mss());
                let out = conn.handle_icmp(now, &err);
                if !in_flight {
                    assert!(matches!(out, IcmpOutcome::Ignored(_)), "unproven ICMP believed");
                    assert_eq!((conn.state(), conn.send_mss()), (state, mss));
                }
                assert!(conn.send_mss() <= mss, "ICMP raised the MSS");
            }
            _ => {
                if b.u8() % 4 == 0 {
                    conn.abort(now);
                } else {
                    conn.close(now);
                }
                closed_by_us = true;
            }
        }
        // Drain what the connection wants to send and check it.
        for _ in 0..1024 {
            let Some(s) = conn.poll_transmit(now) else {
                break;
            };
            if trace {
                eprintln!(
                    "out {:?} seq={} ack={} len={} [{:?} rcv_nxt={}]",
                    s.flags,
                    s.seq.0,
                    s.ack.0,
                    s.payload.len(),
                    conn.state(),
                    conn.rcv_nxt().0
                );
            }
            if s.flags.rst() {
                continue;
            }
            if s.flags.ack() && !s.flags.syn() {
                assert!(s.ack.le(conn.rcv_nxt()), "ACK beyond rcv_nxt");
                let covered = peer_ranges
                    .iter()
                    .any(|&(from, to)| from.le(s.ack) && s.ack.le(to));
                assert!(covered, "ACK of data the peer never sent");
            }
            if !s.payload.is_empty() {
                let start = s.seq.diff(isn.add(1));
                assert!(start >= 0, "data before ISN+1");
                let start = start as usize;
                let end = start + s.payload.len();
                assert!(end <= queued.len(), "data beyond what was queued");
                assert_eq!(s.payload, queued[start..end], "data not what was queued");
            }
        }
        while conn.poll_event().is_some() {}
        assert!(conn.snd_una().le(conn.snd_nxt()), "snd_una ≤ snd_nxt");
        let limit = isn.add(queued.len() as u32 + 2);
        assert!(
            conn.snd_nxt().le(limit),
            "snd_nxt beyond SYN + queued data + FIN"
        );
        if conn.state() == State::Closed {
            assert_eq!(conn.poll_timeout(), None, "no timer survives CLOSED");
        }
    }
});
