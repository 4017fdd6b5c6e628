//! How anomalies read in reports: what the peer did and what we did about it, with the
//! RFC that says so.

use super::Anomaly;
use std::fmt;

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::BadFlagCombination { flags } => {
                write!(f, "the peer sent an impossible flag combination ({flags})")
            }
            Anomaly::RstChallenged { seq } => write!(
                f,
                "RST with seq {seq} inside the window but not at rcv_nxt: answered with a challenge ACK (RFC 5961 §3.2), alone or on the segment we sent next"
            ),
            Anomaly::ResetBeforeSent { acks, data, fin } => {
                let mut what = Vec::new();
                if *fin {
                    what.push("our FIN".to_string());
                }
                if *data > 0 {
                    what.push(format!("{data} bytes of our data"));
                }
                // Queued ACKs are one: each replaces the last (a train of challenges
                // earns one ACK).
                if *acks > 0 {
                    what.push("our ACK".to_string());
                }
                write!(
                    f,
                    "the RST came in the same read as the segments before it and ended the connection before our answer to them left: {} never left",
                    what.join(", ")
                )
            }
            Anomaly::RstIgnored { seq } => {
                write!(
                    f,
                    "RST with seq {seq} outside the window: ignored (RFC 5961 §3.2)"
                )
            }
            Anomaly::SynChallenged { seq, again: true } => write!(
                f,
                "the server's SYN-ACK again (seq {seq}), our ACK of it lost on the way most likely: answered with an ACK (RFC 5961 §4), alone or on the segment we sent next"
            ),
            Anomaly::SynAckCopy { seq, after } => write!(
                f,
                "the server's SYN-ACK again (seq {seq}), {} µs after the first: sooner than any retransmission timer (200 ms, Linux's TCP_RTO_MIN), so a copy (the path duplicated it, or the server answered a second copy of our SYN), not a lost ACK of ours: answered with an ACK (RFC 5961 §4), alone or on the segment we sent next",
                after.as_micros()
            ),
            Anomaly::SynChallenged { seq, again: false } => write!(
                f,
                "SYN (seq {seq}) on a synchronized connection: answered with a challenge ACK (RFC 5961 §4), alone or on the segment we sent next"
            ),
            Anomaly::AckOfUnsentData { ack } => write!(
                f,
                "ACK {ack} acknowledges data we never sent: dropped and ACKed (RFC 9293 §3.10.7.4)"
            ),
            Anomaly::BadSynAck { ack, syn: true } => write!(
                f,
                "SYN-ACK with ack {ack} that does not acknowledge our SYN: answered with RST (RFC 9293 §3.10.7.3)"
            ),
            Anomaly::BadSynAck { ack, syn: false } => write!(
                f,
                "ACK {ack} in SYN-SENT that does not acknowledge our SYN (an earlier connection's, \
                 e.g. the server's TIME-WAIT): answered with RST (RFC 9293 §3.10.7.3)"
            ),
            Anomaly::OutOfWindow { seq, len } => write!(
                f,
                "segment seq {seq} len {len} outside our receive window: dropped and ACKed"
            ),
            Anomaly::BeyondWindow { seq, len } => write!(
                f,
                "segment seq {seq} len {len} runs past our advertised window: trimmed"
            ),
            Anomaly::FinInTimeWait => {
                write!(
                    f,
                    "FIN retransmitted in TIME-WAIT: ACKed again, TIME-WAIT restarted"
                )
            }
            Anomaly::RstInTimeWait { seq } => write!(
                f,
                "RST (seq {seq}) in TIME-WAIT, after our close had completed: TIME-WAIT ended early, as Linux's does (RFC 9293 §3.10.7.4; RFC 1337 would ignore it)"
            ),
            Anomaly::SimultaneousOpen { seq } => write!(
                f,
                "a SYN without ACK (seq {seq}) while in SYN-SENT: simultaneous open, answered with a SYN-ACK (RFC 9293 §3.5)"
            ),
            Anomaly::AckTooOld { ack } => write!(
                f,
                "ACK {ack} is older than anything in flight: dropped and ACKed (RFC 5961 §5.2)"
            ),
            Anomaly::MalformedOption { kind } => write!(
                f,
                "TCP option kind {kind} with a bad length: that option ignored, the segment kept (RFC 9293 §3.1 MUST-7)"
            ),
            Anomaly::MssAdjusted { offered: 0, used } => write!(
                f,
                "the peer's MSS is 0: taken as no MSS option ({used}, RFC 9293 §3.7.1)"
            ),
            Anomaly::MssAdjusted { offered, used } => write!(
                f,
                "the peer's MSS {offered} is below Linux's floor: using {used} (TCP_MIN_SND_MSS)"
            ),
            Anomaly::OverlapConflict { seq, len } => write!(
                f,
                "segment seq {seq} len {len} overlaps out-of-order bytes already received with different content: the copy starting lower kept, as Linux (a middlebox or an injection?)"
            ),
            Anomaly::Duplicate { seq, len } => write!(
                f,
                "segment seq {seq} len {len} is a duplicate of bytes already received: ACKed again"
            ),
            Anomaly::PawsRejected { tsval, ts_recent } => write!(
                f,
                "segment with TSval {tsval}, older than TS.Recent {ts_recent}: dropped and ACKed (PAWS, RFC 7323 §5.3)"
            ),
            Anomaly::SynAckBadTsecr { tsecr } => write!(
                f,
                "SYN-ACK echoes TSecr {tsecr}, a timestamp we never sent: answered with RST, SYN to be sent again (RFC 7323 §3.2, as Linux)"
            ),
            Anomaly::Urgent { seq, pointer } => write!(
                f,
                "URG set (seq {seq}, urgent pointer {pointer}): reported, not acted on"
            ),
            Anomaly::TimestampsMissing { seq } => write!(
                f,
                "segment seq {seq} without the timestamps option both sides negotiated: taken, as Linux takes it (RFC 7323 §3.2 would drop it); a middlebox stripping TCP options? (noted once)"
            ),
            Anomaly::TimestampsUnnegotiated { seq } => write!(
                f,
                "segment seq {seq} carries a timestamps option the connection did not negotiate: ignored (RFC 7323 §3.2), as Linux ignores it; a server that sends them anyway, or a middlebox adding or stripping TCP options? (noted once)"
            ),
            Anomaly::WindowScaleStripped {
                synack_window,
                window,
            } => write!(
                f,
                "the server's window fell from {synack_window} in its SYN-ACK to {window} in its next segment, and no window scaling was agreed: a middlebox may have stripped the window scale option from the SYN-ACK (the server, which saw ours, then scales the windows it advertises and we read them unscaled: sends crawl)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SeqNumber;

    #[test]
    fn anomalies_say_what_happened_and_why() {
        let s = Anomaly::RstChallenged { seq: SeqNumber(7) }.to_string();
        assert!(s.contains("seq 7") && s.contains("RFC 5961"), "{s}");
        assert!(Anomaly::FinInTimeWait.to_string().contains("TIME-WAIT"));
    }
}
