//! Review 16: RACK (RFC 8985 §6) and the tail loss probe (§7) against an honest peer over
//! a lossy, reordering path — the peer holds what reaches it (some cases renege: it drops
//! its out-of-order queue now and then), and SACKs
//! (RFC 2018: at most three blocks, the newest first) — with our sequence numbers
//! anywhere on the 2^32 circle. Checked at every step: nothing is sent again that the
//! peer has cumulatively acknowledged or that an ACK we read SACKed (only the RTO's copy
//! of the head may be); no deadline is in the past, none is still due after it fired;
//! one input sends at most a bounded number of segments again; and the request ends
//! acknowledged (or timed out), with no timer left.

use super::*;

/// An ACK's SACK blocks, as offsets into the request.
type Blocks = Vec<(usize, usize)>;

/// xorshift64*: the path's coin, seeded by the case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `[start, end)` offsets into the request.
fn ranges(held: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < held.len() {
        if held[i] {
            let s = i;
            while i < held.len() && held[i] {
                i += 1;
            }
            out.push((s, i));
        } else {
            i += 1;
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn run_lossy(
    isn: u32,
    mss: u16,
    len: usize,
    drop_data: u64,
    drop_ack: u64,
    jitter_us: u64,
    renege: u64,
    seed: u64,
) {
    let opts = TcpOptions {
        mss: Some(mss),
        sack_permitted: true,
        ..TcpOptions::default()
    };
    let mut h = conn_established_with(cfg(isn), 5000, opts, 65535);
    let base = SeqNumber(isn).add(1);
    let mut rng = Rng(seed | 1);
    h.conn.send(&vec![b'r'; len]);
    let mut held = vec![false; len];
    // What the ACKs we handed the connection said the peer holds (it never reneges).
    let mut reported = vec![false; len];
    let mut reneged = false;
    // (arrival, offset, len) towards the peer; (arrival, ack offset, blocks) towards us.
    let mut to_peer: Vec<(Instant, usize, usize)> = Vec::new();
    let mut to_us: Vec<(Instant, usize, Blocks)> = Vec::new();
    let one_way = ms(5);
    let start = h.now;
    for _step in 0..20_000 {
        // What the connection sends now.
        let una = h.conn.snd_una();
        let rtx_before = h.conn.retransmissions();
        let mut again = 0u32;
        while let Some(s) = h.conn.poll_transmit(h.now) {
            if s.payload.is_empty() {
                continue;
            }
            let off = s.seq.diff(base);
            assert!(
                off >= 0 && off as usize + s.payload.len() <= len,
                "data outside the request: {off}"
            );
            let (off, n) = (off as usize, s.payload.len());
            assert!(
                s.seq.add(n as u32).gt(una),
                "{:?} sent again, all below SND.UNA {una:?}",
                s.seq
            );
            if s.retransmission {
                again += 1;
                let all_sacked = reported[off..off + n].iter().all(|&b| b);
                // Once the peer has reneged, anything may go again (its stale ACKs still
                // on the way SACK what it dropped): only the other properties hold.
                assert!(
                    !all_sacked || s.seq == una || reneged,
                    "{:?}+{n} sent again though SACKed (retries {})",
                    s.seq,
                    h.conn.retries()
                );
            }
            if rng.below(100) >= drop_data {
                let at = h.now + one_way + Duration::from_micros(rng.below(jitter_us + 1));
                to_peer.push((at, off, n));
            }
        }
        assert!(again <= 66, "one input sent {again} segments again");
        assert!(h.conn.retransmissions() - rtx_before <= 66);
        let _ = h.events();
        let una_off = h.conn.snd_una().diff(base) as usize;
        if una_off >= len || h.state() == State::Closed {
            break;
        }
        // The next thing to happen.
        let timer = h.conn.poll_timeout();
        if let Some(t) = timer {
            assert!(t >= h.now, "a deadline in the past: {t:?} at {:?}", h.now);
        }
        let peer = to_peer.iter().map(|e| e.0).min();
        let us = to_us.iter().map(|e| e.0).min();
        let Some(next) = [timer, peer, us].into_iter().flatten().min() else {
            panic!("nothing armed, {una_off} of {len} acknowledged");
        };
        h.now = next;
        if peer == Some(next) {
            let i = to_peer.iter().position(|e| e.0 == next).unwrap();
            let (_, off, n) = to_peer.swap_remove(i);
            held[off..off + n].iter_mut().for_each(|b| *b = true);
            let mut ack = held.iter().position(|&b| !b).unwrap_or(len);
            if rng.below(100) < renege {
                // RFC 2018 §8: the peer drops its out-of-order queue (what it SACKed may
                // now be sent again), keeping only what it acknowledges.
                held[ack..].iter_mut().for_each(|b| *b = false);
                reneged = true;
                ack = held.iter().position(|&b| !b).unwrap_or(len);
            }
            let mut blocks: Vec<(usize, usize)> =
                ranges(&held).into_iter().filter(|r| r.0 > ack).collect();
            // The block of the segment just received first, then the highest.
            blocks.sort_by_key(|r| (!(r.0 <= off && off < r.1), std::cmp::Reverse(r.0)));
            blocks.truncate(3);
            if rng.below(100) >= drop_ack {
                let at = h.now + one_way + Duration::from_micros(rng.below(jitter_us + 1));
                to_us.push((at, ack, blocks));
            }
        } else if us == Some(next) {
            let i = to_us.iter().position(|e| e.0 == next).unwrap();
            let (_, ack, blocks) = to_us.swap_remove(i);
            let mut a = ack_seg(5001, base.add(ack as u32).0);
            for (slot, b) in a.options.sack_blocks.iter_mut().zip(&blocks) {
                *slot = Some((base.add(b.0 as u32), base.add(b.1 as u32)));
            }
            h.recv(a);
            reported[..ack].iter_mut().for_each(|b| *b = true);
            for b in &blocks {
                reported[b.0..b.1].iter_mut().for_each(|b| *b = true);
            }
        } else {
            h.conn.handle_timeout(next);
            if let Some(t) = h.conn.poll_timeout() {
                assert!(t > next, "still due after firing at {next:?}");
            }
        }
        assert!(
            h.now.saturating_since(start) < Duration::from_secs(3600),
            "an hour of virtual time"
        );
    }
    let una_off = h.conn.snd_una().diff(base) as usize;
    assert!(
        una_off >= len || h.state() == State::Closed,
        "stuck at {una_off} of {len} in {:?}",
        h.state()
    );
    if una_off >= len {
        assert_eq!(
            h.conn.poll_timeout(),
            None,
            "all acknowledged: no timer left"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn prop_review16_rack_tlp_over_a_lossy_reordering_path(
        isn in prop_oneof![any::<u32>(), Just(u32::MAX - 3000), Just(u32::MAX)],
        mss in prop_oneof![Just(536u16), 88u16..1460],
        len in 1usize..12_000,
        drop_data in prop_oneof![Just(0u64), 0u64..40],
        drop_ack in prop_oneof![Just(0u64), 0u64..30],
        jitter_us in prop_oneof![Just(0u64), 0u64..20_000],
        renege in prop_oneof![3 => Just(0u64), 1 => 0u64..20],
        seed in any::<u64>(),
    ) {
        run_lossy(isn, mss, len, drop_data, drop_ack, jitter_us, renege, seed);
    }
}

/// The proptest's find: a third of the request lost, the peer holding more ranges than
/// three SACK blocks list, and ACKs overtaking one another on the way back. The old ACKs'
/// blocks were dropped with their ACK field, so RACK sent SACKed segments again.
#[test]
fn review16_sack_blocks_of_overtaken_acks_are_read() {
    run_lossy(0, 536, 9113, 33, 0, 0, 0, 1_365_512_255_893_261_616);
}

/// The proptest's find: two RTOs fall back to the black hole's safe MTU, and the path
/// MTU resend sent the SACKed long segments again.
#[test]
fn review16_black_hole_resend_leaves_out_sacked_segments() {
    run_lossy(0, 804, 3217, 21, 0, 10_179, 0, 7_334_496_900_100_343_358);
}
