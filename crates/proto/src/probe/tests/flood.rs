//! Floods in virtual time (issue 12, item 7): however many segments a server sends, a
//! probe's record stays bounded, says what it left out, and its legs are the legs of the
//! whole exchange.

use super::*;
use crate::probe::log::Bounds;

/// What a flooding server sends, one segment per step.
#[derive(Clone, Copy, Debug)]
enum Junk {
    /// A duplicate ACK of our request, no data.
    DupAck,
    /// 100 bytes whose checksum is wrong: logged, ignored, noted.
    BadChecksum,
    /// 100 bytes that were acknowledged long ago: we answer each with an ACK (RFC 9293
    /// §3.10.7.4), so our side of the log grows too.
    OldData,
    /// 100 bytes beyond our window: cut, answered with an ACK, noted.
    BeyondWindow,
}

const JUNK: [Junk; 4] = [
    Junk::DupAck,
    Junk::BadChecksum,
    Junk::OldData,
    Junk::BeyondWindow,
];

/// One step of the server's script after our request.
#[derive(Clone, Debug)]
enum Step {
    Flood(Junk, u32),
    /// The response head, in segments of this many bytes.
    Response(usize),
    Fin,
    /// The ACK of our FIN.
    LastAck,
}

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: flood\r\nContent-Length: 3\r\n\r\n";

/// What a script run left: the record, how many segments the tap showed the probe, and
/// (when asked for) the capture note of each of the server's packets after the request.
struct Run {
    record: ProbeResult,
    seen: u64,
    notes: Vec<PacketNote>,
}

/// Runs the script against a probe whose log keeps `bounds`; the time advances 1 µs per
/// segment, 5 µs before a FIN or the last ACK (so they come after our copies).
fn run(bounds: Bounds, steps: &[Step], with_notes: bool) -> Run {
    // Our ISN close to 2^32: the exchange crosses it.
    let (mut p, mut seq, ack) = requested_with(bounds, 4_000_000_000, 9_000);
    let mut t = 100;
    let mut fin_acked = ack;
    let mut notes = Vec::new();
    let mut feed = |p: &mut Probe, bytes: &[u8], t: &mut u64| {
        *t += 1;
        if !p.is_done() {
            p.handle_packet(at(*t), false, bytes, false);
            if with_notes {
                notes.push(p.packet_note());
            }
            pump(p, *t);
        }
    };
    for step in steps {
        match step {
            Step::Flood(kind, n) => {
                for _ in 0..*n {
                    let bytes = match kind {
                        Junk::DupAck => server_seg(seq, ack, TcpFlags::ACK, &[]),
                        Junk::BadChecksum => {
                            let mut b = server_seg(seq, ack, TcpFlags::ACK, &[b'x'; 100]);
                            let last = b.len() - 1;
                            b[last] ^= 0xff;
                            b
                        }
                        Junk::OldData => server_seg(
                            seq.wrapping_sub(5_000),
                            ack,
                            TcpFlags::ACK | TcpFlags::PSH,
                            &[b'y'; 100],
                        ),
                        Junk::BeyondWindow => {
                            server_seg(seq.wrapping_add(1 << 20), ack, TcpFlags::ACK, &[b'z'; 100])
                        }
                    };
                    feed(&mut p, &bytes, &mut t);
                }
            }
            Step::Response(chunk) => {
                for c in RESPONSE.chunks(*chunk) {
                    let bytes = server_seg(seq, ack, TcpFlags::ACK | TcpFlags::PSH, c);
                    feed(&mut p, &bytes, &mut t);
                    seq = seq.wrapping_add(c.len() as u32);
                }
            }
            Step::Fin => {
                // After our last ACK's copy (2 µs after it left, see `pump`).
                t += 4;
                let bytes = server_seg(seq, ack, TcpFlags::FIN | TcpFlags::ACK, &[]);
                feed(&mut p, &bytes, &mut t);
                seq = seq.wrapping_add(1);
                fin_acked = ack.wrapping_add(1);
            }
            Step::LastAck => {
                t += 4;
                let bytes = server_seg(seq, fin_acked, TcpFlags::ACK, &[]);
                feed(&mut p, &bytes, &mut t);
            }
        }
    }
    let seen = p.log.total() as u64;
    Run {
        record: p.into_result(),
        seen,
        notes,
    }
}

/// A log that keeps everything (for the scripts here).
const ALL: Bounds = Bounds {
    head: 1 << 20,
    pinned: 0,
    tail: 1,
};

#[test]
fn flood_of_100_000_segments_keeps_the_record_bounded_and_says_so() {
    let mut steps = vec![Step::Response(RESPONSE.len())];
    for k in JUNK {
        steps.push(Step::Flood(k, 25_000));
    }
    steps.extend([Step::Fin, Step::LastAck]);
    let Run {
        record: r, seen, ..
    } = run(Bounds::DEFAULT, &steps, false);
    let bound = Bounds::DEFAULT;
    assert!(seen > 100_000, "{seen} segments seen");
    assert!(r.segments.len() <= bound.head + bound.pinned + bound.tail);
    assert_eq!(r.segments.len() as u64 + r.segments_omitted, seen);
    assert_eq!(
        r.segments.iter().map(|s| s.omitted_before).sum::<u64>(),
        r.segments_omitted
    );
    // 64 notes, then one line that counts the rest.
    assert_eq!(r.anomalies.len(), MAX_NOTES + 1, "{:?}", r.anomalies);
    let last = r.anomalies.last().unwrap();
    assert!(
        last.starts_with("…and ") && last.ends_with(" more notes (a record keeps 64)"),
        "{last}"
    );
    assert!(r.timers.len() <= MAX_NOTES);
    // Still a record of the exchange: its close, its legs.
    assert_eq!(r.http.as_ref().map(|h| h.status), Some(200));
    assert_eq!(r.close_initiator, Some(CloseInitiator::Server));
    assert_eq!(r.error, None);
    for leg in Leg::TCP {
        assert!(r.legs_ns.get(*leg).is_some(), "{leg:?}: {:?}", r.legs_ns);
    }
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.len() < 512 * 1024, "{} bytes of JSON", json.len());
    assert!(json.contains(&format!(r#""segments_omitted":{}"#, r.segments_omitted)));
    assert_eq!(ProbeResult::from_json_line(&json).unwrap(), r);
}

#[test]
fn a_bounded_log_gives_the_legs_of_the_whole_log() {
    // The server's FIN and every ACK that ends a leg come in the middle of floods.
    let steps = [
        Step::Flood(Junk::OldData, 300),
        Step::Response(7),
        Step::Flood(Junk::DupAck, 300),
        Step::Fin,
        Step::Flood(Junk::BadChecksum, 300),
        Step::LastAck,
    ];
    let small = Bounds {
        head: 6,
        pinned: 64,
        tail: 4,
    };
    let all = run(ALL, &steps, true);
    let capped = run(small, &steps, true);
    assert_eq!(all.record.segments_omitted, 0);
    let omitted = capped.record.segments_omitted;
    assert!(omitted > 1_000, "{omitted}");
    assert_eq!(capped.record.segments.len() as u64 + omitted, all.seen);
    // A capture's comments name the same legs and labels at the same packets (the
    // server's: its first byte, the response complete, its FIN's ACK of ours).
    assert!(capped.notes == all.notes, "the capture notes differ");
    let named: Vec<Leg> = all
        .notes
        .iter()
        .flat_map(|n| n.legs.iter().map(|l| l.0))
        .collect();
    assert_eq!(
        named,
        [
            Leg::RequestToFirstByte,
            Leg::RequestToComplete,
            Leg::PeerFinToLastAck
        ]
    );
    assert!(all.notes.iter().any(|n| n.label.is_some()));
    assert_eq!(
        without_segments(capped.record),
        without_segments(all.record)
    );
}

/// A record with its segment list set aside: what must not depend on the log's bounds.
fn without_segments(mut r: ProbeResult) -> ProbeResult {
    r.segments.clear();
    r.segments_omitted = 0;
    r
}

#[test]
fn capture_losses_are_in_the_record_only_when_there_were_some() {
    let (mut p, _, _) = requested(1_000, 9_000);
    let json = serde_json::to_string(&p.result()).unwrap();
    assert!(!json.contains("capture_lost"), "{json}");
    p.capture_lost(3);
    p.capture_lost(2);
    let r = p.result();
    assert_eq!(r.capture_lost, 5);
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""capture_lost":5"#), "{json}");
    assert_eq!(ProbeResult::from_json_line(&json).unwrap(), r);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn junk() -> impl Strategy<Value = Step> {
        (0usize..4, 0u32..120).prop_map(|(k, n)| Step::Flood(JUNK[k], n))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Floods of any kind and length before, inside and after the response, around the
        /// FIN and its ACK: the record of a small log equals the record of a log that keeps
        /// everything, segments aside.
        #[test]
        fn bounded_logs_never_change_the_record(
            before in proptest::collection::vec(junk(), 0..3),
            chunk in 1usize..60,
            between in proptest::collection::vec(junk(), 0..3),
            around_fin in proptest::collection::vec(junk(), 0..3),
            last_ack in any::<bool>(),
            head in 1usize..12,
            tail in 1usize..6,
        ) {
            let mut steps = before;
            steps.push(Step::Response(chunk));
            steps.extend(between);
            steps.push(Step::Fin);
            steps.extend(around_fin);
            if last_ack {
                steps.push(Step::LastAck);
            }
            let all = run(ALL, &steps, true);
            let capped = run(Bounds { head, pinned: 64, tail }, &steps, true);
            let r = &capped.record;
            prop_assert_eq!(r.segments.len() as u64 + r.segments_omitted, capped.seen);
            prop_assert_eq!(capped.notes, all.notes);
            prop_assert_eq!(without_segments(capped.record), without_segments(all.record));
        }
    }
}
