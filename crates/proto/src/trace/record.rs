//! The record of one trace (`tcpshake trace --json`, one object; README.md documents it).
//! Every type serializes to exactly the JSON written and deserializes from it.

use crate::probe::record::{PortState, Reason};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub const TRACE_SCHEMA: u32 = 1;

/// Which packets the trace sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceMode {
    /// Copies of our SYN with increasing TTL.
    Syn,
    /// Segments inside a connection we opened first.
    InSession,
}

impl TraceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceMode::Syn => "syn",
            TraceMode::InSession => "in-session",
        }
    }
}

/// How much of our packet a hop quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuoteKind {
    /// At most the first 8 bytes of TCP (ports and sequence number): RFC 792's minimum.
    Rfc792,
    /// More than 8 bytes of TCP but not the whole segment.
    Partial,
    /// The whole segment (RFC 1812 §4.3.2.3 for IPv4, RFC 4443 §2.4(c) for IPv6).
    Full,
}

impl QuoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QuoteKind::Rfc792 => "rfc792",
            QuoteKind::Partial => "partial",
            QuoteKind::Full => "full",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpRecord {
    #[serde(rename = "type")]
    pub icmp_type: u8,
    pub code: u8,
}

/// One header field a hop changed (attributed to the first hop where it shows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub field: String,
    pub sent: String,
    pub seen: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One TTL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopRecord {
    pub ttl: u8,
    /// Who answered (the first answer's source); `null` when nothing did.
    pub addr: Option<IpAddr>,
    /// Other addresses that answered probes of this TTL (load balancing that the constant
    /// flow identity did not pin down, or a path change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_addrs: Vec<IpAddr>,
    /// What answered: `time-exceeded`, an unreachable's reason word (`admin-prohibited`…),
    /// or the destination's `syn-ack` / `reset` / `ack`.
    pub reply: Option<String>,
    pub icmp: Option<IcmpRecord>,
    /// Probe → answer, kernel timestamps, one per answered probe in the order sent.
    pub rtt_ns: Vec<u64>,
    /// Probes of this TTL that left (seen on the tap, or answered).
    pub sent: u8,
    /// Of those, the unanswered.
    pub lost: u8,
    /// Bytes of our packet the ICMP error quoted (IP header included).
    pub quote_len: Option<usize>,
    pub quote: Option<QuoteKind>,
    /// The ICMP error carried an RFC 4884 length attribute (and extensions after it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rfc4884: bool,
    /// TTL / hop limit of our packet as the hop received it (from its quote).
    pub quoted_ttl: Option<u8>,
    /// TTL / hop limit of the answer as it reached us.
    pub reply_ttl: Option<u8>,
    pub changes: Vec<ChangeRecord>,
}

/// How the trace ended at the far end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationRecord {
    pub state: PortState,
    pub reason: Reason,
    /// Who gave the verdict (the target, or a router's ICMP error).
    pub addr: Option<IpAddr>,
    /// The smallest TTL that reached it.
    pub ttl: Option<u8>,
    /// Probe → answer for the probes at that TTL.
    pub rtt_ns: Vec<u64>,
    /// In-session: SYN → SYN-ACK of the handshake (SYN → RST when it was refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_rtt_ns: Option<u64>,
    /// In-session: how the connection ended (`closed`, `reset`, `timed out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRecord {
    pub schema: u32,
    pub command: String,
    pub target: String,
    pub mode: TraceMode,
    pub local: String,
    pub remote: String,
    pub first_ttl: u8,
    pub max_ttl: u8,
    pub probes: u8,
    /// When the first packet left (ns since the epoch).
    pub t_ns: u64,
    /// First packet to the end of the trace.
    pub duration_ns: u64,
    pub hops: Vec<HopRecord>,
    pub destination: DestinationRecord,
    /// The last TTL that answered when nothing answered beyond it (the likely place the
    /// probes are dropped); `null` when the far end answered.
    pub lost_after_ttl: Option<u8>,
    /// The target is on a link of this host (its route has no gateway): every TTL reaches
    /// it, so a silence is its own, not a router's, and no hop count "does not reach" it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_link: bool,
    /// Packets we sent that were seen leaving (their copies on the tap): probes, RSTs, the
    /// in-session connection's segments. What the kernel was handed but held and dropped
    /// (behind an unresolved next hop) is not counted.
    pub packets_sent: u32,
    /// Packets to our port, or ICMP errors quoting it, that answered no probe.
    pub unmatched: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub interrupted: bool,
    pub error: Option<String>,
}

impl TraceRecord {
    /// The destination answered with an open port.
    pub fn reached_open(&self) -> bool {
        self.destination.state == PortState::Open
    }
}
