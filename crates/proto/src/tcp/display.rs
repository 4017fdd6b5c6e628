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
                "RST with seq {seq} inside the window but not at rcv_nxt: answered with a challenge ACK (RFC 5961 §3.2)"
            ),
            Anomaly::RstIgnored { seq } => {
                write!(
                    f,
                    "RST with seq {seq} outside the window: ignored (RFC 5961 §3.2)"
                )
            }
            Anomaly::SynChallenged { seq } => write!(
                f,
                "SYN (seq {seq}) on a synchronized connection: answered with a challenge ACK (RFC 5961 §4)"
            ),
            Anomaly::AckOfUnsentData { ack } => write!(
                f,
                "ACK {ack} acknowledges data we never sent: dropped and ACKed (RFC 9293 §3.10.7.4)"
            ),
            Anomaly::BadSynAck { ack } => write!(
                f,
                "SYN-ACK with ack {ack} that does not acknowledge our SYN: answered with RST (RFC 9293 §3.10.7.3)"
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
            Anomaly::SimultaneousOpen { seq } => {
                write!(
                    f,
                    "a SYN without ACK (seq {seq}) while in SYN-SENT (simultaneous open): ignored"
                )
            }
            Anomaly::AckTooOld { ack } => write!(
                f,
                "ACK {ack} is older than anything in flight: dropped and ACKed (RFC 5961 §5.2)"
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
