//! Port verdicts: a port's state and the reason for it, in nmap's words (`-sS --reason`),
//! decided here for single probes, surveys and scans alike.
//!
//! | what answered our SYN | state | reason |
//! |---|---|---|
//! | SYN-ACK (or a bare ACK of it: a peer still in SYN-RECEIVED) | open | `syn-ack` |
//! | a bare SYN (simultaneous open, RFC 9293 §3.5, or a "split handshake"): single probes only | open | `split-handshake-syn` (nmap's ER_SYN) |
//! | RST acknowledging the SYN (RFC 9293 §3.10.7.3) | closed | `reset` |
//! | an ICMP/ICMPv6 destination unreachable or time exceeded quoting it | filtered | the ICMP error (`port-unreach`, `admin-prohibited`, …) |
//! | nothing, after every retransmission | filtered | `no-response` |
//! | nothing yet when the user stopped us (Ctrl-C, SIGTERM) | interrupted | `interrupted` |
//!
//! `interrupted` is not one of nmap's states: a probe stopped before anything answered
//! says nothing about the port, and calling it filtered would be a guess.

use crate::wire::{IcmpKind, TcpFlags};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortState {
    Open,
    Closed,
    Filtered,
    /// Stopped by the user before any verdict.
    Interrupted,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
            PortState::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for PortState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why a port is in its state: nmap's `--reason` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    SynAck,
    /// The peer answered our SYN with a SYN of its own (nmap's `ER_SYN`).
    SplitHandshakeSyn,
    Reset,
    NoResponse,
    NetUnreach,
    HostUnreach,
    ProtoUnreach,
    PortUnreach,
    FragNeeded,
    NetProhibited,
    HostProhibited,
    AdminProhibited,
    /// ICMPv6's "no route to destination" (nmap's `no-route`).
    NoRoute,
    /// ICMPv6's "beyond scope of source address" (nmap's `beyond-scope`).
    BeyondScope,
    /// ICMPv6's "reject route to destination" (nmap's `reject-route`).
    RejectRoute,
    TimeExceeded,
    /// Any other destination-unreachable code (nmap's `dest-unreach`).
    DestUnreach,
    /// An ICMP parameter problem (nmap's `param-problem`; only a trace ends on one).
    ParamProblem,
    /// The user stopped the probe before any verdict.
    Interrupted,
    /// A host's: it answered our ARP request (nmap's `arp-response`).
    ArpResponse,
    /// A host's: it answered our Neighbor Solicitation (nmap's `nd-response`).
    NdResponse,
    /// A host's: an on-link IPv4 host that never answered ARP, so it was not scanned.
    NoArp,
    /// A host's: an on-link IPv6 host that never answered Neighbor Discovery.
    NoNd,
}

const REASON_WORDS: [(Reason, &str); 23] = [
    (Reason::SynAck, "syn-ack"),
    (Reason::SplitHandshakeSyn, "split-handshake-syn"),
    (Reason::Reset, "reset"),
    (Reason::NoResponse, "no-response"),
    (Reason::NetUnreach, "net-unreach"),
    (Reason::HostUnreach, "host-unreach"),
    (Reason::ProtoUnreach, "proto-unreach"),
    (Reason::PortUnreach, "port-unreach"),
    (Reason::FragNeeded, "frag-needed"),
    (Reason::NetProhibited, "net-prohibited"),
    (Reason::HostProhibited, "host-prohibited"),
    (Reason::AdminProhibited, "admin-prohibited"),
    (Reason::NoRoute, "no-route"),
    (Reason::BeyondScope, "beyond-scope"),
    (Reason::RejectRoute, "reject-route"),
    (Reason::TimeExceeded, "time-exceeded"),
    (Reason::DestUnreach, "dest-unreach"),
    (Reason::ParamProblem, "param-problem"),
    (Reason::Interrupted, "interrupted"),
    (Reason::ArpResponse, "arp-response"),
    (Reason::NdResponse, "nd-response"),
    (Reason::NoArp, "no-arp"),
    (Reason::NoNd, "no-nd"),
];

impl Reason {
    /// nmap's word (`syn-ack`, `port-unreach`).
    pub fn as_str(self) -> &'static str {
        REASON_WORDS
            .iter()
            .find(|e| e.0 == self)
            .map_or("dest-unreach", |e| e.1)
    }

    pub fn from_word(word: &str) -> Option<Reason> {
        // Records written before the word was nmap's (`report` reads them) said `unreach`.
        if word == "unreach" {
            return Some(Reason::DestUnreach);
        }
        REASON_WORDS.iter().find(|e| e.1 == word).map(|e| e.0)
    }

    /// The reason an ICMP error gives.
    pub fn of_icmp(kind: IcmpKind) -> Reason {
        match kind {
            IcmpKind::NetUnreachable => Reason::NetUnreach,
            IcmpKind::HostUnreachable => Reason::HostUnreach,
            IcmpKind::ProtocolUnreachable => Reason::ProtoUnreach,
            IcmpKind::PortUnreachable => Reason::PortUnreach,
            IcmpKind::PacketTooBig { .. } => Reason::FragNeeded,
            IcmpKind::NetProhibited => Reason::NetProhibited,
            IcmpKind::HostProhibited => Reason::HostProhibited,
            IcmpKind::AdminProhibited => Reason::AdminProhibited,
            IcmpKind::NoRoute => Reason::NoRoute,
            IcmpKind::BeyondScope => Reason::BeyondScope,
            IcmpKind::RejectRoute => Reason::RejectRoute,
            IcmpKind::TimeExceeded => Reason::TimeExceeded,
            IcmpKind::OtherUnreachable { .. } => Reason::DestUnreach,
            IcmpKind::ParameterProblem { .. } => Reason::ParamProblem,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        let word = String::deserialize(d)?;
        Reason::from_word(&word)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reason `{word}`")))
    }
}

/// A port's state and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    pub state: PortState,
    pub reason: Reason,
}

impl Verdict {
    pub const OPEN: Verdict = Verdict {
        state: PortState::Open,
        reason: Reason::SynAck,
    };
    /// A bare SYN answered ours: the peer is listening (and opening too).
    pub const SPLIT_HANDSHAKE: Verdict = Verdict {
        state: PortState::Open,
        reason: Reason::SplitHandshakeSyn,
    };
    pub const CLOSED: Verdict = Verdict {
        state: PortState::Closed,
        reason: Reason::Reset,
    };
    /// Every SYN went unanswered.
    pub const NO_RESPONSE: Verdict = Verdict {
        state: PortState::Filtered,
        reason: Reason::NoResponse,
    };
    /// Stopped by the user before any answer.
    pub const INTERRUPTED: Verdict = Verdict {
        state: PortState::Interrupted,
        reason: Reason::Interrupted,
    };

    /// The verdict of a TCP segment that acknowledges our SYN, by its flags: RST → closed;
    /// SYN-ACK → open; a bare ACK (a peer in SYN-RECEIVED whose SYN-ACK to an earlier SYN
    /// of ours was lost, answering the next one as "not acceptable", RFC 9293 §3.10.7.4)
    /// → open: only a listening port gets there. Anything else (a FIN) says nothing.
    pub fn of_reply(flags: TcpFlags) -> Option<Verdict> {
        if flags.rst() {
            Some(Verdict::CLOSED)
        } else if flags.syn() || !flags.fin() {
            Some(Verdict::OPEN)
        } else {
            None
        }
    }

    /// The verdict of an ICMP error about our SYN: filtered, with the error as reason.
    pub fn of_icmp(kind: IcmpKind) -> Verdict {
        Verdict {
            state: PortState::Filtered,
            reason: Reason::of_icmp(kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_words_round_trip() {
        for (r, w) in REASON_WORDS {
            assert_eq!(r.as_str(), w);
            assert_eq!(Reason::from_word(w), Some(r));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{w}\""));
            assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), r);
        }
        assert!(serde_json::from_str::<Reason>("\"bogus\"").is_err());
        // The word older records used for another unreachable code still reads.
        assert_eq!(
            serde_json::from_str::<Reason>("\"unreach\"").unwrap(),
            Reason::DestUnreach
        );
    }

    /// Every ICMP kind's reason is the word the wire module gives it: one table.
    #[test]
    fn icmp_reasons_are_the_wire_words() {
        for kind in [
            IcmpKind::NetUnreachable,
            IcmpKind::HostUnreachable,
            IcmpKind::ProtocolUnreachable,
            IcmpKind::PortUnreachable,
            IcmpKind::PacketTooBig { mtu: 1280 },
            IcmpKind::NetProhibited,
            IcmpKind::HostProhibited,
            IcmpKind::AdminProhibited,
            IcmpKind::NoRoute,
            IcmpKind::BeyondScope,
            IcmpKind::RejectRoute,
            IcmpKind::TimeExceeded,
            IcmpKind::OtherUnreachable { code: 7 },
            IcmpKind::ParameterProblem { pointer: 0 },
        ] {
            assert_eq!(Reason::of_icmp(kind).as_str(), kind.reason(), "{kind:?}");
        }
    }

    #[test]
    fn replies_decide_open_and_closed() {
        let f = |bits: u16| TcpFlags(bits);
        assert_eq!(Verdict::of_reply(f(0x12)), Some(Verdict::OPEN)); // SYN-ACK
        assert_eq!(Verdict::of_reply(f(0x14)), Some(Verdict::CLOSED)); // RST-ACK
        assert_eq!(Verdict::of_reply(f(0x10)), Some(Verdict::OPEN)); // bare ACK
        assert_eq!(Verdict::of_reply(f(0x11)), None); // FIN-ACK
    }

    #[test]
    fn icmp_errors_are_filtered_with_their_reason() {
        let v = Verdict::of_icmp(IcmpKind::AdminProhibited);
        assert_eq!(v.state, PortState::Filtered);
        assert_eq!(v.reason, "admin-prohibited");
    }
}
