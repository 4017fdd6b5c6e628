//! RACK loss detection (RFC 8985 §6) for the data we send.
//!
//! A segment is lost when a segment sent after it has been delivered (cumulatively
//! acknowledged or SACKed) and the delivered one's round trip plus a reordering window has
//! passed since it left. Before RACK, a lost segment of ours waited for the retransmission
//! timer (200 ms at least) even when the peer's SACKs showed the hole within a round
//! trip: a 1 398-byte request cut in three by a router's MSS clamp, its first segment
//! dropped, was sent again at 200.7 ms; Linux's client (RACK on by default,
//! `tcp_recovery`) at 7 ms, its timer's jiffy granularity. This is the detection only
//! (RFC 8985 §3.4 leaves the response to the congestion control in use): what we send is
//! a request, not a stream, and has no congestion window; the connection sends what is
//! found lost as the peer's ACKs deliver, as Linux's PRR does (`Connection::rack_detect`).
//! The tail loss probe (§7), which gives RACK something to go on when a flight's tail is
//! lost, is the connection's too (`Connection::arm_loss_probe`).

use super::flight::{Flight, Sent};
use crate::time::Instant;
use crate::wire::SeqNumber;
use std::time::Duration;

/// RFC 8985 §6.2 step 4: with this many segments SACKed, the reordering window is zero
/// (RFC 6675's DupThresh, the three duplicate ACKs of fast retransmit).
const DUP_THRESH: usize = 3;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Rack {
    /// RACK.xmit_ts and RACK.end_seq: when the most recently sent segment that was
    /// delivered left, and where it ended (the tie-break between segments sent at once).
    newest: Option<(Instant, SeqNumber)>,
    /// RACK.rtt: that segment's round trip.
    rtt: Duration,
    /// RACK.min_RTT: the smallest round trip seen.
    min_rtt: Option<Duration>,
}

/// What [`Rack::detect`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Detected {
    /// Lost now, oldest sequence first.
    pub(super) lost: Vec<Sent>,
    /// When the first of the segments sent before the newest delivered one that are not
    /// lost yet will be (RFC 8985 §6.2 step 5's reordering timer).
    pub(super) recheck: Option<Instant>,
}

impl Rack {
    /// Step 2: learns from a segment an ACK received at `rx_at` delivered.
    pub(super) fn delivered(&mut self, rx_at: Instant, s: &Sent) {
        let rtt = rx_at.saturating_since(s.at);
        // An ACK of a segment sent twice may answer the first copy (Karn): step 2 leaves
        // it out when it came sooner after the copy than any round trip seen (or when no
        // round trip is known). RFC 8985 also asks the timestamps, which we do not keep
        // per segment.
        if s.again && self.min_rtt.is_none_or(|m| rtt < m) {
            return;
        }
        self.rtt_sample(rtt);
        if self
            .newest
            .is_none_or(|(at, end)| sent_after((s.at, s.end()), (at, end)))
        {
            self.newest = Some((s.at, s.end()));
            self.rtt = rtt;
        }
    }

    /// A round trip measured by the connection (the handshake's, an ACK's): RACK.min_RTT
    /// is the smallest of every sample, as Linux's `tcp_min_rtt`.
    pub(super) fn rtt_sample(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
    }

    /// Step 4: how long past the delivered segment's round trip an earlier one may still
    /// be on its way, reordered: a quarter of the smallest round trip (bounded by SRTT),
    /// none once DupThresh segments are SACKed. We do not track reordering (RACK.reord),
    /// so the window never grows: a path that reorders costs a needless retransmission,
    /// as it does Linux before it learns.
    fn reo_wnd(&self, srtt: Option<Duration>, sacked: usize) -> Duration {
        if sacked >= DUP_THRESH {
            return Duration::ZERO;
        }
        let quarter = self.min_rtt.unwrap_or_default() / 4;
        srtt.map_or(quarter, |s| quarter.min(s))
    }

    /// Step 5: the segments of `flight` lost at `now`, and when to look again.
    pub(super) fn detect(&self, now: Instant, flight: &Flight, srtt: Option<Duration>) -> Detected {
        let Some(newest) = self.newest else {
            return Detected::default();
        };
        let wait = self
            .rtt
            .saturating_add(self.reo_wnd(srtt, flight.sacked_count()));
        let mut found = Detected::default();
        for s in flight.unsacked() {
            if !sent_after(newest, (s.at, s.end())) {
                continue;
            }
            let due = s.at + wait;
            if due <= now {
                found.lost.push(*s);
            } else if found.recheck.is_none_or(|r| due < r) {
                found.recheck = Some(due);
            }
        }
        found
    }
}

/// RFC 8985 §6.2 `RACK_sent_after`: `a` left after `b`, or with it and ends later.
fn sent_after(a: (Instant, SeqNumber), b: (Instant, SeqNumber)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1.gt(b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_nanos(n * 1_000_000)
    }

    /// Three segments sent at 0 ms, the second and third SACKed at 10 ms.
    fn three_sent_two_sacked() -> (Rack, Flight) {
        let mut f = Flight::default();
        for i in 0..3 {
            f.sent(SeqNumber(1 + 500 * i), 500, ms(0), false);
        }
        let mut r = Rack::default();
        f.sack([(SeqNumber(501), SeqNumber(1501))].into_iter(), |e| {
            r.delivered(ms(10), e)
        });
        (r, f)
    }

    #[test]
    fn a_hole_behind_a_sacked_segment_is_lost_after_a_round_trip_and_the_window() {
        let (r, f) = three_sent_two_sacked();
        // RTT 10 ms, two SACKed (< DupThresh): window 10/4 = 2.5 ms, bounded by SRTT.
        let d = r.detect(ms(10), &f, Some(Duration::from_millis(10)));
        assert!(d.lost.is_empty());
        assert_eq!(d.recheck, Some(ms(12) + Duration::from_micros(500)));
        let d = r.detect(ms(13), &f, Some(Duration::from_millis(10)));
        assert_eq!(d.lost.iter().map(|s| s.seq.0).collect::<Vec<_>>(), [1]);
        assert_eq!(d.recheck, None);
        // SRTT smaller than a quarter of min_RTT bounds the window.
        let d = r.detect(
            ms(10) + Duration::from_micros(200),
            &f,
            Some(Duration::from_micros(300)),
        );
        assert!(d.lost.is_empty());
        assert_eq!(d.recheck, Some(ms(10) + Duration::from_micros(300)));
    }

    #[test]
    fn dupthresh_sacked_segments_leave_no_reordering_window() {
        let mut f = Flight::default();
        for i in 0..4 {
            f.sent(SeqNumber(1 + 100 * i), 100, ms(0), false);
        }
        let mut r = Rack::default();
        f.sack([(SeqNumber(101), SeqNumber(401))].into_iter(), |e| {
            r.delivered(ms(4), e)
        });
        let d = r.detect(ms(4), &f, None);
        assert_eq!(
            d.lost.len(),
            1,
            "three SACKed: lost at the round trip itself"
        );
    }

    #[test]
    fn segments_sent_after_the_newest_delivered_are_not_judged() {
        let (mut r, mut f) = three_sent_two_sacked();
        // The first goes again at 20 ms; its copy is not judged by what left at 0 ms.
        f.sent(SeqNumber(1), 500, ms(20), true);
        let d = r.detect(ms(100), &f, None);
        assert!(d.lost.is_empty() && d.recheck.is_none());
        // An ACK 1 ms after the copy, sooner than any round trip (10 ms), may answer the
        // first copy (Karn): it teaches nothing, so the copy stays unjudged.
        f.acked(SeqNumber(1501), |e| r.delivered(ms(21), e));
        assert_eq!(r.newest, Some((ms(0), SeqNumber(1501))));
    }

    #[test]
    fn segments_sent_together_are_ordered_by_their_end() {
        let mut f = Flight::default();
        f.sent(SeqNumber(1), 500, ms(0), false);
        f.sent(SeqNumber(501), 500, ms(0), false);
        // Only the first SACKed (a peer's SACK of it, the second lost): nothing earlier
        // than the first, so nothing is judged — the second ends later.
        let mut r = Rack::default();
        f.sack([(SeqNumber(1), SeqNumber(501))].into_iter(), |e| {
            r.delivered(ms(5), e)
        });
        let d = r.detect(ms(50), &f, None);
        assert!(d.lost.is_empty() && d.recheck.is_none());
    }

    #[test]
    fn nothing_delivered_nothing_judged() {
        let mut f = Flight::default();
        f.sent(SeqNumber(1), 500, ms(0), false);
        let r = Rack::default();
        assert_eq!(r.detect(ms(1000), &f, None), Detected::default());
    }
}
